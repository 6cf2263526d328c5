"""Bodies of the Event Manager's messages: built here, and checked here when they arrive.

Every ``parse_*`` function takes a body a peer sent and either returns typed
values or raises ``MalformedMessage`` naming the field; nothing else escapes.
The formats (docs/PUBSUB.md has the full table)::

    PS_SUBSCRIBE      [request_id, version, [filter, ...], replace]
    PS_UNSUBSCRIBE    [request_id, version, [filter, ...]]
    PS_SUBACK         [request_id, [status, ...]]           one status per filter
    PS_PUBLISH        [[event_id, seq, topic, time_us, value, unit(, auth)], ...]
    PS_PUBACK         [[event_id, status], ...]
    PS_DELIVER        [gap, batch, [event, ...]]            event = Event.to_wire()

``auth`` (an event's last item where its publisher signed it) is the byte
string ``[cose_sign1, certificate]`` of security/_events.py.
    PS_DELIVER_ACK    [batch, ...]
    PS_REPLICATE      [incarnation, stream, seq, [op, ...]]
    PS_REPLICATE_ACK  [incarnation, stream, applied, [missing, ...]]
    PS_PING           [incarnation]
    PS_PONG           [incarnation]

Replication ops: ``[0, event]`` (a new event), ``[1, subscriber, address,
version, [filter, ...], attached_to]`` (a subscriber's whole state),
``[2, subscriber, [[source, event_id], ...]]`` (events it acknowledged),
``[3, subscriber, [event, ...]]`` (events queued for it: a snapshot).
"""

from __future__ import annotations

from enum import IntEnum

from gridmesh.errors import InvalidTopic, MalformedMessage
from gridmesh.protocols.pubsub._event import Event, EventKey
from gridmesh.topics import validate_topic_filter, validate_topic_name
from gridmesh.wire import ADDRESS_BYTES_MAX, AUTH_BYTES_MAX, UINT64_MAX

__all__ = [
    "GOSSIP_EVENT_KEY",
    "OP_ACKED",
    "OP_EVENT",
    "OP_QUEUED",
    "OP_SUBSCRIBER",
    "PubackStatus",
    "PublishItem",
    "SubackStatus",
    "parse_event",
    "parse_keys",
    "parse_publish",
    "uint",
]

#: The key of a gossip payload that carries a pub/sub event (``pubsub.mode = "gossip"``):
#: ``{"gridmesh.event": event}``, the message's topic being the event's.
GOSSIP_EVENT_KEY = "gridmesh.event"

OP_EVENT = 0
OP_SUBSCRIBER = 1
OP_ACKED = 2
OP_QUEUED = 3

#: ``(event_id, seq, topic, time_us, value, unit, auth)`` as a publisher sends it.
PublishItem = tuple[int, int, str, int, object, str, bytes | None]


class SubackStatus(IntEnum):
    """What an Event Manager answers for one filter of a (un)subscribe."""

    GRANTED = 0
    INVALID_FILTER = 1
    LIMIT = 2  # too many filters or subscribers
    NO_SUBSCRIPTION = 3  # unsubscribe of a filter the subscriber does not hold
    NOT_EVENT_MANAGER = 4
    UNAUTHORIZED = 5  # the subscriber's role may not subscribe to the filter


class PubackStatus(IntEnum):
    """What an Event Manager answers for one published event."""

    ACCEPTED = 0  # stored and replicated: it will not be lost
    INVALID_TOPIC = 1
    TOO_LARGE = 2
    RATE_LIMITED = 3  # send it again later
    BUSY = 4  # replication backlog full; send it again later
    NOT_EVENT_MANAGER = 5
    UNAUTHORIZED = 6  # the publisher's role may not publish on the topic
    NOT_AUTHENTIC = 7  # unsigned, or its signature, certificate or freshness failed


def uint(value: object, field: str, *, low: int = 0) -> int:
    """``value`` as an unsigned 64-bit integer of at least ``low``."""
    if type(value) is not int or not low <= value <= UINT64_MAX:
        raise MalformedMessage(f"expected an integer in {low}..2**64-1", field=field)
    return value


