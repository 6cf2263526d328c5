"""The asyncio UDP driver: one real ``Node`` on one UDP socket.

Theory of operation
-------------------
This is the second driver of ``gridmesh.node.Node`` (the simulator is the
first); it implements ``Transport`` with real I/O:

* **time** is the wall clock, ``time.time()``, so ``created_us`` means the same
  on every host and latencies can be measured across processes;
* **send** encodes the envelope once (a message sent to ``f`` peers is encoded
  once), refuses anything over ``message_bytes_max``, and hands it to the
  socket. UDP is fire-and-forget, exactly the contract of ``Host.send``;
* **wake_at** becomes ``loop.call_later``. The loop's clock is monotonic and
  ours is the wall clock, so a wake-up can come a hair early; the driver then
  waits out the rest, because a node must be woken late, never early;
* **receive**: each datagram is decoded once. Malformed ones are counted in the
  node's ``rejected`` counters and dropped; the node keeps running. ``CONTROL``
  datagrams are operator requests (broadcast, status, "did you deliver X?",
  aggregate, push-sum estimates) and are accepted only from loopback addresses.

**The application API** is ``Node``'s on the wall clock, with the same
argument names less ``now``: ``set_reading``, ``start_estimate``, ``estimate``
and ``restart_estimate`` call the node at once; ``aggregate`` and ``collect``
are coroutines that return the ``AggregateResult`` or ``CollectResult`` the
protocol would hand ``on_result`` (always, by the query's ``timeout_s`` at the
latest). So code written against a simulated ``Node`` reads the same against
a real one.

**Control requests are answered once.** The client resends a request whose
reply it has not seen (UDP may drop either). A node keeps the last
``CONTROL_ANSWERS_KEPT_MAX`` answers to requests that act (broadcast,
aggregate, start or restart an estimate) by (request id, client address) and
sends a resent one the same answer again, so a retry never broadcasts or
aggregates twice; requests that only read are answered afresh. An
``aggregate`` request is answered when its result comes, a copy that arrives
meanwhile is ignored, and at most ``CONTROL_AGGREGATES_MAX`` wait at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import ClassVar, TypeVar, cast

from gridmesh.errors import LocalProtocolError, MalformedMessage, RemoteProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.aggregation import (
    COLLECT_LIMIT_DEFAULT,
    AggregateResult,
    CollectResult,
    Estimate,
    ReadingProvider,
    Segment,
)
from gridmesh.protocols.pubsub import Event, EventCallback, EventStore, SubscribeResult
from gridmesh.runtime._address import format_address, ip_endpoint, is_loopback
from gridmesh.runtime._control_requests import (
    aggregate_answer,
    estimate_answer,
    optional_int,
    optional_number,
    optional_text,
    parse_aggregate_request,
    parse_estimate_request,
    required_int,
)
from gridmesh.security._link import LinkCredentials
from gridmesh.wire import Envelope, Kind, decode, encode

__all__ = ["CONTROL_AGGREGATES_MAX", "CONTROL_ANSWERS_KEPT_MAX", "DELIVERIES_KEPT_MAX", "UdpNode"]

log = logging.getLogger("gridmesh.node")

#: How many recent deliveries a node remembers for "did you deliver X?" queries.
DELIVERIES_KEPT_MAX = 10_000
#: Control answers remembered, so that a resent request gets the same answer again.
CONTROL_ANSWERS_KEPT_MAX = 256
#: ``aggregate`` control requests waiting for their result at once.
CONTROL_AGGREGATES_MAX = 64
_ADDRESS_CACHE_MAX = 100_000
_DESCRIPTORS_MAX = 100_000
_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
_CONTROL_KINDS = (Kind.CONTROL, Kind.CONTROL_REPLY)

#: A control request's name: (request message id, the client's address).
_ControlKey = tuple[int, tuple[str, int]]
#: Requests that act, whose answers are kept for resends; the others only read.
_CONTROL_ACTIONS = frozenset(
    {"broadcast", "aggregate", "start_estimate", "restart_estimate", "publish"}
)
_ResultT = TypeVar("_ResultT", AggregateResult, CollectResult)


class UdpNode(asyncio.DatagramProtocol):
    """Runs ``Node`` over a UDP socket; also the node's ``Transport``."""

    #: Whether this transport proves peers itself (``TcpNode``: TLS), not the node's links.
    transport_authenticates: ClassVar[bool] = False

    def __init__(
        self,
        *,
        node_id: int,
        listen: tuple[str, int],
        config: NodeConfig | None = None,
        seeds: tuple[Peer, ...] = (),
        advertise: str | None = None,
        rng: random.Random | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
        event_store: EventStore | None = None,
        credentials: LinkCredentials | None = None,
    ) -> None:
        if config is not None and config.gossip.mode == "hybrid":
            raise LocalProtocolError(
                "gossip.mode = 'hybrid' needs native multicast, which the UDP runtime does "
                "not drive yet; it is a simulator baseline (see docs/PROTOCOL.md)"
            )
        self.listen = listen
        self.advertise = advertise or format_address(*listen)
        self._descriptors: dict[int, Peer] = {}
        self.node = Node(
            node_id,
            transport=self,
            rng=rng if rng is not None else random.Random(),
            config=config,
            address=self.advertise,
            seeds=seeds,
            event_store=event_store,
            credentials=credentials,
            # Link keys and nonces need the operating system's randomness, seeded runs or not.
            key_source=secrets.SystemRandom() if credentials is not None else None,
            transport_authenticates=self.transport_authenticates,
        )
        self.on_delivery = on_delivery
        self.deliveries: OrderedDict[int, Delivery] = OrderedDict()
        self.send_errors = 0
        self.oversized = 0
        self._socket: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._addresses: dict[str, tuple[str, int] | None] = {}
        self._control_answers: OrderedDict[_ControlKey, bytes] = OrderedDict()
        self._control_waiting: set[_ControlKey] = set()

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start the node; raises ``OSError`` if it cannot bind."""
        self._loop = asyncio.get_running_loop()
        sock = _bound_socket(self.listen)
        try:
            await self._loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.node.start(time.time())

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

    # -- the application API: Node's, on the wall clock ----------------------

    def set_reading(self, name: str, provider: ReadingProvider | None) -> None:
        """Answer aggregation queries (and push-sum) for ``name`` with ``provider(now)``.

        ``provider=None`` removes the reading; see ``Node.set_reading``.
        """
        self.node.set_reading(name, provider)

    def publish(
        self, topic: str, value: object, *, unit: str = "", time_us: int | None = None
    ) -> Event:
        """Publish an event through the flow's Event Managers; see ``Node.publish``."""
        return self.node.publish(topic, value, now=time.time(), unit=unit, time_us=time_us)

    def subscribe(
        self,
        filters: str | Sequence[str],
        *,
        on_event: EventCallback,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Receive events whose topics match ``filters``; see ``Node.subscribe``."""
        return self.node.subscribe(filters, now=time.time(), on_event=on_event, on_done=on_done)

    def unsubscribe(
        self,
        filters: str | Sequence[str],
        *,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Stop receiving events for ``filters``."""
        return self.node.unsubscribe(filters, now=time.time(), on_done=on_done)

    async def aggregate(
        self,
        function: str,
        reading: str,
        *,
        params: Mapping[str, object] | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
        segment: Segment = None,
    ) -> AggregateResult:
        """Aggregate ``reading`` over the nodes the query reaches; see ``Node.aggregate``.

        Only the nodes of ``segment`` (a group name or a ``Scope``) contribute.
        Returns when every child answered, or by ``timeout_s`` with what came.
        Raises ``LocalProtocolError`` for invalid arguments or a node not started.
        """
        if self._loop is None:
            raise LocalProtocolError("start() the node before it aggregates")
        result: asyncio.Future[AggregateResult] = self._loop.create_future()
        self.node.aggregate(
            function,
            reading,
            now=time.time(),
            on_result=partial(_settle, result),
            params=params,
            fanout=fanout,
            hops=hops,
            timeout_s=timeout_s,
            replies_min=replies_min,
            segment=segment,
        )
        return await result

    async def collect(
        self,
        reading: str,
        *,
        segment: Segment = None,
        limit: int = COLLECT_LIMIT_DEFAULT,
        bytes_max: int | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
    ) -> CollectResult:
        """Collect ``reading`` from every node of ``segment``, uncombined; see ``Node.collect``.

        Returns the ``(node_id, value)`` pairs, what was cut and the coverage, by
        ``timeout_s`` at the latest. ``LocalProtocolError`` as for ``aggregate``.
        """
        if self._loop is None:
            raise LocalProtocolError("start() the node before it collects")
        result: asyncio.Future[CollectResult] = self._loop.create_future()
        self.node.collect(
            reading,
            now=time.time(),
            on_result=partial(_settle, result),
            segment=segment,
            limit=limit,
            bytes_max=bytes_max,
            fanout=fanout,
            hops=hops,
            timeout_s=timeout_s,
            replies_min=replies_min,
        )
        return await result

    def start_estimate(
        self,
        function: str,
        reading: str = "",
        *,
        rounds: int | None = None,
        continuous: bool = False,
    ) -> int:
        """Start a push-sum estimate ("mean", "sum" or "size"); returns its id.

        See ``Node.start_estimate``; every node polls its own view with ``estimate``.
        """
        return self.node.start_estimate(
            function, reading, now=time.time(), rounds=rounds, continuous=continuous
        )

    def restart_estimate(self, estimate_id: int) -> None:
        """Start the next epoch of an estimate this node started."""
        self.node.restart_estimate(estimate_id, now=time.time())

    def estimate(self, estimate_id: int) -> Estimate | None:
        """This node's current view of estimate ``estimate_id``, or ``None``."""
        return self.node.estimate(estimate_id)

    # -- asyncio.DatagramProtocol --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport implements DatagramTransport without subclassing it.
        self._socket = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket = None

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a dead peer and the like: UDP is lossy anyway.
        self.send_errors += 1

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        source = format_address(host, port)
        node = self.node
        if node.secure and node.is_frame(data):
            node.receive_datagram(data, source, time.time())
            return
        try:
            message = decode(data, message_bytes_max=node.config.message_bytes_max)
            if message.kind in _CONTROL_KINDS:
                self._on_control(message, host, (host, port))
                return
        except RemoteProtocolError as error:
            node.note_rejected(error)
            return
        if node.secure:
            node.receive_plain(message, source, time.time())
        else:
            node.receive(message, source, time.time())

    # -- Transport -----------------------------------------------------------

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None:
        data = encode(message)  # once for all peers
        if len(data) > self.node.config.message_bytes_max:
            self.oversized += len(peers)
            return
        for peer in peers:
            destination = self._resolve(peer.address)
            if destination is None or self._socket is None:
                self.send_errors += 1
                continue
            self._socket.sendto(data, destination)

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        if len(data) > self.node.config.message_bytes_max:
            self.oversized += 1
            return
        destination = self._resolve(peer.address)
        if destination is None or self._socket is None:
            self.send_errors += 1
            return
        self._socket.sendto(data, destination)

    def multicast(self, source: int, message: Envelope) -> None:
        raise LocalProtocolError("the UDP runtime has no native multicast")

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        known = self._descriptors.get(node_id)
        if known is not None and (known.address, known.service, known.groups) == (
            address,
            service,
            groups,
        ):
            return known
        if len(self._descriptors) >= _DESCRIPTORS_MAX:
            self._descriptors.clear()  # a cache: views keep the peers they hold
        fresh = self._descriptors[node_id] = Peer(node_id, address, service, groups)
        return fresh

    def wake_at(self, node_id: int, when: float) -> None:
        assert self._loop is not None, "start() the node before it runs timers"
        self._loop.call_later(max(0.0, when - time.time()), self._wake, when)

    def deliver(self, node_id: int, delivery: Delivery) -> None:
        deliveries = self.deliveries
        deliveries[delivery.message_id] = delivery
        if len(deliveries) > DELIVERIES_KEPT_MAX:
            deliveries.popitem(last=False)
        if self.on_delivery is not None:
            self.on_delivery(delivery)

    def stats(self) -> dict[str, int]:
        """The node's counters plus the socket's: sends that failed or were too large."""
        return self.node.stats() | {"send_errors": self.send_errors, "oversized": self.oversized}

    # -- internals -----------------------------------------------------------

    def _wake(self, when: float) -> None:
        now = time.time()
        if now < when:  # early by the difference between the two clocks
            assert self._loop is not None
            self._loop.call_later(when - now, self._wake, when)
            return
        self.node.handle_timer(now)

    def _resolve(self, address: str) -> tuple[str, int] | None:
        cached = self._addresses.get(address, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        resolved = ip_endpoint(address)
        if len(self._addresses) >= _ADDRESS_CACHE_MAX:
            self._addresses.clear()
        self._addresses[address] = resolved
        return resolved

    def _on_control(self, message: Envelope, host: str, reply_to: tuple[str, int]) -> None:
        if message.kind is not Kind.CONTROL:
            return  # a stray reply: nothing asked for it here
        if not is_loopback(host):
            raise MalformedMessage("control requests are accepted from loopback only")
        key = (message.message_id, reply_to)
        known = self._control_answers.get(key)
        if known is not None:  # a resent request: the same answer, not a second action
            self._send_control(known, reply_to)
            return
        if key in self._control_waiting:
            return  # an aggregate in progress: its answer will come
        request = message.body
        op = request.get("op") if isinstance(request, dict) else None
        try:
            if op == "aggregate":
                self._control_aggregate(key, cast(dict[str, object], request))
                return
            answer = self._control_answer(request)
        except LocalProtocolError as error:
            answer = {"ok": False, "error": str(error)}
        self._answer_control(key, answer, keep=op in _CONTROL_ACTIONS)

    def _control_aggregate(self, key: _ControlKey, request: dict[str, object]) -> None:
        """Start the query an ``aggregate`` request asks for; answer when its result comes."""
        if len(self._control_waiting) >= CONTROL_AGGREGATES_MAX:
            raise LocalProtocolError(f"{CONTROL_AGGREGATES_MAX} aggregate requests are waiting")
        query = parse_aggregate_request(
            request, message_bytes_max=self.node.config.message_bytes_max
        )
        self._control_waiting.add(key)  # first: the result may come before aggregate returns
        try:
            self.node.aggregate(
                query.function,
                query.reading,
                now=time.time(),
                on_result=partial(self._control_result, key),
                params=query.params,
                fanout=query.fanout,
                hops=query.hops,
                timeout_s=query.timeout_s,
                replies_min=query.replies_min,
                segment=query.segment,
            )
        except BaseException:
            self._control_waiting.discard(key)
            raise

    def _control_result(self, key: _ControlKey, result: AggregateResult) -> None:
        self._control_waiting.discard(key)
        try:
            answer = aggregate_answer(result)
        except LocalProtocolError as error:
            answer = {"ok": False, "error": str(error)}
        self._answer_control(key, answer)

    def _answer_control(
        self, key: _ControlKey, answer: dict[str, object], *, keep: bool = True
    ) -> None:
        """Send ``answer`` to the request named ``key``; ``keep`` it for resends."""
        request_id, reply_to = key
        data = self._control_reply(request_id, answer)
        if keep:
            answers = self._control_answers
            answers[key] = data
            if len(answers) > CONTROL_ANSWERS_KEPT_MAX:
                answers.popitem(last=False)
        self._send_control(data, reply_to)

    def _control_reply(self, request_id: int, answer: dict[str, object]) -> bytes:
        """The CONTROL_REPLY datagram; an error answer if ``answer`` cannot travel."""
        limit = self.node.config.message_bytes_max
        try:
            data = encode(self._control_envelope(request_id, answer))
        except LocalProtocolError as error:
            answer = {"ok": False, "error": f"the answer cannot be encoded: {error}"}
        else:
            if len(data) <= limit:
                return data
            answer = {"ok": False, "error": f"the answer exceeds {limit} bytes"}
        return encode(self._control_envelope(request_id, answer))

    def _control_envelope(self, request_id: int, answer: dict[str, object]) -> Envelope:
        return Envelope(
            kind=Kind.CONTROL_REPLY,
            message_id=request_id,  # how the client matches it to its request
            origin=self.node.node_id,
            sender=self.node.node_id,
            topic="",
            created_us=int(time.time() * 1e6),
            hops_left=0,
            body=answer,
        )

    def _send_control(self, data: bytes, reply_to: tuple[str, int]) -> None:
        if self._socket is not None:
            self._socket.sendto(data, reply_to)

    def _control_answer(self, request: object) -> dict[str, object]:
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            raise LocalProtocolError("a control request is a map with a text 'op'")
        op = request["op"]
        node = self.node
        if op == "status":
            return {
                "ok": True,
                "node_id": node.node_id,
                "address": self.advertise,
                "members": len(node.membership.neighbors()),
                "stats": self.stats(),
            }
        if op == "members":
            return {
                "ok": True,
                "members": [[p.node_id, p.address] for p in node.membership.neighbors()],
            }
        if op == "broadcast":
            topic = request.get("topic", "BROADCAST")
            if not isinstance(topic, str):
                raise LocalProtocolError("broadcast takes a text topic")
            message_id = node.broadcast(
                request.get("payload"),
                topic=topic,
                now=time.time(),
                fanout=optional_number(request, "fanout"),
                hops=optional_int(request, "hops"),
                group=optional_text(request, "group"),
                reliability=optional_number(request, "reliability"),
            )
            log.info("broadcast message=%d topic=%s", message_id, topic)
            return {"ok": True, "message_id": message_id, "created_us": int(time.time() * 1e6)}
        if op == "delivered":
            wanted = required_int(request, "message_id")
            delivery = self.deliveries.get(wanted)
            if delivery is None:
                return {"ok": True, "delivered": False}
            return {
                "ok": True,
                "delivered": True,
                "latency_s": round(delivery.received_at - delivery.created_us / 1e6, 6),
                "hops_left": delivery.hops_left,
            }
        if op == "publish":
            topic = request.get("topic")
            unit = request.get("unit", "")
            if not isinstance(topic, str) or not isinstance(unit, str):
                raise LocalProtocolError("publish takes a text topic and an optional text unit")
            event = self.publish(topic, request.get("value"), unit=unit)
            log.info("published event=%d seq=%d topic=%s", event.event_id, event.seq, topic)
            return {"ok": True, "event_id": event.event_id, "seq": event.seq}
        if op == "start_estimate":
            estimate = parse_estimate_request(request)
            estimate_id = self.start_estimate(
                estimate.function,
                estimate.reading,
                rounds=estimate.rounds,
                continuous=estimate.continuous,
            )
            return {"ok": True, "estimate_id": estimate_id}
        if op == "restart_estimate":
            self.restart_estimate(required_int(request, "estimate_id"))
            return {"ok": True}
        if op == "estimate":
            return estimate_answer(self.estimate(required_int(request, "estimate_id")))
        raise LocalProtocolError(f"unknown control op {op!r}")


def _bound_socket(listen: tuple[str, int]) -> socket.socket:
    """A non-blocking UDP socket bound to ``listen``.

    Binding here, before the event loop sees the socket, keeps a failed bind a
    plain ``OSError`` (uvloop leaks its transport when its own bind fails).
    """
    family, kind, proto, _, address = socket.getaddrinfo(*listen, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Bursts of gossip arrive together; a larger buffer drops fewer of them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER_BYTES)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _settle(future: asyncio.Future[_ResultT], result: _ResultT) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(result)
