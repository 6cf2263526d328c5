"""Scripted aggregation in a scenario: readings, tree queries, push-sum estimates.

The runner gives every node its readings (``_readings``), starts each
``[[aggregate]]`` query and ``[[estimate]]`` at its time from its origin, and
reports each one beside the **truth**: the same function applied centrally to
the readings of the nodes that were up when it started, in the query's
segment if it names one (for tree queries, by the function's own exact
monoid, lifting each reading with its node id as the nodes do, so "exact"
means equal bit for bit). A ``collect`` result holds up to ``limit`` pairs, so
its report entry holds their count, the cut and whether they equal the
truth's, not the pairs themselves.

A query's **cost** is counted on the wire, per query: the nodes send through
``CountingTransport``, which attributes each ``AGG_QUERY`` and ``AGG_REPLY``
to its query (the query's origin and id travel in both) and each ``PUSHSUM``
to its estimate. So concurrent queries, membership traffic and broadcasts do
not blur one another's cost, and a node *took part* in a query when it sent a
message of it (every node a query reaches replies, to its parent or with
"not your child").
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from gridmesh.node import Node
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.aggregation import DEFAULT_REGISTRY, AggregateResult, Collection
from gridmesh.scenarios._readings import Value, reading_table
from gridmesh.scenarios._report import rounded
from gridmesh.scenarios._schema import AggregateSpec, EstimateSpec, Scenario
from gridmesh.sim import Simulator
from gridmesh.wire import Envelope, Kind, encode

__all__ = [
    "CountingTransport",
    "EstimateRecord",
    "QueryRecord",
    "Readings",
    "aggregate_report",
    "estimate_report",
    "reading_equipper",
    "scenario_readings",
    "schedule_queries",
]

_AGGREGATION = frozenset({Kind.AGG_QUERY, Kind.AGG_REPLY})
_SIGNIFICANT_DIGITS = 6

Key = tuple[int, int]


class _Cost:
    """Messages and bytes one query or estimate caused, and who sent them."""

    __slots__ = ("by_node", "bytes", "messages")

    def __init__(self, node_count: int) -> None:
        self.messages = 0
        self.bytes = 0
        self.by_node = array("I", bytes(4 * (node_count + 1)))

    def summary(self, node_count: int) -> dict[str, object]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "messages_per_node": {
                "mean": rounded(self.messages / node_count),
                "max": max(self.by_node),
            },
        }


class CountingTransport:
    """The simulator as the nodes' ``Transport``, counting each query's messages."""

    __slots__ = ("_node_count", "_sim", "estimates", "queries")

    def __init__(self, sim: Simulator, node_count: int) -> None:
        self._sim = sim
        self._node_count = node_count
        self.queries: dict[Key, _Cost] = {}
        self.estimates: dict[Key, _Cost] = {}

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None:
        kind = message.kind
        if kind in _AGGREGATION:
            if kind is Kind.AGG_QUERY:
                key = (message.origin, message.message_id)
            else:
                key = _body_key(message.body)
            self._count(self.queries, key, source, peers, message)
        elif kind is Kind.PUSHSUM:
            self._count(self.estimates, _body_key(message.body), source, peers, message)
        self._sim.send(source, peers, message)

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        self._sim.send_datagram(source, peer, data)

    def multicast(self, source: int, message: Envelope) -> None:
        self._sim.multicast(source, message)

    def wake_at(self, node_id: int, when: float) -> None:
        self._sim.wake_at(node_id, when)

    def deliver(self, node_id: int, delivery: Delivery) -> None:
        self._sim.deliver(node_id, delivery)

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        return self._sim.peer(node_id, address, service, groups)

    def _count(
        self,
        costs: dict[Key, _Cost],
        key: Key,
        source: int,
        peers: Sequence[Peer],
        message: Envelope,
    ) -> None:
        cost = costs.get(key)
        if cost is None:
            cost = costs[key] = _Cost(self._node_count)
        count = len(peers)
        cost.messages += count
        cost.bytes += len(encode(message)) * count
        cost.by_node[source] += count


def _body_key(body: object) -> Key:
    # Our own nodes built these bodies: [origin, id, ...] (AGG_REPLY, PUSHSUM).
    assert isinstance(body, list) and len(body) >= 2
    origin, ident = body[0], body[1]
    assert isinstance(origin, int) and isinstance(ident, int)
    return (origin, ident)


#: Every reading's value by node id (index 0 unused; ``None``: the node has none).
Readings = dict[str, list[Value | None]]


def scenario_readings(scenario: Scenario, seed: int) -> Readings:
    """Draw every node's readings for this run (see ``_readings``)."""
    holders = {name: scenario.reading_holders(name) for name in scenario.readings}
    return reading_table(scenario.readings, holders, scenario.node_count, seed)


