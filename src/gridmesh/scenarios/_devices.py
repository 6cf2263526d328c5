"""Devices reacting to tariffs, and rules run at nodes: ``[devices]``, ``[[rules]]``.

Theory of operation
-------------------
Seed 000's first scenario: overproduction lowers the tariff, the utility's
information system disseminates it, the meters show it and the devices behind
them react. Seed 001 (III.B.6) puts the reaction in a Control Policy Manager
running rules (event pattern + condition + action, the logic apart from its
parameters); seed 004 sends its output as commandable or informational
signals. This service plays that out over a run:

* **Homes.** Every node of a ``[devices] roles`` role is a home: the node is
  its meter (or EMD), and its devices are drawn once, from the run's seed, by
  ``gridmesh.grid.draw_home`` (at most one of each ``DeviceKind``, with the
  ``shares`` given or ``DEFAULT_DEVICE_SHARES``), in node id order. The devices
  are not simulated nodes: they sit on the home's own network behind the
  meter, which commands them directly.
* **Rules.** Every node of a ``rules_at`` role (default: the homes) runs the
  ``[[rules]]`` in its own ``RuleEngine``. A rule for one device kind
  (``params.device_class``, or a ``device_class`` in its fixed ``payload``)
  runs only where that device is: an EMD holds the rules of its devices. A
  node's engine is built at its first delivery that some rule's filter
  matches (or at the start, when a rule is periodic), and again, empty, after
  the node restarts (rule state is not persisted, docs/RULES.md).
* **Events.** Each gossip message a node delivers becomes an ``Event`` for
  its engine: the topic, the payload as value, ``created_us`` as the source's
  time, the origin as source, the message id as event id and a payload's
  ``unit`` (when it is a map holding one). A crashed node delivers nothing,
  so its devices never hear the tariff.
* **Signals.** Every signal is counted by rule and kind. A commandable one
  at a home goes to its devices (``HomeFleet.command``): the devices it
  names move their cycle to now. An informational one commands nothing.
  Nothing is published back onto the network.
* **Measures.** A reaction's latency runs from the creation of the message
  that caused it (the tariff's ``created_us``) to the moment the device
  starts; the load shifted is each reacting device's reaction power, and
  ``load_shifted`` is their sum over time (devices running a moved cycle).

Per node the service keeps a device mask (2 bytes), a flag, and for nodes
that heard a matching message a ``RuleEngine`` (a few kB for a few rules).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from functools import partial
from random import Random
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import InvalidTopic
from gridmesh.grid import (
    DEFAULT_DEVICE_SHARES,
    DEFAULT_POLICIES,
    REACTIVE_KINDS,
    RUN_S_MAX,
    DeviceKind,
    DeviceReaction,
    HomeFleet,
    HomeSpec,
    Reaction,
    RuleEngine,
    RuleSpec,
    Signal,
    SignalKind,
    draw_homes,
    kinds_of,
    reaction_power_kw,
)
from gridmesh.node import Node
from gridmesh.protocols import Delivery
from gridmesh.protocols.pubsub import Event
from gridmesh.scenarios._report import percentiles, rounded
from gridmesh.scenarios._services import ScenarioService, located
from gridmesh.sim import Simulator
from gridmesh.topics import TopicTrie

if TYPE_CHECKING:
    from gridmesh.scenarios._schema import Scenario

__all__ = [
    "LOAD_SHIFTED_POINTS",
    "DeviceKindSpec",
    "DevicesService",
    "DevicesSpec",
    "check_devices",
]

#: Intervals of the ``load_shifted`` series over the run (it has one point more).
LOAD_SHIFTED_POINTS = 1000
_ROLES_MAX = 1000
_REACTIVE = ", ".join(sorted(kind.value for kind in REACTIVE_KINDS))
_KIND_NAMES = tuple(kind.value for kind in DeviceKind)

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class DeviceKindSpec(BaseModel):
    """``[devices.kinds.<kind>]``: how that kind's devices react (unset: the defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    power_kw: float | None = Field(
        default=None, gt=0.0, description="what a reacting device draws above its floor"
    )
    run_s: float | None = Field(
        default=None, gt=0.0, le=RUN_S_MAX, description="how long the moved cycle runs"
    )


