"""Report helpers: percentiles, rounding, the JSON file and the summary table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

__all__ = ["cdf", "percentiles", "render_summary", "rounded", "write_report"]

_DIGITS = 6


def rounded(value: float) -> float:
    """Round for the report: six decimals (a microsecond, a ppm)."""
    return round(value, _DIGITS)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max of ``values``; all None when empty."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    count = len(ordered)

    def rank(p: float) -> float:
        return rounded(ordered[max(0, math.ceil(p / 100.0 * count) - 1)])

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": rounded(ordered[-1])}


def cdf(values: Sequence[float], steps: int = 50) -> list[float | None]:
    """The 0, 1/steps, ..., 100% quantiles (nearest rank): a delivery-vs-time curve."""
    if not values:
        return [None] * (steps + 1)
    ordered = sorted(values)
    count = len(ordered)
    return [rounded(ordered[max(0, math.ceil(k / steps * count) - 1)]) for k in range(steps + 1)]


def write_report(report: dict[str, object], directory: Path) -> Path:
    """Write ``report.json`` (sorted keys, so equal reports are equal bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _seconds(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 1000:.1f} ms"


def render_summary(report: dict[str, object]) -> Table:
    """The table ``gridmesh simulate`` prints."""
    table = Table(title=f"{report['scenario']}  (seed {report['seed']})", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    latency = report["latency_s"]
    assert isinstance(latency, dict)
    per_node = report["messages_per_node"]
    assert isinstance(per_node, dict)
    ratio = report["delivery_ratio"]
    rows = [
        ("nodes (live)", f"{report['nodes']:,} ({report['live_nodes']:,})"),
        ("broadcasts", f"{report['broadcasts']}"),
        ("delivered", f"{report['delivered']:,}"),
        ("delivery ratio (live)", "-" if ratio is None else f"{float(str(ratio)):.4%}"),
        ("latency p50 / p90", f"{_seconds(latency['p50'])} / {_seconds(latency['p90'])}"),
        ("latency p99 / max", f"{_seconds(latency['p99'])} / {_seconds(latency['max'])}"),
        ("messages sent", f"{report['messages_sent']:,}"),
        ("bytes sent", f"{report['bytes_sent']:,}"),
        ("messages per node (mean / max)", f"{per_node['mean']:.2f} / {per_node['max']:,}"),
        ("messages sent by origin", f"{report['origin_messages_sent']:,}"),
        ("duplicates per delivery", f"{report['duplicates_per_delivery']}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
