"""Envelope <-> bytes, as CBOR (RFC 8949).

Theory of operation
-------------------
An envelope is encoded as one CBOR array of ten items, in this order::

    [version, kind, message_id, origin, topic, created_us, body, auth,   <- end-to-end
     sender, hops_left]                                                   <- per hop

A CBOR array is its head followed by its items' encodings, so the bytes split
into an end-to-end *prefix* (head + first eight items) and a per-hop *tail*.
The codec caches the prefix on the envelope (``wire_prefix``): a relay's copy
is the origin's prefix, verbatim, plus a fresh two-item tail. Decoding keeps
the received prefix when the tail is in shortest form, so a relay never
re-encodes what it forwards — which later lets signatures cover exactly the
prefix.

Decoding is strict, because every byte comes from a peer that may be broken
or hostile:

1. the size is checked against ``message_bytes_max`` *before* parsing, which
   bounds every allocation the parser can make;
2. the CBOR parser runs with indefinite-length items, duplicate map keys and
   non-text map keys refused, nesting bounded, and **every tag refused** (tags
   would let a peer build dates, decimals, shared references or cycles);
3. exactly one item must fill the buffer: trailing bytes are an error;
4. each field is type- and range-checked, and the body is walked to prove it
   is plain data (see ``_envelope``), with a visit budget so a hostile body
   costs at most linear time.

Whatever goes wrong, the only exception that leaves ``decode`` is a
``RemoteProtocolError`` subclass. ``encode`` trusts its caller for the body:
application data is checked with ``check_plain`` where it enters the node
(``Node.broadcast``), and protocol bodies are built from checked parts —
walking every body on every send would cost more than the rest of encoding.
"""

from __future__ import annotations

import io

import cbor2

from gridmesh.errors import (
    LocalProtocolError,
    MalformedMessage,
    MessageTooLarge,
    UnsupportedVersion,
)
from gridmesh.wire._envelope import (
    AUTH_BYTES_MAX,
    BODY_DEPTH_MAX,
    HOPS_MAX,
    MESSAGE_BYTES_MAX,
    TOPIC_BYTES_MAX,
    UINT64_MAX,
    WIRE_VERSION,
    Envelope,
    Kind,
)

__all__ = ["check_plain", "decode", "decode_plain", "encode", "int_bytes", "plain_bytes"]

_FIELD_COUNT = 10
# Tags cbor2 decodes itself (dates, bignums, decimals, regexes, shared values,
# sets, IP addresses, self-describe ...). Others reach the tag hook.
_SEMANTIC_TAGS = (
    *(0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261),
    *(262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 1004, 1040, 43000, 55799),
)
_KINDS = {int(kind): kind for kind in Kind}
_ARRAY_HEAD = b"\x8a"  # CBOR: array of ten items
_dumps = cbor2.dumps
# Scalars that are plain data whatever their value (ints are range-checked).
_UNCHECKED = frozenset({type(None), bool, float, str, bytes})
_INT_MIN = -UINT64_MAX - 1


def _refuse_semantic_tag(value: object, immutable: bool) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed in gridmesh messages")


def _refuse_tag(decoder: object, tag: object) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed in gridmesh messages")


_REFUSE_SEMANTIC = dict.fromkeys(_SEMANTIC_TAGS, _refuse_semantic_tag)
# Errors the parser is known to raise on hostile input besides its own.
_PARSER_ERRORS = (
    cbor2.CBORDecodeError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    MemoryError,
    UnicodeError,
)


