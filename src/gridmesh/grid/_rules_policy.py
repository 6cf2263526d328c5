"""What a rule's logic is made of: signals, parameters, policies and their registry.

A *policy* is rule logic with no settings of its own (seed 001, section
III.B.6: "rule logic and contextual information needed to execute a rule are
kept separately"). It declares a pydantic model of its parameters, makes the
per-subject state it needs, and reacts to events (and, if it asks for one, to
a periodic tick) through a ``RuleContext``: the one place where a rule's
parameters, its bounded state and its output meet. The engine (``_rules``)
owns the contexts; a policy object is shared by every rule that names it.

*Signals* (seed 004, "Control Intelligence") leave a rule in one of two kinds:

* **commandable**: direct control of an actuator ("reduce by 20% for the next
  2 hours"). It has a static binding to the device or device class it names
  in its topic, must expire (``expires_s``) so that a lost "release" never
  leaves a device curtailed for ever, and wants an acknowledgement from the
  device (``requires_ack``); who may issue it is the access policy's business
  (a role may publish on ``DEVICE/+/COMMAND/#`` or not, docs/ACCESS.md).
* **informational**: a derived observation (an aggregated load, an alarm, a
  plan) that binds no device and obliges no one to act.

*Topic templates* name where a signal goes: ``GRID/region-7/ALARM/{1}`` puts
level 1 of the triggering event's topic (``meter17`` of
``MEASUREMENT/meter17/voltage``) in the signal's topic; ``{rule}`` is the
rule's id, and a policy may offer more names (``{device}``). A template is
checked when parameters are validated; a topic it renders is checked again,
and one that is not a valid topic name (the event's topic is too shallow for
``{3}``) is the event's fault: ``RuleInputError``, counted and dropped.

*Bad input never crashes.* An event whose value a policy cannot use (not a
number, the wrong unit, an unknown key) raises ``RuleInputError`` (a
``RemoteProtocolError``: a peer sent it), which the engine counts under its
``reason`` before going on with the next rule. Any other exception escaping a
policy is a bug.
"""

from __future__ import annotations

import math
import re
import string
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from gridmesh.errors import InvalidTopic, LocalProtocolError, RemoteProtocolError
from gridmesh.protocols.pubsub import Event, EventKey
from gridmesh.topics import TOPIC_LEVELS_MAX, validate_topic_filter, validate_topic_name
from gridmesh.wire import check_plain

__all__ = [
    "COMMAND_S_MIN",
    "PAYLOAD_ITEMS_MAX",
    "POLICY_NAME_BYTES_MAX",
    "RULE_SUBJECT",
    "Payload",
    "Policy",
    "PolicyParams",
    "PolicyRegistry",
    "RuleContext",
    "RuleInputError",
    "Signal",
    "SignalKind",
    "TopicFilterText",
    "TopicTemplate",
    "check_template",
    "read_number",
]

POLICY_NAME_BYTES_MAX = 64
#: Items (keys, values, list elements) in a rule's fixed payload.
PAYLOAD_ITEMS_MAX = 64
#: The shortest validity of a command (seconds): a command must outlive its delivery.
COMMAND_S_MIN = 1.0
#: Rendered templates kept compiled per rule (a policy has a few).
_TEMPLATES_CACHED_MAX = 64
#: The subject of a rule's rule-wide state (a group, a device table): never a topic name.
RULE_SUBJECT = ""

_POLICY_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_NUMBER_MAGNITUDE_MAX = float(2**64)


class SignalKind(StrEnum):
    """Seed 004's two kinds of smart-grid signal."""

    COMMANDABLE = "commandable"
    INFORMATIONAL = "informational"


@dataclass(frozen=True, slots=True)
class Signal:
    """What a rule emits: where to publish it, what it says, and what it obliges.

    ``time_s`` is the engine's time when it was emitted; ``cause`` the
    ``(source, event_id)`` of the event that triggered it (None for a tick);
    ``signal_id`` counts the engine's signals from 1 and, with ``rule_id``,
    names a command in the device's acknowledgement.
    """

    kind: SignalKind
    topic: str
    payload: dict[str, object]
    rule_id: str
    signal_id: int
    time_s: float
    expires_s: float | None = None
    cause: EventKey | None = None

    def __post_init__(self) -> None:
        validate_topic_name(self.topic)
        if not isinstance(self.kind, SignalKind):
            raise LocalProtocolError(f"signal kind must be a SignalKind, got {self.kind!r}")
        if self.kind is SignalKind.COMMANDABLE and (
            self.expires_s is None or not self.expires_s > self.time_s
        ):
            raise LocalProtocolError("a commandable signal must expire after it is emitted")
        check_plain(self.payload)

    @property
    def requires_ack(self) -> bool:
        """True for a command: the device acknowledges ``(rule_id, signal_id)``."""
        return self.kind is SignalKind.COMMANDABLE

    def to_value(self) -> dict[str, object]:
        """The signal as an event value (plain data) to publish on ``topic``."""
        value: dict[str, object] = {
            "kind": self.kind.value,
            "rule": self.rule_id,
            "signal_id": self.signal_id,
            "issued_s": self.time_s,
            "payload": self.payload,
        }
        if self.expires_s is not None:
            value["expires_s"] = self.expires_s
        return value


