"""The link handshake and sealed frames: who may talk, and what a frame may be."""

from __future__ import annotations

import contextlib
import random

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridmesh.security import (
    BadSignature,
    CertificateInvalid,
    CertificateRevoked,
    DecryptionFailed,
    Replayed,
    RevocationSet,
    Role,
    SecurityError,
    Uncertified,
    create_authority,
    issue_node_certificate,
    load_authority,
    make_revocation,
    verify_node_certificate,
    verify_revocation,
)
from gridmesh.security._link import WINDOW_FRAMES, Initiator, Link, LinkCredentials, Responder

NOW = 1_795_000_000.0


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


class Grid:
    """An authority and the credentials of the nodes it issues."""

    def __init__(self, name: str = "Test Grid", seed: int = 1) -> None:
        self.key = key(seed)
        self.authority = load_authority(
            create_authority(name, self.key, now=NOW - 10, valid_days=30)
        )
        self.serial = 100

    def node(
        self, node_id: int, role: Role = Role.METER, revocations: RevocationSet | None = None
    ) -> LinkCredentials:
        self.serial += 1
        node_key = key(node_id * 7919)
        der = issue_node_certificate(
            self.authority,
            self.key,
            node_key.public_key(),
            node_id=node_id,
            role=role,
            permissions=None,
            serial=self.serial,
            now=NOW - 10,
            valid_days=10,
        )
        identity = verify_node_certificate(der, self.authority, now=NOW)
        return LinkCredentials(self.authority, identity, node_key, revocations)


def handshake(a: LinkCredentials, b: LinkCredentials, seed: int = 1) -> tuple[Link, Link]:
    rng = random.Random(seed)
    initiator = Initiator(a, rng)
    responder = Responder(b, initiator.hello(), rng, NOW)
    finish, link_a = initiator.on_reply(responder.reply(), NOW)
    link_b = responder.on_finish(finish, NOW)
    return link_a, link_b


def test_two_certified_nodes_establish_a_link_and_each_knows_the_other() -> None:
    grid = Grid()
    meter, dso = grid.node(7), grid.node(1, Role.DSO)
    link_meter, link_dso = handshake(meter, dso)
    assert link_meter.peer.node_id == 1 and link_meter.peer.role is Role.DSO
    assert link_dso.peer.node_id == 7 and link_dso.peer.role is Role.METER
    assert link_meter.link_id == link_dso.link_id
    assert link_dso.open(link_meter.seal(b"reading 3.2 kW")) == b"reading 3.2 kW"
    assert link_meter.open(link_dso.seal(b"tariff 0.12")) == b"tariff 0.12"


def test_a_node_certified_by_another_authority_cannot_start_or_answer_a_handshake() -> None:
    grid, rogue = Grid(), Grid("Rogue Grid", seed=2)
    honest, intruder = grid.node(7), rogue.node(8)
    with pytest.raises(CertificateInvalid):
        Responder(honest, Initiator(intruder, random.Random(1)).hello(), random.Random(2), NOW)
    initiator = Initiator(honest, random.Random(1))
    # The intruder checks the honest node against the real authority, and answers with
    # the certificate its own authority gave it.
    posing = LinkCredentials(grid.authority, intruder.identity, intruder.key)
    forged = Responder(posing, initiator.hello(), random.Random(2), NOW)
    with pytest.raises(CertificateInvalid):
        initiator.on_reply(forged.reply(), NOW)


def test_a_revoked_node_is_refused() -> None:
    grid = Grid()
    meter = grid.node(7)
    revocations = RevocationSet()
    revocation = make_revocation(
        grid.key, meter.identity.serial, now=NOW, expires_at=meter.identity.not_after
    )
    revocations.add(verify_revocation(revocation, grid.authority.public_key))
    dso = grid.node(1, Role.DSO, revocations)
    with pytest.raises(CertificateRevoked):
        Responder(dso, Initiator(meter, random.Random(1)).hello(), random.Random(2), NOW)


def test_a_man_in_the_middle_who_swaps_the_ephemeral_key_is_caught() -> None:
    grid = Grid()
    initiator = Initiator(grid.node(7), random.Random(1))
    responder = Responder(grid.node(1, Role.DSO), initiator.hello(), random.Random(2), NOW)
    reply = list(responder.reply())
    reply[1] = bytes(32 - 1) + b"\x09"  # the attacker's own X25519 key
    with pytest.raises(BadSignature):
        initiator.on_reply(reply, NOW)


def test_a_certificate_replayed_without_its_key_cannot_finish_the_handshake() -> None:
    grid = Grid()
    victim = grid.node(7)
    thief = LinkCredentials(grid.authority, victim.identity, key(999))  # the cert, not the key
    initiator = Initiator(thief, random.Random(1))
    responder = Responder(grid.node(1, Role.DSO), initiator.hello(), random.Random(2), NOW)
    finish, _ = initiator.on_reply(responder.reply(), NOW)
    with pytest.raises(BadSignature):
        responder.on_finish(finish, NOW)


