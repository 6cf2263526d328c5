"""Aggregation functions: the monoid laws (exactly), ground truths, and typed errors at every edge.

Partials are compared through ``fingerprint(encode(partial))``: the encoding is
canonical, and the fingerprint tells ``1`` from ``1.0`` and ``0.0`` from ``-0.0``,
which ``==`` does not.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridmesh.errors import LocalProtocolError, MalformedMessage, RemoteProtocolError
from gridmesh.protocols.aggregation import (
    COLLECT_BYTES_MAX,
    COLLECT_LIMIT_MAX,
    COLLECT_VECTOR_LENGTH_MAX,
    DEFAULT_REGISTRY,
    HISTOGRAM_BINS_MAX,
    PARTIAL_OVERHEAD_BYTES,
    TOP_K_MAX,
    VECTOR_LENGTH_MAX,
    AggregationFunction,
    Collected,
    Collection,
    ExactSum,
    FunctionRegistry,
    HistogramResult,
    Maximum,
    Number,
    builtin_registry,
)
from gridmesh.wire import UINT64_MAX, check_plain

LAWS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INTS = st.integers(-UINT64_MAX - 1, UINT64_MAX)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TIES = st.sampled_from([0, 0.0, -0.0, 1, 1.0, -1, -1.0, 2**53, 2.0**53, 5e-324])
NUMBERS = st.one_of(INTS, FLOATS, TIES)
HISTOGRAM_EDGES = [-10, -1, 0, 0.5, 1, 10, 1e6]
TOP_K = 3
VECTOR_LENGTH = 3
COLLECT_LIMIT = 4
COLLECT_BYTES = 64  # 42 bytes of entries: four small ones, or one vector of three floats
# Few distinct ids, so that a lying node's repeated id comes up; and 64-bit ones.
NODE_IDS = st.one_of(st.integers(1, 6), st.integers(1, UINT64_MAX))
READINGS = st.one_of(NUMBERS, st.lists(NUMBERS, min_size=1, max_size=3))

AnyFunction = AggregationFunction[Any, Any]


def fingerprint(thing: object) -> object:
    """A comparable form that keeps types and the sign of zero."""
    if isinstance(thing, list | tuple):
        return [fingerprint(item) for item in thing]
    return (type(thing).__name__, repr(thing))


def exact_sum(values: Sequence[Number]) -> Number:
    """The ground truth of a sum: an exact int, or the exact sum rounded once."""
    if all(type(value) is int for value in values):
        return sum(values)
    exact = sum(map(Fraction, values), Fraction(0))
    try:
        rounded = float(exact)
    except OverflowError:
        rounded = math.inf if exact > 0 else -math.inf
    if all(float(value) == value for value in values):  # math.fsum sees the same numbers
        with contextlib.suppress(OverflowError):  # fsum's intermediate overflow; ours is exact
            assert rounded == math.fsum(values), values
    return rounded


def exact_mean(values: Sequence[Number]) -> Number | None:
    if not values:
        return None
    total = exact_sum(values)
    return total / len(values)


def histogram_truth(values: Sequence[Number]) -> HistogramResult:
    """Counted the slow way, by scanning the bins."""
    edges = HISTOGRAM_EDGES
    counts = [0] * (len(edges) - 1)
    underflow = overflow = 0
    for value in values:
        if value < edges[0]:
            underflow += 1
        elif value >= edges[-1]:
            overflow += 1
        else:
            for i in range(len(counts)):
                if edges[i] <= value < edges[i + 1]:
                    counts[i] += 1
    return HistogramResult(tuple(map(float, edges)), tuple(counts), underflow, overflow)


def _tie_rank(number: Number) -> int:
    if type(number) is int:
        return 1
    return 0 if number == 0.0 and math.copysign(1.0, number) < 0.0 else 2


def _collect_order(entry: tuple[int, object]) -> tuple[object, ...]:
    """By node id; a number before a vector; by value, then ``-0.0 < int < float``."""
    node_id, value = entry
    if isinstance(value, tuple):
        return (node_id, 1, tuple((Fraction(item), _tie_rank(item)) for item in value))
    assert isinstance(value, int | float)
    return (node_id, 0, (Fraction(value), _tie_rank(value)))


def collect_truth(
    pairs: Sequence[tuple[int, object]],
    *,
    limit: int = COLLECT_LIMIT,
    bytes_max: int = COLLECT_BYTES,
) -> Collection:
    """Sorted; the first entry past the limit or the byte bound (sized by cbor2) sets the
    cut at its node id; the entries below the cut are kept, the others counted."""
    entries = sorted(
        ((node_id, tuple(value) if isinstance(value, list) else value) for node_id, value in pairs),
        key=_collect_order,
    )
    cut = None
    room = bytes_max - PARTIAL_OVERHEAD_BYTES
    for position, (node_id, value) in enumerate(entries):
        room -= len(cbor2.dumps([node_id, list(value) if isinstance(value, tuple) else value]))
        if position == limit or room < 0:
            cut = node_id
            break
    kept: tuple[Any, ...] = tuple(entry for entry in entries if cut is None or entry[0] < cut)
    return Collection(kept, len(pairs) - len(kept), cut)


@dataclass(frozen=True)
class Case:
    name: str
    params: Mapping[str, object]
    values: st.SearchStrategy[Any]
    truth: Callable[[list[Any]], object]
    exact_type: bool = True  # the truth also fixes the result's type (not so for ties)

    @property
    def function(self) -> AnyFunction:
        return DEFAULT_REGISTRY.create(self.name, self.params)


CASES = [
    Case("sum", {}, NUMBERS, exact_sum),
    Case("count", {}, NUMBERS, len),
    Case("min", {}, NUMBERS, lambda values: min(values) if values else None, exact_type=False),
    Case("max", {}, NUMBERS, lambda values: max(values) if values else None, exact_type=False),
    Case("mean", {}, NUMBERS, exact_mean),
    Case(
        "histogram",
        {"edges": HISTOGRAM_EDGES},
        st.one_of(NUMBERS, st.sampled_from(HISTOGRAM_EDGES)),
        histogram_truth,
    ),
    Case(
        "top_k",
        {"k": TOP_K},
        NUMBERS,
        lambda values: tuple(sorted(values, reverse=True)[:TOP_K]),
        exact_type=False,
    ),
    Case(
        "vector_sum",
        {"length": VECTOR_LENGTH},
        st.lists(NUMBERS, min_size=VECTOR_LENGTH, max_size=VECTOR_LENGTH),
        lambda values: (
            tuple(exact_sum(column) for column in zip(*values, strict=True))
            if values
            else (0,) * VECTOR_LENGTH
        ),
    ),
    Case(
        "collect",
        {"limit": COLLECT_LIMIT, "bytes_max": COLLECT_BYTES},
        st.tuples(NODE_IDS, READINGS),
        collect_truth,
    ),
]
BY_NAME = {case.name: case for case in CASES}
cases = pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])


def combine_along_a_tree(
    function: AnyFunction, values: Sequence[object], draw: st.DrawFn
) -> object:
    """Lift ``values`` and combine them along a drawn tree: splits, swaps, wire hops."""
    if not values:
        partial = function.identity()
    elif len(values) == 1:
        partial = function.lift(values[0])
    else:
        cut = draw(st.integers(1, len(values) - 1))
        left = combine_along_a_tree(function, values[:cut], draw)
        right = combine_along_a_tree(function, values[cut:], draw)
        if draw(st.booleans()):
            left, right = right, left
        partial = function.combine(left, right)
    if draw(st.booleans()):  # this partial crossed the wire to a parent
        partial = function.decode(cbor2.loads(cbor2.dumps(function.encode(partial))))
    return partial


@st.composite
def partials(draw: st.DrawFn, case: Case) -> object:
    values = draw(st.lists(case.values, max_size=8))
    return combine_along_a_tree(case.function, values, draw)


def same_partial(function: AnyFunction, a: object, b: object) -> None:
    assert fingerprint(function.encode(a)) == fingerprint(function.encode(b))


# -- the laws -----------------------------------------------------------------------------


@cases
@LAWS
@given(data=st.data())
def test_combine_is_associative(case: Case, data: st.DataObject) -> None:
    function = case.function
    a, b, c = (data.draw(partials(case)) for _ in range(3))
    left = function.combine(function.combine(a, b), c)
    right = function.combine(a, function.combine(b, c))
    same_partial(function, left, right)
    assert fingerprint(function.finish(left)) == fingerprint(function.finish(right))


@cases
@LAWS
@given(data=st.data())
def test_combine_is_commutative(case: Case, data: st.DataObject) -> None:
    function = case.function
    a, b = data.draw(partials(case)), data.draw(partials(case))
    same_partial(function, function.combine(a, b), function.combine(b, a))


@cases
@LAWS
@given(data=st.data())
def test_identity_is_neutral(case: Case, data: st.DataObject) -> None:
    function = case.function
    a = data.draw(partials(case))
    same_partial(function, function.combine(a, function.identity()), a)
    same_partial(function, function.combine(function.identity(), a), a)


@cases
@LAWS
@given(data=st.data())
def test_any_tree_and_order_gives_the_ground_truth(case: Case, data: st.DataObject) -> None:
    function = case.function
    values = data.draw(st.lists(case.values, max_size=12))
    shuffled = data.draw(st.permutations(values))
    result = function.finish(combine_along_a_tree(function, values, data.draw))
    other = function.finish(combine_along_a_tree(function, shuffled, data.draw))
    assert fingerprint(result) == fingerprint(other)  # bit for bit, types included
    truth = case.truth(values)
    if case.exact_type:
        assert fingerprint(result) == fingerprint(truth)
    else:  # ties between 1 and 1.0 are the function's to break; the values must agree
        assert result == truth


@pytest.mark.parametrize("name", ["min", "max", "top_k"])
@LAWS
@given(values=st.lists(TIES, min_size=1, max_size=8), data=st.data())
def test_ties_between_equal_numbers_break_one_way_in_any_order(
    name: str, values: list[Number], data: st.DataObject
) -> None:
    function = BY_NAME[name].function  # 1 == 1.0 and 0 == -0.0, yet one answer
    shuffled = data.draw(st.permutations(values))
    first = function.finish(combine_along_a_tree(function, values, data.draw))
    second = function.finish(combine_along_a_tree(function, shuffled, data.draw))
    assert fingerprint(first) == fingerprint(second)


@cases
@LAWS
@given(data=st.data())
def test_encoding_round_trips_through_cbor(case: Case, data: st.DataObject) -> None:
    function = case.function
    partial = data.draw(partials(case))
    wire = function.encode(partial)
    check_plain(wire)  # plain data, 64-bit integers: the envelope can carry it
    back = function.decode(cbor2.loads(cbor2.dumps(wire)))
    assert fingerprint(function.encode(back)) == fingerprint(wire)
    assert fingerprint(function.finish(back)) == fingerprint(function.finish(partial))


def plain_data() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        INTS,
        st.integers(),
        st.floats(),
        st.binary(max_size=12),
        st.text(max_size=4),
    )
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=9), max_leaves=24)


@st.composite
def mutated_encodings(draw: st.DrawFn, case: Case) -> object:
    """A valid encoding with one part replaced, removed or duplicated."""

    def mutate(wire: object) -> object:
        if isinstance(wire, list) and wire and draw(st.booleans()):
            i = draw(st.integers(0, len(wire) - 1))
            action = draw(st.sampled_from(["descend", "drop", "repeat"]))
            if action == "descend":
                return [*wire[:i], mutate(wire[i]), *wire[i + 1 :]]
            if action == "drop":
                return wire[:i] + wire[i + 1 :]
            return [*wire, wire[i]]
        return draw(plain_data())

    return mutate(case.function.encode(draw(partials(case))))


@cases
@LAWS
@given(data=st.data())
def test_decoding_hostile_partials_raises_only_malformed_message(
    case: Case, data: st.DataObject
) -> None:
    function = case.function
    wire = data.draw(st.one_of(plain_data(), mutated_encodings(case)))
    try:
        partial = function.decode(wire)
    except MalformedMessage as exc:
        assert isinstance(exc, RemoteProtocolError)
        assert exc.field is not None and exc.field.startswith("partial")
        return
    again = function.decode(cbor2.loads(cbor2.dumps(function.encode(partial))))
    same_partial(function, again, partial)
    function.finish(function.combine(partial, partial))


# -- exact sums ---------------------------------------------------------------------------


def test_float_sums_are_exact_where_plain_addition_is_not() -> None:
    total = DEFAULT_REGISTRY.create("sum")
    one, big, minus_big = total.lift(1.0), total.lift(1e16), total.lift(-1e16)
    assert (1.0 + 1e16) - 1e16 != 1.0 + (1e16 - 1e16)  # the problem
    assert total.finish(total.combine(total.combine(one, big), minus_big)) == 1.0
    assert total.finish(total.combine(one, total.combine(big, minus_big))) == 1.0
    tenths = total.combine_all([total.lift(0.1)] * 10)
    assert total.finish(tenths) == math.fsum([0.1] * 10) == 1.0 != sum([0.1] * 10)


@LAWS
@given(values=st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=30), data=st.data())
def test_float_sum_equals_math_fsum(values: list[float], data: st.DataObject) -> None:
    total = DEFAULT_REGISTRY.create("sum")
    result = total.finish(combine_along_a_tree(total, values, data.draw))
    assert type(result) is float and result == math.fsum(values)


def test_integer_sums_stay_exact_integers_past_two_to_the_53() -> None:
    total = DEFAULT_REGISTRY.create("sum")
    result = total.finish(total.combine_all(map(total.lift, [2**53, 1, 1, UINT64_MAX] * 3)))
    assert result == 3 * (2**53 + 2 + UINT64_MAX) and type(result) is int
    assert total.finish(total.identity()) == 0 and type(total.finish(total.identity())) is int


def test_one_float_makes_the_sum_a_float() -> None:
    total = DEFAULT_REGISTRY.create("sum")
    result = total.finish(total.combine(total.lift(2), total.lift(0.0)))
    assert result == 2.0 and type(result) is float


def test_sums_beyond_the_float_range_round_to_infinity_and_back_is_exact() -> None:
    total = DEFAULT_REGISTRY.create("sum")
    largest = 1.7976931348623157e308
    assert total.finish(total.combine_all([total.lift(largest)] * 2)) == math.inf
    assert total.finish(total.combine_all([total.lift(-largest)] * 2)) == -math.inf
    # math.fsum raises on the intermediate overflow; the exact sum does not overflow
    assert total.finish(total.combine_all(map(total.lift, [largest, largest, -largest]))) == (
        largest
    )


def test_mean_divides_the_exact_sum() -> None:
    mean = DEFAULT_REGISTRY.create("mean")
    assert mean.finish(mean.identity()) is None
    assert mean.finish(mean.combine_all(map(mean.lift, [1, 2, 4]))) == 7 / 3
    values = [1e16, 1.0, -1e16, 3.0]
    assert mean.finish(mean.combine_all(map(mean.lift, values))) == 1.0


def test_partials_stay_bounded() -> None:
    total = DEFAULT_REGISTRY.create("sum")
    huge = total.combine_all([total.lift(1.7976931348623157e308), total.lift(5e-324)] * 2000)
    assert len(cbor2.dumps(total.encode(huge))) < 300
    top = DEFAULT_REGISTRY.create("top_k", {"k": 2})
    assert len(top.finish(top.combine_all(map(top.lift, range(100))))) == 2
    energy = DEFAULT_REGISTRY.create("vector_sum", {"length": 3})
    night = energy.combine_all(energy.lift([1.25, 0.5, 3.1]) for _ in range(1000))
    assert len(cbor2.dumps(energy.encode(night))) < 60
    assert energy.finish(night) == (1250.0, 500.0, math.fsum([3.1] * 1000))


def test_exact_sum_wire_form_is_readable() -> None:
    assert ExactSum.of(7).to_wire() == 7
    assert ExactSum.of(1.5).to_wire() == [3, -1]
    assert ExactSum(has_float=True).to_wire() == [0, 0]
    assert isinstance((ExactSum.of(UINT64_MAX) + ExactSum.of(UINT64_MAX)).to_wire(), bytes)


# -- the other built-ins ------------------------------------------------------------------


def test_min_and_max_of_nothing_are_none_and_ties_break_one_way() -> None:
    low, high = DEFAULT_REGISTRY.create("min"), DEFAULT_REGISTRY.create("max")
    assert low.finish(low.identity()) is None and high.finish(high.identity()) is None
    for order in ([0, -0.0, 0.0], [0.0, 0, -0.0], [-0.0, 0.0, 0]):
        assert repr(low.finish(low.combine_all(map(low.lift, order)))) == "-0.0"
        assert repr(high.finish(high.combine_all(map(high.lift, order)))) == "0.0"
    assert repr(low.finish(low.combine(low.lift(1.0), low.lift(1)))) == "1"


def test_count_reports_zero_for_no_values() -> None:
    count = DEFAULT_REGISTRY.create("count")
    assert count.finish(count.identity()) == 0
    assert count.finish(count.combine_all(map(count.lift, [1, 2.5, -3]))) == 3


def test_histogram_bins_are_half_open_with_underflow_and_overflow() -> None:
    histogram = DEFAULT_REGISTRY.create("histogram", {"edges": [0, 1, 2]})
    result = histogram.finish(histogram.combine_all(map(histogram.lift, [-1, 0, 0.5, 1, 2, 3])))
    assert result == HistogramResult((0.0, 1.0, 2.0), (2, 1), underflow=1, overflow=2)
    assert result.total == 6


@LAWS
@given(
    edges=st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20, unique=True).map(sorted),
    values=st.lists(NUMBERS, max_size=20),
)
def test_histogram_matches_counting_by_hand_for_any_edges(
    edges: list[float], values: list[Number]
) -> None:
    histogram = DEFAULT_REGISTRY.create("histogram", {"edges": edges})
    result = histogram.finish(histogram.combine_all(map(histogram.lift, values)))
    for i, count in enumerate(result.counts):
        assert count == sum(edges[i] <= value < edges[i + 1] for value in values)
    assert result.underflow == sum(value < edges[0] for value in values)
    assert result.overflow == sum(value >= edges[-1] for value in values)


def test_top_k_keeps_the_k_largest_with_repeats() -> None:
    top = DEFAULT_REGISTRY.create("top_k", {"k": 3})
    assert top.finish(top.combine_all(map(top.lift, [4, 9, 1, 9, 7, 2]))) == (9, 9, 7)
    assert top.finish(top.identity()) == ()


def test_vector_sum_adds_the_three_night_periods() -> None:
    need = DEFAULT_REGISTRY.create("vector_sum", {"length": 3})
    homes = [[2.5, 1.0, 0.25], [3, 1, 0], [0.5, 0.5, 0.75]]
    assert need.finish(need.combine_all(map(need.lift, homes))) == (6.0, 2.5, 1.0)


def test_collect_keeps_the_lowest_node_ids_and_counts_the_rest() -> None:
    collect = DEFAULT_REGISTRY.create("collect", {"limit": 3})
    partials = [collect.lift((node_id, node_id * 1.5)) for node_id in (9, 4, 7, 1, 10, 2, 5)]
    result = collect.finish(collect.combine_all(partials))
    assert result == Collection(((1, 1.5), (2, 3.0), (4, 6.0)), dropped=4, cut=5)
    assert result.truncated
    assert collect.finish(collect.identity()) == Collection((), 0)
    assert not collect.finish(collect.identity()).truncated


def test_collect_lift_from_names_the_node_and_vectors_come_back_as_tuples() -> None:
    collect = DEFAULT_REGISTRY.create("collect")
    partial = collect.combine(collect.lift_from(8, [230.1, -0.5]), collect.lift_from(3, 229))
    assert collect.finish(partial).values == ((3, 229), (8, (230.1, -0.5)))
    assert collect.encode(partial) == [0, None, [[3, 229], [8, [230.1, -0.5]]]]
    total = DEFAULT_REGISTRY.create("sum")  # the other functions ignore who lifts
    assert total.finish(total.lift_from(8, 2.5)) == 2.5


def test_a_repeated_node_id_is_kept_twice_not_resolved() -> None:
    collect = DEFAULT_REGISTRY.create("collect")
    partial = collect.combine_all(
        [collect.lift((5, 1.0)), collect.lift((5, 1)), collect.lift((5, 1))]
    )
    assert fingerprint(collect.finish(partial).values) == fingerprint([[5, 1], [5, 1], [5, 1.0]])


def test_a_reading_too_large_for_the_byte_bound_is_dropped_at_once() -> None:
    collect = DEFAULT_REGISTRY.create("collect", {"bytes_max": 64})
    vector = [0.5] * 5  # 1 + 1 + 1 + 45 bytes: more than 64 - 22
    assert collect.lift((7, vector)) == Collected((), dropped=1, cut=7)
    assert collect.lift((7, vector[:4])) == Collected(((7, (0.5,) * 4),))


def test_a_cut_remembered_keeps_a_higher_entry_from_slipping_in() -> None:
    # What Hypothesis found when partials forgot their cut: node 2's vector is cut
    # from one part; node 3's small entry would then fit beside node 1's in the
    # union, where the walk over all three entries never admits it.
    collect = DEFAULT_REGISTRY.create("collect", {"bytes_max": 64})  # 42 bytes of entries
    one, two, three = (1, [2**32] * 3), (2, [2**32] * 3), (3, 0)  # 30, 30 and 3 bytes
    part = collect.combine(collect.lift(one), collect.lift(two))
    assert part == Collected(((1, (2**32,) * 3),), dropped=1, cut=2)
    whole = collect.combine(part, collect.lift(three))
    assert whole == Collected(((1, (2**32,) * 3),), dropped=2, cut=2)
    assert whole == collect.combine(
        collect.lift(one), collect.combine_all(map(collect.lift, [three, two]))
    )


def test_collect_dropped_counts_stop_at_the_wire_maximum() -> None:
    collect = DEFAULT_REGISTRY.create("collect", {"limit": 1})
    full = collect.decode([UINT64_MAX, 2, [[1, 1]]])
    assert collect.combine(full, collect.lift((3, 2))) == Collected(((1, 1),), UINT64_MAX, 2)


@LAWS
@given(
    entries=st.lists(st.tuples(NODE_IDS, READINGS), max_size=40),
    limit=st.integers(1, 50),
    bytes_max=st.integers(64, 700),
)
def test_collect_partials_stay_within_their_bounds_on_the_wire(
    entries: list[tuple[int, object]], limit: int, bytes_max: int
) -> None:
    collect = DEFAULT_REGISTRY.create("collect", {"limit": limit, "bytes_max": bytes_max})
    partial = collect.combine_all(map(collect.lift, entries))
    assert len(partial.entries) <= limit
    assert len(partial.entries) + partial.dropped == len(entries)  # nothing lost silently
    assert len(cbor2.dumps(collect.encode(partial))) <= bytes_max
    assert collect.finish(partial) == collect_truth(entries, limit=limit, bytes_max=bytes_max)


# -- bad values, bad parameters, bad partials ---------------------------------------------

BAD_NUMBERS = [True, False, math.nan, math.inf, -math.inf, "1", None, b"1", 2**64, -(2**64) - 1]


@cases
@pytest.mark.parametrize("value", [*BAD_NUMBERS, [1, 2, 3], 1j], ids=repr)
def test_lifting_a_bad_value_is_a_local_protocol_error(case: Case, value: object) -> None:
    if case.name == "vector_sum" and value == [1, 2, 3]:
        value = [1, 2, math.nan]
    with pytest.raises(LocalProtocolError):
        case.function.lift(value)


@pytest.mark.parametrize(
    "value",
    [[1, 2], [1, 2, 3, 4], (1, 2, True), "abc", 5, None, [1, 2, "3"], [1, 2, 2**70]],
    ids=repr,
)
def test_lifting_a_bad_vector_is_a_local_protocol_error(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        DEFAULT_REGISTRY.create("vector_sum", {"length": 3}).lift(value)


@pytest.mark.parametrize(
    "pair",
    [
        *[(0, 1), (2**64, 1), (True, 1), (1.0, 1), (1, True), (1, math.nan), (1, None)],
        *[(1, "x"), (1, []), (1, [1] * 65), (1, [1, math.inf]), (1,), (1, 2, 3)],
    ],
    ids=repr,
)
def test_lifting_a_bad_pair_into_collect_is_a_local_protocol_error(pair: object) -> None:
    with pytest.raises(LocalProtocolError):
        DEFAULT_REGISTRY.create("collect").lift(pair)


BAD_PARAMS = [
    ("sum", {"x": 1}),
    ("count", {"k": 3}),
    ("mean", {"length": 3}),
    ("histogram", {}),
    ("histogram", {"edges": [1]}),
    ("histogram", {"edges": [1, 1]}),
    ("histogram", {"edges": [2, 1]}),
    ("histogram", {"edges": [0, math.nan]}),
    ("histogram", {"edges": [0, math.inf]}),
    ("histogram", {"edges": [0, True]}),
    ("histogram", {"edges": [0, "1"]}),
    ("histogram", {"edges": "01"}),
    ("histogram", {"edges": [0, 2**1100]}),
    ("histogram", {"edges": list(range(HISTOGRAM_BINS_MAX + 2))}),
    ("histogram", {"edges": [0, 1], "bins": 4}),
    ("top_k", {}),
    ("top_k", {"k": 0}),
    ("top_k", {"k": TOP_K_MAX + 1}),
    ("top_k", {"k": True}),
    ("top_k", {"k": 2.0}),
    ("top_k", {"k": "3"}),
    ("vector_sum", {"length": 0}),
    ("vector_sum", {"length": VECTOR_LENGTH_MAX + 1}),
    ("vector_sum", {"length": None}),
    ("collect", {"limit": 0}),
    ("collect", {"limit": COLLECT_LIMIT_MAX + 1}),
    ("collect", {"limit": 2.0}),
    ("collect", {"bytes_max": 63}),
    ("collect", {"bytes_max": COLLECT_BYTES_MAX + 1}),
    ("collect", {"limit": 3, "segment": "feeder-7"}),
    ("no_such_function", {}),
]


@pytest.mark.parametrize(("name", "params"), BAD_PARAMS, ids=repr)
def test_bad_parameters_are_refused_locally_and_from_peers(
    name: str, params: dict[str, object]
) -> None:
    with pytest.raises(LocalProtocolError):
        DEFAULT_REGISTRY.create(name, params)
    with pytest.raises(MalformedMessage) as raised:
        DEFAULT_REGISTRY.create_from_wire(name, params)
    assert raised.value.field == ("function" if name == "no_such_function" else "params")


def test_the_largest_allowed_parameters_are_accepted() -> None:
    edges = list(range(HISTOGRAM_BINS_MAX + 1))
    assert len(DEFAULT_REGISTRY.create("histogram", {"edges": edges}).identity()) == 1026
    assert DEFAULT_REGISTRY.create("top_k", {"k": TOP_K_MAX}).identity() == ()
    vector = DEFAULT_REGISTRY.create_from_wire("vector_sum", {"length": VECTOR_LENGTH_MAX})
    assert len(vector.identity()) == VECTOR_LENGTH_MAX
    widest = {"limit": COLLECT_LIMIT_MAX, "bytes_max": COLLECT_BYTES_MAX}
    assert DEFAULT_REGISTRY.create_from_wire("collect", widest).identity() == Collected()


def nested(depth: int) -> object:
    return 1 if depth == 0 else [nested(depth - 1)]


@pytest.mark.parametrize("params", [[("k", 3)], "k=3", {"k": object()}, {1: 3}, {"k": nested(20)}])
def test_parameters_that_cannot_travel_are_refused(params: Any) -> None:
    with pytest.raises(LocalProtocolError):
        DEFAULT_REGISTRY.create("top_k", params)
    with pytest.raises(MalformedMessage):
        DEFAULT_REGISTRY.create_from_wire("top_k", params)


@pytest.mark.parametrize("name", [None, 3, b"sum", ["sum"]])
def test_a_peer_naming_no_function_is_malformed(name: object) -> None:
    with pytest.raises(MalformedMessage):
        DEFAULT_REGISTRY.create_from_wire(name, {})


SMALL = {"limit": 2, "bytes_max": 64}
MALFORMED = [
    ("sum", {}, ["1", True, None, 1.5, math.nan, [1], [1, 2, 3], [2, 0], [0, 3], [1, True]]),
    ("sum", {}, [[1, -1075], [1, 1088], [math.nan, 0], b"\x00\x01", b"\x7f" * 300, 2**65]),
    ("sum", {}, [(1).to_bytes(9, "big"), [b"\x00" * 8 + b"\x03", 0], [3, 2.0]]),
    ("count", {}, [-1, UINT64_MAX + 1, True, 1.0, None, "3", [1]]),
    ("min", {}, [math.nan, math.inf, True, "x", [1], UINT64_MAX + 1, b"\x01"]),
    ("max", {}, [-math.inf, False, {"a": 1}]),
    ("mean", {}, [[1], [0, 5], [0, [1, 0]], [-1, 0], [True, 0], [1, 2**64 - 1, 0], None]),
    ("mean", {}, [[1, [1, 1025]], [1, (2**1030).to_bytes(129, "big", signed=True)], "11"]),
    ("histogram", {"edges": [0, 1, 2]}, [[0, 0, 0], [0, 0, 0, -1], [0, 0, 0, 1.0]]),
    ("histogram", {"edges": [0, 1, 2]}, [[0] * 5000, "0000", [0, 0, 0, True], None, {}]),
    ("top_k", {"k": 2}, [[1, 2, 3], [math.nan], [1, "a"], 5, [0] * 100_000, [None], [[1]]]),
    ("vector_sum", {"length": 3}, [[0, 0], [0, 0, [2, 0]], [0] * 2000, [0, 0, math.nan], 0]),
    ("collect", SMALL, [[0, None], [0, None, [], 1], [-1, None, []], [True, None, []], None]),
    ("collect", SMALL, [[0, None, {}], [0, 0, []], [1, None, []], [0, 5, []], [1, 1.0, []]]),
    ("collect", SMALL, [[0, None, [[1, 1]] * 3], [UINT64_MAX + 1, 9, []]]),  # over the limit
    ("collect", SMALL, [[0, None, [[2, 1], [1, 1]]], [0, None, [[1, 1.0], [1, 1]]]]),  # order
    ("collect", SMALL, [[0, None, [[1, 0.0], [1, -0.0]]], [0, None, [[1, [2]], [1, 3]]]]),
    ("collect", SMALL, [[0, None, [[0, 1]]], [0, None, [[2**64, 1]]], [0, None, [[1.0, 1]]]]),
    ("collect", SMALL, [[0, None, [[1, math.nan]]], [0, None, [[1, True]]], [0, None, [[1]]]]),
    ("collect", SMALL, [[0, None, [[1, []]]], [0, None, [[1, "x"]]], [0, None, [[1, 1, 1]]]]),
    ("collect", SMALL, [[0, None, [[1, [[1]]]]], [1, 3, [[3, 1]]], [1, 3, [[1, 1], [4, 1]]]]),
    ("collect", SMALL, [[0, None, [[1, [0.5] * 3], [2, [1.5, 1.5]]]]]),  # 30 + 21 > 64 - 22
    ("collect", {"limit": 4096}, [[0, None, [[1, [1] * (COLLECT_VECTOR_LENGTH_MAX + 1)]]]]),
]


@pytest.mark.parametrize(
    ("name", "params", "wire"),
    [(name, params, wire) for name, params, wires in MALFORMED for wire in wires],
    ids=lambda thing: repr(thing)[:40],
)
def test_malformed_partials_are_refused(name: str, params: dict[str, object], wire: object) -> None:
    with pytest.raises(MalformedMessage) as raised:
        DEFAULT_REGISTRY.create(name, params).decode(wire)
    assert raised.value.field is not None and raised.value.field.startswith("partial")


# -- the registry -------------------------------------------------------------------------


def test_the_default_registry_holds_the_built_ins() -> None:
    assert set(DEFAULT_REGISTRY.names()) >= set(BY_NAME)
    assert builtin_registry().names() == tuple(sorted(BY_NAME))


def test_applications_register_their_own_functions_in_their_registry() -> None:
    registry = builtin_registry()
    registry.register("acme.peak_kw", lambda params: Maximum())
    peak = registry.create("acme.peak_kw")
    assert peak.finish(peak.combine_all(map(peak.lift, [3.5, 7, 2]))) == 7
    assert "acme.peak_kw" in registry
    assert "acme.peak_kw" not in builtin_registry() and "acme.peak_kw" not in DEFAULT_REGISTRY
    assert "acme.peak_kw" in registry.copy()


@pytest.mark.parametrize(
    "name", ["sum", "", "Sum", "1x", "a b", "a..b", "a.", "é", "x" * 65, None, 3], ids=repr
)
def test_registering_a_taken_or_bad_name_is_refused(name: Any) -> None:
    registry = builtin_registry()
    with pytest.raises(LocalProtocolError):
        registry.register(name, lambda params: Maximum())


def test_a_factory_must_be_callable_and_build_a_function() -> None:
    registry = FunctionRegistry()
    with pytest.raises(LocalProtocolError):
        registry.register("broken", "not callable")  # type: ignore[arg-type]
    registry.register("junk", lambda params: "not a function")  # type: ignore[arg-type,return-value]
    with pytest.raises(LocalProtocolError):
        registry.create("junk")


def test_a_factory_raising_value_error_is_a_local_protocol_error() -> None:
    def picky(params: Mapping[str, object]) -> Maximum:
        raise ValueError("no")

    registry = FunctionRegistry()
    registry.register("picky", picky)
    with pytest.raises(LocalProtocolError):
        registry.create("picky")
    with pytest.raises(MalformedMessage):
        registry.create_from_wire("picky", {})
