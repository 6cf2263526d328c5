"""Fuzzing COSE decoding: >= 10^6 hostile inputs, only BadSignature / DecryptionFailed escape.

What is run
-----------
Every input goes through ``verify1`` (attached, and with detached content),
``cose_kid``, ``decrypt0`` (under a 16- and a 32-byte key) and
``encrypt0_kid``. Two properties are checked on each call:

* **only the typed errors escape**: anything but ``BadSignature`` from the
  Sign1 functions or ``DecryptionFailed`` from the Encrypt0 ones stops the
  run, printing the seed, the input index and the input;
* **nothing is forged**: whatever ``verify1`` or ``decrypt0`` accepts returns
  content that was really signed or encrypted by the corpus's keys (a mutation
  of the unsigned parts, the unprotected map or the tag, may still verify).

Inputs (seeded, ``random.Random(seed)``), in turn:

1. byte mutations of a corpus message (bit flips, COSE-interesting bytes,
   insertions, deletions, truncation, splices, duplicated chunks, huge
   length prefixes), 1 to 4 at a time;
2. structure mutations: a corpus message decoded with cbor2, one field or
   header replaced by a near-miss value (other algorithm, wrong lengths,
   crit lists, labels in both buckets, nested junk, tags), re-encoded;
3. random bytes (0 to 120);
4. random CBOR (cbor2.dumps of random values, tags included).

The corpus: Sign1 attached / detached / tagged / with crit and unknown
headers / kid unprotected, Encrypt0 under all four algorithms, and the
published vectors in tests/data/cose.

Outcomes are counted per function as ``ok`` or ``<reason>:<field>`` (the
field the refusal names), which shows how deep the inputs reach.

    .venv/bin/python bench/fuzz_cose.py [--inputs 1000000] [--seed 1]
        [--json bench/results/fuzz-cose.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.security._cose import (
    _encrypt0_assemble,
    _sign1_assemble,
    cose_kid,
    decrypt0,
    encrypt0,
    encrypt0_kid,
    sign1,
    verify1,
)
from gridmesh.security._errors import BadSignature, DecryptionFailed

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "cose"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
KID = b"meter-0042"
PAYLOAD = b'{"price_eur_kwh": 0.081, "valid": "2026-11-21T14:00Z"}'
ENVELOPE = bytes(range(200))
KEY_16 = bytes(range(16))
KEY_32 = bytes(range(32))
IV = bytes.fromhex("0102030405060708090a0b0c")
INTERESTING = [
    *(0x00, 0x01, 0x17, 0x18, 0x19, 0x1B, 0x1F, 0x20, 0x27, 0x38, 0x3F, 0x40, 0x41, 0x58),
    *(0x5B, 0x5F, 0x60, 0x7F, 0x80, 0x83, 0x84, 0x85, 0x9F, 0xA0, 0xA1, 0xBF, 0xC0),
    *(0xD0, 0xD2, 0xD8, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF),
]
NEAR_MISS_VALUES: list[object] = [
    *(-8, -7, -35, 1, 2, 3, 10, 24, 0, -1, 2**64 - 1, -(2**64)),
    *("EdDSA", "", b"", b"\x00" * 11, b"\x00" * 12, b"\x00" * 13, b"\x00" * 63, b"\x00" * 64),
    *(None, True, False, [], [4], [99], [1, 4], {}, {1: -8}, [[[[[[[[[[1]]]]]]]]]]),
    *(cbor2.CBORTag(24, b"\xa0"), cbor2.CBORTag(18, []), 1.5, b"\xa0", b"\xa1\x01\x27"),
]
LABELS: list[object] = [1, 2, 3, 4, 5, 6, 11, 99, -65537, "x", ""]


def corpus() -> tuple[list[bytes], set[bytes]]:
    """Valid messages and the contents they protect (what may legitimately come out)."""
    messages = [
        sign1(PAYLOAD, KEY, kid=KID),
        b"\xd2" + sign1(PAYLOAD, KEY, kid=KID),
        sign1(None, KEY, kid=KID, detached=ENVELOPE),
        sign1(b"", KEY, kid=b""),
        _sign1_assemble(
            cbor2.dumps({1: -8, 2: [4], 3: 60, 4: KID, 99: [1, "x"]}),
            {"relay": {1: b""}, 11: [b"\xa0", {}, bytes(64)]},
            PAYLOAD,
            KEY,
            external_aad=b"",
            detached=None,
        ),
        _sign1_assemble(
            cbor2.dumps({1: -8}), {4: KID}, PAYLOAD, KEY, external_aad=b"", detached=None
        ),
        encrypt0(PAYLOAD, KEY_16, kid=KID, iv=IV, alg=1),
        encrypt0(PAYLOAD, KEY_32[:24], kid=KID, iv=IV, alg=2),
        encrypt0(PAYLOAD, KEY_32, kid=KID, iv=IV, alg=3),
        b"\xd0" + encrypt0(PAYLOAD, KEY_32, kid=KID, iv=IV, alg=24),
        _encrypt0_assemble(
            cbor2.dumps({1: 1, 5: IV}), {4: KID}, ENVELOPE, KEY_16, iv=IV, alg=1, external_aad=b""
        ),
    ]
    for path in sorted(VECTORS.glob("*.json")):
        messages.append(bytes.fromhex(json.loads(path.read_text())["output_cbor_hex"]))
    return messages, {PAYLOAD, ENVELOPE, b""}


def mutate_bytes(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        position = rng.randrange(len(buffer) + 1)
        if choice == 0 and buffer:
            buffer[position % len(buffer)] ^= 1 << rng.randrange(8)
        elif choice == 1 and buffer:
            buffer[position % len(buffer)] = rng.choice(INTERESTING)
        elif choice == 2:
            buffer[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3 and buffer:
            del buffer[position : position + rng.randint(1, 8)]
        elif choice == 4:
            del buffer[position:]
        elif choice == 5:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buffer[position:position] = other[start : start + rng.randint(1, 32)]
        elif choice == 6 and len(buffer) > 4:
            start = rng.randrange(len(buffer) - 2)
            buffer[position:position] = buffer[start : start + rng.randint(1, 16)]
        else:
            buffer[position:position] = (
                rng.choice([b"\x5b", b"\x9b", b"\xbb", b"\x7b"]) + b"\xff" * 8
            )
    return bytes(buffer)


def mutate_structure(rng: random.Random, data: bytes) -> bytes:
    """Decode, change one field or header to a near miss, encode again."""
    tagged = data[:1] in (b"\xd0", b"\xd2")
    fields = list(cbor2.loads(data[1:] if tagged else data))
    index = rng.randrange(len(fields) + 2)
    if index == len(fields):  # one field more or one fewer
        fields = fields[:-1] if rng.random() < 0.5 else [*fields, rng.choice(NEAR_MISS_VALUES)]
    elif index == len(fields) + 1 or index == 0:  # a protected header
        headers = cbor2.loads(fields[0]) if fields[0] else {}
        headers[rng.choice(LABELS)] = rng.choice(NEAR_MISS_VALUES)
        if rng.random() < 0.2:
            headers.pop(rng.choice(LABELS), None)
        fields[0] = cbor2.dumps(headers)
    elif index == 1 and isinstance(fields[1], dict):
        fields[1][rng.choice(LABELS)] = rng.choice(NEAR_MISS_VALUES)
    else:
        fields[index] = rng.choice(NEAR_MISS_VALUES)
    encoded = cbor2.dumps(fields)
    return data[:1] + encoded if tagged and rng.random() < 0.8 else encoded


def random_cbor(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.randint(-(2**64), 2**64 - 1)
    if choice == 1:
        return rng.choice(NEAR_MISS_VALUES)
    if choice == 2:
        return rng.randbytes(rng.randint(0, 10)).decode("latin-1")
    if choice == 3:
        return rng.randbytes(rng.choice([0, 1, 12, 16, 64, rng.randint(0, 80)]))
    if choice == 4:
        return rng.choice([None, True, False])
    if choice == 5:
        return cbor2.CBORTag(rng.choice([16, 18, 24, 96, 98, rng.randint(0, 60000)]), 1)
    if choice == 6:
        return [random_cbor(rng, depth + 1) for _ in range(rng.choice([3, 4, rng.randint(0, 6)]))]
    if choice == 7:
        return {rng.choice(LABELS): random_cbor(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [cbor2.dumps({1: rng.choice([-8, 1, 3, 24]), 4: KID}), {}, PAYLOAD, bytes(64)]


def checks() -> list[tuple[str, Callable[[bytes], bytes], type[Exception]]]:
    return [
        ("verify1", lambda data: verify1(data, PUBLIC), BadSignature),
        ("verify1_detached", lambda data: verify1(data, PUBLIC, detached=ENVELOPE), BadSignature),
        ("cose_kid", cose_kid, BadSignature),
        ("decrypt0_16", lambda data: decrypt0(data, KEY_16), DecryptionFailed),
        ("decrypt0_32", lambda data: decrypt0(data, KEY_32), DecryptionFailed),
        ("encrypt0_kid", encrypt0_kid, DecryptionFailed),
    ]


def run(inputs: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    messages, genuine = corpus()
    pool = list(messages)
    outcomes: dict[str, Counter[str]] = {name: Counter() for name, _, _ in checks()}
    sources: Counter[str] = Counter()
    calls = checks()
    started = time.perf_counter()
    for index in range(inputs):
        kind = index % 4
        if kind in (0, 1):
            data = mutate_bytes(rng, rng.choice(pool), pool)
            sources["byte_mutation"] += 1
        elif kind == 2 and rng.random() < 0.7:
            data = mutate_structure(rng, rng.choice(messages))
            sources["structure_mutation"] += 1
        elif rng.random() < 0.5:
            data = rng.randbytes(rng.randint(0, 120))
            sources["random_bytes"] += 1
        else:
            data = cbor2.dumps(random_cbor(rng))
            sources["random_cbor"] += 1
        if index % 10_000 == 0 and len(pool) < 200:
            pool.append(data)
        for name, call, allowed in calls:
            try:
                content = call(data)
            except allowed as error:
                field = getattr(error, "field", None) or "message"
                outcomes[name][f"{error.reason}:{field}"] += 1  # type: ignore[attr-defined]
            except Exception as error:
                raise AssertionError(
                    f"seed {seed} input {index}: {name} raised {error!r} on {data.hex()}"
                ) from error
            else:
                outcomes[name]["ok"] += 1
                if name not in {"cose_kid", "encrypt0_kid"} and content not in genuine:
                    raise AssertionError(f"seed {seed} input {index}: {name} forged {data.hex()}")
        if index and index % 100_000 == 0:
            rate = index / (time.perf_counter() - started)
            print(f"  {index:>9,} inputs, {rate:,.0f} inputs/s", flush=True)
    elapsed_s = time.perf_counter() - started
    return {
        "inputs": inputs,
        "calls": inputs * len(calls),
        "elapsed_s": round(elapsed_s, 2),
        "inputs_per_s": round(inputs / elapsed_s),
        "sources": dict(sorted(sources.items())),
        "corpus_messages": len(messages),
        "outcomes": {name: dict(sorted(counts.items())) for name, counts in outcomes.items()},
        "escaped_other_exceptions": 0,
        "forged": 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench/results/fuzz-cose.json"))
    args = parser.parse_args()
    load = os.getloadavg()
    machine = machine_info()
    print(f"{machine['python']} on {machine['platform']}")
    print(f"{machine['cpu']}, {machine['cpus']} CPUs, load average at start {load[0]:.2f}")
    print(f"fuzzing COSE decoding with {args.inputs:,} inputs, seed {args.seed}\n")
    result = run(args.inputs, args.seed)
    print(f"\n{result['inputs']:,} inputs ({result['calls']:,} calls) in {result['elapsed_s']} s")
    print(f"{result['inputs_per_s']:,} inputs/s; only typed errors escaped; nothing forged")
    print(f"sources: {result['sources']}")
    for name, counts in result["outcomes"].items():  # type: ignore[attr-defined]
        top = sorted(counts.items(), key=lambda item: -item[1])
        print(f"  {name:<17} " + ", ".join(f"{key} {value:,}" for key, value in top[:8]))
    report = {
        "benchmark": "fuzz-cose",
        "version": __version__,
        "seed": args.seed,
        "command": f"bench/fuzz_cose.py --inputs {args.inputs} --seed {args.seed}",
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        **result,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
