"""ReDy balancing (examples/redy-balancing.toml) over several seeds, and each estimator.

What is measured
----------------
The example is the acceptance run of issue 8's fourth scenario: 10,000
governance units, 10% failing mid-run (and 2% leaving and rejoining). For each
seed the bench runs it as ``gridmesh simulate`` does (``run_scenario``, report
and CSV files, not the HTML page) and prints, from the report:

* **start** and **final** imbalance (kW), the **target** (5% of the start),
  when it **settled** (the first sample within the target), the largest
  imbalance **after** settling and whether it **held** to the end;
* the largest gap between the imbalance and the **central optimum** after
  settling (kW);
* messages sent per unit (every kind: Cyclon, the tree's counts, the
  gossip, the asks), and the wall time of the run alone.

``--estimator pushsum`` runs the same file with three push-sum estimates
instead of the tree's count and gossip (``[redy] estimator``), with the
``[node.pushsum]`` settings a push-sum grid needs (a join fanout of 2, two
retries, 10 rounds to an epoch, trusted after 8; a Cyclon view of 20, from
which a push draws one peer). ``--units`` scales the grid down.

    .venv/bin/python bench/redy.py [--seeds 5] [--estimator tree|pushsum]
        [--units 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.scenarios import load_scenario, run_scenario

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redy-balancing.toml"


def scenario(estimator: str, units: int) -> Any:
    """The example, with ``units`` units and the estimator asked for."""
    base = load_scenario(EXAMPLE)
    data = base.model_dump()
    data["roles"][0]["count"] = units
    if estimator == "pushsum":
        redy = data["redy"]
        redy.update(estimator="pushsum", rounds=10, settle_rounds=8)
        data["node"]["pushsum"].update(join_fanout=2, retries_max=2)
        data["node"]["membership"].update(view_size=20, shuffle_length=8)
    return type(base).model_validate(data)


def run(estimator: str, units: int, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    report = run_scenario(scenario(estimator, units), seed=seed)
    wall_s = time.perf_counter() - started
    redy, messages = report["redy"], report["messages_sent"]
    assert isinstance(redy, dict) and isinstance(messages, int)
    return {
        "seed": seed,
        "start_kw": redy["start_imbalance_kw"],
        "target_kw": redy["target_kw"],
        "settled_at_s": redy["settled_at_s"],
        "max_after_settling_kw": redy["max_after_settling_kw"],
        "max_after_settling_share": (
            None
            if redy["max_after_settling_kw"] is None
            else round(redy["max_after_settling_kw"] / abs(redy["start_imbalance_kw"]), 4)
        ),
        "held": redy["held"],
        "final_kw": redy["final_imbalance_kw"],
        "max_excess_over_optimum_kw": redy["max_excess_over_optimum_after_settling_kw"],
        "units_up": redy["units_up"],
        "messages_per_unit": round(messages / units, 1),
        "wall_s": round(wall_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--estimator", choices=("tree", "pushsum"), default="tree")
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    machine = machine_info()
    print(f"gridmesh {__version__}; {machine}")
    print(f"{EXAMPLE.name}: {args.units:,} units, estimator {args.estimator}")
    rows = []
    for seed in range(1, args.seeds + 1):
        row = run(args.estimator, args.units, seed)
        rows.append(row)
        print(
            f"seed {seed}: start {row['start_kw']:,.0f} kW, target {row['target_kw']:,.0f} kW, "
            f"settled at {row['settled_at_s']} s, max after {row['max_after_settling_kw']} kW "
            f"({row['max_after_settling_share']}), held {row['held']}, final "
            f"{row['final_kw']} kW, max excess over the optimum "
            f"{row['max_excess_over_optimum_kw']} kW, {row['messages_per_unit']} messages/unit, "
            f"{row['wall_s']} s"
        )
    held = sum(1 for row in rows if row["held"])
    print(f"held in {held} of {len(rows)} seeds")
    if args.json is not None:
        result = {
            "gridmesh_version": __version__,
            "machine": machine,
            "example": EXAMPLE.name,
            "units": args.units,
            "estimator": args.estimator,
            "rows": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
