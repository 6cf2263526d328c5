"""The Rule Framework: each policy's behaviour, parameters, dispatch, bounds and speed.

Events are crafted by ``ev``; the engine's time is passed explicitly, so no
test sleeps. Random filters and topics come from seeded ``random.Random``
objects and Hypothesis; a failing seed is in the assertion message.
"""

from __future__ import annotations

import gc
import itertools
import math
import random
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from gridmesh.config import config_error, parse_toml
from gridmesh.errors import LocalProtocolError
from gridmesh.grid import (
    DEFAULT_POLICIES,
    LatestGroup,
    Policy,
    PolicyParams,
    PolicyRegistry,
    RuleContext,
    RuleEngine,
    RulesConfig,
    RuleSpec,
    Signal,
    SignalKind,
    SlidingWindow,
    ThresholdParams,
    builtin_policies,
)
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import matches
from tests.test_sans_io_rule import forbidden_imports

_ids = itertools.count(1)


def ev(topic: str, value: object, *, t_s: float = 0.0, unit: str = "", source: int = 7) -> Event:
    """An event on ``topic`` taken at ``t_s`` seconds (the source's clock)."""
    number = next(_ids)
    return Event(
        topic=topic,
        value=value,
        time_us=round(t_s * 1e6),
        source=source,
        seq=number,
        event_id=number,
        unit=unit,
    )


def rule(policy: str, topic_filter: str, **params: Any) -> RuleSpec:
    return RuleSpec(policy=policy, filter=topic_filter, params=params)


def feed(
    engine: RuleEngine, topic: str, values: list[float], *, step_s: float = 1.0
) -> list[Signal]:
    """Each value at one more ``step_s`` of time (engine and source clocks alike)."""
    signals: list[Signal] = []
    for value in values:
        engine_time = engine.time_s + step_s
        signals += engine.on_event(ev(topic, value, t_s=engine_time), engine_time)
    return signals


def states(signals: list[Signal]) -> list[object]:
    return [signal.payload["state"] for signal in signals]


# -- threshold ------------------------------------------------------------------------------


VOLTAGE = "MEASUREMENT/+/voltage"


def voltage_rule(**overrides: Any) -> RuleSpec:
    params: dict[str, Any] = {
        "above": 253.0,
        "hysteresis": 2.0,
        "topic": "GRID/region-7/ALARM/{1}/overvoltage",
    }
    params.update(overrides)
    return rule("threshold", VOLTAGE, **params)


def test_threshold_fires_once_per_crossing_and_clears_past_the_hysteresis() -> None:
    engine = RuleEngine([voltage_rule()])
    signals = feed(engine, "MEASUREMENT/m1/voltage", [250, 254, 255, 252, 251.5, 251, 254])
    assert states(signals) == ["high", "normal", "high"]
    alarm = signals[0]
    assert alarm.kind is SignalKind.INFORMATIONAL and not alarm.requires_ack
    assert alarm.topic == "GRID/region-7/ALARM/m1/overvoltage"
    assert alarm.payload == {"state": "high", "value": 254.0, "limit": 253.0}
    assert alarm.expires_s is None and alarm.rule_id == "rule-0"
    assert signals[1].payload["value"] == 251.0  # cleared at above - hysteresis, not before


def test_threshold_hysteresis_does_not_flap_around_the_limit() -> None:
    engine = RuleEngine([voltage_rule()])
    wavering = [253.5, 252.5] * 50  # crosses 253 a hundred times, never reaches 251
    signals = feed(engine, "MEASUREMENT/m1/voltage", wavering)
    assert states(signals) == ["high"]
    without = RuleEngine([voltage_rule(hysteresis=0.0)])
    assert len(feed(without, "MEASUREMENT/m1/voltage", wavering)) == 100  # what it prevents


def test_threshold_low_band_and_both_bands_in_one_rule() -> None:
    engine = RuleEngine([voltage_rule(below=207.0, topic="GRID/ALARM/{1}")])
    signals = feed(engine, "MEASUREMENT/m2/voltage", [230, 206, 208, 210, 260, 200])
    assert states(signals) == ["low", "normal", "high", "low"]
    assert [s.payload["limit"] for s in signals] == [207.0, None, 253.0, 207.0]


def test_threshold_without_report_clear_reports_only_excursions() -> None:
    engine = RuleEngine([voltage_rule(report_clear=False)])
    signals = feed(engine, "MEASUREMENT/m1/voltage", [254, 240, 254, 240])
    assert states(signals) == ["high", "high"]


def test_threshold_keeps_one_state_per_topic() -> None:
    engine = RuleEngine([voltage_rule()])
    assert states(feed(engine, "MEASUREMENT/m1/voltage", [254])) == ["high"]
    assert states(feed(engine, "MEASUREMENT/m2/voltage", [254])) == ["high"]
    assert feed(engine, "MEASUREMENT/m1/voltage", [254]) == []
    assert engine.stats()["subjects"] == 2


def test_threshold_commandable_carries_expiry_and_is_refreshed_while_held() -> None:
    hvac = voltage_rule(
        above=26.0,
        hysteresis=1.0,
        topic="DEVICE/{1}/COMMAND/setpoint",
        signal="commandable",
        command_for_s=600.0,
        payload={"device": "hvac", "setpoint_c": 19.0},
    )
    engine = RuleEngine([hvac.model_copy(update={"filter": "HOME/+/temperature_c"})])
    first = engine.on_event(ev("HOME/h1/temperature_c", 27.0), 10.0)
    assert len(first) == 1
    command = first[0]
    assert command.kind is SignalKind.COMMANDABLE and command.requires_ack
    assert command.topic == "DEVICE/h1/COMMAND/setpoint"
    assert command.expires_s == 610.0
    assert command.payload["device"] == "hvac" and command.payload["setpoint_c"] == 19.0
    assert command.to_value()["expires_s"] == 610.0
    assert engine.on_event(ev("HOME/h1/temperature_c", 27.5), 200.0) == []  # still valid
    refreshed = engine.on_event(ev("HOME/h1/temperature_c", 27.5), 310.0)  # half its life
    assert [s.expires_s for s in refreshed] == [910.0]
    cleared = engine.on_event(ev("HOME/h1/temperature_c", 24.0), 320.0)
    assert states(cleared) == ["normal"] and cleared[0].kind is SignalKind.COMMANDABLE


