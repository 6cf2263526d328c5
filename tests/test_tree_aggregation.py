"""Tree aggregation (seed 000 IV.A, request-response gossip): state machine and simulations."""

from __future__ import annotations

import math
import random

import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.aggregation import (
    AGG_FANOUT_DEFAULT,
    AggregateResult,
    HistogramResult,
    TreeAggregationConfig,
)
from gridmesh.protocols.membership import (
    CyclonConfig,
    FullMembershipConfig,
    HyParViewConfig,
    PeerDirectory,
)
from gridmesh.sim import LinkClass, NetworkConfig, Simulator, UniformLatency
from gridmesh.wire import Envelope, Kind
from tests.helpers import RecordingTransport, mesh, overlay_mesh, sent

QUERY_ID = 7
ORIGIN = 2

# -- the state machine of one node, driven by hand ---------------------------------------


def lone_node(
    *,
    peers: int = 5,
    readings: dict[str, object] | None = None,
    message_bytes_max: int = 65_000,
    **limits: int,
) -> tuple[Node, RecordingTransport]:
    """Node 1 with static full membership of nodes 1..``peers`` and ``readings``."""
    transport = RecordingTransport()
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        aggregation=TreeAggregationConfig(**limits),  # type: ignore[arg-type]
        message_bytes_max=message_bytes_max,
    )
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, peers + 1))
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory)
    for name, value in ({"kwh": 2.5} if readings is None else readings).items():
        node.set_reading(name, lambda now, value=value: value)
    return node, transport


def query(
    *,
    sender: int = ORIGIN,
    hops_left: int = 3,
    function: object = "sum",
    params: object = None,
    reading: object = "kwh",
    fanout: object = 3,
    hop_timeout_ms: object = 1000,
    replies_min: object = 0,
    message_id: int = QUERY_ID,
) -> Envelope:
    body = [function, {} if params is None else params, reading, fanout, hop_timeout_ms]
    return Envelope(
        Kind.AGG_QUERY, message_id, ORIGIN, sender, "", 0, hops_left, [*body, replies_min]
    )


def reply(
    sender: int, status: int, *rest: object, query_id: int = QUERY_ID, origin: int = ORIGIN
) -> Envelope:
    body = [origin, query_id, status, *rest]
    return Envelope(Kind.AGG_REPLY, 1000 + sender, sender, sender, "", 0, 0, body)


def value_reply(sender: int, partial: object, contributors: int = 1, missing: int = 0) -> Envelope:
    return reply(sender, 0, partial, contributors, missing, 0)


def targets_of(transport: RecordingTransport) -> list[int]:
    return [destination for destination, _ in sent(transport, Kind.AGG_QUERY)]


def test_the_first_sender_is_the_parent_and_the_query_goes_on_to_others() -> None:
    node, transport = lone_node()
    node.receive(query(hops_left=3), "2", 1.0)
    forwarded = sent(transport, Kind.AGG_QUERY)
    assert sorted(d for d, _ in forwarded) == [3, 4, 5]  # fanout 3, never back to the parent
    for _, message in forwarded:  # the origin's envelope, one hop less, this node as sender
        assert (message.origin, message.message_id) == (ORIGIN, QUERY_ID)
        assert (message.sender, message.hops_left) == (1, 2)


def test_a_duplicate_query_is_answered_not_your_child() -> None:
    node, transport = lone_node()
    node.receive(query(), "2", 1.0)
    transport.sent.clear()
    node.receive(query(sender=4), "4", 1.1)
    assert [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY)] == [(4, [ORIGIN, QUERY_ID, 1])]
    assert node.stats()["aggregation_not_child"] == 1


def test_children_are_combined_with_the_own_value_and_the_parent_gets_one_reply() -> None:
    node, transport = lone_node()
    node.receive(query(), "2", 1.0)
    transport.sent.clear()
    node.receive(value_reply(3, [3, -1], contributors=1), "3", 1.1)  # 1.5 as [m, e]
    node.receive(reply(4, 1), "4", 1.1)  # not its child after all
    assert sent(transport, Kind.AGG_REPLY) == []  # still waiting for 5
    node.receive(value_reply(5, 10, contributors=4, missing=2), "5", 1.2)
    (parent, message), *more = sent(transport, Kind.AGG_REPLY)
    assert not more
    assert parent == ORIGIN
    # 2.5 + 1.5 + 10 = 14.0, exactly: [7, 1]; 1 + 1 + 4 contributors; the child's 2 missing
    assert message.body == [ORIGIN, QUERY_ID, 0, [7, 1], 6, 2, 0]
    assert node.rejected is None


