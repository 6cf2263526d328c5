"""What a hostile or broken peer can no longer do to membership (from a code review)."""

from __future__ import annotations

import contextlib
import random

from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import (
    AGE_MAX,
    Cyclon,
    CyclonConfig,
    FullMembershipConfig,
    HyParView,
    HyParViewConfig,
    Newscast,
    NewscastConfig,
    PeerDirectory,
)
from gridmesh.runtime._address import ip_endpoint
from gridmesh.wire import UINT64_MAX, Envelope, Kind
from tests.helpers import RecordingTransport


def node_with(membership: object, seeds: tuple[Peer, ...] = (), **kwargs: object) -> Node:
    config = NodeConfig(membership=membership)  # type: ignore[arg-type]
    return Node(
        1,
        transport=RecordingTransport(),
        rng=random.Random(1),
        config=config,
        address="10.0.0.1:9000",
        seeds=seeds,
        **kwargs,  # type: ignore[arg-type]
    )


def sent(node: Node) -> list[tuple[int, Peer, Envelope]]:
    transport = node._transport
    assert isinstance(transport, RecordingTransport)
    return transport.sent


def test_addresses_a_transport_could_choke_on_never_enter_a_view() -> None:
    node = node_with(CyclonConfig(view_size=5, shuffle_length=3))
    node.start(0.0)
    for bad in ("h:\u00b2", "a\x00b:9", "sp ace:1", "\u00e9:1"):
        body = [[[7, bad, "", [], 0]]]
        node.receive(Envelope(Kind.CYCLON_SHUFFLE, 1, 7, 7, "", 0, 0, body), "10.0.0.7:9", 0.5)
    assert node.rejected == {"malformed": 4}
    assert node.membership.neighbors() == []
    # And the runtime resolves only IP literals with ASCII ports, never raising.
    assert ip_endpoint("10.0.0.7:9000") == ("10.0.0.7", 9000)
    assert ip_endpoint("[::1]:9") == ("::1", 9)
    for bad in ("h:\u00b2", "example.org:53", "10.0.0.7", "10.0.0.7:0", "x"):
        assert ip_endpoint(bad) is None


def test_a_failing_timer_callback_does_not_stop_the_later_timers() -> None:
    node = node_with(CyclonConfig())
    fired: list[float] = []

    def boom(now: float) -> None:
        raise RuntimeError("a bug in some protocol")

    node.call_at(1.0, boom)
    node.call_at(2.0, fired.append)
    with contextlib.suppress(RuntimeError):  # the driver sees the bug
        node.handle_timer(1.0)
    transport = node._transport
    assert isinstance(transport, RecordingTransport)
    assert transport.wakes[-1] == (1, 2.0)  # still asks to be woken for the next timer
    node.handle_timer(2.0)
    assert fired == [2.0]


def test_cyclon_ages_stop_at_the_limit_peers_accept() -> None:
    node = node_with(CyclonConfig(view_size=5, shuffle_length=3))
    node.start(0.0)
    body = [[[7, "10.0.0.7:9", "", [], 0], [8, "10.0.0.8:9", "", [], AGE_MAX]]]
    node.receive(Envelope(Kind.CYCLON_SHUFFLE, 1, 7, 7, "", 0, 0, body), "10.0.0.7:9", 0.5)
    node.handle_timer(5.0)
    membership = node.membership
    assert isinstance(membership, Cyclon)
    assert max(membership.ages(), default=0) <= AGE_MAX
    for _, _, message in sent(node):
        if message.kind is Kind.CYCLON_SHUFFLE:
            assert all(0 <= e[4] <= AGE_MAX for e in message.body[0])  # type: ignore[index]


def test_answers_go_where_the_request_came_from_not_where_it_claims() -> None:
    node = node_with(CyclonConfig(view_size=5, shuffle_length=3), (Peer(2, "10.0.0.2:9"),))
    node.start(0.0)
    claim = [[7, "198.51.100.7:53", "", [], 0]]  # a victim's address
    node.receive(Envelope(Kind.CYCLON_SHUFFLE, 1, 7, 7, "", 0, 0, [claim]), "10.0.0.7:9", 0.5)
    (_, to, reply) = sent(node)[-1]
    assert reply.kind is Kind.CYCLON_REPLY and to == Peer(7, "10.0.0.7:9")


def full_node() -> Node:
    return node_with(
        FullMembershipConfig(exchange_interval_s=1.0, member_timeout_s=5.0),
        directory=PeerDirectory(),
    )


def test_full_membership_heartbeats_cannot_claim_the_future_or_move_a_member() -> None:
    node = full_node()
    node.start(0.0)
    own = [True, [[7, "10.0.0.7:9", "meter", [], 1000]]]
    node.receive(Envelope(Kind.MEMBERS, 1, 7, 7, "", 0, 0, own), "10.0.0.7:9", 1.0)
    forged = [False, [[9, "10.0.0.9:9", "", [], 5], [7, "198.51.100.7:53", "", [], UINT64_MAX]]]
    node.receive(Envelope(Kind.MEMBERS, 2, 9, 9, "", 0, 0, forged), "10.0.0.9:9", 1.5)
    members = {p.node_id: p.address for p in node.membership.neighbors()}
    assert members[7] == "10.0.0.7:9"  # only 7 itself may say where it is
    # Its forged heartbeat was held to our clock + skew: 7's real heartbeats still count.
    later = [False, [[7, "10.0.0.7:9", "meter", [], 70_000]]]
    node.receive(Envelope(Kind.MEMBERS, 3, 7, 7, "", 0, 0, later), "10.0.0.7:9", 70.0)
    node.handle_timer(72.0)  # expiry sweep: 7 spoke at 70 s, so it stays
    assert 7 in {p.node_id for p in node.membership.neighbors()}


