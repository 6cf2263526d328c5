"""Run a scenario on the simulator and measure it.

A run is a pure function of ``(scenario, seed, code version)``: every random
choice below comes from ``Random`` streams derived from the seed, the report
holds no wall-clock figure, and it is serialised with sorted keys — so the
same inputs give byte-identical ``report.json`` files.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from itertools import pairwise
from random import Random

from gridmesh import __version__
from gridmesh.node import Node, NodeConfig, Transport
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GATEWAY_GROUP, parent_group
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.scenarios._devices import DevicesService
from gridmesh.scenarios._dr import DrService
from gridmesh.scenarios._queries import (
    CountingTransport,
    aggregate_report,
    estimate_report,
    reading_equipper,
    scenario_readings,
    schedule_queries,
)
from gridmesh.scenarios._redy import RedyService
from gridmesh.scenarios._report import cdf, percentiles, rounded
from gridmesh.scenarios._schema import BroadcastSpec, Scenario
from gridmesh.scenarios._security import scenario_credentials
from gridmesh.scenarios._services import ScenarioService
from gridmesh.sim import RouterTopology, Simulator, TrafficTrace, snapshot

__all__ = ["run_scenario"]


class _BroadcastRecord:
    """What happened to one scripted broadcast."""

    __slots__ = ("at_s", "latency_s", "message_id", "origin", "spec")

    def __init__(self, spec: BroadcastSpec, origin: int, node_count: int) -> None:
        self.spec = spec
        self.origin = origin
        self.at_s = spec.at_s
        self.message_id: int | None = None
        # latency_s[node_id] is NaN until that node delivers the message.
        self.latency_s = array("d", [math.nan]) * (node_count + 1)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, object]:
    """Simulate ``scenario``; returns the report (see docs/SCENARIOS.md for its fields)."""
    seed = scenario.simulation.seed if seed is None else seed
    config = scenario.node
    node_count = scenario.node_count
    sim = Simulator(
        seed=seed,
        network=scenario.network,
        wire_fidelity=scenario.simulation.wire_fidelity,
        message_bytes_max=config.message_bytes_max,
    )
    configs = node_configs(scenario)
    readings = scenario_readings(scenario, seed)
    counting = None
    if scenario.aggregate or scenario.estimate:
        counting = CountingTransport(sim, node_count)
    services = scenario_services(scenario, seed)
    _add_nodes(
        scenario,
        sim,
        seed,
        configs,
        transport=counting or sim,
        equip=_equipper(reading_equipper(readings), services),
    )

    records = [_BroadcastRecord(b, scenario.origin_id(b), node_count) for b in scenario.broadcast]
    if scenario.simulation.link_stress:
        sim.trace = TrafficTrace([record.origin for record in records])
    by_message: dict[int, _BroadcastRecord] = {}
    _schedule_broadcasts(sim, records, by_message)
    queries, estimates = schedule_queries(scenario, sim)
    origins = {r.origin for r in records} | {r.origin for r in queries}
    origins |= {r.origin for r in estimates}
    for service in services:
        origins |= service.spared()
    _schedule_faults(scenario, sim, seed, origins=origins)
    for service in services:
        service.install(sim)

    def on_deliver(node_id: int, delivery: Delivery) -> None:
        record = by_message.get(delivery.message_id)
        if record is not None and delivery.origin == record.origin:
            record.latency_s[node_id] = delivery.received_at - record.at_s
        for service in services:
            service.on_deliver(node_id, delivery)

    sim.on_deliver = on_deliver
    sim.run(scenario.simulation.duration_s, progress)
    report = _report(scenario, sim, seed, records, configs)
    report["aggregates"] = aggregate_report(scenario, readings, queries, counting)
    report["estimates"] = estimate_report(scenario, readings, sim, estimates, counting)
    for service in services:
        for key, value in service.report(sim).items():
            if key in report:
                raise AssertionError(f"a service reported {key!r}, a key the runner uses")
            report[key] = value
    return report


def scenario_services(scenario: Scenario, seed: int) -> list[ScenarioService]:
    """The services ``scenario`` declares (scenarios/_services.py), in a fixed order."""
    services: list[ScenarioService] = []
    if scenario.dr is not None:
        services.append(DrService(scenario, scenario.dr, seed))
    if scenario.redy is not None:
        services.append(RedyService(scenario, scenario.redy, seed))
    if scenario.devices is not None or scenario.rules:
        services.append(DevicesService(scenario, seed))
    return services


def _equipper(
    readings: Callable[[Node], None] | None, services: list[ScenarioService]
) -> Callable[[Node], None] | None:
    """One call that gives a node its readings, then each service's equipment."""
    if not services:
        return readings

    def equip(node: Node) -> None:
        if readings is not None:
            readings(node)
        for service in services:
            service.equip(node)

    return equip