def test_the_deadline_shrinks_with_the_hops_left() -> None:
    node, transport = lone_node()
    node.receive(query(hops_left=4, hop_timeout_ms=500), "2", 10.0)
    assert (1, 10.0 + 3 * 0.5) in transport.wakes  # a subtree of 3 levels: 3 budgets


def test_on_the_deadline_unanswered_children_count_as_missing() -> None:
    node, transport = lone_node()
    node.receive(query(hops_left=3, hop_timeout_ms=1000), "2", 1.0)
    transport.sent.clear()
    node.receive(value_reply(3, 4), "3", 1.5)
    node.handle_timer(2.9)
    assert sent(transport, Kind.AGG_REPLY) == []  # 2 budgets: not before 3.0
    node.handle_timer(3.0)
    [(parent, message)] = sent(transport, Kind.AGG_REPLY)
    assert parent == ORIGIN
    assert message.body == [ORIGIN, QUERY_ID, 0, [13, -1], 2, 2, 0]  # 6.5; 4 and 5 missing
    assert node.stats()["aggregation_missing"] == 2


def test_a_late_reply_is_counted_and_not_merged() -> None:
    node, transport = lone_node()
    node.receive(query(), "2", 1.0)
    node.handle_timer(3.0)
    transport.sent.clear()
    node.receive(value_reply(4, 100), "4", 3.5)
    node.receive(reply(5, 1), "5", 3.5)  # a late "not your child" is nothing to count
    # The late value is acknowledged all the same: its sender must stop sending copies.
    assert [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY, acks=True)] == [
        (4, [ORIGIN, QUERY_ID, 3])
    ]
    assert node.stats()["aggregation_late"] == 1
    assert node.rejected is None


def test_a_leaf_answers_at_once_with_its_own_value() -> None:
    node, transport = lone_node(readings={"kwh": 3})
    node.receive(query(hops_left=1), "2", 1.0)
    assert [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY)] == [
        (ORIGIN, [ORIGIN, QUERY_ID, 0, 3, 1, 0, 0])
    ]
    assert transport.wakes == [(1, 1.25)]  # no waiting; a copy if no ACK within 1/4 budget


def test_a_node_without_the_reading_relays_and_adds_nothing() -> None:
    node, transport = lone_node(readings={})
    node.receive(query(hops_left=1, function="count"), "2", 1.0)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 0, 0, 0, 0, 0]


def test_a_failing_reading_is_counted_and_adds_nothing() -> None:
    node, transport = lone_node(readings={"kwh": "not a number"})
    node.receive(query(hops_left=1), "2", 1.0)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 0, 0, 0, 0, 0]
    assert node.stats()["aggregation_reading_errors"] == 1


def test_replies_min_lets_a_node_answer_before_every_child() -> None:
    node, transport = lone_node(readings={"kwh": 1})
    node.receive(query(replies_min=2), "2", 1.0)
    transport.sent.clear()
    node.receive(value_reply(3, 1), "3", 1.1)
    assert sent(transport, Kind.AGG_REPLY) == []
    node.receive(value_reply(4, 1), "4", 1.1)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 0, 3, 3, 1, 0]  # 5 had not answered


def test_an_unknown_function_is_declined_and_counted() -> None:
    node, transport = lone_node()
    node.receive(query(function="acme.peak"), "2", 1.0)
    assert [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY)] == [
        (ORIGIN, [ORIGIN, QUERY_ID, 2])
    ]
    assert node.rejected == {"malformed": 1}
    node.receive(query(params={"k": 3}), "2", 1.0)  # invalid params: the same
    assert node.rejected == {"malformed": 2}
    assert sent(transport, Kind.AGG_QUERY) == []
    node.receive(query(), "2", 1.0)  # the refused copies hid nothing
    assert len(sent(transport, Kind.AGG_QUERY)) == 3


def test_a_declined_child_is_reported_upwards() -> None:
    node, transport = lone_node(readings={"kwh": 1})
    node.receive(query(), "2", 1.0)
    for child in (3, 4):
        node.receive(reply(child, 2), str(child), 1.1)
    node.receive(value_reply(5, 1), "5", 1.1)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 0, 2, 2, 0, 2]