def test_threshold_on_a_window_mean_ignores_a_single_spike() -> None:
    engine = RuleEngine([voltage_rule(input="window_mean", window_s=10.0)])
    signals = feed(engine, "MEASUREMENT/m1/voltage", [250, 250, 250, 262, 250, 250])
    assert signals == []  # the spike moves the mean to at most 252.4
    assert states(feed(engine, "MEASUREMENT/m1/voltage", [262] * 4)) == ["high"]


def test_threshold_on_a_group_sum_alarms_for_the_feeder_not_each_meter() -> None:
    overload = rule(
        "threshold",
        "FEEDER/f7/+/load_kw",
        above=100.0,
        hysteresis=10.0,
        input="group_sum",
        topic="GRID/{1}/ALARM/overload",
    )
    engine = RuleEngine([overload])
    signals: list[Signal] = []
    for meter in range(12):
        signals += engine.on_event(ev(f"FEEDER/f7/m{meter}/load_kw", 9.0), float(meter))
    assert states(signals) == ["high"]  # at the 12th meter: 108 kW
    assert signals[0].topic == "GRID/f7/ALARM/overload"
    assert signals[0].payload["value"] == 108.0
    assert engine.on_event(ev("FEEDER/f7/m0/load_kw", 0.0), 20.0) == []  # 99 kW: in the band
    assert states(engine.on_event(ev("FEEDER/f7/m1/load_kw", 0.0), 21.0)) == ["normal"]  # 90


def test_group_inputs_forget_silent_meters() -> None:
    group_mean = rule(
        "threshold",
        "FEEDER/f7/+/load_kw",
        below=5.0,
        input="group_mean",
        group_age_s_max=60.0,
        topic="GRID/f7/ALARM/underload",
    )
    engine = RuleEngine([group_mean])
    engine.on_event(ev("FEEDER/f7/m1/load_kw", 1.0), 0.0)  # mean 1: low
    engine.on_event(ev("FEEDER/f7/m2/load_kw", 9.0), 0.0)  # mean 5: normal again
    late = engine.on_event(ev("FEEDER/f7/m3/load_kw", 3.0), 100.0)  # m1, m2 expired: mean 3
    assert states(late) == ["low"] and late[0].payload["value"] == 3.0


# -- cooldown -------------------------------------------------------------------------------


def test_cooldown_holds_the_state_until_the_first_reading_after_it() -> None:
    engine = RuleEngine([voltage_rule().model_copy(update={"cooldown_s": 60.0})])
    topic = "MEASUREMENT/m1/voltage"
    assert states(engine.on_event(ev(topic, 254.0), 0.0)) == ["high"]
    assert engine.on_event(ev(topic, 240.0), 5.0) == []  # a clear inside the cooldown waits
    assert engine.on_event(ev(topic, 240.0), 30.0) == []
    assert states(engine.on_event(ev(topic, 240.0), 61.0)) == ["normal"]
    assert engine.stats()["suppressed_cooldown"] == 2
    # another topic has its own cooldown
    assert states(engine.on_event(ev("MEASUREMENT/m2/voltage", 254.0), 62.0)) == ["high"]


class EchoParams(PolicyParams):
    topic: str = "ECHO/{1}"
    commands: int = Field(default=1, ge=1, le=10)


class EchoPolicy(Policy[EchoParams, list[float]]):
    """An application policy: every reading becomes ``commands`` commands (level-triggered)."""

    name = "acme.echo"
    params_model = EchoParams

    def new_state(self, params: EchoParams) -> list[float]:
        return []

    def on_event(
        self, rule: RuleContext[EchoParams, list[float]], event: Event, input_index: int
    ) -> None:
        rule.state(event.topic).append(rule.time_s)
        for number in range(rule.params.commands):
            payload: dict[str, object] = {"n": number, "value": event.value}
            rule.command(rule.topic(rule.params.topic), payload, for_s=5.0, subject=event.topic)


def acme_registry() -> PolicyRegistry:
    registry = builtin_policies()
    registry.register(EchoPolicy())
    return registry


def test_cooldown_drops_a_level_triggered_policy_s_whole_firing() -> None:
    registry = acme_registry()
    spec = RuleSpec.model_validate(
        {"policy": "acme.echo", "filter": "X/+", "params": {"commands": 3}, "cooldown_s": 10.0},
        context={"policies": registry},
    )
    engine = RuleEngine([spec], registry)
    assert len(engine.on_event(ev("X/a", 1), 0.0)) == 3
    assert engine.on_event(ev("X/a", 2), 9.9) == []
    assert len(engine.on_event(ev("X/b", 3), 9.9)) == 3  # another subject
    assert [s.payload["value"] for s in engine.on_event(ev("X/a", 4), 10.0)] == [4, 4, 4]
    assert engine.stats()["suppressed_cooldown"] == 1  # one firing, not three signals


# -- rate of change -------------------------------------------------------------------------


def rate_rule(**overrides: Any) -> RuleSpec:
    params: dict[str, Any] = {
        "rate_max": 2.0,
        "window_s": 10.0,
        "topic": "GRID/ALARM/{1}/frequency_ramp",
    }
    params.update(overrides)
    return rule("rate_of_change", "MEASUREMENT/+/load_kw", **params)


def test_rate_of_change_alarms_once_per_fast_excursion() -> None:
    engine = RuleEngine([rate_rule()])
    topic = "MEASUREMENT/m1/load_kw"
    assert feed(engine, topic, [10, 11, 12, 13]) == []  # 1 kW/s
    fast = feed(engine, topic, [20, 30, 40])  # now well over 2 kW/s over the window
    assert len(fast) == 1
    alarm = fast[0]
    assert alarm.kind is SignalKind.INFORMATIONAL
    assert alarm.topic == "GRID/ALARM/m1/frequency_ramp"
    assert alarm.payload["rate_per_s"] == pytest.approx((20 - 10) / 4)
    assert alarm.payload["rate_max"] == 2.0 and alarm.payload["value"] == 20.0
    assert feed(engine, topic, [40] * 12) == []  # flat for longer than the window: re-armed
    assert len(feed(engine, topic, [10])) == 1  # a fast fall alarms again (direction both)


