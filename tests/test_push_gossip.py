"""Push gossip, infect-and-die: behaviour on the simulator with virtual time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import PeerDirectory
from gridmesh.sim import Simulator
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, static_mesh


def broadcast_from(sim: Simulator, origin: int, at: float, **options: Any) -> list[int]:
    ids: list[int] = []

    def fire(now: float) -> None:
        node = sim.node(origin)
        assert node is not None
        ids.append(node.broadcast({"price": 0.08}, topic="TARIFF", now=now, **options))

    sim.schedule(at, fire)
    return ids


def test_every_node_delivers_a_broadcast_exactly_once() -> None:
    sim, received = static_mesh(200, fanout=8)
    broadcast_from(sim, 1, 0.1)
    sim.run(5.0)
    assert sorted(received) == list(range(2, 201)), "seed 1"
    assert all(len(deliveries) == 1 for deliveries in received.values())
    assert received[2][0].payload == {"price": 0.08}
    assert received[2][0].topic == "TARIFF"


def test_later_copies_are_counted_as_duplicates_not_delivered() -> None:
    sim, received = static_mesh(100, fanout=6)
    broadcast_from(sim, 1, 0.0)
    sim.run(5.0)
    nodes = [node for i in range(1, 101) if (node := sim.node(i)) is not None]
    duplicates = sum(node.gossip.duplicates for node in nodes)
    delivered = sum(node.gossip.delivered for node in nodes)
    assert delivered == len(received) == 99
    # Every relay sends `fanout` copies and each node delivers one: the rest are duplicates.
    assert duplicates == sim.messages_sent - delivered


def test_a_message_travels_at_most_hops_links() -> None:
    sim, received = static_mesh(500, fanout=4, hops=1)
    broadcast_from(sim, 1, 0.0)
    sim.run(5.0)
    assert len(received) == 4  # only the origin's own targets: hops=1 allows no relay
    assert sim.messages_sent == 4


def test_relays_use_the_fanout_the_origin_put_in_the_message() -> None:
    sim, _ = static_mesh(300, fanout=3, hops=2)
    broadcast_from(sim, 1, 0.0, fanout=7)
    sim.run(5.0)
    # origin: 7 copies; each of its 7 targets relays once with hops 1 left: 7 more each.
    assert sim.messages_sent == 7 + 7 * 7


def test_a_local_fanout_or_hops_out_of_range_is_refused() -> None:
    sim, _ = static_mesh(10)
    node = sim.node(1)
    assert node is not None
    with pytest.raises(LocalProtocolError):
        node.broadcast("x", topic="T", now=0.0, fanout=0)
    with pytest.raises(LocalProtocolError):
        node.broadcast("x", topic="T", now=0.0, hops=65)
    with pytest.raises(LocalProtocolError):
        node.broadcast({1, 2}, topic="T", now=0.0)


def make_node(
    transport: RecordingTransport, peers: int = 20, config: NodeConfig | None = None
) -> Node:
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, peers + 1))
    return Node(1, transport=transport, rng=random.Random(5), directory=directory, config=config)


def gossip(body: object, *, message_id: int = 9, hops_left: int = 5, sender: int = 3) -> Envelope:
    return Envelope(Kind.GOSSIP, message_id, 2, sender, "T", 0, hops_left, body)


def body(fanout: object, payload: object, group: object = "", forever: object = False) -> object:
    return [fanout, payload, group, forever]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        [3],
        [3, "x"],  # the two-item body of gridmesh 0.1
        body(0, "x"),
        body(65, "x"),
        body(float("nan"), "x"),
        body("3", "x"),
        body(True, "x"),
        body(3, "x", 7),
        body(3, "x", "g" * 65),
        body(3, "x", "", 1),
        [3, "x", "", False, None],
    ],
)
def test_a_malformed_gossip_body_is_counted_and_dropped(bad: object) -> None:
    transport = RecordingTransport()
    node = make_node(transport)
    node.receive(gossip(bad), "3", 1.0)
    assert node.rejected == {"malformed": 1}
    assert transport.sent == [] and transport.deliveries == []
    node.receive(gossip(body(3, "ok")), "3", 2.0)  # and the node keeps working
    assert len(transport.deliveries) == 1


def test_a_malformed_copy_does_not_poison_the_duplicate_cache() -> None:
    transport = RecordingTransport()
    node = make_node(transport)
    node.receive(gossip(body(0, "forged"), message_id=11), "3", 1.0)
    node.receive(gossip(body(3, "genuine"), message_id=11), "4", 1.1)
    assert [d.payload for _, d in transport.deliveries] == ["genuine"]


def test_relays_never_send_back_to_the_neighbour_a_copy_came_from() -> None:
    transport = RecordingTransport()
    node = make_node(transport, peers=4)  # peers 2, 3, 4 besides itself
    node.receive(gossip(body(64, "x"), sender=3), "3", 1.0)
    assert sorted(peer.node_id for _, peer, _ in transport.sent) == [2, 4]


def test_hops_beyond_the_receivers_limit_are_clamped() -> None:
    transport = RecordingTransport()
    node = make_node(transport, config=NodeConfig(gossip=GossipConfig(hops=4, hops_max=8)))
    node.receive(gossip(body(2, "x"), hops_left=64), "3", 1.0)
    relayed = {message.hops_left for _, _, message in transport.sent}
    assert relayed == {7}  # clamped to hops_max=8, then one hop used
    assert all(message.sender == 1 for _, _, message in transport.sent)


def test_spurious_wake_ups_do_not_multiply() -> None:
    transport = RecordingTransport()
    node = make_node(transport)
    fired: list[float] = []

    def tick(now: float) -> None:
        fired.append(now)
        node.call_at(now + 1.0, tick)

    node.call_at(1.0, tick)
    # A driver may wake a node early, late or twice; here every second, twice.
    for second in range(1, 101):
        node.handle_timer(float(second))
        node.handle_timer(float(second))
    assert fired == [float(s) for s in range(1, 101)]
    assert len(transport.wakes) <= 101  # one request per timer, not a growing storm
