"""Demand response for corrective control (seed 001, V.A): each actor's decisions, without I/O.

Theory of operation
-------------------
After a fault, a DSO must take load off a region of its network at once; the
UK case of seed 001 has it ask the region's DR aggregators, which "activate
DR within three minutes upon request of the DSO", and the aggregators know
what each customer can give because every smart meter reports "the total load
consumption of the customer, as well as available DR" every minute. Three
actors decide something, and this module holds each decision as plain code:
what comes in (reports, answers, timeouts) and the time are arguments, and
what to send is the result. The scenario service (``scenarios/_dr.py``)
carries the messages.

* **The customer's meter** (``answer_shed``, ``meter_report``). A
  ``Customer`` has an inflexible base load, a flexible load it can shed (what
  it reports) and an activation delay (the appliances' response time). A
  shed command ``(event, shed_kw, until_s)`` is answered once: the meter
  commits ``min(shed_kw, flexibility not yet committed)`` and the load drops
  ``activation_delay_s`` later, until ``until_s``. A customer marked
  ``unavailable`` finds, when commanded, that the flexibility it reported is
  gone (the appliance finished its cycle, the customer overrode): it commits
  nothing. That is the "flexibility reported but not available" of a
  shortfall. Once the load is shed the meter reports it shed, not flexible.
* **The aggregator** (``Activation``). It chooses customers with the Rule
  Framework's ``dr_shed`` policy (largest reported flexibility first,
  docs/RULES.md) and keeps here, per DR event, what became of each command:
  the table ``_NEXT`` below, anything else is a bug. It over-selects by a
  ``margin`` (``target x (1 + margin)`` commanded) because commands meet
  crashed meters and customers whose flexibility is gone; while what its
  customers confirmed is short of the target and the deadline has not passed,
  ``plan_kw`` asks for more: the target with its margin, less what is
  confirmed and what is still outstanding. Once the policy can find no more
  customers the activation is ``exhausted``.
* **The DSO** (``split_request``, ``Dispatch``). It splits the request among
  the region's aggregators in proportion to the flexibility each last
  reported, then follows their progress. The share of an aggregator that
  cannot be reached, or that ran out of customers, moves to the others in
  proportion to the flexibility they have to spare; what nobody can take
  stays ``unassigned``.
* **Accounting** (``ReductionLog``, ``explain_shortfall``). The reduction the
  customers really delivered is a step function of time; whether the request
  was met, when, and if not, by how much and why.

Commands keep one identity: a customer answers at most one command per DR
event (a copy gets the answer it gave), and an aggregator commands a customer
at most once per event (a customer that timed out or refused is not asked
again: it is crashed, cut off or has nothing). An aggregator that restarts
sends again the commands it had no answer to, and learns what they became.

Powers are kW, times seconds on the caller's clock. Nothing here keeps a
clock, draws random numbers or does I/O.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.grid._rules_grid import DEVICES_MAX, DR_COMMANDS_MAX

__all__ = [
    "CUSTOMERS_PER_AGGREGATOR_MAX",
    "DR_KW_MAX",
    "KW_EPSILON",
    "Activation",
    "AggregatorStanding",
    "CommandState",
    "Customer",
    "Dispatch",
    "DrOffer",
    "DrRequest",
    "DrStatus",
    "MeterReport",
    "ReductionLog",
    "ShedAnswer",
    "ShedCommand",
    "ShedOutcome",
    "ShortfallReason",
    "answer_shed",
    "explain_shortfall",
    "meter_report",
    "split_request",
]

#: Powers below this are nothing (kW): a milliwatt.
KW_EPSILON = 1e-6
#: The largest power any DR figure may hold (kW): a terawatt, far beyond any region.
DR_KW_MAX = 1e9
#: The most customers one aggregator serves: what one ``dr_shed`` rule can know and command.
CUSTOMERS_PER_AGGREGATOR_MAX = min(DEVICES_MAX, DR_COMMANDS_MAX)


def _power(value: object, what: str) -> float:
    """``value`` as a power in kW a peer sent; ``MalformedMessage`` if it is none."""
    if type(value) is int:
        value = float(value)
    if type(value) is not float or not 0.0 <= value <= DR_KW_MAX:
        raise MalformedMessage(f"{what} must be a number of kW in 0..{DR_KW_MAX:g}", field=what)
    return value


def _time(value: object, what: str) -> float:
    if type(value) is int:
        value = float(value)
    if type(value) is not float or not math.isfinite(value) or value < 0.0:
        raise MalformedMessage(f"{what} must be a time in seconds, >= 0", field=what)
    return value


def _check_kw(value: float, what: str) -> None:
    if not 0.0 <= value <= DR_KW_MAX:
        raise LocalProtocolError(f"{what} must be in 0..{DR_KW_MAX:g} kW, got {value!r}")


# -- the customer's meter --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Customer:
    """One customer as its meter's DR controller knows it."""

    base_load_kw: float
    flexibility_kw: float
    activation_delay_s: float
    unavailable: bool = False

    def __post_init__(self) -> None:
        _check_kw(self.base_load_kw, "base_load_kw")
        _check_kw(self.flexibility_kw, "flexibility_kw")
        if not 0.0 <= self.activation_delay_s < math.inf:
            raise LocalProtocolError("activation_delay_s must be finite and >= 0")


