"""The planner answers for any links, message sizes, rates and regions.

Every expected value here is computed by hand in the comment beside it.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import ValidationError

from gridmesh.plan import (
    Conventions,
    CountRounding,
    MegabitUnit,
    MegabyteUnit,
    Region,
    SubsystemAverage,
    SubsystemRounding,
    Technology,
    Traffic,
    format_fixed,
    plan_customers,
    plan_peers,
    plan_subsystems,
)


def conventions(
    megabit: MegabitUnit = MegabitUnit.DECIMAL,
    rounding: CountRounding = CountRounding.FLOOR,
    average: SubsystemAverage = SubsystemAverage.RATIO_MEAN,
    subsystem_rounding: SubsystemRounding = SubsystemRounding.CEIL,
    megabyte: MegabyteUnit = MegabyteUnit.BINARY,
) -> Conventions:
    return Conventions(megabit, megabyte, rounding, average, subsystem_rounding)


LTE = Technology(name="lte", download_mbps=150, upload_mbps=50)
MESH = Technology(name="mesh", download_mbps=300, shared_channel=True)


def test_peers_for_a_link_with_two_channels() -> None:
    # 1000-byte messages, 2 per second: 16000 bit/s per peer.
    # 150e6 / 16000 = 9375 publishers; 50e6 / 16000 = 3125 subscribers.
    (row,) = plan_peers([LTE], Traffic(1000, Fraction(2)), conventions())
    assert (row.publishers_max, row.subscribers_max) == (9375, 3125)


def test_peers_with_binary_megabits_truncate() -> None:
    # 150 * 2^20 / 16000 = 9830.4 -> 9830; 50 * 2^20 / 16000 = 3276.8 -> 3276.
    (row,) = plan_peers([LTE], Traffic(1000, Fraction(2)), conventions(MegabitUnit.BINARY))
    assert (row.publishers_max, row.subscribers_max) == (9830, 3276)


def test_a_shared_channel_has_one_count_for_publishers_and_subscribers() -> None:
    # 500-byte messages, 10 per minute: 4000 * 10 / 60 = 666.67 bit/s per peer;
    # 300e6 / 666.67 = 450000 peers in the one channel.
    (row,) = plan_peers([MESH], Traffic(500, Fraction(10, 60)), conventions())
    assert row.publishers_max == row.subscribers_max == 450000


def test_customers_round_to_the_nearest_or_truncate() -> None:
    one_mbps = Technology(name="slow", download_mbps=1, upload_mbps=1)
    # 1200-byte reports once a minute: 9600 / 60 = 160 bit/s per customer;
    # 1 * 2^20 / 160 = 6553.6 -> nearest 6554, floor 6553.
    traffic = Traffic(1200, Fraction(1, 60))
    nearest = plan_customers(
        [one_mbps], traffic, conventions(MegabitUnit.BINARY, CountRounding.NEAREST)
    )
    floor = plan_customers(
        [one_mbps], traffic, conventions(MegabitUnit.BINARY, CountRounding.FLOOR)
    )
    assert nearest[0].customers_max == 6554
    assert floor[0].customers_max == 6553


def test_a_link_too_slow_for_one_sender_serves_nobody() -> None:
    tiny = Technology(name="tiny", download_mbps=0.001, upload_mbps=0.001)
    # 1000 bit/s over 8000-bit messages once a second: 0.125 -> 0.
    (row,) = plan_peers([tiny], Traffic(1000, Fraction(1)), conventions())
    assert row.publishers_max == 0
    assert row.gossip.node_bits_per_second == 0


T10 = Technology(name="t10", download_mbps=10, upload_mbps=10)
T40 = Technology(name="t40", download_mbps=40, upload_mbps=40)
REGIONS = [Region(name="A", customers=100_000), Region(name="B", customers=250_000)]
# 1000-byte reports once a minute: 8000 / 60 bit/s per customer; binary megabits:
# A: load 13,333,333.3 bit/s; / (10 * 2^20) = 1.2716, / (40 * 2^20) = 0.3179
# B: load 33,333,333.3 bit/s; ratios 3.1789 and 0.7947
# TOTAL 350000: ratios 4.4505 and 1.1126
PER_MINUTE = Traffic(1000, Fraction(1, 60))


def test_subsystems_average_the_ratios_then_round_up() -> None:
    plan = plan_subsystems(REGIONS, [T10, T40], PER_MINUTE, conventions(MegabitUnit.BINARY))
    a, b = plan.rows
    assert plan.total is not None
    # mean ratios: A 0.7947 -> 1; B 1.9868 -> 2; TOTAL 2.7816 -> 3
    assert [format_fixed(r.average, 4) for r in (a, b, plan.total)] == [
        "0.7947",
        "1.9868",
        "2.7816",
    ]
    assert [r.subsystems for r in (a, b, plan.total)] == [1, 2, 3]
    assert (a.per_technology, b.per_technology, plan.total.per_technology) == (
        (2, 1),
        (4, 1),
        (5, 2),
    )


def test_subsystems_averaging_the_rounded_counts_instead() -> None:
    chosen = conventions(MegabitUnit.BINARY, average=SubsystemAverage.COUNT_MEAN)
    plan = plan_subsystems(REGIONS, [T10, T40], PER_MINUTE, chosen)
    assert plan.total is not None
    # A (2 + 1) / 2 = 1.5 -> 2; B (4 + 1) / 2 = 2.5 -> 3; TOTAL (5 + 2) / 2 = 3.5 -> 4
    assert [r.subsystems for r in (*plan.rows, plan.total)] == [2, 3, 4]
    nearest = plan_subsystems(
        REGIONS,
        [T10, T40],
        PER_MINUTE,
        conventions(
            MegabitUnit.BINARY,
            average=SubsystemAverage.COUNT_MEAN,
            subsystem_rounding=SubsystemRounding.NEAREST,
        ),
    )
    # per technology rounded to the nearest: A (1 + 0) / 2 = 0.5 -> 1 (half up); B (3 + 1) / 2 = 2
    assert [r.per_technology for r in nearest.rows] == [(1, 0), (3, 1)]
    assert [r.subsystems for r in nearest.rows] == [1, 2]


def test_megabytes_per_minute_in_either_unit() -> None:
    binary = plan_subsystems(REGIONS, [T10], PER_MINUTE, conventions())
    # A: 100000 * 1000 bytes = 1e8 bytes; / 2^20 = 95.367 -> 95.37; / 10^6 = 100.00
    assert format_fixed(binary.rows[0].bytes_per_minute / MegabyteUnit.BINARY.bytes, 2) == "95.37"
    assert format_fixed(binary.rows[0].bytes_per_minute / MegabyteUnit.DECIMAL.bytes, 2) == "100.00"


def test_one_region_has_no_total_row() -> None:
    plan = plan_subsystems(REGIONS[:1], [T10], PER_MINUTE, conventions())
    assert plan.total is None


def test_a_region_given_by_area_uses_house_density() -> None:
    # 3563 km2 * 79 houses/km2 = 281477; the paper's 109/km2 by default: 19120 * 109 = 2084080.
    assert Region(name="Cornwall", area_km2=3563, houses_per_km2=79).customer_count == 281477
    assert Region(name="East England", area_km2=19120).customer_count == 2084080
    # half a house rounds up: 39193.5 * 109 = 4272091.5 -> 4272092 (Table III's Scotland)
    assert Region(name="North Scotland", area_km2=39193.5).customer_count == 4272092


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x", "download_mbps": -5, "upload_mbps": 1},
        {"name": "x", "download_mbps": 5, "upload_mbps": 0},
        {"name": "x", "download_mbps": 5},
        {"name": "x", "download_mbps": 5, "upload_mbps": 2, "shared_channel": True},
        {"name": "bad name", "download_mbps": 5, "upload_mbps": 5},
        {"name": "x", "download_mbps": float("inf"), "upload_mbps": 5},
    ],
)
def test_technologies_refuse_impossible_links(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Technology.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x"},
        {"name": "x", "customers": 10, "area_km2": 1},
        {"name": "x", "customers": 0},
        {"name": "x", "area_km2": -1},
    ],
)
def test_regions_need_exactly_one_positive_size(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Region.model_validate(fields)