def test_pending_queries_are_bounded() -> None:
    node, transport = lone_node(pending_max=1)
    node.receive(query(), "2", 1.0)
    transport.sent.clear()
    other = Envelope(Kind.AGG_QUERY, 8, 3, 3, "", 0, 3, query().body)
    node.receive(other, "3", 1.0)
    assert [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY)] == [(3, [3, 8, 2])]
    assert node.stats()["aggregation_overloaded"] == 1
    with pytest.raises(LocalProtocolError, match="waiting"):
        node.aggregate("sum", "kwh", now=1.0, on_result=print)


def test_a_reply_too_large_for_a_message_is_declined() -> None:
    big = [random.Random(i).random() for i in range(100)]
    node, transport = lone_node(readings={"v": big}, message_bytes_max=512)
    node.receive(
        query(function="vector_sum", params={"length": 100}, reading="v", hops_left=1), "2", 1.0
    )
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 2]
    assert node.stats()["aggregation_oversized"] == 1


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (query(function=5, message_id=8), "malformed"),
        (query(params=[1], message_id=8), "malformed"),
        (query(reading="", message_id=8), "malformed"),
        (query(reading="x" * 65, message_id=8), "malformed"),
        (query(fanout=65, message_id=8), "malformed"),
        (query(fanout=2.0, message_id=8), "malformed"),
        (query(hop_timeout_ms=0, message_id=8), "malformed"),
        (query(hop_timeout_ms=True, message_id=8), "malformed"),
        (query(replies_min=-1, message_id=8), "malformed"),
        (Envelope(Kind.AGG_QUERY, 1, 2, 2, "", 0, 3, ["sum", {}, "kwh"]), "malformed"),
        (Envelope(Kind.AGG_QUERY, 1, 2, 2, "", 0, 3, {"function": "sum"}), "malformed"),
        (Envelope(Kind.AGG_REPLY, 1, 3, 3, "", 0, 0, [ORIGIN, QUERY_ID]), "malformed"),
        (Envelope(Kind.AGG_REPLY, 1, 3, 3, "", 0, 0, None), "malformed"),
        (reply(3, 4), "malformed"),  # no such status
        (reply(3, 0), "malformed"),  # a value reply without its value
        (reply(3, 1, 5, 1, 0, 0), "malformed"),  # a status reply with one
        (reply(3, 0, 1, -1, 0, 0), "malformed"),  # a negative count
        (reply(3, 0, 1, 1, 0, 2**64), "malformed"),
        (reply(3, 0, "1", 1, 0, 0), "malformed"),  # not a sum partial
        (reply(3, 0, [2, -1], 1, 0, 0), "malformed"),  # a float sum not in shortest form
        (reply(3, 0, 1, 1, 0, 0, query_id=99), "unexpected"),  # no such query
        (reply(ORIGIN, 0, 1, 1, 0, 0), "unexpected"),  # its parent: not asked
    ],
)
def test_bad_input_is_counted_and_never_merged(message: Envelope, reason: str) -> None:
    node, transport = lone_node(peers=9, readings={"kwh": 1}, fanout=3)
    node.receive(query(fanout=3), "2", 1.0)
    targets = targets_of(transport)
    node.receive(message, "3", 1.1)
    assert node.rejected == {reason: 1}
    assert sent(transport, Kind.AGG_REPLY) == []
    for child in targets:  # the node still waits for, and merges, every real child once
        node.receive(value_reply(child, 1), str(child), 1.2)
    [(_, final)] = sent(transport, Kind.AGG_REPLY)
    assert final.body == [ORIGIN, QUERY_ID, 0, 4, 4, 0, 0]


def test_a_second_value_from_one_child_is_acknowledged_and_not_merged() -> None:
    node, transport = lone_node(peers=9, readings={"kwh": 1}, fanout=3)
    node.receive(query(), "2", 1.0)
    first, second, third = targets_of(transport)
    node.receive(value_reply(first, 1), str(first), 1.1)
    node.receive(value_reply(first, 1), str(first), 1.2)  # a copy: our ACK was lost
    acks = [(d, m.body) for d, m in sent(transport, Kind.AGG_REPLY, acks=True)]
    assert acks == [(first, [ORIGIN, QUERY_ID, 3])] * 2
    assert node.stats()["aggregation_duplicates"] == 1 and node.rejected is None
    node.receive(reply(first, 1), str(first), 1.2)  # any other second answer is refused
    assert node.rejected == {"unexpected": 1}
    node.receive(value_reply(second, 1), str(second), 1.3)
    node.receive(value_reply(third, 1), str(third), 1.3)
    [(_, final)] = sent(transport, Kind.AGG_REPLY)
    assert final.body == [ORIGIN, QUERY_ID, 0, 4, 4, 0, 0]  # each child once
    node.receive(value_reply(first, 1), str(first), 1.4)  # a copy after we replied
    assert node.stats()["aggregation_duplicates"] == 2
    assert node.stats()["aggregation_late"] == 0