@dataclass(frozen=True, slots=True)
class MeterReport:
    """What a meter reports every interval: its load, what it could shed, what it sheds."""

    load_kw: float
    flexibility_kw: float
    shed_kw: float

    def to_value(self) -> dict[str, object]:
        return {
            "load_kw": self.load_kw,
            "flexibility_kw": self.flexibility_kw,
            "shed_kw": self.shed_kw,
        }

    @classmethod
    def parse(cls, value: object) -> MeterReport:
        """A report as a peer sent it; ``MalformedMessage`` if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("a meter report is a map", field="report")
        return cls(
            _power(value.get("load_kw"), "load_kw"),
            _power(value.get("flexibility_kw"), "flexibility_kw"),
            _power(value.get("shed_kw"), "shed_kw"),
        )


def meter_report(customer: Customer, shed_kw: float) -> MeterReport:
    """The report of ``customer`` while it sheds ``shed_kw``: shed load is not flexible."""
    return MeterReport(
        load_kw=max(0.0, customer.base_load_kw + customer.flexibility_kw - shed_kw),
        flexibility_kw=max(0.0, customer.flexibility_kw - shed_kw),
        shed_kw=shed_kw,
    )


@dataclass(frozen=True, slots=True)
class ShedCommand:
    """An aggregator's command to one customer: shed ``shed_kw`` until ``until_s``."""

    event: int
    shed_kw: float
    until_s: float

    def to_value(self) -> dict[str, object]:
        return {"event": self.event, "shed_kw": self.shed_kw, "until_s": self.until_s}

    @classmethod
    def parse(cls, value: object) -> ShedCommand:
        """A command as a peer sent it; ``MalformedMessage`` if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("a shed command is a map", field="command")
        event = value.get("event")
        if type(event) is not int or not 0 <= event < 2**63:
            raise MalformedMessage("event must be an integer in 0..2**63-1", field="event")
        shed_kw = _power(value.get("shed_kw"), "shed_kw")
        if shed_kw <= KW_EPSILON:
            raise MalformedMessage("shed_kw must be more than nothing", field="shed_kw")
        return cls(event, shed_kw, _time(value.get("until_s"), "until_s"))


class ShedOutcome(Enum):
    """How a customer answered a shed command."""

    ACCEPTED = "accepted"  # all of it
    PARTIAL = "partial"  # less than asked: the rest was not there
    UNAVAILABLE = "unavailable"  # nothing: the flexibility it reported is gone
    EXPIRED = "expired"  # the command's validity had passed


@dataclass(frozen=True, slots=True)
class ShedAnswer:
    """A customer's answer: it sheds ``accepted_kw`` from ``active_at_s`` to ``until_s``."""

    outcome: ShedOutcome
    accepted_kw: float
    active_at_s: float
    until_s: float

    def to_value(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "accepted_kw": self.accepted_kw,
            "active_at_s": self.active_at_s,
        }

    @classmethod
    def parse(cls, value: object, until_s: float) -> ShedAnswer:
        """An answer as a peer sent it (to a command valid until ``until_s``)."""
        if not isinstance(value, dict):
            raise MalformedMessage("a shed answer is a map", field="answer")
        try:
            outcome = ShedOutcome(value.get("outcome"))
        except ValueError:
            raise MalformedMessage("unknown outcome", field="outcome") from None
        accepted_kw = _power(value.get("accepted_kw"), "accepted_kw")
        active_at_s = _time(value.get("active_at_s"), "active_at_s")
        if (accepted_kw > KW_EPSILON) != (outcome in (ShedOutcome.ACCEPTED, ShedOutcome.PARTIAL)):
            raise MalformedMessage("accepted_kw does not fit the outcome", field="accepted_kw")
        return cls(outcome, accepted_kw, active_at_s, until_s)


