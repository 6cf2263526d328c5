"""Push-sum (Kempe, Dobra, Gehrke 2003) with loss-tolerant flows: state machine, simulations."""

from __future__ import annotations

import math
import random

import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.aggregation import Estimate, PushSumConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import LinkClass, NetworkConfig, Simulator, UniformLatency
from gridmesh.wire import Envelope, Kind, decode, encode
from tests.helpers import RecordingTransport, mesh

INITIATOR = 2
ESTIMATE_ID = 77

# -- the state machine of one node, driven by hand ---------------------------------------


def lone_node(
    *, peers: int = 2, reading: float | None = 4.0, **limits: object
) -> tuple[Node, RecordingTransport]:
    """Node 1 with static full membership of nodes 1..``peers`` and reading ``kwh``."""
    transport = RecordingTransport()
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pushsum=PushSumConfig(**limits),  # type: ignore[arg-type]
    )
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, peers + 1))
    node = Node(1, transport=transport, rng=random.Random(1), config=config, directory=directory)
    if reading is not None:
        node.set_reading("kwh", lambda now: reading)
    return node, transport


def flow(
    seq: int,
    s: object,
    w: object,
    *,
    ack: int = 0,
    request: bool = True,
    sender: int = INITIATOR,
    epoch: int = 1,
    function: str = "mean",
    reading: str = "kwh",
    variant: str = "flow",
    rounds: int = 40,
) -> Envelope:
    body = [INITIATOR, ESTIMATE_ID, epoch, function, reading, rounds, variant]
    return Envelope(
        Kind.PUSHSUM, 5000 + seq, sender, sender, "", 0, 0, [*body, seq, s, w, ack, request]
    )


def sent(transport: RecordingTransport) -> list[tuple[int, list[object]]]:
    """(destination, body) of each PUSHSUM sent, and forget them."""
    found = [(peer.node_id, m.body) for _, peer, m in transport.sent if m.kind is Kind.PUSHSUM]
    transport.sent.clear()
    return found  # type: ignore[return-value]


def view(node: Node, estimate_id: int = ESTIMATE_ID) -> Estimate:
    estimate = node.estimate(estimate_id)
    assert estimate is not None
    return estimate


def test_the_initiator_pushes_half_its_mass_at_once() -> None:
    node, transport = lone_node()
    estimate_id = node.start_estimate("mean", "kwh", now=0.0)
    [(peer, body)] = sent(transport)
    assert peer == 2
    assert body == [1, estimate_id, 1, "mean", "kwh", 40, "flow", 1, 2.0, 0.5, 0, True]
    estimate = view(node, estimate_id)
    assert (estimate.value, estimate.mass, estimate.weight) == (4.0, 2.0, 0.5)
    assert (estimate.rounds, estimate.unsettled, estimate.epoch) == (1, 1, 1)


def test_a_joining_node_absorbs_the_flow_and_gives_half_back_in_its_reply() -> None:
    node, transport = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    (peer, reply), (_, push) = sent(transport)
    # joined with (4, 1): half of that back, then absorbed (3, 0.5): (5, 1); ack of seq 1.
    # (The requester kept half of its own: both ends hold their average, as in
    # Jelasity's push-pull averaging.)
    assert (peer, reply) == (
        2,
        [2, ESTIMATE_ID, 1, "mean", "kwh", 40, "flow", 1, 2.0, 0.5, 1, False],
    )
    # then its first round: half of (5, 1) to its only peer, cumulative on the link
    assert push[7:] == [2, 2.0 + 2.5, 0.5 + 0.5, 1, True]
    estimate = view(node)
    assert (estimate.mass, estimate.weight, estimate.initiator) == (2.5, 0.5, INITIATOR)
    assert node.stats()["pushsum_joined"] == 1


