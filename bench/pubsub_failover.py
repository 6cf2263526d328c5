"""Event Manager failover in the simulator: kill the busiest Event Manager under load.

What is measured
----------------
A flow of ``--managers`` Event Managers (default 3), ``--subscribers`` subscribers
(default 200, each on ``MEASUREMENT/#`` or on one feeder's ``MEASUREMENT/feeder-<k>/#``)
and ``--publishers`` publishers (default 10) sending 1,000 events/s in all, over links
of 5-20 ms with 1% loss. At ``t = 5 s`` the first Event Manager (the one a third of the
clients talk to) crashes; publishing goes on to ``t = 10 s``; the run ends at 20 s.
Per seed:

* **lost**: events acknowledged to their publisher that a subscriber whose filter
  matches never received (the target is 0);
* **duplicates**: copies a subscriber received again (suppressed before the
  application, at-least-once's price), and events the application saw twice (must be 0);
* **failover time**: for each client of the dead Event Manager, the time from the
  crash to its failover, and for each of its subscribers the longest silence
  between two events after the crash (events arrive every ~1-10 ms otherwise).

    .venv/bin/python bench/pubsub_failover.py [--seeds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.protocols.pubsub import Event, EventManagerRef, PubSubConfig
from gridmesh.sim import LinkClass, NetworkConfig, Simulator, UniformLatency
from gridmesh.topics import matches

CRASH_AT_S = 5.0
STOP_AT_S = 10.0
END_AT_S = 20.0
RATE_PER_S = 1000
FEEDERS = 10


def run(seed: int, managers: int, subscribers: int, publishers: int) -> dict[str, object]:
    link = LinkClass(latency=UniformLatency(low_s=0.005, high_s=0.02), loss=0.01)
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link), wire_fidelity=True)
    refs = tuple(EventManagerRef(node_id=i, address=str(i)) for i in range(1, managers + 1))
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pubsub=PubSubConfig(event_managers=refs),
    )
    count = managers + publishers + subscribers
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1))
    sim.add_nodes(
        count,
        lambda i: Node(
            i, transport=sim, rng=sim.node_rng, config=config, address=str(i), directory=directory
        ),
    )
    publisher_ids = list(range(managers + 1, managers + publishers + 1))
    subscriber_ids = list(range(managers + publishers + 1, count + 1))
    filters = {
        node_id: "MEASUREMENT/#" if index % 2 == 0 else f"MEASUREMENT/feeder-{index % FEEDERS}/#"
        for index, node_id in enumerate(subscriber_ids)
    }
    received: dict[int, list[tuple[float, tuple[int, int]]]] = {n: [] for n in subscriber_ids}
    acked: dict[tuple[int, int], str] = {}
    acked_when: dict[tuple[int, int], float] = {}

    def setup(now: float) -> None:
        for node_id in subscriber_ids:
            node = sim.node(node_id)
            assert node is not None
            node.subscribe(
                filters[node_id],
                now=now,
                on_event=lambda e, t, n=node_id: received[n].append((t, e.key)),
            )
        for node_id in publisher_ids:
            node = sim.node(node_id)
            assert node is not None

            def on_acked(events: list[Event], now: float) -> None:
                acked.update((e.key, e.topic) for e in events)
                acked_when.update((e.key, now) for e in events)

            node.pubsub.on_acked = on_acked

    sim.schedule(0.0, setup)
    interval_s = len(publisher_ids) / RATE_PER_S
    for offset, node_id in enumerate(publisher_ids):
        at = 1.0 + offset * interval_s / len(publisher_ids)
        index = 0
        while at < STOP_AT_S:

            def one(now: float, n: int = node_id, i: int = index) -> None:
                node = sim.node(n)
                if node is not None:
                    topic = f"MEASUREMENT/feeder-{i % FEEDERS}/meter-{n}/power"
                    node.publish(topic, {"kw": 1.5, "i": i}, now=now, unit="kW")

            sim.schedule(at, one)
            at += interval_s
            index += 1
    sim.crash(1, at=CRASH_AT_S)
    started = time.perf_counter()
    sim.run(until_s=END_AT_S)
    wall_s = time.perf_counter() - started

    lost = 0
    seen_twice = 0
    examples: list[dict[str, object]] = []
    for node_id in subscriber_ids:
        keys = [key for _, key in received[node_id]]
        seen_twice += len(keys) - len(set(keys))
        got = set(keys)
        missing = [
            key
            for key, topic in acked.items()
            if matches(filters[node_id], topic) and key not in got
        ]
        lost += len(missing)
        node = sim.node(node_id)
        for key in missing[: 3 if len(examples) < 12 else 0]:
            examples.append(
                {
                    "subscriber": node_id,
                    "event": list(key),
                    "acked_at": acked_when[key],
                    "failover_at": None if node is None else node.pubsub.last_failover_at,
                }
            )
    clients = [n for n in publisher_ids + subscriber_ids if (sim.node(n) is not None)]
    moved = []
    for node_id in clients:
        node = sim.node(node_id)
        assert node is not None
        if node.pubsub.last_failover_at is not None:
            moved.append(node.pubsub.last_failover_at - CRASH_AT_S)
    silences = []
    for node_id in subscriber_ids:
        node = sim.node(node_id)
        assert node is not None
        if node.pubsub.last_failover_at is None:
            continue
        times = [t for t, _ in received[node_id] if t >= CRASH_AT_S - 0.1]
        gaps = [b - a for a, b in itertools.pairwise(times) if a < STOP_AT_S]
        if gaps:
            silences.append(max(gaps))
    duplicates = 0
    for node_id in subscriber_ids:
        node = sim.node(node_id)
        assert node is not None
        duplicates += node.pubsub.counters["duplicates"]
    published = sum(
        n.pubsub.counters["published"]
        for n in (sim.node(i) for i in publisher_ids)
        if n is not None
    )
    return {
        "seed": seed,
        "published": published,
        "acked": len(acked),
        "lost": lost,
        "seen_twice_by_application": seen_twice,
        "duplicate_copies_suppressed": duplicates,
        "clients_failed_over": len(moved),
        "failover_s": {"median": statistics.median(moved), "max": max(moved)} if moved else None,
        "longest_silence_s": {"median": statistics.median(silences), "max": max(silences)}
        if silences
        else None,
        "lost_examples": examples,
        "messages": sim.messages_sent,
        "wall_s": round(wall_s, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--publishers", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("bench/results/pubsub-failover.json"))
    args = parser.parse_args()
    print(
        f"gridmesh {__version__} Event Manager failover: {args.managers} EMs, "
        f"{args.subscribers} subscribers, {args.publishers} publishers at {RATE_PER_S} events/s; "
        f"EM 1 crashes at {CRASH_AT_S} s; python {platform.python_version()}"
    )
    runs = []
    for seed in range(1, args.seeds + 1):
        result = run(seed, args.managers, args.subscribers, args.publishers)
        runs.append(result)
        failover = result["failover_s"] or {"median": 0.0, "max": 0.0}
        silence = result["longest_silence_s"] or {"median": 0.0, "max": 0.0}
        print(
            f"  seed {seed}: acked {result['acked']}/{result['published']}, lost {result['lost']}, "
            f"app duplicates {result['seen_twice_by_application']}, "
            f"suppressed copies {result['duplicate_copies_suppressed']}, "
            f"{result['clients_failed_over']} clients failed over "
            f"(median {failover['median']:.2f} s, max {failover['max']:.2f} s), "  # type: ignore[index]
            f"longest silence median {silence['median']:.2f} s "  # type: ignore[index]
            f"max {silence['max']:.2f} s; {result['wall_s']} s"  # type: ignore[index]
        )
    report = {
        "machine": machine_info(),
        "gridmesh": __version__,
        "setup": vars(args) | {"json": str(args.json), "rate_per_s": RATE_PER_S},
        "runs": runs,
        "lost_total": sum(int(r["lost"]) for r in runs),  # type: ignore[call-overload]
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"lost in all: {report['lost_total']}; written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