def test_a_value_reply_is_sent_again_until_acknowledged() -> None:
    node, transport = lone_node(readings={"kwh": 3})
    node.receive(query(hops_left=1, hop_timeout_ms=1000), "2", 1.0)
    [(_, first)] = sent(transport, Kind.AGG_REPLY)
    for copy, at in enumerate((1.25, 1.5, 1.75), start=1):  # a quarter budget apart, 3 times
        node.handle_timer(at)
        [(parent, again)] = sent(transport, Kind.AGG_REPLY)
        assert parent == ORIGIN and again is first
        assert node.stats()["aggregation_resent"] == copy
    node.handle_timer(5.0)
    assert sent(transport, Kind.AGG_REPLY) == []  # reply_retries spent

    node, transport = lone_node(readings={"kwh": 3})
    node.receive(query(hops_left=1, hop_timeout_ms=1000), "2", 1.0)
    transport.sent.clear()
    node.receive(reply(ORIGIN, 3), "2", 1.1)  # the parent's ACK
    node.receive(reply(ORIGIN, 3), "2", 1.1)  # a second one: nothing to do
    node.handle_timer(5.0)
    assert transport.sent == [] and node.stats()["aggregation_resent"] == 0
    assert node.rejected is None
    node.receive(reply(ORIGIN, 3, query_id=99), "2", 1.1)  # an ACK for no query at all
    assert node.rejected == {"unexpected": 1}


def test_the_origin_gets_the_value_and_its_coverage() -> None:
    node, transport = lone_node(readings={"kwh": 1})
    results: list[AggregateResult] = []
    query_id = node.aggregate(
        "sum", "kwh", now=5.0, on_result=results.append, fanout=2, hops=4, timeout_s=2.0
    )
    queries = sent(transport, Kind.AGG_QUERY)
    assert len(queries) == 2
    message = queries[0][1]
    assert (message.message_id, message.hops_left) == (query_id, 4)
    assert message.body == ["sum", {}, "kwh", 2, 500, 0]  # 2 s over 4 hops: 500 ms a hop
    assert (1, 7.0) in transport.wakes
    first, second = (d for d, _ in queries)
    node.receive(reply(first, 0, 41, 30, 1, 2, query_id=query_id, origin=1), str(first), 5.5)
    assert results == []
    node.handle_timer(7.0)
    [result] = results
    assert (result.value, result.contributors, result.missing, result.declined) == (42, 31, 2, 2)
    assert (result.function, result.reading, result.started_at, result.finished_at) == (
        "sum",
        "kwh",
        5.0,
        7.0,
    )
    assert not result.complete
    node.receive(reply(second, 0, 1, 1, 0, 0, query_id=query_id, origin=1), str(second), 7.5)
    assert node.stats()["aggregation_late"] == 1
    assert results == [result]


def test_an_origin_alone_answers_at_once() -> None:
    node, _ = lone_node(peers=1, readings={"kwh": 4})
    results: list[AggregateResult] = []
    node.aggregate("max", "kwh", now=0.0, on_result=results.append)
    assert [(r.value, r.contributors, r.complete) for r in results] == [(4, 1, True)]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda n: n.aggregate("nope", "kwh", now=0.0, on_result=print), "unknown"),
        (lambda n: n.aggregate("top_k", "kwh", now=0.0, on_result=print), "k"),
        (lambda n: n.aggregate("sum", "", now=0.0, on_result=print), "reading"),
        (lambda n: n.aggregate("sum", "kwh", now=0.0, on_result=print, hops=0), "hops"),
        (lambda n: n.aggregate("sum", "kwh", now=0.0, on_result=print, fanout=65), "fanout"),
        (lambda n: n.aggregate("sum", "kwh", now=0.0, on_result=print, timeout_s=0.0), "timeout"),
        (
            lambda n: n.aggregate("sum", "kwh", now=0.0, on_result=print, timeout_s=math.nan),
            "timeout",
        ),
        (lambda n: n.set_reading("x" * 65, lambda now: 1), "reading"),
        (lambda n: n.set_reading("kwh", 5), "callable"),  # type: ignore[arg-type]
    ],
)
def test_local_misuse_is_a_local_protocol_error(call: object, match: str) -> None:
    node, _ = lone_node()
    with pytest.raises(LocalProtocolError, match=match):
        call(node)  # type: ignore[operator]