def test_a_joining_node_splits_its_mass_among_join_fanout_plus_one_peers() -> None:
    node, transport = lone_node(peers=9, join_fanout=3)
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    (_, reply), *pushes = sent(transport)
    assert reply[7:] == [1, 2.0, 0.5, 1, False]  # half its own (4, 1), before absorbing
    assert len(pushes) == 4
    assert len({peer for peer, _ in pushes}) == 4
    assert all(body[11] is True for _, body in pushes)
    estimate = view(node)  # a fifth of (2, 0.5) + (3, 0.5)
    assert math.isclose(estimate.mass, 5 / 5) and math.isclose(estimate.weight, 1 / 5)
    assert (estimate.unsettled, estimate.rounds) == (4, 1)


def test_a_copy_of_a_request_adds_nothing_and_is_answered_with_the_same_cumulative() -> None:
    node, transport = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    transport.sent.clear()
    before = view(node)
    node.receive(flow(1, 3.0, 0.5), "2", 1.1)
    [(_, reply)] = sent(transport)
    assert reply[7:] == [2, 4.5, 1.0, 1, False]  # everything given on the link so far
    after = view(node)
    assert (after.mass, after.weight) == (before.mass, before.weight)


def test_a_lost_flow_is_made_good_by_the_next_one() -> None:
    node, transport = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)  # seq 1
    transport.sent.clear()
    before = view(node)
    # seq 2 (2 more) was lost; seq 3 carries the cumulative 3 + 2 + 1
    node.receive(flow(3, 6.0, 0.875, ack=2, request=False), "2", 2.0)
    after = view(node)
    assert (after.mass - before.mass, after.weight - before.weight) == (3.0, 0.375)
    assert after.unsettled == 0  # the ack settled our push (seq 2)
    assert sent(transport) == []  # a reply is never answered
    node.receive(flow(2, 5.0, 0.625, ack=2, request=False), "2", 2.1)  # seq 2, late: nothing
    assert view(node).mass == after.mass


def test_an_unanswered_request_is_sent_again_then_abandoned() -> None:
    node, transport = lone_node(retries_max=2, rounds=1)
    estimate_id = node.start_estimate("size", now=0.0)
    [(_, first)] = sent(transport)
    for when in (1.0, 2.0):
        node.handle_timer(when)
        [(_, again)] = sent(transport)
        assert again == first  # the same cumulative, the same seq: idempotent
    node.handle_timer(3.0)
    assert sent(transport) == []
    stats = node.stats()
    assert (stats["pushsum_resent"], stats["pushsum_abandoned"]) == (2, 1)
    # given up without taking the mass back: the peer may have absorbed it
    assert (view(node, estimate_id).mass, view(node, estimate_id).unsettled) == (0.5, 0)


def test_a_reply_settles_the_request_and_nothing_is_sent_again() -> None:
    node, transport = lone_node(rounds=1)
    estimate_id = node.start_estimate("sum", "kwh", now=0.0)
    sent(transport)
    reply = flow(1, 1.0, 0.0, ack=1, request=False, function="sum", rounds=1)
    body = list(reply.body)  # type: ignore[call-overload]
    body[:2] = [1, estimate_id]
    node.receive(Envelope(Kind.PUSHSUM, 9, 2, 2, "", 0, 0, body), "2", 0.1)
    estimate = view(node, estimate_id)
    assert (estimate.mass, estimate.weight, estimate.value) == (3.0, 0.5, 6.0)
    assert (estimate.unsettled, node.rejected) == (0, None)
    node.handle_timer(1.0)
    assert sent(transport) == []


def test_a_new_epoch_restarts_and_keeps_the_previous_value() -> None:
    node, _ = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    old = view(node).value
    node.receive(flow(1, 0.0, 0.0, epoch=2), "2", 5.0)
    estimate = view(node)
    assert (estimate.epoch, estimate.previous) == (2, old)
    assert estimate.value == 4.0  # its own fresh reading, half given back, half pushed
    node.receive(flow(2, 3.0, 0.5, epoch=1), "2", 5.1)  # stale: counted, dropped
    assert node.stats()["pushsum_stale"] == 1
    assert node.rejected is None


def test_the_initiator_restarts_its_estimate() -> None:
    node, transport = lone_node(rounds=2)
    estimate_id = node.start_estimate("mean", "kwh", now=0.0)
    node.restart_estimate(estimate_id, now=3.0)
    estimate = view(node, estimate_id)
    assert (estimate.epoch, estimate.rounds, estimate.previous) == (2, 1, 4.0)
    assert sent(transport)[-1][1][2] == 2


