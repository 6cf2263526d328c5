"""Fuzzing the envelope, signature and link decoders: >= 10^6 hostile inputs, only typed errors.

What is run
-----------
Every input goes through the three decoders a secure node runs on what a peer
sends, and two properties are checked on each:

* **only typed errors escape**: ``decode`` may raise only a
  ``RemoteProtocolError``; ``OriginVerifier.verify`` (on what decodes to a
  gossip message) only a ``RemoteProtocolError`` (the security errors are
  ones); on what decodes to a ``PS_DELIVER``, parsing each event and
  ``EventVerifier.verify`` (the publisher's signature) only one too;
  ``Link.open`` only ``DecryptionFailed`` or ``Replayed``. Anything else stops
  the run and prints the seed, the index and the input;
* **nothing is forged**: whatever ``verify`` accepts carries exactly the signed
  end-to-end fields of a corpus message, every event that verifies is a
  corpus event, byte for byte, and whatever ``Link.open`` accepts is
  exactly a corpus plaintext.

Inputs (seeded), in turn: byte mutations of a corpus item (1 to 4 of: bit
flip, random byte, insertion, deletion, truncation, duplicated chunk); random
bytes (0 to 200); random CBOR arrays of ten items (the envelope's shape). The
corpus: gossip envelopes signed by a DSO (three topics, payloads of several
types), deliveries of pub/sub events the DSO signed, unsigned envelopes of
every kind, and sealed frames of a link.

    .venv/bin/python bench/fuzz_envelope.py [--inputs 1000000] [--seed 1]
        [--json bench/results/fuzz-envelope.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.errors import RemoteProtocolError
from gridmesh.protocols.pubsub import Event
from gridmesh.protocols.pubsub._wire import parse_array, parse_event
from gridmesh.security import (
    AccessPolicy,
    DecryptionFailed,
    Replayed,
    ReplayGuard,
    Role,
    create_authority,
    issue_node_certificate,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._events import EventSigner, EventVerifier
from gridmesh.security._link import Initiator, LinkCredentials, Responder
from gridmesh.security._origin import OriginSigner, OriginVerifier, signed_fields
from gridmesh.wire import Envelope, Kind, decode, encode

NOW = 1_795_000_000.0


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


def _credentials(authority_key: Ed25519PrivateKey, node_id: int, role: Role) -> LinkCredentials:
    authority = load_authority(
        create_authority("Fuzz Grid", authority_key, now=NOW - 60, valid_days=1)
    )
    key = _key(node_id)
    der = issue_node_certificate(
        authority,
        authority_key,
        key.public_key(),
        node_id=node_id,
        role=role,
        permissions=None,
        serial=node_id,
        now=NOW - 60,
        valid_days=1,
    )
    identity = verify_node_certificate(der, authority, now=NOW)
    return LinkCredentials(authority, identity, key)


def corpus(
    seed: int,
) -> tuple[list[bytes], set[bytes], list[bytes], set[bytes], object, object, EventVerifier]:
    rng = random.Random(seed)
    authority_key = _key(999)
    dso = _credentials(authority_key, 1, Role.DSO)
    meter = _credentials(authority_key, 7, Role.METER)
    signer = OriginSigner(dso, epoch=1)
    envelopes: list[bytes] = []
    genuine: set[bytes] = set()
    for index, (topic, payload) in enumerate(
        [
            ("TARIFF/RTP", 0.12),
            ("DR/COMMAND/region-7", {"reduce_kw": 500}),
            ("DSO/1/x", [1, "a", b"\x00"]),
        ]
    ):
        message = signer.sign(
            Envelope(
                Kind.GOSSIP,
                100 + index,
                1,
                1,
                topic,
                int(NOW * 1e6) - 10**6,
                8,
                [6, payload, "", False],
            )
        )
        data = encode(message)
        envelopes.append(data)
        genuine.add(signed_fields(decode(data)) + (message.auth or b""))
    event_signer = EventSigner(dso)
    events = []
    for index, value in enumerate([0.12, {"reduce_kw": 500}, [1, "a", b"\x00"], None]):
        event = Event("DR/COMMAND/region-7", value, int(NOW * 1e6), 1, index + 1, 50 + index, "kW")
        event = replace(event, auth=event_signer.sign(event.content_bytes()))
        genuine.add(event.content_bytes() + (event.auth or b""))
        events.append(event.to_wire())
    for index in range(len(events)):  # deliveries of one to all four signed events
        body = [0, index, events[: index + 1]]
        envelopes.append(encode(Envelope(Kind.PS_DELIVER, 200 + index, 2, 2, "", 0, 1, body)))
    for kind in Kind:
        envelopes.append(encode(Envelope(kind, rng.getrandbits(64), 5, 5, "T", 0, 3, [1, "x"])))
    initiator = Initiator(dso, rng)
    responder = Responder(meter, initiator.hello(), rng, NOW)
    finish, link_out = initiator.on_reply(responder.reply(), NOW)
    link_in = responder.on_finish(finish, NOW)
    plaintexts = [envelopes[0], b"", b"x" * 100]
    frames = [link_out.seal(p) for p in plaintexts]
    verifier = OriginVerifier(meter, AccessPolicy(), ReplayGuard(window=4096, freshness_s=86_400))
    event_verifier = EventVerifier(AccessPolicy(), verifier.identities, freshness_s=86_400)
    return envelopes, genuine, frames, set(plaintexts), verifier, link_in, event_verifier


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        choice = rng.randrange(6)
        if not out:
            out.append(rng.randrange(256))
        position = rng.randrange(len(out))
        if choice == 0:
            out[position] ^= 1 << rng.randrange(8)
        elif choice == 1:
            out[position] = rng.randrange(256)
        elif choice == 2:
            out.insert(position, rng.randrange(256))
        elif choice == 3:
            del out[position]
        elif choice == 4:
            del out[position:]
        else:
            chunk = out[position : position + rng.randrange(1, 16)]
            out[position:position] = chunk
    return bytes(out)


def run(inputs: int, seed: int) -> dict[str, object]:
    envelopes, genuine, frames, plaintexts, verifier, link, event_verifier = corpus(seed)
    rng = random.Random(seed)
    outcomes: dict[str, Counter[str]] = {
        "decode": Counter(),
        "verify": Counter(),
        "verify_event": Counter(),
        "open": Counter(),
    }
    sources: Counter[str] = Counter()
    started = time.perf_counter()
    for index in range(inputs):
        kind = index % 10
        if kind < 6:
            data = mutate(rng, rng.choice(envelopes))
            sources["mutated envelope"] += 1
        elif kind < 8:
            data = mutate(rng, rng.choice(frames))
            sources["mutated frame"] += 1
        elif kind == 8:
            data = rng.randbytes(rng.randrange(0, 200))
            sources["random bytes"] += 1
        else:
            data = cbor2.dumps(
                [rng.choice([1, 2, "x", None, b"", 2**64 - 1, -1, [], {}]) for _ in range(10)]
            )
            sources["random envelope shape"] += 1
        try:
            message = decode(data)
            outcomes["decode"]["ok"] += 1
        except RemoteProtocolError as error:
            outcomes["decode"][error.reason] += 1
            message = None
        except Exception as error:  # the property under test
            raise SystemExit(
                f"seed {seed} input {index}: decode raised {error!r} on {data!r}"
            ) from None
        if message is not None and message.kind is Kind.GOSSIP:
            try:
                identity = verifier.verify(message, NOW)  # type: ignore[attr-defined]
                if (
                    identity is not None
                    and signed_fields(message) + (message.auth or b"") not in genuine
                ):
                    raise SystemExit(f"seed {seed} input {index}: a forgery verified: {data!r}")
                outcomes["verify"]["ok"] += 1
            except RemoteProtocolError as error:
                outcomes["verify"][error.reason] += 1
            except SystemExit:
                raise
            except Exception as error:  # the property under test
                raise SystemExit(
                    f"seed {seed} input {index}: verify raised {error!r} on {data!r}"
                ) from None
        if message is not None and message.kind is Kind.PS_DELIVER:
            check_events(message, event_verifier, genuine, outcomes["verify_event"], seed, index)
        try:
            plaintext = link.open(data)  # type: ignore[attr-defined]
            if plaintext not in plaintexts:
                raise SystemExit(f"seed {seed} input {index}: a forged frame opened: {data!r}")
            outcomes["open"]["ok"] += 1
        except (DecryptionFailed, Replayed) as error:
            outcomes["open"][error.reason] += 1
        except SystemExit:
            raise
        except Exception as error:  # the property under test
            raise SystemExit(
                f"seed {seed} input {index}: open raised {error!r} on {data!r}"
            ) from None
    elapsed = time.perf_counter() - started
    return {
        "inputs": inputs,
        "elapsed_s": round(elapsed, 1),
        "inputs_per_s": round(inputs / elapsed),
        "sources": dict(sources),
        "outcomes": {name: dict(counts) for name, counts in outcomes.items()},
    }


def check_events(  # noqa: PLR0917 - the run's state, passed as it is
    message: Envelope,
    verifier: EventVerifier,
    genuine: set[bytes],
    outcomes: Counter[str],
    seed: int,
    index: int,
) -> None:
    """A delivery's events as a subscriber checks them: parsed, then each verified."""
    try:
        _, _, items = parse_array(message.body, "body", length=3)
        for item in parse_array(items, "events"):
            event = parse_event(item)
            verifier.verify(event.source, event.topic, event.content_bytes(), event.auth, NOW)
            if event.content_bytes() + (event.auth or b"") not in genuine:
                raise SystemExit(f"seed {seed} input {index}: a forged event verified: {item!r}")
            outcomes["ok"] += 1
    except RemoteProtocolError as error:
        outcomes[error.reason] += 1
    except SystemExit:
        raise
    except Exception as error:  # the property under test
        raise SystemExit(
            f"seed {seed} input {index}: an event check raised {error!r} on {message!r}"
        ) from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench/results/fuzz-envelope.json"))
    args = parser.parse_args()
    machine = machine_info()
    print(f"gridmesh {__version__}: fuzzing envelope, signature and link decoding")
    load = machine["load_average_at_start"]
    print(f"{machine['python']} on {machine['cpu']}, {machine['cpus']} CPUs, load {load}")
    result = run(args.inputs, args.seed)
    print(
        f"{result['inputs']:,} inputs in {result['elapsed_s']} s ({result['inputs_per_s']:,}/s); "
        "only typed errors escaped; nothing forged"
    )
    for name, counts in result["outcomes"].items():  # type: ignore[attr-defined]
        top = sorted(counts.items(), key=lambda item: -item[1])
        print(f"  {name:<7} " + ", ".join(f"{key} {value:,}" for key, value in top[:8]))
    report = {
        "benchmark": "fuzz-envelope",
        "version": __version__,
        "command": f"bench/fuzz_envelope.py --inputs {args.inputs} --seed {args.seed}",
        "machine": machine,
        **result,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