def test_rate_of_change_direction_and_out_of_order_samples() -> None:
    engine = RuleEngine([rate_rule(direction="rising")])
    topic = "MEASUREMENT/m1/load_kw"
    assert feed(engine, topic, [100, 50, 0]) == []  # falling fast: not watched
    engine.on_event(ev(topic, 5.0, t_s=1.0), 100.0)  # older than the last sample
    assert engine.stats()["input_error.out_of_order"] == 1


def test_rate_of_change_on_the_engine_clock_ignores_bad_source_clocks() -> None:
    engine = RuleEngine([rate_rule(clock="received")])
    topic = "MEASUREMENT/m1/load_kw"
    signals = [engine.on_event(ev(topic, v, t_s=0.0), now) for v, now in [(0, 1), (30, 2)]]
    assert len(signals[1]) == 1  # 30 kW/s by the engine's clock; the source's says nothing


# -- price-responsive shift -----------------------------------------------------------------


def shift_rule(**overrides: Any) -> RuleSpec:
    params: dict[str, Any] = {
        "price_below": 0.10,
        "rearm_above": 0.15,
        "device_class": "washing_machine",
        "topic": "HOME/h9/DEVICE_CLASS/{device_class}/COMMAND/start",
        "shift_for_s": 7200.0,
    }
    params.update(overrides)
    return rule("price_responsive_shift", "TARIFF/+/price", **params)


def test_price_shift_starts_a_device_class_early_once_per_cheap_period() -> None:
    engine = RuleEngine([shift_rule()])
    topic = "TARIFF/region-7/price"
    assert feed(engine, topic, [0.25, 0.20]) == []
    cheap = feed(engine, topic, [0.08])
    assert len(cheap) == 1
    command = cheap[0]
    assert command.kind is SignalKind.COMMANDABLE and command.requires_ack
    assert command.topic == "HOME/h9/DEVICE_CLASS/washing_machine/COMMAND/start"
    assert command.payload == {
        "action": "start_early",
        "device_class": "washing_machine",
        "price": 0.08,
        "price_below": 0.10,
    }
    assert command.expires_s == command.time_s + 7200.0
    assert feed(engine, topic, [0.05, 0.12, 0.09, 0.14, 0.07]) == []  # never above 0.15
    assert len(feed(engine, topic, [0.30, 0.09])) == 1  # re-armed, then cheap again


def test_price_shift_reads_a_tariff_map_and_checks_its_unit() -> None:
    engine = RuleEngine([shift_rule(value_key="price", unit="EUR/kWh")])
    topic = "TARIFF/region-7/price"
    assert engine.on_event(ev(topic, {"price": 0.05}, unit="EUR/MWh"), 1.0) == []
    assert engine.on_event(ev(topic, {"tariff": 0.05}, unit="EUR/kWh"), 2.0) == []
    assert len(engine.on_event(ev(topic, {"price": 0.05}, unit="EUR/kWh"), 3.0)) == 1
    stats = engine.stats()
    assert stats["input_error.unit"] == 1 and stats["input_error.missing_key"] == 1


# -- curtailment ----------------------------------------------------------------------------


def curtail_rule(**overrides: Any) -> RuleSpec:
    params: dict[str, Any] = {
        "consumption_filter": "FEEDER/f7/LOAD/+",
        "surplus_kw_max": 50.0,
        "hysteresis_kw": 10.0,
        "topic": "FEEDER/{1}/COMMAND/curtail",
        "command_for_s": 600.0,
    }
    params.update(overrides)
    return rule("curtail_on_overproduction", "FEEDER/f7/PV/+", **params)


def test_curtail_waits_for_both_sides_then_commands_the_excess() -> None:
    engine = RuleEngine([curtail_rule()])
    assert engine.on_event(ev("FEEDER/f7/PV/p1", 80.0), 0.0) == []  # no consumption known yet
    assert engine.on_event(ev("FEEDER/f7/PV/p2", 40.0), 1.0) == []
    assert engine.on_event(ev("FEEDER/f7/LOAD/l1", 70.0), 2.0) == []  # surplus 50: at the limit
    signals = engine.on_event(ev("FEEDER/f7/PV/p2", 60.0), 3.0)  # surplus 70
    assert len(signals) == 1
    command = signals[0]
    assert command.kind is SignalKind.COMMANDABLE
    assert command.topic == "FEEDER/f7/COMMAND/curtail"
    assert command.payload == {
        "action": "curtail_pv",
        "excess_kw": 20.0,
        "surplus_kw": 70.0,
        "production_kw": 140.0,
        "consumption_kw": 70.0,
    }
    assert command.expires_s == 603.0


def test_curtail_refreshes_while_the_surplus_lasts_and_releases_past_the_hysteresis() -> None:
    engine = RuleEngine([curtail_rule(action="charge_storage")])
    engine.on_event(ev("FEEDER/f7/LOAD/l1", 10.0), 0.0)
    assert [s.payload["action"] for s in engine.on_event(ev("FEEDER/f7/PV/p1", 100.0), 0.0)] == [
        "charge_storage"
    ]
    assert engine.on_event(ev("FEEDER/f7/PV/p1", 110.0), 100.0) == []
    refreshed = engine.on_event(ev("FEEDER/f7/PV/p1", 110.0), 300.0)
    assert refreshed[0].payload["excess_kw"] == 50.0
    assert engine.on_event(ev("FEEDER/f7/LOAD/l1", 65.0), 301.0) == []  # surplus 45: in the band
    released = engine.on_event(ev("FEEDER/f7/LOAD/l1", 75.0), 302.0)  # surplus 35
    assert [s.payload["action"] for s in released] == ["release"]
    assert released[0].payload["excess_kw"] == 0.0