def test_a_continuous_estimate_starts_its_next_epoch_by_itself() -> None:
    node, _ = lone_node(rounds=2, retries_max=0)
    estimate_id = node.start_estimate("mean", "kwh", now=0.0, continuous=True)
    for when in range(1, 5):
        node.handle_timer(float(when))
    assert view(node, estimate_id).epoch >= 2


def test_the_push_variant_absorbs_amounts_and_never_replies() -> None:
    node, transport = lone_node(variant="push")
    node.receive(flow(0, 3.0, 0.5, request=False, variant="push"), "2", 1.0)
    [(_, push)] = sent(transport)  # its first round: half to its only peer, no reply
    assert push[7:] == [0, 3.5, 0.75, 0, False]
    assert view(node).value == 7.0 / 1.5


def test_without_the_reading_a_node_relays_and_adds_nothing() -> None:
    node, _ = lone_node(reading=None)
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    estimate = view(node)
    # Nothing of its own to give back; half of what came pushed on at its first round.
    assert (estimate.mass * 2, estimate.weight * 2) == (3.0, 0.5)


def test_a_failing_reading_is_counted_and_adds_nothing() -> None:
    node, _ = lone_node(reading=math.nan)
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    assert node.stats()["pushsum_reading_errors"] == 1
    assert view(node).weight == 0.25  # as with no reading: half of the 0.5 that came


def test_the_message_survives_the_wire() -> None:
    node, transport = lone_node()
    node.start_estimate("mean", "kwh", now=0.0)
    [(_, _, message)] = transport.sent
    assert decode(encode(message)).body == message.body


@pytest.mark.parametrize(
    "message",
    [
        flow(1, math.nan, 0.5),
        flow(1, math.inf, 0.5),
        flow(1, 1.0, -0.5),
        flow(1, 1.0, math.inf),
        flow(1, "1", 0.5),
        flow(1, True, 0.5),
        flow(0, 1.0, 0.5),  # a flow's seq starts at 1
        flow(1, 1.0, 0.5, ack=3),  # acknowledges what was never sent
        flow(1, 1.0, 0.5, function="median"),
        flow(1, 1.0, 0.5, function="size"),  # size takes no reading
        flow(1, 1.0, 0.5, reading=""),
        flow(1, 1.0, 0.5, variant="gossip"),
        flow(1, 1.0, 0.5, rounds=0),
        flow(1, 1.0, 0.5, rounds=10_001),
        flow(1, 1.0, 0.5, sender=1),  # a flow from itself
        flow(0, 1.0, 0.5, request=True, variant="push"),
        Envelope(Kind.PUSHSUM, 1, 2, 2, "", 0, 0, [INITIATOR, ESTIMATE_ID, 1]),
        Envelope(Kind.PUSHSUM, 1, 2, 2, "", 0, 0, None),
        Envelope(Kind.PUSHSUM, 1, 2, 2, "", 0, 0, [0, *flow(1, 1.0, 0.5).body[1:]]),  # type: ignore[index]
    ],
)
def test_bad_input_is_counted_and_never_absorbed(message: Envelope) -> None:
    node, _ = lone_node()
    node.receive(message, "2", 1.0)
    assert node.rejected == {"malformed": 1}
    estimate = node.estimate(ESTIMATE_ID)
    assert estimate is None or estimate.weight <= 1.0  # nothing but its own mass


def test_a_shrinking_cumulative_weight_is_refused() -> None:
    node, _ = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    before = view(node)
    node.receive(flow(2, 3.0, 0.25), "2", 1.1)
    assert node.rejected == {"malformed": 1}
    assert view(node).mass == before.mass


def test_a_changed_definition_mid_epoch_is_refused() -> None:
    node, _ = lone_node()
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    node.receive(flow(2, 3.0, 0.5, rounds=7), "2", 1.1)
    assert node.rejected == {"malformed": 1}


