"""An event: what the Event Manager carries (seed 001, section III.B.3).

An event is one observation or command on a hierarchical topic such as
``MEASUREMENT/SENSOR/1234/PowerConsumption``: the topic, the value(s), the unit,
when the source took it (``time_us``, microseconds, the source's clock), the
publishing node (``source``), the source's sequence number (``seq``, from 1, for
ordering and gap detection) and an ``event_id``: 64 bits the source draws from
its seeded random source, so that ``(source, event_id)`` names the event
uniquely even across restarts of the source. Every duplicate check, every
acknowledgement and the historian's primary key use that pair.

On the wire an event is the array ``[source, event_id, seq, topic, time_us,
value, unit]``, followed by ``auth`` where the publisher signed it (a node with
credentials signs every event it publishes; security/_events.py); ``value``
is plain data (see ``gridmesh.wire``). The signature covers the first seven
items, the event's *content* (``content_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cbor2

from gridmesh.wire import int_bytes, plain_bytes

__all__ = ["Event", "EventKey", "auth_size", "content_size"]

#: What names an event: ``(source, event_id)``.
EventKey = tuple[int, int]


def content_size(  # noqa: PLR0917 - the content's seven items, in wire order
    source: int, event_id: int, seq: int, topic: str, time_us: int, value: object, unit: str
) -> int:
    """Bytes the content array ``[source, event_id, seq, topic, time_us, value, unit]``
    takes encoded (what ``event_bytes_max`` bounds), without encoding it."""
    size = 1 + int_bytes(source) + int_bytes(event_id) + int_bytes(seq) + int_bytes(time_us)
    return size + plain_bytes(topic) + plain_bytes(value) + plain_bytes(unit)


def auth_size(auth: bytes | None) -> int:
    """Bytes ``auth`` adds to an encoded event (none when unsigned)."""
    return 0 if auth is None else plain_bytes(auth)


@dataclass(frozen=True, slots=True)
class Event:
    """One event. The same type is published, replicated, delivered and stored."""

    topic: str
    value: object
    time_us: int
    source: int
    seq: int
    event_id: int
    unit: str = ""
    #: The encoded size, where an Event Manager measured it (batches stay within a message).
    wire_bytes: int = field(default=0, compare=False, repr=False)
    #: The publisher's signature (``[cose_sign1, certificate]``), where it signed the event.
    auth: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> EventKey:
        """``(source, event_id)``: the event's name for duplicate suppression."""
        return (self.source, self.event_id)

    def to_wire(self) -> list[object]:
        """``[source, event_id, seq, topic, time_us, value, unit]``, then ``auth`` if signed."""
        wire = self._content()
        if self.auth is not None:
            wire.append(self.auth)
        return wire

    def content_bytes(self) -> bytes:
        """What the publisher signs: the CBOR of the first seven items of ``to_wire``."""
        return cbor2.dumps(self._content())

    def _content(self) -> list[object]:
        return [
            self.source,
            self.event_id,
            self.seq,
            self.topic,
            self.time_us,
            self.value,
            self.unit,
        ]
