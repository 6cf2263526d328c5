"""The envelope codec: round trips, strictness, and one typed error for bad input."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridmesh.errors import (
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
    RemoteProtocolError,
    UnsupportedVersion,
)
from gridmesh.wire import (
    BODY_DEPTH_MAX,
    HOPS_MAX,
    TOPIC_BYTES_MAX,
    UINT64_MAX,
    Envelope,
    Kind,
    check_plain,
    decode,
    encode,
    plain_bytes,
)


def tariff(**changes: object) -> Envelope:
    fields: dict[str, object] = {
        "kind": Kind.GOSSIP,
        "message_id": 0xDEADBEEF_00C0FFEE,
        "origin": 1,
        "sender": 42,
        "topic": "TARIFF/RTP/price",
        "created_us": 1_763_730_000_000_000,
        "hops_left": 7,
        "body": [9, {"price_eur_kwh": 0.081, "reason": "overproduction", "blob": b"\x00\xff"}],
    }
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def raw(items: list[object]) -> bytes:
    return cbor2.dumps(items)


def fields_of(message: Envelope) -> list[object]:
    """The ten wire items, in wire order: end-to-end fields, then per-hop fields."""
    return [
        message.version,
        int(message.kind),
        message.message_id,
        message.origin,
        message.topic,
        message.created_us,
        message.body,
        message.auth,
        message.sender,
        message.hops_left,
    ]


def with_raw_body(body: bytes) -> bytes:
    """A message whose body is the given raw CBOR bytes."""
    items = fields_of(tariff())
    head = b"\x8a" + b"".join(cbor2.dumps(item) for item in items[:6])
    return head + body + b"".join(cbor2.dumps(item) for item in items[7:])


def test_a_message_survives_encode_and_decode_unchanged() -> None:
    message = tariff(auth=b"\x01" * 64)
    assert decode(encode(message)) == message


def test_encoding_is_plain_cbor_of_the_ten_items_in_wire_order() -> None:
    message = tariff()
    assert encode(message) == cbor2.dumps(fields_of(message))


def test_a_relay_forwards_the_origin_bytes_and_rewrites_only_the_tail() -> None:
    original = encode(tariff())
    received = decode(original)
    relay = received.relayed(sender=99, hops_left=6)
    forwarded = encode(relay)
    assert forwarded == cbor2.dumps(fields_of(relay))
    assert received.wire_prefix is not None and forwarded.startswith(received.wire_prefix)
    assert decode(forwarded) == relay


def test_a_non_shortest_tail_is_accepted_and_reencoded_on_relay() -> None:
    canonical = encode(tariff(hops_left=7))
    padded = canonical[:-1] + b"\x18\x07"  # hops_left=7 in a needlessly long form
    received = decode(padded)
    assert received.hops_left == 7 and received.wire_prefix is None
    assert encode(received.relayed(5, 6)) == cbor2.dumps(fields_of(received.relayed(5, 6)))


def test_decoded_kind_is_the_enum_member() -> None:
    assert decode(encode(tariff())).kind is Kind.GOSSIP


def test_every_truncation_of_a_message_is_refused_with_the_typed_error() -> None:
    data = encode(tariff())
    for cut in range(len(data)):
        with pytest.raises(MalformedMessage):
            decode(data[:cut])


def test_trailing_garbage_is_refused() -> None:
    data = encode(tariff())
    with pytest.raises(MalformedMessage, match="trailing"):
        decode(data + b"\x00")


def test_a_message_over_the_size_limit_is_refused_before_parsing() -> None:
    data = encode(tariff(body=[1, "x" * 2000]))
    with pytest.raises(MessageTooLarge) as caught:
        decode(data, message_bytes_max=1000)
    assert caught.value.size_bytes == len(data)
    assert caught.value.limit_bytes == 1000


def test_an_unknown_wire_version_is_refused() -> None:
    items = fields_of(tariff())
    items[0] = 2
    with pytest.raises(UnsupportedVersion):
        decode(raw(items))


@pytest.mark.parametrize(
    ("position", "value", "field"),
    [
        (1, 999, "kind"),
        (1, "GOSSIP", "kind"),
        (2, -1, "message_id"),
        (3, 1.5, "origin"),
        (4, b"TARIFF", "topic"),
        (4, "T" * (TOPIC_BYTES_MAX + 1), "topic"),
        (4, "é" * (TOPIC_BYTES_MAX // 2 + 1), "topic"),
        (5, -5, "created_us"),
        (7, "not bytes", "auth"),
        (7, b"x" * 5000, "auth"),
        (8, True, "sender"),
        (9, HOPS_MAX + 1, "hops_left"),
        (9, -1, "hops_left"),
    ],
)
def test_each_field_is_type_and_range_checked(position: int, value: object, field: str) -> None:
    items = fields_of(tariff())
    items[position] = value
    with pytest.raises(MalformedMessage) as caught:
        decode(raw(items))
    assert caught.value.field == field


def test_integers_beyond_64_bits_are_refused() -> None:
    items = fields_of(tariff())
    items[2] = UINT64_MAX + 1  # CBOR needs a bignum tag for it, and tags are refused
    with pytest.raises(MalformedMessage):
        decode(raw(items))


@pytest.mark.parametrize(
    "data",
    [
        cbor2.dumps({"kind": 1}),
        cbor2.dumps([1, 1, 2]),
        cbor2.dumps("hello"),
        b"",
        b"\xff",
        b"\x9f\x01\xff",  # indefinite-length array
        b"\xc1\x1a\x00\x00\x00\x00",  # tag 1: an epoch date
        b"\xd8\x1c\x80",  # tag 28: a shared value
        b"\xd9\xd9\xf7\x01",  # tag 55799: self-described CBOR
        b"\xda\x00\x01\x00\x00\x01",  # an unknown tag
        b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string claiming 2**64 bytes
    ],
)
def test_non_envelopes_tags_and_hostile_lengths_are_refused(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(data)


def test_bodies_with_tags_simple_values_or_non_text_keys_are_refused() -> None:
    assert decode(with_raw_body(b"\x01")).body == 1  # the helper builds valid messages
    for body in (b"\xc1\x00", b"\xf0", b"\xf7", b"\xa1\x01\x02", b"\xa1\x80\x01"):
        with pytest.raises(MalformedMessage):
            decode(with_raw_body(body))


def test_duplicate_map_keys_are_refused() -> None:
    with pytest.raises(MalformedMessage):
        decode(with_raw_body(b"\xa2\x61a\x01\x61a\x02"))  # {"a": 1, "a": 2}


def test_nesting_beyond_the_limit_is_refused_and_at_the_limit_accepted() -> None:
    deep: object = 0
    for _ in range(BODY_DEPTH_MAX):
        deep = [deep]
    assert decode(encode(tariff(body=deep))).body == deep
    with pytest.raises(MalformedMessage):
        decode(raw(fields_of(tariff(body=[deep]))))


def test_encoding_refuses_values_cbor_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        encode(tariff(body=object()))


def test_the_plain_data_check_refuses_values_a_peer_would_refuse() -> None:
    too_deep: object = 0
    for _ in range(BODY_DEPTH_MAX + 1):
        too_deep = [too_deep]
    for body in ({1, 2}, {1: "int key"}, object(), 2**70, too_deep):
        with pytest.raises(LocalProtocolError):
            check_plain(body)


def test_plain_data_check_accepts_every_plain_type() -> None:
    check_plain([None, True, -(2**63), UINT64_MAX, 1.5, "é", b"\x00", {"k": [1, {"n": None}]}])


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=UINT64_MAX)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    body=plain,
    message_id=st.integers(0, UINT64_MAX),
    origin=st.integers(0, UINT64_MAX),
    hops=st.integers(0, HOPS_MAX),
    topic=st.text(max_size=64),
)
def test_any_plain_message_round_trips(
    body: object, message_id: int, origin: int, hops: int, topic: str
) -> None:
    message = tariff(body=body, message_id=message_id, origin=origin, hops_left=hops, topic=topic)
    assert decode(encode(message)) == message


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_the_typed_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):  # anything else fails the test
        decode(data)


@given(sender=st.integers(0, UINT64_MAX), hops=st.integers(0, HOPS_MAX))
def test_the_cached_prefix_is_exactly_the_end_to_end_part(sender: int, hops: int) -> None:
    message = tariff(sender=sender, hops_left=hops)
    data = encode(message)
    tail = cbor2.dumps(sender) + cbor2.dumps(hops)
    assert message.wire_prefix is not None and data == message.wire_prefix + tail
    assert encode(message) == data  # and the cached path gives the same bytes


@given(value=plain | st.floats())
def test_plain_bytes_is_the_encoded_size_of_any_plain_value(value: object) -> None:
    assert plain_bytes(value) == len(cbor2.dumps(value))


def test_plain_bytes_refuses_what_is_not_plain_data() -> None:
    with pytest.raises(LocalProtocolError):
        plain_bytes({1, 2})
