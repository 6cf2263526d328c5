"""Every dissemination mode on the simulator: pull, push-pull, lazy, infect-forever,
anti-entropy, groups, fractional fanout and reliability. (Push: test_push_gossip.py;
tree: test_tree_gossip.py.)"""

from __future__ import annotations

import math
import random

import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig, copies_for, fanout_for
from gridmesh.protocols.membership import (
    CyclonConfig,
    FullMembershipConfig,
    PeerDirectory,
)
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, mesh

STATIC = FullMembershipConfig(exchange_interval_s=0)


def network(loss: float = 0.0) -> NetworkConfig:
    link = LinkClass(latency=ConstantLatency(delay_s=0.01), loss=loss)
    return NetworkConfig(lan=link, wan=link)


def run_mesh(
    count: int, gossip: GossipConfig, *, loss: float = 0.0, seed: int = 1
) -> tuple[Simulator, dict[int, list[Delivery]]]:
    return mesh(count, NodeConfig(gossip=gossip, membership=STATIC), network(loss), seed=seed)


def fire(sim: Simulator, origin: int, at: float, **options: object) -> list[int]:
    ids: list[int] = []

    def go(now: float) -> None:
        node = sim.node(origin)
        assert node is not None
        ids.append(node.broadcast({"price": 0.08}, topic="TARIFF", now=now, **options))  # type: ignore[arg-type]

    sim.schedule(at, go)
    return ids


def total(sim: Simulator, counter: str) -> int:
    return sum(
        node.gossip.stats()[counter]
        for i in range(1, sim.node_count + 1)
        if (node := sim.node(i)) is not None
    )


# -- pull and push-pull -------------------------------------------------------


def test_pull_alone_reaches_every_node_by_digest_exchange() -> None:
    sim, received = run_mesh(200, GossipConfig(mode="pull", pull_interval_s=1.0))
    fire(sim, 1, 0.5)
    sim.run(30.0)
    assert sorted(received) == list(range(2, 201)), "seed 1"
    assert all(len(d) == 1 for d in received.values())
    assert total(sim, "relayed") == 0  # nothing is pushed
    assert total(sim, "repaired") == 199  # every node pulled it


def test_push_pull_reaches_every_node_where_push_alone_does_not() -> None:
    push = GossipConfig(mode="push", fanout=2, hops=8)
    push_pull = GossipConfig(mode="push-pull", fanout=2, hops=8, pull_interval_s=1.0)
    reached = {}
    for name, config in (("push", push), ("push-pull", push_pull)):
        sim, received = run_mesh(300, config, loss=0.2, seed=3)
        fire(sim, 1, 0.5)
        sim.run(30.0)
        reached[name] = len(received)
    assert reached["push-pull"] == 299, "seed 3"
    assert reached["push"] < 299


# -- lazy push ----------------------------------------------------------------


def test_lazy_push_sends_each_payload_about_once_and_reaches_everyone() -> None:
    sim, received = run_mesh(300, GossipConfig(mode="lazy", fanout=8, hops=10))
    fire(sim, 1, 0.5)
    sim.run(10.0)
    assert sorted(received) == list(range(2, 301)), "seed 1"
    # Payloads only travel on request: a duplicate needs two answers to two IWANTs
    # crossing, which the 'pending' bookkeeping prevents.
    assert total(sim, "duplicates") == 0
    assert total(sim, "requested") == 299


def test_lazy_push_asks_the_next_announcer_when_a_payload_is_lost() -> None:
    sim, received = run_mesh(200, GossipConfig(mode="lazy", fanout=8, hops=10), loss=0.2, seed=4)
    fire(sim, 1, 0.5)
    sim.run(20.0)
    # A node misses a message only if all ~6.4 announcements or all of up to 5
    # requests (each 64% likely to come back) fail: about 0.8% of nodes.
    assert len(received) >= 195, "seed 4"
    assert total(sim, "requested") > len(received) + 20  # lost requests were retried


# -- infect-forever -----------------------------------------------------------


