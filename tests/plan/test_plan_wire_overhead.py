"""gridmesh's per-message overhead is measured with the real encoder."""

from __future__ import annotations

from fractions import Fraction

from gridmesh.plan import (
    COSE_SIGN1_EDDSA_BYTES,
    DEFAULT_TOPIC,
    Technology,
    Traffic,
    measure_wire_size,
    paper_conventions,
    plan_customers,
)
from gridmesh.wire import Envelope, Kind, decode, encode


def test_cbor_arithmetic_of_the_envelope_around_800_bytes() -> None:
    # array(10) 1 + version 1 + kind 1 + three uint64 ids 27 + topic (2 + 40) 42
    # + created_us 9 + hops 1 + body array 1 + fanout 1 + bstr(800) header 3 + group "" 1
    # + forever false 1 + null auth 1 = 90
    assert len(DEFAULT_TOPIC) == 40
    size = measure_wire_size(800, signature_bytes=0)
    assert (size.envelope_bytes, size.signature_bytes, size.message_bytes) == (90, 0, 890)


def test_the_signature_estimate_is_a_cose_sign1_with_ed25519() -> None:
    # tag 1 + array 1 + protected bstr(3) 4 + unprotected {} 1 + nil payload 1 + bstr(64) 66 = 74
    assert COSE_SIGN1_EDDSA_BYTES == 1 + 1 + (1 + 3) + 1 + 1 + (2 + 64) == 74
    # in the envelope: bstr(74) = 2 + 74 replaces the 1-byte null: +75
    size = measure_wire_size(800)
    assert size.signature_bytes == 75
    assert size.message_bytes == 965


def test_the_overhead_follows_the_cbor_length_of_payload_and_topic() -> None:
    # a payload of 23 bytes has a 1-byte header, 24..255 two, 256..65535 three
    assert measure_wire_size(23, signature_bytes=0).envelope_bytes == 88
    assert measure_wire_size(24, signature_bytes=0).envelope_bytes == 89
    assert measure_wire_size(256, signature_bytes=0).envelope_bytes == 90
    # a one-letter topic: 1 + 1 bytes instead of 2 + 40
    assert measure_wire_size(800, topic="T", signature_bytes=0).envelope_bytes == 90 - 42 + 2


def test_the_measured_size_is_what_the_encoder_produces_and_a_peer_accepts() -> None:
    size = measure_wire_size(800, topic="TARIFF/RTP/price")
    probe = Envelope(
        kind=Kind.GOSSIP,
        message_id=2**64 - 1,
        origin=2**63,
        sender=2**40,
        topic="TARIFF/RTP/price",
        created_us=1_800_000_000_000_000,
        hops_left=10,
        body=[6, bytes(800), "", False],
        auth=bytes(COSE_SIGN1_EDDSA_BYTES),
    )
    data = encode(probe)
    assert len(data) == size.message_bytes
    assert decode(data) == probe


def test_plans_with_the_overhead_use_the_wire_size() -> None:
    fiber = Technology(name="fiber", download_mbps=100, upload_mbps=100)
    traffic = Traffic(800, Fraction(1, 60), measure_wire_size(800))
    assert traffic.message_bits == 965 * 8
    (row,) = plan_customers([fiber], traffic, paper_conventions("customers"))
    # 100 * 2^20 * 60 / (965 * 8) = 814955.4 -> 814955 (983040 without the overhead)
    assert row.customers_max == 814955