def answer_shed(
    customer: Customer, command: ShedCommand, committed_kw: float, now: float
) -> ShedAnswer:
    """The meter's decision on ``command``, with ``committed_kw`` already promised.

    It commits what it has, up to what is asked; the load drops after the
    customer's activation delay.
    """
    active_at_s = now + customer.activation_delay_s
    if command.until_s <= now:
        return ShedAnswer(ShedOutcome.EXPIRED, 0.0, active_at_s, command.until_s)
    available_kw = 0.0
    if not customer.unavailable:
        available_kw = max(0.0, customer.flexibility_kw - committed_kw)
    accepted_kw = min(command.shed_kw, available_kw)
    if accepted_kw <= KW_EPSILON:
        return ShedAnswer(ShedOutcome.UNAVAILABLE, 0.0, active_at_s, command.until_s)
    outcome = (
        ShedOutcome.ACCEPTED if accepted_kw >= command.shed_kw - KW_EPSILON else ShedOutcome.PARTIAL
    )
    return ShedAnswer(outcome, accepted_kw, active_at_s, command.until_s)


# -- the aggregator ----------------------------------------------------------------


class CommandState(Enum):
    """Where one command of an activation stands."""

    QUEUED = "queued"  # chosen, waiting for a place in the send window
    SENT = "sent"  # sent, no answer yet (the call retransmits)
    CONFIRMED = "confirmed"  # the customer committed some or all of it
    REFUSED = "refused"  # the customer committed nothing
    FAILED = "failed"  # no answer before the call's timeout
    DROPPED = "dropped"  # still queued at the deadline: never sent


#: ``(state, input) -> next state``; any other pair is a bug in the caller.
_NEXT: Mapping[tuple[CommandState, str], CommandState] = {
    (CommandState.QUEUED, "send"): CommandState.SENT,
    (CommandState.QUEUED, "deadline"): CommandState.DROPPED,
    (CommandState.SENT, "accepted"): CommandState.CONFIRMED,
    (CommandState.SENT, "refused"): CommandState.REFUSED,
    (CommandState.SENT, "timeout"): CommandState.FAILED,
    # The aggregator restarted before the answer came: send it again. The customer
    # answers a command once per event, so the copy brings back the same answer.
    (CommandState.SENT, "restart"): CommandState.QUEUED,
}


@dataclass(slots=True)
class _Command:
    meter: int
    asked_kw: float
    state: CommandState = CommandState.QUEUED
    accepted_kw: float = 0.0
    active_at_s: float = math.inf


