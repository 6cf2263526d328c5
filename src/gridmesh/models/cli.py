"""``gridmesh model broadcast``: the push-gossip model on the command line.

Every bad value is a ``ConfigError`` naming the flag, so the CLI prints one
paragraph and exits with status 2. ``--format json`` prints one object whose
fields are listed in docs/MODELS.md; with the same flags and seed it is
identical from run to run except ``elapsed_s`` and ``peak_rss_mib``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from gridmesh.errors import ConfigError
from gridmesh.models._push import COPIES_MAX, MODES, NODES_MAX, CopiesLimitExceeded, PushModel
from gridmesh.models._summary import run_broadcasts, summarize
from gridmesh.protocols.dissemination import (
    FANOUT_MAX,
    RELIABILITY_MAX,
    GossipConfig,
    fanout_for,
)
from gridmesh.wire import HOPS_MAX

__all__ = ["add_model_commands", "peak_rss_mib"]

COMMAND_LINE = "command line"
RUNS_MAX = 1_000_000
SEED_MAX = 2**63 - 1
_T = TypeVar("_T", int, float)


def add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = commands.add_parser(
        "model",
        help="vectorized models for 10^7+ nodes (push gossip)",
        description="Predict what the protocols do at national scale in seconds; "
        "see docs/MODELS.md.",
    )
    questions = model.add_subparsers(dest="model", required=True, metavar="MODEL")
    broadcast = questions.add_parser(
        "broadcast",
        help="push gossip from one origin: reach, rounds, messages",
        description="Model push gossip (infect-and-die or infect-forever) over NODES nodes "
        "with full membership, lost copies and crashed nodes, hop by hop.",
    )
    broadcast.add_argument("--nodes", required=True, metavar="N", help="nodes in the network")
    fanout = broadcast.add_mutually_exclusive_group(required=True)
    fanout.add_argument(
        "--fanout", metavar="F", help=f"mean copies per relay, in (0, {FANOUT_MAX}]"
    )
    fanout.add_argument(
        "--reliability",
        metavar="P",
        help="pick the fanout the nodes would for this chance of reaching every node "
        "(fanout_for; see --expected-loss)",
    )
    broadcast.add_argument(
        "--expected-loss",
        metavar="P",
        help="with --reliability: the loss the nodes are configured to expect (default 0)",
    )
    broadcast.add_argument(
        "--expected-crashed",
        metavar="Q",
        help="with --reliability: the crashed share the nodes expect (default 0)",
    )
    default_hops = GossipConfig().hops
    broadcast.add_argument(
        "--hops",
        metavar="R",
        help=f"most links a copy travels, 1..{HOPS_MAX} (default {default_hops}, the node default)",
    )
    broadcast.add_argument("--loss", metavar="P", help="share of copies lost (default 0)")
    broadcast.add_argument(
        "--crashed", metavar="Q", help="share of nodes down, never the origin (default 0)"
    )
    broadcast.add_argument("--runs", metavar="K", help="independent broadcasts (default 1)")
    broadcast.add_argument("--seed", metavar="S", help="seed of the random draws (default 1)")
    broadcast.add_argument(
        "--mode",
        choices=MODES,
        default="die",
        help="die: relay once (infect-and-die); forever: relay every copy (default die)",
    )
    broadcast.add_argument("--format", choices=["table", "json"], default="table")
    broadcast.set_defaults(handler=_broadcast)


def _broadcast(args: argparse.Namespace) -> int:
    nodes = _parse(
        args.nodes,
        "--nodes",
        int,
        expected=f"a whole number in 2..{NODES_MAX:,}",
        accept=lambda v: 2 <= v <= NODES_MAX,
    )
    reliability = None
    expected_loss = _share(args.expected_loss, "--expected-loss")
    expected_crashed = _share(args.expected_crashed, "--expected-crashed")
    if args.reliability is None:
        for flag, given in (
            ("--expected-loss", args.expected_loss),
            ("--expected-crashed", args.expected_crashed),
        ):
            if given is not None:
                raise ConfigError(COMMAND_LINE, flag, "it only together with --reliability")
        fanout = _parse(
            args.fanout,
            "--fanout",
            float,
            expected=f"a mean fanout in (0, {FANOUT_MAX}]",
            accept=lambda v: 0.0 < v <= FANOUT_MAX,
        )
    else:
        reliability = _parse(
            args.reliability,
            "--reliability",
            float,
            expected=f"a probability in (0, {RELIABILITY_MAX}]",
            accept=lambda v: 0.0 < v <= RELIABILITY_MAX,
        )
        fanout = fanout_for(reliability, nodes, loss=expected_loss, crashed=expected_crashed)
        if fanout > FANOUT_MAX:
            raise ConfigError(
                COMMAND_LINE,
                "--reliability",
                f"a reliability whose fanout is at most {FANOUT_MAX} (this one needs "
                f"{fanout:.1f} at {nodes:,} nodes)",
                got=args.reliability,
            )
    default_hops = GossipConfig().hops
    hops = _parse(
        args.hops,
        "--hops",
        int,
        expected=f"a whole number in 1..{HOPS_MAX}",
        accept=lambda v: 1 <= v <= HOPS_MAX,
        default=default_hops,
    )
    loss = _share(args.loss, "--loss")
    crashed = _share(args.crashed, "--crashed")
    runs = _parse(
        args.runs,
        "--runs",
        int,
        expected=f"a whole number in 1..{RUNS_MAX:,}",
        accept=lambda v: 1 <= v <= RUNS_MAX,
        default=1,
    )
    seed = _parse(
        args.seed,
        "--seed",
        int,
        expected="a non-negative whole number below 2**63",
        accept=lambda v: 0 <= v <= SEED_MAX,
        default=1,
    )
    model = PushModel(nodes, fanout, hops, loss=loss, crashed=crashed, mode=args.mode)
    started = time.perf_counter()
    try:
        results = run_broadcasts(model, runs, seed)
    except CopiesLimitExceeded as error:
        raise ConfigError(
            COMMAND_LINE,
            "--hops",
            "fewer hops (or a smaller fanout): infect-forever multiplies the copies by about "
            "fanout x (1 - loss) x (1 - crashed) every round, and one modelled broadcast may "
            f"send at most {COPIES_MAX:.0e}",
            got=f"{error.copies:.3g} copies by round {error.round_index}",
        ) from None
    elapsed_s = time.perf_counter() - started
    summary = summarize(model, results)
    record: dict[str, Any] = {
        "command": "model broadcast",
        "mode": model.mode,
        "nodes": nodes,
        "crashed_nodes": model.crashed_nodes,
        "live_nodes": model.live_nodes,
        "fanout": fanout,
        "fanout_from": "fanout" if reliability is None else "reliability",
        "reliability": reliability,
        "expected_loss": expected_loss,
        "expected_crashed": expected_crashed,
        "hops": hops,
        "loss": loss,
        "crashed": crashed,
        "runs": runs,
        "seed": seed,
        "all_reached_fraction": summary.all_reached_fraction,
        "all_reached_se": summary.all_reached_se,
        "expected_all_reached": model.expected_all_reached() if model.mode == "die" else None,
        "delivery_ratio_mean": summary.delivery_ratio_mean,
        "delivery_ratio_min": summary.delivery_ratio_min,
        "delivery_ratio_max": summary.delivery_ratio_max,
        "rounds_mean": summary.rounds_mean,
        "rounds_max": summary.rounds_max,
        "messages_mean": summary.messages_mean,
        "messages_per_node_mean": summary.messages_per_node_mean,
        "duplicates_mean": summary.duplicates_mean,
        "reached_by_round_mean": list(summary.reached_by_round_mean),
        "collision_bias": model.collision_bias,
        "elapsed_s": elapsed_s,
        "peak_rss_mib": peak_rss_mib(),
    }
    if args.format == "json":
        print(json.dumps(record))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
        console.print(_table(record))
    return 0


def peak_rss_mib() -> float | None:
    """This process's peak resident memory in MiB; None where unknown.

    On Linux, ``VmHWM`` from /proc/self/status: ``ru_maxrss`` there also
    counts what the parent process held before it started this one (the
    high-water mark survives fork and exec), which would bill a benchmark's
    own memory to the model. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # noqa: PLC0415 - Unix only
    except ImportError:  # pragma: no cover - not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _table(record: dict[str, Any]) -> Table:
    mode = "infect-and-die" if record["mode"] == "die" else "infect-forever"
    table = Table(title=f"Push gossip model, {mode}: {record['nodes']:,} nodes", show_header=False)
    fanout = f"{record['fanout']:.4g}"
    if record["reliability"] is not None:
        fanout += (
            f" (for reliability {record['reliability']:g}, expecting loss "
            f"{record['expected_loss']:g}, crashed {record['expected_crashed']:g})"
        )
    expected = record["expected_all_reached"]
    rows = [
        ("fanout", fanout),
        ("hops", str(record["hops"])),
        (
            "loss, crashed",
            f"{record['loss']:g}, {record['crashed']:g} ({record['crashed_nodes']:,} nodes down)",
        ),
        ("runs, seed", f"{record['runs']:,}, {record['seed']}"),
        (
            "all live nodes reached",
            f"{record['all_reached_fraction']:.4f} of runs (SE {record['all_reached_se']:.4f})",
        ),
        ("theory (KMG limit)", "n/a for infect-forever" if expected is None else f"{expected:.4f}"),
        (
            "delivery ratio",
            f"mean {record['delivery_ratio_mean']:.6f}, min {record['delivery_ratio_min']:.6f}",
        ),
        (
            "rounds to the last new node",
            f"mean {record['rounds_mean']:.2f}, max {record['rounds_max']}",
        ),
        (
            "messages",
            f"{record['messages_mean']:,.0f} ({record['messages_per_node_mean']:.2f} per node)",
        ),
        ("duplicates", f"{record['duplicates_mean']:,.0f}"),
        (
            "reached by round",
            "  ".join(f"{share:.4g}" for share in record["reached_by_round_mean"]),
        ),
        ("elapsed", f"{record['elapsed_s']:.2f} s, peak RSS {record['peak_rss_mib'] or 0:.0f} MiB"),
    ]
    table.add_column("what")
    table.add_column("value")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _share(text: str | None, flag: str) -> float:
    """A share in [0, 1) (a loss or crashed fraction); 0 when the flag is absent."""
    share = "a share in [0, 1)"
    return _parse(text, flag, float, expected=share, accept=lambda v: 0 <= v < 1, default=0.0)


def _parse(
    text: str | None,
    flag: str,
    kind: Callable[[str], _T],
    *,
    expected: str,
    accept: Callable[[_T], bool],
    default: _T | None = None,
) -> _T:
    """``text`` as ``kind``, if ``accept`` takes it; errors name the flag and ``expected``."""
    if text is None:
        assert default is not None, f"argparse requires {flag}"
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(COMMAND_LINE, flag, expected, got=text) from None
    if not accept(value):  # NaN fails every comparison, so it lands here too
        raise ConfigError(COMMAND_LINE, flag, expected, got=text)
    return value
