"""The ``gridmesh`` command line.

User errors (a bad scenario file, a wrong flag) print one paragraph naming the
source, the field and what is expected, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from gridmesh import __version__
from gridmesh.errors import ConfigError

__all__ = ["main"]

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        print(f"gridmesh: {error.explain()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridmesh", description="Peer-to-peer communication middleware for smart grids."
    )
    parser.add_argument("--version", action="version", version=f"gridmesh {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    simulate = commands.add_parser(
        "simulate", help="run a scenario file on the deterministic simulator"
    )
    simulate.add_argument("scenario", type=Path, metavar="FILE", help="scenario file (TOML)")
    simulate.add_argument("--seed", type=_non_negative_int, help="override the scenario's seed")
    simulate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for report.json, report.html and the CSV files (default: out/NAME)",
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.add_argument(
        "--no-html", action="store_true", help="skip report.html (and its plots); JSON and CSV only"
    )
    simulate.set_defaults(handler=_simulate)

    compare = commands.add_parser(
        "compare", help="run several scenarios and compare them side by side (table + plots)"
    )
    compare.add_argument("scenarios", type=Path, nargs="+", metavar="FILE", help="scenario files")
    compare.add_argument("--seed", type=_non_negative_int, help="one seed for every scenario")
    compare.add_argument(
        "--out", type=Path, default=Path("out/compare"), help="directory for the results"
    )
    compare.set_defaults(handler=_compare)

    from gridmesh.bridges.cli import add_bridge_commands
    from gridmesh.models.cli import add_model_commands
    from gridmesh.pki_cli import add_pki_commands
    from gridmesh.plan.cli import add_plan_commands
    from gridmesh.runtime.cli import add_runtime_commands

    add_runtime_commands(commands)
    add_bridge_commands(commands)
    add_plan_commands(commands)
    add_model_commands(commands)
    add_pki_commands(commands)
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _simulate(args: argparse.Namespace) -> int:
    from gridmesh.scenarios import load_scenario, render_summary, run_scenario, write_outputs

    scenario = load_scenario(args.scenario)
    source = args.scenario.read_text(encoding="utf-8")  # load_scenario read it: it exists
    out = args.out if args.out is not None else Path("out") / scenario.name
    console = Console()
    duration = scenario.simulation.duration_s
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("virtual {task.completed:.1f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=args.quiet,
    ) as progress:
        task = progress.add_task(f"simulating {scenario.name}", total=duration)
        report = run_scenario(
            scenario,
            seed=args.seed,
            progress=lambda now: progress.update(task, completed=min(now, duration)),
        )
    wall_s = time.perf_counter() - started
    written = write_outputs(report, out, scenario=scenario, source=source, html=not args.no_html)
    files_s = time.perf_counter() - started - wall_s
    console.print(render_summary(report))
    console.print(f"report: {written[0]}   (wall time {wall_s:.1f} s, {report['events']:,} events)")
    console.print(
        f"beside it: {', '.join(path.name for path in written[1:])}   (written in {files_s:.1f} s)",
        soft_wrap=True,
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from gridmesh.scenarios import (
        comparison_rows,
        load_scenario,
        render_comparison,
        run_comparison,
        write_comparison,
    )

    scenarios = [load_scenario(path) for path in args.scenarios]  # all checked before any runs
    console = Console()
    if not console.is_terminal:  # a log file: wide enough for the table, not 80 columns
        console = Console(width=160)
    err = Console(stderr=True)
    started = time.perf_counter()
    reports = run_comparison(
        scenarios, seed=args.seed, progress=lambda name: err.print(f"simulating {name} ...")
    )
    rows = comparison_rows(scenarios, reports)
    written = write_comparison(rows, reports, args.out)
    console.print(render_comparison(rows))
    wall_s = time.perf_counter() - started
    console.print(f"written: {', '.join(str(p) for p in written)}   (wall time {wall_s:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