def encode(message: Envelope) -> bytes:
    """Encode ``message``; raises ``LocalProtocolError`` if CBOR cannot carry a value.

    The body must be plain data (see ``check_plain``); this is not re-checked here.
    """
    prefix = message.wire_prefix
    if prefix is not None:  # a relay: the origin's bytes, then a fresh per-hop tail
        return prefix + _dumps([message.sender, message.hops_left])[1:]
    try:
        data = _dumps(
            [
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
        )
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise LocalProtocolError(f"message cannot be encoded: {exc}") from exc
    tail_bytes = int_bytes(message.sender) + int_bytes(message.hops_left)
    object.__setattr__(message, "wire_prefix", data[: len(data) - tail_bytes])  # a cache
    return data


def int_bytes(number: int) -> int:
    """Bytes CBOR takes for an integer in -2**64..2**64-1 (RFC 8949, section 3.1)."""
    magnitude = number if number >= 0 else -1 - number
    if magnitude < 24:
        return 1
    if magnitude < 0x100:
        return 2
    if magnitude < 0x10000:
        return 3
    return 5 if magnitude < 0x1_0000_0000 else 9


def plain_bytes(value: object) -> int:
    """Bytes CBOR takes for plain data ``value`` as ``encode`` writes it, without encoding it.

    Floats take 9 bytes (cbor2 writes them as doubles), infinities and NaN 3
    (half precision); text is counted in UTF-8. About twice as fast as
    encoding for small values. ``value`` must be plain data (``check_plain``).
    """
    if type(value) is str:
        size = len(value) if value.isascii() else len(value.encode())
        return int_bytes(size) + size
    if type(value) is int:
        return int_bytes(value)
    if type(value) is float:
        return 9 if value - value == 0.0 else 3
    if type(value) is dict:
        return int_bytes(len(value)) + sum(
            plain_bytes(key) + plain_bytes(item) for key, item in value.items()
        )
    if type(value) is list or type(value) is tuple:
        return int_bytes(len(value)) + sum(plain_bytes(item) for item in value)
    if type(value) is bytes:
        return int_bytes(len(value)) + len(value)
    if type(value) is bool or value is None:
        return 1
    raise LocalProtocolError(f"{type(value).__name__} is not plain data")


def decode(data: bytes, *, message_bytes_max: int = MESSAGE_BYTES_MAX) -> Envelope:
    """Decode one message; any problem raises a ``RemoteProtocolError``."""
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size > message_bytes_max:
        raise MessageTooLarge(size, message_bytes_max)
    if size == 0:
        raise MalformedMessage("empty message")
    item = _strict_item(data, size)
    message = _envelope_from_item(item, size)
    tail = _dumps(message.sender) + _dumps(message.hops_left)
    if data.startswith(_ARRAY_HEAD) and data.endswith(tail):
        object.__setattr__(message, "wire_prefix", data[: size - len(tail)])
    return message


def _strict_item(data: bytes, size: int) -> object:
    """The one CBOR item ``data`` holds, decoded strictly (see the module docstring)."""
    buffer = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(
            buffer,
            tag_hook=_refuse_tag,
            semantic_decoders=_REFUSE_SEMANTIC,
            max_depth=BODY_DEPTH_MAX + 2,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        ).decode()
    except _PARSER_ERRORS as exc:
        raise MalformedMessage(f"not well-formed CBOR: {exc}") from None
    if buffer.tell() != size:
        raise MalformedMessage(f"{size - buffer.tell()} trailing bytes after the message")
    return item


def decode_plain(data: bytes) -> object:
    """Plain data from CBOR bytes a peer sent (a sealed payload's plaintext, say).

    The envelope decoder's rules: no tags, no indefinite lengths, no duplicate
    keys, bounded nesting, one item, plain data; any problem raises ``MalformedMessage``.
    """
    item = _strict_item(data, len(data))
    try:
        check_plain(item, visits_max=len(data))
    except LocalProtocolError as exc:
        raise MalformedMessage(str(exc)) from None
    return item


def _envelope_from_item(item: object, size: int) -> Envelope:
    if type(item) is not list:
        raise MalformedMessage(f"expected an array, got {type(item).__name__}")
    if len(item) != _FIELD_COUNT:
        raise MalformedMessage(f"expected {_FIELD_COUNT} fields, got {len(item)}")
    version, kind, message_id, origin, topic, created_us, body, auth, sender, hops_left = item
    if version != WIRE_VERSION or type(version) is not int:
        raise UnsupportedVersion(version)
    if type(kind) is not int or kind not in _KINDS:
        raise MalformedMessage(f"unknown message kind {kind!r}", field="kind")
    _check_uint64(message_id, "message_id")
    _check_uint64(origin, "origin")
    _check_uint64(sender, "sender")
    _check_uint64(created_us, "created_us")
    if type(topic) is not str:
        raise MalformedMessage("expected text", field="topic")
    if len(topic) > TOPIC_BYTES_MAX or len(topic.encode()) > TOPIC_BYTES_MAX:
        raise MalformedMessage(f"longer than {TOPIC_BYTES_MAX} bytes", field="topic")
    if type(hops_left) is not int or not 0 <= hops_left <= HOPS_MAX:
        raise MalformedMessage(f"expected an integer in 0..{HOPS_MAX}", field="hops_left")
    if auth is not None and (type(auth) is not bytes or len(auth) > AUTH_BYTES_MAX):
        raise MalformedMessage(f"expected null or at most {AUTH_BYTES_MAX} bytes", field="auth")
    try:
        check_plain(body, visits_max=size)
    except LocalProtocolError as exc:
        raise MalformedMessage(str(exc), field="body") from None
    return Envelope(
        _KINDS[kind], message_id, origin, sender, topic, created_us, hops_left, body, auth, version
    )


def _check_uint64(value: object, field: str) -> None:
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise MalformedMessage("expected an unsigned 64-bit integer", field=field)


def check_plain(value: object, *, visits_max: int = 1_000_000) -> None:
    """Raise ``LocalProtocolError`` unless ``value`` is plain data (see ``_envelope``)."""
    if visits_max < 1:
        raise LocalProtocolError("body has too many items")
    kind = type(value)
    if kind is int:
        if not _INT_MIN <= value <= UINT64_MAX:  # type: ignore[operator]
            raise LocalProtocolError("integers must fit in 64 bits")
    elif kind not in _UNCHECKED:
        _walk(value, kind, BODY_DEPTH_MAX, [visits_max - 1])


def _walk(value: object, kind: type, depth_left: int, budget: list[int]) -> None:
    """Check a container's elements; scalars are checked inline, one call per container.

    Every element is a visit, as is the top-level value: ``budget`` bounds the work.
    """
    if kind is list or kind is tuple:
        elements = value
    elif kind is dict:
        for key in value:  # type: ignore[attr-defined]
            if type(key) is not str:
                raise LocalProtocolError("map keys must be text")
        elements = value.values()  # type: ignore[attr-defined]
    else:
        raise LocalProtocolError(f"{kind.__name__} is not plain data")
    if depth_left <= 0:
        raise LocalProtocolError(f"body nested deeper than {BODY_DEPTH_MAX}")
    budget[0] -= len(value)  # type: ignore[arg-type]
    if budget[0] < 0:
        raise LocalProtocolError("body has too many items")
    for element in elements:  # type: ignore[attr-defined]
        element_kind = type(element)
        if element_kind is int:
            if not _INT_MIN <= element <= UINT64_MAX:
                raise LocalProtocolError("integers must fit in 64 bits")
        elif element_kind not in _UNCHECKED:
            _walk(element, element_kind, depth_left - 1, budget)
