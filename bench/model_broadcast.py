"""The push-gossip model: cross-validation at 10^4 nodes, the KMG theorem, a UK broadcast.

Three experiments, each printed and saved to ``bench/results/model-<name>.json``:

* ``crossval``: 10^4 nodes, the model (``gridmesh.models.PushModel``) against
  the real protocol on the simulator, for infect-and-die with a whole and a
  mean fanout (loss 0.1, 10% of the nodes down) and infect-forever. Figures:
  the two-sample Kolmogorov-Smirnov p-value of the delivery ratios, and the
  difference of the means (in standard errors of the difference) for the
  share of runs that reach every live node, messages, duplicates, rounds and
  the reached-so-far curve (the largest over its rounds).
* ``theory``: 10^4 nodes, mean fanout ``ln n + c`` for c = 1..4, no loss, no
  crash, 64 hops, infect-and-die, by the model (``--runs``) and by the real
  protocol on the simulator (``--sim-runs``, at most 4096 with one seen
  cache): the share of runs that reach every node against
  Kermarrec-Massoulie-Ganesh's ``exp(-exp(-c))``, within 3 standard errors
  ``sqrt(p (1 - p) / runs)``; and beside it the finite-n value
  ``exp(-(n-1) (1 - f/(n-1)) (1 - f/(n-2))^(n-2))`` (every node relays once).
* ``uk``: one broadcast over the UK's 31,962,942 meters, loss 0.01, 1% of the
  meters down, with the fanout nodes pick for reliability 0.9999 (expecting
  that loss and crash share, and expecting none) and with ``ln n + 2``. Each
  run is a fresh ``gridmesh model broadcast`` process, so its peak RSS is its
  own; the time is the model's (``elapsed_s``), median of ``--repeats``.
  Then ``--uk-runs`` broadcasts per case in one process, for the share that
  reaches every live meter beside the KMG limit.

    .venv/bin/python bench/model_broadcast.py crossval [--sim-runs 200]
    .venv/bin/python bench/model_broadcast.py theory [--runs 10000] [--sim-runs 200]
    .venv/bin/python bench/model_broadcast.py uk [--repeats 3]
    .venv/bin/python bench/model_broadcast.py all
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy.stats import ks_2samp

from gridmesh import __version__
from gridmesh.models import BroadcastRun, PushModel, run_broadcasts, summarize
from gridmesh.models._crossval import simulated_broadcasts

RESULTS = Path(__file__).resolve().parent / "results"
UK_NODES = 31_962_942
UK_TARGET_S = 60.0
CROSSVAL_NODES = 10_000
MANY_RUNS_FIELDS = (
    "runs", "seed", "all_reached_fraction", "all_reached_se", "delivery_ratio_mean",
    "delivery_ratio_min", "rounds_mean", "rounds_max", "messages_mean", "elapsed_s",
)  # fmt: skip


def machine() -> dict[str, Any]:
    """What the figures were measured on (the load average says whether it was shared)."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "gridmesh_version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"gridmesh {info['gridmesh_version']}, python {info['python']}, numpy {info['numpy']}, "
        f"scipy {info['scipy']}; {info['cpus']} CPUs ({info['cpu']}), "
        f"load average {info['load_average_1m']:.2f}"
    )


