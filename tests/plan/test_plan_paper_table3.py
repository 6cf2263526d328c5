"""Seed 001 Table III (subsystems per UK DSO region) from the presets.

Transcribed as printed (seed 001, section V.B.2): region, customers, MBytes
per minute, subsystems; and the TOTAL row.

Method under test (docs/PLANNING.md, "Table III's subsystems"): one 800-byte
report per minute per customer; Mbps = 2^20 bit/s; for each of the 15 WAN
technologies of Table II the ratio region load / download bandwidth; the mean
of the 15 ratios, rounded up. It gives 13 regions exactly and Southern England
one more than printed (17.148 -> 18, printed 17); the TOTAL is 82 against a
printed 80, and its customers 31962943 (the sum of the printed rows) against
a printed 31962942. These differences are asserted, not hidden.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from gridmesh.plan import (
    PAPER_UK_TOTAL,
    TECHNOLOGY_GROUPS,
    TECHNOLOGY_PRESETS,
    UK_DSO_REGIONS,
    MegabyteUnit,
    SubsystemsPlan,
    Traffic,
    compare_regions,
    format_fixed,
    paper_conventions,
    plan_subsystems,
)

TABLE_III = [
    ("East England", 2084080, "1590.03", 6),
    ("East Midlands", 1703343, "1299.55", 5),
    ("London", 1274319, "972.23", 4),
    ("North Wales, Merseyside and Cheshire", 325692, "248.48", 1),
    ("West Midlands", 547180, "417.47", 2),
    ("North East England", 936528, "714.51", 3),
    ("North West England", 1543985, "1177.97", 4),
    ("North Scotland", 4272092, "3259.35", 11),
    ("South Scotland", 4272092, "3259.35", 11),
    ("South East England", 2081355, "1587.95", 6),
    ("Southern England", 6762578, "5159.44", 17),
    ("South Wales", 2264911, "1727.99", 6),
    ("South West England", 2597361, "1981.63", 7),
    ("Yorkshire", 1297427, "989.86", 4),
]
TOTAL = ("TOTAL", 31962942, "24385.79", 80)
# computed minus printed, with the documented method; every other region: 0.
SUBSYSTEM_DIFFERENCES = {"Southern England": 1}
TOTAL_SUBSYSTEMS_DIFFERENCE = 2  # 81.050 -> 82, printed 80
TOTAL_CUSTOMERS_DIFFERENCE = 1  # rows sum to 31962943, printed 31962942


@pytest.fixture(scope="module")
def plan() -> SubsystemsPlan:
    names = TECHNOLOGY_GROUPS["paper-table-2"]
    return plan_subsystems(
        [preset.region for preset in UK_DSO_REGIONS],
        [TECHNOLOGY_PRESETS[name].technology for name in names],
        Traffic(800, Fraction(1, 60)),
        paper_conventions("subsystems"),
    )


def test_the_presets_are_the_14_dso_regions_in_order(plan: SubsystemsPlan) -> None:
    assert [row.name for row in plan.rows] == [name for name, *_ in TABLE_III]
    assert len(plan.technologies) == 15


@pytest.mark.parametrize(("name", "customers", "megabytes", "subsystems"), TABLE_III)
def test_customers_and_megabytes_per_minute_are_reproduced(
    plan: SubsystemsPlan, name: str, customers: int, megabytes: str, subsystems: int
) -> None:
    row = next(r for r in plan.rows if r.name == name)
    assert row.customers == customers
    # customers * 800 / 2^20, two decimals: 2084080 * 800 / 2^20 = 1590.0269 -> 1590.03
    assert format_fixed(row.bytes_per_minute / MegabyteUnit.BINARY.bytes, 2) == megabytes


@pytest.mark.parametrize(("name", "customers", "megabytes", "subsystems"), TABLE_III)
def test_subsystems_are_within_one_with_the_documented_differences(
    plan: SubsystemsPlan, name: str, customers: int, megabytes: str, subsystems: int
) -> None:
    row = next(r for r in plan.rows if r.name == name)
    assert row.subsystems - subsystems == SUBSYSTEM_DIFFERENCES.get(name, 0)
    assert abs(row.subsystems - subsystems) <= 1


def test_southern_england_mean_ratio_rounds_up_past_the_printed_count(
    plan: SubsystemsPlan,
) -> None:
    row = next(r for r in plan.rows if r.name == "Southern England")
    # 6762578 * 6400 / 60 bit/s over the 15 capacities: mean 17.148 (harmonic-mean link).
    assert format_fixed(row.average, 3) == "17.148"
    assert row.subsystems == 18


def test_the_total_row_and_its_documented_differences(plan: SubsystemsPlan) -> None:
    total = plan.total
    assert total is not None
    _, customers, megabytes, subsystems = TOTAL
    assert total.customers == sum(c for _, c, _, _ in TABLE_III) == 31962943
    assert total.customers - customers == TOTAL_CUSTOMERS_DIFFERENCE
    assert format_fixed(total.bytes_per_minute / MegabyteUnit.BINARY.bytes, 2) == megabytes
    assert format_fixed(total.average, 3) == "81.050"
    assert total.subsystems - subsystems == TOTAL_SUBSYSTEMS_DIFFERENCE


def test_the_printed_total_counts_scotland_as_exact_halves() -> None:
    # 78387 km2 * 109 houses/km2 = 8544183; halves 4272091.5, printed rounded up.
    others = sum(c for n, c, _, _ in TABLE_III if "Scotland" not in n)
    assert others + 78387 * 109 == TOTAL[1]


def test_compare_paper_reports_exactly_the_documented_differences(plan: SubsystemsPlan) -> None:
    compared = compare_regions(plan, MegabyteUnit.BINARY)
    assert len(compared) == 15
    found = {}
    for name, comparison in compared.items():
        assert comparison.megabytes_per_minute.agrees
        assert comparison.subsystems is not None
        if name != "TOTAL":
            assert comparison.customers.agrees
        if not comparison.subsystems.agrees:
            found[name] = comparison.subsystems.difference
    assert found == {"Southern England": 1, "TOTAL": 2}
    assert compared["TOTAL"].customers.difference == 1
    assert compared["TOTAL"].subsystems is not None
    assert compared["TOTAL"].subsystems.discrepancy is not None


def test_the_presets_carry_table_iii_as_printed() -> None:
    printed = [
        (p.region.name, p.printed.customers, p.printed.megabytes_per_minute, p.printed.subsystems)
        for p in UK_DSO_REGIONS
    ]
    assert printed == TABLE_III
    assert (
        PAPER_UK_TOTAL.customers,
        PAPER_UK_TOTAL.megabytes_per_minute,
        PAPER_UK_TOTAL.subsystems,
    ) == TOTAL[1:]
