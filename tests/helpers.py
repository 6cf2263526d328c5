"""Test doubles that are real enough: a Transport that records what a node asks for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator
from gridmesh.wire import Envelope, Kind


@dataclass
class RecordingTransport:
    """Implements ``gridmesh.node.Transport`` by writing everything down."""

    sent: list[tuple[int, Peer, Envelope]] = field(default_factory=list)
    wakes: list[tuple[int, float]] = field(default_factory=list)
    multicasts: list[tuple[int, Envelope]] = field(default_factory=list)
    deliveries: list[tuple[int, Delivery]] = field(default_factory=list)
    datagrams: list[tuple[int, Peer, bytes]] = field(default_factory=list)

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None:
        self.sent.extend((source, peer, message) for peer in peers)

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        self.datagrams.append((source, peer, data))

    def multicast(self, source: int, message: Envelope) -> None:
        self.multicasts.append((source, message))

    def wake_at(self, node_id: int, when: float) -> None:
        self.wakes.append((node_id, when))

    def deliver(self, node_id: int, delivery: Delivery) -> None:
        self.deliveries.append((node_id, delivery))

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        return Peer(node_id, address, service, groups)


def mesh(
    count: int,
    config: NodeConfig,
    network: NetworkConfig,
    *,
    seed: int = 1,
    wire_fidelity: bool = False,
) -> tuple[Simulator, dict[int, list[Delivery]]]:
    """``count`` nodes on a simulator, and the deliveries each makes.

    Static membership (``exchange_interval_s == 0``) gives every node the full
    directory; gossiped membership makes every node join through node 1.
    """
    sim = Simulator(seed=seed, network=network, wire_fidelity=wire_fidelity)
    static = config.membership.exchange_interval_s == 0
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1)) if static else None
    seeds = () if static else (Peer(1, "1"),)
    sim.add_nodes(
        count,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(i),
            directory=directory,
            seeds=seeds,
        ),
    )
    received: dict[int, list[Delivery]] = {}
    sim.on_deliver = lambda node_id, d: received.setdefault(node_id, []).append(d)
    return sim, received


def static_mesh(
    count: int,
    *,
    seed: int = 1,
    fanout: int = 6,
    hops: int = 10,
    network: NetworkConfig | None = None,
    wire_fidelity: bool = False,
) -> tuple[Simulator, dict[int, list[Delivery]]]:
    """Static full membership, 10 ms links unless ``network`` says otherwise."""
    config = NodeConfig(
        gossip=GossipConfig(fanout=fanout, hops=hops),
        membership=FullMembershipConfig(exchange_interval_s=0),
    )
    if network is None:
        link = LinkClass(latency=ConstantLatency(delay_s=0.01))
        network = NetworkConfig(lan=link, wan=link)
    return mesh(count, config, network, seed=seed, wire_fidelity=wire_fidelity)


def joining_mesh(
    count: int,
    *,
    seed: int = 1,
    fanout: int = 6,
    exchange_interval_s: float = 0.5,
    member_timeout_s: float = 5.0,
) -> tuple[Simulator, dict[int, list[Delivery]]]:
    """Gossiped full membership through node 1; 5 ms LAN, 20 ms WAN, domains of 10."""
    config = NodeConfig(
        gossip=GossipConfig(fanout=fanout),
        membership=FullMembershipConfig(
            exchange_interval_s=exchange_interval_s, member_timeout_s=member_timeout_s
        ),
    )
    network = NetworkConfig(
        lan=LinkClass(latency=ConstantLatency(delay_s=0.005)),
        wan=LinkClass(latency=ConstantLatency(delay_s=0.02)),
        domain_size=10,
    )
    return mesh(count, config, network, seed=seed)


def member_ids(sim: Simulator, node_id: int) -> set[int]:
    node = sim.node(node_id)
    assert node is not None
    return {peer.node_id for peer in node.membership.neighbors()}


def overlay_mesh(
    count: int,
    membership: object,
    *,
    seed: int = 1,
    contact: str = "random",
    spread_s: float = 0.0,
    loss: float = 0.0,
    gossip: GossipConfig | None = None,
) -> Simulator:
    """``count`` nodes running a partial-view membership; node i first knows one contact."""
    import random

    from gridmesh.protocols.membership import CyclonConfig, HyParViewConfig, NewscastConfig
    from gridmesh.sim import UniformLatency

    assert isinstance(membership, CyclonConfig | NewscastConfig | HyParViewConfig)
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05), loss=loss)
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
    config = NodeConfig(membership=membership, gossip=gossip or GossipConfig())
    rng = random.Random(seed)
    contacts = [0, 0] + [
        1
        if contact == "first"
        else i - 1
        if contact == "previous"
        else 1 + int(rng.random() * (i - 1))
        for i in range(2, count + 1)
    ]

    def make(node_id: int) -> Node:
        known = contacts[node_id]
        seeds = (Peer(known, str(known)),) if known else ()
        return Node(
            node_id,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(node_id),
            seeds=seeds,
        )

    for node_id in range(1, count + 1):
        sim.add_nodes(1, make, start_at=spread_s * (node_id - 1) / count)
    return sim


def sent(
    transport: RecordingTransport, kind: Kind, *, acks: bool = False
) -> list[tuple[int, Envelope]]:
    """(destination, message) of each message of ``kind`` sent, and forget them.

    Tree aggregation's ACK replies (a child's value arrived) are left out unless ``acks``.
    """
    found = [
        (peer.node_id, m)
        for _, peer, m in transport.sent
        if m.kind is kind and (acks or not is_ack(m))
    ]
    transport.sent.clear()
    return found


def is_ack(message: Envelope) -> bool:
    return message.kind is Kind.AGG_REPLY and message.body[2:] == [3]
