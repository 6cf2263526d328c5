"""Demand response, corrective control (seed 001, V.A), over the nodes' service calls: ``[dr]``.

Theory of operation
-------------------
The actors are three roles of the file: one DSO, its DR aggregators and the
customers' smart meters; the meters are split into contiguous blocks, one per
aggregator (meter *j* of *c* goes to aggregator ⌊*j·a/c*⌋ of *a*). Every
message below is a real service call (``Node.call``/``expose``, retransmitted
until answered or timed out, handlers run at most once) over the simulated
network, with its loss, latency and the crashes of ``[faults]``; the
decisions are ``gridmesh.grid``'s (``grid/_dr.py`` and the Rule Framework's
``dr_shed``).

1. **Reports.** Each aggregator reads each of its meters once every
   ``report_interval_s`` (service ``meter/dr/report``, polls spread evenly
   over the interval): the customer's load, the flexibility it can shed and
   what it sheds, padded to ``report_bytes`` on the wire (seed 001's
   800-byte per-minute message). The aggregator's Data Aggregator feeds each
   report to its Control Policy Manager, a ``RuleEngine`` running one
   ``dr_shed`` rule; a meter that does not answer is recorded as offering
   nothing. Polling (SOA) rather than publishing keeps to the PKI's default
   rights: an aggregator may call ``meter/#``, a meter may call nothing.
2. **Offers.** The DSO asks every aggregator for the flexibility its fresh
   reports add up to (``aggregator/dr/flexibility``) once per interval.
3. **Request.** At ``fault_at_s`` the DSO splits ``request_kw`` among the
   ``region``'s aggregators in proportion to those offers and asks each for
   its share (``aggregator/dr/request``: event, target, validity, deadline).
4. **Activation.** The aggregator asks its ``dr_shed`` rule for
   ``target x (1 + margin)``; the rule picks customers, largest fresh
   flexibility first, and each gets a shed command (``meter/dr/shed``),
   at most ``commands_inflight_max`` in flight. The meter commits what it has
   (``answer_shed``) and its load drops ``activation_delay_s`` later; the
   answer is the confirmation. Every second until the deadline the aggregator
   tops up (``Activation.plan_kw``) for what timed out or came back short.
5. **Follow-up.** Every ``progress_interval_s`` the DSO reads each
   aggregator's progress (``aggregator/dr/status``) and moves the share of an
   aggregator that is unreachable or has no customer left to the others
   (``Dispatch``).

**What is measured.** The reduction is measured where it happens: when a
meter's load drops, its kW join the region's reduction (a step function of
time, ``ReductionLog``), and leave at the command's end. The request is
*met* if that reduction reaches ``request_kw`` within ``deadline_s`` of the
request; the report says when, and otherwise by how much and why
(``explain_shortfall``): crashed customers, commands lost after every
retransmission, flexibility reported but gone, activations after the
deadline, aggregators lost, or a region that had too little flexibility.

**State across crashes.** Design rule: what the middleware acknowledged
survives the crash of the process that acknowledged it. A meter keeps the
command it accepted (its Integration Proxy switched the appliance: the load
stays shed while the meter process is down) and applies it on restart if it
was not yet due; an aggregator keeps the DSO's request and its command
ledger, and after a restart sends again the commands that had no answer (a
customer answers once per event: the copy brings back the same answer); its
customer table is volatile, read again in one interval. The DSO's dispatch is
its information system's database. Nodes down at a timer miss it: a crashed
aggregator neither polls nor commands.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import partial
from random import Random
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import RemoteProtocolError
from gridmesh.grid import (
    CUSTOMERS_PER_AGGREGATOR_MAX,
    DR_KW_MAX,
    KW_EPSILON,
    Activation,
    CommandState,
    Customer,
    Dispatch,
    DrOffer,
    DrRequest,
    DrStatus,
    MeterReport,
    ReductionLog,
    RuleEngine,
    RuleSpec,
    ShedAnswer,
    ShedCommand,
    ShortfallReason,
    SignalKind,
    answer_shed,
    explain_shortfall,
    meter_report,
)
from gridmesh.node import Node
from gridmesh.protocols import Peer
from gridmesh.protocols.pubsub import Event
from gridmesh.protocols.rpc import CallResult, CallTimeout, ServiceFailed
from gridmesh.scenarios._readings import (
    ConstantValue,
    DistributionSpec,
    LogNormalValue,
    UniformValue,
)
from gridmesh.scenarios._report import rounded
from gridmesh.scenarios._services import ScenarioService, located
from gridmesh.sim import Simulator
from gridmesh.wire import Envelope, Kind, encode

if TYPE_CHECKING:
    from gridmesh.scenarios._schema import Scenario

__all__ = ["DR_SAMPLES_MAX", "CustomersSpec", "DrService", "DrSpec"]

#: Most points of the ``dr_reduction`` series (``duration_s / sample_interval_s``).
DR_SAMPLES_MAX = 100_000
#: Polls per report interval: each aggregator reads 1/60 of its meters per tick.
_TICKS_PER_INTERVAL_MAX = 60
#: How often an aggregator looks at its activation (tops up, fills the send window).
_ACTIVATION_TICK_S = 1.0
#: The one DR event a run has.
_EVENT = 1
_TIME_S_MAX = 30 * 86_400.0
_KW_DIGITS = 3  # watts
_SERVICE_REPORT = "meter/dr/report"
_SERVICE_SHED = "meter/dr/shed"
_SERVICE_REQUEST = "aggregator/dr/request"
_SERVICE_STATUS = "aggregator/dr/status"
_SERVICE_FLEXIBILITY = "aggregator/dr/flexibility"
_BAD_REQUEST = 1  # ServiceFailed code: the arguments are not a DR request


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _non_negative(distribution: DistributionSpec, high: float) -> bool:
    """Whether every value ``distribution`` draws lies in [0, high]."""
    if isinstance(distribution, ConstantValue):
        return 0.0 <= distribution.value <= high
    if isinstance(distribution, UniformValue):
        return distribution.low >= 0.0 and distribution.high <= high
    return distribution.max <= high


class CustomersSpec(_Spec):
    """``[dr.customers]``: what each customer has, drawn once per meter from the seed.

    ``share`` of a distribution is the chance a customer has anything of it
    (else 0): ``flexibility_kw``'s is the share of customers with sheddable
    load at the time of the fault.
    """

    base_load_kw: DistributionSpec = LogNormalValue(median=0.5, sigma=0.6, max=10.0)
    flexibility_kw: DistributionSpec = LogNormalValue(median=1.0, sigma=0.8, max=7.4, share=0.5)
    activation_delay_s: DistributionSpec = UniformValue(low=5.0, high=60.0)
    unavailable_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="chance a commanded customer finds its reported flexibility gone",
    )

    @model_validator(mode="after")
    def _in_range(self) -> CustomersSpec:
        for name, high in (
            ("base_load_kw", 1e6),
            ("flexibility_kw", 1e6),
            ("activation_delay_s", 3600.0),
        ):
            if not _non_negative(getattr(self, name), high):
                raise located(
                    (name,),
                    f"a distribution of values in 0..{high:,.0f} (lognormal: max <= {high:,.0f})",
                    None,
                )
        return self


class DrSpec(_Spec):
    """``[dr]``: demand response for corrective control (docs/SCENARIOS.md)."""

    dso: str = Field(default="dso", description="the DSO's role (its first node)")
    aggregators: str = Field(default="aggregator", description="the aggregators' role")
    meters: str = Field(default="meter", description="the customers' smart meters' role")
    region: tuple[int, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="node ids of the aggregators serving the fault's region (default: all)",
    )
    report_interval_s: float = Field(default=60.0, ge=1.0, le=86_400.0)
    report_bytes: int = Field(default=800, ge=0, le=65_000, description="one report on the wire")
    report_timeout_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    fault_at_s: float = Field(ge=0.0, le=_TIME_S_MAX, description="when the DSO asks")
    request_kw: float = Field(gt=0.0, le=DR_KW_MAX, description="the reduction asked for")
    deadline_s: float = Field(default=180.0, gt=0.0, le=86_400.0)
    reduction_s: float = Field(
        default=1800.0, ge=1.0, le=86_400.0, description="how long the reduction must last"
    )
    margin: float = Field(default=0.1, ge=0.0, le=10.0, description="over-selection")
    command_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    commands_inflight_max: int = Field(default=64, ge=1, le=1_000_000)
    request_timeout_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    progress_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    sample_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    customers: CustomersSpec = CustomersSpec()

    @model_validator(mode="after")
    def _consistent(self) -> DrSpec:
        if self.reduction_s < self.deadline_s:
            raise located(
                ("reduction_s",),
                f"at least deadline_s ({self.deadline_s:g} s): the reduction must last past "
                "the deadline it is judged at",
                self.reduction_s,
            )
        if self.region is not None and len(set(self.region)) != len(self.region):
            raise located(("region",), "distinct aggregator node ids", None)
        return self

    def check(self, scenario: Scenario) -> None:
        """Cross-checks against the rest of the file; errors located at the field."""
        roles = [role.name for role in scenario.roles]
        for name in ("dso", "aggregators", "meters"):
            role = getattr(self, name)
            if role not in roles:
                raise located(
                    ("dr", name), f"a role of this file, one of: {', '.join(roles)}", role
                )
        if len({self.dso, self.aggregators, self.meters}) != 3:
            raise located(
                ("dr", "meters"),
                "three different roles for dso, aggregators and meters",
                self.meters,
            )
        aggregators = scenario.role_ids(self.aggregators)
        meters = scenario.role_ids(self.meters)
        for index, agg in enumerate(self.region or ()):
            if agg not in aggregators:
                raise located(
                    ("dr", "region", index),
                    f"an aggregator's node id, in {aggregators.start}..{aggregators.stop - 1}",
                    agg,
                )
        block = math.ceil(len(meters) / len(aggregators))
        if block > CUSTOMERS_PER_AGGREGATOR_MAX:
            raise located(
                ("dr", "aggregators"),
                f"enough aggregators for at most {CUSTOMERS_PER_AGGREGATOR_MAX:,} meters "
                f"each ({len(meters):,} meters, {len(aggregators):,} aggregators)",
                self.aggregators,
            )
        duration_s = scenario.simulation.duration_s
        if self.fault_at_s + self.deadline_s > duration_s:
            raise located(
                ("dr", "deadline_s"),
                f"a deadline within the run: fault_at_s + deadline_s at most "
                f"simulation.duration_s ({duration_s:g} s), so that the result can be judged",
                self.deadline_s,
            )
        services = scenario.node.services
        for name in ("report_timeout_s", "command_timeout_s", "request_timeout_s"):
            if getattr(self, name) > services.timeout_s_max:
                raise located(
                    ("dr", name),
                    f"at most node.services.timeout_s_max ({services.timeout_s_max:g} s)",
                    getattr(self, name),
                )
        polls_per_tick = math.ceil(block / _ticks_per_interval(self.report_interval_s))
        if polls_per_tick + self.commands_inflight_max > services.calls_pending_max:
            raise located(
                ("node", "services", "calls_pending_max"),
                f"at least {polls_per_tick + self.commands_inflight_max:,} with [dr]: an "
                f"aggregator polls up to {polls_per_tick:,} meters a tick and keeps "
                f"commands_inflight_max ({self.commands_inflight_max:,}) commands in flight",
                services.calls_pending_max,
            )
        most = scenario.node.message_bytes_max - 64
        if self.report_bytes > most:
            raise located(
                ("dr", "report_bytes"),
                f"at most node.message_bytes_max - 64 = {most:,}, to fit one message",
                self.report_bytes,
            )
        fewest_s = duration_s / DR_SAMPLES_MAX
        if self.sample_interval_s < fewest_s:
            raise located(
                ("dr", "sample_interval_s"),
                f"at least duration_s / {DR_SAMPLES_MAX:,} = {fewest_s:g} s",
                self.sample_interval_s,
            )


def _ticks_per_interval(report_interval_s: float) -> int:
    """Poll ticks per report interval: one a second, at most 60."""
    return max(1, min(_TICKS_PER_INTERVAL_MAX, math.floor(report_interval_s)))


# -- per-actor state -------------------------------------------------------------------


@dataclass(slots=True)
class _MeterCommand:
    """A command a meter accepted: kept across its crashes (durable)."""

    event: int
    answer: ShedAnswer
    applied_at_s: float | None = None

    @property
    def applied(self) -> bool:
        return self.applied_at_s is not None


@dataclass(slots=True)
class _Calls:
    """Service calls of one kind: started, copies sent, answered, timed out, other errors."""

    calls: int = 0
    copies: int = 0
    answered: int = 0
    timeouts: int = 0
    errors: int = 0

    def ended(self, result: CallResult) -> None:
        self.copies += result.attempts
        if result.ok:
            self.answered += 1
        elif isinstance(result.error, CallTimeout):
            self.timeouts += 1
        else:
            self.errors += 1

    def to_value(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "copies": self.copies,
            "answered": self.answered,
            "timeouts": self.timeouts,
            "errors": self.errors,
        }


class _Aggregator:
    """One aggregator: durable (its activation, counters) and volatile (table, engine) state."""

    __slots__ = (
        "activation",
        "agg_id",
        "bad_answers",
        "bad_reports",
        "command_calls",
        "commands_inflight",
        "crashed_at_timeout",
        "engine",
        "first_meter",
        "flexibility_at_request_kw",
        "incarnations",
        "last_meter",
        "node",
        "offers",
        "polls_inflight",
        "polls_skipped",
        "report_calls",
        "seq",
        "skipped_known",
        "slot",
        "table_complete_s",
    )

    def __init__(self, agg_id: int, first_meter: int, last_meter: int) -> None:
        self.agg_id = agg_id
        self.first_meter = first_meter
        self.last_meter = last_meter  # inclusive; first > last: no meters
        self.activation: Activation | None = None
        self.flexibility_at_request_kw: float | None = None
        self.incarnations = 0
        self.report_calls = _Calls()
        self.command_calls = _Calls()
        self.polls_skipped = 0
        self.bad_reports = 0
        self.bad_answers = 0
        self.skipped_known = 0
        #: Commands that timed out, by whether their meter was down then (the truth).
        self.crashed_at_timeout: dict[int, bool] = {}
        # Volatile: reset by every (re)start.
        self.node: Node | None = None
        self.engine: RuleEngine | None = None
        self.offers: dict[int, tuple[float, float, float]] = {}  # meter -> flex, load, time
        self.slot = 0
        self.seq = 0
        self.polls_inflight = 0
        self.commands_inflight = 0
        #: When every meter has been polled once since the (re)start, and answered or not.
        self.table_complete_s = 0.0

    @property
    def meters(self) -> int:
        return max(0, self.last_meter - self.first_meter + 1)

    def fresh(self, now: float, age_s_max: float) -> tuple[int, float, float]:
        """``(customers, flexibility_kw, load_kw)`` over reports younger than ``age_s_max``."""
        oldest = now - age_s_max
        count = 0
        flexibility: list[float] = []
        load: list[float] = []
        for flexibility_kw, load_kw, time_s in self.offers.values():
            if time_s >= oldest:
                count += 1
                flexibility.append(flexibility_kw)
                load.append(load_kw)
        return count, math.fsum(flexibility), math.fsum(load)


class _Dso:
    """The DSO's information system: offers, the dispatch, counters (durable)."""

    __slots__ = (
        "bad_statuses",
        "dispatch",
        "flexibility_calls",
        "offers",
        "request_calls",
        "status_calls",
    )

    def __init__(self) -> None:
        self.offers: dict[int, float] = {}
        self.bad_statuses = 0
        self.dispatch: Dispatch | None = None
        self.flexibility_calls = _Calls()
        self.request_calls = _Calls()
        self.status_calls = _Calls()

    @property
    def requested_s(self) -> float | None:
        """When the DSO sent the request (None: not yet)."""
        return None if self.dispatch is None else self.dispatch.requested_s