def test_readings_are_bounded_and_removable() -> None:
    node, _ = lone_node(readings={}, readings_max=1)
    node.set_reading("a", lambda now: 1)
    with pytest.raises(LocalProtocolError, match="at most 1"):
        node.set_reading("b", lambda now: 1)
    node.set_reading("a", None)
    node.set_reading("b", lambda now: 1)


def reliable_fanout(nodes: int, reliability: float) -> int:
    """Kermarrec et al.: mean fanout ln n + c reaches all with probability exp(-exp(-c))."""
    return math.ceil(math.log(nodes) - math.log(-math.log(reliability)))


@pytest.mark.parametrize("nodes", [20, 1000, 30_000])
def test_the_default_fanout_reaches_every_node_with_the_reliability(nodes: int) -> None:
    node, transport = lone_node(peers=nodes)
    node.aggregate("sum", "kwh", now=0.0, on_result=print)
    expected = reliable_fanout(nodes, 0.99)
    assert expected == {20: 8, 1000: 12, 30_000: 15}[nodes]
    assert node.aggregation.default_fanout() == expected
    queries = sent(transport, Kind.AGG_QUERY)
    assert len({destination for destination, _ in queries}) == len(queries) == expected
    assert {m.body[3] for _, m in queries} == {expected}  # relays use the origin's fanout


def test_a_set_fanout_or_an_unknown_size_gives_a_fixed_fanout() -> None:
    node, _ = lone_node(peers=1000, fanout=5)
    assert node.aggregation.default_fanout() == 5  # a fanout set is the fanout
    node, _ = lone_node(peers=1000, reliability=0.999, network_size=100_000)
    assert node.aggregation.default_fanout() == reliable_fanout(100_000, 0.999) == 19
    node, _ = lone_node(peers=10_000, fanout_max=12)
    assert reliable_fanout(10_000, 0.99) == 14
    assert node.aggregation.default_fanout() == 12  # clamped to what receivers accept
    transport = RecordingTransport()
    config = NodeConfig(membership=CyclonConfig())  # a partial view keeps no size
    cyclon = Node(1, transport=transport, rng=random.Random(1), config=config)
    assert cyclon.aggregation.default_fanout() == AGG_FANOUT_DEFAULT == 8
    results: list[AggregateResult] = []
    cyclon.aggregate("sum", "kwh", now=0.0, on_result=results.append)
    assert [r.fanout for r in results] == [8]  # alone: answered at once, with its fanout


def test_an_idle_node_reports_zero_counters_and_builds_nothing() -> None:
    node, _ = lone_node(readings={})
    assert node.stats()["aggregation_queries"] == 0
    assert node._aggregation is None  # a node that never aggregates pays nothing


# -- simulations -------------------------------------------------------------------------

NODES = 1000


def reading_of(node_id: int) -> float:
    """A node's reading: floats of mixed magnitudes, so any rounding would show."""
    rng = random.Random(node_id)
    return rng.choice((1e-3, 1.0, 1e6)) * rng.random()


def simulated(*, seed: int, loss: float = 0.0, wire_fidelity: bool = False) -> Simulator:
    """``NODES`` nodes of full membership with the default query (fanout 12 at 1000 nodes)."""
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05), loss=loss)
    config = NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0))
    sim, _ = mesh(
        NODES, config, NetworkConfig(lan=link, wan=link), seed=seed, wire_fidelity=wire_fidelity
    )
    for node_id in range(1, NODES + 1):
        install_readings(sim, node_id)
    return sim


def install_readings(sim: Simulator, node_id: int) -> None:
    node = sim.node(node_id)
    assert node is not None
    value = reading_of(node_id)
    node.set_reading("kwh", lambda now: value)
    node.set_reading("night", lambda now: [value, 2 * value, node_id])
    node.set_reading("id", lambda now: node_id)


def ask(
    sim: Simulator, origin: int, at: float, function: str, reading: str = "kwh", **options: object
) -> list[AggregateResult]:
    results: list[AggregateResult] = []

    def start(now: float) -> None:
        node = sim.node(origin)
        assert node is not None
        node.aggregate(function, reading, now=now, on_result=results.append, **options)  # type: ignore[arg-type]

    sim.schedule(at, start)
    return results