class DevicesSpec(BaseModel):
    """``[devices]``: which roles are homes with devices, their mix, and where rules run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    roles: tuple[str, ...] = Field(
        max_length=_ROLES_MAX, description="roles whose nodes are homes (their meter or EMD)"
    )
    rules_at: tuple[str, ...] | None = Field(
        default=None, max_length=_ROLES_MAX, description="roles that run [[rules]]; None: roles"
    )
    shares: dict[str, Share] | None = Field(
        default=None, description="chance a home has each kind; None: DEFAULT_DEVICE_SHARES"
    )
    kinds: dict[str, DeviceKindSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kinds_known(self) -> DevicesSpec:
        for name in self.shares or {}:
            if name not in _KIND_NAMES:
                raise located(
                    ("shares", name), f"a device kind, one of: {', '.join(_KIND_NAMES)}", name
                )
        for name, spec in self.kinds.items():
            kind = _reactive_kind(name)
            if kind is None:
                raise located(
                    ("kinds", name), f"a device kind that can react, one of: {_REACTIVE}", name
                )
            most_kw = reaction_power_kw(kind)
            if spec.power_kw is not None and spec.power_kw > most_kw:
                raise located(
                    ("kinds", name, "power_kw"),
                    f"a number of at most {most_kw:g} kW (the {name} profile's range "
                    "above its floor)",
                    spec.power_kw,
                )
        return self

    @property
    def homes(self) -> HomeSpec:
        """The device mix as a ``HomeSpec`` (kinds left out of ``shares``: never)."""
        shares = DEFAULT_DEVICE_SHARES if self.shares is None else self.shares
        return HomeSpec(devices=shares)

    def reactions(self) -> dict[DeviceKind, DeviceReaction]:
        """Each reactive kind's reaction: the defaults, with what ``kinds`` sets."""
        result = {}
        for kind in sorted(REACTIVE_KINDS):
            default = DeviceReaction.default(kind)
            spec = self.kinds.get(kind.value, DeviceKindSpec())
            result[kind] = DeviceReaction(
                kind,
                default.power_kw if spec.power_kw is None else spec.power_kw,
                default.run_s if spec.run_s is None else spec.run_s,
            )
        return result

    @property
    def rule_roles(self) -> tuple[str, ...]:
        return self.roles if self.rules_at is None else self.rules_at


def check_devices(scenario: Scenario) -> None:
    """Cross-checks of ``[devices]`` and ``[[rules]]`` against the rest of the file."""
    devices = scenario.devices
    if devices is None:
        if scenario.rules:
            raise located(
                ("rules",),
                "a [devices] section too: its roles (homes) and rules_at say which nodes "
                "run the rules",
                None,
            )
        return
    names = {role.name for role in scenario.roles}
    for field in ("roles", "rules_at"):
        listed: list[str] = getattr(devices, field) or []
        for index, role in enumerate(listed):
            if role not in names:
                raise located(
                    ("devices", field, index),
                    f"a role of this file, one of: {', '.join(sorted(names))}",
                    role,
                )
            if role in listed[:index]:
                raise located(("devices", field, index), "a role not listed before", role)
    for index, spec in enumerate(scenario.rules):
        device_class = getattr(spec.params, "device_class", None)
        if device_class is not None and _reactive_kind(device_class) is None:
            raise located(
                ("rules", index, "params", "device_class"),
                f"a device kind that can react, one of: {_REACTIVE}",
                device_class,
            )


def _kind(name: object) -> DeviceKind | None:
    return DeviceKind(name) if isinstance(name, str) and name in _KIND_NAMES else None


def _reactive_kind(name: object) -> DeviceKind | None:
    kind = _kind(name)
    return kind if kind in REACTIVE_KINDS else None


def _rule_kind(spec: RuleSpec) -> DeviceKind | None:
    """The device kind a rule is for: ``params.device_class`` or its payload's; None: any."""
    params = spec.params
    name = getattr(params, "device_class", None)
    if name is None:
        payload = getattr(params, "payload", None)
        name = payload.get("device_class") if isinstance(payload, Mapping) else None
    return _kind(name)