def test_curtail_forgets_stale_production_readings() -> None:
    engine = RuleEngine([curtail_rule(reading_age_s_max=60.0)])
    engine.on_event(ev("FEEDER/f7/PV/p1", 100.0), 0.0)
    engine.on_event(ev("FEEDER/f7/LOAD/l1", 10.0), 0.0)  # fires: surplus 90
    # p1 went silent; p2's 20 kW and the fresh load make no surplus: released
    signals = engine.on_event(ev("FEEDER/f7/PV/p2", 20.0), 120.0)
    assert signals == []  # l1 is stale too: no consumption known, no decision
    released = engine.on_event(ev("FEEDER/f7/LOAD/l1", 10.0), 121.0)
    assert [s.payload["action"] for s in released] == ["release"]
    assert released[0].payload["production_kw"] == 20.0


# -- demand response ------------------------------------------------------------------------

DR = "DR/COMMAND/region-7"


def dr_engine(offers: dict[str, float], **overrides: Any) -> RuleEngine:
    engine = RuleEngine([rule("dr_shed", "DR/COMMAND/+", **overrides)])
    for device, kw in offers.items():
        engine.on_event(ev(f"DEVICE/{device}/FLEXIBILITY", kw, unit="kW"), 0.0)
    return engine


def plan_of(signals: list[Signal]) -> tuple[dict[str, float], dict[str, object]]:
    commands = {
        s.topic.split("/")[1]: float(s.payload["shed_kw"])  # type: ignore[arg-type]
        for s in signals
        if s.kind is SignalKind.COMMANDABLE
    }
    reports = [s for s in signals if s.kind is SignalKind.INFORMATIONAL]
    assert len(reports) == 1
    return commands, reports[0].payload


def test_dr_shed_commands_the_largest_offers_until_the_target_is_covered() -> None:
    engine = dr_engine({"ev1": 7.0, "hp1": 3.0, "hvac1": 5.0, "wm1": 2.0, "hvac2": 5.0})
    signals = engine.on_event(ev(DR, {"target_kw": 14.0, "duration_s": 1800}), 10.0)
    commands, report = plan_of(signals)
    assert commands == {"ev1": 7.0, "hvac1": 5.0, "hvac2": 5.0}  # ties by device id
    assert report["target_kw"] == 14.0 and report["planned_kw"] == 17.0
    assert report["shortfall_kw"] == 0.0 and report["devices"] == 3
    assert report["candidates"] == 5 and report["duration_s"] == 1800.0
    command = next(s for s in signals if s.kind is SignalKind.COMMANDABLE)
    assert command.topic == "DEVICE/ev1/COMMAND/shed" and command.requires_ack
    assert command.expires_s == 1810.0 and command.payload["until_s"] == 1810.0
    report_signal = next(s for s in signals if s.kind is SignalKind.INFORMATIONAL)
    assert report_signal.topic == "DR/REPORT/rule-0/plan"


def test_dr_shed_reports_the_shortfall_when_flexibility_is_insufficient() -> None:
    engine = dr_engine({"a": 4.0, "b": 3.0})
    commands, report = plan_of(engine.on_event(ev(DR, 20.0), 1.0))
    assert commands == {"a": 4.0, "b": 3.0}
    assert report["planned_kw"] == 7.0 and report["shortfall_kw"] == 13.0


def test_dr_shed_does_not_count_twice_on_devices_already_shedding() -> None:
    engine = dr_engine({"a": 4.0, "b": 3.0, "c": 2.0})
    first, _ = plan_of(engine.on_event(ev(DR, {"target_kw": 4.0, "duration_s": 100}), 1.0))
    assert first == {"a": 4.0}
    second, report = plan_of(engine.on_event(ev(DR, 4.0), 2.0))
    assert second == {"b": 3.0, "c": 2.0} and report["candidates"] == 2
    third, _ = plan_of(engine.on_event(ev(DR, 1.0), 102.0))  # a's commitment has ended
    assert third == {"a": 4.0}


def test_dr_shed_partial_shed_asks_the_last_device_for_the_remainder() -> None:
    engine = dr_engine({"a": 4.0, "b": 3.0}, partial_shed=True)
    commands, report = plan_of(engine.on_event(ev(DR, 5.5), 1.0))
    assert commands == {"a": 4.0, "b": 1.5} and report["planned_kw"] == 5.5


def test_dr_shed_ignores_stale_small_and_capped_offers() -> None:
    engine = dr_engine({"old": 50.0}, flexibility_age_s_max=60.0, device_kw_min=1.0, commands_max=2)
    for device, kw in {"tiny": 0.5, "a": 2.0, "b": 2.0, "c": 2.0}.items():
        engine.on_event(ev(f"DEVICE/{device}/FLEXIBILITY", kw), 100.0)
    commands, report = plan_of(engine.on_event(ev(DR, 10.0), 100.0))
    assert commands == {"a": 2.0, "b": 2.0}  # old is stale, tiny too small, c over the cap
    assert report["shortfall_kw"] == 6.0
    assert engine.stats()["commands_capped"] == 1


def test_dr_shed_counts_bad_dr_commands_and_offers() -> None:
    engine = dr_engine({"a": 4.0})
    for value in (-1.0, 0, math.nan, "10", {"kw": 3.0}, True, 10**30):
        assert engine.on_event(ev(DR, value), 1.0) == []
    engine.on_event(ev("DEVICE/x/FLEXIBILITY", -2.0), 1.0)
    engine.on_event(ev("DEVICE//FLEXIBILITY", 2.0), 1.0)  # no device name
    stats = engine.stats()
    assert stats["input_error.bad_dr_command"] == 6 and stats["input_error.missing_key"] == 1
    assert stats["input_error.negative_flexibility"] == 1
    assert stats["input_error.device_level"] == 1
    assert stats.get("signals", 0) == 0


def test_dr_shed_caps_the_duration_a_command_asks_for() -> None:
    engine = dr_engine({"a": 4.0}, duration_s_max=600.0)
    signals = engine.on_event(ev(DR, {"target_kw": 1.0, "duration_s": 86_400}), 0.0)
    assert {s.expires_s for s in signals if s.requires_ack} == {600.0}


# -- group report (the Data Aggregator as a rule) and ticks ----------------------------------