def reading_equipper(table: Readings) -> Callable[[Node], None] | None:
    """What gives a freshly built node its readings (``None`` when there are none)."""
    if not table:
        return None

    def equip(node: Node) -> None:
        node_id = node.node_id
        for name, column in table.items():
            value = column[node_id]
            if value is not None:
                node.set_reading(name, partial(_constant, value))

    return equip


def _constant(value: Value, now: float) -> Value:
    """A reading that does not change during the run."""
    return value


class QueryRecord:
    """One scripted tree query: what was asked, of whom, and what came back."""

    __slots__ = (
        "origin",
        "params",
        "query_id",
        "readers",
        "readers_at_result",
        "result",
        "spec",
        "up",
    )

    def __init__(self, spec: AggregateSpec, origin: int, params: dict[str, Any]) -> None:
        self.spec = spec
        self.origin = origin
        self.params = params  # what the query runs with (collect's bytes_max filled in)
        self.query_id: int | None = None  # None: the origin was down, nothing sent
        self.readers: list[int] = []  # nodes holding the reading, in the segment, up at at_s
        self.up = 0  # nodes up at at_s
        self.readers_at_result = 0
        self.result: AggregateResult | None = None


class EstimateRecord:
    """One scripted push-sum estimate."""

    __slots__ = ("estimate_id", "origin", "readers", "spec", "up")

    def __init__(self, spec: EstimateSpec, origin: int) -> None:
        self.spec = spec
        self.origin = origin
        self.estimate_id: int | None = None
        self.readers: list[int] = []  # nodes holding the reading, up at at_s
        self.up = 0  # nodes up at at_s


def schedule_queries(
    scenario: Scenario, sim: Simulator
) -> tuple[list[QueryRecord], list[EstimateRecord]]:
    """Schedule every ``[[aggregate]]`` and ``[[estimate]]``; their records fill as they run."""
    queries = [
        QueryRecord(spec, scenario.origin_id(spec), scenario.aggregate_params(spec))
        for spec in scenario.aggregate
    ]
    estimates = [EstimateRecord(spec, scenario.origin_id(spec)) for spec in scenario.estimate]
    holders = {name: scenario.reading_holders(name) for name in scenario.readings}
    node_count = scenario.node_count

    for query in queries:
        held = holders[query.spec.reading]
        if query.spec.segment is not None:
            members = set(scenario.group_ids(query.spec.segment))
            held = [node_id for node_id in held if node_id in members]

        def ask(now: float, query: QueryRecord = query, held: list[int] = held) -> None:
            node = sim.node(query.origin)
            if node is None:
                return
            spec = query.spec
            query.readers = [node_id for node_id in held if sim.is_up(node_id)]
            query.up = sum(1 for node_id in range(1, node_count + 1) if sim.is_up(node_id))

            def on_result(result: AggregateResult, query: QueryRecord = query) -> None:
                query.result = result
                query.readers_at_result = sum(1 for node_id in held if sim.is_up(node_id))

            query.query_id = node.aggregate(
                spec.function,
                spec.reading,
                now=now,
                on_result=on_result,
                params=query.params,
                fanout=spec.fanout,
                hops=spec.hops,
                timeout_s=spec.timeout_s,
                replies_min=spec.replies_min,
                segment=spec.segment,
            )

        sim.schedule(query.spec.at_s, ask)

    for estimate in estimates:

        def start(now: float, estimate: EstimateRecord = estimate) -> None:
            node = sim.node(estimate.origin)
            if node is None:
                return
            spec = estimate.spec
            if spec.reading:
                estimate.readers = [i for i in holders[spec.reading] if sim.is_up(i)]
            estimate.up = sum(1 for i in range(1, node_count + 1) if sim.is_up(i))
            estimate.estimate_id = node.start_estimate(
                spec.function, spec.reading, now=now, rounds=spec.rounds
            )

        sim.schedule(estimate.spec.at_s, start)
    return queries, estimates