# -- the service --------------------------------------------------------------------


class DrService(ScenarioService):
    """Seed 001's DR corrective control: DSO -> aggregators -> meters, by service calls."""

    def __init__(self, scenario: Scenario, spec: DrSpec, seed: int) -> None:
        self._scenario = scenario
        self._spec = spec
        self._sim: Simulator | None = None
        self._dso_id = scenario.role_ids(spec.dso)[0]
        aggregators = scenario.role_ids(spec.aggregators)
        meters = scenario.role_ids(spec.meters)
        self._agg_ids = aggregators
        self._meter_ids = meters
        self._region = tuple(spec.region) if spec.region is not None else tuple(aggregators)
        self._aggs: dict[int, _Aggregator] = {}
        count, parents = len(meters), len(aggregators)
        for position, agg in enumerate(aggregators):
            first = -(-position * count // parents)  # ceil: child j goes to parent j*p//c
            last = -(-(position + 1) * count // parents) - 1
            self._aggs[agg] = _Aggregator(agg, meters.start + first, meters.start + last)
        self._ticks = _ticks_per_interval(spec.report_interval_s)
        self._tick_s = spec.report_interval_s / self._ticks
        self._age_s_max = 2.0 * spec.report_interval_s
        self._customers = _draw_customers(spec.customers, len(meters), seed)
        self._shed_kw = array("d", bytes(8 * len(meters)))  # applied, per meter index
        self._meter_commands: dict[int, _MeterCommand] = {}
        self._meter_answers = {outcome: 0 for outcome in ("accepted", "partial", "unavailable")}
        self._dso = _Dso()
        self._log = ReductionLog()
        self._padding, self._report_message_bytes = _report_padding(
            spec.report_bytes, meters.stop - 1, scenario.simulation.duration_s
        )
        self._poll_room = scenario.node.services.calls_pending_max - spec.commands_inflight_max
        self._up_at_request: set[int] = set()

    # -- the runner's calls ------------------------------------------------------------

    def spared(self) -> set[int]:
        return {self._dso_id}

    def equip(self, node: Node) -> None:
        node_id = node.node_id
        if node_id in self._meter_ids:
            node.expose(_SERVICE_REPORT, partial(self._on_report_call, node_id))
            node.expose(_SERVICE_SHED, partial(self._on_shed_call, node))
            if self._sim is not None:  # a restart: what it accepted and has not applied yet
                self._resume_meter(node, self._sim.now)
        elif node_id in self._aggs:
            state = self._aggs[node_id]
            self._reset_aggregator(state, node)
            node.expose(_SERVICE_REQUEST, partial(self._on_request_call, state))
            node.expose(_SERVICE_STATUS, partial(self._on_status_call, state))
            node.expose(_SERVICE_FLEXIBILITY, partial(self._on_flexibility_call, state))
            if self._sim is not None:
                self._start_aggregator(state, self._sim.now)
        elif node_id == self._dso_id and self._sim is not None:
            self._start_dso(node, self._sim.now)

    def install(self, sim: Simulator) -> None:
        self._sim = sim

        def start(now: float) -> None:
            for state in self._aggs.values():
                if sim.node(state.agg_id) is state.node and state.node is not None:
                    self._start_aggregator(state, now)
            dso = sim.node(self._dso_id)
            if dso is not None:
                self._start_dso(dso, now)

        sim.schedule(0.0, start)

    def _peer(self, node_id: int) -> Peer:
        sim = self._sim
        assert sim is not None
        return Peer(node_id, sim.address_of(node_id))

    # -- meters ------------------------------------------------------------------------

    def _customer(self, meter: int) -> Customer:
        return self._customers[meter - self._meter_ids.start]

    def _on_report_call(self, meter: int, args: object, now: float) -> object:
        index = meter - self._meter_ids.start
        value = meter_report(self._customers[index], self._shed_kw[index]).to_value()
        value["detail"] = self._padding  # the per-appliance detail a real report carries
        return value

    def _on_shed_call(self, node: Node, args: object, now: float) -> object:
        meter = node.node_id
        try:
            command = ShedCommand.parse(args)
        except RemoteProtocolError as error:
            raise ServiceFailed(_BAD_REQUEST, str(error)) from None
        kept = self._meter_commands.get(meter)
        if kept is not None and kept.event == command.event:
            return kept.answer.to_value()  # one answer per event, whoever asks again
        committed_kw = kept.answer.accepted_kw if kept is not None else 0.0
        answer = answer_shed(self._customer(meter), command, committed_kw, now)
        outcome = answer.outcome.value
        if outcome in self._meter_answers:
            self._meter_answers[outcome] += 1
        if answer.accepted_kw > KW_EPSILON:
            self._meter_commands[meter] = _MeterCommand(command.event, answer)
            node.call_at(answer.active_at_s, partial(self._apply, meter))
        return answer.to_value()

    def _apply(self, meter: int, now: float) -> None:
        """The customer's load drops: the reduction is real from now to the command's end."""
        kept = self._meter_commands[meter]
        answer = kept.answer
        if kept.applied or now >= answer.until_s:
            return
        kept.applied_at_s = now
        self._shed_kw[meter - self._meter_ids.start] += answer.accepted_kw
        self._log.change(now, answer.accepted_kw)
        sim = self._sim
        assert sim is not None
        if answer.until_s <= self._scenario.simulation.duration_s:
            sim.schedule(answer.until_s, partial(self._release, meter))

    def _release(self, meter: int, now: float) -> None:
        answer = self._meter_commands[meter].answer
        self._shed_kw[meter - self._meter_ids.start] -= answer.accepted_kw
        self._log.change(now, -answer.accepted_kw)

    def _resume_meter(self, node: Node, now: float) -> None:
        kept = self._meter_commands.get(node.node_id)
        if kept is not None and not kept.applied and kept.answer.until_s > now:
            node.call_at(max(now, kept.answer.active_at_s), partial(self._apply, node.node_id))

    # -- aggregators -------------------------------------------------------------------

    def _reset_aggregator(self, state: _Aggregator, node: Node) -> None:
        """A (re)started aggregator: a fresh customer table and rule engine."""
        state.incarnations += 1
        state.node = node
        state.offers = {}
        state.slot = 0
        state.seq = 0
        state.polls_inflight = 0
        state.commands_inflight = 0
        spec = self._spec
        now = self._sim.now if self._sim is not None else 0.0
        state.table_complete_s = now + spec.report_interval_s + spec.report_timeout_s
        duration_s = max(spec.reduction_s, 1.0)
        state.engine = RuleEngine(
            [
                RuleSpec(
                    id=f"dr-{state.agg_id}",
                    policy="dr_shed",
                    filter=f"DR/COMMAND/{state.agg_id}",
                    params={
                        "flexibility_filter": "METER/+/FLEXIBILITY",
                        "device_level": 1,
                        "flexibility_unit": "kW",
                        "flexibility_age_s_max": self._age_s_max,
                        "devices_max": max(1, state.meters),
                        "commands_max": max(1, state.meters),
                        "duration_s_default": duration_s,
                        "duration_s_max": duration_s,
                        "command_topic": "METER/{device}/COMMAND/shed",
                        "report_topic": "DR/REPORT/{rule}/plan",
                    },
                )
            ],
            start_s=now,
        )
        if state.activation is not None:
            state.activation.on_restart()

    def _start_aggregator(self, state: _Aggregator, now: float) -> None:
        node = state.node
        assert node is not None
        node.call_at(now, partial(self._poll_tick, state, node))
        if state.activation is not None:
            node.call_at(now, partial(self._activation_tick, state, node))

    def _poll_tick(self, state: _Aggregator, node: Node, now: float) -> None:
        """Read this tick's meters: those whose slot of the interval is now."""
        count = state.meters
        slot = state.slot
        first = state.first_meter + -(-slot * count // self._ticks)
        last = state.first_meter + -(-(slot + 1) * count // self._ticks)
        state.slot = (slot + 1) % self._ticks
        timeout_s = self._spec.report_timeout_s
        for meter in range(first, last):
            if state.polls_inflight >= self._poll_room:
                state.polls_skipped += 1
                continue
            state.polls_inflight += 1
            state.report_calls.calls += 1
            node.call(
                self._peer(meter),
                _SERVICE_REPORT,
                None,
                now=now,
                on_result=partial(self._on_report, state, meter),
                timeout_s=timeout_s,
            )
        node.call_at(now + self._tick_s, partial(self._poll_tick, state, node))

    def _on_report(self, state: _Aggregator, meter: int, result: CallResult) -> None:
        state.polls_inflight -= 1
        state.report_calls.ended(result)
        sim = self._sim
        assert sim is not None and state.engine is not None
        now = sim.now
        flexibility_kw = load_kw = 0.0  # no answer: nothing to count on
        if result.ok:
            try:
                report = MeterReport.parse(result.value)
            except RemoteProtocolError:
                state.bad_reports += 1
            else:
                flexibility_kw, load_kw = report.flexibility_kw, report.load_kw
        state.offers[meter] = (flexibility_kw, load_kw, now)
        state.seq += 1
        event = Event(
            topic=f"METER/{meter}/FLEXIBILITY",
            value=flexibility_kw,
            time_us=int(now * 1e6),
            source=meter,
            seq=state.seq,
            event_id=state.seq,
            unit="kW",
        )
        state.engine.on_event(event, now)

    def _on_flexibility_call(self, state: _Aggregator, args: object, now: float) -> object:
        return DrOffer(*state.fresh(now, self._age_s_max)).to_value()

    def _on_request_call(self, state: _Aggregator, args: object, now: float) -> object:
        try:
            request = DrRequest.parse(args)
        except RemoteProtocolError as error:
            raise ServiceFailed(_BAD_REQUEST, str(error)) from None
        if request.deadline_s < now:
            raise ServiceFailed(_BAD_REQUEST, "the deadline has passed")
        activation = state.activation
        if activation is None:
            activation = state.activation = Activation(
                event=request.event,
                target_kw=request.target_kw,
                margin=self._spec.margin,
                deadline_s=request.deadline_s,
                until_s=request.until_s,
                started_s=now,
            )
            state.flexibility_at_request_kw = state.fresh(now, self._age_s_max)[1]
            node = state.node
            assert node is not None
            node.call_at(now, partial(self._activation_tick, state, node))
        elif activation.event != request.event:
            raise ServiceFailed(_BAD_REQUEST, "another DR event is running")
        else:
            activation.retarget(request.target_kw)
        return {"accepted": True, "target_kw": activation.target_kw}

    def _on_status_call(self, state: _Aggregator, args: object, now: float) -> object:
        activation = state.activation
        if activation is None:  # the request has not come (yet)
            return DrStatus(0.0, 0.0, 0.0, exhausted=False).to_value()
        return activation.status(now).to_value()

    def _activation_tick(self, state: _Aggregator, node: Node, now: float) -> None:
        """Top up for what failed or came back short, then fill the send window."""
        activation = state.activation
        assert activation is not None and state.engine is not None
        if now >= activation.deadline_s:
            activation.on_deadline()
            return
        plan_kw = activation.plan_kw(now)
        if plan_kw > 0.0:
            state.seq += 1
            command = Event(
                topic=f"DR/COMMAND/{state.agg_id}",
                value={"target_kw": plan_kw, "duration_s": activation.until_s - now},
                time_us=int(now * 1e6),
                source=node.node_id,
                seq=state.seq,
                event_id=state.seq,
            )
            for signal in state.engine.on_event(command, now):
                payload = signal.payload
                if signal.kind is SignalKind.INFORMATIONAL:
                    planned_kw = payload.get("planned_kw")
                    assert isinstance(planned_kw, float)
                    if now >= state.table_complete_s:  # else more customers may yet report
                        activation.note_plan(planned_kw, plan_kw)
                    continue
                meter = int(signal.topic.split("/")[1])
                shed_kw = payload.get("shed_kw")
                assert isinstance(shed_kw, float)
                if activation.knows(meter):  # chosen before this aggregator restarted
                    state.skipped_known += 1
                    continue
                activation.add(meter, shed_kw)
        self._send_commands(state, node, now)
        node.call_at(now + _ACTIVATION_TICK_S, partial(self._activation_tick, state, node))

    def _send_commands(self, state: _Aggregator, node: Node, now: float) -> None:
        activation = state.activation
        assert activation is not None
        room = self._spec.commands_inflight_max - state.commands_inflight
        if room <= 0 or now >= activation.deadline_s:
            return
        for meter, command in activation.take(room):
            state.commands_inflight += 1
            state.command_calls.calls += 1
            node.call(
                self._peer(meter),
                _SERVICE_SHED,
                command.to_value(),
                now=now,
                on_result=partial(self._on_command, state, node, meter, command),
                timeout_s=self._spec.command_timeout_s,
            )

    def _on_command(
        self, state: _Aggregator, node: Node, meter: int, command: ShedCommand, result: CallResult
    ) -> None:
        state.commands_inflight -= 1
        state.command_calls.ended(result)
        activation = state.activation
        sim = self._sim
        assert activation is not None and sim is not None
        answer = None
        if result.ok:
            try:
                answer = ShedAnswer.parse(result.value, command.until_s)
            except RemoteProtocolError:
                state.bad_answers += 1
        if answer is not None:
            activation.on_answer(meter, answer, sim.now)
        else:
            state.crashed_at_timeout[meter] = not sim.is_up(meter)
            activation.on_timeout(meter)
        self._send_commands(state, node, sim.now)

    # -- the DSO -------------------------------------------------------------------------

    def _start_dso(self, node: Node, now: float) -> None:
        spec = self._spec
        interval_s = spec.report_interval_s
        first_poll_s = max(interval_s, math.ceil(now / interval_s) * interval_s)
        node.call_at(first_poll_s, partial(self._dso_offers_tick, node))
        dso = self._dso
        if dso.dispatch is None:
            node.call_at(max(now, spec.fault_at_s), partial(self._dso_request, node))
        else:
            node.call_at(now, partial(self._dso_status_tick, node))

    def _dso_offers_tick(self, node: Node, now: float) -> None:
        for agg in self._agg_ids:
            self._dso.flexibility_calls.calls += 1
            node.call(
                self._peer(agg),
                _SERVICE_FLEXIBILITY,
                None,
                now=now,
                on_result=partial(self._on_offer, agg),
                timeout_s=self._spec.request_timeout_s,
            )
        node.call_at(now + self._spec.report_interval_s, partial(self._dso_offers_tick, node))

    def _on_offer(self, agg: int, result: CallResult) -> None:
        dso = self._dso
        dso.flexibility_calls.ended(result)
        if result.ok:
            try:
                dso.offers[agg] = DrOffer.parse(result.value).flexibility_kw
            except RemoteProtocolError:
                dso.bad_statuses += 1

    def _dso_request(self, node: Node, now: float) -> None:
        """The fault: split the request among the region's aggregators and ask each."""
        dso, spec = self._dso, self._spec
        if dso.dispatch is not None:
            return
        sim = self._sim
        assert sim is not None
        offers: dict[int, float | None] = {agg: dso.offers.get(agg) for agg in self._region}
        dso.dispatch = Dispatch.start(_EVENT, spec.request_kw, offers, now)
        self._up_at_request = {m for m in self._region_meters() if sim.is_up(m)}
        for agg, target_kw in dso.dispatch.targets().items():
            self._ask(node, agg, target_kw, now)
        node.call_at(now + spec.progress_interval_s, partial(self._dso_status_tick, node))

    def _ask(self, node: Node, agg: int, target_kw: float, now: float) -> None:
        dso, spec = self._dso, self._spec
        requested_s = dso.requested_s
        assert requested_s is not None
        dso.request_calls.calls += 1
        node.call(
            self._peer(agg),
            _SERVICE_REQUEST,
            DrRequest(
                event=_EVENT,
                target_kw=target_kw,
                deadline_s=requested_s + spec.deadline_s,
                until_s=requested_s + spec.reduction_s,
            ).to_value(),
            now=now,
            on_result=partial(self._on_request_result, node, agg),
            timeout_s=spec.request_timeout_s,
        )

    def _on_request_result(self, node: Node, agg: int, result: CallResult) -> None:
        dso, sim = self._dso, self._sim
        assert dso.dispatch is not None and sim is not None
        dso.request_calls.ended(result)
        if result.ok:
            dso.dispatch.on_accepted(agg)
            return
        for other, target_kw in dso.dispatch.on_unreachable(agg, sim.now).items():
            self._ask(node, other, target_kw, sim.now)

    def _dso_status_tick(self, node: Node, now: float) -> None:
        dso = self._dso
        assert dso.dispatch is not None
        for agg in dso.dispatch.aggregators():
            dso.status_calls.calls += 1
            node.call(
                self._peer(agg),
                _SERVICE_STATUS,
                {"event": _EVENT},
                now=now,
                on_result=partial(self._on_status, node, agg),
                timeout_s=min(self._spec.request_timeout_s, self._spec.progress_interval_s),
            )
        node.call_at(now + self._spec.progress_interval_s, partial(self._dso_status_tick, node))

    def _on_status(self, node: Node, agg: int, result: CallResult) -> None:
        dso, sim = self._dso, self._sim
        assert dso.dispatch is not None and sim is not None
        dso.status_calls.ended(result)
        now = sim.now
        if result.ok:
            try:
                status = DrStatus.parse(result.value)
            except RemoteProtocolError:
                dso.bad_statuses += 1
                return
            changes = dso.dispatch.on_status(agg, status, now)
        else:
            changes = dso.dispatch.on_silent(agg, now)
        for other, target_kw in changes.items():
            self._ask(node, other, target_kw, now)

    # -- the report --------------------------------------------------------------------------

    def _region_meters(self) -> list[int]:
        meters: list[int] = []
        for agg in self._region:
            state = self._aggs[agg]
            meters.extend(range(state.first_meter, state.last_meter + 1))
        return meters

    def report(self, sim: Simulator) -> dict[str, object]:
        spec, dso = self._spec, self._dso
        duration_s = self._scenario.simulation.duration_s
        requested_s = dso.requested_s
        requested_kw = spec.request_kw
        deadline_at_s = (
            None if requested_s is None else min(requested_s + spec.deadline_s, duration_s)
        )
        achieved_kw = 0.0 if deadline_at_s is None else self._log.at(deadline_at_s)
        reached_s = None if requested_s is None else self._log.reached(requested_kw, requested_s)
        met = (
            requested_s is not None
            and reached_s is not None
            and reached_s <= requested_s + spec.deadline_s
        )
        tallies = _Tallies()
        per_aggregator = [
            self._aggregator_report(sim, state, tallies) for state in self._aggs.values()
        ]
        # What the region's aggregators knew at the request (the DSO's offer for one that
        # never got it).
        known_kw: list[float] = []
        for agg in self._region:
            flexibility_kw = self._aggs[agg].flexibility_at_request_kw
            known_kw.append(dso.offers.get(agg, 0.0) if flexibility_kw is None else flexibility_kw)
        region_flexibility_kw = math.fsum(known_kw)
        dispatch = dso.dispatch
        # The DSO's view: it learned in time that the region's reduction covered the request.
        dso_confirmed = (
            requested_s is not None
            and dispatch is not None
            and dispatch.active_at_s is not None
            and dispatch.active_at_s <= requested_s + spec.deadline_s
        )
        reasons: list[ShortfallReason] = []
        if not met:
            reasons = explain_shortfall(
                requested_kw=requested_kw,
                achieved_kw=achieved_kw,
                request_sent=requested_s is not None,
                flexibility_kw=self._live_flexibility_kw(),
                known_flexibility_kw=region_flexibility_kw,
                unassigned_kw=dispatch.unassigned_kw if dispatch is not None else 0.0,
                lost_aggregators=self._lost_aggregators(deadline_at_s),
                crashed_customers=tallies.pair("crashed"),
                crashed_after_accepting=tallies.pair("crashed_after_accepting"),
                lost_commands=tallies.pair("lost"),
                unavailable=tallies.pair("unavailable"),
                late=tallies.pair("late"),
                not_sent=tallies.pair("dropped"),
                orphaned=tallies.pair("orphaned"),
            )
        elif not dso_confirmed:
            calls = dso.status_calls
            reasons = [
                ShortfallReason(
                    "dso_not_informed",
                    0.0,
                    calls.timeouts + calls.errors,
                    "the customers met the request, but the DSO did not learn it by the "
                    f"deadline: {calls.timeouts + calls.errors} of {calls.calls} status polls "
                    "went unanswered",
                )
            ]
        why = None
        if reasons:
            why = {
                "summary": "; ".join(f"{r.reason} ({r.kw:,.1f} kW)" for r in reasons),
                "reasons": [reason.to_value() for reason in reasons],
            }
        result = {
            "requested_kw": requested_kw,
            "request_sent": requested_s is not None,
            "request_at_s": requested_s,
            "deadline_s": spec.deadline_s,
            "region": list(self._region),
            "region_flexibility_kw": _kw(region_flexibility_kw),
            "commanded_kw": _kw(tallies.commanded_kw),
            "confirmed_kw": _kw(tallies.confirmed_kw),
            "achieved_kw": _kw(achieved_kw),
            "achieved_kw_end": _kw(self._log.at(duration_s)),
            "met": met,
            "dso_confirmed": dso_confirmed,
            "time_to_activation_s": (
                None
                if reached_s is None or requested_s is None
                else rounded(reached_s - requested_s)
            ),
            "shortfall_kw": _kw(max(0.0, requested_kw - achieved_kw)),
            "why": why,
            "dso": self._dso_report(),
            "customers": self._customers_report(sim, tallies),
            "commands": tallies.commands_report(),
            "reports": self._reports_report(),
            "traffic": self._traffic(sim),
            "per_aggregator": per_aggregator,
        }
        return {"dr": result, "dr_reduction": self._series(requested_s)}

    def _lost_aggregators(self, deadline_at_s: float | None) -> list[tuple[int, float]]:
        """Aggregators lost at the end: each with what its customers left of its share undone.

        The most the DSO asked of them, less what the customers they had
        commanded really delivered by the deadline (the meters' truth).
        """
        dispatch = self._dso.dispatch
        if dispatch is None or deadline_at_s is None:
            return []
        lost = []
        for agg in dispatch.lost():
            delivered_kw = 0.0
            activation = self._aggs[agg].activation
            if activation is not None:
                for meter, *_ in activation.commands():
                    kept = self._meter_commands.get(meter)
                    if (
                        kept is not None
                        and kept.applied_at_s is not None
                        and kept.applied_at_s <= deadline_at_s
                    ):
                        delivered_kw += kept.answer.accepted_kw
            lost.append((agg, max(0.0, dispatch.peak(agg) - delivered_kw)))
        return lost

    def _aggregator_report(
        self, sim: Simulator, state: _Aggregator, tallies: _Tallies
    ) -> dict[str, object]:
        activation = state.activation
        entry: dict[str, object] = {
            "node": state.agg_id,
            "in_region": state.agg_id in self._region,
            "meters": state.meters,
            "up_at_end": sim.is_up(state.agg_id),
            "restarts": state.incarnations - 1,
            "reports": state.report_calls.to_value(),
            "polls_skipped": state.polls_skipped,
            "bad_reports": state.bad_reports,
            "flexibility_at_request_kw": (
                None
                if state.flexibility_at_request_kw is None
                else _kw(state.flexibility_at_request_kw)
            ),
            "requested": activation is not None,
        }
        if activation is None:
            return entry
        deadline_s = activation.deadline_s
        counts = dict.fromkeys(("confirmed", "partial", "refused", "crashed", "lost"), 0)
        for meter, state_, asked_kw, accepted_kw, active_at_s in activation.commands():
            tallies.commanded_kw += asked_kw
            if state_ is CommandState.CONFIRMED:
                tallies.confirmed_kw += accepted_kw
                counts["confirmed"] += 1
                if accepted_kw < asked_kw - KW_EPSILON:
                    counts["partial"] += 1
                    tallies.add("unavailable", asked_kw - accepted_kw)
                kept = self._meter_commands.get(meter)
                applied_at_s = None if kept is None else kept.applied_at_s
                if active_at_s > deadline_s:
                    tallies.add("late", accepted_kw)
                elif applied_at_s is None or applied_at_s > deadline_s:
                    # Due before the deadline, but the meter was down when its load should drop.
                    tallies.add("crashed_after_accepting", accepted_kw)
            elif state_ is CommandState.REFUSED:
                counts["refused"] += 1
                tallies.add("unavailable", asked_kw)
            elif state_ is CommandState.FAILED:
                crashed = state.crashed_at_timeout.get(meter, False)
                counts["crashed" if crashed else "lost"] += 1
                tallies.add("crashed" if crashed else "lost", asked_kw)
                kept = self._meter_commands.get(meter)
                if kept is not None and kept.event == activation.event:
                    tallies.add("accepted_unconfirmed", kept.answer.accepted_kw)
            elif state_ is CommandState.DROPPED or state_ is CommandState.QUEUED:
                tallies.add("dropped", asked_kw)  # queued at the end: its aggregator went down
            else:  # sent, and no answer ever: its aggregator went down for good
                tallies.add("orphaned", asked_kw)
        entry.update(
            {
                "target_kw": _kw(activation.target_kw),
                "commands": state.command_calls.to_value(),
                "confirmed_kw": _kw(activation.confirmed_kw),
                "confirmed_at_s": (
                    None
                    if activation.confirmed_at_s is None
                    else rounded(activation.confirmed_at_s - activation.started_s)
                ),
                "customers_confirmed": counts["confirmed"],
                "customers_partial": counts["partial"],
                "customers_refused": counts["refused"],
                "customers_crashed": counts["crashed"],
                "commands_lost": counts["lost"],
                "exhausted": activation.exhausted,
                "skipped_known": state.skipped_known,
                "bad_answers": state.bad_answers,
            }
        )
        return entry

    def _dso_report(self) -> dict[str, object]:
        dso = self._dso
        dispatch = dso.dispatch
        result: dict[str, object] = {
            "offers_last_kw": _kw(math.fsum(dso.offers.get(agg, 0.0) for agg in self._region)),
            "offers_at_request_kw": None if dispatch is None else _kw(dispatch.offers_kw),
            "flexibility_polls": dso.flexibility_calls.to_value(),
            "requests": dso.request_calls.to_value(),
            "status_polls": dso.status_calls.to_value(),
            "bad_statuses": dso.bad_statuses,
        }
        if dispatch is None:
            return result
        requested_s = dso.requested_s
        assert requested_s is not None
        result.update(
            {
                "confirmed_kw": _kw(dispatch.confirmed_kw),
                "active_kw": _kw(dispatch.active_kw),
                "active_at_s": (
                    None
                    if dispatch.active_at_s is None
                    else rounded(dispatch.active_at_s - requested_s)
                ),
                "redistributed_kw": _kw(dispatch.redistributed_kw),
                "unassigned_kw": _kw(dispatch.unassigned_kw),
                "aggregators_lost": dispatch.lost(),
                "aggregators_exhausted": dispatch.exhausted(),
                "targets_kw": {str(agg): _kw(kw) for agg, kw in dispatch.targets().items()},
            }
        )
        return result

    def _live_flexibility_kw(self) -> float:
        """What the region's customers up at the request had to report (0: no request)."""
        first = self._meter_ids.start
        customers = self._customers
        return math.fsum(customers[m - first].flexibility_kw for m in self._up_at_request)

    def _customers_report(self, sim: Simulator, tallies: _Tallies) -> dict[str, object]:
        region = self._region_meters()
        customers = self._customers
        first = self._meter_ids.start
        flexible = [customers[m - first].flexibility_kw for m in region]
        up = self._up_at_request
        available_kw = math.fsum(
            customers[m - first].flexibility_kw for m in up if not customers[m - first].unavailable
        )
        applied = sum(1 for kept in self._meter_commands.values() if kept.applied)
        return {
            "meters": len(self._meter_ids),
            "region_meters": len(region),
            "region_flexible": sum(1 for kw in flexible if kw > KW_EPSILON),
            "region_flexibility_kw": _kw(math.fsum(flexible)),
            "region_flexibility_up_kw": _kw(self._live_flexibility_kw()),
            "region_flexibility_available_kw": _kw(available_kw),
            "region_down_at_request": (
                None if self._dso.requested_s is None else len(region) - len(up)
            ),
            "down_at_end": sum(1 for m in self._meter_ids if not sim.is_up(m)),
            "answers": dict(self._meter_answers),
            "applied": applied,
            "accepted_unconfirmed_kw": _kw(tallies.kw("accepted_unconfirmed")),
            "accepted_unconfirmed": tallies.count("accepted_unconfirmed"),
        }

    def _reports_report(self) -> dict[str, object]:
        calls = _Calls()
        skipped = bad = 0
        for state in self._aggs.values():
            for name in ("calls", "copies", "answered", "timeouts", "errors"):
                setattr(calls, name, getattr(calls, name) + getattr(state.report_calls, name))
            skipped += state.polls_skipped
            bad += state.bad_reports
        return {
            **calls.to_value(),
            "skipped": skipped,
            "malformed": bad,
            "report_bytes": self._report_message_bytes,
            "interval_s": self._spec.report_interval_s,
        }

    def _traffic(self, sim: Simulator) -> dict[str, object]:
        """Everything each role sent during the run (messages and bytes, the real encoder's)."""

        def role(ids: range) -> dict[str, int]:
            lo, hi = ids.start - 1, ids.stop - 1
            return {
                "messages": sum(sim.sent_by_node[lo:hi]),
                "bytes": sum(sim.bytes_by_node[lo:hi]),
            }

        return {
            "meters": role(self._meter_ids),
            "aggregators": role(self._agg_ids),
            "dso": role(range(self._dso_id, self._dso_id + 1)),
        }

    def _series(self, requested_s: float | None) -> dict[str, list[float]]:
        step_s = self._spec.sample_interval_s
        duration_s = self._scenario.simulation.duration_s
        count = math.floor(duration_s / step_s + 1e-9) + 1
        times = [round(k * step_s, 6) for k in range(count)]
        requested_kw = self._spec.request_kw
        return {
            "time_s": times,
            "requested_kw": [
                requested_kw if requested_s is not None and t >= requested_s else 0.0 for t in times
            ],
            "achieved_kw": [_kw(kw) for kw in self._log.samples(times)],
        }


class _Tallies:
    """Counts and kW per cause, over every aggregator's commands."""

    __slots__ = ("_count", "_kw", "commanded_kw", "confirmed_kw")

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._kw: dict[str, float] = {}
        self.commanded_kw = 0.0
        self.confirmed_kw = 0.0

    def add(self, cause: str, kw: float) -> None:
        self._count[cause] = self._count.get(cause, 0) + 1
        self._kw[cause] = self._kw.get(cause, 0.0) + kw

    def count(self, cause: str) -> int:
        return self._count.get(cause, 0)

    def kw(self, cause: str) -> float:
        return self._kw.get(cause, 0.0)

    def pair(self, cause: str) -> tuple[int, float]:
        return self.count(cause), self.kw(cause)

    def commands_report(self) -> dict[str, object]:
        causes = (
            "unavailable",
            "crashed",
            "crashed_after_accepting",
            "lost",
            "late",
            "dropped",
            "orphaned",
        )
        return {cause: {"count": self.count(cause), "kw": _kw(self.kw(cause))} for cause in causes}


def _draw_customers(spec: CustomersSpec, count: int, seed: int) -> list[Customer]:
    """Every meter's customer, in meter order, from one stream of the seed."""
    rng = Random(f"gridmesh-dr:{seed}:customers")
    random = rng.random
    base, flexibility, delay = spec.base_load_kw, spec.flexibility_kw, spec.activation_delay_s
    unavailable_share = spec.unavailable_share
    customers = []
    for _ in range(count):
        base_kw = base.draw(rng) if random() < base.share else 0.0
        flexibility_kw = flexibility.draw(rng) if random() < flexibility.share else 0.0
        delay_s = delay.draw(rng) if random() < delay.share else 0.0
        customers.append(
            Customer(base_kw, flexibility_kw, delay_s, unavailable=random() < unavailable_share)
        )
    return customers


def _report_padding(report_bytes: int, meter_max: int, duration_s: float) -> tuple[bytes, int]:
    """Padding that makes a report ``report_bytes`` on the wire, and the size it then has.

    Measured with the real encoder on a report with the largest ids and times
    of the run, so no report is larger (smaller ids encode a few bytes shorter).
    """
    report = MeterReport(DR_KW_MAX, DR_KW_MAX, DR_KW_MAX).to_value()

    def size(padding: bytes) -> int:
        body = [2**64 - 1, 0, {**report, "detail": padding}]
        envelope = Envelope(
            kind=Kind.RPC_RESULT,
            message_id=2**64 - 1,
            origin=meter_max,
            sender=meter_max,
            topic="",
            created_us=int(duration_s * 1e6),
            hops_left=0,
            body=body,
        )
        return len(encode(envelope))

    length = max(0, report_bytes - size(b""))
    while length and size(bytes(length)) > report_bytes:
        length -= 1
    padding = bytes(length)
    return padding, size(padding)


def _kw(value: float) -> float:
    return round(value, _KW_DIGITS) + 0.0  # + 0.0: no -0.0 in the report
