"""Built-in grid-control policies: price response, curtailment, demand response.

These are the Control Policy Manager's decisions of seeds 001 and 004: an
energy management device that starts flexible loads early when the tariff is
low, a transformer controller that curtails PV (or soaks the surplus into
storage and flexible loads) when production outruns consumption, and a DR
aggregator that meets a requested reduction by commanding the devices with
the most flexibility first. Their commands are *commandable* signals (they
expire and want an acknowledgement); the DR plan is *informational*.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gridmesh.grid._rules_builtins import DAY_S, GROUP_TOPICS_MAX, ReadingParams
from gridmesh.grid._rules_policy import (
    COMMAND_S_MIN,
    RULE_SUBJECT,
    Payload,
    Policy,
    PolicyParams,
    RuleContext,
    RuleInputError,
    TopicFilterText,
    TopicTemplate,
    check_template,
    read_number,
)
from gridmesh.grid._rules_window import LatestGroup
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import TOPIC_LEVELS_MAX

__all__ = [
    "DEVICES_MAX",
    "DR_COMMANDS_MAX",
    "CurtailParams",
    "CurtailPolicy",
    "DrShedParams",
    "DrShedPolicy",
    "PriceShiftParams",
    "PriceShiftPolicy",
]

DEVICES_MAX = 1_000_000
DR_COMMANDS_MAX = 100_000
_DEVICE_CLASS = r"^[A-Za-z0-9_.-]{1,64}$"
#: A DR target counts as covered within this many kW (float sums are not exact).
_KW_EPSILON = 1e-9
_INT_MAGNITUDE_MAX = 2**64


class PriceShiftParams(ReadingParams):
    price_below: float = Field(description="start early at or below this price (tariff's unit)")
    rearm_above: float | None = Field(
        default=None, description="re-arm once the price is above this; None: price_below"
    )
    device_class: str = Field(pattern=_DEVICE_CLASS, description="the loads to start")
    topic: str = Field(description="where the command goes; {n}, {rule}, {device_class}")
    shift_for_s: float = Field(
        default=3600.0,
        ge=COMMAND_S_MIN,
        le=DAY_S,
        description="how long the permission to start lasts",
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, topic: str) -> str:
        return check_template(topic, frozenset({"device_class"}))

    @model_validator(mode="after")
    def _rearm(self) -> PriceShiftParams:
        if self.rearm_above is not None and self.rearm_above < self.price_below:
            raise ValueError("rearm_above at least price_below")
        return self


@dataclass(slots=True)
class _Armed:
    armed: bool = True


class PriceShiftPolicy(Policy[PriceShiftParams, _Armed]):
    """A tariff at or below ``price_below``: start a class of flexible loads early.

    Listens to tariff events (the price, or ``value[value_key]``, in the
    tariff's unit, e.g. EUR/kWh) and, once per cheap period per tariff topic,
    commands ``device_class`` on ``topic`` to start now instead of later; the
    command is valid ``shift_for_s`` seconds. The rule re-arms when the price
    rises above ``rearm_above`` (default ``price_below``), so a price wavering
    at the limit commands once. Other parameters: ``payload``, ``unit``.
    Payload: ``action`` (start_early), ``device_class``, ``price``, ``price_below``.
    """

    name = "price_responsive_shift"
    params_model = PriceShiftParams

    def new_state(self, params: PriceShiftParams) -> _Armed:
        return _Armed()

    def on_event(
        self, rule: RuleContext[PriceShiftParams, _Armed], event: Event, input_index: int
    ) -> None:
        params = rule.params
        price = read_number(event, params.value_key, params.unit)
        state = rule.state(event.topic)
        rearm = params.price_below if params.rearm_above is None else params.rearm_above
        if price > rearm:
            state.armed = True
            return
        if price > params.price_below or not state.armed or not rule.may_fire(event.topic):
            return
        state.armed = False
        payload = {
            **params.payload,
            "action": "start_early",
            "device_class": params.device_class,
            "price": price,
            "price_below": params.price_below,
        }
        topic = rule.topic(params.topic, device_class=params.device_class)
        rule.command(topic, payload, for_s=params.shift_for_s, subject=event.topic)


class CurtailParams(ReadingParams):
    consumption_filter: TopicFilterText = Field(
        description="consumption readings (kW); the rule's filter selects production (kW)"
    )
    surplus_kw_max: float = Field(ge=0.0, description="production may exceed consumption by this")
    hysteresis_kw: float = Field(
        default=0.0, ge=0.0, description="release at or below surplus_kw_max - hysteresis_kw"
    )
    action: Literal["curtail_pv", "charge_storage", "start_flexible_loads"] = "curtail_pv"
    topic: TopicTemplate = Field(description="where commands go; {n}: level n of the filter")
    command_for_s: float = Field(
        default=900.0,
        ge=COMMAND_S_MIN,
        le=DAY_S,
        description="validity; resent after half of it if held",
    )
    readings_max: int = Field(default=4096, ge=1, le=GROUP_TOPICS_MAX, description="per side")
    reading_age_s_max: float = Field(
        default=300.0, gt=0.0, le=7 * DAY_S, description="a topic silent this long leaves its sum"
    )
    report_release: bool = Field(default=True, description="command 'release' when it ends")


@dataclass(slots=True)
class _Balance:
    production: LatestGroup
    consumption: LatestGroup
    active: bool = False
    issued_s: float = 0.0


class CurtailPolicy(Policy[CurtailParams, _Balance]):
    """Production above consumption by more than ``surplus_kw_max`` kW: absorb the excess.

    Sums the latest reading of every production topic (the rule's filter) and
    every consumption topic (``consumption_filter``), up to ``readings_max``
    topics each, none older than ``reading_age_s_max`` seconds; decides only
    once both sides have readings. When the surplus exceeds ``surplus_kw_max``
    it commands ``action`` (curtail_pv, charge_storage, start_flexible_loads)
    on ``topic``, valid ``command_for_s`` seconds and resent after half of that
    while the surplus lasts; at or below ``surplus_kw_max - hysteresis_kw`` it
    commands ``release`` (if ``report_release``). Payload: ``action``,
    ``excess_kw``, ``surplus_kw``, ``production_kw``, ``consumption_kw``.
    """

    name = "curtail_on_overproduction"
    params_model = CurtailParams

    def extra_filters(self, params: CurtailParams) -> tuple[str, ...]:
        return (params.consumption_filter,)

    def new_state(self, params: CurtailParams) -> _Balance:
        return _Balance(
            LatestGroup(params.readings_max, params.reading_age_s_max),
            LatestGroup(params.readings_max, params.reading_age_s_max),
        )

    def on_event(
        self, rule: RuleContext[CurtailParams, _Balance], event: Event, input_index: int
    ) -> None:
        params = rule.params
        reading = read_number(event, params.value_key, params.unit)
        state = rule.state(RULE_SUBJECT)
        now = rule.time_s
        (state.production if input_index == 0 else state.consumption).update(
            event.topic, reading, now
        )
        state.production.expire(now)
        state.consumption.expire(now)
        if not state.production or not state.consumption:
            return
        production_kw = state.production.total()
        consumption_kw = state.consumption.total()
        surplus_kw = production_kw - consumption_kw
        excess_kw = surplus_kw - params.surplus_kw_max
        if excess_kw > 0.0:
            if state.active and now - state.issued_s < params.command_for_s / 2:
                return
            action: str = params.action
        elif state.active and surplus_kw <= params.surplus_kw_max - params.hysteresis_kw:
            action = "release"
        else:
            return
        if not rule.may_fire(RULE_SUBJECT):
            return
        state.active = action != "release"
        state.issued_s = now
        if action == "release" and not params.report_release:
            return
        payload = {
            **params.payload,
            "action": action,
            "excess_kw": max(excess_kw, 0.0),
            "surplus_kw": surplus_kw,
            "production_kw": production_kw,
            "consumption_kw": consumption_kw,
        }
        topic = rule.topic(params.topic, from_filter=True)
        rule.command(topic, payload, for_s=params.command_for_s, subject=RULE_SUBJECT)


class DrShedParams(PolicyParams):
    flexibility_filter: TopicFilterText = Field(
        default="DEVICE/+/FLEXIBILITY",
        description="where devices report the kW they can shed now",
    )
    device_level: int = Field(
        default=1, ge=0, lt=TOPIC_LEVELS_MAX, description="the flexibility topic's device level"
    )
    flexibility_key: str | None = Field(
        default=None, min_length=1, max_length=64, description="key of the kW in a map report"
    )
    flexibility_unit: str | None = Field(default=None, max_length=32)
    flexibility_age_s_max: float = Field(
        default=900.0, gt=0.0, le=7 * DAY_S, description="older reports are not counted on"
    )
    device_kw_min: float = Field(default=0.0, ge=0.0, description="smaller offers are ignored")
    devices_max: int = Field(default=10_000, ge=1, le=DEVICES_MAX, description="devices known")
    commands_max: int = Field(
        default=1000, ge=1, le=DR_COMMANDS_MAX, description="commands per DR event"
    )
    partial_shed: bool = Field(
        default=False, description="ask the last device chosen for the remainder only"
    )
    duration_s_default: float = Field(default=3600.0, ge=COMMAND_S_MIN, le=DAY_S)
    duration_s_max: float = Field(default=4 * 3600.0, ge=COMMAND_S_MIN, le=DAY_S)
    command_topic: str = Field(
        default="DEVICE/{device}/COMMAND/shed", description="{device}, {n} of the DR topic, {rule}"
    )
    report_topic: TopicTemplate = Field(
        default="DR/REPORT/{rule}/plan",
        description="where the plan goes; {rule}, {n}: level n of the DR topic",
    )
    payload: Payload = Field(default_factory=dict)

    @field_validator("command_topic")
    @classmethod
    def _command_topic(cls, topic: str) -> str:
        return check_template(topic, frozenset({"device"}))


@dataclass(slots=True)
class _Fleet:
    #: device -> (kW it can shed, when reported), least recently reported first.
    offers: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    #: device -> until when it is shedding for an earlier DR event.
    committed: dict[str, float] = field(default_factory=dict)


class DrShedPolicy(Policy[DrShedParams, _Fleet]):
    """A DR command for a region: command the most flexible devices until the target is met.

    Devices report on ``flexibility_filter`` the kW they can shed (a number,
    or ``value[flexibility_key]``); the device is level ``device_level`` of the
    topic. Up to ``devices_max`` devices are known (the least recently reported
    is forgotten first); reports older than ``flexibility_age_s_max`` seconds
    or below ``device_kw_min`` kW are not counted on. A DR command on the
    rule's filter (``target_kw`` as a number, or a map with ``target_kw`` and
    optionally ``duration_s``) picks devices greedily, largest offer first
    (ties by device id), skipping those still shedding for an earlier command,
    until the target is covered or ``commands_max`` commands are planned. Each
    chosen device gets a command on ``command_topic`` (``shed_kw``, ``until_s``)
    valid for the duration (``duration_s_default``, at most ``duration_s_max``
    seconds); the plan goes to ``report_topic`` (informational: ``target_kw``,
    ``planned_kw``, ``shortfall_kw``, ``devices``, ``candidates``, ``duration_s``).
    """

    name = "dr_shed"
    params_model = DrShedParams

    def extra_filters(self, params: DrShedParams) -> tuple[str, ...]:
        return (params.flexibility_filter,)

    def new_state(self, params: DrShedParams) -> _Fleet:
        return _Fleet()

    def on_event(
        self, rule: RuleContext[DrShedParams, _Fleet], event: Event, input_index: int
    ) -> None:
        if input_index == 1:
            self._offer(rule, event)
        else:
            self._shed(rule, event)

    def _offer(self, rule: RuleContext[DrShedParams, _Fleet], event: Event) -> None:
        params = rule.params
        levels = event.topic.split("/")
        if params.device_level >= len(levels) or not levels[params.device_level]:
            raise RuleInputError("device_level", f"no device at level {params.device_level}")
        device = levels[params.device_level]
        kw = read_number(event, params.flexibility_key, params.flexibility_unit)
        if kw < 0.0:
            raise RuleInputError("negative_flexibility", "flexibility must be >= 0 kW")
        offers = rule.state(RULE_SUBJECT).offers
        offers.pop(device, None)
        if len(offers) >= params.devices_max:
            offers.popitem(last=False)
            rule.count("devices_evicted")
        offers[device] = (kw, rule.time_s)

    def _shed(self, rule: RuleContext[DrShedParams, _Fleet], event: Event) -> None:
        params = rule.params
        target_kw, duration_s = _dr_request(event.value, params)
        if not rule.may_fire(event.topic):
            return
        now = rule.time_s
        fleet = rule.state(RULE_SUBJECT)
        fleet.committed = {dev: until for dev, until in fleet.committed.items() if until > now}
        fresh_s = now - params.flexibility_age_s_max
        candidates = sorted(
            (-kw, device)
            for device, (kw, reported_s) in fleet.offers.items()
            if kw > 0.0
            and kw >= params.device_kw_min
            and reported_s >= fresh_s
            and device not in fleet.committed
        )
        until_s = now + duration_s
        report_topic = rule.topic(params.report_topic)
        plan: list[tuple[str, float, str]] = []  # (device, shed_kw, command topic)
        planned_kw = 0.0
        for negative_kw, device in candidates:
            if target_kw - planned_kw <= _KW_EPSILON:
                break
            if len(plan) >= params.commands_max:
                rule.count("commands_capped")
                break
            shed_kw = -negative_kw
            if params.partial_shed:
                shed_kw = min(shed_kw, target_kw - planned_kw)
            plan.append((device, shed_kw, rule.topic(params.command_topic, device=device)))
            planned_kw += shed_kw
        for device, shed_kw, topic in plan:  # every topic rendered: nothing can fail now
            fleet.committed[device] = until_s
            payload = {
                **params.payload,
                "action": "shed",
                "shed_kw": shed_kw,
                "until_s": until_s,
                "dr_topic": event.topic,
            }
            rule.command(topic, payload, for_s=duration_s, subject=event.topic)
        report = {
            **params.payload,
            "target_kw": target_kw,
            "planned_kw": planned_kw,
            "shortfall_kw": max(target_kw - planned_kw, 0.0),
            "devices": len(plan),
            "candidates": len(candidates),
            "duration_s": duration_s,
            "until_s": until_s,
        }
        rule.inform(report_topic, report, subject=event.topic)


def _dr_request(value: object, params: DrShedParams) -> tuple[float, float]:
    """``(target_kw, duration_s)`` of a DR command's value; ``RuleInputError`` if unusable."""
    duration: object = params.duration_s_default
    if isinstance(value, Mapping):
        if "target_kw" not in value:
            raise RuleInputError("missing_key", "a DR command needs target_kw")
        duration = value.get("duration_s", duration)
        value = value["target_kw"]
    target_kw = _positive(value, "target_kw")
    duration_s = _positive(duration, "duration_s")
    if duration_s < COMMAND_S_MIN:
        raise RuleInputError("bad_dr_command", f"duration_s must be at least {COMMAND_S_MIN} s")
    return target_kw, min(duration_s, params.duration_s_max)


def _positive(value: object, what: str) -> float:
    if type(value) is int and 0 < value <= _INT_MAGNITUDE_MAX:
        return float(value)
    if type(value) is float and 0.0 < value < math.inf:
        return value
    raise RuleInputError("bad_dr_command", f"{what} must be a positive finite number")
