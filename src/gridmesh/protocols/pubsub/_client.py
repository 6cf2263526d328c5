"""Publishing and subscribing through the Event Managers of a flow, with failover.

Theory of operation
-------------------
A client talks to one Event Manager (EM) of its flow at a time, its
*current* one: first the EM at position ``node_id mod k`` of the configured
list (so the clients of a flow spread over its EMs), then, after each
failover, the next one. Every message from the current EM shows it alive;
while the client needs it (events unacknowledged, requests unanswered, or
subscriptions held) and it has been quiet for ``heartbeat_interval_s``, the
client pings it. Quiet for ``failover_timeout_s``: the client **fails over**
to the next EM, and there
(1) attaches again: one SUBSCRIBE with ``replace`` and all its filters, which
makes the new EM send it every event still queued for it — the EMs replicate
queues, so nothing acknowledged to a publisher is missing;
(2) sends again every request not yet answered, and
(3) sends again every event not yet acknowledged. An EM that already has one
of those events (it was replicated) recognizes it by ``(source, event_id)``
and only acknowledges it.

**Publishing.** ``publish`` gives the event the next sequence number and a
random 64-bit event id, and queues it; queued events leave in PUBLISH batches
of up to ``batch_events_max``, at most ``publish_window_max`` unacknowledged
at a time (more wait; ``publish_queue_max`` bounds the wait, beyond it
``publish`` raises ``PublishQueueFull``). An event unacknowledged for
``retry_interval_s`` is sent again; ``RATE_LIMITED`` and ``BUSY`` answers
mean "again later"; an invalid topic or an oversized event is refused for good
(``on_refused``). ``ACCEPTED`` means the event is stored by every live EM.

**Subscribing.** Filters are validated locally first (``InvalidTopic``).
Every (un)subscribe carries the client's next *version*, so EMs can tell a
late copy from the current state. Events arrive in DELIVER batches; the
client acknowledges each batch, including duplicates, and hands the
application each event once: the ``(source, event_id)`` of the last
``dedup_events_max`` events are remembered (a duplicate older than that is
delivered again, which at-least-once allows). A DELIVER may say events were
dropped for this subscriber by queue overflow (``gap``): counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

from gridmesh.errors import LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.protocols.pubsub._config import PubSubConfig
from gridmesh.protocols.pubsub._event import Event, auth_size, content_size
from gridmesh.protocols.pubsub._wire import (
    PubackStatus,
    SubackStatus,
    parse_array,
    parse_event,
    uint,
)
from gridmesh.topics import TopicTrie, validate_topic_filter, validate_topic_name
from gridmesh.wire import Envelope, Kind, check_plain

__all__ = [
    "EventCallback",
    "PubSubClient",
    "PublishQueueFull",
    "PublishRefused",
    "SubscribeResult",
]

EventCallback = Callable[[Event, float], None]
_UNIT_BYTES_MAX = 64


class PublishQueueFull(LocalProtocolError):
    """More events wait for the publish window than ``publish_queue_max``: slow down."""


class PublishRefused(LocalProtocolError):
    """An Event Manager refused an event for good (``status`` says why)."""

    def __init__(self, event: Event, status: PubackStatus) -> None:
        self.event = event
        self.status = status
        super().__init__(f"event {event.event_id} on {event.topic!r} refused: {status.name}")


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The answer to one subscribe or unsubscribe: a status per filter."""

    request_id: int
    filters: tuple[str, ...]
    statuses: tuple[SubackStatus, ...]

    @property
    def ok(self) -> bool:
        return all(status is SubackStatus.GRANTED for status in self.statuses)


@dataclass(slots=True)
class _Request:
    request_id: int
    kind: Kind
    filters: tuple[str, ...]
    version: int
    replace: bool
    sent_at: float
    on_done: Callable[[SubscribeResult], None] | None = None

    def body(self) -> list[object]:
        if self.kind is Kind.PS_SUBSCRIBE:
            return [self.request_id, self.version, list(self.filters), self.replace]
        return [self.request_id, self.version, list(self.filters)]


