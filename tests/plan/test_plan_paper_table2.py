"""Seed 001 Table II (maximum customers per actor) from the presets.

Transcribed as printed (seed 001, section V.B.1): technology, download Mbps,
customers. Convention (docs/PLANNING.md): one 800-byte report per minute per
customer, Mbps = 2^20 bit/s, counts rounded to the nearest.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest

from gridmesh.plan import (
    TECHNOLOGY_GROUPS,
    TECHNOLOGY_PRESETS,
    CountRounding,
    CustomersRow,
    MegabitUnit,
    Traffic,
    compare_customers,
    paper_conventions,
    plan_customers,
)

TABLE_II = [
    ("Optical-Fiber", 100, 983040),
    ("Optical-Fiber", 662, 6507725),
    ("Optical-Fiber", 2448, 24064819),
    ("Optical-Fiber", 1000, 9830400),
    ("DSL", 8, 78643),
    ("DSL", 12, 117965),
    ("DSL", 24, 235930),
    ("DSL", 85, 835584),
    ("DSL", 200, 1966080),
    ("WiMAX", 128, 1258291),
    ("WiMAX", 1000, 9830400),
    ("3G/4G", 14.4, 141558),
    ("3G/4G", 84, 825754),
    ("3G/4G", 326, 3204710),
    ("3G/4G", 1000, 9830400),
]
FAMILIES = {"Optical-Fiber": "Optical Fiber"}
PER_MINUTE = Fraction(1, 60)


def table_ii_rows(**conventions: object) -> list[CustomersRow]:
    names = TECHNOLOGY_GROUPS["paper-table-2"]
    technologies = [TECHNOLOGY_PRESETS[name].technology for name in names]
    chosen = replace(paper_conventions("customers"), **conventions)
    return plan_customers(technologies, Traffic(800, PER_MINUTE), chosen)


def test_table_ii_is_the_wan_rows_of_table_i_without_satellites_in_order() -> None:
    rows = table_ii_rows()
    assert [(FAMILIES.get(family, family), mbps) for family, mbps, _ in TABLE_II] == [
        (row.technology.family, row.technology.download_mbps) for row in rows
    ]


@pytest.mark.parametrize(("family", "mbps", "printed"), TABLE_II)
def test_every_printed_customer_count_is_reproduced(family: str, mbps: float, printed: int) -> None:
    matches = [row for row in table_ii_rows() if row.technology.download_mbps == mbps]
    row = next(r for r in matches if r.technology.family == FAMILIES.get(family, family))
    assert row.customers_max == printed
    compared = compare_customers(row)
    assert compared is not None and compared.agrees and compared.difference == 0


def test_customers_are_binary_megabits_times_sixty_over_6400_bits() -> None:
    # 100 * 2^20 * 60 / 6400 = 983040 exactly; decimal megabits would give 937500.
    decimal = table_ii_rows(megabit=MegabitUnit.DECIMAL)
    assert decimal[0].customers_max == 937500
    assert table_ii_rows()[0].customers_max == 983040


def test_truncation_instead_of_rounding_contradicts_five_printed_counts() -> None:
    # 662 -> 6507724.8, 12 -> 117964.8, 24 -> 235929.6, 14.4 -> 141557.76, 84 -> 825753.6
    floor = table_ii_rows(count_rounding=CountRounding.FLOOR)
    wrong = {
        row.technology.download_mbps: row.customers_max
        for row, (_, _, printed) in zip(floor, TABLE_II, strict=True)
        if row.customers_max != printed
    }
    assert wrong == {662: 6507724, 12: 117964, 24: 235929, 14.4: 141557, 84: 825753}


def test_the_presets_carry_table_ii_as_printed() -> None:
    names = TECHNOLOGY_GROUPS["paper-table-2"]
    assert [TECHNOLOGY_PRESETS[n].printed.customers for n in names] == [c for *_, c in TABLE_II]
