"""ReDy balancing's domain half (gridmesh.grid._balancing): units, the local rule, the optimum."""

from __future__ import annotations

import math
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmesh.errors import LocalProtocolError
from gridmesh.grid import (
    DEVICE_PROFILES,
    DeviceKind,
    GovernanceUnit,
    HomeSpec,
    UnitKind,
    UnitMix,
    balancing_share,
    central_optimum_kw,
    draw_unit,
    draw_units,
    output_factor,
    realized_action_kw,
    unit_action_kw,
)

MIX = UnitMix(consumers=0.5, prosumers=0.4, producers=0.1)


def test_a_shortfall_asks_every_unit_to_lower_by_the_same_share() -> None:
    assert balancing_share(30.0, raise_kw=500.0, lower_kw=120.0) == pytest.approx(-0.25)
    assert unit_action_kw(-0.25, raise_kw=4.0, lower_kw=2.0) == pytest.approx(-0.5)


def test_a_surplus_asks_every_unit_to_raise_by_the_same_share() -> None:
    assert balancing_share(-30.0, raise_kw=120.0, lower_kw=500.0) == pytest.approx(0.25)
    assert unit_action_kw(0.25, raise_kw=4.0, lower_kw=2.0) == pytest.approx(1.0)


def test_scarce_or_unknown_flexibility_asks_for_all_of_it() -> None:
    assert balancing_share(30.0, raise_kw=0.0, lower_kw=10.0) == -1.0
    assert balancing_share(30.0, raise_kw=0.0, lower_kw=0.0) == -1.0
    assert balancing_share(-30.0, raise_kw=0.0, lower_kw=9.0) == 1.0
    assert balancing_share(0.0, raise_kw=5.0, lower_kw=5.0) == 0.0


def test_the_central_optimum_is_what_flexibility_cannot_cover() -> None:
    assert central_optimum_kw(30.0, raise_kw=0.0, lower_kw=10.0) == 20.0
    assert central_optimum_kw(30.0, raise_kw=0.0, lower_kw=40.0) == 0.0
    assert central_optimum_kw(-30.0, raise_kw=12.0, lower_kw=0.0) == -18.0
    assert central_optimum_kw(-30.0, raise_kw=31.0, lower_kw=0.0) == 0.0


def test_a_set_point_is_clamped_to_the_flexibility_of_the_moment() -> None:
    assert realized_action_kw(3.0, raise_kw=2.0, lower_kw=1.0) == 2.0
    assert realized_action_kw(-3.0, raise_kw=2.0, lower_kw=1.0) == -1.0
    assert realized_action_kw(0.5, raise_kw=2.0, lower_kw=1.0) == 0.5


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 60), factor=st.floats(0.0, 1.0))
def test_units_that_know_the_exact_totals_leave_exactly_the_central_optimum(
    seed: int, count: int, factor: float
) -> None:
    units = draw_units(count, MIX, Random(seed))
    imbalance = math.fsum(u.net_kw(factor) for u in units)
    up = math.fsum(u.raise_kw(factor) for u in units)
    down = math.fsum(u.lower_kw for u in units)
    share = balancing_share(imbalance, up, down)
    actions = [unit_action_kw(share, u.raise_kw(factor), u.lower_kw) for u in units]
    for unit, action in zip(units, actions, strict=True):
        assert -unit.lower_kw - 1e-9 <= action <= unit.raise_kw(factor) + 1e-9
    achieved = imbalance + math.fsum(actions)
    optimum = central_optimum_kw(imbalance, up, down)
    assert achieved == pytest.approx(optimum, abs=1e-6 * (1.0 + up + down)), seed


def test_a_unit_is_drawn_from_its_stream_alone() -> None:
    first = [draw_unit(MIX, Random(f"unit:{i}")) for i in range(50)]
    again = [draw_unit(MIX, Random(f"unit:{i}")) for i in range(50)]
    assert first == again
    assert first != [draw_unit(MIX, Random(f"other:{i}")) for i in range(50)]


def test_drawn_units_follow_the_mix_and_the_device_profiles() -> None:
    units = draw_units(4000, MIX, Random(7))
    kinds = {kind: sum(u.kind is kind for u in units) for kind in UnitKind}
    assert 1800 < kinds[UnitKind.CONSUMER] < 2200
    assert 1400 < kinds[UnitKind.PROSUMER] < 1800
    assert 300 < kinds[UnitKind.PRODUCER] < 500
    pv = DEVICE_PROFILES[DeviceKind.PV].production_kw_peak
    battery = DEVICE_PROFILES[DeviceKind.BATTERY].power_kw_max
    low, high = MIX.producer_kw
    for unit in units:
        if unit.kind is UnitKind.PRODUCER:
            assert unit.load_kw == unit.lower_kw == unit.raise_load_kw == 0.0
            assert low <= unit.output_kw <= high
        else:
            assert unit.output_kw == (pv if unit.kind is UnitKind.PROSUMER else 0.0)
            assert unit.load_kw >= MIX.base_load_kw[0]
            # What a home can shed is load it draws now, or its battery.
            assert unit.lower_kw <= unit.load_kw - MIX.base_load_kw[0] + battery + 1e-9


def test_a_home_without_devices_has_no_flexibility_but_its_pv() -> None:
    bare = UnitMix(0.0, 1.0, 0.0, homes=HomeSpec(devices={}))
    unit = draw_unit(bare, Random(1))
    assert unit.kind is UnitKind.PROSUMER
    assert unit.lower_kw == unit.raise_load_kw == 0.0
    assert unit.raise_kw(0.5) == pytest.approx(unit.output_kw * 0.5)  # curtailing all of it


def test_the_weather_scales_output_the_same_everywhere() -> None:
    assert output_factor(0.6, 0.0, 600.0, 123.0) == 0.6
    assert output_factor(0.5, 0.2, 400.0, 100.0) == pytest.approx(0.6)
    assert output_factor(0.5, 0.2, 400.0, 300.0) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: UnitMix(0.5, 0.5, 0.5), "add up to 1"),
        (lambda: UnitMix(0.5, 0.6, -0.1), "add up to 1"),
        (lambda: UnitMix(1.0, 0.0, 0.0, base_load_kw=(2.0, 1.0)), "base_load_kw"),
        (lambda: UnitMix(1.0, 0.0, 0.0, running_share=1.5), "running_share"),
        (lambda: GovernanceUnit(UnitKind.CONSUMER, -1.0, 0.0, 0.0, 0.0), "load_kw"),
        (lambda: GovernanceUnit(UnitKind.CONSUMER, math.nan, 0.0, 0.0, 0.0), "load_kw"),
        (lambda: draw_units(-1, MIX, Random(1)), "0 or more"),
    ],
)
def test_bad_units_and_mixes_are_refused(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(LocalProtocolError, match=message):
        make()