def test_group_report_publishes_the_aggregated_load_every_interval() -> None:
    spec = rule("group_report", "FEEDER/f7/+/load_kw", interval_s=60.0, topic="GRID/{1}/LOAD")
    engine = RuleEngine([spec], start_s=0.0)
    assert engine.next_deadline() == 60.0
    for meter, kw in enumerate([1.5, 2.5, 4.0]):
        engine.on_event(ev(f"FEEDER/f7/m{meter}/load_kw", kw), 10.0)
    assert engine.tick(59.9) == []
    (report,) = engine.tick(60.0)
    assert report.kind is SignalKind.INFORMATIONAL and report.topic == "GRID/f7/LOAD"
    assert report.payload == {"sum": 8.0, "mean": 8.0 / 3, "count": 3, "min": 1.5, "max": 4.0}
    assert report.cause is None and engine.next_deadline() == 120.0
    late = engine.tick(400.0)  # ticks at 120..360 were missed: one report, not five
    assert len(late) == 1 and late[0].payload["count"] == 0  # every meter silent > 300 s
    assert engine.next_deadline() == 420.0
    assert engine.stats()["ticks_skipped"] == 4


def test_an_engine_without_periodic_rules_has_no_deadline() -> None:
    engine = RuleEngine([voltage_rule()])
    assert engine.next_deadline() is None and engine.tick(1e9) == []


# -- logic separate from parameters ---------------------------------------------------------


def test_one_policy_runs_in_two_subsystems_with_different_settings() -> None:
    config = RulesConfig.model_validate(
        {
            "rules": [
                {
                    "id": "substation-north",
                    "policy": "threshold",
                    "filter": "SUBSTATION/north/+/voltage",
                    "params": {"above": 253.0, "hysteresis": 1.0, "topic": "GRID/north/ALARM/{2}"},
                },
                {
                    "id": "substation-south",
                    "policy": "threshold",
                    "filter": "SUBSTATION/south/+/voltage",
                    "params": {
                        "above": 245.0,
                        "below": 220.0,
                        "signal": "commandable",
                        "topic": "SUBSTATION/south/{2}/COMMAND/tap",
                        "payload": {"tap": -1},
                    },
                },
            ]
        }
    )
    engine = RuleEngine(config)
    readings = [248.0, 255.0, 215.0]
    north = feed(engine, "SUBSTATION/north/t1/voltage", readings)
    south = feed(engine, "SUBSTATION/south/t1/voltage", readings)
    assert [(s.rule_id, s.payload["state"], s.kind) for s in north] == [
        ("substation-north", "high", SignalKind.INFORMATIONAL),
        ("substation-north", "normal", SignalKind.INFORMATIONAL),
    ]
    assert [(s.rule_id, s.payload["state"], s.kind) for s in south] == [
        ("substation-south", "high", SignalKind.COMMANDABLE),
        ("substation-south", "low", SignalKind.COMMANDABLE),
    ]
    assert south[0].topic == "SUBSTATION/south/t1/COMMAND/tap" and south[0].payload["tap"] == -1
    # one logic object, two parameter sets, two states
    policy = DEFAULT_POLICIES.get("threshold")
    assert {type(spec.params) for spec in engine.rules} == {policy.params_model}
    assert engine.rule_stats("substation-north")["subjects"] == 1
    assert engine.rule_stats("substation-south")["subjects"] == 1


# -- declaring rules: scenario files, Python, errors ----------------------------------------

SCENARIO_RULES = """
[[rules]]
id = "overvoltage"
policy = "threshold"
filter = "MEASUREMENT/+/voltage"
cooldown_s = 30
params = { above = 253, hysteresis = 2, topic = "GRID/region-7/ALARM/{1}" }

[[rules]]
policy = "dr_shed"
filter = "DR/COMMAND/region-7"
params = { devices_max = 5000, partial_shed = true }
"""


def test_rules_declared_in_toml_run_like_rules_declared_in_python() -> None:
    config = RulesConfig.model_validate(parse_toml(SCENARIO_RULES, source="s.toml"))
    assert [spec.rule_id(i) for i, spec in enumerate(config.rules)] == ["overvoltage", "rule-1"]
    python = [
        RuleSpec(
            id="overvoltage",
            policy="threshold",
            filter="MEASUREMENT/+/voltage",
            cooldown_s=30.0,
            params=ThresholdParams(above=253.0, hysteresis=2.0, topic="GRID/region-7/ALARM/{1}"),
        ),
        RuleSpec(
            policy="dr_shed",
            filter="DR/COMMAND/region-7",
            params={"devices_max": 5000, "partial_shed": True},
        ),
    ]
    assert config.rules == tuple(python)
    assert RulesConfig.model_validate(config.model_dump()) == config  # round trip


def first_error(raw: object) -> str:
    with pytest.raises(ValidationError) as caught:
        RulesConfig.model_validate(raw)
    return str(config_error("scenario.toml", caught.value, docs="docs/RULES.md"))


@pytest.mark.parametrize(
    ("bad_rule", "field", "expected"),
    [
        ({"policy": "thresold"}, "rules[1].policy", "a registered policy, one of: "),
        ({"filter": "MEASUREMENT/#/x"}, "rules[1].filter", "'#' must be the whole last level"),
        ({"params": {"above": 253.0}}, "rules[1].params.topic", "a value (this field is required)"),
        (
            {"params": {"topic": "A", "above": 1, "abov": 2}},
            "rules[1].params.abov",
            "no such field",
        ),
        ({"params": {"topic": "A"}}, "rules[1].params", "at least one of above and below"),
        (
            {"params": {"topic": "A", "above": 10, "below": 9, "hysteresis": 1}},
            "rules[1].params",
            "the two bands would overlap",
        ),
        ({"params": {"topic": "A/{device}", "above": 1}}, "rules[1].params.topic", "{rule}, not"),
        (
            {"params": {"topic": "A/+", "above": 1}},
            "rules[1].params.topic",
            "a template of a valid",
        ),
        ({"params": {"topic": "A", "above": "1"}}, "rules[1].params.above", "valid number"),
        (
            {"params": {"topic": "A", "above": 1, "window_s": 0}},
            "params.window_s",
            "greater than 0",
        ),
        ({"cooldown_s": -1}, "rules[1].cooldown_s", "at least 0 (seconds)"),
        ({"subjects_max": 0}, "rules[1].subjects_max", "at least 1"),
        ({"id": "rule-0"}, "rules[1].id", "an id no other rule has ('rule-0' is also rule 0's)"),
        ({"colour": "red"}, "rules[1].colour", "no such field"),
    ],
)
def test_a_bad_rule_is_named_by_index_field_and_expected_value(
    bad_rule: dict[str, Any], field: str, expected: str
) -> None:
    good = {"policy": "threshold", "filter": "A/+", "params": {"above": 1.0, "topic": "ALARM"}}
    message = first_error({"rules": [good, {**good, **bad_rule}]})
    assert field in message and expected in message, message