def save(name: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"model-{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"-> {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}\n")


# -- crossval ------------------------------------------------------------------


def z_score(measured: Sequence[float], modelled: Sequence[float]) -> float:
    """Difference of the means in standard errors of the difference (0 if neither varies)."""
    difference = statistics.fmean(measured) - statistics.fmean(modelled)
    se = math.sqrt(
        statistics.pvariance(measured) / len(measured)
        + statistics.pvariance(modelled) / len(modelled)
    )
    return 0.0 if se == 0.0 else difference / se


def compare(measured: list[BroadcastRun], modelled: list[BroadcastRun]) -> dict[str, Any]:
    ks = ks_2samp(
        [r.delivery_ratio for r in measured], [r.delivery_ratio for r in modelled], method="asymp"
    )
    figures: dict[str, Callable[[BroadcastRun], float]] = {
        "all_reached": lambda r: float(r.all_reached),
        "delivery_ratio": lambda r: r.delivery_ratio,
        "messages": lambda r: float(r.messages),
        "duplicates": lambda r: float(r.duplicates),
        "rounds": lambda r: float(r.rounds),
    }
    z = {
        name: z_score([get(r) for r in measured], [get(r) for r in modelled])
        for name, get in figures.items()
    }
    longest = max(len(r.curve) for r in [*measured, *modelled])
    curve_z = [
        z_score(
            [r.curve[min(t, len(r.curve) - 1)] for r in measured],
            [r.curve[min(t, len(r.curve) - 1)] for r in modelled],
        )
        for t in range(1, longest)
    ]
    return {
        "ks_statistic": float(ks.statistic),
        "ks_p_value": float(ks.pvalue),
        "z": z,
        "curve_z": curve_z,
        "curve_z_max_abs": max((abs(v) for v in curve_z), default=0.0),
    }


def crossval(args: argparse.Namespace) -> dict[str, Any]:
    nodes = CROSSVAL_NODES
    cases = {
        "die, fanout 10": PushModel(nodes, 10, 20, loss=0.1, crashed=0.1),
        "die, fanout ln n + 1": PushModel(nodes, math.log(nodes) + 1, 20, loss=0.1, crashed=0.1),
        "forever, fanout 4.5, 7 hops": PushModel(
            nodes, 4.5, 7, loss=0.1, crashed=0.1, mode="forever"
        ),
    }
    print(
        f"cross-validation at {nodes:,} nodes: simulator {args.sim_runs} runs (seed {args.seed}), "
        f"model {args.model_runs} runs (seed {args.seed})"
    )
    header = (
        f"{'case':<28} {'all reached sim/model':>22} {'delivery sim/model':>22} "
        f"{'KS p':>7} {'z all':>6} {'z msgs':>6} {'z dups':>6} {'z rounds':>8} {'|z| curve':>9}"
    )
    print(header)
    rows = []
    for label, model in cases.items():
        started = time.perf_counter()
        measured = simulated_broadcasts(model, args.sim_runs, args.seed)
        sim_s = time.perf_counter() - started
        started = time.perf_counter()
        modelled = run_broadcasts(model, args.model_runs, args.seed)
        model_s = time.perf_counter() - started
        found = compare(measured, modelled)
        sim, mod = summarize(model, measured), summarize(model, modelled)
        z = found["z"]
        print(
            f"{label:<28} {sim.all_reached_fraction:>10.3f} / {mod.all_reached_fraction:<9.3f} "
            f"{sim.delivery_ratio_mean:>10.6f} / {mod.delivery_ratio_mean:<9.6f} "
            f"{found['ks_p_value']:>7.3f} {z['all_reached']:>6.2f} {z['messages']:>6.2f} "
            f"{z['duplicates']:>6.2f} {z['rounds']:>8.2f} {found['curve_z_max_abs']:>9.2f}"
        )
        rows.append(
            {
                "case": label,
                "model": {
                    "nodes": model.nodes,
                    "fanout": model.fanout,
                    "hops": model.hops,
                    "loss": model.loss,
                    "crashed": model.crashed,
                    "mode": model.mode,
                },
                "simulator": {**summary_record(sim), "wall_s": sim_s},
                "modelled": {**summary_record(mod), "wall_s": model_s},
                **found,
            }
        )
    print(
        "KS p > 0.001 and |z| <= 4 everywhere: "
        + (
            "yes"
            if all(
                r["ks_p_value"] > 0.001
                and max(abs(v) for v in r["z"].values()) <= 4
                and r["curve_z_max_abs"] <= 4
                for r in rows
            )
            else "NO"
        )
    )
    return {"sim_runs": args.sim_runs, "model_runs": args.model_runs, "seed": args.seed,
            "cases": rows}  # fmt: skip


def summary_record(summary: Any) -> dict[str, Any]:
    return {
        "runs": summary.runs,
        "all_reached_fraction": summary.all_reached_fraction,
        "delivery_ratio_mean": summary.delivery_ratio_mean,
        "delivery_ratio_min": summary.delivery_ratio_min,
        "rounds_mean": summary.rounds_mean,
        "messages_mean": summary.messages_mean,
        "duplicates_mean": summary.duplicates_mean,
        "reached_by_round_mean": list(summary.reached_by_round_mean),
    }


# -- theory --------------------------------------------------------------------


def finite_n_all_reached(nodes: int, fanout: float) -> float:
    """P(no node missed) if every other node relays once: Poisson over the missed ones."""
    missed_each = (1 - fanout / (nodes - 1)) * (1 - fanout / (nodes - 2)) ** (nodes - 2)
    return math.exp(-(nodes - 1) * missed_each)


def theory(args: argparse.Namespace) -> dict[str, Any]:
    nodes = args.nodes
    print(
        f"KMG check: {nodes:,} nodes, fanout ln n + c, no loss, no crash, 64 hops, "
        f"infect-and-die; the model {args.runs} runs and the real protocol on the simulator "
        f"{args.sim_runs} runs per c, seed {args.seed}"
    )
    print(
        f"{'c':>2} {'fanout':>7} {'by':>9} {'runs':>6} {'measured':>9} {'exp(-e^-c)':>10} "
        f"{'SE':>7} {'z':>6} {'<=3 SE':>6} {'finite n':>9} {'wall s':>7}"
    )
    rows = []
    for c in args.c:
        fanout = math.log(nodes) + c
        model = PushModel(nodes, fanout, 64)
        expected = math.exp(-math.exp(-c))
        finite = finite_n_all_reached(nodes, fanout)
        runners: dict[str, tuple[int, Callable[[PushModel, int, int], list[BroadcastRun]]]] = {
            "model": (args.runs, run_broadcasts),
            "simulator": (args.sim_runs, simulated_broadcasts),
        }
        for by, (runs, go) in runners.items():
            if runs <= 0:
                continue
            started = time.perf_counter()
            summary = summarize(model, go(model, runs, args.seed))
            wall_s = time.perf_counter() - started
            se = math.sqrt(expected * (1 - expected) / runs)
            z = (summary.all_reached_fraction - expected) / se
            print(
                f"{c:>2g} {fanout:>7.3f} {by:>9} {runs:>6} "
                f"{summary.all_reached_fraction:>9.4f} {expected:>10.4f} {se:>7.4f} {z:>+6.2f} "
                f"{'yes' if abs(z) <= 3 else 'NO':>6} {finite:>9.4f} {wall_s:>7.1f}",
                flush=True,
            )
            rows.append(
                {
                    "c": c,
                    "fanout": fanout,
                    "by": by,
                    "runs": runs,
                    "measured": summary.all_reached_fraction,
                    "expected": expected,
                    "se": se,
                    "z": z,
                    "within_3_se": abs(z) <= 3,
                    "finite_n_expected": finite,
                    "rounds_mean": summary.rounds_mean,
                    "wall_s": wall_s,
                }
            )
    return {
        "nodes": nodes,
        "runs": args.runs,
        "sim_runs": args.sim_runs,
        "seed": args.seed,
        "rows": rows,
    }


# -- uk ------------------------------------------------------------------------


def uk(args: argparse.Namespace) -> dict[str, Any]:
    nodes, loss, crashed = UK_NODES, 0.01, 0.01
    cases: dict[str, list[str]] = {
        "reliability 0.9999, expecting the loss and crash": [
            "--reliability", "0.9999", "--expected-loss", str(loss),
            "--expected-crashed", str(crashed),
        ],
        "reliability 0.9999, expecting nothing": ["--reliability", "0.9999"],
        "fanout ln n + 2": ["--fanout", repr(math.log(nodes) + 2)],
    }  # fmt: skip
    print(
        f"UK: {nodes:,} nodes, loss {loss}, crashed {crashed}, infect-and-die, 10 hops; "
        f"{args.repeats} processes per case (seeds 1..{args.repeats}), one broadcast each"
    )
    print(
        f"{'case':<50} {'fanout':>7} {'model s (median)':>16} {'process s':>9} "
        f"{'peak MiB':>8} {'delivery min':>12} {'all':>5} {'rounds':>6} {'msgs/node':>9}"
    )
    rows = []
    for label, flags in cases.items():
        records = []
        walls = []
        base = [
            "--nodes", str(nodes), *flags, "--loss", str(loss), "--crashed", str(crashed),
            "--hops", "10",
        ]  # fmt: skip
        for seed in range(1, args.repeats + 1):
            started = time.perf_counter()
            records.append(run_cli([*base, "--seed", str(seed)]))
            walls.append(time.perf_counter() - started)
        many = run_cli([*base, "--seed", str(args.repeats + 1), "--runs", str(args.uk_runs)])
        elapsed = statistics.median(r["elapsed_s"] for r in records)
        peak = max(r["peak_rss_mib"] for r in records)
        row = {
            "case": label,
            "fanout": records[0]["fanout"],
            "elapsed_s_median": elapsed,
            "elapsed_s": [r["elapsed_s"] for r in records],
            "process_wall_s_median": statistics.median(walls),
            "peak_rss_mib_max": peak,
            "delivery_ratio": [r["delivery_ratio_mean"] for r in records],
            "all_reached": [r["all_reached_fraction"] == 1.0 for r in records],
            "rounds": [r["rounds_mean"] for r in records],
            "messages": [r["messages_mean"] for r in records],
            "duplicates": [r["duplicates_mean"] for r in records],
            "expected_all_reached": records[0]["expected_all_reached"],
            "many_runs": {key: many[key] for key in MANY_RUNS_FIELDS},
            "reached_by_round": records[0]["reached_by_round_mean"],
            "within_target": elapsed <= UK_TARGET_S,
        }
        rows.append(row)
        print(
            f"{label:<50} {row['fanout']:>7.3f} {elapsed:>16.2f} "
            f"{row['process_wall_s_median']:>9.2f} {peak:>8.0f} "
            f"{min(row['delivery_ratio']):>12.8f} "
            f"{sum(row['all_reached'])}/{len(records):<3} {statistics.median(row['rounds']):>6.0f} "
            f"{statistics.median(row['messages']) / nodes:>9.2f}"
        )
    print(f"target: <= {UK_TARGET_S:.0f} s per broadcast on 2 cores (shared/DESIGN.md)")
    print(f"\n{args.uk_runs} broadcasts per case (one process, seed {args.repeats + 1}):")
    print(f"{'case':<50} {'all reached':>11} {'SE':>7} {'KMG limit':>9} {'delivery min':>12} "
          f"{'rounds max':>10} {'s per run':>9}")  # fmt: skip
    for row in rows:
        many = row["many_runs"]
        print(
            f"{row['case']:<50} {many['all_reached_fraction']:>11.3f} "
            f"{many['all_reached_se']:>7.3f} {row['expected_all_reached']:>9.4f} "
            f"{many['delivery_ratio_min']:>12.8f} {many['rounds_max']:>10} "
            f"{many['elapsed_s'] / many['runs']:>9.2f}"
        )
    return {"nodes": nodes, "loss": loss, "crashed": crashed, "repeats": args.repeats,
            "rows": rows}  # fmt: skip


def run_cli(flags: list[str]) -> dict[str, Any]:
    """``gridmesh model broadcast FLAGS --format json`` in a fresh process."""
    command = [sys.executable, "-m", "gridmesh", "model", "broadcast", *flags, "--format", "json"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    record: dict[str, Any] = json.loads(done.stdout)
    return record


# -- main ----------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=["crossval", "theory", "uk", "all"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sim-runs", type=int, default=200, help="crossval, theory: simulator runs (0: none)"
    )
    parser.add_argument("--model-runs", type=int, default=10_000, help="crossval: model runs")
    parser.add_argument("--runs", type=int, default=10_000, help="theory: runs per c (>= 200)")
    parser.add_argument("--nodes", type=int, default=10_000, help="theory: network size")
    parser.add_argument("--c", type=float, nargs="+", default=[1, 2, 3, 4], help="theory")
    parser.add_argument("--repeats", type=int, default=3, help="uk: processes per case")
    parser.add_argument("--uk-runs", type=int, default=100, help="uk: broadcasts for the shares")
    args = parser.parse_args()
    info = machine()
    print_machine(info)
    chosen = ["crossval", "theory", "uk"] if args.experiment == "all" else [args.experiment]
    experiments = {"crossval": crossval, "theory": theory, "uk": uk}
    for name in chosen:
        started = time.perf_counter()
        result = experiments[name](args)
        print(f"({name}: {time.perf_counter() - started:.0f} s)")
        save(name, {**info, "experiment": name, "results": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