@dataclass(slots=True)
class Activation:
    """One aggregator's share of one DR event: which customers it commanded, and how it went.

    ``target_kw`` is the DSO's ask (it may change: ``retarget``), the
    activation must be confirmed by ``deadline_s``, and the reduction lasts
    until ``until_s``.
    """

    event: int
    target_kw: float
    margin: float
    deadline_s: float
    until_s: float
    started_s: float
    exhausted: bool = False
    #: When what the customers confirmed first covered the target (None: not yet).
    confirmed_at_s: float | None = None
    confirmed_kw: float = 0.0
    outstanding_kw: float = 0.0
    _commands: dict[int, _Command] = field(default_factory=dict)
    _queue: list[int] = field(default_factory=list)
    _queue_head: int = 0

    def __post_init__(self) -> None:
        _check_kw(self.target_kw, "target_kw")
        if not 0.0 <= self.margin <= 10.0:
            raise LocalProtocolError(f"margin must be in 0..10, got {self.margin!r}")
        if not self.started_s <= self.deadline_s:
            raise LocalProtocolError("an activation's deadline cannot be before its start")

    # -- what to do ------------------------------------------------------------

    def plan_kw(self, now: float) -> float:
        """How many more kW to choose customers for now (0: none).

        Nothing once the target is confirmed, the deadline passed or no
        customer is left; otherwise the target with its margin, less what is
        confirmed and outstanding.
        """
        if self.exhausted or now >= self.deadline_s or self.covered:
            return 0.0
        wanted_kw = self.target_kw * (1.0 + self.margin) - self.confirmed_kw - self.outstanding_kw
        return wanted_kw if wanted_kw > KW_EPSILON else 0.0

    @property
    def covered(self) -> bool:
        """What the customers confirmed covers the target."""
        return self.confirmed_kw >= self.target_kw - KW_EPSILON

    def knows(self, meter: int) -> bool:
        """Whether ``meter`` was commanded in this activation already."""
        return meter in self._commands

    def add(self, meter: int, shed_kw: float) -> None:
        """Queue a command to ``meter`` (chosen by the policy) for ``shed_kw``."""
        if meter in self._commands:
            raise LocalProtocolError(f"meter {meter} was commanded in this activation already")
        if shed_kw <= KW_EPSILON:
            raise LocalProtocolError("a command sheds more than nothing")
        self._commands[meter] = _Command(meter, shed_kw)
        self._queue.append(meter)
        self.outstanding_kw += shed_kw

    def note_plan(self, planned_kw: float, asked_kw: float) -> None:
        """The policy planned ``planned_kw`` of ``asked_kw``: less means no customer is left."""
        if planned_kw < asked_kw - KW_EPSILON:
            self.exhausted = True

    def retarget(self, target_kw: float) -> None:
        """The DSO changed this aggregator's share."""
        _check_kw(target_kw, "target_kw")
        if target_kw > self.target_kw + KW_EPSILON:
            self.exhausted = False  # a new ask: look again
        self.target_kw = target_kw

    def take(self, count: int) -> list[tuple[int, ShedCommand]]:
        """Up to ``count`` queued commands, now sent (``QUEUED -> SENT``): ``(meter, command)``."""
        sent: list[tuple[int, ShedCommand]] = []
        queue = self._queue
        while len(sent) < count and self._queue_head < len(queue):
            meter = queue[self._queue_head]
            self._queue_head += 1
            command = self._commands[meter]
            if command.state is not CommandState.QUEUED:
                continue
            self._move(command, "send")
            sent.append((meter, ShedCommand(self.event, command.asked_kw, self.until_s)))
        return sent

    def queued_meters(self) -> Iterator[int]:
        """The meters whose commands wait, in the order ``take`` sends them."""
        for meter in self._queue[self._queue_head :]:
            if self._commands[meter].state is CommandState.QUEUED:
                yield meter

    # -- what came back ----------------------------------------------------------

    def on_answer(self, meter: int, answer: ShedAnswer, now: float) -> None:
        """The customer's answer to the command sent to ``meter``."""
        command = self._commands[meter]
        self.outstanding_kw -= command.asked_kw
        if answer.accepted_kw > KW_EPSILON:
            self._move(command, "accepted")
            command.accepted_kw = min(answer.accepted_kw, command.asked_kw)
            command.active_at_s = answer.active_at_s
            self.confirmed_kw += command.accepted_kw
            if self.confirmed_at_s is None and self.covered:
                self.confirmed_at_s = now
        else:
            self._move(command, "refused")

    def on_timeout(self, meter: int) -> None:
        """No answer from ``meter`` before the call's timeout."""
        command = self._commands[meter]
        self._move(command, "timeout")
        self.outstanding_kw -= command.asked_kw

    def on_deadline(self) -> int:
        """Drop the commands still queued at the deadline; returns how many."""
        dropped = 0
        for meter in list(self.queued_meters()):
            command = self._commands[meter]
            self._move(command, "deadline")
            self.outstanding_kw -= command.asked_kw
            dropped += 1
        return dropped

    def on_restart(self) -> int:
        """The aggregator restarted: what it had sent is queued again. Returns how many."""
        again = 0
        for command in self._commands.values():
            if command.state is CommandState.SENT:
                self._move(command, "restart")
                self._queue.append(command.meter)
                again += 1
        return again

    def _move(self, command: _Command, event: str) -> None:
        next_state = _NEXT.get((command.state, event))
        if next_state is None:
            raise LocalProtocolError(
                f"command to meter {command.meter}: {event!r} in state {command.state.value}"
            )
        command.state = next_state
        if abs(self.outstanding_kw) < KW_EPSILON:  # sums of floats drift; nothing is nothing
            self.outstanding_kw = 0.0

    # -- what it amounts to ---------------------------------------------------------

    def active_kw(self, now: float) -> float:
        """Confirmed reduction whose load has dropped by ``now`` (as the answers said)."""
        return math.fsum(
            c.accepted_kw
            for c in self._commands.values()
            if c.state is CommandState.CONFIRMED and c.active_at_s <= now < self.until_s
        )

    def status(self, now: float) -> DrStatus:
        """What this activation tells the DSO at ``now``."""
        return DrStatus(
            self.confirmed_kw, self.active_kw(now), max(0.0, self.outstanding_kw), self.exhausted
        )

    def tally(self) -> dict[str, dict[str, float]]:
        """Per state: ``count`` and ``asked_kw``; confirmed also ``accepted_kw``."""
        counts = {state: 0 for state in CommandState}
        asked = {state: 0.0 for state in CommandState}
        accepted_kw = 0.0
        for command in self._commands.values():
            counts[command.state] += 1
            asked[command.state] += command.asked_kw
            accepted_kw += command.accepted_kw
        result = {
            state.value: {"count": float(counts[state]), "asked_kw": asked[state]}
            for state in CommandState
        }
        result[CommandState.CONFIRMED.value]["accepted_kw"] = accepted_kw
        return result

    def commands(self) -> Iterator[tuple[int, CommandState, float, float, float]]:
        """Every command: ``(meter, state, asked_kw, accepted_kw, active_at_s)``."""
        for c in self._commands.values():
            yield c.meter, c.state, c.asked_kw, c.accepted_kw, c.active_at_s

    def __len__(self) -> int:
        return len(self._commands)


