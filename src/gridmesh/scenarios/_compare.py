"""Several scenarios side by side: one table, one JSON file, three plots.

``gridmesh compare A.toml B.toml ...`` runs each scenario (same seed unless a
file says otherwise and ``--seed`` is not given) and lines up what seeds 000
and 002 compare: delivery, latency, load at the origin and at the busiest
node, duplicates and link stress. Figures of the *last* broadcast of each
scenario are its steady state (a tree floods on its first broadcast); the
delivery ratio covers every broadcast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from gridmesh.scenarios._runner import run_scenario
from gridmesh.scenarios._schema import Scenario

__all__ = ["comparison_rows", "render_comparison", "run_comparison", "write_comparison"]


def run_comparison(
    scenarios: Sequence[Scenario],
    *,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every scenario; returns their reports, in order."""
    reports = []
    for scenario in scenarios:
        if progress is not None:
            progress(scenario.name)
        reports.append(run_scenario(scenario, seed=seed))
    return reports


def comparison_rows(
    scenarios: Sequence[Scenario], reports: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One flat row of comparable figures per scenario."""
    rows = []
    for scenario, report in zip(scenarios, reports, strict=True):
        last = report["per_broadcast"][-1] if report["per_broadcast"] else {}
        stress = last.get("link_stress") or {}
        busiest = report["busiest_node"]
        rows.append(
            {
                "scenario": scenario.name.removeprefix("compare-"),
                "mode": scenario.node.gossip.mode
                + ("/forever" if scenario.node.gossip.infection == "forever" else ""),
                "membership": scenario.node.membership.kind,
                "nodes": report["nodes"],
                "broadcasts": report["broadcasts"],
                "delivery_ratio": report["delivery_ratio"],
                "last_delivery_ratio": last.get("delivery_ratio"),
                "last_latency_p50_s": (last.get("latency_s") or {}).get("p50"),
                "last_latency_p99_s": (last.get("latency_s") or {}).get("p99"),
                "last_latency_cdf_s": last.get("latency_cdf_s"),
                "last_payload_copies": stress.get("copies"),
                "messages_per_node": report["messages_per_node"]["mean"],
                "origin_messages_sent": report["origin_messages_sent"],
                "origin_bytes_sent": report["origin_bytes_sent"],
                "busiest_messages_sent": busiest["messages_sent"],
                "busiest_bytes_sent": busiest["bytes_sent"],
                "duplicates_per_delivery": report["duplicates_per_delivery"],
                "last_link_stress_mean": stress.get("mean"),
                "last_link_stress_max": stress.get("max"),
                "last_router_link_stress_mean": stress.get("router_mean"),
            }
        )
    return rows


def render_comparison(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(title="dissemination compared (last broadcast = steady state)")
    columns: list[tuple[str, str | None, Callable[[object], str] | None]] = [
        ("scenario", "scenario", str),
        ("mode", "mode", str),
        ("delivery", "delivery_ratio", _percent),
        ("p50 / p99", None, None),
        ("copies", "last_payload_copies", _count),
        ("msgs/node", "messages_per_node", _number),
        ("origin msgs", "origin_messages_sent", _count),
        ("busiest msgs", "busiest_messages_sent", _count),
        ("dup/deliv", "duplicates_per_delivery", _number),
        ("stress mean/max", None, None),
    ]
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title in ("scenario", "mode") else "right")
    for row in rows:
        cells = []
        for title, key, show in columns:
            if title == "p50 / p99":
                cells.append(f"{_ms(row['last_latency_p50_s'])} / {_ms(row['last_latency_p99_s'])}")
            elif title == "stress mean/max":
                cells.append(
                    f"{_number(row['last_link_stress_mean'])} / "
                    f"{_count(row['last_link_stress_max'])}"
                )
            else:
                assert key is not None and show is not None
                cells.append(show(row[key]))
        table.add_row(*cells)
    return table


def write_comparison(
    rows: Sequence[dict[str, Any]], reports: Sequence[dict[str, Any]], directory: Path
) -> list[Path]:
    """``comparison.json`` (rows and whole reports) and three PNG plots."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "comparison.json"
    path.write_text(
        json.dumps({"rows": list(rows), "reports": list(reports)}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return [path, *_plots(rows, directory)]


def _plots(rows: Sequence[dict[str, Any]], directory: Path) -> list[Path]:
    # Plotting is the only use of matplotlib: nodes and plain runs never load it.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = [row["scenario"].removeprefix("compare-") for row in rows]
    written = []

    figure, axes = plt.subplots(figsize=(8, 5))
    for name, row in zip(names, rows, strict=True):
        cdf = row["last_latency_cdf_s"]
        ratio = row["last_delivery_ratio"]
        if not cdf or cdf[0] is None or ratio is None:
            continue
        steps = len(cdf) - 1
        axes.step(cdf, [ratio * k / steps for k in range(steps + 1)], where="post", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("seconds after the broadcast (log)")
    axes.set_ylabel("share of live targets reached")
    axes.set_title("Delivery vs time (last broadcast)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    written.append(_save(figure, directory / "delivery.png"))

    figure, axes = plt.subplots(figsize=(8, 5))
    positions = range(len(rows))
    axes.bar(
        [p - 0.2 for p in positions],
        [row["origin_messages_sent"] for row in rows],
        width=0.4,
        label="origin",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [row["busiest_messages_sent"] for row in rows],
        width=0.4,
        label="busiest node",
    )
    axes.set_yscale("log")
    axes.set_xticks(list(positions), names, rotation=30, ha="right")
    axes.set_ylabel("messages sent in the run (log)")
    axes.set_title("Load at the origin and at the busiest node")
    axes.legend()
    written.append(_save(figure, directory / "origin-load.png"))

    figure, axes = plt.subplots(figsize=(8, 5))
    axes.bar(
        [p - 0.2 for p in positions],
        [row["last_link_stress_mean"] or 0 for row in rows],
        width=0.4,
        label="mean over links used",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [row["last_router_link_stress_mean"] or 0 for row in rows],
        width=0.4,
        label="mean over router links used",
    )
    axes.set_yscale("log")
    axes.set_xticks(list(positions), names, rotation=30, ha="right")
    axes.set_ylabel("copies of one message per link (log)")
    axes.set_title("Link stress (last broadcast)")
    axes.legend()
    written.append(_save(figure, directory / "link-stress.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(figure)
    return path


def _percent(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{100 * value:.3f}%"


def _count(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.0f}"


def _number(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.2f}"


def _ms(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{1000 * value:.0f} ms"