def _list(value: object, field: str, *, length: int | None = None) -> list[object]:
    if type(value) is not list or (length is not None and len(value) != length):
        shape = "an array" if length is None else f"an array of {length} items"
        raise MalformedMessage(f"expected {shape}", field=field)
    return value


def _text(value: object, field: str, *, bytes_max: int) -> str:
    if type(value) is not str or len(value) > bytes_max or len(value.encode()) > bytes_max:
        raise MalformedMessage(f"expected text of at most {bytes_max} bytes", field=field)
    return value


def parse_event(item: object, field: str = "event") -> Event:
    """An event as an Event Manager relays it; a bad topic is a malformed message here."""
    items = _list(item, field)
    if len(items) not in (7, 8):
        raise MalformedMessage("expected an array of 7 items (8 with auth)", field=field)
    source, event_id, seq, topic, time_us, value, unit = items[:7]
    auth = _auth(items[7], f"{field}.auth") if len(items) == 8 else None
    try:
        name = validate_topic_name(topic)
    except InvalidTopic as exc:
        raise MalformedMessage(exc.problem, field=f"{field}.topic") from None
    return Event(
        name,
        value,
        uint(time_us, f"{field}.time_us"),
        uint(source, f"{field}.source", low=1),
        uint(seq, f"{field}.seq"),
        uint(event_id, f"{field}.event_id"),
        _text(unit, f"{field}.unit", bytes_max=64),
        auth=auth,
    )


def _auth(item: object, field: str) -> bytes:
    if type(item) is not bytes or len(item) > AUTH_BYTES_MAX:
        raise MalformedMessage(f"expected bytes, at most {AUTH_BYTES_MAX}", field=field)
    return item


def parse_publish(body: object) -> list[object]:
    """The items of a PUBLISH; each is checked on its own by ``parse_publish_item``."""
    items = _list(body, "body")
    if not items:
        raise MalformedMessage("a publish carries at least one event", field="body")
    return items


def parse_publish_item(item: object) -> PublishItem:
    """One published event; its topic is checked by the caller (it gets a status, not a drop)."""
    items = _list(item, "event")
    if len(items) not in (6, 7):
        raise MalformedMessage("expected an array of 6 items (7 with auth)", field="event")
    event_id, seq, topic, time_us, value, unit = items[:6]
    return (
        uint(event_id, "event.event_id"),
        uint(seq, "event.seq"),
        _topic_text(topic),
        uint(time_us, "event.time_us"),
        value,
        _text(unit, "event.unit", bytes_max=64),
        _auth(items[6], "event.auth") if len(items) == 7 else None,
    )


def _topic_text(topic: object) -> str:
    """A published topic's text; its rules are checked by the Event Manager, with a status."""
    if type(topic) is not str:
        raise MalformedMessage("expected text", field="event.topic")
    return topic


def parse_keys(item: object, field: str) -> list[EventKey]:
    """``[[source, event_id], ...]``."""
    keys: list[EventKey] = []
    for pair in _list(item, field):
        source, event_id = _list(pair, field, length=2)
        keys.append((uint(source, field, low=1), uint(event_id, field)))
    return keys


def parse_filters(item: object, field: str, *, count_max: int) -> list[str]:
    """Filter texts as sent; each is validated by the Event Manager, with a status."""
    filters = _list(item, field)
    if len(filters) > count_max:
        raise MalformedMessage(f"more than {count_max} filters", field=field)
    if not all(type(text) is str for text in filters):
        raise MalformedMessage("expected text", field=field)
    return filters  # type: ignore[return-value]


def check_filter(text: str) -> str | None:
    """The normalized filter, or None when it is invalid."""
    try:
        return validate_topic_filter(text)
    except InvalidTopic:
        return None


def parse_address(item: object, field: str) -> str:
    return _text(item, field, bytes_max=ADDRESS_BYTES_MAX)


def parse_bool(item: object, field: str) -> bool:
    if type(item) is not bool:
        raise MalformedMessage("expected true or false", field=field)
    return item


def parse_array(item: object, field: str, *, length: int | None = None) -> list[object]:
    return _list(item, field, length=length)