# -- the DSO ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrRequest:
    """The DSO's ask of one aggregator: ``target_kw`` of event ``event``.

    The reduction must be in place by ``deadline_s`` and hold until ``until_s``;
    a second request for the same event changes the target.
    """

    event: int
    target_kw: float
    deadline_s: float
    until_s: float

    def to_value(self) -> dict[str, object]:
        return {
            "event": self.event,
            "target_kw": self.target_kw,
            "deadline_s": self.deadline_s,
            "until_s": self.until_s,
        }

    @classmethod
    def parse(cls, value: object) -> DrRequest:
        """A request as a peer sent it; ``MalformedMessage`` if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("a DR request is a map", field="request")
        event = value.get("event")
        if type(event) is not int or not 0 <= event < 2**63:
            raise MalformedMessage("event must be an integer in 0..2**63-1", field="event")
        deadline_s = _time(value.get("deadline_s"), "deadline_s")
        until_s = _time(value.get("until_s"), "until_s")
        if until_s < deadline_s:
            raise MalformedMessage("until_s must not be before deadline_s", field="until_s")
        return cls(event, _power(value.get("target_kw"), "target_kw"), deadline_s, until_s)


@dataclass(frozen=True, slots=True)
class DrOffer:
    """What an aggregator's fresh reports add up to, as the DSO reads it."""

    customers: int
    flexibility_kw: float
    load_kw: float

    def to_value(self) -> dict[str, object]:
        return {
            "customers": self.customers,
            "flexibility_kw": self.flexibility_kw,
            "load_kw": self.load_kw,
        }

    @classmethod
    def parse(cls, value: object) -> DrOffer:
        """An offer as a peer sent it; ``MalformedMessage`` if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("a DR offer is a map", field="offer")
        customers = value.get("customers")
        if type(customers) is not int or customers < 0:
            raise MalformedMessage("customers must be a count", field="customers")
        return cls(
            customers,
            _power(value.get("flexibility_kw"), "flexibility_kw"),
            _power(value.get("load_kw"), "load_kw"),
        )


@dataclass(frozen=True, slots=True)
class DrStatus:
    """An aggregator's progress on a DR event, as the DSO reads it."""

    confirmed_kw: float
    active_kw: float
    outstanding_kw: float
    exhausted: bool

    def to_value(self) -> dict[str, object]:
        return {
            "confirmed_kw": self.confirmed_kw,
            "active_kw": self.active_kw,
            "outstanding_kw": self.outstanding_kw,
            "exhausted": self.exhausted,
        }

    @classmethod
    def parse(cls, value: object) -> DrStatus:
        """A status as a peer sent it; ``MalformedMessage`` if it is not one."""
        if not isinstance(value, dict):
            raise MalformedMessage("a DR status is a map", field="status")
        exhausted = value.get("exhausted")
        if type(exhausted) is not bool:
            raise MalformedMessage("exhausted must be true or false", field="exhausted")
        return cls(
            _power(value.get("confirmed_kw"), "confirmed_kw"),
            _power(value.get("active_kw"), "active_kw"),
            _power(value.get("outstanding_kw"), "outstanding_kw"),
            exhausted,
        )


