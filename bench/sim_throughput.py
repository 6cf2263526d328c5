"""Simulator throughput and memory: real protocol code at 10^4 and 10^5 nodes.

What is measured
----------------
* **simulated messages per second**: messages the nodes sent (each one is a
  send, a network decision and, unless lost, a delivery event and a protocol
  handler call) divided by the wall time of ``Simulator.run`` alone (building
  the nodes is excluded). The simulator is single-threaded, so this is per core.
  Median of ``--repeats`` runs, with min and max.
* **memory per node**: bytes allocated (tracemalloc) for the whole simulation —
  nodes, their protocol state, the shared directory — divided by the node
  count, once right after construction and once after the broadcasts (seen
  caches filled). Traced in a separate run, because tracing slows Python down.

Workload: static full membership, push gossip infect-and-die with fanout 10
and hops 12, LAN uniform 1-5 ms within domains of 100 nodes, WAN log-normal
(median 40 ms, sigma 0.4) between them, 2% loss; broadcasts from node 1, two
seconds apart. Targets (shared/DESIGN.md): >= 300k simulated messages per
second per core, <= 2 KiB per simulated node.

    .venv/bin/python bench/sim_throughput.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from _machine import cpu_model
from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.sim import LinkClass, LogNormalLatency, NetworkConfig, Simulator, UniformLatency

TARGET_MESSAGES_PER_S = 300_000
TARGET_BYTES_PER_NODE = 2048
NETWORK = NetworkConfig(
    lan=LinkClass(latency=UniformLatency(low_s=0.001, high_s=0.005), loss=0.02),
    wan=LinkClass(latency=LogNormalLatency(median_s=0.040, sigma=0.4, max_s=2.0), loss=0.02),
    domain_size=100,
)
CONFIG = NodeConfig(
    gossip=GossipConfig(fanout=10, hops=12),
    membership=FullMembershipConfig(exchange_interval_s=0),
)


def build(
    nodes: int, broadcasts: int, seed: int, wire_fidelity: bool
) -> tuple[Simulator, list[int]]:
    sim = Simulator(seed=seed, network=NETWORK, wire_fidelity=wire_fidelity)
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, nodes + 1))
    sim.add_nodes(
        nodes,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=CONFIG,
            address=sim.address_of(i),
            directory=directory,
        ),
    )
    delivered = [0]

    def count(node_id: int, delivery: object) -> None:
        delivered[0] += 1

    sim.on_deliver = count

    def fire(now: float) -> None:
        origin = sim.node(1)
        assert origin is not None
        origin.broadcast({"price_eur_kwh": 0.081}, topic="TARIFF/RTP", now=now)

    for index in range(broadcasts):
        sim.schedule(1.0 + 2.0 * index, fire)
    return sim, delivered


def timed_run(nodes: int, broadcasts: int, seed: int, wire_fidelity: bool) -> dict[str, float]:
    sim, delivered = build(nodes, broadcasts, seed, wire_fidelity)
    started = time.perf_counter()
    sim.run(2.0 * broadcasts + 10.0)
    wall_s = time.perf_counter() - started
    return {
        "wall_s": wall_s,
        "messages": sim.messages_sent,
        "events": sim.events_processed,
        "messages_per_s": sim.messages_sent / wall_s,
        "events_per_s": sim.events_processed / wall_s,
        "delivery_ratio": delivered[0] / (broadcasts * (nodes - 1)),
    }


def traced_memory(nodes: int, broadcasts: int, seed: int) -> dict[str, float]:
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        sim, _ = build(nodes, broadcasts, seed, wire_fidelity=False)
        built = tracemalloc.get_traced_memory()[0] - baseline
        sim.run(2.0 * broadcasts + 10.0)
        after = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    return {"bytes_per_node_built": built / nodes, "bytes_per_node_after_run": after / nodes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default="10000:10,100000:2", help="NODES:BROADCASTS,...")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    print(f"gridmesh {__version__} simulator benchmark")
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {cpu_model()}")
    print(f"repeats {args.repeats}, seed {args.seed}; wall time of Simulator.run only\n")
    results: list[dict[str, object]] = []
    cases = [tuple(int(x) for x in part.split(":")) for part in args.sizes.split(",")]
    for nodes, broadcasts in cases:
        for wire_fidelity in (False, True) if nodes <= 10_000 else (False,):
            runs = [
                timed_run(nodes, broadcasts, args.seed + r, wire_fidelity)
                for r in range(args.repeats)
            ]
            rates = sorted(r["messages_per_s"] for r in runs)
            row: dict[str, object] = {
                "nodes": nodes,
                "broadcasts": broadcasts,
                "wire_fidelity": wire_fidelity,
                "messages_per_run": statistics.median(r["messages"] for r in runs),
                "messages_per_s_median": statistics.median(rates),
                "messages_per_s_min": rates[0],
                "messages_per_s_max": rates[-1],
                "events_per_s_median": statistics.median(r["events_per_s"] for r in runs),
                "wall_s_median": statistics.median(r["wall_s"] for r in runs),
                "delivery_ratio_min": min(r["delivery_ratio"] for r in runs),
            }
            if not wire_fidelity:
                row.update(traced_memory(nodes, broadcasts, args.seed))
            results.append(row)
            mode = "wire-fidelity" if wire_fidelity else "objects"
            print(
                f"{nodes:>8,} nodes  {mode:<13}  {row['messages_per_run']:>10,.0f} msgs/run  "
                f"{row['messages_per_s_median']:>9,.0f} msg/s median "
                f"(min {rates[0]:,.0f}, max {rates[-1]:,.0f})  "
                f"= {row['messages_per_s_median'] / TARGET_MESSAGES_PER_S:.0%} of target"  # type: ignore[operator]
            )
            if not wire_fidelity:
                print(
                    f"{'':>8}        memory  {row['bytes_per_node_built']:,.0f} B/node built, "
                    f"{row['bytes_per_node_after_run']:,.0f} B/node after the run "
                    f"(target {TARGET_BYTES_PER_NODE:,} B)"
                )
    if args.json is not None:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
