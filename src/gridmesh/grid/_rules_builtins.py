"""Built-in measurement policies: ``threshold``, ``rate_of_change``, ``group_report``.

Each watches readings (a number in an event's value, or under ``value_key``
of a map; of unit ``unit`` when one is given) and reports what it sees.
``threshold`` is edge-triggered through a hysteresis band, so a value
wavering around a limit fires once, not at every reading; the table
``_BAND_NEXT`` is its whole state machine. The grid-control policies
(price response, curtailment, demand response) are in ``_rules_grid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from gridmesh.grid._rules_policy import (
    COMMAND_S_MIN,
    RULE_SUBJECT,
    Payload,
    Policy,
    PolicyParams,
    RuleContext,
    RuleInputError,
    TopicTemplate,
    read_number,
)
from gridmesh.grid._rules_window import LatestGroup, SlidingWindow
from gridmesh.protocols.pubsub import Event

__all__ = [
    "DAY_S",
    "GROUP_TOPICS_MAX",
    "WINDOW_SAMPLES_MAX",
    "GroupReportParams",
    "GroupReportPolicy",
    "RateOfChangeParams",
    "RateOfChangePolicy",
    "ReadingParams",
    "ThresholdParams",
    "ThresholdPolicy",
]

DAY_S = 86_400.0
WINDOW_SAMPLES_MAX = 4096
GROUP_TOPICS_MAX = 1_000_000


class _Band(Enum):
    NORMAL = "normal"
    HIGH = "high"
    LOW = "low"


class _Zone(Enum):
    OVER = 0  # above `above`
    NEAR_OVER = 1  # in (above - hysteresis, above]: a high alarm holds here
    MID = 2
    NEAR_UNDER = 3  # in [below, below + hysteresis): a low alarm holds here
    UNDER = 4  # below `below`


# (band, zone) -> next band. A band changes only here; every change is one signal.
_BAND_NEXT: dict[tuple[_Band, _Zone], _Band] = {
    (_Band.NORMAL, _Zone.OVER): _Band.HIGH,
    (_Band.NORMAL, _Zone.NEAR_OVER): _Band.NORMAL,
    (_Band.NORMAL, _Zone.MID): _Band.NORMAL,
    (_Band.NORMAL, _Zone.NEAR_UNDER): _Band.NORMAL,
    (_Band.NORMAL, _Zone.UNDER): _Band.LOW,
    (_Band.HIGH, _Zone.OVER): _Band.HIGH,
    (_Band.HIGH, _Zone.NEAR_OVER): _Band.HIGH,
    (_Band.HIGH, _Zone.MID): _Band.NORMAL,
    (_Band.HIGH, _Zone.NEAR_UNDER): _Band.NORMAL,
    (_Band.HIGH, _Zone.UNDER): _Band.LOW,
    (_Band.LOW, _Zone.OVER): _Band.HIGH,
    (_Band.LOW, _Zone.NEAR_OVER): _Band.NORMAL,
    (_Band.LOW, _Zone.MID): _Band.NORMAL,
    (_Band.LOW, _Zone.NEAR_UNDER): _Band.LOW,
    (_Band.LOW, _Zone.UNDER): _Band.LOW,
}


class ReadingParams(PolicyParams):
    """Parameters every reading-watching policy shares."""

    value_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="when readings are maps, the key of the number; None: the value is it",
    )
    unit: str | None = Field(
        default=None,
        max_length=32,
        description="the unit readings must carry (Event.unit, exactly); None: any",
    )
    payload: Payload = Field(
        default_factory=dict, description="fixed fields added to every signal's payload"
    )


class ThresholdParams(ReadingParams):
    above: float | None = Field(default=None, description="fire when the input exceeds this")
    below: float | None = Field(default=None, description="fire when the input falls below this")
    hysteresis: float = Field(
        default=0.0,
        ge=0.0,
        description="a high state clears at or below above - hysteresis, a low one at or "
        "above below + hysteresis (the readings' unit)",
    )
    input: Literal["value", "window_mean", "group_sum", "group_mean"] = Field(
        default="value",
        description="value: each reading, per topic; window_mean: the mean over window_s, per "
        "topic; group_sum / group_mean: over the latest reading of every topic the filter "
        "matches, one state for the rule",
    )
    window_s: float = Field(default=60.0, gt=0.0, le=DAY_S, description="for window_mean")
    samples_max: int = Field(default=64, ge=1, le=WINDOW_SAMPLES_MAX, description="per window")
    group_age_s_max: float = Field(
        default=300.0, gt=0.0, le=7 * DAY_S, description="a topic silent this long leaves a group"
    )
    group_topics_max: int = Field(default=1024, ge=1, le=GROUP_TOPICS_MAX)
    topic: TopicTemplate = Field(
        description="where signals go; {n}: level n of the reading's topic (of the rule's "
        "filter for group inputs)"
    )
    signal: Literal["informational", "commandable"] = "informational"
    command_for_s: float = Field(
        default=900.0,
        ge=COMMAND_S_MIN,
        le=DAY_S,
        description="a command's validity; a held command is sent again after half of it",
    )
    report_clear: bool = Field(default=True, description="signal the return to normal too")

    @model_validator(mode="after")
    def _limits(self) -> ThresholdParams:
        if self.above is None and self.below is None:
            raise ValueError("at least one of above and below")
        if (
            self.above is not None
            and self.below is not None
            and self.below + self.hysteresis > self.above - self.hysteresis
        ):
            raise ValueError(
                "below + hysteresis at most above - hysteresis (the two bands would overlap)"
            )
        return self


@dataclass(slots=True)
class _ThresholdState:
    band: _Band = _Band.NORMAL
    issued_s: float | None = None
    window: SlidingWindow | None = None
    group: LatestGroup | None = None


class ThresholdPolicy(Policy[ThresholdParams, _ThresholdState]):
    """A reading beyond a limit, with hysteresis: one signal per crossing, not per reading.

    Parameters: ``above`` / ``below`` (at least one; the readings' unit),
    ``hysteresis`` (same unit; the way back a value must come before the state
    clears), ``input`` (``value``, ``window_mean`` over ``window_s`` seconds and
    ``samples_max`` samples, ``group_sum`` / ``group_mean`` over the latest
    readings of up to ``group_topics_max`` topics, none older than
    ``group_age_s_max`` seconds), ``topic`` (template), ``signal``
    (``informational`` alarm or ``commandable`` command valid ``command_for_s``
    seconds), ``report_clear``, ``payload``, ``value_key``, ``unit``.
    Payload: ``state`` (high, low, normal), ``value``, ``limit``.
    """

    name = "threshold"
    params_model = ThresholdParams

    def new_state(self, params: ThresholdParams) -> _ThresholdState:
        if params.input == "window_mean":
            return _ThresholdState(window=SlidingWindow(params.window_s, params.samples_max))
        if params.input in ("group_sum", "group_mean"):
            return _ThresholdState(
                group=LatestGroup(params.group_topics_max, params.group_age_s_max)
            )
        return _ThresholdState()

    def on_event(
        self, rule: RuleContext[ThresholdParams, _ThresholdState], event: Event, input_index: int
    ) -> None:
        params = rule.params
        reading = read_number(event, params.value_key, params.unit)
        subject = event.topic
        state: _ThresholdState
        if params.input == "value":
            state = rule.state(subject)
            value = reading
        elif params.input == "window_mean":
            state = rule.state(subject)
            assert state.window is not None
            if not state.window.add(event.time_us / 1e6, reading):
                raise RuleInputError("out_of_order", "a reading no newer than the last")
            mean = state.window.mean()
            assert mean is not None  # the window holds the reading just added
            value = mean
        else:
            subject = RULE_SUBJECT
            state = rule.state(subject)
            group = state.group
            assert group is not None
            group.update(event.topic, reading, rule.time_s)
            mean = group.mean()
            assert mean is not None  # the group holds the reading just added
            value = group.total() if params.input == "group_sum" else mean
        band = _BAND_NEXT[state.band, _zone(params, value)]
        if band is state.band:
            refresh_due = (
                params.signal == "commandable"
                and band is not _Band.NORMAL
                and state.issued_s is not None
                and rule.time_s - state.issued_s >= params.command_for_s / 2
            )
            if not refresh_due:
                return
        elif band is _Band.NORMAL and not params.report_clear:
            state.band = band
            return
        if not rule.may_fire(subject):
            return  # the state waits for the first reading after the cooldown
        state.band = band
        state.issued_s = rule.time_s
        limit = params.above if band is _Band.HIGH else params.below
        if band is _Band.NORMAL:
            limit = None
        payload = {
            **params.payload,
            "state": band.value,
            "value": value,
            "limit": limit,
        }
        topic = rule.topic(params.topic, from_filter=subject == RULE_SUBJECT)
        if params.signal == "commandable":
            rule.command(topic, payload, for_s=params.command_for_s, subject=subject)
        else:
            rule.inform(topic, payload, subject=subject)


def _zone(params: ThresholdParams, value: float) -> _Zone:
    above, below, hysteresis = params.above, params.below, params.hysteresis
    if above is not None:
        if value > above:
            return _Zone.OVER
        if value > above - hysteresis:
            return _Zone.NEAR_OVER
    if below is not None:
        if value < below:
            return _Zone.UNDER
        if value < below + hysteresis:
            return _Zone.NEAR_UNDER
    return _Zone.MID


class RateOfChangeParams(ReadingParams):
    rate_max: float = Field(gt=0.0, description="the readings' unit per second")
    window_s: float = Field(default=60.0, gt=0.0, le=DAY_S)
    samples_max: int = Field(default=64, ge=2, le=WINDOW_SAMPLES_MAX)
    direction: Literal["rising", "falling", "both"] = "both"
    clock: Literal["source", "received"] = Field(
        default="source",
        description="sample times: the source's (Event.time_us) or the engine's (now)",
    )
    topic: TopicTemplate = Field(description="where alarms go; {n}: level n of the topic")


@dataclass(slots=True)
class _RateState:
    window: SlidingWindow
    alarmed: bool = False


class RateOfChangePolicy(Policy[RateOfChangeParams, _RateState]):
    """A measurement changing faster than ``rate_max`` per second: an alarm (informational).

    Parameters: ``rate_max`` (the readings' unit per second, > 0), ``window_s``
    (seconds) and ``samples_max`` (the rate is taken between the oldest and the
    newest sample kept, per topic), ``direction`` (rising, falling, both),
    ``clock`` (source: the event's ``time_us``; received: the engine's time),
    ``topic`` (template), ``payload``, ``value_key``, ``unit``. One alarm per
    excursion: the rule re-arms once the rate is back within ``rate_max``.
    Payload: ``rate_per_s``, ``rate_max``, ``value``, ``span_s``.
    """

    name = "rate_of_change"
    params_model = RateOfChangeParams

    def new_state(self, params: RateOfChangeParams) -> _RateState:
        return _RateState(SlidingWindow(params.window_s, params.samples_max))

    def on_event(
        self, rule: RuleContext[RateOfChangeParams, _RateState], event: Event, input_index: int
    ) -> None:
        params = rule.params
        reading = read_number(event, params.value_key, params.unit)
        state = rule.state(event.topic)
        time_s = event.time_us / 1e6 if params.clock == "source" else rule.time_s
        if not state.window.add(time_s, reading):
            raise RuleInputError("out_of_order", "a reading no newer than the last")
        rate = state.window.rate_per_s()
        if rate is None:
            return
        direction = params.direction
        too_fast = (direction != "falling" and rate > params.rate_max) or (
            direction != "rising" and rate < -params.rate_max
        )
        if not too_fast:
            state.alarmed = False
            return
        if state.alarmed or not rule.may_fire(event.topic):
            return
        state.alarmed = True
        payload = {
            **params.payload,
            "rate_per_s": rate,
            "rate_max": params.rate_max,
            "value": reading,
            "span_s": state.window.span_s(),
        }
        rule.inform(rule.topic(params.topic), payload, subject=event.topic)


class GroupReportParams(ReadingParams):
    interval_s: float = Field(ge=0.1, le=DAY_S, description="seconds between reports")
    topic: TopicTemplate = Field(description="where reports go; {n}: level n of the filter")
    group_age_s_max: float = Field(default=300.0, gt=0.0, le=7 * DAY_S)
    group_topics_max: int = Field(default=1024, ge=1, le=GROUP_TOPICS_MAX)
    skip_empty: bool = Field(default=False, description="no report while the group is empty")


@dataclass(slots=True)
class _GroupState:
    group: LatestGroup
    reports: int = field(default=0)


class GroupReportPolicy(Policy[GroupReportParams, _GroupState]):
    """The Data Aggregator as a rule: every ``interval_s``, the group's load (informational).

    Keeps the latest reading of each topic the filter matches (up to
    ``group_topics_max`` topics, none older than ``group_age_s_max`` seconds)
    and every ``interval_s`` seconds reports their ``sum``, ``mean``, ``count``,
    ``min`` and ``max`` (the readings' unit; None where empty) on ``topic``.
    Other parameters: ``skip_empty``, ``payload``, ``value_key``, ``unit``.
    """

    name = "group_report"
    params_model = GroupReportParams

    def interval_s(self, params: GroupReportParams) -> float:
        return params.interval_s

    def new_state(self, params: GroupReportParams) -> _GroupState:
        return _GroupState(LatestGroup(params.group_topics_max, params.group_age_s_max))

    def on_event(
        self, rule: RuleContext[GroupReportParams, _GroupState], event: Event, input_index: int
    ) -> None:
        params = rule.params
        reading = read_number(event, params.value_key, params.unit)
        rule.state(RULE_SUBJECT).group.update(event.topic, reading, rule.time_s)

    def on_tick(self, rule: RuleContext[GroupReportParams, _GroupState]) -> None:
        params = rule.params
        state = rule.state(RULE_SUBJECT)
        group = state.group
        group.expire(rule.time_s)
        if not group and params.skip_empty:
            return
        extremes = group.extremes()
        payload = {
            **params.payload,
            "sum": group.total(),
            "mean": group.mean(),
            "count": len(group),
            "min": None if extremes is None else extremes[0],
            "max": None if extremes is None else extremes[1],
        }
        state.reports += 1
        rule.inform(rule.topic(params.topic), payload, subject=RULE_SUBJECT)
