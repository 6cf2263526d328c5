"""Membership overlays at 10^4 nodes: uniformity, self-healing, connectivity, churn.

The acceptance experiments of the membership issue, on the simulator running
the real protocol code. Every run is seeded; results go to stdout and to
``bench/results/membership-<experiment>.json``.

    .venv/bin/python bench/membership.py uniformity     # Cyclon, star and chain bootstrap
    .venv/bin/python bench/membership.py healing        # kill 50%: dead links over time
    .venv/bin/python bench/membership.py connectivity   # kill 90% / 95%, 100 seeds
    .venv/bin/python bench/membership.py churn          # 1% leave + 1% join per round
    .venv/bin/python bench/membership.py all

A *round* is one period of the protocol: 5 s for Cyclon and Newscast (their
default shuffle and exchange periods), 1 s for HyParView (its probe period).
The network is the simulator's default (LAN
1-5 ms inside domains of 100 nodes, WAN log-normal with a 40 ms median), with
no loss. ``--nodes``, ``--seeds`` and ``--workers`` scale the experiments
down for a quick look; the acceptance figures use the defaults.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import CyclonConfig, HyParViewConfig, NewscastConfig
from gridmesh.sim import Simulator, snapshot, uniformity_test

RESULTS = Path(__file__).resolve().parent / "results"
MembershipConfig = CyclonConfig | NewscastConfig | HyParViewConfig
PROTOCOLS: dict[str, MembershipConfig] = {
    "cyclon": CyclonConfig(view_size=20, shuffle_length=8),
    "newscast": NewscastConfig(cache_size=20),
    "hyparview": HyParViewConfig(),
}
ROUND_S = {
    "cyclon": CyclonConfig().shuffle_interval_s,
    "newscast": NewscastConfig().exchange_interval_s,
    "hyparview": HyParViewConfig().probe_interval_s,
}
#: Millions of long-lived objects: collect the young generation less often.
GC_THRESHOLDS = (100_000, 50, 100)
#: HyParView nodes join over this many seconds (its joins are walks, not shuffles).
JOIN_SPREAD_S = 10.0
#: Virtual seconds before a failure: joins done, passive views full (measured).
WARMUP_S = {
    "cyclon": 30 * ROUND_S["cyclon"],
    "newscast": 30 * ROUND_S["newscast"],
    "hyparview": 20.0,
}


def build(
    nodes: int,
    protocol: str,
    *,
    seed: int,
    contact: str = "random",
    spread_s: float = 0.0,
) -> Simulator:
    """``nodes`` nodes running ``protocol``; node i (> 1) first knows one contact.

    ``contact``: "first" (a star around node 1), "previous" (a chain) or
    "random" (a random earlier node). Node i starts at spread_s * (i-1)/nodes.
    """
    sim = Simulator(seed=seed)
    config = NodeConfig(membership=PROTOCOLS[protocol])
    rng = random.Random(f"bootstrap:{seed}")
    contacts = [0, 0]
    for node_id in range(2, nodes + 1):
        if contact == "first":
            contacts.append(1)
        elif contact == "previous":
            contacts.append(node_id - 1)
        else:
            contacts.append(1 + int(rng.random() * (node_id - 1)))

    def make(node_id: int) -> Node:
        known = contacts[node_id] if node_id < len(contacts) else 0
        seeds = (Peer(known, str(known)),) if known else ()
        return Node(
            node_id,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(node_id),
            seeds=seeds,
        )

    for node_id in range(1, nodes + 1):
        sim.add_nodes(1, make, start_at=spread_s * (node_id - 1) / nodes)
    return sim


def kill(sim: Simulator, fraction: float, at: float, seed: int) -> list[int]:
    """Crash ``fraction`` of the nodes, chosen by ``seed``, all at once."""
    rng = random.Random(f"kill:{seed}:{fraction}")
    victims = sorted(rng.sample(range(1, sim.node_count + 1), round(fraction * sim.node_count)))
    for node_id in victims:
        sim.crash(node_id, at)
    return victims


# -- uniformity --------------------------------------------------------------


def uniformity(nodes: int, seed: int, rounds: int, samplings: int, gap: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for bootstrap, contact in (("star", "first"), ("chain", "previous")):
        started = time.perf_counter()
        sim = build(nodes, "cyclon", seed=seed, contact=contact)
        period = ROUND_S["cyclon"]
        sim.run(rounds * period)
        shot = snapshot(sim)
        picker = random.Random(f"samples:{seed}")
        samples: list[int] = []
        for k in range(samplings):  # one peer per node, `gap` rounds apart
            sim.run((rounds + (k + 1) * gap) * period)
            for view in snapshot(sim).views.values():
                if view:
                    samples.append(view[int(picker.random() * len(view))])
        test = uniformity_test(samples, shot.live)
        results[bootstrap] = {
            "rounds": rounds,
            "in_degree_std": round(shot.in_degree_std(), 4),
            "in_degree_mean": round(statistics.fmean(shot.in_degrees()), 4),
            "clustering_coefficient": round(shot.clustering_coefficient(), 6),
            "view_mean": round(statistics.fmean(len(v) for v in shot.views.values()), 4),
            "components": len(shot.component_sizes()),
            "chi_square": {
                "samples": test.samples,
                "bins": test.bins,
                "gap_rounds": gap,
                "statistic": round(test.statistic, 2),
                "p_value": round(test.p_value, 6),
                "rejects_uniformity_at_1pct": test.rejects(0.01),
            },
            "messages": sim.messages_sent,
            "wall_s": round(time.perf_counter() - started, 1),
        }
        row = results[bootstrap]
        print(
            f"  {bootstrap:5}: in-degree std {row['in_degree_std']:.3f} (target <= 1.6), "
            f"clustering {row['clustering_coefficient']:.5f} (<= 0.01), chi-square p "
            f"{test.p_value:.4f} over {test.samples:,} samples "
            f"({'rejects' if test.rejects(0.01) else 'does not reject'} at 1%), "
            f"{row['wall_s']} s",
            flush=True,
        )
    return results


# -- self-healing ------------------------------------------------------------


def healing(nodes: int, seed: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    targets = {"cyclon": 40, "newscast": 20}
    for protocol in ("cyclon", "newscast", "hyparview"):
        started = time.perf_counter()
        period = ROUND_S[protocol]
        spread = JOIN_SPREAD_S if protocol == "hyparview" else 0.0
        sim = build(nodes, protocol, seed=seed, spread_s=spread)
        at = WARMUP_S[protocol]
        kill(sim, 0.5, at, seed)
        sim.run(at)
        curve = []
        for r in range(1, rounds + 1):
            sim.run(at + r * period)
            curve.append(snapshot(sim).dead_links())
        clean = next((r for r, dead in enumerate(curve, start=1) if dead == 0), None)
        results[protocol] = {
            "dead_links_per_round": curve,
            "first_round_without_dead_links": clean,
            "target_rounds": targets.get(protocol),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        print(
            f"  {protocol:9}: dead links after the kill {curve[0]:,} -> 0 at round {clean} "
            f"(target {targets.get(protocol, '-')}); curve {curve[:12]}...",
            flush=True,
        )
    return results


# -- connectivity after massive failure ----------------------------------------


def _connectivity_run(task: tuple[str, int, tuple[float, ...], int]) -> list[dict[str, Any]]:
    """One overlay per seed, warmed up once; each failure fraction on its own copy.

    The copies are forked processes (a simulator holds closures, so it cannot be
    pickled): the warm-up is two thirds of a HyParView run, and sharing it saves a
    third of the bench. The last fraction runs in this process.
    """
    protocol, seed, fractions, nodes = task
    spread = JOIN_SPREAD_S if protocol == "hyparview" else 0.0
    sim = build(nodes, protocol, seed=seed, spread_s=spread)
    at = WARMUP_S[protocol]
    sim.run(at)
    gc.freeze()  # the warm overlay: not walked by the collector again, nor copied by forks
    results = []
    for index, fraction in enumerate(fractions):
        if index == len(fractions) - 1:
            results.append(_after_failure(sim, protocol, seed, fraction, at))
            break
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the copy: fail it, report, and leave without cleanup
            os.close(read)
            try:
                with os.fdopen(write, "wb") as out:
                    out.write(pickle.dumps(_after_failure(sim, protocol, seed, fraction, at)))
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as answer:
            data = answer.read()
        os.waitpid(pid, 0)
        if not data:
            raise RuntimeError(f"{protocol} seed {seed} at {fraction}: the forked run failed")
        results.append(pickle.loads(data))
    return results


def _after_failure(
    sim: Simulator, protocol: str, seed: int, fraction: float, at: float
) -> dict[str, Any]:
    """Kill ``fraction`` of the nodes at ``at`` (now) and follow 10 rounds."""
    period = ROUND_S[protocol]
    kill(sim, fraction, at, seed)
    shares, counts = [], []
    for r in range(1, 11):
        sim.run(at + r * period)
        sizes = snapshot(sim).component_sizes()
        survivors = sum(sizes)
        shares.append(round(sizes[0] / survivors, 6))
        counts.append(len(sizes))
    one = next((r for r, c in enumerate(counts, start=1) if c == 1), None)
    return {
        "protocol": protocol,
        "seed": seed,
        "killed": fraction,
        "largest_share_per_round": shares,
        "components_per_round": counts,
        "first_round_connected": one,
    }


def connectivity(nodes: int, seeds: int, compare_seeds: int, workers: int) -> dict[str, Any]:
    fractions = (0.9, 0.95)
    tasks = [("hyparview", s, fractions, nodes) for s in range(1, seeds + 1)]
    tasks += [
        (p, s, fractions, nodes)
        for p in ("cyclon", "newscast")
        for s in range(1, compare_seeds + 1)
    ]
    started = time.perf_counter()
    runs = [run for pair in _map(_connectivity_run, tasks, workers) for run in pair]
    summary: dict[str, Any] = {}
    for protocol in ("hyparview", "cyclon", "newscast"):
        for fraction in (0.9, 0.95):
            mine = [r for r in runs if r["protocol"] == protocol and r["killed"] == fraction]
            if not mine:
                continue
            final = [r["largest_share_per_round"][-1] for r in mine]
            key = f"{protocol}@{int(fraction * 100)}%"
            summary[key] = {
                "runs": len(mine),
                "connected_at_round_10": sum(r["components_per_round"][-1] == 1 for r in mine),
                "runs_with_99pct_of_survivors_connected": sum(s >= 0.99 for s in final),
                "largest_share_min": min(final),
                "largest_share_median": statistics.median(final),
                "largest_share_mean_per_round": [
                    round(statistics.fmean(r["largest_share_per_round"][i] for r in mine), 6)
                    for i in range(10)
                ],
            }
            row = summary[key]
            print(
                f"  {key:15} {row['runs']:3} runs: one component at round 10 in "
                f"{row['connected_at_round_10']}, >= 99% of survivors connected in "
                f"{row['runs_with_99pct_of_survivors_connected']}; largest component "
                f"min {row['largest_share_min']:.4f}, median {row['largest_share_median']:.4f}",
                flush=True,
            )
    return {"summary": summary, "runs": runs, "wall_s": round(time.perf_counter() - started, 1)}


# -- churn ---------------------------------------------------------------------


def churn(
    nodes: int, seed: int, rounds: int, rate: float, protocols: Sequence[str]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for protocol in protocols:
        started = time.perf_counter()
        period = ROUND_S[protocol]
        spread = JOIN_SPREAD_S if protocol == "hyparview" else 0.0
        sim = build(nodes, protocol, seed=seed, spread_s=spread)
        rng = random.Random(f"churn:{seed}")
        contact_of: dict[int, int] = {}
        make = _joiner_factory(sim, NodeConfig(membership=PROTOCOLS[protocol]), contact_of)

        at = WARMUP_S[protocol]
        sim.run(at)
        joined_at: dict[int, int] = {}
        appeared_after: dict[int, int] = {}
        cut_off: list[dict[str, Any]] = []
        components, shares = [], []
        for r in range(1, rounds + 1):
            live = [i for i in range(1, sim.node_count + 1) if sim.is_up(i)]
            changes = max(1, round(rate * len(live)))
            leaving = rng.sample(live, changes)
            for node_id in leaving:
                sim.crash(node_id, at + (r - 1) * period)
            survivors = sorted(set(live) - set(leaving))  # a joiner's contact must be alive
            first_new = sim.node_count + 1
            for offset in range(changes):
                contact_of[first_new + offset] = survivors[int(rng.random() * len(survivors))]
            new_ids = sim.add_nodes(changes, make, start_at=at + (r - 1) * period)
            for node_id in new_ids:
                joined_at[node_id] = r
            sim.run(at + r * period)
            shot = snapshot(sim)
            parts = shot.components()
            sizes = [len(part) for part in parts]
            components.append(len(sizes))
            shares.append(sizes[0] / sum(sizes))
            for part in parts[1:4]:  # who was cut off, for the record (at most 3 parts)
                cut_off.append(
                    {
                        "round": r,
                        "nodes": part[:10],
                        "joined_in_round": [joined_at.get(n) for n in part[:10]],
                        "views": [list(shot.views[n]) for n in part[:10]],
                    }
                )
            listed = {t for view in shot.views.values() for t in view}
            for node_id, when in joined_at.items():
                if node_id not in appeared_after and node_id in listed and sim.is_up(node_id):
                    appeared_after[node_id] = r - when + 1
        waits = sorted(appeared_after.values())
        never = [n for n in joined_at if n not in appeared_after and sim.is_up(n)]
        results[protocol] = {
            "rounds": rounds,
            "leave_and_join_per_round": rate,
            "max_components": max(components),
            "rounds_partitioned": sum(c > 1 for c in components),
            "largest_share_min": round(min(shares), 6),
            "joined": len(joined_at),
            "rounds_until_listed": {
                "p50": _pct(waits, 50),
                "p90": _pct(waits, 90),
                "p99": _pct(waits, 99),
                "max": waits[-1] if waits else None,
            },
            "joined_alive_never_listed": len(never),
            "cut_off": cut_off,
            "messages": sim.messages_sent,
            "wall_s": round(time.perf_counter() - started, 1),
        }
        row = results[protocol]
        print(
            f"  {protocol:9}: rounds partitioned {row['rounds_partitioned']}/{rounds} "
            f"(max components {row['max_components']}, largest share min "
            f"{row['largest_share_min']:.4f}); a joined node is listed by others after "
            f"{row['rounds_until_listed']} rounds; never listed {len(never)}; "
            f"{row['wall_s']} s",
            flush=True,
        )
    return results


def _joiner_factory(
    sim: Simulator, config: NodeConfig, contact_of: dict[int, int]
) -> Callable[[int], Node]:
    """Builds nodes that join through the contact ``contact_of`` names for them."""

    def make(node_id: int) -> Node:
        known = contact_of[node_id]
        return Node(
            node_id,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(node_id),
            seeds=(Peer(known, str(known)),),
        )

    return make


def _pct(values: Sequence[int], p: float) -> int | None:
    if not values:
        return None
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def _map(function: Callable[[Any], Any], tasks: list[Any], workers: int) -> list[Any]:
    if workers <= 1:
        return [function(task) for task in tasks]
    with Pool(workers) as pool:
        return pool.map(function, tasks, chunksize=1)


def _write(name: str, payload: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = {
        "gridmesh_version": __version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "arguments": {k: v for k, v in vars(args).items() if k != "handler"},
    }
    path = RESULTS / f"membership-{name}.json"
    path.write_text(json.dumps(header | {"results": payload}, indent=1) + "\n")
    print(f"  -> {path.relative_to(RESULTS.parent.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "experiment", choices=["uniformity", "healing", "connectivity", "churn", "all"]
    )
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=100, help="connectivity: HyParView runs")
    parser.add_argument(
        "--compare-seeds", type=int, default=10, help="connectivity: Cyclon/Newscast runs"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--churn-rounds", type=int, default=200)
    parser.add_argument(
        "--churn-protocols",
        default="hyparview,cyclon",
        help="churn: which overlays, comma-separated (hyparview, cyclon, newscast)",
    )
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    chosen = (
        ["uniformity", "healing", "connectivity", "churn"]
        if args.experiment == "all"
        else [args.experiment]
    )
    python = sys.version.split()[0]
    print(f"gridmesh {__version__} membership benchmark, {args.nodes:,} nodes, python {python}")
    for name in chosen:
        print(f"{name}:", flush=True)
        if name == "uniformity":
            payload = uniformity(args.nodes, args.seed, rounds=50, samplings=20, gap=5)
        elif name == "healing":
            payload = healing(args.nodes, args.seed, rounds=40)
        elif name == "connectivity":
            payload = connectivity(args.nodes, args.seeds, args.compare_seeds, args.workers)
        else:
            protocols = [p for p in args.churn_protocols.split(",") if p]
            unknown = sorted(set(protocols) - set(PROTOCOLS))
            if unknown:
                parser.error(f"--churn-protocols: unknown {', '.join(unknown)}")
            payload = churn(args.nodes, args.seed, args.churn_rounds, 0.01, protocols)
        _write(name, payload, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