def _security_report(scenario: Scenario, live_nodes: list[Node]) -> dict[str, object] | None:
    """Links, verifications and refusals summed over the live secure nodes; None if off."""
    if not scenario.security.enabled:
        return None
    totals: dict[str, int] = {}
    for node in live_nodes:
        for name, value in node.stats().items():
            if name.startswith("sec_"):
                totals[name[4:]] = totals.get(name[4:], 0) + value
    return {"enabled": True, **dict(sorted(totals.items()))}


def _add_nodes(
    scenario: Scenario,
    sim: Simulator,
    seed: int,
    configs: list[NodeConfig],
    *,
    transport: Transport,
    equip: Callable[[Node], None] | None,
) -> None:
    """Build every node on ``transport``; ``equip`` gives each (and each restart) its readings."""
    count = scenario.node_count
    credentials = {}
    if scenario.security.enabled:
        security = scenario.security
        roles = [
            role
            for spec in scenario.roles
            for role in [security.pki_role(spec.name)] * spec.count
            if role is not None
        ]
        credentials = scenario_credentials(roles, seed)
    membership = scenario.node.membership
    if isinstance(membership, FullMembershipConfig) and membership.exchange_interval_s == 0:
        # Static full membership: one shared directory serves every node.
        directory = PeerDirectory(
            sim.peer(node_id, str(node_id), c.service, c.groups)
            for node_id, c in enumerate(configs[1:], start=1)
        )

        def make_static(node_id: int) -> Node:
            node = Node(
                node_id,
                transport=transport,
                rng=sim.node_rng,
                config=configs[node_id],
                address=sim.address_of(node_id),
                directory=directory,
                credentials=credentials.get(node_id),
            )
            if equip is not None:
                equip(node)
            return node

        sim.add_nodes(count, make_static)
        return
    bootstrap = scenario.bootstrap
    rng = Random(f"gridmesh-bootstrap:{seed}")
    contacts = [()] + [
        _contacts(bootstrap.contact, bootstrap.contacts, node_id, rng)
        for node_id in range(2, count + 1)
    ]

    def make_joining(node_id: int) -> Node:
        seeds = tuple(Peer(contact, str(contact)) for contact in contacts[node_id - 1])
        node = Node(
            node_id,
            transport=transport,
            rng=sim.node_rng,
            config=configs[node_id],
            address=sim.address_of(node_id),
            seeds=seeds,
            credentials=credentials.get(node_id),
        )
        if equip is not None:
            equip(node)
        return node

    for node_id in range(1, count + 1):
        sim.add_nodes(1, make_joining, start_at=bootstrap.spread_s * (node_id - 1) / count)


