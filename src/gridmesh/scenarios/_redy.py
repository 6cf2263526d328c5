"""ReDy balancing (seed 003): ``[redy]``.

Theory of operation
-------------------
Every node of the ``[redy] role`` is a governance unit (seed 003, section 4)
with a load, a renewable output and flexibility, drawn from the seed
(``gridmesh.grid.draw_unit``). The units keep their overlay by the
configured membership (ReDy's is Cyclon, ``[node.membership] kind =
"cyclon"``) and balance the grid with no central control:

1. **Exchange.** The units exchange what they consume, produce and could
   move, over the nodes' own protocols and the simulated network (its loss,
   latency and faults), in *epochs*: one unit, the *initiator*, starts one at
   ``start_s`` and every ``epoch_s`` after. Two ways, ``estimator``:

   * ``"tree"`` (seed 000's request-response gossip): the initiator runs a
     ``vector_sum`` tree aggregation of every unit's ``[net, raise, lower]``
     (``Node.aggregate``, ``[node.aggregation]`` fanout, hops, timeout) and
     gossips the totals it gets (``Node.broadcast`` on
     ``EMD/<initiator>/REDY/BALANCE``, ``[node.gossip]``); a unit takes the
     totals of the newest epoch it hears. Sums are exact over the units the
     count reached; one that it missed counts in neither the imbalance nor
     the flexibility, so their ratio, which is what a unit acts on, is off
     only by what a sample is off. A crash during a count drops whole
     subtrees, so the initiator counts again when a count reached far fewer
     units than its last (``recount_below``, ``counts_max``). A unit the
     gossip missed, or one that just (re)started, asks a random neighbour
     (service ``emd/balance``) once the epoch's totals are due.
   * ``"pushsum"``: three push-sum estimates of the means of the same
     readings (``Node.start_estimate``, then ``Node.restart_estimate`` each
     epoch; ``rounds`` rounds of ``[node.pushsum] round_s``). No node ever
     holds a total: every unit has its own estimate, better with every round.
     A unit trusts an epoch once it ran ``settle_rounds`` rounds of it and
     uses what the previous epoch ended with before.

   The initiator only paces epochs (and roots the tree); it reads and acts
   like any unit, and ``[[faults.crashed]]`` spares it as it spares broadcast
   origins. While it is down no epoch starts and the units hold what they
   last decided; a restarted initiator starts afresh.
2. **Decide.** A unit sets its action from what it knows with
   ``balancing_share`` and ``unit_action_kw`` (``gridmesh.grid``, where the
   rule and why it needs no state are explained): when new totals reach it,
   and every ``decide_interval_s`` on its own timer (its flexibility follows
   the weather). A failed unit decides nothing; a restarted one has taken no
   action and holds none until it knows an epoch.
3. **Measure.** Every ``sample_interval_s`` the service reads the grid's true
   state over the units up at that moment: the imbalance with their actions
   (each clamped to the unit's flexibility of the moment), the uncontrolled
   imbalance and the central optimum (``central_optimum_kw``). As each epoch
   closes it compares what every live unit acts on with the truth.

A unit that fails leaves the grid with its load and production (ReDy: "the
network has to deal with the absence of this element and establish a new
balance"); one that recovers comes back with both, and acts again once it
knows an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from random import Random
from typing import TYPE_CHECKING

import numpy as np

from gridmesh.grid import (
    GovernanceUnit,
    UnitKind,
    balancing_share,
    central_optimum_kw,
    draw_unit,
    output_factor,
    unit_action_kw,
)
from gridmesh.node import Node
from gridmesh.protocols import Delivery
from gridmesh.protocols.aggregation import AggregateResult, Estimate
from gridmesh.protocols.rpc import CallResult
from gridmesh.scenarios._redy_spec import (
    REDY_READINGS,
    REDY_SAMPLES_MAX,
    REDY_STATE,
    RedySpec,
)
from gridmesh.scenarios._report import percentiles, rounded
from gridmesh.scenarios._services import ScenarioService
from gridmesh.sim import Simulator

if TYPE_CHECKING:
    from gridmesh.scenarios._schema import Scenario

__all__ = [
    "REDY_ASKS_MAX",
    "REDY_READINGS",
    "REDY_SAMPLES_MAX",
    "REDY_SERVICE",
    "REDY_STATE",
    "RedyService",
    "RedySpec",
    "redy_topic",
]

#: The service a unit asks a neighbour's totals with, when the gossip missed it.
REDY_SERVICE = "emd/balance"
#: Asks per epoch a unit makes of its neighbours before it waits for the next epoch.
REDY_ASKS_MAX = 3
_KW_DIGITS = 3  # watts
_MEASURE_EARLY_S = 0.001  # an epoch is measured this long before the next one starts
_GOSSIP_S = 1.0  # time the totals' gossip takes to reach the units, for asking

#: What a unit knows of an epoch: (epoch, imbalance, raise, lower), totals or means.
_Known = tuple[int, float, float, float]


class _Epoch:
    """One epoch: when it started, what the tree counted, what its values were worth."""

    __slots__ = ("accepted", "at_s", "best", "measure", "number", "queries")

    def __init__(self, number: int, at_s: float) -> None:
        self.number = number
        self.at_s = at_s
        self.queries: list[dict[str, object]] = []  # the tree's counts
        self.best: tuple[int, float, float, float] = (0, 0.0, 0.0, 0.0)  # most contributors
        self.accepted: int | None = None  # contributors of the totals gossiped
        self.measure: dict[str, object] | None = None


class RedyService(ScenarioService):
    """Governance units balancing the grid from what they learn of it (seed 003)."""

    def __init__(self, scenario: Scenario, spec: RedySpec, seed: int) -> None:
        self._spec = spec
        self._ids = spec.unit_ids(scenario)
        self._initiator = spec.initiator_id(scenario)
        self._topic = redy_topic(self._initiator)
        self._duration_s = scenario.simulation.duration_s
        self._settle_s = spec.timing(scenario)[0]
        mix = spec.mix()
        units: list[GovernanceUnit] = []
        phases: list[float] = []
        for node_id in self._ids:
            # One stream per unit: a unit is the same whatever the others are.
            rng = Random(f"gridmesh-redy:{seed}:{node_id}")
            units.append(draw_unit(mix, rng))
            phases.append(rng.random() * spec.decide_interval_s)
        self._units = units
        self._phase_s = phases
        self._load = np.array([u.load_kw for u in units], dtype=np.float64)
        self._output = np.array([u.output_kw for u in units], dtype=np.float64)
        self._raise_load = np.array([u.raise_load_kw for u in units], dtype=np.float64)
        self._lower = np.array([u.lower_kw for u in units], dtype=np.float64)
        self._setpoint = np.zeros(len(units), dtype=np.float64)
        self._known: list[_Known | None] = [None] * len(units)  # tree: each unit's memory
        self._asked = [(0, 0)] * len(units)  # tree: (epoch asked for, asks made)
        self._asks = self._answers = 0
        self._estimate_ids: tuple[int, ...] | None = None  # pushsum
        self._reference = 0  # tree: contributors of the initiator's last gossiped count
        self._reference_node: Node | None = None  # ... by this incarnation of the initiator
        self._epochs: list[_Epoch] = []
        self._epochs_missed = 0
        self._decisions = 0
        self._bad_payloads = 0
        self._sim: Simulator | None = None
        self._time_s: list[float] = []
        self._imbalance_kw: list[float] = []
        self._optimum_kw: list[float] = []
        self._start_flexibility = (0.0, 0.0)  # (raise, lower) at the first sample
        self._uncontrolled_kw = 0.0  # at the last sample

    # -- the units ----------------------------------------------------------------

    def _factor(self, now: float) -> float:
        spec = self._spec
        return output_factor(spec.output_share, spec.output_variation, spec.output_period_s, now)

    def _index(self, node_id: int) -> int:
        """The unit's index, or -1 for a node that is no governance unit."""
        index = node_id - self._ids.start
        return index if 0 <= index < len(self._units) else -1

    def spared(self) -> set[int]:
        return {self._initiator}

    def equip(self, node: Node) -> None:
        index = self._index(node.node_id)
        if index < 0:
            return
        unit = self._units[index]
        factor = self._factor
        if self._spec.estimator == "tree":
            node.set_reading(
                REDY_STATE,
                lambda now: [unit.net_kw(factor(now)), unit.raise_kw(factor(now)), unit.lower_kw],
            )
            node.expose(REDY_SERVICE, lambda args, now: self._answer(index))
        else:
            node.set_reading(REDY_READINGS[0], lambda now: unit.net_kw(factor(now)))
            node.set_reading(REDY_READINGS[1], lambda now: unit.raise_kw(factor(now)))
            node.set_reading(REDY_READINGS[2], lambda now: unit.lower_kw)
        self._setpoint[index] = 0.0  # a (re)started unit has taken no action, knows nothing
        self._known[index] = None
        self._asked[index] = (0, 0)
        node.call_at(self._phase_s[index], self._decider(node, index))

    def _decider(self, node: Node, index: int) -> Callable[[float], None]:
        """The unit's decision timer: decide, then sleep ``decide_interval_s``."""
        interval_s = self._spec.decide_interval_s
        tree = self._spec.estimator == "tree"

        def decide(now: float) -> None:
            if tree:
                self._ask(node, index, now)
            self._decide(node, index, now)
            node.call_at(now + interval_s, decide)

        return decide

    def _decide(self, node: Node, index: int, now: float) -> None:
        values = self._values(node, index)
        if values is None:  # nothing known: hold the action
            return
        unit = self._units[index]
        share = balancing_share(*values)
        self._setpoint[index] = unit_action_kw(
            share, unit.raise_kw(self._factor(now)), unit.lower_kw
        )
        self._decisions += 1

    def _values(self, node: Node, index: int) -> tuple[float, float, float] | None:
        """What the unit acts on now: imbalance, raise, lower (totals or means)."""
        if self._spec.estimator == "tree":
            known = self._known[index]
            return None if known is None else known[1:]
        ids = self._estimate_ids
        if ids is None:
            return None
        settle_rounds = self._spec.settle_rounds
        imbalance = _usable(node.estimate(ids[0]), settle_rounds)
        up = _usable(node.estimate(ids[1]), settle_rounds)
        down = _usable(node.estimate(ids[2]), settle_rounds)
        if imbalance is None or up is None or down is None:
            return None
        return imbalance, up, down

    def on_deliver(self, node_id: int, delivery: Delivery) -> None:
        if delivery.topic != self._topic:
            return
        index = self._index(node_id)
        node = None if self._sim is None or index < 0 else self._sim.node(node_id)
        if node is None:
            return
        known = _parse_balance(delivery.payload)
        if known is None:  # not what an initiator sends: counted, dropped
            self._bad_payloads += 1
            return
        current = self._known[index]
        if current is None or known[0] > current[0]:
            self._known[index] = known
            self._decide(node, index, delivery.received_at)

    def _answer(self, index: int) -> list[float] | None:
        """``emd/balance``: the newest totals this unit knows, ``[epoch, U, R, L]``."""
        known = self._known[index]
        return None if known is None else [float(known[0]), *known[1:]]

    def _ask(self, node: Node, index: int, now: float) -> None:
        """Ask a random neighbour for the totals when an epoch should have reached us.

        A unit knows the epochs' schedule (``start_s``, ``epoch_s``), as it
        knows a tariff's; the gossip misses units few views list, and a
        restarted unit heard nothing: either asks (seed 003: a node joins by
        contacting any one node). At most ``REDY_ASKS_MAX`` asks per epoch.
        """
        due = self._due_epoch(now)
        known = self._known[index]
        if due == 0 or (known is not None and known[0] >= due):
            return
        epoch, asks = self._asked[index]
        if epoch == due and asks >= REDY_ASKS_MAX:
            return
        peers = node.membership.sample(1)
        if not peers:
            return
        self._asked[index] = (due, asks + 1 if epoch == due else 1)
        self._asks += 1

        def on_result(result: CallResult) -> None:
            answer = _parse_answer(result.value) if result.ok else None
            current = self._known[index]
            if answer is None or (current is not None and answer[0] <= current[0]):
                return
            live = self._sim.node(node.node_id) if self._sim is not None else None
            if live is node:  # not a restarted incarnation's late answer
                self._answers += 1
                self._known[index] = answer
                self._decide(node, index, result.elapsed_s + now)

        node.call(peers[0], REDY_SERVICE, now=now, on_result=on_result)

    def _due_epoch(self, now: float) -> int:
        """The newest epoch whose totals every unit should have by ``now`` (0: none).

        The epoch's counts may take ``counts_max`` timeouts (at most the epoch),
        the gossip a second more; a unit that asks too early asks again at its
        next tick.
        """
        spec = self._spec
        settle_s = min(spec.counts_max * self._settle_s, spec.epoch_s) + _GOSSIP_S
        if now < spec.start_s + settle_s:
            return 0
        return 1 + math.floor((now - spec.start_s - settle_s) / spec.epoch_s)

    # -- the epochs ---------------------------------------------------------------

    def install(self, sim: Simulator) -> None:
        self._sim = sim
        spec = self._spec
        number = 0
        at_s = spec.start_s
        while at_s < self._duration_s:
            number += 1
            sim.schedule(at_s, partial(self._new_epoch, number))
            at_s = spec.start_s + number * spec.epoch_s
        count = math.floor(self._duration_s / spec.sample_interval_s + 1e-9)
        for k in range(count + 1):
            sim.schedule(k * spec.sample_interval_s, self._sample)

    def _new_epoch(self, number: int, now: float) -> None:
        sim = self._sim
        assert sim is not None
        node = sim.node(self._initiator)
        if node is None:  # the pacemaker is down: no epoch; units hold their actions
            self._epochs_missed += 1
            return
        epoch = _Epoch(number, now)
        self._epochs.append(epoch)
        if self._spec.estimator == "tree":
            self._query(node, epoch, now)
        else:
            self._restart_estimates(node, now)
        measure_s = min(now + self._spec.epoch_s, self._duration_s) - _MEASURE_EARLY_S
        sim.schedule(max(now, measure_s), lambda at: self._measure(epoch, at))

    def _query(self, node: Node, epoch: _Epoch, now: float) -> None:
        """The tree: sum every unit's state; gossip the best totals of the epoch's counts.

        A crash during a query drops the subtrees under the crashed units, and
        a sum over part of the grid is a sample of it: with spread readings a
        poor one. So the initiator counts again, while the epoch has time for
        it and up to ``counts_max`` times, when a count reached fewer than
        ``recount_below`` of the units its last gossiped count did.
        """
        spec = self._spec

        def on_result(result: AggregateResult) -> None:
            at = result.finished_at
            epoch.queries.append(
                {"contributors": result.contributors, "seconds": rounded(at - result.started_at)}
            )
            value = result.value
            if (
                isinstance(value, tuple | list)
                and len(value) == 3
                and result.contributors > epoch.best[0]
            ):
                epoch.best = (
                    result.contributors,
                    float(value[0]),
                    float(value[1]),
                    float(value[2]),
                )
            sim = self._sim
            if sim is None or sim.node(self._initiator) is not node:
                return  # the initiator failed since: its count is lost with it
            reference = self._reference if self._reference_node is node else 0
            enough = epoch.best[0] >= spec.recount_below * reference
            time_left = at + self._settle_s < epoch.at_s + spec.epoch_s
            if not enough and time_left and len(epoch.queries) < spec.counts_max:
                self._count(node, at, on_result)
                return
            contributors, *totals = epoch.best
            if not contributors:
                return
            self._reference, self._reference_node = contributors, node
            epoch.accepted = contributors
            payload = {
                "epoch": epoch.number,
                "imbalance_kw": totals[0],
                "raise_kw": totals[1],
                "lower_kw": totals[2],
                "units": contributors,
            }
            node.broadcast(payload, topic=self._topic, now=at)
            index = self._index(node.node_id)
            self._known[index] = (epoch.number, totals[0], totals[1], totals[2])
            self._decide(node, index, at)  # the origin knows them first

        self._count(node, now, on_result)

    def _count(self, node: Node, now: float, on_result: Callable[[AggregateResult], None]) -> None:
        node.aggregate("vector_sum", REDY_STATE, now=now, on_result=on_result, params={"length": 3})

    def _restart_estimates(self, node: Node, now: float) -> None:
        """Push-sum: a new epoch of the three estimates (new estimates after a restart)."""
        ids = self._estimate_ids
        if ids is None or any(node.estimate(i) is None for i in ids):
            self._estimate_ids = tuple(
                node.start_estimate("mean", reading, now=now, rounds=self._spec.rounds)
                for reading in REDY_READINGS
            )
            return
        for estimate_id in ids:
            node.restart_estimate(estimate_id, now=now)

    # -- the truth ------------------------------------------------------------------

    def _live(self) -> np.ndarray:
        sim = self._sim
        assert sim is not None
        is_up = sim.is_up
        return np.fromiter((is_up(i) for i in self._ids), dtype=bool, count=len(self._ids))

    def _state(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Live mask, uncontrolled net load, raise and lower of every unit now."""
        curtailable = self._output * self._factor(now)
        return (
            self._live(),
            self._load - curtailable,
            self._raise_load + curtailable,
            self._lower,
        )

    def _sample(self, now: float) -> None:
        live, net, raise_kw, lower_kw = self._state(now)
        action = np.clip(self._setpoint, -lower_kw, raise_kw)
        uncontrolled = float(net[live].sum())
        up, down = float(raise_kw[live].sum()), float(lower_kw[live].sum())
        imbalance = uncontrolled + float(action[live].sum())
        optimum = central_optimum_kw(uncontrolled, up, down)
        # No action leaves its unit's range, so nothing beats the optimum (gridmesh.grid).
        assert abs(imbalance) >= abs(optimum) - 1e-6 * (1.0 + up + down), (imbalance, optimum)
        if not self._time_s:
            self._start_flexibility = (up, down)
        self._time_s.append(now)
        self._imbalance_kw.append(imbalance)
        self._optimum_kw.append(optimum)
        self._uncontrolled_kw = uncontrolled

    def _measure(self, epoch: _Epoch, now: float) -> None:
        """What every live unit acts on as the epoch closes, against the truth then."""
        sim = self._sim
        assert sim is not None
        live, net, raise_kw, lower_kw = self._state(now)
        up = int(live.sum())
        truth = (float(net[live].sum()), float(raise_kw[live].sum()), float(lower_kw[live].sum()))
        share = balancing_share(*truth)
        share_errors: list[float] = []
        current = 0
        for index in np.flatnonzero(live).tolist():
            node = sim.node(self._ids[index])
            assert node is not None
            values = self._values(node, index)
            if values is None:
                continue
            share_errors.append(abs(balancing_share(*values) - share))
            known = self._known[index]
            if known is not None and known[0] == epoch.number:
                current += 1
        epoch.measure = {
            "measured_at_s": rounded(now),
            "units_up": up,
            "units_acting": len(share_errors),
            "share": rounded(share),
            "share_error": percentiles(share_errors),
        }
        if self._spec.estimator == "tree":
            epoch.measure["units_with_this_epoch"] = current

    # -- the report ---------------------------------------------------------------

    def report(self, sim: Simulator) -> dict[str, object]:
        spec = self._spec
        times = self._time_s
        imbalance = self._imbalance_kw
        start = imbalance[0] if imbalance else 0.0
        target = spec.target_share * abs(start)
        settled_at = next(
            (index for index, value in enumerate(imbalance) if abs(value) <= target), None
        )
        after = [abs(value) for value in imbalance[settled_at:]] if settled_at is not None else []
        excess = [
            abs(value) - abs(optimum)
            for value, optimum in zip(imbalance, self._optimum_kw, strict=True)
        ]
        kinds = {kind.value: 0 for kind in UnitKind}
        for unit in self._units:
            kinds[unit.kind.value] += 1
        start_up, start_down = self._start_flexibility
        redy: dict[str, object] = {
            "estimator": spec.estimator,
            "units": len(self._units),
            "units_up": int(self._live().sum()),
            "kinds": kinds,
            "initiator": self._initiator,
            "start_imbalance_kw": _kw(start),
            "start_raise_kw": _kw(start_up),
            "start_lower_kw": _kw(start_down),
            "target_kw": _kw(target),
            "settled_at_s": None if settled_at is None else rounded(times[settled_at]),
            "held": settled_at is not None and max(after) <= target,
            "max_after_settling_kw": _kw(max(after)) if after else None,
            "final_imbalance_kw": _kw(imbalance[-1]) if imbalance else None,
            "final_share_of_start": (
                rounded(abs(imbalance[-1]) / abs(start)) if imbalance and start else None
            ),
            "final_uncontrolled_kw": _kw(self._uncontrolled_kw) if imbalance else None,
            "final_centralized_optimum_kw": _kw(self._optimum_kw[-1]) if imbalance else None,
            "max_excess_over_optimum_after_settling_kw": (
                _kw(max(excess[settled_at:])) if settled_at is not None else None
            ),
            "epochs": [
                {
                    "epoch": epoch.number,
                    "at_s": rounded(epoch.at_s),
                    **(
                        {"counts": epoch.queries, "contributors": epoch.accepted}
                        if spec.estimator == "tree"
                        else {}
                    ),
                    **(epoch.measure or {}),
                }
                for epoch in self._epochs
            ],
            "epochs_missed": self._epochs_missed,
            "decisions": self._decisions,
            "bad_payloads": self._bad_payloads,
            "asks": self._asks,
            "answers": self._answers,
            "protocol_at_live_units": self._counters(sim),
            # Every message of the run (membership too) over the units: what balancing costs.
            "messages_per_unit": rounded(sim.messages_sent / max(1, len(self._units))),
        }
        return {
            "redy": redy,
            "imbalance": {
                "time_s": [rounded(t) for t in times],
                "imbalance_kw": [_kw(value) for value in imbalance],
                "centralized_optimum_kw": [_kw(value) for value in self._optimum_kw],
            },
        }

    def _counters(self, sim: Simulator) -> dict[str, int]:
        """The estimator's protocol counters, summed over the live units."""
        tree = self._spec.estimator == "tree"
        names = (
            ("delivered", "duplicates", "relayed")
            if tree
            else ("pushes", "replies", "resent", "abandoned", "stale")
        )
        prefix = "" if tree else "pushsum_"
        counters = dict.fromkeys(names, 0)
        for node_id in self._ids:
            node = sim.node(node_id)
            if node is None:
                continue
            stats = node.gossip.stats() if tree else node.pushsum.stats()
            for name in names:
                counters[name] += stats.get(f"{prefix}{name}", 0)
        return counters


def redy_topic(initiator: int) -> str:
    """Where the tree's initiator gossips the totals: under its own ``EMD/<id>/``, which
    an EMD's certificate lets it publish (docs/PKI.md)."""
    return f"EMD/{initiator}/REDY/BALANCE"


def _parse_balance(payload: object) -> _Known | None:
    """The totals an initiator gossips, checked; ``None`` if they are not that."""
    if not isinstance(payload, dict):
        return None
    epoch = payload.get("epoch")
    values = [payload.get(name) for name in ("imbalance_kw", "raise_kw", "lower_kw")]
    if type(epoch) is not int or epoch < 1:
        return None
    numbers: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        number = float(value)
        if not math.isfinite(number):
            return None
        numbers.append(number)
    if numbers[1] < 0.0 or numbers[2] < 0.0:
        return None
    return epoch, numbers[0], numbers[1], numbers[2]


def _parse_answer(value: object) -> _Known | None:
    """A neighbour's ``emd/balance`` answer, checked; ``None`` if it is not one."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    epoch = value[0]
    if isinstance(epoch, float) and epoch.is_integer():
        epoch = int(epoch)
    return _parse_balance(
        {"epoch": epoch, "imbalance_kw": value[1], "raise_kw": value[2], "lower_kw": value[3]}
    )


def _usable(estimate: Estimate | None, settle_rounds: int) -> float | None:
    """The value a unit acts on: this epoch's once settled, else the previous epoch's."""
    if estimate is None:
        return None
    if estimate.rounds >= settle_rounds and estimate.value is not None:
        return estimate.value
    return estimate.previous


def _kw(value: float) -> float:
    return round(value, _KW_DIGITS) + 0.0  # + 0.0: no -0.0 in the report