@pytest.mark.parametrize(
    ("policy", "params", "field", "expected"),
    [
        ("dr_shed", {"command_topic": "DEVICE/{dev}/X"}, "command_topic", "{device}"),
        ("dr_shed", {"devices_max": 10**7}, "devices_max", "at most 1,000,000"),
        ("dr_shed", {"flexibility_filter": "DEVICE/+/#/x"}, "flexibility_filter", "'#'"),
        ("price_responsive_shift", {"price_below": 1.0, "topic": "T"}, "device_class", "required"),
        (
            "price_responsive_shift",
            {"price_below": 1, "rearm_above": 0.5, "device_class": "ev", "topic": "T"},
            "params",
            "rearm_above at least price_below",
        ),
        (
            "price_responsive_shift",
            {"price_below": 1, "device_class": "a/b", "topic": "T"},
            "device_class",
            "pattern",
        ),
        (
            "curtail_on_overproduction",
            {"surplus_kw_max": 5, "topic": "T"},
            "consumption_filter",
            "required",
        ),
        ("rate_of_change", {"rate_max": 0, "topic": "T"}, "rate_max", "greater than 0"),
        (
            "rate_of_change",
            {"rate_max": 1, "topic": "T", "payload": {"when": object()}},
            "payload",
            "plain data",
        ),
        ("group_report", {"topic": "T"}, "interval_s", "required"),
    ],
)
def test_every_policy_validates_its_own_parameters(
    policy: str, params: dict[str, Any], field: str, expected: str
) -> None:
    message = first_error({"rules": [{"policy": policy, "filter": "A/+", "params": params}]})
    assert f"rules[0].{field}" in message or f"rules[0].params.{field}" in message, message
    assert expected in message, message


def test_application_policies_are_named_not_shipped() -> None:
    raw = {"policy": "acme.echo", "filter": "X/+", "params": {"commands": 2}}
    with pytest.raises(ValidationError, match="a registered policy"):
        RuleSpec.model_validate(raw)  # the default registry does not know it
    registry = acme_registry()
    spec = RuleSpec.model_validate(raw, context={"policies": registry})
    assert isinstance(spec.params, EchoParams)
    with pytest.raises(LocalProtocolError, match=r"unknown policy 'acme\.echo'"):
        RuleEngine([spec])  # an engine on another registry refuses it
    assert len(RuleEngine([spec], registry).on_event(ev("X/1", 5), 0.0)) == 2
    with pytest.raises(LocalProtocolError, match="already registered"):
        registry.register(EchoPolicy())
    with pytest.raises(LocalProtocolError, match="dotted lowercase"):
        PolicyRegistry().register(type("Bad", (EchoPolicy,), {"name": "Acme Echo"})())


def test_an_application_s_unchecked_template_is_counted_not_raised() -> None:
    registry = acme_registry()
    specs = [
        RuleSpec.model_validate(
            {"id": f"e{i}", "policy": "acme.echo", "filter": "X/+", "params": {"topic": topic}},
            context={"policies": registry},
        )
        for i, topic in enumerate(["ECHO/{device}", "ECHO/{", "ECHO/{1!r}", "ECHO/+/{1}"])
    ]
    engine = RuleEngine(specs, registry)
    assert engine.on_event(ev("X/a", 1), 0.0) == []
    assert engine.stats()["input_error.topic_template"] == 4


def test_params_of_another_policy_are_refused() -> None:
    with pytest.raises(ValidationError, match="ThresholdParams"):
        RuleSpec(policy="threshold", filter="A", params=EchoParams())
    twin = voltage_rule().model_copy(update={"id": "v"})
    with pytest.raises(LocalProtocolError, match="'v' is taken"):
        RuleEngine([twin, twin])


# -- dispatch: trie against brute force -----------------------------------------------------

LEVELS = ["MEASUREMENT", "DEVICE", "m1", "m2", "voltage", "", "$SYS"]


@dataclass
class Recorder(Policy[EchoParams, None]):
    """Records which rules see which events (input index included)."""

    seen: list[tuple[str, int]] = field(default_factory=list)
    name = "acme.record"
    params_model = EchoParams

    def new_state(self, params: EchoParams) -> None:
        return None

    def on_event(self, rule: RuleContext[EchoParams, None], event: Event, input_index: int) -> None:
        self.seen.append((rule.rule_id, input_index))


def random_filter(rng: random.Random) -> str:
    levels = [rng.choice([*LEVELS, "+", "+"]) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        levels.append("#")
    return "/".join(levels) or "#"


def random_topic(rng: random.Random) -> str:
    return "/".join(rng.choice(LEVELS) for _ in range(rng.randint(1, 5))) or "m1"


@pytest.mark.parametrize("seed", range(5))
def test_dispatch_equals_brute_force_over_random_filters(seed: int) -> None:
    rng = random.Random(seed)
    recorder = Recorder()
    registry = PolicyRegistry()
    registry.register(recorder)
    filters = [random_filter(rng) for _ in range(300)]  # duplicates included on purpose
    specs = [
        RuleSpec.model_validate(
            {"id": f"r{i}", "policy": "acme.record", "filter": text},
            context={"policies": registry},
        )
        for i, text in enumerate(filters)
    ]
    engine = RuleEngine(specs, registry)
    for _ in range(500):
        topic = random_topic(rng)
        recorder.seen.clear()
        engine.on_event(ev(topic, 1.0), 0.0)
        expected = [(f"r{i}", 0) for i, text in enumerate(filters) if matches(text, topic)]
        assert recorder.seen == expected, f"seed {seed}: topic {topic!r}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    filters=st.lists(
        st.sampled_from(["A/+", "A/#", "+/B", "#", "A/B", "A", "+", "A/+/#"]), max_size=8
    ),
    topic=st.sampled_from(["A", "A/B", "A/B/C", "B", "X/B", "A/", "$SYS/B"]),
)
def test_dispatch_runs_matching_rules_once_each_in_declaration_order(
    filters: list[str], topic: str
) -> None:
    recorder = Recorder()
    registry = PolicyRegistry()
    registry.register(recorder)
    specs = [
        RuleSpec.model_validate(
            {"policy": "acme.record", "filter": text}, context={"policies": registry}
        )
        for text in filters
    ]
    RuleEngine(specs, registry).on_event(ev(topic, 0), 0.0)
    assert recorder.seen == [
        (f"rule-{i}", 0) for i, text in enumerate(filters) if matches(text, topic)
    ]


