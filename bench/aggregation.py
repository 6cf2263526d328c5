"""Aggregation benchmarks: push-sum convergence at 10^5 nodes.

    .venv/bin/python bench/aggregation.py pushsum                  # 10^5 nodes, 35 rounds
    .venv/bin/python bench/aggregation.py pushsum --nodes 2000     # a quick look

``pushsum``: static full membership, 5-50 ms links (``--loss`` per message),
one round per second. Node 1 starts a ``mean`` and a ``sum`` of each node's
reading (uniform in 0..100), node 2 a ``size``, all at t = 1 s; after each
round the relative error of every node's estimate is measured against the
truth. The acceptance (DESIGN.md): every estimate within 1% after 25 rounds
and within 0.1% after 35. Prints one line per round (worst node, 99th
percentile, nodes with no value yet) and, with ``--out``, writes the rows as
JSON. A 10^5-node run sends about 2 x 10^5 messages per estimate and round:
expect tens of minutes on a busy machine and a few GiB of memory.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.aggregation import PushSumConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import LinkClass, NetworkConfig, Simulator, UniformLatency

START_S = 1.0


def pushsum_run(
    nodes: int, rounds: int, seed: int, *, loss: float, variant: str, functions: list[str]
) -> dict[str, Any]:
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.05), loss=loss)
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, nodes + 1))
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pushsum=PushSumConfig(rounds=rounds, variant=variant),  # type: ignore[arg-type]
    )
    rng = random.Random(seed)
    readings = [rng.random() * 100.0 for _ in range(nodes)]

    def make(node_id: int) -> Node:
        node = Node(node_id, transport=sim, rng=sim.node_rng, config=config, directory=directory)
        value = readings[node_id - 1]
        node.set_reading("kwh", lambda now: value)
        return node

    sim.add_nodes(nodes, make)
    total = math.fsum(readings)
    truth = {"mean": total / nodes, "sum": total, "size": float(nodes)}
    started: dict[str, int] = {}

    def begin(now: float) -> None:
        for function in functions:
            initiator = sim.node(2 if function == "size" else 1)
            assert initiator is not None
            reading = "" if function == "size" else "kwh"
            started[function] = initiator.start_estimate(function, reading, now=now)

    sim.schedule(START_S, begin)
    rows: list[dict[str, Any]] = []
    wall = time.perf_counter()
    for round_number in range(1, rounds + 1):
        sim.run(START_S + round_number)
        row: dict[str, Any] = {"round": round_number}
        for function, estimate_id in started.items():
            errors = []
            for node_id in range(1, nodes + 1):
                node = sim.node(node_id)
                estimate = None if node is None else node.estimate(estimate_id)
                value = None if estimate is None else estimate.value
                errors.append(math.inf if value is None else abs(value / truth[function] - 1))
            errors.sort()
            row[function] = {
                "worst": errors[-1],
                "p99": errors[min(nodes - 1, int(0.99 * nodes))],
                "no_value": sum(1 for e in errors if e == math.inf),
            }
        rows.append(row)
        cells = "  ".join(
            f"{f}: worst {c['worst']:.2e} p99 {c['p99']:.2e} none {c['no_value']}"
            for f, c in row.items()
            if f != "round"
        )
        print(f"round {round_number:3d}  {cells}  ({time.perf_counter() - wall:.0f} s)", flush=True)
    return {
        "nodes": nodes,
        "rounds": rounds,
        "seed": seed,
        "loss": loss,
        "variant": variant,
        "messages_sent": sim.messages_sent,
        "messages_lost": sim.messages_lost,
        "wall_s": round(time.perf_counter() - wall, 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["pushsum"])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=35)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--variant", choices=["flow", "push"], default="flow")
    parser.add_argument("--functions", default="mean,sum,size")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    functions = [f for f in args.functions.split(",") if f]
    result = pushsum_run(
        args.nodes,
        args.rounds,
        args.seed,
        loss=args.loss,
        variant=args.variant,
        functions=functions,
    )
    result["version"] = __version__
    result["python"] = platform.python_version()
    summary = {k: v for k, v in result.items() if k != "rows"}
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