def split_request(request_kw: float, offers: Mapping[int, float | None]) -> dict[int, float]:
    """``request_kw`` shared among the aggregators of ``offers`` in proportion to their offers.

    An offer of ``None`` (not known yet) counts as the mean of the known ones;
    with none known, or none above zero, the shares are equal. The shares add
    up to the request even when the offers do not: an aggregator asked for
    more than it has says so (its activation runs out of customers), and the
    DSO's ``Dispatch`` moves what it cannot take elsewhere.
    """
    _check_kw(request_kw, "request_kw")
    if not offers:
        return {}
    known = [kw for kw in offers.values() if kw is not None]
    mean_kw = math.fsum(known) / len(known) if known else 0.0
    weights = {agg: (mean_kw if kw is None else max(0.0, kw)) for agg, kw in offers.items()}
    total = math.fsum(weights.values())
    if total <= KW_EPSILON:
        share = request_kw / len(offers)
        return dict.fromkeys(sorted(offers), share)
    return {agg: request_kw * weights[agg] / total for agg in sorted(offers)}


class AggregatorStanding(Enum):
    """What the DSO knows of one aggregator of the region during an event."""

    ASKED = "asked"  # request sent, no answer yet
    ACTIVATING = "activating"  # it accepted its share
    EXHAUSTED = "exhausted"  # it said it has no customer left
    LOST = "lost"  # it did not answer the request or the status polls


@dataclass(slots=True)
class _Share:
    target_kw: float
    offer_kw: float
    #: The most this aggregator was ever asked for.
    peak_kw: float = 0.0
    standing: AggregatorStanding = AggregatorStanding.ASKED
    confirmed_kw: float = 0.0
    active_kw: float = 0.0
    outstanding_kw: float = 0.0
    silent_polls: int = 0


