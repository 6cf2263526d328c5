"""Newscast: freshest entries win, stale ones fall off, clocks cannot be gamed."""

from __future__ import annotations

import random

import pytest

from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import CACHE_SIZE_MAX, Newscast, NewscastConfig
from gridmesh.sim import snapshot
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, overlay_mesh

CONFIG = NewscastConfig(cache_size=4, exchange_interval_s=1.0, clock_skew_max_s=60.0)


def newscast_node(transport: RecordingTransport, seeds: tuple[Peer, ...] = ()) -> Node:
    config = NodeConfig(membership=CONFIG, service="dtc")
    rng = random.Random(2)
    return Node(1, transport=transport, rng=rng, config=config, address="a1", seeds=seeds)


def entry(node_id: int, stamp_ms: int) -> list[object]:
    return [node_id, f"a{node_id}", "meter", [], stamp_ms]


def exchange(
    origin: int, entries: list[list[object]], tombstones: list[list[int]] | None = None
) -> Envelope:
    body = [entries, tombstones or []]
    return Envelope(Kind.NEWSCAST_EXCHANGE, 3, origin, origin, "", 0, 0, body)


def cache(node: Node) -> list[tuple[int, int]]:
    membership = node.membership
    assert isinstance(membership, Newscast)
    return [
        (p.node_id, s) for p, s in zip(membership.neighbors(), membership.stamps(), strict=True)
    ]


def test_the_cache_keeps_the_freshest_entry_per_node_and_the_freshest_nodes() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(exchange(2, [entry(2, 900), entry(3, 100), entry(4, 500)]), "a2", 1.0)
    node.receive(
        exchange(5, [entry(5, 950), entry(3, 700), entry(6, 50), entry(1, 999)]), "a5", 1.0
    )
    assert cache(node) == [(5, 950), (2, 900), (3, 700), (4, 500)]  # 6 fell off; never itself


def test_an_exchange_is_answered_with_the_cache_and_a_fresh_own_entry() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(exchange(2, [entry(2, 900)]), "a2", 2.5)
    (_, to, reply) = transport.sent[-1]
    assert to.node_id == 2 and reply.kind is Kind.NEWSCAST_REPLY
    assert reply.body[0][0] == [1, "a1", "dtc", [], 2500]  # type: ignore[index]


def test_a_stamp_from_the_future_is_clamped() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(exchange(2, [entry(2, 10**12)]), "a2", 1.0)
    assert cache(node) == [(2, 61_000)]  # now (1 s) + clock_skew_max_s (60 s)


def test_a_node_with_an_empty_cache_exchanges_with_its_seed() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport, seeds=(Peer(0, "seed:1"),))
    node.start(0.0)
    node.handle_timer(1.0)
    assert transport.sent[0][1] == Peer(0, "seed:1")


@pytest.mark.parametrize(
    "body",
    [
        None,
        "x",
        [[entry(2, 1)]],  # no tombstone list
        [[entry(2, 1)] * (CACHE_SIZE_MAX + 2), []],
        [[entry(2, -1)], []],
        [[[2, "a2", "meter", [], "1"]], []],
        [[entry(0, 1)], []],
        [[[2, "h:\u00b2", "meter", [], 1]], []],  # an address with an exotic digit
        [[[2, "a\x00b:9", "meter", [], 1]], []],  # an address with a NUL
        [[[2, "a2", "me\nter", [], 1]], []],  # a service with a control character
        [[entry(2, 1)], [[5, 1]] * 9],  # too many tombstones
        [[entry(2, 1)], [[0, 1]]],  # a tombstone for node 0
        [[entry(2, 1)], [[5, -1]]],
    ],
)
def test_malformed_exchanges_are_refused_and_counted(body: object) -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 3, 2, 2, "", 0, 0, body), "a2", 1.0)
    assert node.rejected == {"malformed": 1} and cache(node) == [] and transport.sent == []


def test_entries_of_dead_nodes_fall_off_within_twenty_rounds() -> None:
    sim = overlay_mesh(500, NewscastConfig(exchange_interval_s=1.0), seed=6)
    sim.run(20.0)
    shot = snapshot(sim)
    assert shot.component_sizes() == [500]
    for node_id in random.Random(6).sample(range(1, 501), 250):
        sim.crash(node_id, 20.0)
    sim.run(21.0)
    assert snapshot(sim).dead_links() > 1000
    sim.run(40.0)
    assert snapshot(sim).dead_links() == 0, "seed 6"


def test_a_partner_that_does_not_answer_leaves_the_cache_and_another_is_tried() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(exchange(2, [entry(2, 900), entry(3, 800), entry(4, 700)]), "a2", 1.0)
    transport.sent.clear()
    node.handle_timer(1.5)  # the periodic exchange
    first = transport.sent[-1][1].node_id
    node.handle_timer(1.9)  # no answer within the (capped) reply timeout
    assert first not in [node_id for node_id, _ in cache(node)]
    assert transport.sent[-1][1].node_id != first  # a retry, with another partner


def test_a_node_whose_cache_is_all_dead_empties_it_and_returns_to_its_seed() -> None:
    sim = overlay_mesh(300, NewscastConfig(exchange_interval_s=1.0), seed=11)
    sim.run(10.0)
    stranded = sim.node(42)
    assert stranded is not None
    dead = [p.node_id for p in stranded.membership.neighbors() if p.node_id != 1]
    for node_id in dead:
        sim.crash(node_id, 10.0)
    sim.run(40.0)
    shot = snapshot(sim)
    assert shot.dead_links() == 0, "seed 11"
    assert shot.views[42], "seed 11: node 42 stayed alone"


def test_a_reply_to_no_exchange_is_refused_as_unexpected() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    reply = Envelope(Kind.NEWSCAST_REPLY, 3, 2, 2, "", 0, 0, [[entry(2, 900)], []])
    node.receive(reply, "a2", 1.0)
    assert node.rejected == {"unexpected": 1} and cache(node) == []


def test_a_tombstone_from_a_peer_removes_a_stale_entry_but_not_a_fresher_one() -> None:
    transport = RecordingTransport()
    node = newscast_node(transport)
    node.start(0.0)
    node.receive(exchange(2, [entry(2, 1500), entry(3, 800), entry(4, 1900)]), "a2", 2.0)
    node.receive(exchange(5, [entry(5, 2900)], [[3, 850], [4, 1000]]), "a5", 3.0)
    assert [node_id for node_id, _ in cache(node)] == [5, 4, 2]  # 3 buried, 4 newer than its
    node.receive(exchange(6, [entry(6, 3100), entry(3, 820)]), "a6", 3.5)
    assert 3 not in [node_id for node_id, _ in cache(node)]  # hearsay older than the tombstone
    node.handle_timer(4.0)
    (_, _, sent) = transport.sent[-1]
    assert [3, 850] in sent.body[1]  # type: ignore[index]  # and it passes the tombstone on
