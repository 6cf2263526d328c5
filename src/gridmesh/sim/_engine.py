"""A deterministic discrete-event simulator that drives real ``Node`` objects.

Theory of operation
-------------------
The simulator is one of the two drivers of ``gridmesh.node.Node`` (the other
is the asyncio runtime). It implements ``Transport`` for every node it runs:

* **Virtual time.** One queue of events ``(time, seq, code, node, item,
  source)`` (a calendar queue, see ``_queue``); ``seq`` is a global counter,
  so ties break in scheduling order and no two entries ever compare beyond
  it. Time only moves when the next event is popped; nothing ever sleeps.
* **Events.** ``DELIVER`` hands a message (an ``Envelope``, or its bytes in
  wire-fidelity mode) to a node; ``WAKE`` calls a node's ``handle_timer``;
  ``ACTION`` runs a scripted callback (a broadcast, a crash, a partition).
* **Network.** Each send is counted (messages, and bytes measured by the real
  encoder in every mode), then may be refused as oversized, lost (per link
  class), or cut by an active partition; otherwise it is delivered after a
  latency drawn from its link class. Messages to a node that is down when
  they arrive are dropped and counted.
* **Faults.** ``crash`` removes a node (its pending events die with it);
  ``recover`` builds a fresh node with the same id from its factory and starts
  it — a process restart: volatile state is gone.
* **Determinism.** All randomness is derived from the seed: the network draws
  latencies and losses from a NumPy generator, the nodes share one
  ``random.Random`` (one per node would cost 2.5 KiB each). Nothing depends on
  wall time, hash order or addresses of objects, so ``(scenario, seed)`` fixes
  every event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from random import Random

import numpy as np

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node
from gridmesh.protocols import Delivery, Peer
from gridmesh.sim._network import NetworkConfig, uniform_stream
from gridmesh.sim._queue import CalendarQueue
from gridmesh.sim._routers import TrafficTrace
from gridmesh.wire import MESSAGE_BYTES_MAX, Envelope, Kind, encode

__all__ = ["NodeFactory", "Simulator"]

NodeFactory = Callable[[int], Node]
DeliveryObserver = Callable[[int, Delivery], None]

_DELIVER = 0
_WAKE = 1
_ACTION = 2
_PROGRESS_EVERY_EVENTS = 1 << 14
_NETWORK_STREAM = 0x6E6574  # "net": keeps the network's draws apart from other uses of a seed


class Simulator:
    """Runs many nodes in virtual time over a simulated network."""

    def __init__(
        self,
        *,
        seed: int,
        network: NetworkConfig | None = None,
        wire_fidelity: bool = False,
        message_bytes_max: int = MESSAGE_BYTES_MAX,
    ) -> None:
        if seed < 0:
            raise LocalProtocolError(f"a simulation seed is a non-negative integer, got {seed}")
        self.seed = seed
        self.network = NetworkConfig() if network is None else network
        self.wire_fidelity = wire_fidelity
        self.message_bytes_max = message_bytes_max
        self.now = 0.0
        self.node_rng = Random(f"gridmesh-nodes:{seed}")
        generator = np.random.default_rng([seed, _NETWORK_STREAM])
        net = self.network
        self._lan_loss = net.lan.loss
        self._wan_loss = net.wan.loss
        self._lan_latency = net.lan.latency.stream(generator).__next__
        self._wan_latency = net.wan.latency.stream(generator).__next__
        self._loss_draw = uniform_stream(generator).__next__
        self._domain_size = net.domain_size
        self._queue = CalendarQueue()
        self._seq = 0
        self._nodes: list[Node | None] = []
        self._factories: list[NodeFactory] = []
        self._addresses: list[str] = []
        self._descriptors: list[Peer | None] = []  # the interned descriptor of each node
        self._group_of: Sequence[int] | None = None
        self.on_deliver: DeliveryObserver | None = None
        #: When set, payload copies of the messages it names are recorded (link stress).
        self.trace: TrafficTrace | None = None
        # Counters: what the report is made of.
        self.messages_sent = 0
        self.bytes_sent = 0
        self.messages_delivered = 0
        self.messages_lost = 0
        self.messages_partitioned = 0
        self.messages_to_down_nodes = 0
        self.messages_oversized = 0
        self.messages_unroutable = 0
        self.events_processed = 0
        self.sent_by_node: list[int] = []
        self.bytes_by_node: list[int] = []

    # -- building a run ------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    def address_of(self, node_id: int) -> str:
        return self._addresses[node_id - 1]

    def add_nodes(self, count: int, make: NodeFactory, *, start_at: float = 0.0) -> range:
        """Create ``count`` nodes with ``make(node_id)``; each starts at ``start_at``."""
        first = len(self._nodes) + 1
        ids = range(first, first + count)
        for node_id in ids:
            self._addresses.append(str(node_id))
            self._descriptors.append(None)
            self._factories.append(make)
            self.sent_by_node.append(0)
            self.bytes_by_node.append(0)
            node = make(node_id)
            assert node.node_id == node_id, "a factory must build the node id it is given"
            self._nodes.append(node)
            self.schedule(start_at, partial(self._start_node, node_id - 1))
        return ids

    def node(self, node_id: int) -> Node | None:
        """The node with this id, or None while it is down."""
        return self._nodes[node_id - 1]

    def is_up(self, node_id: int) -> bool:
        return self._nodes[node_id - 1] is not None

    def schedule(self, at: float, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` at virtual time ``at``."""
        self._push(at, _ACTION, -1, action, 0)

    def crash(self, node_id: int, at: float) -> None:
        self.schedule(at, partial(self._crash_node, node_id - 1))

    def recover(self, node_id: int, at: float) -> None:
        self.schedule(at, partial(self._recover_node, node_id - 1))

    def partition(self, start_s: float, heal_s: float, group_of: Sequence[int]) -> None:
        """Between ``start_s`` and ``heal_s``, drop messages between nodes of different groups.

        ``group_of[i]`` is the group of node id ``i + 1``.
        """
        if len(group_of) != len(self._nodes):
            raise LocalProtocolError("partition needs one group number per node")
        if heal_s < start_s:
            raise LocalProtocolError("a partition cannot heal before it starts")
        groups = tuple(group_of)
        self.schedule(start_s, lambda now: self._set_partition(groups))
        self.schedule(heal_s, lambda now: self._set_partition(None))

    # -- Transport, for the nodes --------------------------------------------

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None:
        count = len(peers)
        if not count:
            return
        data = encode(message)  # once per batch; a relay re-encodes only its tail
        src = source - 1
        if not self._account(src, count, len(data)):
            return
        item = data if self.wire_fidelity else message
        trace = self.trace
        if trace is not None and message.kind is Kind.GOSSIP and message.origin in trace.origins:
            destinations = [(p.node_id or _address_to_id(p.address)) - 1 for p in peers]
            trace.unicast((message.origin, message.message_id), src, destinations)
        node_count = len(self._nodes)
        domain_size = self._domain_size
        src_domain = src // domain_size
        group_of = self._group_of
        draw = self._loss_draw
        push = self._queue.push
        now = self.now
        for peer in peers:
            dst = (peer.node_id or _address_to_id(peer.address)) - 1
            if not 0 <= dst < node_count:
                self.messages_unroutable += 1
                continue
            if dst // domain_size == src_domain:
                loss, latency = self._lan_loss, self._lan_latency
            else:
                loss, latency = self._wan_loss, self._wan_latency
            if loss and draw() < loss:
                self.messages_lost += 1
                continue
            if group_of is not None and group_of[src] != group_of[dst]:
                self.messages_partitioned += 1
                continue
            self._seq += 1
            push((now + latency(), self._seq, _DELIVER, dst, item, src))

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        """Bytes to one peer as they are: a secure node's sealed frames and handshakes.

        The receiver gets them through ``receive_datagram`` whatever
        ``wire_fidelity`` says; loss, latency and partitions apply as to ``send``.
        """
        src = source - 1
        if not self._account(src, 1, len(data)):
            return
        dst = (peer.node_id or _address_to_id(peer.address)) - 1
        if not 0 <= dst < len(self._nodes):
            self.messages_unroutable += 1
            return
        if dst // self._domain_size == src // self._domain_size:
            loss, latency = self._lan_loss, self._lan_latency
        else:
            loss, latency = self._wan_loss, self._wan_latency
        if loss and self._loss_draw() < loss:
            self.messages_lost += 1
            return
        group_of = self._group_of
        if group_of is not None and group_of[src] != group_of[dst]:
            self.messages_partitioned += 1
            return
        self._seq += 1
        self._queue.push((self.now + latency(), self._seq, _DELIVER, dst, data, src))

    def multicast(self, source: int, message: Envelope) -> None:
        """Native multicast: one transmission reaches every other node of the source's domain.

        Counted as one message (and its bytes) at the source; each receiver
        then draws its own LAN loss and latency, and partitions apply.
        """
        data = encode(message)
        src = source - 1
        if not self._account(src, 1, len(data)):
            return
        item = data if self.wire_fidelity else message
        domain_size = self._domain_size
        first = src // domain_size * domain_size
        receivers = [
            i for i in range(first, min(first + domain_size, len(self._nodes))) if i != src
        ]
        trace = self.trace
        if trace is not None and message.kind is Kind.GOSSIP and message.origin in trace.origins:
            trace.multicast((message.origin, message.message_id), src, receivers)
        loss, latency, draw = self._lan_loss, self._lan_latency, self._loss_draw
        group_of = self._group_of
        push = self._queue.push
        now = self.now
        for dst in receivers:
            if loss and draw() < loss:
                self.messages_lost += 1
                continue
            if group_of is not None and group_of[src] != group_of[dst]:
                self.messages_partitioned += 1
                continue
            self._seq += 1
            push((now + latency(), self._seq, _DELIVER, dst, item, src))

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        """One shared descriptor per node: every view that lists a node points at it."""
        index = node_id - 1
        table = self._descriptors
        if 0 <= index < len(table):
            known = table[index]
            if known is not None and (known.address, known.service, known.groups) == (
                address,
                service,
                groups,
            ):
                return known
            fresh = Peer(node_id, address, service, groups)
            if known is None:
                table[index] = fresh
            return fresh
        return Peer(node_id, address, service, groups)

    def wake_at(self, node_id: int, when: float) -> None:
        self._push(max(when, self.now), _WAKE, node_id - 1, None, 0)

    def deliver(self, node_id: int, delivery: Delivery) -> None:
        observer = self.on_deliver
        if observer is not None:
            observer(node_id, delivery)

    # -- running -------------------------------------------------------------

    def run(self, until_s: float, progress: Callable[[float], None] | None = None) -> None:
        """Process every event up to virtual time ``until_s``."""
        pop_until = self._queue.pop_until
        nodes = self._nodes
        addresses = self._addresses
        fidelity = self.wire_fidelity
        events = delivered = to_down = 0
        try:
            while (event := pop_until(until_s)) is not None:
                now, _, code, target, item, source = event
                self.now = now
                events += 1
                if code == _DELIVER:
                    node = nodes[target]
                    if node is None:
                        to_down += 1
                    elif fidelity or type(item) is bytes:
                        delivered += 1
                        node.receive_datagram(item, addresses[source], now)
                    else:
                        delivered += 1
                        node.receive(item, addresses[source], now)
                elif code == _WAKE:
                    node = nodes[target]
                    if node is not None:
                        node.handle_timer(now)
                else:
                    item(now)
                if progress is not None and not events % _PROGRESS_EVERY_EVENTS:
                    progress(now)
        finally:
            self.events_processed += events
            self.messages_delivered += delivered
            self.messages_to_down_nodes += to_down
        self.now = max(self.now, until_s)
        if progress is not None:
            progress(self.now)

    # -- internals -----------------------------------------------------------

    def _account(self, src: int, count: int, size: int) -> bool:
        """Count ``count`` copies of ``size`` bytes from node index ``src``; False: too large."""
        self.messages_sent += count
        self.sent_by_node[src] += count
        self.bytes_by_node[src] += size * count
        self.bytes_sent += size * count
        if size > self.message_bytes_max:
            self.messages_oversized += count
            return False
        return True

    def _push(self, at: float, code: int, target: int, item: object, source: int) -> None:
        if at < self.now:
            raise LocalProtocolError(f"cannot schedule at {at} s: the clock is at {self.now} s")
        self._seq += 1
        self._queue.push((at, self._seq, code, target, item, source))

    def _start_node(self, index: int, now: float) -> None:
        node = self._nodes[index]
        if node is not None:
            node.start(now)

    def _crash_node(self, index: int, now: float) -> None:
        self._nodes[index] = None

    def _recover_node(self, index: int, now: float) -> None:
        if self._nodes[index] is not None:
            return
        node = self._factories[index](index + 1)
        self._nodes[index] = node
        node.start(now)

    def _set_partition(self, group_of: Sequence[int] | None) -> None:
        self._group_of = group_of


def _address_to_id(address: str) -> int:
    try:
        return int(address)
    except ValueError:
        return 0
