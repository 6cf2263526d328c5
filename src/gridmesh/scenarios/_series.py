"""The series a report holds, as tables: what the CSV files hold and the plots draw.

A report (``report.json``) keeps its curves in compact forms: 51 quantiles
per broadcast, per run, per node load. This module turns them into rows with
named columns (units last, as everywhere in gridmesh), one :class:`Series`
per plot. A series whose data the report lacks is absent from the list, so
the CSV file and the plot of it are left out together.

Three series are defined here for the grid services that produce them (demand
response, ReDy balancing, devices); a report opts in by holding the key:

- ``dr_reduction``: ``{"time_s": [...], "requested_kw": [...], "achieved_kw": [...]}``
- ``imbalance``: ``{"time_s": [...], "imbalance_kw": [...]}`` and optionally
  ``"centralized_optimum_kw": [...]``
- ``load_shifted``: ``{"time_s": [...], "shifted_kw": [...]}``, the load devices
  moved earlier in answer to their rules' commands (``[devices]``, _devices.py)

Columns are equally long lists; ``time_s`` holds numbers, the others numbers
or ``null`` (no value at that time). docs/SCENARIOS.md, "Reports", is the
reference for both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridmesh.scenarios._report import rounded

__all__ = ["TIME_SERIES", "Cell", "Series", "numbers", "report_series"]

Cell = str | int | float | None

# Report key -> (required value columns, optional value columns); ``time_s`` comes first.
TIME_SERIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dr_reduction": (("requested_kw", "achieved_kw"), ()),
    "imbalance": (("imbalance_kw",), ("centralized_optimum_kw",)),
    "load_shifted": (("shifted_kw",), ()),
}


@dataclass(frozen=True, slots=True)
class Series:
    """One table: ``name`` is the CSV file's stem and the plot's key."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def column(self, name: str) -> list[Cell]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def report_series(report: dict[str, Any]) -> list[Series]:
    """Every series ``report`` has data for, in page order."""
    found = [
        _delivery(report),
        _quantiles(
            report.get("latency_cdf_s"), "latency_cdf", "fraction_of_deliveries", "latency_s"
        ),
        _quantiles(
            report.get("messages_per_node_cdf"),
            "load_per_node",
            "fraction_of_nodes",
            "messages_sent",
        ),
    ]
    found += [_time_series(report, key) for key in TIME_SERIES]
    return [series for series in found if series is not None]


def _delivery(report: dict[str, Any]) -> Series | None:
    """Share of each broadcast's live targets reached, against time since it was sent."""
    rows: list[tuple[Cell, ...]] = []
    for index, broadcast in enumerate(report.get("per_broadcast") or ()):
        quantiles = broadcast.get("latency_cdf_s")
        ratio = broadcast.get("delivery_ratio")
        if not _curve(quantiles) or ratio is None:
            continue  # nothing delivered (or nobody to deliver to): no curve
        steps = len(quantiles) - 1
        at_s = broadcast["at_s"]
        rows += [
            (
                index,
                at_s,
                broadcast["origin"],
                broadcast["topic"],
                latency_s,
                rounded(at_s + latency_s),
                rounded(ratio * k / steps),
            )
            for k, latency_s in enumerate(quantiles)
        ]
    if not rows:
        return None
    columns = (
        "broadcast_index",
        "at_s",
        "origin",
        "topic",
        "time_after_broadcast_s",
        "time_s",
        "reached_fraction",
    )
    return Series("delivery", columns, tuple(rows))


def _quantiles(quantiles: object, name: str, fraction: str, value: str) -> Series | None:
    """A 0, 2, ..., 100% quantile list as (fraction, value) rows."""
    if not _curve(quantiles):
        return None
    assert isinstance(quantiles, list)
    steps = len(quantiles) - 1
    rows = tuple((rounded(k / steps), quantile) for k, quantile in enumerate(quantiles))
    return Series(name, (fraction, value), rows)


def _curve(quantiles: object) -> bool:
    return (
        isinstance(quantiles, list)
        and len(quantiles) >= 2
        and all(_is_number(q) for q in quantiles)
    )


def _time_series(report: dict[str, Any], key: str) -> Series | None:
    """``report[key]``, checked: a report that breaks the documented shape is a bug."""
    section = report.get(key)
    if section is None:
        return None
    required, optional = TIME_SERIES[key]
    if not isinstance(section, dict):
        raise ValueError(f"report[{key!r}] must be an object of columns, got {section!r:.80}")
    names = ("time_s", *required, *(name for name in optional if name in section))
    unknown = sorted(set(section) - {"time_s", *required, *optional})
    missing = [name for name in names if name not in section]
    if unknown or missing:
        raise ValueError(
            f"report[{key!r}] needs columns {['time_s', *required]} (optional: {list(optional)}); "
            f"missing {missing}, unknown {unknown}"
        )
    columns = [section[name] for name in names]
    length = len(columns[0]) if isinstance(columns[0], list) else -1
    for name, column in zip(names, columns, strict=True):
        if not isinstance(column, list) or len(column) != length:
            raise ValueError(f"report[{key!r}][{name!r}] must be a list as long as 'time_s'")
        allowed = _is_number if name == "time_s" else _is_number_or_null
        if not all(allowed(cell) for cell in column):
            raise ValueError(
                f"report[{key!r}][{name!r}] must hold "
                + ("numbers" if name == "time_s" else "numbers or null")
            )
    if length == 0:
        return None
    return Series(key, names, tuple(zip(*columns, strict=True)))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_number_or_null(value: object) -> bool:
    return value is None or _is_number(value)


def numbers(cells: Sequence[Cell]) -> list[float]:
    """A column for plotting: None (no value) becomes NaN, a gap in the line."""
    values = []
    for cell in cells:
        assert not isinstance(cell, str), "a text column is not plotted"
        values.append(math.nan if cell is None else float(cell))
    return values