@dataclass(slots=True)
class Dispatch:
    """The DSO's side of one DR event: each aggregator's share, and what it reported.

    Methods that move shares return the aggregators whose share changed, with
    the new share, for the DSO to send them.
    """

    event: int
    request_kw: float
    requested_s: float
    silent_polls_max: int = 2
    #: kW no aggregator could take: the region's flexibility is used up or lost.
    unassigned_kw: float = 0.0
    #: kW moved from an aggregator to others.
    redistributed_kw: float = 0.0
    #: When the DSO first learned that the region's reduction covers the request.
    active_at_s: float | None = None
    #: Aggregators that were lost -> the kW of their share not confirmed then (moved away).
    lost_kw: dict[int, float] = field(default_factory=dict)
    _shares: dict[int, _Share] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        event: int,
        request_kw: float,
        offers: Mapping[int, float | None],
        now: float,
        *,
        silent_polls_max: int = 2,
    ) -> Dispatch:
        dispatch = cls(event, request_kw, now, silent_polls_max)
        for agg, share_kw in split_request(request_kw, offers).items():
            offer_kw = offers[agg]
            offered_kw = share_kw if offer_kw is None else offer_kw
            dispatch._shares[agg] = _Share(share_kw, offered_kw, peak_kw=share_kw)
        return dispatch

    def targets(self) -> dict[int, float]:
        return {agg: share.target_kw for agg, share in self._shares.items()}

    def peak(self, agg: int) -> float:
        """The most ``agg`` was ever asked for in this event."""
        return self._shares[agg].peak_kw

    def standing(self, agg: int) -> AggregatorStanding:
        return self._shares[agg].standing

    def aggregators(self) -> list[int]:
        return sorted(self._shares)

    def on_accepted(self, agg: int) -> None:
        share = self._shares[agg]
        share.silent_polls = 0
        if share.standing is AggregatorStanding.ASKED:
            share.standing = AggregatorStanding.ACTIVATING

    def on_unreachable(self, agg: int, now: float) -> dict[int, float]:
        """The request to ``agg`` timed out: its share goes to the others."""
        share = self._shares[agg]
        if share.standing is AggregatorStanding.LOST:
            return {}
        return self._lose(agg, now)

    def on_status(self, agg: int, status: DrStatus, now: float) -> dict[int, float]:
        """An aggregator's progress; an exhausted one's deficit goes to the others."""
        confirmed_kw, active_kw = status.confirmed_kw, status.active_kw
        outstanding_kw = status.outstanding_kw
        share = self._shares[agg]
        share.silent_polls = 0
        share.confirmed_kw, share.active_kw = confirmed_kw, active_kw
        share.outstanding_kw = outstanding_kw
        changes: dict[int, float] = {}
        if share.standing is AggregatorStanding.LOST:
            # Back. Its share went to others, or nowhere: it gets back what nobody took
            # (up to what it missed), and keeps no more than that.
            missing_kw = max(0.0, self.lost_kw[agg] + share.target_kw - confirmed_kw)
            reclaimed_kw = min(self.unassigned_kw, missing_kw)
            self.unassigned_kw -= reclaimed_kw
            share.target_kw = confirmed_kw + reclaimed_kw
            share.standing = AggregatorStanding.ACTIVATING
            changes[agg] = share.target_kw
        if share.standing is AggregatorStanding.ASKED:
            share.standing = AggregatorStanding.ACTIVATING
        if status.exhausted:
            share.standing = AggregatorStanding.EXHAUSTED
            deficit_kw = share.target_kw - confirmed_kw - outstanding_kw
            if deficit_kw > KW_EPSILON:
                changes = self._move(agg, deficit_kw, now)
        self._note_active(now)
        return changes

    def on_silent(self, agg: int, now: float) -> dict[int, float]:
        """A status poll of ``agg`` went unanswered; after ``silent_polls_max``, it is lost."""
        share = self._shares[agg]
        if share.standing is AggregatorStanding.LOST:
            return {}
        share.silent_polls += 1
        if share.silent_polls < self.silent_polls_max:
            return {}
        return self._lose(agg, now)

    def _lose(self, agg: int, now: float) -> dict[int, float]:
        share = self._shares[agg]
        share.standing = AggregatorStanding.LOST
        # What it confirmed stays counted (its customers committed); the rest moves.
        missing_kw = max(0.0, share.target_kw - share.confirmed_kw)
        self.lost_kw[agg] = missing_kw
        return self._move(agg, missing_kw, now)

    def _move(self, source: int, kw: float, now: float) -> dict[int, float]:
        """Move ``kw`` of ``source``'s share to aggregators with flexibility to spare."""
        if kw <= KW_EPSILON:
            return {}
        self._shares[source].target_kw -= kw
        spare = {
            agg: share.offer_kw - share.target_kw
            for agg, share in self._shares.items()
            if agg != source
            and share.standing in (AggregatorStanding.ASKED, AggregatorStanding.ACTIVATING)
            and share.offer_kw - share.target_kw > KW_EPSILON
        }
        total = math.fsum(spare.values())
        taken_kw = min(kw, total)
        changes: dict[int, float] = {}
        if taken_kw > KW_EPSILON:
            for agg in sorted(spare):
                share = self._shares[agg]
                share.target_kw += taken_kw * spare[agg] / total
                share.peak_kw = max(share.peak_kw, share.target_kw)
                changes[agg] = share.target_kw
            self.redistributed_kw += taken_kw
        if kw - taken_kw > KW_EPSILON:
            self.unassigned_kw += kw - taken_kw
        return changes

    def _note_active(self, now: float) -> None:
        if self.active_at_s is None and self.active_kw >= self.request_kw - KW_EPSILON:
            self.active_at_s = now

    @property
    def offers_kw(self) -> float:
        """The flexibility the region's aggregators offered when the request was split."""
        return math.fsum(share.offer_kw for share in self._shares.values())

    @property
    def confirmed_kw(self) -> float:
        return math.fsum(share.confirmed_kw for share in self._shares.values())

    @property
    def active_kw(self) -> float:
        return math.fsum(share.active_kw for share in self._shares.values())

    def lost(self) -> list[int]:
        return sorted(
            agg for agg, s in self._shares.items() if s.standing is AggregatorStanding.LOST
        )

    def exhausted(self) -> list[int]:
        return sorted(
            agg for agg, s in self._shares.items() if s.standing is AggregatorStanding.EXHAUSTED
        )


# -- accounting -------------------------------------------------------------------------


class ReductionLog:
    """The reduction customers really delivered: a step function of time (kW)."""

    __slots__ = ("_kw", "_times")

    def __init__(self) -> None:
        self._times: list[float] = []
        self._kw: list[float] = []  # the total from that time on

    def change(self, time_s: float, kw: float) -> None:
        """From ``time_s`` on, ``kw`` more (or less, if negative); times never go back."""
        if self._times and time_s < self._times[-1]:
            raise LocalProtocolError(f"time went back: {time_s} after {self._times[-1]}")
        total = (self._kw[-1] if self._kw else 0.0) + kw
        if abs(total) < KW_EPSILON:
            total = 0.0
        if self._times and self._times[-1] == time_s:
            self._kw[-1] = total
        else:
            self._times.append(time_s)
            self._kw.append(total)

    def at(self, time_s: float) -> float:
        """The reduction in effect at ``time_s``."""
        index = bisect_right(self._times, time_s)
        return self._kw[index - 1] if index else 0.0

    def reached(self, kw: float, since_s: float) -> float | None:
        """The first time at or after ``since_s`` the reduction was at least ``kw``."""
        if self.at(since_s) >= kw - KW_EPSILON:
            return since_s
        for time_s, total in zip(self._times, self._kw, strict=True):
            if time_s >= since_s and total >= kw - KW_EPSILON:
                return time_s
        return None

    def samples(self, times: Sequence[float]) -> list[float]:
        return [self.at(time_s) for time_s in times]


