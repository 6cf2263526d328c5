"""Events <-> database rows, the same for every backend.

Theory of operation
-------------------
A stored event is one row::

    (source, event_id, seq, topic, time_us, unit, value, stored_us)

SQL databases have signed 64-bit integers (SQLite ``INTEGER``, PostgreSQL
``BIGINT``) while an event's ``source``, ``event_id``, ``seq`` and ``time_us``
are unsigned 64-bit. Each is therefore stored *biased*: ``x - 2**63``, which
maps ``0..2**64-1`` onto ``-2**63..2**63-1`` one to one and keeps order, so a
range or an ``ORDER BY`` on the stored column is the same range or order on
the event's value. ``stored_us`` is the historian's own clock (microseconds
since the Unix epoch) and is stored as it is.

``value`` is plain data (see ``gridmesh.wire``) encoded as CBOR. It is checked
with the wire's ``check_plain`` before it is written and decoded strictly when
it is read: unknown tags, indefinite lengths and duplicate keys are refused
and depth is bounded by the parser, then ``check_plain`` walks the result and
refuses whatever a known tag could have built (a date, a bignum, a set, a
shared-reference cycle). A row that fails is reported as a
corrupt database (``HistorianError``), never returned as an odd object. As on
the wire, a tuple comes back as a list.

Every event of a batch is checked before anything is written, so a bad event
fails the whole ``append`` with ``LocalProtocolError`` and nothing is stored.
The checks are those of the strictest backend: a unit holding U+0000 is
refused because PostgreSQL text cannot hold it.
"""

from __future__ import annotations

import cbor2

from gridmesh.errors import LocalProtocolError
from gridmesh.historian._errors import HistorianError
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import validate_topic_name
from gridmesh.wire import BODY_DEPTH_MAX, MESSAGE_BYTES_MAX, TOPIC_BYTES_MAX, UINT64_MAX
from gridmesh.wire import check_plain as _check_plain

__all__ = [
    "BIAS",
    "SCHEMA_VERSION",
    "UNIT_BYTES_MAX",
    "VALUE_BYTES_MAX",
    "Row",
    "event_from_row",
    "row_from_event",
    "to_stored",
]

#: The version of the tables every backend creates; a database of a newer one is refused.
SCHEMA_VERSION = 1
#: Added to a stored integer to get the unsigned value back.
BIAS = 2**63
UNIT_BYTES_MAX = TOPIC_BYTES_MAX
#: An event arrived in one message, so its value fits in one.
VALUE_BYTES_MAX = MESSAGE_BYTES_MAX

#: ``(source, event_id, seq, topic, time_us, unit, value, stored_us)``, integers biased.
Row = tuple[int, int, int, str, int, str, bytes, int]
_DECODE_ERRORS = (
    cbor2.CBORDecodeError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    MemoryError,
    UnicodeError,
    LocalProtocolError,
)


def to_stored(value: int) -> int:
    """An unsigned 64-bit integer as stored (biased into the signed range)."""
    return value - BIAS


def row_from_event(event: object, stored_us: int) -> Row:
    """The row for ``event``; raises ``LocalProtocolError`` if it cannot be stored faithfully."""
    if not isinstance(event, Event):
        raise LocalProtocolError(f"expected an Event, got {type(event).__name__}")
    for field in ("source", "event_id", "seq", "time_us"):
        number = getattr(event, field)
        if type(number) is not int or not 0 <= number <= UINT64_MAX:
            raise LocalProtocolError(f"event.{field} must be an integer in 0..2**64-1")
    topic = event.topic
    if type(topic) is not str:
        raise LocalProtocolError("event.topic must be text")
    validate_topic_name(topic)  # raises InvalidTopic, a LocalProtocolError
    unit = event.unit
    if type(unit) is not str or len(_utf8(unit, "unit")) > UNIT_BYTES_MAX or "\x00" in unit:
        raise LocalProtocolError(
            f"event.unit must be text of at most {UNIT_BYTES_MAX} bytes without U+0000"
        )
    _check_plain(event.value)
    try:
        value = cbor2.dumps(event.value)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise LocalProtocolError(f"event.value cannot be encoded: {exc}") from None
    if len(value) > VALUE_BYTES_MAX:
        raise LocalProtocolError(f"event.value takes {len(value)} bytes > {VALUE_BYTES_MAX}")
    return (
        event.source - BIAS,
        event.event_id - BIAS,
        event.seq - BIAS,
        topic,
        event.time_us - BIAS,
        unit,
        value,
        stored_us,
    )


def _utf8(text: str, field: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: no database can store it as text
        raise LocalProtocolError(f"event.{field} is not valid Unicode text") from None


def event_from_row(row: tuple[object, ...], location: str) -> Event:
    """The event a row holds; a row that is not what ``row_from_event`` wrote is corruption."""
    source, event_id, seq, topic, time_us, unit, value = row[:7]
    if not (
        type(source) is int
        and type(event_id) is int
        and type(seq) is int
        and type(time_us) is int
        and type(topic) is str
        and type(unit) is str
        and type(value) is bytes
    ):
        raise HistorianError(
            location, f"a row has unexpected types: {row!r:.200}", reason="corrupt"
        )
    try:
        decoded = cbor2.loads(
            value,
            tag_hook=_refuse_tag,
            max_depth=BODY_DEPTH_MAX + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        _check_plain(decoded)
    except _DECODE_ERRORS as exc:
        key = (source + BIAS, event_id + BIAS)
        raise HistorianError(
            location, f"the value of event {key} is not plain data: {exc}", reason="corrupt"
        ) from None
    return Event(topic, decoded, time_us + BIAS, source + BIAS, seq + BIAS, event_id + BIAS, unit)


def _refuse_tag(decoder: object, tag: object) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not stored by the historian")
