"""The Event Manager: a replicated topic broker (seed 001, III.B.3 and Fig. 4).

Theory of operation
-------------------
Publishers send events to an Event Manager (EM); subscribers hold filters at
it and receive every event whose topic matches one (MQTT's rules, see
``gridmesh.topics``). Several EMs serve one *flow* and each keeps the flow's
whole state (``_replication``); a subscriber is **attached** to one of them,
which alone sends it events, and fails over to the next when that one falls
silent. Nothing here is specific to a driver: time comes in as ``now``.

**Accepting an event.** A PUBLISH carries a batch of events. Each gets a
status: an invalid topic or an oversized event is refused for good; a
publisher beyond its rate (a token bucket, ``publisher_rate_max`` events/s,
``publisher_burst_max`` at once) or a full replication backlog gets
``RATE_LIMITED``/``BUSY`` and sends the event again later. An accepted event
is remembered by ``(source, event_id)`` (a duplicate is not queued twice),
queued for every matching subscriber, handed to the local store (the
historian: it returns once the event is durable), and sent to every replica
that is up. Only when all of those replicas applied it does the EM answer
``ACCEPTED``. So an acknowledged event is held by every live replica, and one
EM's death loses nothing acknowledged.

**Delivering.** Per subscriber the EM keeps a queue of events it has not
acknowledged, in arrival order, at most ``queue_events_max``. The attached EM
sends the queue's head in DELIVER batches, at most ``deliver_window_max``
events unacknowledged, each sent again every ``retry_interval_s`` until
acknowledged; acknowledgements are replicated so other EMs drop those events
too. When a subscriber (re)attaches (its SUBSCRIBE with ``replace``), the EM
sends its whole queue again: the duplicates at-least-once allows.

**Overflow and fairness.** A full queue drops the *newest* event of the
publisher that holds the most of it (if that is the newcomer's publisher, the
newcomer): one publisher flooding a topic fills only its own share, and other
publishers' events still go through. The drop is counted and the next DELIVER
tells the subscriber how many events it missed (``gap``); the historian still
has them. Together with the per-publisher token bucket, a flood from one
publisher cannot starve the others.

**Liveness.** EMs ping each other every ``heartbeat_interval_s``; a replica
silent for ``failover_timeout_s`` is down (its waits released). A subscriber
silent for ``subscriber_expiry_s`` loses its subscriptions and queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import cbor2

from gridmesh.errors import InvalidTopic, MalformedMessage, RemoteProtocolError, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.protocols.pubsub._config import PubSubConfig
from gridmesh.protocols.pubsub._event import Event, EventKey, auth_size, content_size
from gridmesh.protocols.pubsub._replication import (
    MISSING_REPORTED_MAX,
    StreamIn,
    StreamOut,
    Waiter,
)
from gridmesh.protocols.pubsub._wire import (
    OP_ACKED,
    OP_EVENT,
    OP_QUEUED,
    OP_SUBSCRIBER,
    PubackStatus,
    SubackStatus,
    check_filter,
    parse_address,
    parse_array,
    parse_bool,
    parse_event,
    parse_filters,
    parse_keys,
    parse_publish,
    parse_publish_item,
    uint,
)
from gridmesh.topics import TopicTrie, validate_topic_name
from gridmesh.wire import Envelope, Kind, plain_bytes

__all__ = ["EventManager", "EventStore"]

# Bytes an envelope and a batch's framing add around the events it carries.
_ENVELOPE_OVERHEAD_BYTES = 160
#: DELIVER batches awaiting acknowledgement remembered per subscriber (the oldest go first).
_BATCHES_KEPT_MAX = 1024
#: Topics whose matching subscribers an Event Manager remembers.
_MATCHES_CACHED_MAX = 65_536
_dumps = cbor2.dumps


class EventStore(Protocol):
    """Where an Event Manager keeps events durably (the historian)."""

    def append(self, events: Sequence[Event]) -> int:
        """Store ``events``; durable when it returns. Returns how many were new."""
        ...


@dataclass(slots=True)
class _Subscriber:
    """One subscriber as every EM of the flow knows it."""

    node_id: int
    peer: Peer
    version: int = 0
    filters: set[str] = field(default_factory=set)
    attached_to: int = 0
    last_heard: float = 0.0
    queue: dict[EventKey, Event] = field(default_factory=dict)
    unsent: deque[EventKey] = field(default_factory=deque)
    inflight: dict[EventKey, float] = field(default_factory=dict)
    by_source: dict[int, deque[EventKey]] = field(default_factory=dict)
    gap: int = 0
    next_batch: int = 1
    batches: dict[int, list[EventKey]] = field(default_factory=dict)  # DELIVER batch -> events


@dataclass(slots=True)
class _Replica:
    peer: Peer
    incarnation: int = 0
    up: bool = False
    last_heard: float = float("-inf")
    last_ping: float = float("-inf")
    stream_out: StreamOut | None = None
    stream_in: StreamIn = field(default_factory=StreamIn)
    ops: list[object] = field(default_factory=list)
    ops_bytes: int = 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class EventManager:
    """One Event Manager of a flow, driven by its ``Node``."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset(
        {
            Kind.PS_SUBSCRIBE,
            Kind.PS_UNSUBSCRIBE,
            Kind.PS_PUBLISH,
            Kind.PS_DELIVER_ACK,
            Kind.PS_REPLICATE,
            Kind.PS_REPLICATE_ACK,
            Kind.PS_PING,
            Kind.PS_PONG,
        }
    )

    def __init__(
        self, host: Host, config: PubSubConfig, *, store: EventStore | None = None
    ) -> None:
        self._host = host
        self.config = config
        self._store = store
        self.incarnation = host.rng.getrandbits(64) or 1
        self._stream_numbers = 0
        me = host.node_id
        self._replicas: dict[int, _Replica] = {
            ref.node_id: _Replica(host.peer(ref.node_id, ref.address, "event-manager", ()))
            for ref in config.event_managers
            if ref.node_id != me
        }
        self._subscribers: dict[int, _Subscriber] = {}
        self._index: TopicTrie[int] = TopicTrie()
        # Topic -> matching subscribers: events repeat topics; any filter change clears it.
        self._matches: dict[str, set[int]] = {}
        self._subscriptions = 0
        self._seen = SeenCache(config.seen_events_max)
        self._buckets: dict[int, _Bucket] = {}
        self._waiting: set[EventKey] = set()  # accepted, not yet acknowledged
        self._dirty: set[int] = set()  # subscribers with something to send
        self._busy: set[int] = set()  # subscribers with events in flight
        self._tick_s = min(config.retry_interval_s, config.heartbeat_interval_s) / 2
        self._next_expiry = 0.0
        self._started = False
        self._replication_due = False  # ops someone waits for are gathered
        self._replication_timer = False  # _send_replication is scheduled
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "published",
                "publish_duplicates",
                "refused_topic",
                "refused_size",
                "unauthorized",
                "not_authentic",
                "rate_limited",
                "busy",
                "delivered",
                "redelivered",
                "overflow_dropped",
                "acked_unreplicated",
                "replica_down",
                "subscribers_expired",
            ),
            0,
        )

    # -- lifecycle -------------------------------------------------------------

    def start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        self._next_expiry = now + self.config.subscriber_expiry_s
        self._tick(now)

    def _tick(self, now: float) -> None:
        config = self.config
        for replica in self._replicas.values():
            if replica.up and now - replica.last_heard > config.failover_timeout_s:
                self._replica_down(replica)
            if now - replica.last_ping >= config.heartbeat_interval_s:
                replica.last_ping = now
                self._send(replica.peer, Kind.PS_PING, [self.incarnation], now)
        for node_id in list(self._busy):
            subscriber = self._subscribers.get(node_id)
            if subscriber is None:
                self._busy.discard(node_id)
            else:
                self._retransmit(subscriber, now)
        if now >= self._next_expiry:
            self._expire(now)
            self._next_expiry = now + min(config.subscriber_expiry_s, 60.0) / 4
        self._send_replication(now)
        self._flush(now)
        self._host.call_at(now + self._tick_s, self._tick)

    # -- input -----------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        kind = message.kind
        try:
            if kind is Kind.PS_PUBLISH:
                self._on_publish(message, source, now)
            elif kind is Kind.PS_DELIVER_ACK:
                self._on_deliver_ack(message, now)
            elif kind is Kind.PS_SUBSCRIBE or kind is Kind.PS_UNSUBSCRIBE:
                self._on_subscribe(message, source, now)
            elif kind is Kind.PS_REPLICATE:
                self._on_replicate(message, now)
            elif kind is Kind.PS_REPLICATE_ACK:
                self._on_replicate_ack(message, now)
            elif kind is Kind.PS_PING:
                self._on_ping(message, source, now)
            elif kind is Kind.PS_PONG:
                self._on_pong(message, now)
            else:  # pragma: no cover - the node routes only KINDS here
                raise UnexpectedMessage(f"an Event Manager does not handle {kind.name}")
        finally:
            self._flush(now)

    def _on_publish(self, message: Envelope, source: str, now: float) -> None:
        items = parse_publish(message.body)
        config = self.config
        if len(items) > config.batch_events_max * 4:
            raise MalformedMessage(f"more than {config.batch_events_max * 4} events", field="body")
        publisher = message.origin
        peer = self._host.peer(publisher, source, "", ())
        self._heard_subscriber(publisher, now)
        bucket = self._bucket(publisher, now)
        backlog_full = any(
            r.stream_out is not None and len(r.stream_out.unacked) >= config.replication_backlog_max
            for r in self._replicas.values()
            if r.up
        )
        answers: list[list[int]] = []
        accepted: list[Event] = []
        again: list[Event] = []  # copies of events held here: replicated again, then answered
        replicated = any(replica.up for replica in self._replicas.values())
        counters = self.counters
        for item in items:
            event_id, seq, topic, time_us, value, unit, auth = parse_publish_item(item)
            key = (publisher, event_id)
            if key in self._seen:
                counters["publish_duplicates"] += 1
                if key in self._waiting:
                    continue  # answered when its replicas applied it
                if not replicated:
                    answers.append([event_id, PubackStatus.ACCEPTED])
                    continue
                # This EM may hold the event only because a replica that has died since
                # replicated it, before every other one had it: the publisher's copy
                # (after its failover) is the chance to make sure they all do.
                size = content_size(publisher, event_id, seq, topic, time_us, value, unit)
                size += auth_size(auth)
                copy = Event(topic, value, time_us, publisher, seq, event_id, unit, size, auth)
                try:  # replicas check it: a copy altered since must not reach them
                    self._host.check_event(copy, now)
                except RemoteProtocolError:
                    counters["not_authentic"] += 1
                    answers.append([event_id, PubackStatus.NOT_AUTHENTIC])
                    continue
                again.append(copy)
                continue
            try:
                validate_topic_name(topic)
            except InvalidTopic:
                counters["refused_topic"] += 1
                answers.append([event_id, PubackStatus.INVALID_TOPIC])
                continue
            if not self._host.authorize("publish", topic):
                counters["unauthorized"] += 1
                answers.append([event_id, PubackStatus.UNAUTHORIZED])
                continue
            # The event as relayed is the item with the source in front: same array head.
            size = content_size(publisher, event_id, seq, topic, time_us, value, unit)
            if size > config.event_bytes_max:
                counters["refused_size"] += 1
                answers.append([event_id, PubackStatus.TOO_LARGE])
                continue
            if bucket.tokens < 1.0:
                counters["rate_limited"] += 1
                answers.append([event_id, PubackStatus.RATE_LIMITED])
                continue
            if backlog_full:
                counters["busy"] += 1
                answers.append([event_id, PubackStatus.BUSY])
                continue
            event = Event(
                topic,
                value,
                time_us,
                publisher,
                seq,
                event_id,
                unit,
                size + auth_size(auth),
                auth,
            )
            try:  # signed by the publisher, who may publish on the topic, and recent
                self._host.check_event(event, now, fresh=True)
            except RemoteProtocolError:
                counters["not_authentic"] += 1
                answers.append([event_id, PubackStatus.NOT_AUTHENTIC])
                continue
            bucket.tokens -= 1.0
            self._seen.add(key)
            accepted.append(event)
        if answers:
            self._send(peer, Kind.PS_PUBACK, answers, now)
        if accepted:
            counters["published"] += len(accepted)
            if self._store is not None:
                self._store.append(accepted)
            for event in accepted:
                self._enqueue(event)
        settle = accepted + again
        if not settle:
            return
        keys = [event.key for event in settle]
        if not replicated:
            if self._replicas:
                counters["acked_unreplicated"] += 1
            self._send(peer, Kind.PS_PUBACK, [[key[1], PubackStatus.ACCEPTED] for key in keys], now)
            return
        ops: list[object] = [[OP_EVENT, event.to_wire()] for event in settle]
        self._waiting.update(keys)

        def release() -> None:
            self._waiting.difference_update(keys)
            self._send(peer, Kind.PS_PUBACK, [[key[1], PubackStatus.ACCEPTED] for key in keys], now)

        self._replicate_and_wait(ops, sum(e.wire_bytes for e in settle), release, now)

    def _on_deliver_ack(self, message: Envelope, now: float) -> None:
        batch_ids = parse_array(message.body, "body")
        subscriber = self._subscribers.get(message.origin)
        if subscriber is None:
            raise UnexpectedMessage("an acknowledgement from no subscriber")
        subscriber.last_heard = now
        keys: list[EventKey] = []
        for batch_id in batch_ids:
            keys += subscriber.batches.pop(uint(batch_id, "batch"), ())
        acked = self._drop_acked(subscriber, keys)
        if acked and self._replicas:
            self._originate(
                [OP_ACKED, subscriber.node_id, [list(key) for key in acked]], 24 * len(acked)
            )
        self._dirty.add(subscriber.node_id)

    def _on_subscribe(self, message: Envelope, source: str, now: float) -> None:
        body = parse_array(message.body, "body")
        subscribe = message.kind is Kind.PS_SUBSCRIBE
        if len(body) != (4 if subscribe else 3):
            raise MalformedMessage("wrong number of fields", field="body")
        request_id = uint(body[0], "request_id")
        version = uint(body[1], "version")
        texts = parse_filters(body[2], "filters", count_max=self.config.filters_max)
        replace = parse_bool(body[3], "replace") if subscribe else False
        node_id = message.origin
        peer = self._host.peer(node_id, source, "", ())
        subscriber = self._subscribers.get(node_id)
        if subscriber is None:
            if not subscribe:
                self._answer_suback(
                    peer, request_id, [SubackStatus.NO_SUBSCRIPTION] * len(texts), now
                )
                return
            if len(self._subscribers) >= self.config.subscribers_max:
                self._answer_suback(peer, request_id, [SubackStatus.LIMIT] * len(texts), now)
                return
            subscriber = self._subscribers[node_id] = _Subscriber(node_id, peer)
        subscriber.peer = peer
        subscriber.last_heard = now
        statuses: list[SubackStatus] = []
        wanted: set[str] = set(subscriber.filters) if not replace else set()
        for text in texts:
            normal = check_filter(text)
            if normal is None:
                statuses.append(SubackStatus.INVALID_FILTER)
            elif subscribe and not self._host.authorize("subscribe", normal):
                statuses.append(SubackStatus.UNAUTHORIZED)
            elif subscribe:
                statuses.append(SubackStatus.GRANTED)
                wanted.add(normal)
            elif normal in wanted:
                statuses.append(SubackStatus.GRANTED)
                wanted.discard(normal)
            else:
                statuses.append(SubackStatus.NO_SUBSCRIPTION)
        grown = len(wanted) - len(subscriber.filters)
        if len(wanted) > self.config.filters_max or (
            grown > 0 and self._subscriptions + grown > self.config.subscriptions_max
        ):
            statuses = [
                SubackStatus.LIMIT if status is SubackStatus.GRANTED else status
                for status in statuses
            ]
            self._answer_suback(peer, request_id, statuses, now)
            return
        if version < subscriber.version:  # a late copy of an older request: answer only
            self._answer_suback(peer, request_id, statuses, now)
            return
        subscriber.version = version
        self._set_filters(subscriber, wanted)
        if subscribe and (replace or subscriber.attached_to != self._host.node_id):
            self._attach(subscriber)
        self._originate(self._subscriber_op(subscriber), 64 + 32 * len(wanted))
        if not wanted:
            self._remove(subscriber)
        answer = [int(status) for status in statuses]
        self._wait_replicas(lambda: self._answer_suback(peer, request_id, answer, now))

    def _on_replicate(self, message: Envelope, now: float) -> None:
        replica = self._replica_of(message, now)
        body = parse_array(message.body, "body", length=4)
        incarnation = uint(body[0], "incarnation")
        number = uint(body[1], "stream")
        seq = uint(body[2], "seq", low=1)
        ops = parse_array(body[3], "ops")
        stream = replica.stream_in
        ready = stream.accept(incarnation, number, seq, ops, self.config.replication_backlog_max)
        for batch in ready:
            for op in batch:
                self._apply(op, now)
        self._send(
            replica.peer,
            Kind.PS_REPLICATE_ACK,
            [stream.incarnation, stream.number, stream.applied, stream.missing()],
            now,
        )

    def _on_replicate_ack(self, message: Envelope, now: float) -> None:
        replica = self._replica_of(message, now)
        body = parse_array(message.body, "body")
        if len(body) != 4:
            raise MalformedMessage("expected [incarnation, stream, applied, missing]", field="body")
        incarnation, number, applied, missing = body
        stream = replica.stream_out
        if (
            stream is not None
            and uint(incarnation, "incarnation") == self.incarnation
            and uint(number, "stream") == stream.number
        ):
            stream.acked(uint(applied, "applied"))
            lacked = [uint(seq, "missing", low=1) for seq in parse_array(missing, "missing")]
            if len(lacked) > MISSING_REPORTED_MAX:
                raise MalformedMessage("too many missing batches listed", field="missing")
            gap_s = self.config.retry_interval_s / 4
            for seq, ops in stream.resend(lacked, now, gap_s):
                self._send(
                    replica.peer, Kind.PS_REPLICATE, [*self._stream_id(stream), seq, ops], now
                )

    def _on_ping(self, message: Envelope, source: str, now: float) -> None:
        (incarnation,) = parse_array(message.body, "body", length=1)
        replica = self._replicas.get(message.origin)
        if replica is not None:
            self._heard_replica(replica, uint(incarnation, "incarnation"), now)
        else:
            subscriber = self._subscribers.get(message.origin)
            if subscriber is not None:
                subscriber.last_heard = now
        peer = (
            replica.peer if replica is not None else self._host.peer(message.origin, source, "", ())
        )
        self._send(peer, Kind.PS_PONG, [self.incarnation], now)

    def _on_pong(self, message: Envelope, now: float) -> None:
        replica = self._replica_of(message, now, refresh=False)
        (incarnation,) = parse_array(message.body, "body", length=1)
        self._heard_replica(replica, uint(incarnation, "incarnation"), now)

    # -- replication -------------------------------------------------------------

    def _replica_of(self, message: Envelope, now: float, *, refresh: bool = True) -> _Replica:
        replica = self._replicas.get(message.origin)
        if replica is None:
            raise UnexpectedMessage("replication from a node that is no Event Manager of this flow")
        if refresh and replica.up:
            replica.last_heard = now
        return replica

    def _heard_replica(self, replica: _Replica, incarnation: int, now: float) -> None:
        replica.last_heard = now
        if replica.up and incarnation == replica.incarnation:
            return
        if replica.up:  # it restarted: whatever it held is gone
            self._replica_down(replica)
        replica.incarnation = incarnation
        replica.up = True
        self._stream_numbers += 1
        replica.stream_out = StreamOut(self.incarnation, self._stream_numbers)
        replica.ops, replica.ops_bytes = [], 0
        for op, size in self._snapshot():
            self._add_op(replica, op, size)
        self._replication_due = True

    def _replica_down(self, replica: _Replica) -> None:
        replica.up = False
        self.counters["replica_down"] += 1
        if replica.stream_out is not None:
            replica.stream_out.release_all()
        replica.stream_out = None
        replica.ops, replica.ops_bytes = [], 0

    def _stream_id(self, stream: StreamOut) -> tuple[int, int]:
        return (stream.incarnation, stream.number)

    def _snapshot(self) -> Iterable[tuple[object, int]]:
        """Every subscriber's state and queue, as ops a fresh replica applies."""
        for subscriber in self._subscribers.values():
            yield self._subscriber_op(subscriber), 64 + 32 * len(subscriber.filters)
            events = list(subscriber.queue.values())
            step = self.config.batch_events_max
            for start in range(0, len(events), step):
                chunk = events[start : start + step]
                yield (
                    [OP_QUEUED, subscriber.node_id, [e.to_wire() for e in chunk]],
                    sum(e.wire_bytes for e in chunk),
                )

    def _subscriber_op(self, subscriber: _Subscriber) -> list[object]:
        return [
            OP_SUBSCRIBER,
            subscriber.node_id,
            subscriber.peer.address,
            subscriber.version,
            sorted(subscriber.filters),
            subscriber.attached_to,
        ]

    def _originate(self, op: object, size: int) -> None:
        for replica in self._replicas.values():
            if replica.up:
                self._add_op(replica, op, size)

    def _add_op(self, replica: _Replica, op: object, size: int) -> None:
        budget = self._host.message_bytes_max - _ENVELOPE_OVERHEAD_BYTES
        if replica.ops and (
            replica.ops_bytes + size > budget or len(replica.ops) >= self.config.batch_events_max
        ):
            self._push_ops(replica)
        replica.ops.append(op)
        replica.ops_bytes += size + 8

    def _push_ops(self, replica: _Replica) -> None:
        """Number the replica's pending ops as one batch (sent on the next flush)."""
        stream = replica.stream_out
        assert stream is not None
        stream.push(replica.ops)
        replica.ops, replica.ops_bytes = [], 0

    def _replicate_and_wait(
        self, ops: list[object], size: int, release: Callable[[], None], now: float
    ) -> None:
        each = size // max(1, len(ops))
        for op in ops:
            self._originate(op, each)
        self._wait_replicas(release)

    def _wait_replicas(self, release: Callable[[], None]) -> None:
        """Call ``release`` once every replica that is up applied what was originated so far."""
        ups = [r for r in self._replicas.values() if r.up]
        if not ups:
            if self._replicas:
                self.counters["acked_unreplicated"] += 1
            release()
            return
        waiter = Waiter(len(ups), release)
        for replica in ups:
            stream = replica.stream_out
            assert stream is not None
            # The ops wait in replica.ops for the next batch, numbered next_seq.
            stream.wait(stream.next_seq if replica.ops else stream.next_seq - 1, waiter)
        self._replication_due = True

    def _send_replication(self, now: float) -> None:
        """Number the ops gathered since the last call as batches; send them and the stale."""
        self._replication_timer = False
        for replica in self._replicas.values():
            if not replica.up:
                continue
            if replica.ops:
                self._push_ops(replica)
            stream = replica.stream_out
            assert stream is not None
            for seq, ops in stream.due(now, self.config.retry_interval_s):
                self._send(
                    replica.peer, Kind.PS_REPLICATE, [*self._stream_id(stream), seq, ops], now
                )

    def _flush(self, now: float) -> None:
        if self._replication_due and not self._replication_timer:
            # Gather what the next replication_delay_s brings into the same batches.
            self._replication_timer = True
            self._host.call_at(now + self.config.replication_delay_s, self._send_replication)
        self._replication_due = False
        dirty = self._dirty
        while dirty:
            subscriber = self._subscribers.get(dirty.pop())
            if subscriber is not None:
                self._pump(subscriber, now)

    def _apply(self, op: object, now: float) -> None:
        """Apply one replication op from a replica; a bad one is a malformed message."""
        fields = parse_array(op, "op")
        if not fields:
            raise MalformedMessage("empty op", field="op")
        code = fields[0]
        if code == OP_EVENT and len(fields) == 2:
            event = parse_event(fields[1])
            if event.key not in self._seen and self._authentic(event, now):
                self._seen.add(event.key)
                event = _measured(event)
                if self._store is not None:
                    self._store.append([event])
                self._enqueue(event)
        elif code == OP_ACKED and len(fields) == 3:
            subscriber = self._subscribers.get(uint(fields[1], "op.subscriber", low=1))
            keys = parse_keys(fields[2], "op.keys")
            if subscriber is not None:
                self._drop_acked(subscriber, keys)
        elif code == OP_SUBSCRIBER and len(fields) == 6:
            self._apply_subscriber(fields, now)
        elif code == OP_QUEUED and len(fields) == 3:
            subscriber = self._subscribers.get(uint(fields[1], "op.subscriber", low=1))
            for item in parse_array(fields[2], "op.events"):
                event = _measured(parse_event(item))
                if event.key not in self._seen and not self._authentic(event, now):
                    continue
                self._seen.add(event.key)
                if subscriber is not None and event.key not in subscriber.queue:
                    self._queue_for(subscriber, event)
        else:
            raise MalformedMessage(f"unknown replication op {code!r}", field="op")

    def _authentic(self, event: Event, now: float) -> bool:
        """Whether a replicated event passes the host's security checks (counted if not)."""
        try:
            self._host.check_event(event, now)
        except RemoteProtocolError:
            self.counters["not_authentic"] += 1
            return False
        return True

    def _apply_subscriber(self, fields: list[object], now: float) -> None:
        node_id = uint(fields[1], "op.subscriber", low=1)
        address = parse_address(fields[2], "op.address")
        version = uint(fields[3], "op.version")
        texts = parse_filters(fields[4], "op.filters", count_max=self.config.filters_max)
        attached_to = uint(fields[5], "op.attached_to")
        filters = {normal for normal in map(check_filter, texts) if normal is not None}
        subscriber = self._subscribers.get(node_id)
        if subscriber is None:
            if len(self._subscribers) >= self.config.subscribers_max:
                return
            peer = self._host.peer(node_id, address, "", ())
            subscriber = self._subscribers[node_id] = _Subscriber(node_id, peer, last_heard=now)
        elif version < subscriber.version:
            return  # an older state than the one we hold
        if not filters:  # it unsubscribed from everything, or expired
            self._remove(subscriber)
            return
        subscriber.version = version
        subscriber.last_heard = max(subscriber.last_heard, now)
        self._set_filters(subscriber, filters)
        if attached_to != subscriber.attached_to:
            if attached_to == self._host.node_id:
                self._attach(subscriber)
            else:
                subscriber.attached_to = attached_to
                subscriber.inflight.clear()
                self._busy.discard(node_id)

    # -- subscribers and queues ----------------------------------------------------

    def _set_filters(self, subscriber: _Subscriber, wanted: set[str]) -> None:
        node_id = subscriber.node_id
        if wanted != subscriber.filters:
            self._matches.clear()
        for gone in subscriber.filters - wanted:
            self._index.remove(gone, node_id)
        for new in wanted - subscriber.filters:
            self._index.add(new, node_id)
        self._subscriptions += len(wanted) - len(subscriber.filters)
        subscriber.filters = wanted

    def _attach(self, subscriber: _Subscriber) -> None:
        """This EM now delivers to ``subscriber``: its whole queue, from the start."""
        subscriber.attached_to = self._host.node_id
        subscriber.inflight.clear()
        subscriber.batches.clear()
        subscriber.unsent = deque(subscriber.queue)
        self._busy.discard(subscriber.node_id)
        self._dirty.add(subscriber.node_id)

    def _enqueue(self, event: Event) -> None:
        subscribers = self._subscribers
        matched = self._matches.get(event.topic)
        if matched is None:
            if len(self._matches) >= _MATCHES_CACHED_MAX:
                self._matches.clear()
            matched = self._matches[event.topic] = self._index.match(event.topic)
        for node_id in matched:
            subscriber = subscribers.get(node_id)
            if subscriber is not None:
                self._queue_for(subscriber, event)

    def _queue_for(self, subscriber: _Subscriber, event: Event) -> None:
        key = event.key
        queue = subscriber.queue
        if key in queue:
            return
        if len(queue) >= self.config.queue_events_max and not self._make_room(subscriber, event):
            return
        queue[key] = event
        subscriber.unsent.append(key)
        source_keys = subscriber.by_source.get(event.source)
        if source_keys is None:
            source_keys = subscriber.by_source[event.source] = deque()
        source_keys.append(key)
        if subscriber.attached_to == self._host.node_id:
            self._dirty.add(subscriber.node_id)

    def _make_room(self, subscriber: _Subscriber, newcomer: Event) -> bool:
        """Drop the newest event of the publisher holding most of the queue; False: the newcomer."""
        self.counters["overflow_dropped"] += 1
        subscriber.gap += 1
        largest = max(subscriber.by_source.items(), key=lambda item: len(item[1]))
        own = subscriber.by_source.get(newcomer.source)
        if largest[0] == newcomer.source or (own is not None and len(own) >= len(largest[1])):
            return False
        victims = largest[1]
        while victims:
            key = victims.pop()
            if subscriber.queue.pop(key, None) is not None:
                subscriber.inflight.pop(key, None)
                break
        if not victims:
            del subscriber.by_source[largest[0]]
        return True

    def _drop_acked(self, subscriber: _Subscriber, keys: list[EventKey]) -> list[EventKey]:
        queue = subscriber.queue
        inflight = subscriber.inflight
        dropped: list[EventKey] = []
        for key in keys:
            if queue.pop(key, None) is None:
                continue
            dropped.append(key)
            inflight.pop(key, None)
            source_keys = subscriber.by_source.get(key[0])
            if source_keys is not None:
                if source_keys and source_keys[0] == key:
                    source_keys.popleft()
                else:
                    source_keys.remove(key)
                if not source_keys:
                    del subscriber.by_source[key[0]]
        if not inflight:
            self._busy.discard(subscriber.node_id)
        return dropped

    def _pump(self, subscriber: _Subscriber, now: float) -> None:
        """Send the next events to an attached subscriber, within its window."""
        if subscriber.attached_to != self._host.node_id:
            return
        queue = subscriber.queue
        inflight = subscriber.inflight
        unsent = subscriber.unsent
        room = self.config.deliver_window_max - len(inflight)
        batch: list[Event] = []
        while room > 0 and unsent:
            key = unsent.popleft()
            event = queue.get(key)
            if event is None or key in inflight:
                continue
            inflight[key] = now
            batch.append(event)
            room -= 1
        if batch:
            self._busy.add(subscriber.node_id)
            self.counters["delivered"] += len(batch)
            self._deliver(subscriber, batch, now)
        elif subscriber.gap:
            self._deliver(subscriber, [], now)

    def _retransmit(self, subscriber: _Subscriber, now: float) -> None:
        inflight = subscriber.inflight
        if subscriber.attached_to != self._host.node_id or not inflight:
            self._busy.discard(subscriber.node_id)
            return
        cutoff = now - self.config.retry_interval_s
        again: list[Event] = []
        for key, sent in inflight.items():
            if sent > cutoff:
                break
            again.append(subscriber.queue[key])
        if again:
            for event in again:
                del inflight[event.key]
                inflight[event.key] = now
            self.counters["redelivered"] += len(again)
            self._deliver(subscriber, again, now)

    def _deliver(self, subscriber: _Subscriber, events: list[Event], now: float) -> None:
        """DELIVER ``events`` in numbered batches that fit a message; remember each batch."""
        budget = self._host.message_bytes_max - _ENVELOPE_OVERHEAD_BYTES
        step = self.config.batch_events_max
        start = 0
        while True:
            size = 0
            end = start
            while end < len(events) and end - start < step:
                size += events[end].wire_bytes
                if end > start and size > budget:
                    break
                end += 1
            chunk = events[start:end]
            batch_id = subscriber.next_batch
            subscriber.next_batch += 1
            if chunk:
                batches = subscriber.batches
                if len(batches) >= _BATCHES_KEPT_MAX:
                    del batches[next(iter(batches))]  # its events are sent again in new batches
                batches[batch_id] = [event.key for event in chunk]
            wire = [event.to_wire() for event in chunk]
            self._send(subscriber.peer, Kind.PS_DELIVER, [subscriber.gap, batch_id, wire], now)
            subscriber.gap = 0
            start = end
            if start >= len(events):
                return

    def _heard_subscriber(self, node_id: int, now: float) -> None:
        subscriber = self._subscribers.get(node_id)
        if subscriber is not None:
            subscriber.last_heard = now

    def _expire(self, now: float) -> None:
        """Forget subscribers silent too long; only the EM they talk to can tell."""
        cutoff = now - self.config.subscriber_expiry_s
        me = self._host.node_id
        up = {node_id for node_id, replica in self._replicas.items() if replica.up}
        silent = [
            subscriber
            for subscriber in self._subscribers.values()
            if subscriber.last_heard < cutoff
            and (subscriber.attached_to == me or subscriber.attached_to not in up)
        ]
        for subscriber in silent:
            subscriber.version += 1
            self._originate(
                [
                    OP_SUBSCRIBER,
                    subscriber.node_id,
                    subscriber.peer.address,
                    subscriber.version,
                    [],
                    0,
                ],
                64,
            )
            self._remove(subscriber)
            self.counters["subscribers_expired"] += 1

    def _remove(self, subscriber: _Subscriber) -> None:
        self._set_filters(subscriber, set())
        self._subscribers.pop(subscriber.node_id, None)
        self._busy.discard(subscriber.node_id)

    def _bucket(self, publisher: int, now: float) -> _Bucket:
        config = self.config
        bucket = self._buckets.get(publisher)
        if bucket is None:
            if len(self._buckets) >= config.subscribers_max:
                self._buckets.clear()  # bounded: forget idle publishers' buckets wholesale
            bucket = self._buckets[publisher] = _Bucket(float(config.publisher_burst_max), now)
        else:
            bucket.tokens = min(
                float(config.publisher_burst_max),
                bucket.tokens + (now - bucket.updated) * config.publisher_rate_max,
            )
            bucket.updated = now
        return bucket

    # -- output ------------------------------------------------------------------

    def _answer_suback(
        self, peer: Peer, request_id: int, statuses: Sequence[int], now: float
    ) -> None:
        self._send(peer, Kind.PS_SUBACK, [request_id, [int(s) for s in statuses]], now)

    def _send(self, peer: Peer, kind: Kind, body: object, now: float) -> None:
        self._host.send((peer,), new_envelope(self._host, kind, body, now))

    # -- monitoring ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        queued = sum(len(s.queue) for s in self._subscribers.values())
        return {
            **{f"em_{name}": count for name, count in self.counters.items()},
            "em_subscribers": len(self._subscribers),
            "em_subscriptions": self._subscriptions,
            "em_queued": queued,
            "em_replicas_up": sum(1 for r in self._replicas.values() if r.up),
        }

    def subscriber_filters(self, node_id: int) -> frozenset[str]:
        """The filters a subscriber holds here (empty if none)."""
        subscriber = self._subscribers.get(node_id)
        return frozenset() if subscriber is None else frozenset(subscriber.filters)


def _measured(event: Event) -> Event:
    return Event(
        event.topic,
        event.value,
        event.time_us,
        event.source,
        event.seq,
        event.event_id,
        event.unit,
        plain_bytes(event.to_wire()),
        event.auth,
    )
