"""Fuzzing the decoder: >= 100,000 random and mutated inputs, only the typed error comes out.

The inputs are seeded, so a failure names its seed and input index and is
reproducible. Every input that does decode is also fed to a real ``Node``,
which must count or handle it without raising anything at all.
"""

from __future__ import annotations

import random
from collections import Counter

import cbor2
import pytest

from gridmesh.errors import RemoteProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig, HyParViewConfig, PeerDirectory
from gridmesh.wire import Envelope, Kind, decode, encode
from tests.helpers import RecordingTransport

SEED = 20261121
INPUTS = 120_000
INTERESTING = [0x00, 0x17, 0x18, 0x1B, 0x1F, 0x3F, 0x5B, 0x7F, 0x9F, 0xBF, 0xC2, 0xD8, 0xF7, 0xFF]


def corpus() -> list[bytes]:
    def message(kind: Kind, body: object, hops: int = 3) -> bytes:
        return encode(
            Envelope(kind, 77, 5, 6, "TARIFF/RTP/price", 1_700_000_000_000_000, hops, body)
        )

    return [
        message(
            Kind.GOSSIP, [9, {"price_eur_kwh": 0.081, "valid": "2026-11-21T14:00Z"}, "", False]
        ),
        message(Kind.GOSSIP, [3.5, [1, 2.5, b"\x00\x01", None, True, {"k": ["v"]}], "g", True]),
        message(Kind.JOIN, ["127.0.0.1:9000"], hops=0),
        message(Kind.MEMBERS, [True, [[5, "127.0.0.1:9000", 12], [6, "10.0.0.2:9000", 3]]], 0),
        message(Kind.CONTROL, {"op": "status"}, hops=0),
    ]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        position = rng.randrange(len(buf) + 1)
        if choice == 0 and buf:  # flip one bit
            buf[position % len(buf)] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # an interesting byte
            buf[position % len(buf)] = rng.choice(INTERESTING)
        elif choice == 2:  # insert random bytes
            buf[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3 and buf:  # delete a run
            del buf[position : position + rng.randint(1, 8)]
        elif choice == 4:  # truncate
            del buf[position:]
        elif choice == 5:  # splice another input in
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            buf[position:position] = other[start : start + rng.randint(1, 32)]
        elif choice == 6 and len(buf) > 4:  # duplicate a chunk
            start = rng.randrange(len(buf) - 2)
            buf[position:position] = buf[start : start + rng.randint(1, 16)]
        else:  # a large length prefix
            buf[position:position] = rng.choice([b"\x5b", b"\x9b", b"\xbb", b"\x7b"]) + b"\xff" * 8
    return bytes(buf)


def random_cbor(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return rng.randint(-(2**64), 2**64)
    if choice == 1:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if choice == 2:
        return rng.randbytes(rng.randint(0, 10)).decode("latin-1")
    if choice == 3:
        return rng.randbytes(rng.randint(0, 10))
    if choice == 4:
        return rng.choice([None, True, False])
    if choice == 5:
        return cbor2.CBORTag(rng.randint(0, 60000), rng.randint(0, 5))
    if choice == 6:
        return [random_cbor(rng, depth + 1) for _ in range(rng.randint(0, 11))]
    if choice == 7:
        return {str(i): random_cbor(rng, depth + 1) for i in range(rng.randint(0, 3))}
    return [1, rng.randint(0, 70), 1, 2, 3, "t", 4, rng.randint(0, 70), random_cbor(rng), None]


def test_decoder_and_node_survive_120k_hostile_inputs() -> None:
    rng = random.Random(SEED)
    seeds = corpus()
    pool = list(seeds)
    transport = RecordingTransport()
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, 50))
    node = Node(
        1,
        transport=transport,
        rng=random.Random(SEED),
        config=NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0.5)),
        directory=directory,
    )
    node.start(0.0)
    outcomes: Counter[str] = Counter()
    for index in range(INPUTS):
        kind = index % 3
        if kind == 0:
            data = mutate(rng, rng.choice(seeds), pool)
        elif kind == 1:
            data = rng.randbytes(rng.randint(0, 120))
        else:
            data = cbor2.dumps(random_cbor(rng))
        if index % 1000 == 0:
            pool.append(data)
        try:
            message = decode(data)
        except RemoteProtocolError as error:
            outcomes[error.reason] += 1
        except Exception as error:  # the bug this test exists to catch
            raise AssertionError(f"seed {SEED} input {index} {data!r}: {error!r}") from error
        else:
            outcomes["decoded"] += 1
            try:
                node.receive(message, "127.0.0.1:1", float(index))
                node.handle_timer(float(index))
            except Exception as error:
                raise AssertionError(f"seed {SEED} input {index}: node raised {error!r}") from error
        # And the driver path that decodes itself:
        node.receive_datagram(data, "127.0.0.1:1", float(index))
    assert sum(outcomes.values()) == INPUTS >= 100_000
    # The fuzzer reaches past the parser: some inputs decode, several refusal reasons occur.
    assert outcomes["decoded"] > 1000, outcomes
    assert outcomes["malformed"] > 10_000, outcomes
    assert node.rejected is not None and node.rejected["malformed"] > 10_000