def newscast_node() -> Node:
    return node_with(NewscastConfig(cache_size=4, exchange_interval_s=1.0))


def test_newscast_hearsay_cannot_move_a_node_or_pin_it_in_the_future() -> None:
    node = newscast_node()
    node.start(0.0)
    own = [[[7, "10.0.0.7:9", "meter", [], 900]], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 1, 7, 7, "", 0, 0, own), "10.0.0.7:9", 1.0)
    hearsay = [[[9, "10.0.0.9:9", "", [], 950], [7, "198.51.100.7:53", "", [], UINT64_MAX]], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 2, 9, 9, "", 0, 0, hearsay), "10.0.0.9:9", 2.0)
    membership = node.membership
    assert isinstance(membership, Newscast)
    entries = dict(
        zip([p.node_id for p in membership.neighbors()], membership.stamps(), strict=True)
    )
    assert entries[7] == 2000  # hearsay refreshed it, but only up to our clock (2 s)
    seven = next(p for p in membership.neighbors() if p.node_id == 7)
    assert seven.address == "10.0.0.7:9"


def test_newscast_drops_a_silent_partner_even_when_the_next_period_starts_at_once() -> None:
    node = newscast_node()
    node.start(0.0)
    entries = [[[i, f"10.0.0.{i}:9", "", [], 400] for i in (2, 3, 4)], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 1, 2, 2, "", 0, 0, entries), "10.0.0.2:9", 0.5)
    for second in range(1, 12):  # nobody ever answers
        node.handle_timer(float(second))
        node.handle_timer(second + 0.34)
        node.handle_timer(second + 0.67)
    assert node.membership.neighbors() == []


def test_newscast_does_not_relearn_a_node_it_dropped_until_that_node_speaks() -> None:
    node = newscast_node()
    node.start(0.0)
    entries = [[[2, "10.0.0.2:9", "", [], 900], [3, "10.0.0.3:9", "", [], 800]], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 1, 2, 2, "", 0, 0, entries), "10.0.0.2:9", 1.0)
    membership = node.membership
    assert isinstance(membership, Newscast)
    membership._drop(3)  # as when 3 stayed silent: a tombstone at stamp 800
    stale = [[[5, "10.0.0.5:9", "", [], 1900], [3, "10.0.0.3:9", "", [], 800]], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 2, 5, 5, "", 0, 0, stale), "10.0.0.5:9", 2.0)
    assert 3 not in [p.node_id for p in membership.neighbors()]
    alive = [[[3, "10.0.0.3:9", "", [], 2400]], []]
    node.receive(Envelope(Kind.NEWSCAST_EXCHANGE, 3, 3, 3, "", 0, 0, alive), "10.0.0.3:9", 2.5)
    assert 3 in [p.node_id for p in membership.neighbors()]


def hpv(node_id: int = 1) -> tuple[Node, HyParView]:
    node = node_with(HyParViewConfig())
    membership = node.membership
    assert isinstance(membership, HyParView)
    return node, membership


def me(node_id: int) -> list[object]:
    return [node_id, f"10.0.0.{node_id}:9", "", [], 0]


def test_a_forward_join_walks_on_and_lands_in_the_passive_view_halfway() -> None:
    node, membership = hpv()
    node.start(0.0)
    for n in (2, 3):
        node.receive(Envelope(Kind.VIEW_CONNECT, n, n, n, "", 0, 0, [me(n)]), f"10.0.0.{n}:9", 0.1)
    halfway = HyParViewConfig().passive_walk_length
    walk = Envelope(Kind.VIEW_FORWARD_JOIN, 50, 2, 2, "", 0, halfway, [me(9)])
    node.receive(walk, "10.0.0.2:9", 0.2)
    assert 9 in {p.node_id for p in membership.passive()}
    (_, to, forwarded) = sent(node)[-1]
    assert to.node_id == 3 and forwarded.hops_left == halfway - 1  # never back to its sender
    end = Envelope(Kind.VIEW_FORWARD_JOIN, 51, 3, 3, "", 0, 0, [me(8)])
    node.receive(end, "10.0.0.3:9", 0.3)
    assert 8 in {p.node_id for p in membership.neighbors()}
    assert sent(node)[-1][2].kind is Kind.VIEW_CONNECT


def test_a_helper_relays_the_ack_of_an_indirect_probe_to_whoever_asked() -> None:
    node, _ = hpv()
    node.start(0.0)
    node.receive(Envelope(Kind.PING_REQ, 1, 2, 2, "", 0, 0, [me(5)]), "10.0.0.2:9", 0.1)
    (_, to, ping) = sent(node)[-1]
    assert ping.kind is Kind.PING and to.node_id == 5
    node.receive(Envelope(Kind.ACK, 2, 5, 5, "", 0, 0, [5]), "10.0.0.5:9", 0.2)
    (_, to, ack) = sent(node)[-1]
    assert ack.kind is Kind.ACK and ack.body == [5] and to.node_id == 2