def test_infect_forever_relays_duplicates_while_hops_last() -> None:
    die = GossipConfig(fanout=2, hops=6)
    forever = GossipConfig(fanout=2, hops=6, infection="forever")
    sent = {}
    for name, config in (("die", die), ("forever", forever)):
        sim, received = run_mesh(300, config, seed=5)
        fire(sim, 1, 0.5)
        sim.run(10.0)
        sent[name] = sim.messages_sent
        assert all(len(d) == 1 for d in received.values())  # delivery is still once
    # Balls and bins: every copy is relayed, so exactly 2 + 4 + ... + 2**6 copies.
    assert sent["forever"] == sum(2**h for h in range(1, 7))
    assert sent["die"] < sent["forever"]


# -- anti-entropy -------------------------------------------------------------


def test_anti_entropy_repairs_a_node_that_was_down_when_the_message_went_by() -> None:
    config = GossipConfig(fanout=6, anti_entropy_interval_s=2.0)
    sim, received = run_mesh(100, config, seed=6)
    sim.crash(7, at=0.0)
    sim.recover(7, at=5.0)  # a fresh process: it never saw the message
    fire(sim, 1, 1.0)
    sim.run(4.0)
    assert 7 not in received
    sim.run(20.0)
    assert len(received[7]) == 1, "seed 6"
    node = sim.node(7)
    assert node is not None and node.gossip.repaired == 1


def test_anti_entropy_heals_a_partition() -> None:
    config = GossipConfig(fanout=6, anti_entropy_interval_s=1.0)
    sim, received = run_mesh(100, config, seed=7)
    side = [0] * 50 + [1] * 50  # nodes 1..50 and 51..100 cannot talk until 10 s
    sim.partition(0.0, 10.0, side)
    fire(sim, 1, 1.0)
    sim.run(9.0)
    assert set(received) == set(range(2, 51))
    sim.run(40.0)
    assert sorted(received) == list(range(2, 101)), "seed 7"


def test_a_digest_reply_is_bounded() -> None:
    transport = RecordingTransport()
    config = NodeConfig(gossip=GossipConfig(mode="pull", reply_messages_max=3))
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory(5))
    for i in range(10):
        node.broadcast(i, topic="T", now=float(i))
    transport.sent.clear()
    node.receive(Envelope(Kind.GOSSIP_DIGEST, 1, 2, 2, "", 0, 0, [0, []]), "2", 11.0)
    assert len(transport.sent) == 3
    assert all(m.hops_left == 0 and m.sender == 1 for _, _, m in transport.sent)


# -- groups -------------------------------------------------------------------


def directory(count: int, group_of: dict[int, tuple[str, ...]] | None = None) -> PeerDirectory:
    group_of = group_of or {}
    return PeerDirectory(Peer(i, str(i), "meter", group_of.get(i, ())) for i in range(1, count + 1))


def grouped_mesh(
    count: int, members: set[int], fanout: float
) -> tuple[Simulator, dict[int, list[Delivery]]]:
    groups = {i: ("tariff:RTP",) for i in members}
    shared = directory(count, groups)
    sim = Simulator(seed=8, network=network())

    def make(i: int) -> Node:
        config = NodeConfig(
            service="meter",
            groups=groups.get(i, ()),
            gossip=GossipConfig(fanout=fanout),
            membership=STATIC,
        )
        return Node(i, transport=sim, rng=sim.node_rng, config=config, directory=shared)

    sim.add_nodes(count, make)
    received: dict[int, list[Delivery]] = {}
    sim.on_deliver = lambda i, d: received.setdefault(i, []).append(d)
    return sim, received


def test_a_group_message_is_delivered_by_the_group_only() -> None:
    members = set(range(2, 301, 3))  # 100 of 300 meters are on the RTP tariff
    sim, received = grouped_mesh(300, members, fanout=7)
    fire(sim, 1, 0.5, group="tariff:RTP")
    sim.run(10.0)
    assert set(received) == members, "seed 8"
    # With the whole membership in sight, relays pick group members only.
    assert total(sim, "carried") == 0