@dataclass(frozen=True, slots=True)
class ShortfallReason:
    """One cause of a shortfall: the kW it took away and how many things it hit."""

    reason: str
    kw: float
    count: int
    detail: str

    def to_value(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "kw": round(self.kw, 3) + 0.0,
            "count": self.count,
            "detail": self.detail,
        }


def explain_shortfall(
    *,
    requested_kw: float,
    achieved_kw: float,
    request_sent: bool,
    flexibility_kw: float,
    known_flexibility_kw: float,
    unassigned_kw: float,
    lost_aggregators: Sequence[tuple[int, float]],
    crashed_customers: tuple[int, float],
    crashed_after_accepting: tuple[int, float],
    lost_commands: tuple[int, float],
    unavailable: tuple[int, float],
    late: tuple[int, float],
    not_sent: tuple[int, float],
    orphaned: tuple[int, float],
) -> list[ShortfallReason]:
    """Why ``achieved_kw`` fell short of ``requested_kw``: every cause seen, largest first.

    ``flexibility_kw`` is what the region's live customers had to offer at the
    request, ``known_flexibility_kw`` what their aggregators knew of it. Each
    pair is ``(count, kW)``. The kW of a cause is what it took away before any
    re-command made up for it (gross), so the causes need not add up to the
    shortfall; with none to show, the reason is ``unexplained``.
    """
    if not request_sent:
        return [
            ShortfallReason("dso_down", requested_kw, 1, "the DSO was down: no request was sent")
        ]
    reasons: list[ShortfallReason] = []
    if flexibility_kw < requested_kw - KW_EPSILON:
        reasons.append(
            ShortfallReason(
                "not_enough_flexibility",
                requested_kw - flexibility_kw,
                0,
                f"the region's live customers had {flexibility_kw:,.1f} kW of flexibility "
                f"for {requested_kw:,.1f} kW requested",
            )
        )
    unknown_kw = min(requested_kw, flexibility_kw) - known_flexibility_kw
    if unknown_kw > KW_EPSILON:
        reasons.append(
            ShortfallReason(
                "flexibility_unknown",
                unknown_kw,
                0,
                f"the aggregators knew of {known_flexibility_kw:,.1f} kW of it at the request: "
                "reports lost, or not read yet",
            )
        )
    if unassigned_kw > KW_EPSILON and not reasons:
        reasons.append(
            ShortfallReason(
                "no_aggregator_left",
                unassigned_kw,
                0,
                "shares of lost or exhausted aggregators that no other aggregator could take",
            )
        )
    if lost_aggregators:
        reasons.append(
            ShortfallReason(
                "aggregator_lost",
                math.fsum(kw for _, kw in lost_aggregators),
                len(lost_aggregators),
                "aggregators "
                + ", ".join(str(agg) for agg, _ in lost_aggregators)
                + " stopped answering the DSO; kW: what their customers left of their share",
            )
        )
    causes = (
        ("customers_crashed", crashed_customers, "commands to meters that were down"),
        (
            "crashed_before_activation",
            crashed_after_accepting,
            "customers that accepted, but whose meter was down when the load was to drop",
        ),
        ("commands_lost", lost_commands, "commands to live meters unanswered after retries"),
        ("flexibility_unavailable", unavailable, "customers whose reported flexibility was gone"),
        ("activation_late", late, "customers whose load dropped after the deadline"),
        ("not_sent_before_deadline", not_sent, "commands still queued at the deadline"),
        ("commands_orphaned", orphaned, "commands whose aggregator went down before the answer"),
    )
    for name, (count, kw), detail in causes:
        if count or kw > KW_EPSILON:
            reasons.append(ShortfallReason(name, kw, count, detail))
    if not reasons and achieved_kw < requested_kw - KW_EPSILON:
        reasons.append(
            ShortfallReason("unexplained", requested_kw - achieved_kw, 0, "no cause recorded")
        )
    reasons.sort(key=lambda r: (-r.kw, r.reason))
    return reasons