class PubSubClient:
    """The publisher and subscriber side of one node."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset(
        {Kind.PS_SUBACK, Kind.PS_PUBACK, Kind.PS_DELIVER, Kind.PS_PONG}
    )

    def __init__(self, host: Host, config: PubSubConfig) -> None:
        self._host = host
        self.config = config
        managers = [
            host.peer(ref.node_id, ref.address, "event-manager", ())
            for ref in config.event_managers
        ]
        if managers:
            start = host.node_id % len(managers)
            managers = managers[start:] + managers[:start]
        self._managers = managers
        self._manager_ids = frozenset(peer.node_id for peer in managers)
        self._current = 0
        self._quiet_since = 0.0
        self._last_ping = float("-inf")
        self._ticking = False
        self._flush_due = False
        # publishing
        self._seq = 0
        self._waiting: deque[Event] = deque()
        self._unacked: dict[int, tuple[Event, float]] = {}
        self.on_acked: Callable[[list[Event], float], None] | None = None
        self.on_refused: Callable[[PublishRefused, float], None] | None = None
        # subscribing
        self._version = 0
        self._filters: set[str] = set()
        self._requests: dict[int, _Request] = {}
        self._handlers: dict[str, list[EventCallback]] = {}
        self._local: TopicTrie[str] = TopicTrie()
        self._seen = SeenCache(config.dedup_events_max)
        self.last_failover_at: float | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "published",
                "acked",
                "refused",
                "republished",
                "events",
                "duplicates",
                "not_authentic",
                "unreadable",
                "gap",
                "failovers",
            ),
            0,
        )

    # -- application API ---------------------------------------------------------

    @property
    def event_manager(self) -> Peer:
        """The Event Manager this client talks to now."""
        return self._manager()

    def publish(
        self, topic: str, value: object, *, now: float, unit: str = "", time_us: int | None = None
    ) -> Event:
        """Queue an event for the flow's Event Managers; returns it (sequence number and id)."""
        self._manager()
        if len(self._waiting) >= self.config.publish_queue_max:
            raise PublishQueueFull(
                f"{len(self._waiting)} events wait already (publish_queue_max); slow down"
            )
        event = self.new_event(topic, value, now=now, unit=unit, time_us=time_us)
        self._waiting.append(event)
        self.counters["published"] += 1
        self._soon(now)
        return event

    def new_event(
        self,
        topic: str,
        value: object,
        *,
        now: float,
        unit: str = "",
        time_us: int | None = None,
        sign: bool = True,
    ) -> Event:
        """A checked event from this node with the next sequence number and a fresh id.

        Signed by the host where it has credentials, unless ``sign`` is false (an
        event sent inside a gossip message its origin signs as a whole).
        """
        validate_topic_name(topic)
        check_plain(value)
        if len(unit) > _UNIT_BYTES_MAX or len(unit.encode()) > _UNIT_BYTES_MAX:
            raise LocalProtocolError(f"unit longer than {_UNIT_BYTES_MAX} bytes")
        seq = self._seq + 1
        event_id = self._host.rng.getrandbits(64)
        time_us = max(0, int(now * 1e6)) if time_us is None else time_us
        source = self._host.node_id
        event = Event(topic, value, time_us, source, seq, event_id, unit)
        if sign:  # the value may be sealed (a confidential topic): measure after
            event = self._host.sign_event(event)
        size = content_size(source, event_id, seq, topic, time_us, event.value, unit)
        if size > self.config.event_bytes_max:
            raise LocalProtocolError(
                f"event of {size} bytes exceeds event_bytes_max={self.config.event_bytes_max}"
            )
        self._seq = seq
        return replace(event, wire_bytes=size + auth_size(event.auth))

    def subscribe(
        self,
        filters: Iterable[str],
        *,
        now: float,
        on_event: EventCallback,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Subscribe to ``filters``; ``on_event(event, now)`` receives each matching event once."""
        normal = tuple(dict.fromkeys(validate_topic_filter(text) for text in filters))
        if not normal:
            raise LocalProtocolError("subscribe needs at least one filter")
        if len(self._filters | set(normal)) > self.config.filters_max:
            raise LocalProtocolError(f"more than filters_max={self.config.filters_max} filters")
        for text in normal:
            handlers = self._handlers.get(text)
            if handlers is None:
                handlers = self._handlers[text] = []
                self._local.add(text, text)
            handlers.append(on_event)
        self._filters.update(normal)
        if self.config.mode == "gossip":
            return self._local_answer(normal, on_done)
        return self._request(Kind.PS_SUBSCRIBE, normal, now, on_done, replace=False)

    def unsubscribe(
        self,
        filters: Iterable[str],
        *,
        now: float,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Stop receiving events for ``filters``."""
        normal = tuple(dict.fromkeys(validate_topic_filter(text) for text in filters))
        if not normal:
            raise LocalProtocolError("unsubscribe needs at least one filter")
        for text in normal:
            if self._handlers.pop(text, None) is not None:
                self._local.remove(text, text)
            self._filters.discard(text)
        if self.config.mode == "gossip":
            return self._local_answer(normal, on_done)
        return self._request(Kind.PS_UNSUBSCRIBE, normal, now, on_done, replace=False)

    def _local_answer(
        self, filters: tuple[str, ...], on_done: Callable[[SubscribeResult], None] | None
    ) -> int:
        """Gossip mode: filters are this node's alone, granted at once."""
        request_id = self._host.rng.getrandbits(64)
        if on_done is not None:
            statuses = (SubackStatus.GRANTED,) * len(filters)
            on_done(SubscribeResult(request_id, filters, statuses))
        return request_id

    def on_gossip_event(self, event: Event, now: float) -> None:
        """An event that came by gossip (mode ``gossip``): to the matching handlers, once."""
        if not self._seen.add(event.key):
            self.counters["duplicates"] += 1
            return
        matched = self._local.match(event.topic)
        if matched:
            self.counters["events"] += 1
        for text in matched:
            for handler in self._handlers.get(text, ()):
                handler(event, now)

    @property
    def filters(self) -> frozenset[str]:
        return frozenset(self._filters)

    @property
    def unacknowledged(self) -> int:
        """Events published and not yet acknowledged (waiting included)."""
        return len(self._unacked) + len(self._waiting)

    # -- input -------------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.origin not in self._manager_ids:
            raise UnexpectedMessage("pub/sub traffic from a node that is no Event Manager")
        if message.origin == self._manager().node_id:
            self._quiet_since = now
        kind = message.kind
        if kind is Kind.PS_DELIVER:
            self._on_deliver(message, now)
        elif kind is Kind.PS_PUBACK:
            self._on_puback(message, now)
        elif kind is Kind.PS_SUBACK:
            self._on_suback(message)
        elif kind is Kind.PS_PONG:
            parse_array(message.body, "body", length=1)

    def _on_deliver(self, message: Envelope, now: float) -> None:
        gap, batch_id, items = parse_array(message.body, "body", length=3)
        gap = uint(gap, "gap")
        batch_id = uint(batch_id, "batch")
        events = [parse_event(item) for item in parse_array(items, "events")]
        if events:
            sender = next(p for p in self._managers if p.node_id == message.origin)
            self._send(sender, Kind.PS_DELIVER_ACK, [batch_id], now)
        self.counters["gap"] += gap
        seen = self._seen
        local = self._local
        handlers = self._handlers
        host = self._host
        for event in events:
            if event.key in seen:
                self.counters["duplicates"] += 1
                continue
            try:  # before it is remembered: a forged copy must not shadow the real event
                host.check_event(event, now)
            except RemoteProtocolError:  # a security check failed
                self.counters["not_authentic"] += 1
                continue
            seen.add(event.key)
            opened = host.open_event(event)
            if opened is None:  # sealed, and this node holds no key for it
                self.counters["unreadable"] += 1
                continue
            self.counters["events"] += 1
            for text in local.match(opened.topic):
                for handler in handlers.get(text, ()):
                    handler(opened, now)

    def _on_puback(self, message: Envelope, now: float) -> None:
        acked: list[Event] = []
        for item in parse_array(message.body, "body"):
            event_id, status = parse_array(item, "answer", length=2)
            entry = self._unacked.get(uint(event_id, "event_id"))
            if entry is None:
                continue  # an answer to a copy: already settled
            if status == PubackStatus.ACCEPTED:
                del self._unacked[entry[0].event_id]
                acked.append(entry[0])
            elif status in (PubackStatus.RATE_LIMITED, PubackStatus.BUSY):
                continue  # sent again after retry_interval_s
            elif type(status) is int and status in PubackStatus._value2member_map_:
                del self._unacked[entry[0].event_id]
                self.counters["refused"] += 1
                if self.on_refused is not None:
                    self.on_refused(PublishRefused(entry[0], PubackStatus(status)), now)
            else:
                raise UnexpectedMessage(f"unknown publish status {status!r}")
        if acked:
            self.counters["acked"] += len(acked)
            if self.on_acked is not None:
                self.on_acked(acked, now)
        if self._waiting:
            self._flush_publish(now)

    def _on_suback(self, message: Envelope) -> None:
        request_id, statuses = parse_array(message.body, "body", length=2)
        request = self._requests.pop(uint(request_id, "request_id"), None)
        if request is None:
            return  # an answer to a copy
        codes = parse_array(statuses, "statuses", length=len(request.filters))
        if not all(type(code) is int and code in SubackStatus._value2member_map_ for code in codes):
            raise UnexpectedMessage("unknown subscribe status")
        if request.on_done is not None:
            request.on_done(
                SubscribeResult(
                    request.request_id,
                    request.filters,
                    tuple(SubackStatus(code) for code in codes),  # type: ignore[arg-type]
                )
            )

    # -- timers and sending --------------------------------------------------------

    def _soon(self, now: float) -> None:
        if not self._flush_due:
            self._flush_due = True
            self._host.call_at(now, self._flush_publish)
        self._activate(now)

    def _activate(self, now: float) -> None:
        if not self._ticking:
            self._ticking = True
            self._quiet_since = now
            tick_s = min(self.config.retry_interval_s, self.config.heartbeat_interval_s) / 2
            self._host.call_at(now + tick_s, self._tick)

    def _needs_manager(self) -> bool:
        if self.config.mode == "gossip":
            return False
        return bool(self._unacked or self._waiting or self._requests or self._filters)

    def _tick(self, now: float) -> None:
        config = self.config
        if not self._needs_manager():
            self._ticking = False
            return
        if now - self._quiet_since > config.failover_timeout_s:
            self._failover(now)
        elif (
            now - self._quiet_since >= config.heartbeat_interval_s
            and now - self._last_ping >= config.heartbeat_interval_s
        ):
            self._last_ping = now
            self._send(self._manager(), Kind.PS_PING, [0], now)
        cutoff = now - config.retry_interval_s
        for request in self._requests.values():
            if request.sent_at <= cutoff:
                request.sent_at = now
                self._send(self._manager(), request.kind, request.body(), now)
        again = []
        for event, sent in self._unacked.values():
            if sent > cutoff:
                break
            again.append(event)
        if again:
            self.counters["republished"] += len(again)
            self._send_events(again, now)
        self._flush_publish(now)
        tick_s = min(config.retry_interval_s, config.heartbeat_interval_s) / 2
        self._host.call_at(now + tick_s, self._tick)

    def _failover(self, now: float) -> None:
        self.counters["failovers"] += 1
        self.last_failover_at = now
        self._current = (self._current + 1) % len(self._managers)
        self._quiet_since = now
        if self._filters:
            self._request(Kind.PS_SUBSCRIBE, tuple(sorted(self._filters)), now, None, replace=True)
        for request in self._requests.values():
            request.sent_at = now
            self._send(self._manager(), request.kind, request.body(), now)
        self._send_events([event for event, _ in self._unacked.values()], now)

    def _flush_publish(self, now: float) -> None:
        self._flush_due = False
        waiting = self._waiting
        room = self.config.publish_window_max - len(self._unacked)
        if room <= 0 or not waiting:
            return
        batch = [waiting.popleft() for _ in range(min(room, len(waiting)))]
        self._send_events(batch, now)

    def _send_events(self, events: list[Event], now: float) -> None:
        """PUBLISH ``events`` in batches that fit a message; they count as unacknowledged."""
        manager = self._manager()
        budget = self._host.message_bytes_max - 160
        step = self.config.batch_events_max
        unacked = self._unacked
        batch: list[object] = []
        size = 0
        for event in events:
            if batch and (len(batch) >= step or size + event.wire_bytes > budget):
                self._send(manager, Kind.PS_PUBLISH, batch, now)
                batch, size = [], 0
            unacked.pop(event.event_id, None)
            unacked[event.event_id] = (event, now)
            item = [event.event_id, event.seq, event.topic, event.time_us, event.value, event.unit]
            if event.auth is not None:
                item.append(event.auth)
            batch.append(item)
            size += event.wire_bytes
        if batch:
            self._send(manager, Kind.PS_PUBLISH, batch, now)
        self._activate(now)

    def _request(
        self,
        kind: Kind,
        filters: tuple[str, ...],
        now: float,
        on_done: Callable[[SubscribeResult], None] | None,
        *,
        replace: bool,
    ) -> int:
        manager = self._manager()
        self._version += 1
        request = _Request(
            self._host.rng.getrandbits(64), kind, filters, self._version, replace, now, on_done
        )
        self._requests[request.request_id] = request
        self._send(manager, kind, request.body(), now)
        self._activate(now)
        return request.request_id

    def _manager(self) -> Peer:
        if not self._managers:
            raise LocalProtocolError(
                "no Event Manager configured: set pubsub.event_managers in the node's config"
            )
        return self._managers[self._current]

    def _send(self, peer: Peer, kind: Kind, body: object, now: float) -> None:
        self._host.send((peer,), new_envelope(self._host, kind, body, now))

    def stats(self) -> dict[str, int]:
        return {
            **{f"ps_{name}": count for name, count in self.counters.items()},
            "ps_unacked": self.unacknowledged,
            "ps_filters": len(self._filters),
        }
