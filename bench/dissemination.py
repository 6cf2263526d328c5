"""Dissemination under faults (10^5 nodes) and tree broadcast (10^4 nodes).

    .venv/bin/python bench/dissemination.py faults   # push vs push-pull + anti-entropy
    .venv/bin/python bench/dissemination.py tree     # Plumtree vs push over HyParView
    .venv/bin/python bench/dissemination.py all

``faults``: static full membership (a DSO's meter list); 10% of the nodes are
down from the start, unknown to the others; every link loses 10% of messages;
the origin broadcasts once and the run lasts ``--duration`` virtual seconds.
The same seed gives both modes the same crashed nodes and the same network.

``tree``: HyParView overlay (joins spread over 10 s, 30 s warm-up), then
``--broadcasts`` broadcasts from random origins one second apart, first with
no fault, then under 10% loss and with 5% of the nodes crashed halfway
(never an origin). Duplicates per delivered message are counted per broadcast;
"steady state" is every broadcast after the first ``--warm`` ones. Push gossip
over the same overlay (each relay sends to its whole active view but the
sender) runs the same script for comparison.

Results go to bench/results/dissemination-*.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, HyParViewConfig, PeerDirectory
from gridmesh.sim import LinkClass, LogNormalLatency, NetworkConfig, Simulator, UniformLatency

RESULTS = Path(__file__).resolve().parent / "results"


def network(loss: float) -> NetworkConfig:
    return NetworkConfig(
        lan=LinkClass(latency=UniformLatency(low_s=0.002, high_s=0.010), loss=loss),
        wan=LinkClass(latency=LogNormalLatency(median_s=0.05, sigma=0.5, max_s=2.0), loss=loss),
        domain_size=100,
    )


# -- faults at 10^5 -------------------------------------------------------------


def faults_run(mode: str, nodes: int, seed: int, duration_s: float) -> dict[str, Any]:
    gossip = GossipConfig(
        mode=mode,  # type: ignore[arg-type]
        fanout=8,
        hops=12,
        pull_interval_s=1.0,
        anti_entropy_interval_s=5.0 if mode == "push-pull" else 0.0,
    )
    config = NodeConfig(gossip=gossip, membership=FullMembershipConfig(exchange_interval_s=0))
    sim = Simulator(seed=seed, network=network(0.1))
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, nodes + 1))
    sim.add_nodes(
        nodes,
        lambda i: Node(i, transport=sim, rng=sim.node_rng, config=config, directory=directory),
    )
    crashed = random.Random(f"crashed:{seed}").sample(range(2, nodes + 1), nodes // 10)
    for node_id in crashed:
        sim.crash(node_id, 0.0)
    latency = [math.nan] * (nodes + 1)
    at = 1.0

    def on_deliver(node_id: int, delivery: Delivery) -> None:
        latency[node_id] = delivery.received_at - at

    sim.on_deliver = on_deliver

    def go(now: float) -> None:
        origin = sim.node(1)
        assert origin is not None
        origin.broadcast({"price_eur_kwh": 0.081}, topic="TARIFF/RTP/price", now=now)

    sim.schedule(at, go)
    started = time.perf_counter()
    curve = []
    live = [i for i in range(2, nodes + 1) if i not in set(crashed)]
    for second in range(1, int(duration_s) + 1):
        sim.run(float(second))
        curve.append(sum(1 for i in live if not math.isnan(latency[i])))
    reached = sorted(latency[i] for i in live if not math.isnan(latency[i]))
    return {
        "mode": mode,
        "nodes": nodes,
        "live_targets": len(live),
        "reached": len(reached),
        "delivery_ratio": len(reached) / len(live),
        "missed": len(live) - len(reached),
        "reached_by_second": curve,
        "latency_s": {
            "p50": _pct(reached, 50),
            "p99": _pct(reached, 99),
            "max": reached[-1] if reached else None,
        },
        "messages_sent": sim.messages_sent,
        "messages_per_live_node": sim.messages_sent / (len(live) + 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib_process": round(_peak_rss_mib(), 1),
    }


def faults(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for mode in ("push", "push-pull"):
        row = faults_run(mode, args.nodes_faults, args.seed, args.duration)
        results[mode] = row
        print(
            f"  {mode:9}: reached {row['reached']:,} of {row['live_targets']:,} live nodes "
            f"({100 * row['delivery_ratio']:.4f}%), missed {row['missed']}, latency p50 "
            f"{row['latency_s']['p50']:.3f} s p99 {row['latency_s']['p99']:.3f} s, "
            f"{row['messages_per_live_node']:.1f} messages per node, {row['wall_s']} s wall",
            flush=True,
        )
    return results


# -- tree at 10^4 ---------------------------------------------------------------


def tree_run(
    mode: str, nodes: int, seed: int, broadcasts: int, faulty: bool, *, request_timeout_s: float
) -> dict[str, Any]:
    gossip = GossipConfig(
        mode=mode,  # type: ignore[arg-type]
        fanout=64,
        hops=64,
        request_timeout_s=request_timeout_s,
    )
    config = NodeConfig(gossip=gossip, membership=HyParViewConfig())
    sim = Simulator(seed=seed, network=network(0.1 if faulty else 0.0))
    rng = random.Random(f"tree:{seed}")
    contacts = [0, 0] + [1 + int(rng.random() * (i - 1)) for i in range(2, nodes + 1)]

    def make(node_id: int) -> Node:
        known = contacts[node_id]
        seeds = (Peer(known, str(known)),) if known else ()
        return Node(node_id, transport=sim, rng=sim.node_rng, config=config, seeds=seeds)

    for node_id in range(1, nodes + 1):
        sim.add_nodes(1, make, start_at=10.0 * (node_id - 1) / nodes)
    warmup = 30.0
    sim.run(warmup)
    origins = [rng.randrange(1, nodes + 1) for _ in range(broadcasts)]
    crash_at = warmup + broadcasts / 2
    crashed: set[int] = set()
    if faulty:
        candidates = [i for i in range(1, nodes + 1) if i not in set(origins)]
        crashed = set(rng.sample(candidates, nodes // 20))
        for node_id in crashed:
            sim.crash(node_id, crash_at)
    delivered: dict[int, list[int]] = {}
    sim.on_deliver = lambda node_id, d: delivered.setdefault(d.message_id, []).append(node_id)
    rows = []
    started = time.perf_counter()

    def live_nodes() -> list[Node]:
        return [n for i in range(1, nodes + 1) if (n := sim.node(i)) is not None]

    def duplicates_now() -> int:
        total = 0
        for node_id in range(1, nodes + 1):
            node = sim.node(node_id)
            if node is not None:
                total += node.gossip.duplicates
        return total

    for k, origin in enumerate(origins):
        at = warmup + k
        before = duplicates_now()
        ids: list[int] = []

        def go(now: float, origin: int = origin, ids: list[int] = ids, k: int = k) -> None:
            node = sim.node(origin)
            if node is not None:
                ids.append(node.broadcast(k, topic="DR/event", now=now))

        sim.schedule(at, go)
        sim.run(at + 1.0)
        # Duplicates of this broadcast are those counted in its second (a later
        # broadcast starts only after it); the few late copies fall in the next.
        duplicates = duplicates_now() - before
        rows.append(
            {
                "origin": origin,
                "at_s": at,
                "after_crash": faulty and at >= crash_at,
                "duplicates": duplicates,
                "message_id": ids[0] if ids else None,
            }
        )
    sim.run(warmup + broadcasts + 10.0)  # stragglers (grafts, retries) come in
    # Targets: the nodes up at the end (crashes are for good), the origin excepted;
    # a node that delivered and crashed later counts for neither side.
    for row in rows:
        row["live_targets"] = sum(1 for i in range(1, nodes + 1) if sim.is_up(i)) - 1
        got = sum(1 for i in delivered.get(row.pop("message_id") or -1, []) if sim.is_up(i))
        row["delivered"] = got
        row["delivery_ratio"] = got / row["live_targets"]
        row["duplicates_per_delivery"] = row["duplicates"] / got if got else None
    stats: dict[str, int] = {}
    for node in live_nodes():
        for key, value in node.gossip.stats().items():
            stats[key] = stats.get(key, 0) + value
    return {
        "mode": mode,
        "faulty": faulty,
        "nodes": nodes,
        "crashed": len(crashed),
        "broadcasts": rows,
        "counters": stats,
        "messages_sent": sim.messages_sent,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def tree(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for faulty in (False, True):
        for mode in args.modes.split(","):
            run = tree_run(
                mode,
                args.nodes_tree,
                args.seed,
                args.broadcasts,
                faulty,
                request_timeout_s=args.request_timeout,
            )
            steady = run["broadcasts"][args.warm :]
            dpd = [r["duplicates_per_delivery"] for r in steady if r["duplicates_per_delivery"]]
            ratio = [r["delivery_ratio"] for r in run["broadcasts"]]
            summary = {
                "steady_duplicates_per_delivery_mean": statistics.fmean(
                    r["duplicates"] for r in steady
                )
                / statistics.fmean(r["delivered"] for r in steady),
                "steady_duplicates_per_delivery_max": max(dpd) if dpd else 0.0,
                "first_duplicates_per_delivery": run["broadcasts"][0]["duplicates_per_delivery"],
                "delivery_ratio_min": min(ratio),
                "delivery_ratio_mean": statistics.fmean(ratio),
                "all_live_reached": sum(
                    r["delivered"] == r["live_targets"] for r in run["broadcasts"]
                ),
            }
            run["summary"] = summary
            key = f"{mode}{'-faulty' if faulty else ''}"
            results[key] = run
            steady_mean = summary["steady_duplicates_per_delivery_mean"]
            print(
                f"  {key:13}: steady duplicates/delivery {steady_mean:.4f} "
                f"(max {summary['steady_duplicates_per_delivery_max']:.4f}, first broadcast "
                f"{summary['first_duplicates_per_delivery']:.3f}); delivery ratio mean "
                f"{summary['delivery_ratio_mean']:.5f} min {summary['delivery_ratio_min']:.5f}; "
                f"{summary['all_live_reached']}/{len(ratio)} reached every live node; "
                f"{run['messages_sent']:,} messages, {run['wall_s']} s wall",
                flush=True,
            )
    return results


# -- plumbing -------------------------------------------------------------------


def _peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[max(0, math.ceil(p / 100 * len(values)) - 1)], 4)


def _write(name: str, payload: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = {
        "gridmesh_version": __version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "arguments": vars(args),
    }
    path = RESULTS / f"dissemination-{name}.json"
    path.write_text(json.dumps(header | {"results": payload}, indent=1) + "\n")
    print(f"  -> {path.relative_to(RESULTS.parent.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=["faults", "tree", "all"])
    parser.add_argument("--nodes-faults", type=int, default=100_000)
    parser.add_argument("--nodes-tree", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=30.0, help="faults: virtual seconds")
    parser.add_argument("--broadcasts", type=int, default=40, help="tree: broadcasts per run")
    parser.add_argument("--warm", type=int, default=5, help="tree: broadcasts before steady state")
    parser.add_argument("--modes", default="tree,push", help="tree: modes to run, comma-separated")
    parser.add_argument(
        "--request-timeout", type=float, default=2.0, help="tree: seconds before a graft"
    )
    parser.add_argument("--tag", default="", help="suffix for the results file name")
    args = parser.parse_args()
    print(
        f"gridmesh {__version__} dissemination benchmark, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus"
    )
    for name in ("faults", "tree") if args.experiment == "all" else (args.experiment,):
        print(f"{name}:", flush=True)
        payload = faults(args) if name == "faults" else tree(args)
        _write(name + args.tag, payload, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