def test_a_replayed_frame_is_refused_and_reordering_within_the_window_is_not() -> None:
    link_a, link_b = handshake(Grid().node(7), Grid().node(1, Role.DSO))
    frames = [link_a.seal(bytes([n])) for n in range(5)]
    assert link_b.open(frames[2]) == b"\x02"
    assert link_b.open(frames[0]) == b"\x00"  # late, but within the window
    with pytest.raises(Replayed):
        link_b.open(frames[2])
    with pytest.raises(Replayed):
        link_b.open(frames[0])
    assert [link_b.open(frames[n]) for n in (4, 1, 3)] == [b"\x04", b"\x01", b"\x03"]


def test_a_frame_older_than_the_window_is_refused() -> None:
    link_a, link_b = handshake(Grid().node(7), Grid().node(1, Role.DSO))
    first = link_a.seal(b"old")
    for _ in range(WINDOW_FRAMES):
        link_b.open(link_a.seal(b"new"))
    with pytest.raises(Replayed):
        link_b.open(first)


def test_a_tampered_or_foreign_frame_does_not_open() -> None:
    grid = Grid()
    link_a, link_b = handshake(grid.node(7), grid.node(1, Role.DSO))
    link_c, _ = handshake(grid.node(8), grid.node(2, Role.DSO), seed=2)
    frame = bytearray(link_a.seal(b"command: reduce 500 kW"))
    frame[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        link_b.open(bytes(frame))
    with pytest.raises(DecryptionFailed):
        link_b.open(link_c.seal(b"hello"))
    # A failed frame does not move the window: the genuine one still opens.
    genuine = link_a.seal(b"x")
    forged = bytearray(genuine)
    forged[-3] ^= 0x80
    with pytest.raises(DecryptionFailed):
        link_b.open(bytes(forged))
    assert link_b.open(genuine) == b"x"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        [1, b"", b"", b""],
        [2, b"c", bytes(32), bytes(16)],
        "hello",
        [1, "c", bytes(32), bytes(16)],
    ],
)
def test_a_malformed_hello_is_refused_as_uncertified(body: object) -> None:
    with pytest.raises(SecurityError):
        Responder(Grid().node(1, Role.DSO), body, random.Random(1), NOW)


def test_garbage_frames_raise_only_security_errors() -> None:
    link_a, link_b = handshake(Grid().node(7), Grid().node(1, Role.DSO))
    rng = random.Random(5)
    genuine = link_a.seal(b"payload" * 10)
    for trial in range(3000):
        if trial % 2:
            data = rng.randbytes(rng.randrange(0, 120))
        else:
            mutated = bytearray(genuine)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        if data == genuine:
            continue
        with contextlib.suppress(DecryptionFailed, Replayed):
            link_b.open(data)
    assert link_b.open(genuine) == b"payload" * 10  # no mutation opened, nor moved the window


def test_the_same_seed_gives_the_same_handshake_bytes() -> None:
    grid = Grid()
    a, b = grid.node(7), grid.node(1, Role.DSO)

    def run() -> bytes:
        link_a, _ = handshake(a, b, seed=3)
        return link_a.seal(b"x")

    assert run() == run()
    assert cbor2.loads(run())[1] == 1
    with pytest.raises(Uncertified):
        Initiator(a, random.Random(1)).on_reply([b"", b"", b"", b""], NOW)


def test_a_hello_flood_from_one_address_is_throttled_before_any_signature() -> None:
    from gridmesh.security import Throttled
    from gridmesh.security._links import HELLO, LinkTable

    grid = Grid()
    table = LinkTable(grid.node(1, Role.DSO), random.Random(1))
    hello = Initiator(grid.node(7), random.Random(2)).hello()
    fresh = [Initiator(grid.node(7), random.Random(n)).hello() for n in range(3, 23)]
    answered = throttled = 0
    for body in [hello, *fresh]:  # 21 different HELLOs within the same second
        try:
            table.on_handshake("10.0.0.7:7000", HELLO, body, NOW)
            answered += 1
        except Throttled:
            throttled += 1
    assert answered == 4 and throttled == 17  # the burst, then nothing
    assert table.stats()["sec_hellos_throttled"] == 17
    # Another address is not affected, and the flooder recovers after a pause.
    table.on_handshake("10.0.0.8:7000", HELLO, hello, NOW)
    table.on_handshake("10.0.0.7:7000", HELLO, fresh[0], NOW + 1.0)


def test_a_hello_flood_from_many_addresses_costs_at_most_the_total_budget() -> None:
    from gridmesh.security import Throttled
    from gridmesh.security._links import HELLO, LinkTable

    grid = Grid()
    table = LinkTable(
        grid.node(1, Role.DSO), random.Random(1), hellos_total_per_s=10.0, hellos_total_burst=20.0
    )
    hellos = [Initiator(grid.node(7), random.Random(n)).hello() for n in range(60)]
    answered = 0
    for index, body in enumerate(hellos):  # 60 addresses, one HELLO each, in one second
        try:
            table.on_handshake(f"10.0.{index}.1:7000", HELLO, body, NOW)
            answered += 1
        except Throttled:
            pass
    assert answered == 20  # the total burst: 20 signatures, not 60
    assert table.stats()["sec_hellos_shed"] == 40
    # The budget refills at its rate: half a second later, five more are answered.
    later = 0
    for index, body in enumerate(hellos[:10]):
        try:
            table.on_handshake(f"10.1.{index}.1:7000", HELLO, body, NOW + 0.5)
            later += 1
        except Throttled:
            pass
    assert later == 5