def aggregate_report(
    scenario: Scenario,
    table: Readings,
    records: list[QueryRecord],
    transport: CountingTransport | None,
) -> list[dict[str, object]]:
    """The ``aggregates`` section: each query's value, truth, coverage and cost."""
    if not records:
        return []
    assert transport is not None
    node_count = scenario.node_count
    report: list[dict[str, object]] = []
    for record in records:
        spec = record.spec
        function = DEFAULT_REGISTRY.create(spec.function, record.params)
        column = table[spec.reading]
        partial = function.identity()
        for node_id in record.readers:
            partial = function.combine(partial, function.lift_from(node_id, column[node_id]))
        truth = function.finish(partial)
        result = record.result
        cost = None
        if record.query_id is not None:
            cost = transport.queries.get((record.origin, record.query_id))
        entry: dict[str, object] = {
            "at_s": spec.at_s,
            "origin": record.origin,
            "function": spec.function,
            "reading": spec.reading,
            "params": record.params,
            "segment": spec.segment,
            "sent": record.query_id is not None,
            "answered": result is not None,
            "nodes_up": record.up,
            "readers_up": len(record.readers),
            "readers_up_at_result": record.readers_at_result,
            "truth": _plain(truth),
        }
        if result is None:
            entry.update(value=None, exact=False, relative_error=None)
        else:
            entry.update(
                value=_plain(result.value),
                exact=result.value == truth and result.contributors == len(record.readers),
                relative_error=_relative_error(result.value, truth),
                contributors=result.contributors,
                missing=result.missing,
                declined=result.declined,
                complete=result.complete,
                fanout=result.fanout,
                coverage=rounded(result.contributors / len(record.readers))
                if record.readers
                else None,
                seconds=rounded(result.finished_at - result.started_at),
            )
        if cost is not None:
            entry["took_part"] = sum(1 for count in cost.by_node if count)
            entry.update(cost.summary(node_count))
        report.append(entry)
    return report


def estimate_report(
    scenario: Scenario,
    table: Readings,
    sim: Simulator,
    records: list[EstimateRecord],
    transport: CountingTransport | None,
) -> list[dict[str, object]]:
    """The ``estimates`` section: every live node's push-sum estimate against the truth."""
    if not records:
        return []
    assert transport is not None
    node_count = scenario.node_count
    report: list[dict[str, object]] = []
    for record in records:
        spec = record.spec
        truth: float | None = None
        if record.estimate_id is not None:
            if spec.function == "size":
                truth = float(record.up)
            else:
                column = table[spec.reading]
                values = [column[i] for i in record.readers]
                total = math.fsum(v for v in values if isinstance(v, float))
                if spec.function == "sum":
                    truth = total
                elif values:
                    truth = total / len(values)
        errors: list[float] = []
        no_value = 0
        origin_value: float | None = None
        estimate_id = record.estimate_id
        for node_id in range(1, node_count + 1):
            node = sim.node(node_id)
            if node is None or estimate_id is None:
                continue
            estimate = node.estimate(estimate_id)
            value = None if estimate is None else estimate.value
            if node_id == record.origin:
                origin_value = value
            if value is None or truth is None:
                no_value += 1
            else:
                errors.append(abs(value - truth) / abs(truth) if truth else abs(value))
        errors.sort()
        cost = None
        if estimate_id is not None:
            cost = transport.estimates.get((record.origin, estimate_id))
        entry: dict[str, object] = {
            "at_s": spec.at_s,
            "origin": record.origin,
            "function": spec.function,
            "reading": spec.reading,
            "started": estimate_id is not None,
            "truth": truth,
            "readers_up": len(record.readers) if spec.reading else None,
            "origin_value": origin_value,
            "nodes_with_value": len(errors),
            "nodes_without_value": no_value,
            "relative_error": {
                "p50": _rank(errors, 50),
                "p99": _rank(errors, 99),
                "max": _significant(errors[-1]) if errors else None,
            },
        }
        if cost is not None:
            entry.update(cost.summary(node_count))
        report.append(entry)
    return report


def _rank(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    return _significant(ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)])


def _significant(value: float) -> float:
    """Six significant digits: relative errors span many orders of magnitude."""
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _relative_error(value: object, truth: object) -> object:
    """``|value - truth| / |truth|``: a number, or one per element of a vector."""
    if isinstance(value, tuple) and isinstance(truth, tuple) and len(value) == len(truth):
        return [_relative_error(v, t) for v, t in zip(value, truth, strict=True)]
    if isinstance(value, bool) or isinstance(truth, bool):
        return None
    if not isinstance(value, int | float) or not isinstance(truth, int | float):
        return None
    difference = abs(value - truth)
    if truth == 0:
        return 0.0 if difference == 0 else None
    return _significant(difference / abs(truth))


def _plain(value: Any) -> Any:
    """A result as JSON holds it: tuples as lists, a histogram as its fields.

    A ``Collection`` is summarized (its pairs could fill a message): ``pairs``
    (how many), ``dropped``, ``cut``, ``truncated``.
    """
    if isinstance(value, Collection):
        return {
            "pairs": len(value.values),
            "dropped": value.dropped,
            "cut": value.cut,
            "truncated": value.truncated,
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return {field.name: _plain(getattr(value, field.name)) for field in fields}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value
