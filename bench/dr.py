"""DR corrective control at 10^5 customers, several seeds (examples/dr-corrective.toml).

What is measured
----------------
For each seed, the example run as ``gridmesh simulate`` runs it (the same
scenario file; the seed changes the customers, the losses, which meters fail
and when): whether the DSO's request was met within its deadline and when
(``time_to_activation_s``, from the request until the reduction the meters
really delivered covered it), requested / commanded / confirmed / achieved kW,
the causes of any shortfall, the commands and reports that crossed the lossy
network, messages and bytes, and the wall time and peak memory of the
simulation itself (the report and page are not written here).

    .venv/bin/python bench/dr.py [--seeds 3] [--file examples/dr-corrective.toml]
                                 [--json bench/results/dr.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.scenarios import load_scenario, run_scenario


def run(path: Path, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    scenario = load_scenario(path)
    report = run_scenario(scenario, seed=seed)
    wall_s = time.perf_counter() - started
    dr: dict[str, Any] = report["dr"]  # type: ignore[assignment]
    commands = dr["commands"]
    return {
        "seed": seed,
        "met": dr["met"],
        "dso_confirmed": dr["dso_confirmed"],
        "time_to_activation_s": dr["time_to_activation_s"],
        "requested_kw": dr["requested_kw"],
        "commanded_kw": dr["commanded_kw"],
        "confirmed_kw": dr["confirmed_kw"],
        "achieved_kw": dr["achieved_kw"],
        "shortfall_kw": dr["shortfall_kw"],
        "why": dr["why"],
        "commands_sent": sum(
            agg["commands"]["calls"] for agg in dr["per_aggregator"] if agg["requested"]
        ),
        "commands_to_crashed_meters": commands["crashed"]["count"],
        "customers_unavailable": commands["unavailable"]["count"],
        "reports": dr["reports"],
        "meters_down_at_end": dr["customers"]["down_at_end"],
        "messages_sent": report["messages_sent"],
        "bytes_sent": report["bytes_sent"],
        "events": report["events"],
        "wall_s": round(wall_s, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--file", type=Path, default=Path("examples/dr-corrective.toml"))
    parser.add_argument("--json", type=Path, default=Path("bench/results/dr.json"))
    args = parser.parse_args()
    machine = machine_info()
    print(f"gridmesh {__version__} DR corrective control, {args.file}; {machine}")
    runs = []
    for seed in range(1, args.seeds + 1):
        result = run(args.file, seed)
        runs.append(result)
        print(
            f"seed {seed}: met={result['met']} dso_confirmed={result['dso_confirmed']} "
            f"time_to_activation={result['time_to_activation_s']} s, "
            f"achieved {result['achieved_kw']:,} of {result['requested_kw']:,} kW "
            f"(commanded {result['commanded_kw']:,}, confirmed {result['confirmed_kw']:,}); "
            f"{result['commands_sent']:,} commands, {result['messages_sent']:,} messages, "
            f"{result['bytes_sent']:,} bytes; wall {result['wall_s']} s, "
            f"peak {result['peak_rss_mib']} MiB",
            flush=True,
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine,
        "gridmesh": __version__,
        "setup": {"file": str(args.file), "seeds": args.seeds},
        "runs": runs,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