def test_estimates_beyond_the_limit_are_refused() -> None:
    node, _ = lone_node(estimates_max=1)
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    other = flow(1, 3.0, 0.5)
    body = list(other.body)  # type: ignore[call-overload]
    body[1] = ESTIMATE_ID + 1
    node.receive(Envelope(Kind.PUSHSUM, 1, 2, 2, "", 0, 0, body), "2", 1.0)
    assert node.rejected == {"malformed": 1}
    assert node.stats()["pushsum_overloaded"] == 1
    with pytest.raises(LocalProtocolError, match="running"):
        node.start_estimate("size", now=1.0)


def test_a_finished_estimate_makes_room_and_its_late_messages_are_stale() -> None:
    node, _ = lone_node(estimates_max=1, rounds=1, retries_max=0)
    node.receive(flow(1, 3.0, 0.5, rounds=1), "2", 1.0)
    node.handle_timer(5.0)  # the pushed request is abandoned: nothing in flight
    node.start_estimate("size", now=5.0)
    assert node.estimate(ESTIMATE_ID) is None
    node.receive(flow(2, 6.0, 1.0, rounds=1), "2", 5.1)
    assert node.stats()["pushsum_stale"] == 1
    assert node.rejected is None


def test_links_are_bounded() -> None:
    node, transport = lone_node(peers=5, links_max=1)
    node.receive(flow(1, 3.0, 0.5), "2", 1.0)
    node.receive(flow(1, 3.0, 0.5, sender=3), "3", 1.0)
    assert node.rejected == {"malformed": 1}
    for when in range(2, 6):  # pushes go only to the one peer it has a link with
        node.handle_timer(float(when))
    assert {peer for peer, _ in sent(transport)} == {2}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda n: n.start_estimate("median", "kwh", now=0.0), "computes"),
        (lambda n: n.start_estimate("mean", now=0.0), "reading"),
        (lambda n: n.start_estimate("size", "kwh", now=0.0), "reading"),
        (lambda n: n.start_estimate("mean", "x" * 65, now=0.0), "reading"),
        (lambda n: n.start_estimate("mean", "kwh", now=0.0, rounds=0), "rounds"),
        (lambda n: n.restart_estimate(5, now=0.0), "no estimate"),
    ],
)
def test_local_misuse_is_a_local_protocol_error(call: object, match: str) -> None:
    node, _ = lone_node()
    with pytest.raises(LocalProtocolError, match=match):
        call(node)  # type: ignore[operator]


def test_an_idle_node_reports_zero_counters_and_builds_nothing() -> None:
    node, _ = lone_node()
    assert node.stats()["pushsum_pushes"] == 0
    assert node.estimate(ESTIMATE_ID) is None
    assert node._pushsum is None


# -- simulations -------------------------------------------------------------------------

START_S = 1.0


def reading_of(node_id: int) -> float:
    return random.Random(node_id).random() * 100.0


def simulated(count: int, *, seed: int, loss: float = 0.0, **pushsum: object) -> Simulator:
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05), loss=loss)
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pushsum=PushSumConfig(**pushsum),  # type: ignore[arg-type]
    )
    sim, _ = mesh(count, config, NetworkConfig(lan=link, wan=link), seed=seed)
    for node_id in range(1, count + 1):
        node = sim.node(node_id)
        assert node is not None
        value = reading_of(node_id)
        node.set_reading("kwh", lambda now, value=value: value)
    return sim


def start(sim: Simulator, initiator: int, function: str) -> list[int]:
    started: list[int] = []

    def begin(now: float) -> None:
        node = sim.node(initiator)
        assert node is not None
        reading = "" if function == "size" else "kwh"
        started.append(node.start_estimate(function, reading, now=now))

    sim.schedule(START_S, begin)
    return started


def views(sim: Simulator, estimate_id: int) -> list[Estimate]:
    found = []
    for node_id in range(1, sim.node_count + 1):
        node = sim.node(node_id)
        estimate = None if node is None else node.estimate(estimate_id)
        assert estimate is not None, f"seed {sim.seed}: node {node_id} never joined"
        found.append(estimate)
    return found


