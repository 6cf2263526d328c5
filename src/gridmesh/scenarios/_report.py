"""Report helpers: percentiles, rounding, the JSON file and the summary table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = [
    "cdf",
    "percentiles",
    "render_summary",
    "rounded",
    "summary_sections",
    "write_report",
]

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
    for index, section in enumerate(summary_sections(report)):
        if index:
            table.add_section()
        for name, value in section:
            table.add_row(name, value)
    return table


def summary_sections(report: dict[str, object]) -> list[list[tuple[str, str]]]:
    """The summary figures as (name, value) rows: the run, then each query and estimate."""
    latency = report["latency_s"]
    assert isinstance(latency, dict)
    per_node = report["messages_per_node"]
    assert isinstance(per_node, dict)
    ratio = report["delivery_ratio"]
    rows = [("nodes (live)", f"{report['nodes']:,} ({report['live_nodes']:,})")]
    if report["broadcasts"] or not (report.get("aggregates") or report.get("estimates")):
        rows += [
            ("broadcasts", f"{report['broadcasts']}"),
            ("delivered", f"{report['delivered']:,}"),
            ("delivery ratio (live)", "-" if ratio is None else f"{float(str(ratio)):.4%}"),
            ("latency p50 / p90", f"{_seconds(latency['p50'])} / {_seconds(latency['p90'])}"),
            ("latency p99 / max", f"{_seconds(latency['p99'])} / {_seconds(latency['max'])}"),
        ]
    rows += [
        ("messages sent", f"{report['messages_sent']:,}"),
        ("bytes sent", f"{report['bytes_sent']:,}"),
        ("messages per node (mean / max)", f"{per_node['mean']:.2f} / {per_node['max']:,}"),
    ]
    if report["broadcasts"]:
        rows += [
            ("messages sent by origin", f"{report['origin_messages_sent']:,}"),
            ("duplicates per delivery", f"{report['duplicates_per_delivery']}"),
        ]
    sections = [rows]
    sections += [_aggregate_rows(query) for query in _entries(report.get("aggregates"))]
    sections += [_estimate_rows(estimate) for estimate in _entries(report.get("estimates"))]
    dr = report.get("dr")
    if isinstance(dr, dict):  # [dr], scenarios/_dr.py
        sections.append(_dr_rows(dr))
    redy = report.get("redy")
    if isinstance(redy, dict):  # [redy], scenarios/_redy.py
        sections.append(_redy_rows(redy))
    return sections


def _redy_rows(redy: dict[str, Any]) -> list[tuple[str, str]]:
    """ReDy balancing: the imbalance at the start and the end, and whether it settled."""
    settled = redy["settled_at_s"]
    epochs = redy["epochs"]
    return [
        (
            "ReDy imbalance start / final",
            f"{redy['start_imbalance_kw']:,.1f} / {redy['final_imbalance_kw']:,.1f} kW",
        ),
        (
            "  within target from / held",
            "never" if settled is None else f"{settled:g} s / {'yes' if redy['held'] else 'no'}",
        ),
        (
            "  max after settling / target",
            "-"
            if redy["max_after_settling_kw"] is None
            else f"{redy['max_after_settling_kw']:,.1f} / {redy['target_kw']:,.1f} kW",
        ),
        ("  central optimum (final)", f"{redy['final_centralized_optimum_kw']:,.1f} kW"),
        (
            "  epochs (missed), estimator",
            f"{len(epochs)} ({redy['epochs_missed']}), {redy['estimator']}",
        ),
    ]


def _dr_rows(dr: dict[str, Any]) -> list[tuple[str, str]]:
    """Demand response: the request, what the meters delivered, when, and why not."""
    if not dr["request_sent"]:
        return [("DR request", "not sent (DSO down)")]
    activation = dr["time_to_activation_s"]
    rows = [
        ("DR requested / achieved", f"{dr['requested_kw']:,.1f} / {dr['achieved_kw']:,.1f} kW"),
        (
            "  met within the deadline",
            "yes" if dr["met"] else f"no: {dr['shortfall_kw']:,.1f} kW short",
        ),
        (
            "  time to activation",
            "-" if activation is None else f"{activation:.1f} s of {dr['deadline_s']:g} s",
        ),
        ("  commanded / confirmed", f"{dr['commanded_kw']:,.1f} / {dr['confirmed_kw']:,.1f} kW"),
        ("  DSO informed in time", "yes" if dr["dso_confirmed"] else "no"),
    ]
    if dr["why"] is not None:
        rows.append(("  why", dr["why"]["summary"]))
    return rows


def _entries(section: object) -> list[dict[str, Any]]:
    if not isinstance(section, list):
        return []
    return [entry for entry in section if isinstance(entry, dict)]


def _aggregate_rows(query: dict[str, Any]) -> list[tuple[str, str]]:
    segment = f" in {query['segment']}" if query.get("segment") else ""
    title = (
        f"{query['function']}({query['reading']}){segment} "
        f"from {query['origin']} at {query['at_s']} s"
    )
    if query.get("value") is None and not query["answered"]:
        return [(title, "not sent (origin down)" if not query["sent"] else "no result")]
    readers = query["readers_up"]
    coverage = query.get("coverage")
    rows = [
        (title, _value(query["value"])),
        ("  truth (readers up at start)", _value(query["truth"])),
        ("  relative error", _value(query["relative_error"], "{:.3g}")),
        ("  exact", "yes" if query["exact"] else "no"),
        (
            "  contributors / readers up",
            f"{query['contributors']:,} / {readers:,}"
            + ("" if coverage is None else f" ({coverage:.2%})"),
        ),
        ("  missing / declined", f"{query['missing']:,} / {query['declined']:,}"),
    ]
    if "took_part" in query:
        per_node = query["messages_per_node"]
        rows += [
            ("  nodes that took part / up", f"{query['took_part']:,} / {query['nodes_up']:,}"),
            ("  messages per node (mean / max)", f"{per_node['mean']:.2f} / {per_node['max']:,}"),
        ]
    rows.append(("  result after", _seconds(query["seconds"])))
    return rows


def _estimate_rows(estimate: dict[str, Any]) -> list[tuple[str, str]]:
    reading = f"({estimate['reading']})" if estimate["reading"] else ""
    title = f"push-sum {estimate['function']}{reading} from {estimate['origin']}"
    if not estimate["started"]:
        return [(title, "not started (origin down)")]
    error = estimate["relative_error"]
    rows = [
        (title, _value(estimate["origin_value"])),
        ("  truth (up at start)", _value(estimate["truth"])),
        (
            "  relative error p50 / p99 / max",
            " / ".join(_value(error[k], "{:.3g}") for k in ("p50", "p99", "max")),
        ),
        (
            "  live nodes with / without a value",
            f"{estimate['nodes_with_value']:,} / {estimate['nodes_without_value']:,}",
        ),
    ]
    if "messages_per_node" in estimate:
        per_node = estimate["messages_per_node"]
        rows.append(
            ("  messages per node (mean / max)", f"{per_node['mean']:.2f} / {per_node['max']:,}")
        )
    return rows


def _value(value: object, float_format: str = "{:,.3f}") -> str:
    """A result for the table: numbers readable, vectors element by element."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return " / ".join(_value(item, float_format) for item in value)
    if isinstance(value, dict) and "pairs" in value:  # a collection, summarized
        return f"{value['pairs']:,} pairs, {value['dropped']:,} dropped"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "0" if value == 0 else float_format.format(value)
    return str(value)