class RuleInputError(RemoteProtocolError):
    """An event a rule cannot use; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason  # per instance: one counter per kind of bad input
        super().__init__(detail)


def read_number(event: Event, key: str | None, unit: str | None) -> float:
    """The number an event carries (``value``, or ``value[key]``), as a float.

    ``RuleInputError`` unless it is a finite int or float (never a bool), and,
    when ``unit`` is given, unless the event's unit is exactly ``unit``.
    """
    if unit is not None and event.unit != unit:
        raise RuleInputError("unit", f"expected unit {unit!r}, got {event.unit!r}")
    value = event.value
    if key is not None:
        if not isinstance(value, Mapping):
            raise RuleInputError("not_a_map", f"expected a map with {key!r}")
        if key not in value:
            raise RuleInputError("missing_key", f"the value has no {key!r}")
        value = value[key]
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise RuleInputError("not_finite", f"expected a finite number, got {value!r}")
        return value  # type: ignore[return-value]
    if kind is int:
        if not -_NUMBER_MAGNITUDE_MAX <= value <= _NUMBER_MAGNITUDE_MAX:  # type: ignore[operator]
            raise RuleInputError("not_finite", "integer beyond 64 bits")
        return float(value)  # type: ignore[arg-type]
    raise RuleInputError("not_a_number", f"expected a number, got {kind.__name__}")


# -- parameters ---------------------------------------------------------------------------


class PolicyParams(BaseModel):
    """Base of every policy's parameters: plain data, no coercion, no extras, no NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


def check_template(template: str, names: frozenset[str] = frozenset()) -> str:
    """``template`` if it renders valid topic names; else ``ValueError`` saying why.

    Placeholders: ``{0}``..``{31}`` (levels of the triggering topic), ``{rule}``,
    and ``names``; ``{{``/``}}`` are literal braces.
    """
    allowed = names | {"rule"}
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"a topic template with balanced braces ({exc})") from None
    sample = []
    for literal, field, spec, conversion in parts:
        sample.append(literal)
        if field is None:
            continue
        if spec or conversion:
            raise ValueError(f"a plain placeholder like {{1}}, not {{{field}!...:...}}")
        if field.isdigit():
            if int(field) >= TOPIC_LEVELS_MAX:
                raise ValueError(f"a level placeholder below {{{TOPIC_LEVELS_MAX}}}")
        elif field not in allowed:
            raise ValueError(
                f"placeholders {{0}}..{{{TOPIC_LEVELS_MAX - 1}}} or "
                f"{', '.join('{' + name + '}' for name in sorted(allowed))}, not {{{field}}}"
            )
        sample.append("x")
    try:
        validate_topic_name("".join(sample))
    except InvalidTopic as exc:
        raise ValueError(f"a template of a valid topic name ({exc.problem})") from None
    return template


def _check_filter(text: str) -> str:
    try:
        return validate_topic_filter(text)
    except InvalidTopic as exc:
        raise ValueError(f"a valid topic filter ({exc.problem})") from None