def node_configs(scenario: Scenario) -> list[NodeConfig]:
    """Each node's configuration, by node id (index 0 unused).

    The role's profile, plus what a baseline mode derives from the layout:
    ``hierarchy``: roles are the levels, in file order, and the nodes of one
    level are split into contiguous blocks under the nodes of the level above
    (each gets group ``parent:<id>``); ``hybrid``: the first node of every LAN
    domain is its gateway (group ``gateway``).
    """
    count = scenario.node_count
    configs = [scenario.node] * (count + 1)
    extra: list[tuple[str, ...]] = [()] * (count + 1)
    roles = scenario.node_configs()
    for ids, _, role_config in roles:
        for node_id in ids:
            configs[node_id] = role_config
    mode = scenario.node.gossip.mode
    if mode == "hierarchy":
        for (parents, _, _), (children, _, _) in pairwise(roles):
            for position, child in enumerate(children):
                parent = parents[position * len(parents) // len(children)]
                extra[child] = (parent_group(parent),)
    elif mode == "hybrid":
        domain_size = scenario.network.domain_size
        for first in range(1, count + 1, domain_size):
            extra[first] = (GATEWAY_GROUP,)
    if mode in ("hierarchy", "hybrid"):
        for node_id in range(1, count + 1):
            if extra[node_id]:
                base = configs[node_id]
                configs[node_id] = base.model_copy(
                    update={"groups": (*base.groups, *extra[node_id])}
                )
    return configs


def _contacts(rule: str, count: int, node_id: int, rng: Random) -> tuple[int, ...]:
    """Up to ``count`` distinct earlier nodes for ``node_id`` to join through."""
    earlier = node_id - 1
    if rule == "first":
        return tuple(range(1, min(count, earlier) + 1))
    if rule == "previous":
        return tuple(range(earlier, max(0, earlier - count), -1))
    if count == 1:  # the draw earlier versions made, so old seeds give old runs
        return (1 + int(rng.random() * earlier),)
    return tuple(1 + i for i in rng.sample(range(earlier), min(count, earlier)))


def _schedule_broadcasts(
    sim: Simulator, records: list[_BroadcastRecord], by_message: dict[int, _BroadcastRecord]
) -> None:
    for record in records:

        def fire(now: float, record: _BroadcastRecord = record) -> None:
            node = sim.node(record.origin)
            if node is None:  # the origin is down: nothing is sent
                return
            spec = record.spec
            record.message_id = node.broadcast(
                spec.payload,
                topic=spec.topic,
                now=now,
                fanout=spec.fanout,
                hops=spec.hops,
                group=spec.group,
                reliability=spec.reliability,
            )
            by_message[record.message_id] = record

        sim.schedule(record.at_s, fire)


def _schedule_faults(scenario: Scenario, sim: Simulator, seed: int, origins: set[int]) -> None:
    rng = Random(f"gridmesh-scenario:{seed}")
    for crashed in scenario.faults.crashed:
        candidates = [i for i in scenario.role_ids(crashed.role) if i not in origins]
        chosen = rng.sample(candidates, round(crashed.fraction * len(candidates)))
        for node_id in sorted(chosen):
            # Draw only when spread: files without spread_s keep their random streams.
            at_s = crashed.at_s + (rng.random() * crashed.spread_s if crashed.spread_s else 0.0)
            sim.crash(node_id, at_s)
            if crashed.recover_s is not None:
                sim.recover(node_id, crashed.recover_s)
    for crash in scenario.faults.crashes:
        sim.crash(crash.node, crash.at_s)
        if crash.recover_s is not None:
            sim.recover(crash.node, crash.recover_s)
    for partition in scenario.faults.partitions:
        order = list(range(scenario.node_count))
        rng.shuffle(order)
        group_of = [0] * scenario.node_count
        start = 0.0
        for group, fraction in enumerate(partition.fractions):
            end = start + fraction * scenario.node_count
            for index in order[round(start) : round(end)]:
                group_of[index] = group
            start = end
        sim.partition(partition.start_s, partition.heal_s, group_of)


def _report(
    scenario: Scenario,
    sim: Simulator,
    seed: int,
    records: list[_BroadcastRecord],
    configs: list[NodeConfig],
) -> dict[str, object]:
    node_count = scenario.node_count
    live = [node_id for node_id in range(1, node_count + 1) if sim.is_up(node_id)]
    per_broadcast: list[dict[str, object]] = []
    topology = (
        RouterTopology(node_count, scenario.network.domain_size, scenario.routers, seed=seed)
        if sim.trace is not None
        else None
    )
    all_latencies: list[float] = []
    delivered_total = 0
    targets_total = 0
    for record in records:
        latency = record.latency_s
        group = record.spec.group
        targets = [
            node_id
            for node_id in live
            if node_id != record.origin and (not group or group in configs[node_id].groups)
        ]
        reached = [latency[node_id] for node_id in targets if not math.isnan(latency[node_id])]
        delivered_total += len(reached)
        targets_total += len(targets)
        all_latencies.extend(reached)
        per_broadcast.append(
            {
                "at_s": record.at_s,
                "origin": record.origin,
                "topic": record.spec.topic,
                "group": group,
                "sent": record.message_id is not None,
                "targets": len(targets),
                "delivered": len(reached),
                "delivery_ratio": rounded(len(reached) / len(targets)) if targets else None,
                "latency_s": percentiles(reached),
                "latency_cdf_s": cdf(reached),
                **_stress(sim, topology, record),
            }
        )
    live_nodes = [node for node in (sim.node(i) for i in live) if node is not None]
    gossip: dict[str, int] = {}
    for node in live_nodes:
        for counter, value in node.gossip.stats().items():
            gossip[counter] = gossip.get(counter, 0) + value
    duplicates = gossip.get("duplicates", 0)
    deliveries = gossip.get("delivered", 0)
    rejected: dict[str, int] = {}
    for node in live_nodes:
        for reason, count in (node.rejected or {}).items():
            rejected[reason] = rejected.get(reason, 0) + count
    sent = sim.sent_by_node
    origins = sorted({record.origin for record in records})
    overlay = None
    if not isinstance(scenario.node.membership, FullMembershipConfig):
        shot = snapshot(sim)
        sizes = shot.component_sizes()
        overlay = {
            "view_mean": rounded(
                sum(len(v) for v in shot.views.values()) / max(1, len(shot.views))
            ),
            "in_degree_std": rounded(shot.in_degree_std()),
            "clustering_coefficient": rounded(shot.clustering_coefficient()),
            "components": len(sizes),
            "largest_component_share": rounded(sizes[0] / len(shot.views)) if sizes else None,
            "dead_links": shot.dead_links(),
        }
    return {
        "scenario": scenario.name,
        "gridmesh_version": __version__,
        "seed": seed,
        "duration_s": scenario.simulation.duration_s,
        "wire_fidelity": scenario.simulation.wire_fidelity,
        "nodes": node_count,
        "live_nodes": len(live),
        "broadcasts": len(records),
        "delivered": delivered_total,
        "delivery_ratio": rounded(delivered_total / targets_total) if targets_total else None,
        "latency_s": percentiles(all_latencies),
        "latency_cdf_s": cdf(all_latencies),
        "messages_sent": sim.messages_sent,
        "bytes_sent": sim.bytes_sent,
        "messages_per_node": {"mean": rounded(sim.messages_sent / node_count), "max": max(sent)},
        "messages_per_node_cdf": cdf(sent),
        "origin_messages_sent": sum(sent[origin - 1] for origin in origins),
        "origin_bytes_sent": sum(sim.bytes_by_node[origin - 1] for origin in origins),
        "busiest_node": {
            "messages_sent": max(sent),
            "bytes_sent": max(sim.bytes_by_node),
        },
        "duplicates": duplicates,
        "duplicates_per_delivery": rounded(duplicates / deliveries) if deliveries else None,
        "dissemination": {"mode": scenario.node.gossip.mode, **dict(sorted(gossip.items()))},
        "rejected": dict(sorted(rejected.items())),
        "security": _security_report(scenario, live_nodes),
        "network": {
            "delivered": sim.messages_delivered,
            "lost": sim.messages_lost,
            "partitioned": sim.messages_partitioned,
            "to_down_nodes": sim.messages_to_down_nodes,
            "oversized": sim.messages_oversized,
            "unroutable": sim.messages_unroutable,
        },
        "events": sim.events_processed,
        "overlay": overlay,
        "per_broadcast": per_broadcast,
    }


def _stress(
    sim: Simulator, topology: RouterTopology | None, record: _BroadcastRecord
) -> dict[str, object]:
    if topology is None or sim.trace is None or record.message_id is None:
        return {}
    stress = topology.stress(sim.trace, (record.origin, record.message_id))
    return {"link_stress": {**stress.model_dump(), "truncated": sim.trace.truncated}}