def test_a_rule_with_two_inputs_sees_each_on_its_own_index() -> None:
    engine = RuleEngine([curtail_rule(consumption_filter="FEEDER/f7/+/+")])
    engine.on_event(ev("FEEDER/f7/PV/p1", 10.0), 0.0)  # matches both inputs
    assert engine.stats()["dispatches"] == 2


# -- bad input, time, determinism -----------------------------------------------------------

EVERY_POLICY = [
    voltage_rule(below=200.0, input="window_mean"),
    voltage_rule(input="group_mean", topic="GRID/{0}/ALARM"),
    rate_rule().model_copy(update={"filter": VOLTAGE}),
    shift_rule().model_copy(update={"filter": VOLTAGE}),
    curtail_rule().model_copy(update={"filter": VOLTAGE}),
    rule("dr_shed", VOLTAGE, flexibility_filter="MEASUREMENT/#"),
    rule("group_report", VOLTAGE, interval_s=1.0, topic="GRID/{1}"),
]


def test_an_invalid_topic_or_a_shallow_template_is_counted_not_raised() -> None:
    engine = RuleEngine([voltage_rule(topic="GRID/{5}/ALARM")])
    assert engine.on_event(ev("MEASUREMENT/m1/voltage", 300.0), 0.0) == []
    assert engine.on_event(ev("MEASUREMENT/\x00/voltage", 300.0), 0.0) == []
    stats = engine.stats()
    assert stats["input_error.topic_template"] == 1 and stats["bad_topic"] == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=5),
            st.dictionaries(
                st.sampled_from(["price", "target_kw", "duration_s", "x"]),
                st.floats() | st.integers(),
            ),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=20,
    ),
    units=st.sampled_from(["", "kW", "V"]),
)
def test_no_event_value_crashes_any_policy(values: list[object], units: str) -> None:
    engine = RuleEngine(EVERY_POLICY)
    for step, value in enumerate(values):
        for topic in ("MEASUREMENT/m1/voltage", "MEASUREMENT/m2/voltage"):
            engine.on_event(ev(topic, value, t_s=step, unit=units), float(step))
        engine.tick(float(step))


def test_time_must_not_go_backwards() -> None:
    engine = RuleEngine([voltage_rule()], start_s=100.0)
    with pytest.raises(LocalProtocolError, match="backwards"):
        engine.on_event(ev("MEASUREMENT/m1/voltage", 1.0), 99.0)
    with pytest.raises(LocalProtocolError, match="backwards"):
        engine.tick(math.nan)


def test_the_same_calls_give_the_same_signals() -> None:
    def run() -> list[Signal]:
        rng = random.Random(42)
        engine = RuleEngine(EVERY_POLICY)
        signals: list[Signal] = []
        for step in range(2000):
            topic = f"MEASUREMENT/m{rng.randrange(20)}/voltage"
            event = Event(topic, rng.uniform(180, 280), step * 1_000_000, 1, step + 1, step + 1)
            signals += engine.on_event(event, float(step))
            signals += engine.tick(float(step))
        return signals

    first, second = run(), run()
    assert first and first == second
    assert [s.signal_id for s in first] == list(range(1, len(first) + 1))


def test_a_signal_validates_itself() -> None:
    with pytest.raises(LocalProtocolError, match="must expire"):
        Signal(SignalKind.COMMANDABLE, "DEVICE/x/COMMAND", {}, "r", 1, 10.0)
    with pytest.raises(LocalProtocolError, match="must expire"):
        Signal(SignalKind.COMMANDABLE, "DEVICE/x/COMMAND", {}, "r", 1, 10.0, 10.0)
    with pytest.raises(LocalProtocolError):
        Signal(SignalKind.INFORMATIONAL, "GRID/#", {}, "r", 1, 0.0)
    with pytest.raises(LocalProtocolError):
        Signal(SignalKind.INFORMATIONAL, "GRID/x", {"when": object()}, "r", 1, 0.0)
    signal = Signal(SignalKind.INFORMATIONAL, "GRID/x", {"kw": 1.0}, "r", 3, 5.0, cause=(1, 2))
    assert signal.to_value() == {
        "kind": "informational",
        "rule": "r",
        "signal_id": 3,
        "issued_s": 5.0,
        "payload": {"kw": 1.0},
    }


def test_rule_modules_import_no_clock_io_or_global_randomness() -> None:
    grid = Path(__file__).resolve().parent.parent / "src" / "gridmesh" / "grid"
    modules = sorted(grid.glob("_rules*.py"))
    assert len(modules) >= 5
    for module in modules:
        assert forbidden_imports(module.read_text(encoding="utf-8")) == [], module.name


# -- bounded state --------------------------------------------------------------------------


def test_many_distinct_topics_do_not_grow_a_rule_past_subjects_max() -> None:
    spec = voltage_rule(input="window_mean").model_copy(update={"subjects_max": 100})
    engine = RuleEngine([spec])
    for meter in range(10_000):
        engine.on_event(ev(f"MEASUREMENT/m{meter}/voltage", 230.0), 0.0)
    stats = engine.stats()
    assert stats["subjects"] == 100 and stats["subjects_evicted"] == 9_900


