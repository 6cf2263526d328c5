"""Set a plan beside what seed 001 printed for the same preset, row by row.

A comparison exists only where it means something: the row's technology or
region is an unmodified preset, and the traffic is the paper's (800-byte
messages, one per second for Table I, one per minute for Tables II and III,
no gridmesh overhead; the CLI checks this). Conventions may differ: that is
how a planner sees what, say, decimal megabits would have printed.

An exact printed integer agrees when it equals the computed count; a Table I
count agrees when it is the computed count truncated to the printed digits
(``PrintedCount.admits``). ``difference`` is always computed minus printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from gridmesh.plan._capacity import CustomersRow, PeersRow, SubsystemsPlan, SubsystemsRow
from gridmesh.plan._presets import (
    PAPER_UK_TOTAL,
    TECHNOLOGY_GROUPS,
    TECHNOLOGY_PRESETS,
    UK_DSO_REGIONS,
    PrintedRegionRow,
    region_preset,
    technology_preset,
)
from gridmesh.plan._printed import PrintedCount
from gridmesh.plan._units import MegabyteUnit, format_fixed

__all__ = [
    "PAPER_MESSAGES_PER_SECOND",
    "PAPER_MESSAGE_BYTES",
    "Comparison",
    "RegionComparison",
    "compare_customers",
    "compare_peers",
    "compare_regions",
]

#: Seed 001, IV.A: "our middleware event message size, which is almost 800 bytes".
PAPER_MESSAGE_BYTES = 800
#: Table I: one message per second per peer; Tables II and III: one per minute.
PAPER_MESSAGES_PER_SECOND = {
    "peers": Fraction(1),
    "customers": Fraction(1, 60),
    "subsystems": Fraction(1, 60),
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One computed value beside the paper's printed one."""

    printed: str
    computed: str
    agrees: bool
    difference: Fraction  # computed minus printed
    discrepancy: str | None = None  # documented reason, where the paper follows no convention


def _count(printed: PrintedCount, computed: int, discrepancy: str | None) -> Comparison:
    agrees = printed.admits(computed)
    return Comparison(
        printed.text, str(computed), agrees, printed.difference(computed), discrepancy
    )


def _exact(printed: int, computed: int, discrepancy: str | None = None) -> Comparison:
    return Comparison(
        str(printed), str(computed), printed == computed, Fraction(computed - printed), discrepancy
    )


def compare_peers(row: PeersRow) -> tuple[Comparison, Comparison | None] | None:
    """Table I's printed publishers and subscribers for an unmodified preset row."""
    preset = technology_preset(row.technology.name)
    if preset is None or preset.technology != row.technology:
        return None
    printed = preset.printed
    publishers = _count(printed.publishers, row.publishers_max, printed.discrepancy)
    if printed.subscribers is None:
        return publishers, None
    return publishers, _count(printed.subscribers, row.subscribers_max, printed.discrepancy)


def compare_customers(row: CustomersRow) -> Comparison | None:
    """Table II's printed customers for an unmodified preset row that Table II has."""
    preset = technology_preset(row.technology.name)
    if preset is None or preset.technology != row.technology:
        return None
    if preset.printed.customers is None:
        return None
    return _exact(preset.printed.customers, row.customers_max)


@dataclass(frozen=True, slots=True)
class RegionComparison:
    customers: Comparison
    megabytes_per_minute: Comparison
    subsystems: Comparison | None  # None unless averaged over Table II's technologies


def _region(
    row: SubsystemsRow, printed: PrintedRegionRow, megabyte: MegabyteUnit, *, averaged: bool
) -> RegionComparison:
    megabytes = format_fixed(row.bytes_per_minute / megabyte.bytes, 2)
    subsystems = _exact(printed.subsystems, row.subsystems, printed.discrepancy)
    return RegionComparison(
        customers=_exact(printed.customers, row.customers, printed.discrepancy),
        megabytes_per_minute=Comparison(
            printed.megabytes_per_minute,
            megabytes,
            megabytes == printed.megabytes_per_minute,
            Fraction(megabytes) - Fraction(printed.megabytes_per_minute),
        ),
        subsystems=subsystems if averaged else None,
    )


def compare_regions(plan: SubsystemsPlan, megabyte: MegabyteUnit) -> dict[str, RegionComparison]:
    """Table III's printed rows, by region name, for unmodified preset regions.

    Subsystems are compared only when averaged over exactly Table II's technologies,
    and the TOTAL row only when the plan's regions are exactly Table III's.
    """
    paper = [TECHNOLOGY_PRESETS[name].technology for name in TECHNOLOGY_GROUPS["paper-table-2"]]
    averaged = list(plan.technologies) == paper
    compared: dict[str, RegionComparison] = {}
    for row in plan.rows:
        preset = region_preset(row.name)
        if preset is not None and preset.region.customer_count == row.customers:
            compared[row.name] = _region(row, preset.printed, megabyte, averaged=averaged)
    all_of_table_iii = [r.name for r in plan.rows] == [p.region.name for p in UK_DSO_REGIONS]
    if plan.total is not None and all_of_table_iii and len(compared) == len(UK_DSO_REGIONS):
        compared[plan.total.name] = _region(plan.total, PAPER_UK_TOTAL, megabyte, averaged=averaged)
    return compared
