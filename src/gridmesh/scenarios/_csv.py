"""CSV files beside ``report.json``: one per series, plus ``summary.csv``.

Headers name each column with its unit last (``latency_s``, ``requested_kw``);
fractions are 0..1. Cells are written as Python writes them (``repr`` of a
float is exact and the same everywhere), booleans as ``true``/``false`` and
``null`` as an empty cell, lines end with ``\\n``: equal reports give equal bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gridmesh.scenarios._series import TIME_SERIES, Cell, Series, report_series

__all__ = ["CSV_NAMES", "summary_rows", "write_csvs"]

# Every CSV file a run may write: a stale one from an earlier run is removed.
CSV_NAMES = ("summary", "delivery", "latency_cdf", "load_per_node", *TIME_SERIES)

# Report keys whose lists are series with a CSV of their own, not summary figures.
_SERIES_KEYS = frozenset({"latency_cdf_s", "messages_per_node_cdf", *TIME_SERIES})


def write_csvs(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write ``summary.csv`` and a CSV per series the report has; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    tables = [Series("summary", ("metric", "value"), tuple(summary_rows(report)))]
    tables += report_series(report)
    written = []
    for table in tables:
        path = directory / f"{table.name}.csv"
        path.write_text(_csv_text(table), encoding="utf-8")
        written.append(path)
    names = {table.name for table in tables}
    for stale in CSV_NAMES:
        if stale not in names:
            (directory / f"{stale}.csv").unlink(missing_ok=True)
    return written


def summary_rows(report: dict[str, Any]) -> Iterator[tuple[str, Cell]]:
    """Every figure of ``report`` by its path (``latency_s.p50``, ``aggregates[0].value[2]``).

    The series that have a CSV file of their own are left out.
    """
    for key in sorted(report):
        if key not in _SERIES_KEYS:
            yield from _flatten(key, report[key])


def _flatten(path: str, value: object) -> Iterator[tuple[str, Cell]]:
    if isinstance(value, dict):
        for key in sorted(value):
            if not (path.startswith("per_broadcast[") and key == "latency_cdf_s"):
                yield from _flatten(f"{path}.{key}", value[key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(f"{path}[{index}]", item)
    else:
        assert value is None or isinstance(value, str | int | float), f"{path}: {value!r}"
        yield path, value


def _csv_text(table: Series) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([_cell(cell) for cell in row] for row in table.rows)
    return buffer.getvalue()


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