def _check_payload(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        check_plain(payload, visits_max=PAYLOAD_ITEMS_MAX)
    except LocalProtocolError as exc:
        raise ValueError(
            f"a map of plain data (numbers, text, lists, maps), "
            f"at most {PAYLOAD_ITEMS_MAX} items ({exc})"
        ) from None
    return payload


#: A topic template whose placeholders are levels and ``{rule}``.
TopicTemplate = Annotated[str, AfterValidator(check_template)]
#: A topic filter, normalized (a last level ``*`` reads ``#``).
TopicFilterText = Annotated[str, AfterValidator(_check_filter)]
#: Fixed fields a rule adds to every signal's payload (computed fields win).
Payload = Annotated[dict[str, Any], AfterValidator(_check_payload)]


# -- policies -----------------------------------------------------------------------------

P = TypeVar("P", bound=PolicyParams)
S = TypeVar("S")
_Parts = tuple[tuple[str, str | int | None], ...]


class Policy(ABC, Generic[P, S]):
    """Rule logic without its parameters; one object serves every rule that names it.

    A subclass sets ``name`` (its registry key) and ``params_model``; its
    docstring says what it does and its parameters with their units.
    """

    name: str
    params_model: type[P]

    def extra_filters(self, params: P) -> tuple[str, ...]:
        """Filters the rule also listens to, beyond its own (inputs 1, 2, ...)."""
        return ()

    def interval_s(self, params: P) -> float | None:
        """How often ``on_tick`` runs for a rule; None: never."""
        return None

    @abstractmethod
    def new_state(self, params: P) -> S:
        """A fresh, bounded state for one subject (a topic, or ``RULE_SUBJECT``)."""

    @abstractmethod
    def on_event(self, rule: RuleContext[P, S], event: Event, input_index: int) -> None:
        """React to ``event`` on input ``input_index`` (0: the rule's filter)."""

    def on_tick(self, rule: RuleContext[P, S]) -> None:
        """React to the passing of time (only if ``interval_s`` is not None)."""


@dataclass(slots=True)
class _Slot(Generic[S]):
    state: S | None = None  # made on first use: a subject may only have fired
    last_fired_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Draft:
    kind: SignalKind
    topic: str
    payload: dict[str, object]
    expires_s: float | None
    subject: str


class RuleContext(Generic[P, S]):
    """One rule at run time: its parameters, its bounded state and its outbox.

    State is kept per *subject* (usually the event's topic), at most
    ``subjects_max`` of them: the least recently used one is forgotten
    (counted as ``subjects_evicted``) to make room. The rule-wide state
    (``RULE_SUBJECT``: a group, a device table) is one more, never forgotten.
    ``cooldown_s`` bounds how often one subject may fire: the engine drops
    what a subject emits within ``cooldown_s`` of its last firing; an
    edge-triggered policy asks ``may_fire`` before it changes state, so its
    state never claims a signal that was dropped.
    """

    __slots__ = (
        "_outbox",
        "_rule_slot",
        "_slots",
        "_templates",
        "cooldown_s",
        "counters",
        "event",
        "filter",
        "params",
        "policy",
        "rule_id",
        "subjects_max",
        "time_s",
    )

    def __init__(
        self,
        policy: Policy[P, S],
        rule_id: str,
        topic_filter: str,
        params: P,
        *,
        cooldown_s: float,
        subjects_max: int,
    ) -> None:
        self.policy = policy
        self.rule_id = rule_id
        self.filter = topic_filter
        self.params = params
        self.cooldown_s = cooldown_s
        self.subjects_max = subjects_max
        self.time_s = 0.0  # the engine's time of the call in progress
        self.event: Event | None = None  # the event in progress (None in a tick)
        self.counters: dict[str, int] = {}
        self._slots: OrderedDict[str, _Slot[S]] = OrderedDict()
        self._rule_slot: _Slot[S] | None = None  # RULE_SUBJECT's: never evicted
        self._outbox: list[_Draft] = []
        self._templates: dict[str, _Parts] = {}

    @property
    def subjects(self) -> int:
        """How many subjects have state now (``subjects_max``, plus ``RULE_SUBJECT``)."""
        return len(self._slots) + (self._rule_slot is not None)

    def count(self, counter: str, amount: int = 1) -> None:
        """Add to one of the rule's counters (they appear in the engine's stats)."""
        self.counters[counter] = self.counters.get(counter, 0) + amount

    def state(self, subject: str) -> S:
        """The state of ``subject``, made fresh if it has none (evicting the least used)."""
        slot = self._slot(subject)
        state = slot.state
        if state is None:
            state = slot.state = self.policy.new_state(self.params)
        return state

    def may_fire(self, subject: str) -> bool:
        """Whether ``subject`` is out of its cooldown; counts a suppression if not."""
        slot = self._rule_slot if subject == RULE_SUBJECT else self._slots.get(subject)
        if slot is None or slot.last_fired_s is None or self.cooldown_s <= 0.0:
            return True
        if self.time_s - slot.last_fired_s >= self.cooldown_s:
            return True
        self.count("suppressed_cooldown")
        return False

    def topic(self, template: str, *, from_filter: bool = False, **names: str) -> str:
        """``template`` rendered with the rule id, ``names`` and the levels of the event's
        topic (of the rule's filter if ``from_filter`` or in a tick); ``RuleInputError``
        unless a valid topic name results."""
        parts = self._templates.get(template)
        if parts is None:
            try:
                parts = _compile(template)
            except ValueError as exc:  # an application's unchecked template
                raise RuleInputError("topic_template", f"template {exc}") from None
            if len(self._templates) < _TEMPLATES_CACHED_MAX:
                self._templates[template] = parts
        event = self.event
        levels = (self.filter if from_filter or event is None else event.topic).split("/")
        text: list[str] = []
        for literal, field in parts:
            text.append(literal)
            if isinstance(field, int):
                if field >= len(levels):
                    raise RuleInputError("topic_template", f"no level {field} in the topic")
                text.append(levels[field])
            elif field == "rule":
                text.append(self.rule_id)
            elif field is not None:
                value = names.get(field)
                if value is None:  # an application's unchecked template
                    raise RuleInputError("topic_template", f"no value for {{{field}}}")
                text.append(value)
        rendered = "".join(text)
        try:
            return validate_topic_name(rendered)
        except InvalidTopic as exc:
            raise RuleInputError("topic_template", f"rendered {exc.problem}") from None

    def command(
        self, topic: str, payload: dict[str, object], *, for_s: float, subject: str
    ) -> None:
        """Emit a commandable signal on ``topic`` (rendered), valid for ``for_s`` seconds."""
        if not for_s >= COMMAND_S_MIN:
            raise LocalProtocolError(f"a command must be valid at least {COMMAND_S_MIN} s")
        draft = _Draft(SignalKind.COMMANDABLE, topic, payload, self.time_s + for_s, subject)
        self._outbox.append(draft)

    def inform(self, topic: str, payload: dict[str, object], *, subject: str) -> None:
        """Emit an informational signal on ``topic`` (rendered)."""
        self._outbox.append(_Draft(SignalKind.INFORMATIONAL, topic, payload, None, subject))

    # -- for the engine --------------------------------------------------------------

    def _slot(self, subject: str) -> _Slot[S]:
        if subject == RULE_SUBJECT:
            if self._rule_slot is None:
                self._rule_slot = _Slot()
            return self._rule_slot
        slots = self._slots
        slot = slots.get(subject)
        if slot is not None:
            slots.move_to_end(subject)
            return slot
        if len(slots) >= self.subjects_max:
            slots.popitem(last=False)
            self.count("subjects_evicted")
        slot = slots[subject] = _Slot()
        return slot

    def take_outbox(self) -> list[_Draft]:
        """What the policy emitted in the call in progress (the outbox is emptied)."""
        drafts, self._outbox = self._outbox, []
        return drafts

    def fired(self, subject: str) -> bool:
        """Record that ``subject`` fires now; False if its cooldown forbids it."""
        if self.cooldown_s <= 0.0:
            return True
        slot = self._slot(subject)
        if slot.last_fired_s is not None and self.time_s - slot.last_fired_s < self.cooldown_s:
            return False
        slot.last_fired_s = self.time_s
        return True


def _compile(template: str) -> _Parts:
    """A checked template as ``(literal, field)`` pairs; a field is a level, a name or None."""
    parts: list[tuple[str, str | int | None]] = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if spec or conversion:
            raise ValueError(f"{{{field}}} has a format spec or conversion")
        parts.append((literal, None if field is None else int(field) if field.isdigit() else field))
    return tuple(parts)


# -- the registry -------------------------------------------------------------------------


class PolicyRegistry:
    """The policies rules may name; no code travels, a scenario only names one."""

    __slots__ = ("_policies",)

    def __init__(self) -> None:
        self._policies: dict[str, Policy[Any, Any]] = {}

    def register(self, policy: Policy[Any, Any]) -> None:
        """Make ``policy`` nameable as ``policy.name`` (dotted lowercase, once per name)."""
        if not isinstance(policy, Policy):
            raise LocalProtocolError(f"expected a Policy, got {type(policy).__name__}")
        name = getattr(policy, "name", None)
        if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
            raise LocalProtocolError(
                f"policy name must be dotted lowercase ASCII words like 'acme.peak', got {name!r}"
            )
        if len(name) > POLICY_NAME_BYTES_MAX:
            raise LocalProtocolError(f"policy name exceeds {POLICY_NAME_BYTES_MAX} bytes")
        model = getattr(policy, "params_model", None)
        if not (isinstance(model, type) and issubclass(model, PolicyParams)):
            raise LocalProtocolError(f"policy {name!r} has no params_model (a PolicyParams)")
        if name in self._policies:
            raise LocalProtocolError(f"policy {name!r} is already registered")
        self._policies[name] = policy

    def get(self, name: str) -> Policy[Any, Any]:
        """The policy ``name``; ``LocalProtocolError`` naming the known ones if none."""
        policy = self._policies.get(name)
        if policy is None:
            raise LocalProtocolError(f"unknown policy {name!r}; known: {', '.join(self.names())}")
        return policy

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._policies))

    def __contains__(self, name: object) -> bool:
        return name in self._policies

    def copy(self) -> PolicyRegistry:
        """An independent registry with the same policies."""
        registry = PolicyRegistry()
        registry._policies.update(self._policies)
        return registry
