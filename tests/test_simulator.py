"""The simulator: virtual time, latency models, loss, partitions, crashes, wire fidelity."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from pydantic import ValidationError

from gridmesh.errors import LocalProtocolError
from gridmesh.sim import (
    ConstantLatency,
    LinkClass,
    LogNormalLatency,
    NetworkConfig,
    OverlaySnapshot,
    Simulator,
    UniformLatency,
)
from tests.helpers import static_mesh


def draws(
    model: ConstantLatency | UniformLatency | LogNormalLatency, n: int = 20_000
) -> list[float]:
    stream = model.stream(np.random.default_rng(7))
    return [next(stream) for _ in range(n)]


def test_constant_latency_is_exact() -> None:
    assert set(draws(ConstantLatency(delay_s=0.25), 100)) == {0.25}


def test_uniform_latency_stays_in_bounds_and_is_centred() -> None:
    values = draws(UniformLatency(low_s=0.002, high_s=0.010))
    assert min(values) >= 0.002 and max(values) <= 0.010
    assert statistics.fmean(values) == pytest.approx(0.006, rel=0.02)


def test_lognormal_latency_has_the_requested_median_and_spread_and_cap() -> None:
    values = draws(LogNormalLatency(median_s=0.05, sigma=0.5, max_s=10.0))
    assert statistics.median(values) == pytest.approx(0.05, rel=0.03)
    logs = [math.log(v) for v in values]
    assert statistics.stdev(logs) == pytest.approx(0.5, rel=0.03)
    capped = draws(LogNormalLatency(median_s=0.05, sigma=2.0, max_s=0.1))
    assert max(capped) == 0.1


def test_latency_models_refuse_nonsense() -> None:
    with pytest.raises(ValidationError):
        UniformLatency(low_s=0.01, high_s=0.001)
    with pytest.raises(ValidationError):
        ConstantLatency(delay_s=-1.0)
    with pytest.raises(ValidationError):
        LinkClass(latency=ConstantLatency(delay_s=0.0), loss=1.5)


def lossy(loss: float, latency_s: float = 0.01, domain_size: int = 1000) -> NetworkConfig:
    link = LinkClass(latency=ConstantLatency(delay_s=latency_s), loss=loss)
    return NetworkConfig(lan=link, wan=link, domain_size=domain_size)


def test_loss_probability_is_applied_per_message() -> None:
    sim, _ = static_mesh(2000, fanout=10, network=lossy(0.2))
    for at in range(20):
        sim.schedule(float(at), lambda now: sim.node(1).broadcast("x", topic="T", now=now))  # type: ignore[union-attr]
    sim.run(30.0)
    ratio = sim.messages_lost / sim.messages_sent
    assert ratio == pytest.approx(0.2, abs=0.01), f"seed 1: loss ratio {ratio}"


def test_lan_and_wan_links_get_their_own_latency() -> None:
    network = NetworkConfig(
        lan=LinkClass(latency=ConstantLatency(delay_s=0.001)),
        wan=LinkClass(latency=ConstantLatency(delay_s=0.1)),
        domain_size=5,
    )
    sim, received = static_mesh(10, fanout=9, hops=1, network=network)
    sim.schedule(0.0, lambda now: sim.node(1).broadcast("x", topic="T", now=now))  # type: ignore[union-attr]
    sim.run(1.0)
    latency = {node_id: d[0].received_at for node_id, d in received.items()}
    assert latency == {2: 0.001, 3: 0.001, 4: 0.001, 5: 0.001} | {i: 0.1 for i in range(6, 11)}


def test_messages_to_a_crashed_node_are_dropped_and_counted() -> None:
    sim, received = static_mesh(10, fanout=9, hops=1)
    sim.crash(5, at=0.0)
    sim.schedule(0.5, lambda now: sim.node(1).broadcast("x", topic="T", now=now))  # type: ignore[union-attr]
    sim.run(1.0)
    assert 5 not in received and len(received) == 8
    assert sim.messages_to_down_nodes == 1
    assert not sim.is_up(5)


def test_a_recovered_node_is_a_fresh_process_and_receives_again() -> None:
    sim, received = static_mesh(10, fanout=9, hops=1)
    sim.crash(5, at=0.0)
    sim.recover(5, at=1.0)
    sim.schedule(2.0, lambda now: sim.node(1).broadcast("x", topic="T", now=now))  # type: ignore[union-attr]
    sim.run(3.0)
    assert 5 in received and sim.is_up(5)


def test_a_partition_cuts_messages_between_groups_until_it_heals() -> None:
    sim, received = static_mesh(10, fanout=9, hops=1)
    group_of = [0] * 5 + [1] * 5
    sim.partition(1.0, 2.0, group_of)
    sim.schedule(1.5, lambda now: sim.node(1).broadcast("during", topic="T", now=now))  # type: ignore[union-attr]
    sim.schedule(2.5, lambda now: sim.node(1).broadcast("after", topic="T", now=now))  # type: ignore[union-attr]
    sim.run(3.0)
    during = {i for i, ds in received.items() if any(d.payload == "during" for d in ds)}
    after = {i for i, ds in received.items() if any(d.payload == "after" for d in ds)}
    assert during == {2, 3, 4, 5}
    assert after == set(range(2, 11))
    assert sim.messages_partitioned == 5


def test_a_partition_needs_one_group_per_node_and_an_order_in_time() -> None:
    sim, _ = static_mesh(4)
    with pytest.raises(LocalProtocolError):
        sim.partition(0.0, 1.0, [0, 1])
    with pytest.raises(LocalProtocolError):
        sim.partition(2.0, 1.0, [0, 0, 1, 1])


def test_time_only_moves_forward_and_stops_at_the_horizon() -> None:
    sim = Simulator(seed=3)
    seen: list[float] = []
    for at in (3.0, 1.0, 2.0, 1.0, 7.0):
        sim.schedule(at, seen.append)
    sim.run(5.0)
    assert seen == [1.0, 1.0, 2.0, 3.0]
    assert sim.now == 5.0
    sim.run(10.0)
    assert seen[-1] == 7.0


def outcome(wire_fidelity: bool) -> tuple[object, ...]:
    network = NetworkConfig(
        lan=LinkClass(latency=UniformLatency(low_s=0.001, high_s=0.01), loss=0.05),
        wan=LinkClass(latency=LogNormalLatency(median_s=0.05, sigma=0.5), loss=0.05),
        domain_size=20,
    )
    sim, received = static_mesh(400, fanout=5, network=network, wire_fidelity=wire_fidelity)
    for at in (0.1, 0.2, 0.3):
        sim.schedule(
            at, lambda now: sim.node(1).broadcast({"v": [1, 2.5, b"x"]}, topic="T", now=now)
        )  # type: ignore[union-attr]
    sim.run(10.0)
    deliveries = sorted(
        (n, d.message_id, d.received_at, repr(d.payload)) for n, ds in received.items() for d in ds
    )
    return (sim.messages_sent, sim.bytes_sent, sim.messages_lost, deliveries)


def test_wire_fidelity_mode_changes_nothing_but_really_encodes_and_decodes() -> None:
    assert outcome(wire_fidelity=True) == outcome(wire_fidelity=False)


def test_byte_counts_come_from_the_real_encoder() -> None:
    from gridmesh.wire import encode

    sim, _ = static_mesh(3, fanout=2, hops=1)
    sent: list[int] = []

    def fire(now: float) -> None:
        node = sim.node(1)
        assert node is not None
        node.broadcast("tariff", topic="TARIFF", now=now)

    original_send = sim.send

    def spy(source, peers, message):  # type: ignore[no-untyped-def]
        sent.extend(len(encode(message)) for _ in peers)
        original_send(source, peers, message)

    sim.send = spy  # type: ignore[method-assign]
    sim.schedule(0.0, fire)
    sim.run(1.0)
    assert sim.bytes_sent == sum(sent) and len(sent) == 2


def test_an_overlay_snapshot_names_its_components_largest_first() -> None:
    # 1-2 linked both ways, 4 -> 5 one way (one undirected link), 9 is down, 3 alone.
    shot = OverlaySnapshot({1: [2], 2: [1], 3: [], 4: [5, 9], 5: []})
    assert shot.components() == [[1, 2], [4, 5], [3]]
    assert shot.component_sizes() == [2, 2, 1]
    assert OverlaySnapshot({}).components() == []