DISSEMINATION_CORPUS = [
    (Kind.GOSSIP_IHAVE, [[5, 77], [6, 78]]),
    (Kind.GOSSIP_IWANT, [[5, 77]]),
    (Kind.GOSSIP_GRAFT, [[5, 77]]),
    (Kind.GOSSIP_PRUNE, []),
    (Kind.GOSSIP_DIGEST, [1_700_000_000_000_000, [[5, 77], [9, 1]]]),
]


@pytest.mark.parametrize("mode", ["lazy", "push-pull", "tree", "hybrid", "hierarchy", "broker"])
def test_every_dissemination_mode_survives_hostile_messages(mode: str) -> None:
    """Mutated dissemination messages (IHAVE, IWANT, GRAFT, PRUNE, DIGEST, GOSSIP)."""
    rng = random.Random(SEED + 1)
    seeds = corpus() + [
        encode(Envelope(kind, 77, 5, 6, "T", 1_700_000_000_000_000, 2, body))
        for kind, body in DISSEMINATION_CORPUS
    ]
    membership: object = (
        HyParViewConfig() if mode == "tree" else FullMembershipConfig(exchange_interval_s=0)
    )
    config = NodeConfig.model_validate(
        {
            "gossip": {"mode": mode, "anti_entropy_interval_s": 1.0},
            "membership": membership,
            "groups": ["gateway"],
        }
    )
    transport = RecordingTransport()
    directory = PeerDirectory(Peer(i, str(i), "", ("gateway",)) for i in range(1, 50))
    seed_peers = (Peer(2, "127.0.0.1:2"),)
    node = Node(
        1,
        transport=transport,
        rng=random.Random(SEED),
        config=config,
        directory=directory,
        seeds=seed_peers,
    )
    node.start(0.0)
    node.broadcast("mine", topic="T", now=0.5)
    kinds = [Kind.GOSSIP] + [kind for kind, _ in DISSEMINATION_CORPUS]
    decoded = 0
    for index in range(20_000):
        if index % 2:  # bytes: mutated, then decoded
            try:
                message = decode(mutate(rng, rng.choice(seeds), seeds))
            except RemoteProtocolError:
                continue
            decoded += 1
        else:  # structure: a dissemination kind with a body that is almost right
            body = plain(rng, rng.choice([b for _, b in DISSEMINATION_CORPUS] + [[3, "x", "", 0]]))
            message = Envelope(
                rng.choice(kinds),
                rng.getrandbits(64),
                rng.randint(1, 60),
                rng.randint(1, 60),
                "T",
                rng.getrandbits(52),
                rng.randint(0, 64),
                body,
            )
        try:
            node.receive(message, "127.0.0.1:1", 1.0 + index / 100)
            node.handle_timer(1.0 + index / 100)
        except Exception as error:
            raise AssertionError(f"seed {SEED + 1} {mode} input {index}: {error!r}") from error
    assert decoded > 300
    assert node.rejected is not None and node.rejected.get("malformed", 0) > 100


def plain(rng: random.Random, template: object, depth: int = 0) -> object:
    """``template`` with some parts swapped for random plain data (no tags)."""
    if rng.random() < 0.15 or depth > 4:
        value = random_cbor(rng, 3)
        return None if isinstance(value, cbor2.CBORTag) else value
    if isinstance(template, list):
        items = [plain(rng, item, depth + 1) for item in template]
        if rng.random() < 0.1:
            items.append(rng.randint(-5, 2**64))
        return items
    if isinstance(template, int) and rng.random() < 0.3:
        return rng.choice([0, -1, 2**64 - 1, 2**64, 65, 1.5, float("inf"), True])
    return template