def test_memory_stays_flat_however_many_topics_pass() -> None:
    engine = RuleEngine(
        [
            voltage_rule(input="window_mean", samples_max=8).model_copy(
                update={"subjects_max": 500}
            ),
            voltage_rule(input="group_sum", group_topics_max=500, topic="GRID/ALARM"),
            rule(
                "dr_shed",
                "DR/COMMAND/+",
                flexibility_filter="MEASUREMENT/+/voltage",
                devices_max=500,
            ),
            rate_rule(samples_max=8).model_copy(update={"filter": VOLTAGE, "subjects_max": 500}),
        ]
    )

    def pass_topics(first: int, count: int) -> None:
        for meter in range(first, first + count):
            topic = f"MEASUREMENT/meter-{meter:07d}/voltage"
            engine.on_event(ev(topic, 230.0 + meter % 3, t_s=meter), float(meter))

    def rules_bytes() -> int:
        """Bytes held by gridmesh but for the topic trie's name cache (bounded, and tested
        in test_topics.py), whose dict churns in size as topics pass through it."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*/gridmesh/*"), tracemalloc.Filter(False, "*/topics.py")]
        )
        return sum(stat.size for stat in snapshot.statistics("filename"))

    tracemalloc.start()
    try:
        pass_topics(0, 5_000)  # fill every bound
        before = rules_bytes()
        pass_topics(5_000, 10_000)
        after = rules_bytes()
    finally:
        tracemalloc.stop()
    assert before > 100_000  # the state is there, and measured
    assert after - before < 16 * 1024, f"grew by {after - before} bytes over 10,000 new topics"
    stats = engine.stats()
    assert stats["subjects"] <= 500 * 2 + 2  # two per-topic rules, two rule-wide states


def test_windows_and_groups_keep_their_limits() -> None:
    window = SlidingWindow(window_s=1e9, samples_max=4)
    for step in range(100):
        assert window.add(float(step), float(step))
    assert len(window) == 4 and window.rate_per_s() == 1.0 and window.span_s() == 3.0
    assert not window.add(99.0, 0.0)  # no newer than the last
    group = LatestGroup(topics_max=3, age_s_max=10.0)
    for meter in range(10):
        group.update(f"m{meter}", 0.1, 0.0)
    assert len(group) == 3 and group.evicted == 7 and group.total() == pytest.approx(0.3)
    for _ in range(10_000):  # updates in place: the exact sum does not drift
        group.update("m9", 0.1, 1.0)
        group.update("m9", 0.7, 1.0)
    assert group.total() == 0.1 + 0.1 + 0.7
    group.expire(10.5)  # m7 and m8 are from t=0
    assert len(group) == 1 and group.expired == 2 and group.extremes() == (0.7, 0.7)


def test_state_of_an_evicted_subject_starts_fresh() -> None:
    engine = RuleEngine([voltage_rule().model_copy(update={"subjects_max": 1})])
    assert states(feed(engine, "MEASUREMENT/m1/voltage", [254])) == ["high"]
    assert states(feed(engine, "MEASUREMENT/m2/voltage", [254])) == ["high"]  # m1 forgotten
    assert states(feed(engine, "MEASUREMENT/m1/voltage", [254])) == ["high"]  # fires again


# -- speed ----------------------------------------------------------------------------------


def test_throughput_of_an_engine_with_1000_rules() -> None:
    """Measures events/s through 1,000 rules (printed; run with -s). Not a timed target."""
    rng = random.Random(7)
    specs: list[RuleSpec] = []
    for index in range(1000):
        feeder = index % 100
        kind = index // 100
        if kind < 6:  # one exact-topic threshold per meter quantity
            specs.append(
                voltage_rule(topic="GRID/ALARM/{1}/{2}").model_copy(
                    update={"id": f"r{index}", "filter": f"FEEDER/f{feeder}/q{kind}/+"}
                )
            )
        elif kind < 8:
            specs.append(
                rate_rule().model_copy(
                    update={"id": f"r{index}", "filter": f"FEEDER/f{feeder}/q{kind}/+"}
                )
            )
        elif kind == 8:
            specs.append(
                voltage_rule(input="group_sum", above=1e9, topic="GRID/f/ALARM").model_copy(
                    update={"id": f"r{index}", "filter": f"FEEDER/f{feeder}/+/m0"}
                )
            )
        else:
            specs.append(
                rule(
                    "group_report", f"FEEDER/f{feeder}/q9/#", interval_s=60.0, topic="GRID/R"
                ).model_copy(update={"id": f"r{index}"})
            )
    engine = RuleEngine(specs)
    events = [
        Event(
            f"FEEDER/f{rng.randrange(100)}/q{rng.randrange(10)}/m{rng.randrange(50)}",
            rng.uniform(220.0, 260.0),
            step * 1000,
            1,
            step + 1,
            step + 1,
        )
        for step in range(50_000)
    ]
    started = time.perf_counter()
    signals = 0
    for event in events:
        signals += len(engine.on_event(event, event.time_us / 1e6))
    elapsed = time.perf_counter() - started
    rate = len(events) / elapsed
    stats = engine.stats()
    print(
        f"\nrule engine: {rate:,.0f} events/s through {len(specs)} rules "
        f"({stats['dispatches'] / len(events):.2f} rules per event, {signals:,} signals)"
    )
    assert stats["events"] == len(events) and stats["events_matched"] > 0.85 * len(events)
    assert rate > 2_000  # a floor far below the measured rate, so a busy machine passes


def test_rule_wide_state_is_never_evicted_by_subjects() -> None:
    spec = rule("dr_shed", "DR/COMMAND/+").model_copy(update={"subjects_max": 1, "cooldown_s": 1.0})
    engine = RuleEngine([spec])
    engine.on_event(ev("DEVICE/a/FLEXIBILITY", 4.0), 0.0)
    for region in range(5):  # each DR topic is a subject (for cooldowns)
        now = 200.0 * region
        engine.on_event(ev("DEVICE/a/FLEXIBILITY", 4.0), now)
        request = {"target_kw": 1.0, "duration_s": 100.0}
        commands, _ = plan_of(engine.on_event(ev(f"DR/COMMAND/r{region}", request), now))
        assert commands == {"a": 4.0}, f"region {region}"
    stats = engine.stats()
    assert stats["subjects"] == 2 and stats["subjects_evicted"] == 4