@pytest.mark.parametrize("seed", [1, 2])
def test_with_no_fault_every_function_is_exact_over_every_node(seed: int) -> None:
    sim = simulated(seed=seed, wire_fidelity=True)
    values = [reading_of(i) for i in range(1, NODES + 1)]
    asked = {
        "sum": ask(sim, 1, 1.0, "sum"),
        "count": ask(sim, 2, 1.0, "count"),
        "min": ask(sim, 3, 1.0, "min"),
        "max": ask(sim, 4, 1.0, "max"),
        "mean": ask(sim, 5, 1.0, "mean"),
        "vector_sum": ask(sim, 6, 1.0, "vector_sum", "night", params={"length": 3}),
    }
    sim.run(12.0)
    truth = {
        "sum": math.fsum(values),
        "count": NODES,
        "min": min(values),
        "max": max(values),
        "mean": math.fsum(values) / NODES,
        "vector_sum": (
            math.fsum(values),
            math.fsum(2 * v for v in values),
            NODES * (NODES + 1) // 2,
        ),
    }
    for function, results in asked.items():
        assert len(results) == 1, f"seed {seed}: {function} gave {len(results)} results"
        [result] = results
        assert result.value == truth[function], f"seed {seed}: {function}"
        assert (result.contributors, result.complete) == (NODES, True), f"seed {seed}"
        assert result.fanout == 12, "ln 1000 + 4.6 (reliability 0.99), rounded up"
        assert result.finished_at < 2.0, f"seed {seed}: answered when all children answered"
    nodes = [node for node_id in range(1, NODES + 1) if (node := sim.node(node_id))]
    assert [node.node_id for node in nodes if node.rejected] == [], f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2])
def test_under_loss_and_crashes_the_result_comes_by_the_timeout_with_true_coverage(
    seed: int,
) -> None:
    sim = simulated(seed=seed, loss=0.05)
    rng = random.Random(seed)
    crashed = rng.sample(range(2, NODES + 1), NODES // 20)
    for node_id in crashed:  # during the query: while it spreads and while replies return
        sim.crash(node_id, 1.0 + rng.random() * 0.3)
    timeout_s = 4.0
    # One bin per node id: the histogram says whose reading is in the result, and how often.
    edges = [node_id - 0.5 for node_id in range(1, NODES + 2)]
    who = ask(sim, 1, 1.0, "histogram", "id", params={"edges": edges}, timeout_s=timeout_s)
    count = ask(sim, 1, 1.0, "count", timeout_s=timeout_s)
    sim.run(1.0 + timeout_s + 1.0)
    for results in (who, count):
        [result] = results
        summary = f"seed {seed}: {result.contributors} contributors, {result.missing} missing"
        assert result.finished_at <= 1.0 + timeout_s, f"{summary}; late: {result.finished_at}"
        assert not result.complete, summary
        assert result.missing > 0, summary
        assert 0 < result.contributors < NODES, summary
    # The truth: each reading in the result is there once, and the coverage counts them all.
    histogram = who[0].value
    assert isinstance(histogram, HistogramResult)
    assert set(histogram.counts) <= {0, 1}, f"seed {seed}: a reading counted twice"
    assert histogram.underflow == histogram.overflow == 0
    assert sum(histogram.counts) == who[0].contributors, f"seed {seed}"
    assert count[0].value == count[0].contributors, f"seed {seed}"
    survivors = [node for node_id in range(1, NODES + 1) if (node := sim.node(node_id))]
    assert not any((node.rejected or {}).get("malformed") for node in survivors), f"seed {seed}"
    # Deadlines nest (a child's passes before its parent's): no reply came too late to merge,
    # and every query is over, its state gone.
    assert sum(node.stats()["aggregation_late"] for node in survivors) == 0, f"seed {seed}"
    assert sum(node.stats()["aggregation_pending"] for node in survivors) == 0, f"seed {seed}"


def test_over_a_hyparview_overlay_a_flood_of_the_view_is_exact() -> None:
    sim = overlay_mesh(300, HyParViewConfig(), seed=5, spread_s=2.0)
    sim.run(8.0)
    for node_id in range(1, 301):
        node = sim.node(node_id)
        assert node is not None
        value = reading_of(node_id)
        node.set_reading("kwh", lambda now, value=value: value)
    results = ask(sim, 1, 8.0, "sum", fanout=0, hops=20, timeout_s=10.0)
    sim.run(10.0)
    [result] = results
    assert result.value == math.fsum(reading_of(i) for i in range(1, 301))
    assert (result.contributors, result.complete) == (300, True)