def test_a_group_sparse_in_the_view_is_still_reached_through_carriers() -> None:
    sim = Simulator(seed=9, network=network())
    members = set(range(10, 401, 10))  # 40 of 400
    directories = {}
    rng = random.Random(9)
    everyone = directory(400, {i: ("region:London",) for i in members})
    peers = list(everyone)
    for i in range(1, 401):  # each node sees only 12 random peers
        directories[i] = PeerDirectory(rng.sample(peers, 12))

    def make(i: int) -> Node:
        config = NodeConfig(
            groups=("region:London",) if i in members else (),
            gossip=GossipConfig(fanout=6, hops=12),
            membership=STATIC,
        )
        return Node(i, transport=sim, rng=sim.node_rng, config=config, directory=directories[i])

    sim.add_nodes(400, make)
    received: dict[int, list[Delivery]] = {}
    sim.on_deliver = lambda i, d: received.setdefault(i, []).append(d)
    fire(sim, 1, 0.5, group="region:London")
    sim.run(10.0)
    assert set(received) == members, "seed 9"
    assert total(sim, "carried") > 0


# -- fanout: fractional and from a reliability ---------------------------------


def test_a_fractional_fanout_is_met_on_average() -> None:
    rng = random.Random(10)
    copies = [copies_for(3.25, rng) for _ in range(20_000)]
    assert set(copies) == {3, 4}
    assert abs(sum(copies) / len(copies) - 3.25) < 0.02


def test_a_reliability_picks_the_fanout_from_the_network_size() -> None:
    sim, received = run_mesh(500, GossipConfig(hops=12), seed=11)
    fire(sim, 1, 0.5, reliability=0.999)
    sim.run(10.0)
    assert len(received) == 499, "seed 11"
    expected = fanout_for(0.999, 500)
    assert expected == pytest.approx(math.log(500) - math.log(-math.log(0.999)))
    # The origin sent floor or ceil of the mean.
    first = sim.sent_by_node[0]
    assert math.floor(expected) <= first <= math.ceil(expected)


def test_a_reliability_without_a_size_estimate_is_refused() -> None:
    config = NodeConfig(membership=CyclonConfig(), gossip=GossipConfig())
    node = Node(1, transport=RecordingTransport(), rng=random.Random(1), config=config)
    with pytest.raises(LocalProtocolError, match="network_size"):
        node.broadcast("x", topic="T", now=0.0, reliability=0.99)
    sized = NodeConfig(membership=CyclonConfig(), gossip=GossipConfig(network_size=10_000))
    node = Node(1, transport=RecordingTransport(), rng=random.Random(1), config=sized)
    node.broadcast("x", topic="T", now=0.0, reliability=0.99)  # no peers yet: sent to nobody


def test_fanout_and_reliability_together_are_refused() -> None:
    sim, _ = run_mesh(10, GossipConfig())
    node = sim.node(1)
    assert node is not None
    with pytest.raises(LocalProtocolError, match="not both"):
        node.broadcast("x", topic="T", now=0.0, fanout=3, reliability=0.9)


def test_configuration_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="forever"):
        GossipConfig(mode="lazy", infection="forever")
    with pytest.raises(ValueError, match="hyparview"):
        NodeConfig(gossip=GossipConfig(mode="tree"))


# -- malformed requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (Kind.GOSSIP_IHAVE, None),
        (Kind.GOSSIP_IHAVE, [[1]]),
        (Kind.GOSSIP_IHAVE, [[0, 5]]),
        (Kind.GOSSIP_IWANT, [["1", 5]]),
        (Kind.GOSSIP_IWANT, [[1, 5]] * 5000),
        (Kind.GOSSIP_DIGEST, [0]),
        (Kind.GOSSIP_DIGEST, [-1, []]),
        (Kind.GOSSIP_DIGEST, ["0", []]),
        (Kind.GOSSIP_DIGEST, [0, [[1, -2]]]),
    ],
)
def test_malformed_requests_are_counted_and_dropped(kind: Kind, body: object) -> None:
    transport = RecordingTransport()
    config = NodeConfig(gossip=GossipConfig(mode="lazy"))
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory(5))
    node.receive(Envelope(kind, 1, 2, 2, "", 0, 0, body), "2", 1.0)
    assert node.rejected == {"malformed": 1}
    assert transport.sent == []
