"""The Rule Framework and Control Policy Manager (seed 001, sections III.B.6 and IV).

Theory of operation
-------------------
"Typical power system management functions can be expressed in rules: the
system listens to certain events, processes them based on given knowledge and
algorithms and performs a resulting action" (seed 001, III.B.6). Here a rule
is three things, each held apart from the others:

* **what it listens to**: a topic filter (MQTT rules, ``gridmesh.topics``),
  plus any filter its policy adds (``consumption_filter``);
* **its logic**: a named ``Policy`` from a ``PolicyRegistry`` (``threshold``,
  ``rate_of_change``, ``group_report``, ``price_responsive_shift``,
  ``curtail_on_overproduction``, ``dr_shed``, and what an application
  registers). No code travels: a scenario file or a peer only *names* a
  policy, the way an aggregation query names its function;
* **its parameters**: a pydantic model the policy declares, validated when
  the rule is. This is the separation seed 001 asks for, "to apply the same
  energy control policy in different subsystem, but with different settings":
  two ``RuleSpec`` naming ``threshold`` with two parameter sets are two rules
  and share nothing but the logic.

The ``RuleEngine`` is a sans-I/O core. ``on_event(event, now)`` finds the
rules whose filters match the event's topic in one walk of a ``TopicTrie``
(keys ``rule_index * RULE_INPUTS_MAX + input_index``; cost grows with the
topic's depth and the wildcards met, not with the number of rules), runs them
in declaration order and returns their ``Signal``\\s; ``tick(now)`` runs the
policies that asked for a period (``next_deadline()`` says when, aioquic's
``get_timer``). Time comes in as ``now`` (seconds, never decreasing); the
engine keeps no clock, does no I/O and draws no random numbers, so one
sequence of calls gives one sequence of signals (signal ids included).

What never bends:

* **Bounded state.** A rule keeps state per subject (usually the event's
  topic), at most ``subjects_max`` subjects (least recently used forgotten,
  counted); every window, group and device table inside has its own limit in
  its parameters. Nothing grows with the number of distinct topics seen.
* **Cooldown.** A subject fires at most once per ``cooldown_s``: signals it
  emits inside that time are dropped and counted, and an edge-triggered
  policy keeps its old state instead, so the next reading after the cooldown
  decides again. A rule never claims to have said what it did not say.
* **Bad input is counted, not raised.** An event a rule cannot use (no number,
  the wrong unit, a topic too shallow for the signal's template) is counted
  as ``input_error.<reason>`` and that rule does nothing; the other rules
  still see the event. An invalid topic is counted as ``bad_topic``.
* **Commands expire.** Every commandable signal has ``expires_s``; see
  ``SignalKind`` for the two kinds (seed 004).

Rules are declared in Python (``RuleSpec(...)``) or in a scenario file
(``[[rules]]`` tables, validated by ``RulesConfig`` or the ``RuleList`` type);
errors are pydantic ``ValidationError``\\s located at ``rules[i].field`` or
``rules[i].params.field``, which ``gridmesh.config.config_error`` turns into a
one-paragraph message. See docs/RULES.md.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.grid._rules_builtins import (
    DAY_S,
    GroupReportParams,
    GroupReportPolicy,
    RateOfChangeParams,
    RateOfChangePolicy,
    ReadingParams,
    ThresholdParams,
    ThresholdPolicy,
)
from gridmesh.grid._rules_grid import (
    CurtailParams,
    CurtailPolicy,
    DrShedParams,
    DrShedPolicy,
    PriceShiftParams,
    PriceShiftPolicy,
)
from gridmesh.grid._rules_policy import (
    RULE_SUBJECT,
    Payload,
    Policy,
    PolicyParams,
    PolicyRegistry,
    RuleContext,
    RuleInputError,
    Signal,
    SignalKind,
    TopicFilterText,
    TopicTemplate,
    check_template,
    read_number,
)
from gridmesh.grid._rules_window import LatestGroup, SlidingWindow
from gridmesh.protocols.pubsub import Event, EventKey
from gridmesh.topics import TopicTrie

__all__ = [
    "DEFAULT_POLICIES",
    "RULES_MAX",
    "RULE_INPUTS_MAX",
    "RULE_SUBJECT",
    "SUBJECTS_MAX",
    "CurtailParams",
    "CurtailPolicy",
    "DrShedParams",
    "DrShedPolicy",
    "GroupReportParams",
    "GroupReportPolicy",
    "LatestGroup",
    "Payload",
    "Policy",
    "PolicyParams",
    "PolicyRegistry",
    "PriceShiftParams",
    "PriceShiftPolicy",
    "RateOfChangeParams",
    "RateOfChangePolicy",
    "ReadingParams",
    "RuleContext",
    "RuleEngine",
    "RuleInputError",
    "RuleList",
    "RuleSpec",
    "RulesConfig",
    "Signal",
    "SignalKind",
    "SlidingWindow",
    "ThresholdParams",
    "ThresholdPolicy",
    "TopicFilterText",
    "TopicTemplate",
    "builtin_policies",
    "check_template",
    "read_number",
]

#: Rules in one engine (one Control Policy Manager).
RULES_MAX = 10_000
#: Filters one rule listens to: its own and those its policy adds.
RULE_INPUTS_MAX = 8
#: The most subjects one rule may keep state for.
SUBJECTS_MAX = 1_000_000

_RULE_ID = r"^[A-Za-z0-9_.-]{1,64}$"


def builtin_policies() -> PolicyRegistry:
    """A new registry holding the built-in policies only."""
    registry = PolicyRegistry()
    for policy in (
        ThresholdPolicy(),
        RateOfChangePolicy(),
        GroupReportPolicy(),
        PriceShiftPolicy(),
        CurtailPolicy(),
        DrShedPolicy(),
    ):
        registry.register(policy)
    return registry


#: The registry rules use unless told otherwise; applications add their policies here.
DEFAULT_POLICIES = builtin_policies()


def _registry(info: ValidationInfo) -> PolicyRegistry:
    """The registry to validate against: ``context={"policies": ...}``, else the default."""
    context = info.context
    if isinstance(context, Mapping):
        registry = context.get("policies")
        if isinstance(registry, PolicyRegistry):
            return registry
    return DEFAULT_POLICIES


class RuleSpec(BaseModel):
    """One rule: a filter, a policy's name and that policy's parameters.

    Validated against ``DEFAULT_POLICIES``, or the registry given as
    ``RuleSpec.model_validate(raw, context={"policies": registry})``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = Field(
        default=None,
        pattern=_RULE_ID,
        description="names the rule in signals, stats and {rule}; default rule-<index>",
    )
    policy: str = Field(description="a registered policy's name")
    filter: TopicFilterText = Field(description="the topic filter the rule listens to")
    params: SerializeAsAny[PolicyParams] = Field(
        default_factory=dict,  # validated into the policy's model
        validate_default=True,
        description="the policy's parameters (see docs/RULES.md)",
    )
    cooldown_s: float = Field(
        default=0.0, ge=0.0, le=DAY_S, description="a subject fires at most once per this"
    )
    subjects_max: int = Field(
        default=1024,
        ge=1,
        le=SUBJECTS_MAX,
        description="subjects (topics) the rule keeps state for",
    )

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, name: str, info: ValidationInfo) -> str:
        registry = _registry(info)
        if name not in registry:
            raise ValueError(f"a registered policy, one of: {', '.join(registry.names())}")
        return name

    @field_validator("params", mode="before")
    @classmethod
    def _policy_params(cls, raw: object, info: ValidationInfo) -> object:
        name = info.data.get("policy")
        if name is None:  # the policy is already reported unknown; nothing to check against
            return PolicyParams.model_construct()
        model = _registry(info).get(name).params_model
        if isinstance(raw, model):
            return raw
        if isinstance(raw, PolicyParams):
            raise ValueError(
                f"{model.__name__} (the parameters of {name}), not {type(raw).__name__}"
            )
        return model.model_validate(raw, context=info.context)  # errors at params.<field>

    def rule_id(self, index: int) -> str:
        """The rule's id: ``id``, else ``rule-<index>`` (its place in the list)."""
        return self.id if self.id is not None else f"rule-{index}"


