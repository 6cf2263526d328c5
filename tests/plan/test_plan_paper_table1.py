"""Seed 001 Table I (peers per Event Manager link) from the presets.

The rows below are Table I transcribed as printed (seed 001, section IV.A):
technology, download, upload, publishers, subscribers, coverage. An empty
upload/subscribers cell is the paper's merged cell for a shared channel.
Convention (docs/PLANNING.md): 800-byte (6400-bit) messages, one per second,
Mbps = 10^6 bit/s, counts truncated; a printed "1.5 k" admits 1500..1599.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import pytest

from gridmesh.plan import (
    TECHNOLOGY_GROUPS,
    TECHNOLOGY_PRESETS,
    CountRounding,
    MegabitUnit,
    PeersRow,
    PrintedCount,
    Traffic,
    compare_peers,
    format_bandwidth,
    format_coverage,
    paper_conventions,
    plan_peers,
)

SATELLITES = "Depend on number of satellites"

TABLE_I = [
    ("ethernet-10m", "10 Mbps", "10 Mbps", "1.5 k", "1.5 k", "100 m"),
    ("ethernet-100m", "100 Mbps", "100 Mbps", "15.6 k", "15.6 k", "100 m"),
    ("ethernet-1g", "1 Gbps", "1 Gbps", "156 k", "156 k", "100 m"),
    ("wifi-54m", "54 Mbps", "", "8.5 k", "", "300 m"),
    ("wifi-600m", "600 Mbps", "", "93.5 k", "", "1 km"),
    ("fiber-100m", "100 Mbps", "100 Mbps", "15.6 k", "15.6 k", "10 km"),
    ("fiber-662m", "662 Mbps", "662 Mbps", "103.4k", "103.4k", "60 km"),
    ("fiber-2448m", "2448Mbps", "2448Mbps", "382.5k", "382.5k", "60 km"),
    ("fiber-1g", "1 Gbps", "1 Gbps", "156 k", "156 k", "20 km"),
    ("dsl-8m", "8 Mbps", "1.3 Mbps", "1.2 k", "203", "4 km"),
    ("dsl-12m", "12 Mbps", "3.5 Mbps", "1.8 k", "546", "7 km"),
    ("dsl-24m", "24 Mbps", "3.3 Mbps", "3.7 k", "515", "7 km"),
    ("dsl-85m", "85 Mbps", "85 Mbps", "13.2 k", "13.2 k", "1.2 km"),
    ("dsl-200m", "200 Mbps", "200 Mbps", "31.2 k", "31.2 k", "1 km"),  # labelled WiMAX in I
    ("wimax-128m", "128 Mbps", "28 Mbps", "20 k", "4.3 k", "10 km"),
    ("wimax-1g", "1 Gbps", "1 Gbps", "156 k", "156 k", "100 km"),
    ("3g4g-14.4m", "14.4 Mbps", "5.75 Mbps", "2.2 k", "898", "5 km"),
    ("3g4g-84m", "84 Mbps", "22 Mbps", "13 k", "3.4 k", ""),
    ("3g4g-326m", "326 Mbps", "86 Mbps", "50.9 k", "13.4 k", ""),
    ("3g4g-1g", "1 Gbps", "500 Mbps", "156 k", "78 k", "100 km"),
    ("satellite-28k", "28 kbps", "", "4", "", SATELLITES),
    ("satellite-128k", "128 kbps", "", "20", "", ""),  # merged coverage cell
    ("satellite-450k", "450 kbps", "", "70", "", ""),
]
# Documented as inconsistent: no convention gives these (docs/PLANNING.md, item 1 and 2).
INCONSISTENT = {"wifi-54m", "wifi-600m"}


def paper_rows(**conventions: object) -> dict[str, PeersRow]:
    base = paper_conventions("peers")
    changed = {
        "megabit": conventions.get("megabit", base.megabit),
        "count_rounding": conventions.get("count_rounding", base.count_rounding),
    }
    technologies = [TECHNOLOGY_PRESETS[row[0]].technology for row in TABLE_I]
    rows = plan_peers(technologies, Traffic(800, Fraction(1)), replace(base, **changed))
    return {row.technology.name: row for row in rows}


def test_the_presets_are_table_i_in_the_papers_order() -> None:
    assert [row[0] for row in TABLE_I] == list(TECHNOLOGY_GROUPS["paper-table-1"])
    assert len(TABLE_I) == 23


Row = tuple[str, str, str, str, str, str]


@pytest.mark.parametrize("printed", TABLE_I, ids=[row[0] for row in TABLE_I])
def test_preset_links_print_as_table_i(printed: Row) -> None:
    name, download, upload, _, _, coverage = printed
    technology = TECHNOLOGY_PRESETS[name].technology
    assert format_bandwidth(technology.download_mbps).replace(" ", "") == download.replace(" ", "")
    if upload:
        assert not technology.shared_channel
        assert technology.upload_mbps is not None
        assert format_bandwidth(technology.upload_mbps).replace(" ", "") == upload.replace(" ", "")
    else:
        assert technology.shared_channel
    merged_satellite_cell = coverage == "" and technology.family == "Satellite"
    assert format_coverage(technology) == (SATELLITES if merged_satellite_cell else coverage)


CONSISTENT = [row for row in TABLE_I if row[0] not in INCONSISTENT]


@pytest.mark.parametrize("printed", CONSISTENT, ids=[row[0] for row in CONSISTENT])
def test_every_consistent_printed_count_is_the_truncated_count(printed: Row) -> None:
    name, _, _, pubs, subs, _ = printed
    row = paper_rows()[name]
    assert PrintedCount.parse(pubs).admits(row.publishers_max), (pubs, row.publishers_max)
    if subs:
        assert PrintedCount.parse(subs).admits(row.subscribers_max), (subs, row.subscribers_max)
    else:  # one merged cell: the shared channel's single count
        assert row.subscribers_max == row.publishers_max


def test_exact_counts_of_the_rows_that_decide_the_convention() -> None:
    rows = paper_rows()
    # 10e6 / 6400 = 1562.5 printed "1.5 k"; 3.5e6 / 6400 = 546.875 printed 546;
    # 12e6 / 6400 = 1875 printed "1.8 k"; 128e3 / 6400 = 20 printed 20 (whole shared channel).
    assert rows["ethernet-10m"].publishers_max == 1562
    assert rows["dsl-12m"].subscribers_max == 546
    assert rows["dsl-12m"].publishers_max == 1875
    assert rows["satellite-128k"].publishers_max == 20
    assert rows["3g4g-1g"].subscribers_max == 78125  # 500e6 / 6400, printed "78 k"


def test_wifi_rows_follow_no_convention_and_the_difference_is_shown() -> None:
    rows = paper_rows()
    # 54e6 / 6400 = 8437.5 -> 8437, printed "8.5 k" (8500): -63.
    # 600e6 / 6400 = 93750, printed "93.5 k" (93500): +250.
    assert rows["wifi-54m"].publishers_max == 8437
    assert rows["wifi-600m"].publishers_max == 93750
    for name, difference in (("wifi-54m", -63), ("wifi-600m", 250)):
        compared = compare_peers(rows[name])
        assert compared is not None
        publishers, subscribers = compared
        assert subscribers is None
        assert not publishers.agrees
        assert publishers.difference == difference
        assert publishers.discrepancy is not None
    # ...under binary megabits too: 54 * 2^20 / 6400 = 8847.36, 600 * 2^20 / 6400 = 98304.
    binary = paper_rows(megabit=MegabitUnit.BINARY)
    assert not PrintedCount.parse("8.5 k").admits(binary["wifi-54m"].publishers_max)
    assert not PrintedCount.parse("93.5 k").admits(binary["wifi-600m"].publishers_max)


@pytest.mark.parametrize(
    ("name", "channel", "printed", "rounded"),
    [
        ("ethernet-10m", "download", "1.5 k", 1600),  # 1562.5
        ("dsl-12m", "download", "1.8 k", 1900),  # 1875
        ("dsl-12m", "upload", "546", 547),  # 546.875
        ("dsl-24m", "upload", "515", 516),  # 515.625
    ],
)
def test_the_paper_truncates_where_rounding_would_print_another_value(
    name: str, channel: str, printed: str, rounded: int
) -> None:
    technology = TECHNOLOGY_PRESETS[name].technology
    bps = technology.download_bps if channel == "download" else technology.upload_bps
    exact = bps(MegabitUnit.DECIMAL) / 6400
    shown = PrintedCount.parse(printed)
    steps = exact / shown.resolution
    assert math.floor(steps + Fraction(1, 2)) * shown.resolution == rounded
    assert math.floor(steps) * shown.resolution == shown.value
    nearest = paper_rows(count_rounding=CountRounding.NEAREST)[name]
    truncated = paper_rows()[name]
    count = "publishers_max" if channel == "download" else "subscribers_max"
    assert getattr(truncated, count) == math.floor(exact)
    assert getattr(nearest, count) == math.floor(exact + Fraction(1, 2))


def test_binary_megabits_contradict_the_printed_counts() -> None:
    rows = paper_rows(megabit=MegabitUnit.BINARY)
    assert rows["ethernet-10m"].publishers_max == 1638  # 10 * 2^20 / 6400 = 1638.4
    assert not PrintedCount.parse("1.5 k").admits(1638)
    assert not PrintedCount.parse("70").admits(rows["satellite-450k"].publishers_max)


def test_compare_paper_agrees_on_every_row_but_the_documented_ones() -> None:
    disagreeing = set()
    for name, row in paper_rows().items():
        compared = compare_peers(row)
        assert compared is not None
        if not all(c.agrees for c in compared if c is not None):
            disagreeing.add(name)
    assert disagreeing == INCONSISTENT


def test_the_presets_carry_table_i_as_printed() -> None:
    for name, _, _, pubs, subs, coverage in TABLE_I:
        printed = TECHNOLOGY_PRESETS[name].printed
        assert printed.publishers.text == pubs
        assert (printed.subscribers.text if printed.subscribers else "") == subs
        assert printed.coverage == coverage
