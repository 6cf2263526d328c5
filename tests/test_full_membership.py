"""Gossiped full membership: join through one seed, heartbeats, expiry, restarts."""

from __future__ import annotations

import random

import pytest

from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer, Scope
from gridmesh.protocols.membership import (
    MEMBERS_PER_MESSAGE_LIMIT,
    FullMembershipConfig,
    PeerDirectory,
)
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, joining_mesh, member_ids


def test_nodes_that_know_only_one_seed_learn_every_member() -> None:
    sim, _ = joining_mesh(60)
    sim.run(8.0)
    for node_id in range(1, 61):
        assert member_ids(sim, node_id) == set(range(1, 61)) - {node_id}, f"seed 1 node {node_id}"


def test_a_crashed_member_is_removed_after_the_timeout_and_not_resurrected() -> None:
    sim, _ = joining_mesh(30, member_timeout_s=3.0)
    sim.run(6.0)
    sim.crash(7, at=6.0)
    sim.run(7.0)
    assert all(7 in member_ids(sim, i) for i in range(1, 31) if i != 7)  # not yet timed out
    sim.run(15.0)
    for node_id in range(1, 31):
        if node_id != 7:
            assert 7 not in member_ids(sim, node_id), f"seed 1: node {node_id} still lists 7"


def test_a_restarted_member_comes_back() -> None:
    sim, _ = joining_mesh(30, member_timeout_s=3.0)
    sim.crash(7, at=4.0)
    sim.recover(7, at=12.0)
    sim.run(11.0)
    assert 7 not in member_ids(sim, 2)
    sim.run(20.0)
    assert all(7 in member_ids(sim, i) for i in range(1, 31) if i != 7)
    assert member_ids(sim, 7) == set(range(1, 31)) - {7}


def test_gossip_reaches_everyone_once_membership_has_formed() -> None:
    sim, received = joining_mesh(50, fanout=8)

    def fire(now: float) -> None:
        node = sim.node(1)
        assert node is not None
        node.broadcast("tariff", topic="TARIFF", now=now)

    sim.schedule(6.0, fire)
    sim.run(8.0)
    assert sorted(received) == list(range(2, 51))


def members_node(transport: RecordingTransport) -> Node:
    return Node(
        1,
        transport=transport,
        rng=random.Random(3),
        config=NodeConfig(membership=FullMembershipConfig(exchange_interval_s=1.0)),
        address="127.0.0.1:9001",
        directory=PeerDirectory(),
    )


def members(body: object, origin: int = 5) -> Envelope:
    return Envelope(Kind.MEMBERS, 1, origin, origin, "", 0, 0, body)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [True],
        ["yes", []],
        [True, "entries"],
        [True, [[0, "127.0.0.1:1", "meter", [], 1]]],  # node id 0
        [True, [[-3, "127.0.0.1:1", "meter", [], 1]]],
        [True, [[4, 17, "meter", [], 1]]],  # address not text
        [True, [[4, "127.0.0.1:1", "meter", [], -1]]],  # negative heartbeat
        [True, [[4, "x" * 300, "meter", [], 1]]],  # address too long
        [True, [[4, "127.0.0.1:1", "m" * 65, [], 1]]],  # service too long
        [True, [[4, "127.0.0.1:1", "meter", ["g"] * 17, 1]]],  # too many groups
        [True, [[4, "127.0.0.1:1", "meter", [7], 1]]],  # a group that is not text
        [True, [[4, "127.0.0.1:1", "meter", 1]]],  # a field missing
        [True, [[4, "127.0.0.1:1", "meter", [], 1]] * (MEMBERS_PER_MESSAGE_LIMIT + 1)],
    ],
)
def test_a_malformed_member_list_is_refused_and_merges_nothing(body: object) -> None:
    transport = RecordingTransport()
    node = members_node(transport)
    node.start(0.0)
    node.receive(members(body), "127.0.0.1:9005", 1.0)
    assert node.rejected == {"malformed": 1}
    assert node.membership.neighbors() == []


def test_a_member_list_merges_and_answers_when_a_reply_is_wanted() -> None:
    transport = RecordingTransport()
    node = members_node(transport)
    node.start(0.0)
    entries = [
        [5, "127.0.0.1:9005", "dtc", ["region:London"], 10],
        [6, "127.0.0.1:9006", "meter", ["tariff:RTP"], 3],
    ]
    node.receive(members([True, entries]), "127.0.0.1:9005", 1.0)
    assert {p.node_id for p in node.membership.neighbors()} == {5, 6}
    (meter,) = node.membership.sample(5, scope=Scope(service="meter"))
    assert meter.node_id == 6 and meter.groups == ("tariff:RTP",)
    (_, peer, reply) = transport.sent[-1]
    assert peer == Peer(5, "127.0.0.1:9005") and reply.kind is Kind.MEMBERS
    assert reply.body[0] is False  # type: ignore[index]
    assert [1, "127.0.0.1:9001", "node", []] in [e[:4] for e in reply.body[1]]  # type: ignore[index]


def test_a_join_is_answered_with_the_member_list_at_the_joiners_address() -> None:
    transport = RecordingTransport()
    node = members_node(transport)
    node.start(0.0)
    # No advertised address: the answer goes where the JOIN came from.
    join = Envelope(Kind.JOIN, 2, 9, 9, "", 0, 0, [[9, "", "meter", [], 5]])
    node.receive(join, "127.0.0.1:9009", 1.0)
    assert transport.sent[-1][1] == Peer(9, "127.0.0.1:9009")
    assert {p.node_id for p in node.membership.neighbors()} == {9}


def test_a_join_that_describes_another_node_is_refused() -> None:
    transport = RecordingTransport()
    node = members_node(transport)
    node.start(0.0)
    node.receive(Envelope(Kind.JOIN, 2, 9, 9, "", 0, 0, [[8, "x:1", "", [], 5]]), "x:1", 1.0)
    assert node.rejected == {"malformed": 1} and node.membership.neighbors() == []