def _unique_ids(rules: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
    first: dict[str, int] = {}
    for index, spec in enumerate(rules):
        rule_id = spec.rule_id(index)
        if rule_id in first:
            message = f"an id no other rule has ({rule_id!r} is also rule {first[rule_id]}'s)"
            error = PydanticCustomError("duplicate_rule_id", message)
            details = InitErrorDetails(type=error, loc=(index, "id"), input=rule_id)
            raise ValidationError.from_exception_data("rules", [details])
        first[rule_id] = index
    return rules


#: A list of rules with distinct ids: the type of a scenario's ``[[rules]]`` section.
RuleList = Annotated[tuple[RuleSpec, ...], Field(max_length=RULES_MAX), AfterValidator(_unique_ids)]


class RulesConfig(BaseModel):
    """The rules of one Control Policy Manager, as a ``[[rules]]`` section declares them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: RuleList = ()


class RuleEngine:
    """Runs rules on events and ticks; returns the signals to publish. Sans-I/O.

    ``policies`` must be the registry the specs were validated against (or one
    holding the same policies).
    """

    __slots__ = (
        "_contexts",
        "_counters",
        "_intervals",
        "_signals",
        "_specs",
        "_start_s",
        "_time_s",
        "_timers",
        "_trie",
    )

    def __init__(
        self,
        rules: Iterable[RuleSpec] | RulesConfig,
        policies: PolicyRegistry = DEFAULT_POLICIES,
        *,
        start_s: float = 0.0,
    ) -> None:
        specs = rules.rules if isinstance(rules, RulesConfig) else tuple(rules)
        if len(specs) > RULES_MAX:
            raise LocalProtocolError(f"{len(specs)} rules exceed RULES_MAX ({RULES_MAX})")
        if not math.isfinite(start_s):
            raise LocalProtocolError(f"start_s must be finite, got {start_s!r}")
        self._specs = specs
        self._trie: TopicTrie[int] = TopicTrie()
        self._contexts: list[RuleContext[Any, Any]] = []
        self._intervals: dict[int, float] = {}
        self._timers: list[tuple[float, int, int]] = []  # (deadline_s, rule index, tick number)
        self._start_s = start_s
        self._time_s = start_s
        self._signals = 0
        self._counters = {"bad_topic": 0, "dispatches": 0, "events": 0, "events_matched": 0}
        ids: set[str] = set()
        for index, spec in enumerate(specs):
            if not isinstance(spec, RuleSpec):
                raise LocalProtocolError(f"rule {index} is a {type(spec).__name__}, not a RuleSpec")
            rule_id = spec.rule_id(index)
            if rule_id in ids:
                raise LocalProtocolError(f"rule {index}: id {rule_id!r} is taken")
            ids.add(rule_id)
            policy = policies.get(spec.policy)
            if not isinstance(spec.params, policy.params_model):
                raise LocalProtocolError(
                    f"rule {rule_id!r}: params are a {type(spec.params).__name__}, policy "
                    f"{spec.policy!r} here takes {policy.params_model.__name__}"
                )
            filters = (spec.filter, *policy.extra_filters(spec.params))
            if len(filters) > RULE_INPUTS_MAX:
                raise LocalProtocolError(f"rule {rule_id!r} has over {RULE_INPUTS_MAX} inputs")
            for input_index, topic_filter in enumerate(filters):
                self._trie.add(topic_filter, index * RULE_INPUTS_MAX + input_index)
            self._contexts.append(
                RuleContext(
                    policy,
                    rule_id,
                    spec.filter,
                    spec.params,
                    cooldown_s=spec.cooldown_s,
                    subjects_max=spec.subjects_max,
                )
            )
            interval_s = policy.interval_s(spec.params)
            if interval_s is not None:
                assert interval_s > 0.0
                self._intervals[index] = interval_s
                heapq.heappush(self._timers, (start_s + interval_s, index, 1))

    @property
    def rules(self) -> tuple[RuleSpec, ...]:
        """The rules, in the order they run."""
        return self._specs

    @property
    def time_s(self) -> float:
        """The ``now`` of the latest call (``start_s`` before the first)."""
        return self._time_s

    def on_event(self, event: Event, now: float) -> list[Signal]:
        """The signals the rules matching ``event.topic`` emit, in rule order."""
        self._advance(now)
        counters = self._counters
        counters["events"] += 1
        try:
            keys = self._trie.match(event.topic)
        except InvalidTopic:
            counters["bad_topic"] += 1
            return []
        if not keys:
            return []
        counters["events_matched"] += 1
        counters["dispatches"] += len(keys)
        signals: list[Signal] = []
        cause = event.key
        for key in sorted(keys) if len(keys) > 1 else keys:
            index, input_index = divmod(key, RULE_INPUTS_MAX)
            context = self._contexts[index]
            context.time_s = now
            context.event = event
            try:
                context.policy.on_event(context, event, input_index)
            except RuleInputError as exc:
                context.take_outbox()
                context.count("input_errors")
                context.count(f"input_error.{exc.reason}")
            else:
                self._flush(context, signals, cause)
            context.event = None
        return signals

    def tick(self, now: float) -> list[Signal]:
        """The signals of the periodic rules due at ``now`` (each runs once however late)."""
        self._advance(now)
        signals: list[Signal] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, index, number = heapq.heappop(timers)
            context = self._contexts[index]
            context.time_s = now
            try:
                context.policy.on_tick(context)
            except RuleInputError as exc:
                context.take_outbox()
                context.count("input_errors")
                context.count(f"input_error.{exc.reason}")
            else:
                self._flush(context, signals, None)
            interval_s = self._intervals[index]
            due = max(number + 1, math.floor((now - self._start_s) / interval_s) + 1)
            if due > number + 1:
                context.count("ticks_skipped", due - number - 1)
            deadline_s = self._start_s + due * interval_s
            if deadline_s <= now:  # rounding, far from start_s: never the same deadline twice
                deadline_s = math.nextafter(now, math.inf)
            heapq.heappush(timers, (deadline_s, index, due))
        return signals

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (engine seconds); None if no rule is periodic."""
        return self._timers[0][0] if self._timers else None

    def stats(self) -> dict[str, int]:
        """Counters over all rules (events, signals, suppressions, input errors by reason)."""
        totals = dict(self._counters)
        totals["rules"] = len(self._contexts)
        totals["signals"] = self._signals
        totals["subjects"] = 0
        for context in self._contexts:
            totals["subjects"] += context.subjects
            for name, value in context.counters.items():
                totals[name] = totals.get(name, 0) + value
        return dict(sorted(totals.items()))

    def rule_stats(self, rule_id: str) -> dict[str, int]:
        """One rule's counters and its number of subjects; ``LocalProtocolError`` if unknown."""
        for context in self._contexts:
            if context.rule_id == rule_id:
                return dict(sorted({**context.counters, "subjects": context.subjects}.items()))
        raise LocalProtocolError(f"no rule {rule_id!r}")

    def _advance(self, now: float) -> None:
        if not now >= self._time_s or not math.isfinite(now):  # NaN fails the first test
            raise LocalProtocolError(f"time must not go backwards: {now!r} < {self._time_s!r}")
        self._time_s = now

    def _flush(
        self, context: RuleContext[Any, Any], out: list[Signal], cause: EventKey | None
    ) -> None:
        drafts = context.take_outbox()
        if not drafts:
            return
        allowed: dict[str, bool] = {}
        for draft in drafts:
            subject = draft.subject
            fires = allowed.get(subject)
            if fires is None:
                fires = allowed[subject] = context.fired(subject)
                if not fires:
                    context.count("suppressed_cooldown")
            if not fires:
                continue
            self._signals += 1
            context.count(f"signals_{draft.kind.value}")
            out.append(
                Signal(
                    draft.kind,
                    draft.topic,
                    draft.payload,
                    context.rule_id,
                    self._signals,
                    context.time_s,
                    draft.expires_s,
                    cause,
                )
            )
