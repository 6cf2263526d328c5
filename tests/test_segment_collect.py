"""Request-response to a segment (seed 000 IV.A): every reply, uncombined, bounded, by node id.

"A request-response to query the last measured voltage value throughout a
segment of a Smart Grid": ``Node.collect`` over the aggregation tree, the
segment a ``Scope`` (a group such as a feeder, a service type, or both).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

import cbor2
import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer, Scope
from gridmesh.protocols.aggregation import (
    COLLECT_BYTES_MAX,
    COLLECT_LIMIT_MAX,
    DEFAULT_REGISTRY,
    PARTIAL_OVERHEAD_BYTES,
    AggregateResult,
    CollectResult,
    FunctionRegistry,
    Sum,
    TreeAggregationConfig,
)
from gridmesh.protocols.membership import FullMembershipConfig, HyParViewConfig, PeerDirectory
from gridmesh.sim import LinkClass, NetworkConfig, Simulator, UniformLatency
from gridmesh.wire import MESSAGE_BYTES_MAX, UINT64_MAX, Envelope, Kind, encode
from tests.helpers import RecordingTransport, sent

QUERY_ID = 7
ORIGIN = 2
FEEDER = "feeder-7"

# -- one node, driven by hand ------------------------------------------------------------


def lone_node(
    *,
    groups: tuple[str, ...] = (FEEDER,),
    service: str = "meter",
    members: Iterable[int] = (),
    peers: int = 9,
    voltage: object = 231.5,
    message_bytes_max: int = MESSAGE_BYTES_MAX,
) -> tuple[Node, RecordingTransport]:
    """Node 1 (of ``groups``) with static full membership of 1..``peers``; ``members`` in FEEDER."""
    transport = RecordingTransport()
    config = NodeConfig(
        service=service,
        groups=groups,
        membership=FullMembershipConfig(exchange_interval_s=0),
        message_bytes_max=message_bytes_max,
    )
    inside = set(members)
    directory = PeerDirectory(
        Peer(i, str(i), "meter", (FEEDER,) if i in inside else ()) for i in range(1, peers + 1)
    )
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory)
    node.set_reading("voltage", lambda now: voltage)
    return node, transport


def query(
    *,
    segment: object = None,
    function: str = "collect",
    params: object = None,
    fanout: int = 3,
    hops_left: int = 3,
    sender: int = ORIGIN,
) -> Envelope:
    body: list[object] = [function, {} if params is None else params, "voltage", fanout, 1000, 0]
    if segment is not None:
        body.append(segment)
    return Envelope(Kind.AGG_QUERY, QUERY_ID, ORIGIN, sender, "", 0, hops_left, body)


def value_reply(sender: int, partial: object, contributors: int = 1) -> Envelope:
    body = [ORIGIN, QUERY_ID, 0, partial, contributors, 0, 0]
    return Envelope(Kind.AGG_REPLY, 1000 + sender, sender, sender, "", 0, 0, body)


def test_a_node_in_the_segment_answers_with_its_own_id_and_value() -> None:
    node, transport = lone_node()
    node.receive(query(segment=[None, FEEDER], hops_left=1), "2", 1.0)
    [(parent, message)] = sent(transport, Kind.AGG_REPLY)
    assert parent == ORIGIN
    assert message.body == [ORIGIN, QUERY_ID, 0, [0, None, [[1, 231.5]]], 1, 0, 0]


@pytest.mark.parametrize(
    ("groups", "service", "segment"),
    [
        (("feeder-3",), "meter", [None, FEEDER]),
        ((), "meter", [None, FEEDER]),
        ((FEEDER,), "meter", ["ied", FEEDER]),  # the feeder's IEDs, not its meters
        ((FEEDER,), "meter", ["ied", None]),
    ],
)
def test_a_node_outside_the_segment_relays_and_contributes_nothing(
    groups: tuple[str, ...], service: str, segment: list[object]
) -> None:
    node, transport = lone_node(groups=groups, service=service)
    node.receive(query(segment=segment), "2", 1.0)
    targets = [d for d, _ in sent(transport, Kind.AGG_QUERY)]
    assert len(targets) == 3  # it relays
    for child in targets:
        node.receive(value_reply(child, [0, None, [[child, 230.0 + child]]]), str(child), 1.1)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    entries = sorted([child, 230.0 + child] for child in targets)
    assert message.body == [ORIGIN, QUERY_ID, 0, [0, None, entries], 3, 0, 0]
    assert node.rejected is None


def test_the_segment_limits_contributions_to_any_function() -> None:
    inside, _ = lone_node()
    outside, outside_sent = lone_node(groups=())
    for node in (inside, outside):
        node.receive(query(function="sum", segment=[None, FEEDER], hops_left=1), "2", 1.0)
    [(_, message)] = sent(outside_sent, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 0, 0, 0, 0, 0]


def test_relays_pick_segment_peers_first_and_fill_up_with_others() -> None:
    node, transport = lone_node(members=(4, 6, 8), groups=())
    node.receive(query(segment=[None, FEEDER], fanout=3), "2", 1.0)
    assert sorted(d for d, _ in sent(transport, Kind.AGG_QUERY)) == [4, 6, 8]
    node, transport = lone_node(members=(4, 6, 8), groups=())
    node.receive(query(segment=[None, FEEDER], fanout=5), "2", 1.0)
    targets = [d for d, _ in sent(transport, Kind.AGG_QUERY)]
    assert len(targets) == len(set(targets)) == 5
    assert {4, 6, 8} < set(targets) and ORIGIN not in targets


def test_a_query_without_a_segment_keeps_its_six_items() -> None:
    node, transport = lone_node(peers=3)
    node.aggregate("sum", "voltage", now=0.0, on_result=print, fanout=2, segment=Scope())
    [(_, first), *_] = sent(transport, Kind.AGG_QUERY)
    assert isinstance(first.body, list) and len(first.body) == 6
    node.collect("voltage", now=0.0, on_result=print, fanout=2, segment=FEEDER, limit=5)
    [(_, second), *_] = sent(transport, Kind.AGG_QUERY)
    assert second.body == [
        "collect",
        {"limit": 5, "bytes_max": 64_872},  # what fits 65,000-byte replies
        "voltage",
        2,
        1000,
        0,
        [None, FEEDER],
    ]


@pytest.mark.parametrize(
    "segment",
    [
        *[[None, None], ["", FEEDER], [None, ""], [1, FEEDER], ["x" * 65, None], [None, "y" * 65]],
        *[FEEDER, [FEEDER], [None, FEEDER, None], {"group": FEEDER}],
    ],
    ids=repr,
)
def test_a_malformed_segment_is_refused_and_counted(segment: object) -> None:
    node, transport = lone_node()
    node.receive(query(segment=segment), "2", 1.0)
    assert node.rejected == {"malformed": 1}
    assert transport.sent == []
    node.receive(query(segment=[None, FEEDER]), "2", 1.0)  # the refused copy hid nothing
    assert len(sent(transport, Kind.AGG_QUERY)) == 3


@pytest.mark.parametrize(
    "partial",
    [
        [0, None, [[3, 1.0], [4, 1.0], [5, 1.0]]],  # more than the limit of 2
        [0, None, [[5, 1.0], [3, 1.0]]],  # out of order
        [0, None, [[3, [0.5] * 5], [4, [0.5] * 2]]],  # more than bytes_max
        [1, None, [[3, 1.0]]],  # dropped, but no cut
        [1, 3, [[3, 1.0]]],  # an entry at the cut
        [0, None, [[0, 1.0]]],  # no such node id
        [0, None, [[3, True]]],
        [0, [[3, 1.0]]],  # no cut item
        5.0,
    ],
    ids=repr,
)
def test_a_hostile_collected_partial_is_refused_counted_and_never_merged(partial: object) -> None:
    node, transport = lone_node(peers=9)
    node.receive(query(params={"limit": 2, "bytes_max": 80}), "2", 1.0)
    targets = [d for d, _ in sent(transport, Kind.AGG_QUERY)]
    liar, *honest = targets
    node.receive(value_reply(liar, partial), str(liar), 1.1)
    assert node.rejected == {"malformed": 1}
    for child in honest:  # the node still waits for, and merges, the others
        node.receive(value_reply(child, [0, None, [[child, 1.5]]]), str(child), 1.2)
    assert sent(transport, Kind.AGG_REPLY) == []  # the liar is still awaited
    node.handle_timer(3.0)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    kept = sorted([[1, 231.5], *([child, 1.5] for child in honest)])[:2]
    cut = sorted([1, *honest])[2]
    assert message.body == [ORIGIN, QUERY_ID, 0, [1, cut, kept], 3, 1, 0]  # the liar: missing


def test_a_collection_too_large_for_this_nodes_messages_is_declined_and_counted() -> None:
    # The origin allowed 64,872 bytes; this node sends at most 1,024-byte messages.
    node, transport = lone_node(message_bytes_max=1024)
    node.receive(query(fanout=1), "2", 1.0)
    [child] = [d for d, _ in sent(transport, Kind.AGG_QUERY)]
    entries = [[node_id, 230.0] for node_id in range(100, 200)]  # 100 x 12 bytes
    node.receive(value_reply(child, [0, None, entries], 100), str(child), 1.1)
    [(_, message)] = sent(transport, Kind.AGG_REPLY)
    assert message.body == [ORIGIN, QUERY_ID, 2]  # DECLINED: the parent knows at once
    assert node.stats()["aggregation_oversized"] == 1


def test_the_largest_collection_fits_the_largest_message() -> None:
    # 64-bit ids and times everywhere, entries filling bytes_max: still one message.
    collect = DEFAULT_REGISTRY.create("collect", {"limit": COLLECT_LIMIT_MAX})
    partial = collect.combine_all(
        collect.lift((UINT64_MAX - i, -1e300 * (i + 1))) for i in range(COLLECT_LIMIT_MAX)
    )
    wire = collect.encode(partial)
    assert len(cbor2.dumps(wire)) <= COLLECT_BYTES_MAX
    assert len(partial.entries) == (COLLECT_BYTES_MAX - PARTIAL_OVERHEAD_BYTES) // 19
    body = [UINT64_MAX, UINT64_MAX, 0, wire, UINT64_MAX, UINT64_MAX, UINT64_MAX]
    reply = Envelope(Kind.AGG_REPLY, UINT64_MAX, UINT64_MAX, UINT64_MAX, "", UINT64_MAX, 0, body)
    assert len(encode(reply)) <= MESSAGE_BYTES_MAX


def test_the_origin_gets_pairs_the_cut_and_the_coverage() -> None:
    node, _ = lone_node(peers=4, voltage=229.0)
    results: list[CollectResult] = []
    query_id = node.collect(
        "voltage", now=5.0, on_result=results.append, limit=3, fanout=3, segment=FEEDER
    )
    for child in (2, 3, 4):
        partial = [0, None, [[child, 230.0 + child], [child + 10, 1.0]]]
        body = [1, query_id, 0, partial, 2, 1, 0]
        node.receive(Envelope(Kind.AGG_REPLY, 50 + child, child, child, "", 0, 0, body), "x", 5.1)
    [result] = results
    assert result.values == ((1, 229.0), (2, 232.0), (3, 233.0))
    assert (result.dropped, result.cut, result.truncated) == (4, 4, True)
    assert (result.contributors, result.missing, result.declined) == (7, 3, 0)
    assert (result.query_id, result.reading) == (query_id, "voltage")
    assert result.segment == Scope(group=FEEDER)
    assert (result.started_at, result.finished_at, result.complete) == (5.0, 5.1, False)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"segment": ""}, "segment"),
        ({"segment": Scope(service="")}, "segment"),
        ({"segment": Scope(group="x" * 65)}, "segment"),
        ({"segment": 7}, "segment"),
        ({"limit": 0}, "limit"),
        ({"limit": COLLECT_LIMIT_MAX + 1}, "limit"),
        ({"bytes_max": 10}, "bytes_max"),
        ({"bytes_max": COLLECT_BYTES_MAX + 1}, "bytes_max"),
    ],
    ids=repr,
)
def test_local_misuse_of_collect_is_a_local_protocol_error(
    options: dict[str, object], match: str
) -> None:
    node, transport = lone_node()
    with pytest.raises(LocalProtocolError, match=match):
        node.collect("voltage", now=0.0, on_result=print, **options)  # type: ignore[arg-type]
    assert transport.sent == []


def test_collect_needs_the_built_in_collect_function() -> None:
    registry = FunctionRegistry()
    registry.register("collect", lambda params: Sum())
    node = Node(1, transport=RecordingTransport(), rng=random.Random(1), functions=registry)
    with pytest.raises(LocalProtocolError, match="another 'collect'"):
        node.collect("voltage", now=0.0, on_result=print)


# -- simulations -------------------------------------------------------------------------

NODES = 1000
SEGMENT_SIZE = 50


def voltage_of(node_id: int) -> float:
    return 230.0 + random.Random(node_id).uniform(-12.0, 12.0)


def feeder_of(seed: int) -> set[int]:
    """The segment: 50 nodes drawn from 2..1000 (node 1, the DSO, is outside)."""
    return set(random.Random(f"feeder:{seed}").sample(range(2, NODES + 1), SEGMENT_SIZE))


def constant(value: float) -> Callable[[float], float]:
    return lambda now: value


def grid(
    seed: int, members: set[int], *, loss: float = 0.0, wire_fidelity: bool = False
) -> Simulator:
    """1000 meters with static full membership; ``members`` advertise and configure FEEDER."""
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05), loss=loss)
    sim = Simulator(
        seed=seed, network=NetworkConfig(lan=link, wan=link), wire_fidelity=wire_fidelity
    )

    def groups(node_id: int) -> tuple[str, ...]:
        return (FEEDER,) if node_id in members else ("feeder-3",)

    configs: dict[tuple[str, ...], NodeConfig] = {
        group: NodeConfig(
            service="meter",
            groups=group,
            membership=FullMembershipConfig(exchange_interval_s=0),
            aggregation=TreeAggregationConfig(fanout=8),
        )
        for group in ((FEEDER,), ("feeder-3",))
    }
    directory = PeerDirectory(Peer(i, str(i), "meter", groups(i)) for i in range(1, NODES + 1))
    sim.add_nodes(
        NODES,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=configs[groups(i)],
            address=sim.address_of(i),
            directory=directory,
        ),
    )
    for node_id in range(1, NODES + 1):
        node = sim.node(node_id)
        assert node is not None
        node.set_reading("voltage", constant(voltage_of(node_id)))
    return sim


def collect_at(sim: Simulator, origin: int, at: float, **options: object) -> list[CollectResult]:
    results: list[CollectResult] = []

    def start(now: float) -> None:
        node = sim.node(origin)
        assert node is not None
        node.collect("voltage", now=now, on_result=results.append, **options)  # type: ignore[arg-type]

    sim.schedule(at, start)
    return results


def truth(members: Iterable[int]) -> tuple[tuple[int, float], ...]:
    return tuple((node_id, voltage_of(node_id)) for node_id in sorted(members))


def alive(sim: Simulator) -> list[Node]:
    return [node for node_id in range(1, NODES + 1) if (node := sim.node(node_id))]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_segment_of_fifty_returns_exactly_its_fifty_readings(seed: int) -> None:
    members = feeder_of(seed)
    sim = grid(seed, members, wire_fidelity=True)
    collected = collect_at(sim, 1, 1.0, segment=FEEDER, timeout_s=10.0)
    summed: list[AggregateResult] = []

    def add_up(now: float) -> None:
        node = sim.node(3)
        assert node is not None
        node.aggregate("sum", "voltage", now=now, on_result=summed.append, segment=FEEDER)

    sim.schedule(1.0, add_up)
    sim.run(12.0)
    [result] = collected
    assert result.values == truth(members), f"seed {seed}"
    assert (result.dropped, result.cut, result.truncated) == (0, None, False), f"seed {seed}"
    assert (result.contributors, result.complete) == (SEGMENT_SIZE, True), f"seed {seed}"
    assert result.finished_at < 2.0, f"seed {seed}: answered when all children answered"
    [total] = summed  # a segment restricts every function, not only collect
    assert total.value == math.fsum(voltage_of(i) for i in members), f"seed {seed}"
    assert (total.contributors, total.segment) == (SEGMENT_SIZE, Scope(group=FEEDER))
    nodes = alive(sim)
    assert [node.node_id for node in nodes if node.rejected] == [], f"seed {seed}"
    # Relays pick segment peers first: with the whole directory in sight, the
    # two queries never left the segment (and their two origins).
    took_part = {
        node.node_id
        for node in nodes
        if node.stats()["aggregation_answered"] + node.stats()["aggregation_not_child"]
    }
    assert took_part <= members, f"seed {seed}: {sorted(took_part - members)}"


def test_a_limit_below_the_segment_reports_exactly_what_it_cut() -> None:
    members = feeder_of(3)
    sim = grid(3, members)
    results = collect_at(sim, 1, 1.0, segment=FEEDER, limit=20)
    sim.run(12.0)
    [result] = results
    ordered = sorted(members)
    assert result.values == truth(ordered[:20])  # the 20 lowest node ids
    assert (result.dropped, result.cut, result.truncated) == (30, ordered[20], True)
    assert (result.contributors, result.complete) == (SEGMENT_SIZE, True)


def test_a_byte_budget_below_the_segment_reports_exactly_what_it_cut() -> None:
    members = feeder_of(4)
    sim = grid(4, members, wire_fidelity=True)
    results = collect_at(sim, 1, 1.0, segment=FEEDER, bytes_max=300)
    sim.run(12.0)
    [result] = results
    room, fits = 300 - PARTIAL_OVERHEAD_BYTES, 0  # sized by cbor2, not by the code under test
    for node_id, value in truth(members):
        room -= len(cbor2.dumps([node_id, value]))
        if room < 0:
            break
        fits += 1
    assert 0 < fits < SEGMENT_SIZE
    assert result.values == truth(sorted(members)[:fits])
    assert (result.dropped, result.cut) == (SEGMENT_SIZE - fits, sorted(members)[fits])
    assert result.contributors == SEGMENT_SIZE


@pytest.mark.parametrize("seed", [5, 6])
def test_under_loss_and_crashes_every_reading_returned_is_true_and_counted(seed: int) -> None:
    members = feeder_of(seed)
    sim = grid(seed, members, loss=0.05)
    rng = random.Random(seed)
    crashed = set(rng.sample(sorted(members), 5))
    for node_id in crashed:
        sim.crash(node_id, 1.0 + rng.random() * 0.2)
    results = collect_at(sim, 1, 1.0, segment=FEEDER, timeout_s=4.0)
    sim.run(6.0)
    [result] = results
    summary = f"seed {seed}: {result.contributors} contributors, {result.missing} missing"
    assert result.finished_at <= 5.0, summary
    ids = [node_id for node_id, _ in result.values]
    assert len(ids) == len(set(ids)), summary
    assert set(ids) <= members, summary
    assert all(value == voltage_of(node_id) for node_id, value in result.values), summary
    assert result.contributors == len(result.values) and result.dropped == 0, summary
    assert 0 < len(result.values) < SEGMENT_SIZE and not result.complete, summary
    assert not any((node.rejected or {}).get("malformed") for node in alive(sim)), summary


def test_over_a_partial_view_nodes_outside_the_segment_carry_the_query_in() -> None:
    # HyParView's active view holds about five peers, rarely of the feeder: the
    # query reaches the feeder's 50 meters through the other 250, which relay.
    count, seed = 300, 7
    members = set(random.Random(seed).sample(range(2, count + 1), SEGMENT_SIZE))
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05))
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
    configs = {
        inside: NodeConfig(groups=(FEEDER,) if inside else (), membership=HyParViewConfig())
        for inside in (True, False)
    }
    contacts = random.Random(seed + 1)

    def make(node_id: int) -> Node:
        known = 1 + int(contacts.random() * (node_id - 1)) if node_id > 1 else 0
        return Node(
            node_id,
            transport=sim,
            rng=sim.node_rng,
            config=configs[node_id in members],
            address=sim.address_of(node_id),
            seeds=(Peer(known, str(known)),) if known else (),
        )

    for node_id in range(1, count + 1):
        sim.add_nodes(1, make, start_at=2.0 * (node_id - 1) / count)
    sim.run(8.0)
    for node_id in range(1, count + 1):
        node = sim.node(node_id)
        assert node is not None
        node.set_reading("voltage", constant(voltage_of(node_id)))
    results = collect_at(sim, 1, 8.0, segment=FEEDER, fanout=0, hops=20, timeout_s=10.0)
    sim.run(10.0)
    [result] = results
    assert result.values == truth(members)
    assert (result.dropped, result.contributors, result.complete) == (0, SEGMENT_SIZE, True)
    relays = [
        node_id
        for node_id in range(2, count + 1)
        if node_id not in members
        and (node := sim.node(node_id)) is not None
        and node.stats()["aggregation_answered"]
    ]
    assert len(relays) == count - 1 - SEGMENT_SIZE  # every other node relayed, adding nothing