class DevicesService(ScenarioService):
    """Homes with devices, rule engines at nodes, and the devices' reactions to signals."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        devices = scenario.devices
        assert devices is not None, "check_devices: [[rules]] come with [devices]"
        self._scenario = scenario
        self._spec = devices
        count = scenario.node_count
        self._fleet = HomeFleet(count, devices.reactions())
        self._homes = 0
        rng = Random(f"gridmesh-devices:{seed}")
        for role in devices.roles:  # check_devices: each role once
            ids = scenario.role_ids(role)
            for node_id, mask in zip(ids, draw_homes(devices.homes, len(ids), rng), strict=True):
                self._fleet.add(node_id, mask)
            self._homes += len(ids)
        self._runs_rules = bytearray(count + 1)
        if scenario.rules:
            for role in devices.rule_roles:
                for node_id in scenario.role_ids(role):
                    self._runs_rules[node_id] = 1
        # Explicit ids: a home runs a subset of the rules, and a rule keeps its name.
        self._rules = tuple(
            spec.model_copy(update={"id": spec.rule_id(index)})
            for index, spec in enumerate(scenario.rules)
        )
        self._rule_kinds = [_rule_kind(spec) for spec in self._rules]
        self._periodic = any(
            DEFAULT_POLICIES.get(spec.policy).interval_s(spec.params) is not None
            for spec in self._rules
        )
        self._filters: TopicTrie[int] = TopicTrie()
        for index, spec in enumerate(self._rules):
            policy = DEFAULT_POLICIES.get(spec.policy)
            for topic_filter in (spec.filter, *policy.extra_filters(spec.params)):
                self._filters.add(topic_filter, index)
        self._rules_by_mask: dict[int, tuple[RuleSpec, ...]] = {}
        self._engines: dict[int, RuleEngine] = {}
        self._equipped = bytearray(count + 1)
        self._sim: Simulator | None = None
        # What happened, for the report.
        self._engines_built = 0
        self._retired: dict[str, int] = {}
        self._signals: dict[tuple[str, SignalKind], int] = {}
        self._reactions: dict[DeviceKind, int] = dict.fromkeys(sorted(REACTIVE_KINDS), 0)
        self._latency_s = array("d")
        self._start_s = array("d")
        self._until_s = array("d")
        self._power_kw = array("d")

    # -- the service's calls ---------------------------------------------------

    def equip(self, node: Node) -> None:
        node_id = node.node_id
        if not self._equipped[node_id]:
            self._equipped[node_id] = 1
            return
        # A restart: the node's Control Policy Manager starts empty; its devices run on.
        self._retire(node_id)
        if self._periodic and self._runs_rules[node_id] and self._sim is not None:
            self._build(node_id, self._sim.now)

    def install(self, sim: Simulator) -> None:
        self._sim = sim
        if self._periodic:
            for node_id in range(1, len(self._runs_rules)):
                if self._runs_rules[node_id]:
                    self._build(node_id, 0.0)

    def on_deliver(self, node_id: int, delivery: Delivery) -> None:
        if not self._runs_rules[node_id]:
            return
        try:
            if not self._filters.match(delivery.topic):
                return
        except InvalidTopic:
            return  # the engine would count it as bad_topic; no rule could use it
        now = delivery.received_at
        engine = self._engines.get(node_id) or self._build(node_id, now)
        payload = delivery.payload
        unit = payload.get("unit") if isinstance(payload, dict) else None
        event = Event(
            topic=delivery.topic,
            value=payload,
            time_us=delivery.created_us,
            source=delivery.origin,
            seq=0,
            event_id=delivery.message_id,
            unit=unit if isinstance(unit, str) else "",
        )
        created_s = delivery.created_us / 1e6
        for signal in engine.on_event(event, now):
            self._apply(node_id, signal, now, created_s)

    def report(self, sim: Simulator) -> dict[str, object]:
        fleet = self._fleet
        devices: dict[str, int] = dict.fromkeys(sorted(kind.value for kind in DeviceKind), 0)
        for role in self._spec.roles:
            for node_id in self._scenario.role_ids(role):
                for kind in kinds_of(fleet.mask_of(node_id)):
                    devices[kind.value] += 1
        reacted = dict.fromkeys(sorted(kind.value for kind in REACTIVE_KINDS), 0)
        homes_reacted: set[int] = set()
        for home, kind in fleet.moved_devices():
            reacted[kind.value] += 1
            homes_reacted.add(home)
        shifted_kw: dict[str, float] = {}
        moved_kwh: dict[str, float] = {}
        for kind, count in self._reactions.items():
            reaction = fleet.reaction_of(kind)
            shifted_kw[kind.value] = rounded(count * reaction.power_kw)
            moved_kwh[kind.value] = rounded(count * reaction.energy_kwh)
        signals: dict[str, dict[str, int]] = {
            spec.rule_id(0): dict.fromkeys(("commandable", "informational"), 0)
            for spec in self._rules
        }
        for (rule_id, signal_kind), count in self._signals.items():
            signals[rule_id][signal_kind.value] += count
        time_s, load_kw = self._load_series()
        return {
            "devices": {
                "homes": self._homes,
                "rule_nodes": sum(self._runs_rules),
                "devices": devices,
                "devices_total": sum(devices.values()),
                "homes_reacted": len(homes_reacted),
                "reacted": reacted,
                "reactions": {kind.value: n for kind, n in self._reactions.items()},
                "reactions_total": sum(self._reactions.values()),
                "reaction_latency_s": percentiles(self._latency_s),
                "load_shifted_kw": shifted_kw,
                "load_shifted_kw_total": rounded(math.fsum(shifted_kw.values())),
                "load_shifted_kw_peak": rounded(max(load_kw, default=0.0)),
                "energy_moved_kwh": moved_kwh,
                "signals": signals,
                "commands": dict(sorted(fleet.counters.items())),
                "engines": self._engines_built,
                "rule_engine": self._engine_stats(),
            },
            "load_shifted": {"time_s": time_s, "shifted_kw": load_kw},
        }

    # -- inside ----------------------------------------------------------------

    def _build(self, node_id: int, now: float) -> RuleEngine:
        mask = self._fleet.mask_of(node_id)
        rules = self._rules_by_mask.get(mask)
        if rules is None:
            present = set(kinds_of(mask))
            rules = tuple(
                spec
                for spec, kind in zip(self._rules, self._rule_kinds, strict=True)
                if kind is None or kind in present
            )
            self._rules_by_mask[mask] = rules
        engine = RuleEngine(rules, start_s=now)
        self._engines[node_id] = engine
        self._engines_built += 1
        if self._periodic:
            self._schedule_tick(node_id, engine)
        return engine

    def _retire(self, node_id: int) -> None:
        engine = self._engines.pop(node_id, None)
        if engine is not None:
            for name, value in engine.stats().items():
                self._retired[name] = self._retired.get(name, 0) + value

    def _schedule_tick(self, node_id: int, engine: RuleEngine) -> None:
        sim = self._sim
        deadline = engine.next_deadline()
        if sim is None or deadline is None:
            return
        if deadline <= self._scenario.simulation.duration_s:
            sim.schedule(deadline, partial(self._tick, node_id, engine))

    def _tick(self, node_id: int, engine: RuleEngine, now: float) -> None:
        sim = self._sim
        assert sim is not None
        if self._engines.get(node_id) is not engine or not sim.is_up(node_id):
            return  # crashed (a restart builds a new engine and schedules its own ticks)
        for signal in engine.tick(now):
            self._apply(node_id, signal, now, None)
        self._schedule_tick(node_id, engine)

    def _apply(self, node_id: int, signal: Signal, now: float, created_s: float | None) -> None:
        key = (signal.rule_id, signal.kind)
        self._signals[key] = self._signals.get(key, 0) + 1
        if signal.kind is not SignalKind.COMMANDABLE or not self._fleet.mask_of(node_id):
            return
        for reaction in self._fleet.command(node_id, signal.payload, now):
            self._record(reaction, created_s)

    def _record(self, reaction: Reaction, created_s: float | None) -> None:
        self._reactions[reaction.kind] += 1
        if created_s is not None:
            self._latency_s.append(reaction.start_s - created_s)
        self._start_s.append(reaction.start_s)
        self._until_s.append(reaction.until_s)
        self._power_kw.append(reaction.power_kw)

    def _engine_stats(self) -> dict[str, int]:
        totals = dict(self._retired)
        for engine in self._engines.values():
            for name, value in engine.stats().items():
                totals[name] = totals.get(name, 0) + value
        return dict(sorted(totals.items()))

    def _load_series(self) -> tuple[list[float], list[float]]:
        """The kW of moved cycles running at LOAD_SHIFTED_POINTS + 1 even times of the run."""
        duration_s = self._scenario.simulation.duration_s
        # Powers as integer micro-kW: sums are exact whatever the order of the changes.
        changes = [
            (start, round(power * 1e6))
            for start, power in zip(self._start_s, self._power_kw, strict=True)
        ]
        changes += [
            (until, -round(power * 1e6))
            for until, power in zip(self._until_s, self._power_kw, strict=True)
        ]
        changes.sort()
        time_s: list[float] = []
        load_kw: list[float] = []
        running_uw = 0
        position = 0
        for step in range(LOAD_SHIFTED_POINTS + 1):
            at_s = duration_s * step / LOAD_SHIFTED_POINTS
            while position < len(changes) and changes[position][0] <= at_s:
                running_uw += changes[position][1]
                position += 1
            time_s.append(rounded(at_s))
            load_kw.append(rounded(running_uw / 1e6))
        return time_s, load_kw
