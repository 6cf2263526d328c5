"""Topic matching at 10^6 subscriptions: gridmesh.topics.TopicTrie against brute force.

What is measured
----------------
* **build**: seconds to add every subscription to an empty ``TopicTrie``
  (validation included); the subscriptions are generated beforehand.
* **memory**: what tracemalloc counts for the trie built from scratch, per
  subscription, with the filter strings and key objects the trie keeps (they
  are generated inside the traced run and the generator's list is dropped).
  A separate run, because tracing slows Python down.
* **matching rate**: names matched per second, the median of ``--repeats``
  passes over the same ``--names`` names (min and max too), and the mean
  number of keys a name matched; per name class, microseconds per name.
* **speedup**: at ``--brute-subscriptions`` (10^4) the trie and brute force
  match the same ``--brute-names`` names; brute force compares the name with
  every filter, validated and split once beforehand (``topics._levels_match``,
  the comparison ``matches`` makes), so the ratio is the trie's algorithmic
  gain, not saved validation. Both must find the same keys.

Workload (seeded): 10^6 sensors, 200 regions, 2,000 substations of 10
feeders, 20 tariff models; subscriber keys are ints, four subscriptions per
subscriber on average.

  subscriptions                                   names matched
  35%  MEASUREMENT/SENSOR/<sensor>/+              60%  MEASUREMENT/SENSOR/<sensor>/<quantity>
  20%  MEASUREMENT/SENSOR/<sensor>/<quantity>     10%  DR/COMMAND/region-<r>/<device class>
  10%  +/SENSOR/<sensor>/PowerConsumption         10%  EVENT/substation-<s>/feeder-<f>/<event>
  10%  DR/COMMAND/region-<r>/#                    10%  TARIFF/model-<m>/region-<r>/<period>
  10%  EVENT/substation-<s>/feeder-<f>/#          10%  METER/<sensor>/status (no subscriber
  15%  TARIFF/model-<m>/region-<r>/+                   but the monitors)
  and 8 monitors: 4 on ``#``, 4 on ``MEASUREMENT/SENSOR/*`` (LinkSmart's ``#``)

    .venv/bin/python bench/topics.py [--subscriptions 1000000] [--names 100000]
        [--repeats 5] [--brute-subscriptions 10000] [--brute-names 1000]
        [--seed 1] [--json bench/results/topics.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import time
import tracemalloc
from pathlib import Path

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.topics import TopicTrie, _levels_match, validate_topic_filter, validate_topic_name

SENSORS = 1_000_000
REGIONS = 200
SUBSTATIONS = 2_000
FEEDERS = 10
TARIFF_MODELS = 20
SUBSCRIPTIONS_PER_KEY = 4
QUANTITIES = ["PowerConsumption", "Voltage", "Current", "Frequency", "Temperature"]
DEVICE_CLASSES = ["EV", "HVAC", "HEATPUMP", "BATTERY", "PV", "WASHER"]
EVENTS = ["TRIP", "RECLOSE", "OVERLOAD", "OUTAGE", "RESTORE"]
PERIODS = ["peak", "shoulder", "night"]
MONITORS = ["#"] * 4 + ["MEASUREMENT/SENSOR/*"] * 4


def subscriptions(count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` subscriptions ``(filter, key)`` of the documented mix."""
    rng = random.Random(seed)
    keys = max(1, count // SUBSCRIPTIONS_PER_KEY)
    made = [(text, -1 - n) for n, text in enumerate(MONITORS)]
    while len(made) < count:
        share = rng.random()
        sensor = rng.randrange(SENSORS)
        if share < 0.35:
            text = f"MEASUREMENT/SENSOR/{sensor}/+"
        elif share < 0.55:
            text = f"MEASUREMENT/SENSOR/{sensor}/{rng.choice(QUANTITIES)}"
        elif share < 0.65:
            text = f"+/SENSOR/{sensor}/PowerConsumption"
        elif share < 0.75:
            text = f"DR/COMMAND/region-{rng.randrange(REGIONS)}/#"
        elif share < 0.85:
            text = (
                f"EVENT/substation-{rng.randrange(SUBSTATIONS)}/feeder-{rng.randrange(FEEDERS)}/#"
            )
        else:
            text = f"TARIFF/model-{rng.randrange(TARIFF_MODELS)}/region-{rng.randrange(REGIONS)}/+"
        made.append((text, rng.randrange(keys)))
    return made


def names(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        share = rng.random()
        if share < 0.6:
            made.append(f"MEASUREMENT/SENSOR/{rng.randrange(SENSORS)}/{rng.choice(QUANTITIES)}")
        elif share < 0.7:
            made.append(f"DR/COMMAND/region-{rng.randrange(REGIONS)}/{rng.choice(DEVICE_CLASSES)}")
        elif share < 0.8:
            substation, feeder = rng.randrange(SUBSTATIONS), rng.randrange(FEEDERS)
            made.append(f"EVENT/substation-{substation}/feeder-{feeder}/{rng.choice(EVENTS)}")
        elif share < 0.9:
            model, region = rng.randrange(TARIFF_MODELS), rng.randrange(REGIONS)
            made.append(f"TARIFF/model-{model}/region-{region}/{rng.choice(PERIODS)}")
        else:
            made.append(f"METER/{rng.randrange(SENSORS)}/status")
    return made


def build(subs: list[tuple[str, int]]) -> TopicTrie[int]:
    trie: TopicTrie[int] = TopicTrie()
    for text, key in subs:
        trie.add(text, key)
    return trie


def match_pass(trie: TopicTrie[int], topic_names: list[str]) -> tuple[float, int]:
    """Seconds for one pass over ``topic_names``, and the keys matched in all."""
    found = 0
    started = time.perf_counter()
    for name in topic_names:
        found += len(trie.match(name))
    return time.perf_counter() - started, found


def traced_bytes(count: int, seed: int) -> tuple[int, int]:
    """Bytes the trie holds (filters and keys included) and its subscription count."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        subs = subscriptions(count, seed)
        trie = build(subs)
        del subs
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    return held, len(trie)


def brute_force(
    subs: list[tuple[str, int]], topic_names: list[str]
) -> tuple[float, list[set[int]]]:
    split = [(validate_topic_filter(text).split("/"), key) for text, key in subs]
    started = time.perf_counter()
    found = []
    for name in topic_names:
        levels = validate_topic_name(name).split("/")
        found.append({key for filter_levels, key in split if _levels_match(filter_levels, levels)})
    return time.perf_counter() - started, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--brute-subscriptions", type=int, default=10_000)
    parser.add_argument("--brute-names", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the traced run")
    parser.add_argument("--json", type=Path, default=Path("bench/results/topics.json"))
    args = parser.parse_args()

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    machine = machine_info()
    print(f"gridmesh {__version__} topic-matching benchmark")
    print(f"{machine['python']} on {machine['platform']}")
    print(f"{machine['cpu']}, {machine['cpus']} CPUs, load average at start {load[0]:.2f}\n")

    subs = subscriptions(args.subscriptions, args.seed)
    topic_names = names(args.names, args.seed + 1)
    started = time.perf_counter()
    trie = build(subs)
    build_s = time.perf_counter() - started
    del subs
    print(
        f"build      {len(trie):,} subscriptions in {build_s:.1f} s "
        f"({len(trie) / build_s:,.0f} subscriptions/s)"
    )

    passes = [match_pass(trie, topic_names) for _ in range(args.repeats)]
    rates = sorted(len(topic_names) / seconds for seconds, _ in passes)
    keys_mean = passes[0][1] / len(topic_names)
    print(
        f"match      {statistics.median(rates):,.0f} names/s median of {args.repeats} "
        f"(min {rates[0]:,.0f}, max {rates[-1]:,.0f}); {keys_mean:.1f} keys per name"
    )
    per_class: dict[str, dict[str, float]] = {}
    for prefix in ("MEASUREMENT", "DR", "EVENT", "TARIFF", "METER"):
        chosen = [name for name in topic_names if name.startswith(prefix + "/")]
        seconds, found = match_pass(trie, chosen)
        per_class[prefix] = {
            "names": len(chosen),
            "us_per_name": seconds / len(chosen) * 1e6,
            "keys_per_name": found / len(chosen),
        }
        print(
            f"  {prefix:<12} {per_class[prefix]['us_per_name']:6.2f} us/name, "
            f"{per_class[prefix]['keys_per_name']:7.1f} keys per name"
        )
    del trie
    gc.collect()

    memory: dict[str, float] = {}
    if not args.no_memory:
        held, count = traced_bytes(args.subscriptions, args.seed)
        memory = {"bytes": held, "bytes_per_subscription": held / count}
        print(f"memory     {held / 2**20:,.0f} MiB traced, {held / count:,.0f} B per subscription")

    small = subscriptions(args.brute_subscriptions, args.seed)
    small_trie = build(small)
    few = topic_names[: args.brute_names]
    trie_s = min(match_pass(small_trie, few)[0] for _ in range(3))
    brute_s, expected = brute_force(small, few)
    assert [small_trie.match(name) for name in few] == expected, "trie and brute force disagree"
    speedup = brute_s / trie_s
    print(
        f"speedup    at {len(small_trie):,} subscriptions over {len(few):,} names: trie "
        f"{len(few) / trie_s:,.0f} names/s, brute force {len(few) / brute_s:,.0f} names/s: "
        f"{speedup:,.0f}x (same keys)"
    )

    result = {
        "benchmark": "topics",
        "version": __version__,
        "seed": args.seed,
        "machine": machine,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "subscriptions": args.subscriptions,
        "build_s": build_s,
        "names": args.names,
        "repeats": args.repeats,
        "names_per_s_median": statistics.median(rates),
        "names_per_s_min": rates[0],
        "names_per_s_max": rates[-1],
        "keys_per_name_mean": keys_mean,
        "per_class": per_class,
        "memory": memory,
        "brute_force": {
            "subscriptions": len(small_trie),
            "names": len(few),
            "trie_names_per_s": len(few) / trie_s,
            "brute_force_names_per_s": len(few) / brute_s,
            "speedup": speedup,
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