def worst_error(estimates: list[Estimate], truth: float) -> float:
    return max(math.inf if e.value is None else abs(e.value / truth - 1.0) for e in estimates)


def test_mean_sum_and_size_are_within_one_percent_at_every_node_in_25_rounds() -> None:
    count = 2000
    sim = simulated(count, seed=1, rounds=25)
    values = [reading_of(i) for i in range(1, count + 1)]
    truth = {"mean": math.fsum(values) / count, "sum": math.fsum(values), "size": count}
    started = {function: start(sim, i + 1, function) for i, function in enumerate(truth)}
    sim.run(START_S + 25.0)
    for function, [estimate_id] in started.items():
        error = worst_error(views(sim, estimate_id), truth[function])
        assert error <= 0.01, f"seed 1: {function} off by {error:.3%} after 25 rounds"
    assert all(not node.rejected for i in range(1, count + 1) if (node := sim.node(i)))


def test_under_loss_flows_keep_the_mass_exact_and_plain_push_sum_loses_it() -> None:
    count, seed, rounds = 1000, 2, 30
    values = [reading_of(i) for i in range(1, count + 1)]
    total = math.fsum(values)
    lost: dict[str, float] = {}
    for variant in ("flow", "push"):
        sim = simulated(count, seed=seed, loss=0.05, rounds=rounds, variant=variant)
        started = start(sim, 1, "mean")
        sim.run(START_S + rounds + 10.0)  # every node done, every request settled
        [estimate_id] = started
        estimates = views(sim, estimate_id)
        weight = math.fsum(e.weight for e in estimates)
        mass = math.fsum(e.mass for e in estimates)
        lost[variant] = 1.0 - weight / count
        if variant == "flow":
            summary = f"seed {seed}: weight {weight!r} of {count}, mass {mass!r} of {total!r}"
            assert math.isclose(weight, count, rel_tol=1e-12), summary
            assert math.isclose(mass, total, rel_tol=1e-12), summary
            assert sum(e.unsettled for e in estimates) == 0, summary
            assert worst_error(estimates, total / count) <= 0.01, summary
            assert sim.messages_lost > 0
    assert lost["push"] > 0.2, f"seed {seed}: plain push-sum lost only {lost['push']:.1%}"
    assert abs(lost["flow"]) < 1e-12


def test_departed_nodes_stay_counted_until_a_new_epoch_counts_the_survivors() -> None:
    count, leaving, rounds = 500, 50, 20
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05))
    sim = Simulator(seed=3, network=NetworkConfig(lan=link, wan=link))
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1))
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pushsum=PushSumConfig(rounds=rounds),
    )
    sim.add_nodes(
        count,
        lambda i: Node(i, transport=sim, rng=sim.node_rng, config=config, directory=directory),
    )
    started = start(sim, 1, "size")

    def leave(now: float) -> None:  # mid-epoch; the membership learns of it at once
        for node_id in range(count - leaving + 1, count + 1):
            sim.crash(node_id, now)
            directory.remove(node_id)

    sim.schedule(START_S + 6.0, leave)
    restart_s = START_S + rounds + 5.0
    sim.schedule(restart_s, lambda now: sim.node(1).restart_estimate(started[0], now=now))  # type: ignore[union-attr]
    sim.run(restart_s - 0.5)
    survivors = range(1, count - leaving + 1)
    [estimate_id] = started
    first = [view(node, estimate_id) for i in survivors if (node := sim.node(i))]
    # Mixed mass leaves in proportion: the departed are still counted.
    assert worst_error(first, count) <= 0.05, f"seed 3: {worst_error(first, count):.2%}"
    assert worst_error(first, count - leaving) > 0.05
    sim.run(restart_s + rounds + 5.0)
    second = [view(node, estimate_id) for i in survivors if (node := sim.node(i))]
    assert {e.epoch for e in second} == {2}
    error = worst_error(second, count - leaving)
    assert error <= 0.01, f"seed 3: epoch 2 off by {error:.2%}"
    assert all(e.previous is not None and abs(e.previous / count - 1) <= 0.05 for e in second)
