"""Aggregation functions: what a query may compute, and how partial results combine.

Theory of operation
-------------------
**No code travels.** A query names its function and gives small parameters
(plain data: ``{"edges": [0, 1, 5]}``, ``{"k": 10}``). Every node looks the name
up in its ``FunctionRegistry`` and builds the function from its own code, so a
peer can choose *which* function runs, never *what* runs. A node that does not
know the name, or finds the parameters invalid, cannot take part. The built-ins
live in ``DEFAULT_REGISTRY``; an application registers its own under a name of
its own (``"acme.peak_hour"``) on every node that should answer. The registry
is ``_registry``; this module holds the functions' contract and the built-ins
but ``collect`` (``_collect``).

**Partials** (seed 000: replies travel back along the implicit tree and are
combined level by level). A function is a commutative monoid over *partials*:

* ``lift(value)`` turns one node's reading into a partial, and is where a local
  value is validated; tree aggregation calls ``lift_from(node_id, value)``,
  which is ``lift(value)`` except for ``collect`` (``_collect``), whose
  partial keeps every reading with its node id;
* ``combine(a, b)`` merges two partials; ``identity()`` is the partial of no
  values at all, what a node with nothing to report sends;
* ``finish(partial)`` turns the root's partial into the result;
* ``encode``/``decode`` carry a partial between nodes as plain data (see
  ``gridmesh.wire``); ``decode`` treats its input as hostile.

The rules that never bend: ``combine`` is associative and commutative and
``identity()`` is neutral, *exactly*. The partial of a set of values is one
value, bit for bit, whatever the shape of the tree, the order replies arrived
in or the retries on the way; so the result is too. Ties are broken by one total
order on numbers (by value, then ``-0.0 < int < float``), so even ``min(1, 1.0)``
has one answer.

**Exact sums.** Float addition is not associative: ``(1.0 + 1e16) - 1e16`` is
``0.0`` but ``1.0 + (1e16 - 1e16)`` is ``1.0``. Every finite double is an integer
multiple of 2**-1074, so ``ExactSum`` keeps a sum of doubles as one Python
integer, the sum times 2**1074 (Kulisch's long accumulator; U. Kulisch, *Computer
Arithmetic and Validity*, 2013, ch. 8), and ``combine`` is integer addition. We
prefer it to Shewchuk's non-overlapping float partials (the algorithm behind
``math.fsum``) because the integer is *canonical*: equal sums are equal partials,
not merely partials that finish alike, and nothing can overflow mid-way.
``finish`` rounds once, correctly (int true division rounds correctly), which is
what ``math.fsum`` returns: the result equals ``math.fsum`` of all the values
wherever that is defined (and every int is exactly a float; ``fsum`` rounds
larger ones first). Where ``fsum`` would raise (an intermediate overflow),
the exact sum is still returned, and a sum beyond the float range is ``±inf``,
as IEEE round-to-nearest has it. A sum no float touched finishes as an exact
``int``. ``mean`` is that sum divided by the count: ``statistics.fmean`` for
floats, the correctly rounded quotient for ints.

**Limits** (bounded everything). A value is an ``int`` in the wire's 64-bit
range or a finite ``float``; never a ``bool``. At most ``HISTOGRAM_BINS_MAX``
bins, ``TOP_K_MAX`` kept values, ``VECTOR_LENGTH_MAX`` vector elements; a count
is at most ``UINT64_MAX``, a sum's magnitude below ``2**SUM_MAGNITUDE_LOG2_MAX``
(2**64 contributions of the largest double). ``lift`` and ``decode``, where
values cross a trust boundary, enforce them; ``combine`` never fails and adds at
most one bit to a counter or a sum, which honest inputs cannot push past the
limits. A float sum encodes as ``[mantissa, exponent]``, about 10 bytes for
metered energy and at most ~280 bytes for a sum spanning the whole double range.

**Errors.** ``lift``, ``create`` and ``register`` raise ``LocalProtocolError``:
the local application gave a bad value, name or parameter. ``decode`` and
``create_from_wire`` raise ``MalformedMessage``: a peer's partial or query is
not one this node can accept, so the message is dropped and counted. Not
``ConfigError``: that names a file and a field of a user's configuration, and
none is known here; a layer that reads parameters from a scenario file converts.
"""

from __future__ import annotations

import heapq
import itertools
import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import add
from typing import ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.wire import UINT64_MAX

__all__ = [
    "HISTOGRAM_BINS_MAX",
    "SUM_MAGNITUDE_LOG2_MAX",
    "TOP_K_MAX",
    "VECTOR_LENGTH_MAX",
    "AggregationFunction",
    "Count",
    "ExactSum",
    "Histogram",
    "HistogramResult",
    "Maximum",
    "Mean",
    "Minimum",
    "Number",
    "Sum",
    "TopK",
    "VectorSum",
]

HISTOGRAM_BINS_MAX = 1024
TOP_K_MAX = 1000
VECTOR_LENGTH_MAX = 1024
#: |sum| < 2**1088: 2**64 contributions, each below 2**1024 (the largest double).
SUM_MAGNITUDE_LOG2_MAX = 1088

#: The integers a value may be: what a plain CBOR integer carries.
INT_MIN = -UINT64_MAX - 1
INT_MAX = UINT64_MAX

#: A node's local value, and what the numeric functions return.
Number = int | float

_SCALE_LOG2 = 1074  # every finite double is a multiple of 2**-1074
_SCALE = 1 << _SCALE_LOG2
_MANTISSA_BITS_MAX = SUM_MAGNITUDE_LOG2_MAX + _SCALE_LOG2

PartialT = TypeVar("PartialT")
ResultT = TypeVar("ResultT")
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class AggregationFunction(ABC, Generic[PartialT, ResultT]):
    """A commutative monoid over bounded partials; see the module's theory of operation."""

    __slots__ = ()

    @abstractmethod
    def identity(self) -> PartialT:
        """The partial of no values: ``combine(identity(), p) == p``."""

    @abstractmethod
    def lift(self, value: object) -> PartialT:
        """One node's value as a partial; ``LocalProtocolError`` if the value is invalid."""

    def lift_from(self, node_id: int, value: object) -> PartialT:
        """Node ``node_id``'s own reading as a partial: ``lift(value)``, unless the
        function keeps who said what (``collect``)."""
        return self.lift(value)

    @abstractmethod
    def combine(self, a: PartialT, b: PartialT) -> PartialT:
        """Both partials as one; associative and commutative, exactly."""

    @abstractmethod
    def finish(self, partial: PartialT) -> ResultT:
        """The result the root reports."""

    @abstractmethod
    def encode(self, partial: PartialT) -> object:
        """The partial as plain data for the wire."""

    @abstractmethod
    def decode(self, wire: object) -> PartialT:
        """A peer's partial; ``MalformedMessage`` unless it is one ``encode`` could produce."""

    def combine_all(self, partials: Iterable[PartialT]) -> PartialT:
        """All ``partials`` combined (the identity when there are none)."""
        return reduce(self.combine, partials, self.identity())


# -- values and plain data ----------------------------------------------------------------


def _local_number(value: object, what: str = "value") -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LocalProtocolError(f"{what} must be an int or a float, got {type(value).__name__}")
    if isinstance(value, int):
        number = int(value)
        if not INT_MIN <= number <= INT_MAX:
            raise LocalProtocolError(f"{what} must fit in 64 bits, got {number}")
        return number
    real = float(value)
    if not math.isfinite(real):
        raise LocalProtocolError(f"{what} must be finite, got {real!r}")
    return real


def _wire_number(wire: object, field: str) -> Number:
    if type(wire) is int and INT_MIN <= wire <= INT_MAX:
        return wire
    if type(wire) is float and math.isfinite(wire):
        return wire
    raise MalformedMessage("expected a finite float or a 64-bit integer", field=field)


def _wire_count(wire: object, field: str) -> int:
    if type(wire) is int and 0 <= wire <= UINT64_MAX:
        return wire
    raise MalformedMessage(f"expected a count in 0..{UINT64_MAX}", field=field)


def _wire_list(wire: object, field: str, length_max: int) -> Sequence[object]:
    if not isinstance(wire, list | tuple):
        raise MalformedMessage("expected a list", field=field)
    if len(wire) > length_max:
        raise MalformedMessage(f"{len(wire)} items exceed {length_max}", field=field)
    return wire


def _encode_int(number: int) -> int | bytes:
    """A plain integer where CBOR carries one, else minimal big-endian two's complement."""
    if INT_MIN <= number <= INT_MAX:
        return number
    magnitude = number if number >= 0 else ~number
    return number.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def _decode_int(wire: object, field: str, bits_max: int) -> int:
    if type(wire) is int and INT_MIN <= wire <= INT_MAX:
        number = wire
    elif type(wire) is bytes and len(wire) <= bits_max // 8 + 1:
        number = int.from_bytes(wire, "big", signed=True)
        if _encode_int(number) != wire:  # one value, one encoding
            raise MalformedMessage("big integer not in its shortest form", field=field)
    else:
        raise MalformedMessage(f"expected an integer of at most {bits_max} bits", field=field)
    if number.bit_length() > bits_max:
        raise MalformedMessage(f"integer exceeds {bits_max} bits", field=field)
    return number


def _order_key(number: Number) -> tuple[Number, int]:
    """One total order on valid numbers: by value, then ``-0.0 < int < float``."""
    if type(number) is int:
        return (number, 1)
    return (number, 0 if number == 0.0 and math.copysign(1.0, number) < 0.0 else 2)


# -- exact sums ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExactSum:
    """A sum of ints and floats kept exactly: ``scaled`` is the sum times 2**1074.

    ``has_float`` records whether any float contributed; if none did, the result
    is an exact ``int``. Addition is integer addition, so it is associative.
    """

    scaled: int = 0
    has_float: bool = False

    @classmethod
    def of(cls, number: Number) -> ExactSum:
        """The sum of one valid number (see ``lift`` for what is valid)."""
        if type(number) is int:
            return cls(number << _SCALE_LOG2, has_float=False)
        numerator, denominator = float(number).as_integer_ratio()  # denominator: 2**0..2**1074
        return cls(numerator * (_SCALE // denominator), has_float=True)

    def __add__(self, other: ExactSum) -> ExactSum:
        return ExactSum(self.scaled + other.scaled, self.has_float or other.has_float)

    def result(self) -> Number:
        """The exact sum, rounded once to the nearest float if any float contributed."""
        if not self.has_float:
            return self.scaled >> _SCALE_LOG2
        try:
            return self.scaled / _SCALE  # correctly rounded, like math.fsum
        except OverflowError:
            return math.inf if self.scaled > 0 else -math.inf

    def to_wire(self) -> object:
        """An ``int`` sum as an integer; a float sum as ``[m, e]``, exactly ``m * 2**e``."""
        if not self.has_float:
            return _encode_int(self.scaled >> _SCALE_LOG2)
        if self.scaled == 0:
            return [0, 0]
        shift = (self.scaled & -self.scaled).bit_length() - 1  # strip zeros: ``m`` is odd
        return [_encode_int(self.scaled >> shift), shift - _SCALE_LOG2]

    @classmethod
    def from_wire(cls, wire: object, field: str) -> ExactSum:
        """The inverse of ``to_wire`` for a peer's data; ``MalformedMessage`` if invalid."""
        if not isinstance(wire, list | tuple):
            total = _decode_int(wire, field, SUM_MAGNITUDE_LOG2_MAX)
            return cls(total << _SCALE_LOG2, has_float=False)
        if len(wire) != 2:
            raise MalformedMessage("expected [mantissa, exponent]", field=field)
        mantissa = _decode_int(wire[0], field, _MANTISSA_BITS_MAX)
        exponent = wire[1]
        if type(exponent) is not int or not -_SCALE_LOG2 <= exponent <= SUM_MAGNITUDE_LOG2_MAX:
            raise MalformedMessage(
                f"exponent must be an integer in -{_SCALE_LOG2}..{SUM_MAGNITUDE_LOG2_MAX}",
                field=field,
            )
        if mantissa == 0:
            if exponent != 0:
                raise MalformedMessage("zero must be [0, 0]", field=field)
            return cls(0, has_float=True)
        if mantissa % 2 == 0:
            raise MalformedMessage("mantissa must be odd (the shortest form)", field=field)
        if mantissa.bit_length() + exponent > SUM_MAGNITUDE_LOG2_MAX:
            raise MalformedMessage(f"|sum| must be below 2**{SUM_MAGNITUDE_LOG2_MAX}", field=field)
        return cls(mantissa << (exponent + _SCALE_LOG2), has_float=True)


# -- parameters ---------------------------------------------------------------------------


class _Params(BaseModel):
    """Parameters as plain data: no coercion (``True`` is not 1, ``"3"`` not 3), no extras."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class _HistogramParams(_Params):
    edges: list[float] = Field(
        min_length=2,
        max_length=HISTOGRAM_BINS_MAX + 1,
        description="bin i holds edges[i] <= value < edges[i + 1]",
    )

    @field_validator("edges")
    @classmethod
    def _strictly_increasing(cls, edges: list[float]) -> list[float]:
        if any(right <= left for left, right in itertools.pairwise(edges)):
            raise ValueError("edges must be strictly increasing")
        return edges


class _TopKParams(_Params):
    k: int = Field(ge=1, le=TOP_K_MAX, description="how many of the largest values to keep")


class _VectorSumParams(_Params):
    length: int = Field(ge=1, le=VECTOR_LENGTH_MAX, description="elements in every value")


def _as_lists(value: object) -> object:
    """Tuples as lists, as they arrive from the wire, so both forms validate alike."""
    if isinstance(value, list | tuple):
        return [_as_lists(item) for item in value]
    return value


def _checked(model: type[_ModelT], function: str, params: Mapping[str, object]) -> _ModelT:
    try:
        return model.model_validate({key: _as_lists(item) for key, item in params.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise LocalProtocolError(f"{function}: parameter {where!r}: {first['msg']}") from None


# -- the built-ins ------------------------------------------------------------------------


class Sum(AggregationFunction[ExactSum, Number]):
    """``sum``: the exact sum; an ``int`` if every value was one, 0 for no values."""

    __slots__ = ()

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Sum:
        _checked(_Params, "sum", params)
        return cls()

    def identity(self) -> ExactSum:
        return ExactSum()

    def lift(self, value: object) -> ExactSum:
        return ExactSum.of(_local_number(value))

    def combine(self, a: ExactSum, b: ExactSum) -> ExactSum:
        return a + b

    def finish(self, partial: ExactSum) -> Number:
        return partial.result()

    def encode(self, partial: ExactSum) -> object:
        return partial.to_wire()

    def decode(self, wire: object) -> ExactSum:
        return ExactSum.from_wire(wire, "partial")


class Count(AggregationFunction[int, int]):
    """``count``: how many nodes contributed a (valid) value; 0 for none."""

    __slots__ = ()

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Count:
        _checked(_Params, "count", params)
        return cls()

    def identity(self) -> int:
        return 0

    def lift(self, value: object) -> int:
        _local_number(value)
        return 1

    def combine(self, a: int, b: int) -> int:
        return a + b

    def finish(self, partial: int) -> int:
        return partial

    def encode(self, partial: int) -> object:
        return partial

    def decode(self, wire: object) -> int:
        return _wire_count(wire, "partial")


class _Extremum(AggregationFunction[Number | None, Number | None]):
    """The least (``Minimum``) or greatest (``Maximum``) value; ``None`` for no values."""

    __slots__ = ()
    _name: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Self:
        _checked(_Params, cls._name, params)
        return cls()

    @abstractmethod
    def _first_wins(self, a: Number, b: Number) -> bool: ...

    def identity(self) -> Number | None:
        return None

    def lift(self, value: object) -> Number | None:
        return _local_number(value)

    def combine(self, a: Number | None, b: Number | None) -> Number | None:
        if a is None:
            return b
        if b is None:
            return a
        return a if self._first_wins(a, b) else b

    def finish(self, partial: Number | None) -> Number | None:
        return partial

    def encode(self, partial: Number | None) -> object:
        return partial

    def decode(self, wire: object) -> Number | None:
        return None if wire is None else _wire_number(wire, "partial")


class Minimum(_Extremum):
    """``min``: the least value (of equal ones: ``-0.0``, then an int, then a float)."""

    __slots__ = ()
    _name: ClassVar[str] = "min"

    def _first_wins(self, a: Number, b: Number) -> bool:
        return _order_key(a) <= _order_key(b)


class Maximum(_Extremum):
    """``max``: the greatest value (of equal ones: a float, then an int, then ``-0.0``)."""

    __slots__ = ()
    _name: ClassVar[str] = "max"

    def _first_wins(self, a: Number, b: Number) -> bool:
        return _order_key(a) >= _order_key(b)


class Mean(AggregationFunction[tuple[int, ExactSum], float | None]):
    """``mean``: the exact sum's result over the count; ``None`` for no values."""

    __slots__ = ()

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Mean:
        _checked(_Params, "mean", params)
        return cls()

    def identity(self) -> tuple[int, ExactSum]:
        return (0, ExactSum())

    def lift(self, value: object) -> tuple[int, ExactSum]:
        return (1, ExactSum.of(_local_number(value)))

    def combine(self, a: tuple[int, ExactSum], b: tuple[int, ExactSum]) -> tuple[int, ExactSum]:
        return (a[0] + b[0], a[1] + b[1])

    def finish(self, partial: tuple[int, ExactSum]) -> float | None:
        count, total = partial
        return None if count == 0 else total.result() / count

    def encode(self, partial: tuple[int, ExactSum]) -> object:
        return [partial[0], partial[1].to_wire()]

    def decode(self, wire: object) -> tuple[int, ExactSum]:
        items = _wire_list(wire, "partial", 2)
        if len(items) != 2:
            raise MalformedMessage("expected [count, sum]", field="partial")
        count = _wire_count(items[0], "partial.count")
        total = ExactSum.from_wire(items[1], "partial.sum")
        if count == 0 and total != ExactSum():
            raise MalformedMessage("no values but a sum", field="partial.sum")
        if abs(total.scaled) > count << (1024 + _SCALE_LOG2):
            raise MalformedMessage("sum too large for its count", field="partial.sum")
        return (count, total)


@dataclass(frozen=True, slots=True)
class HistogramResult:
    """``counts[i]`` values fell in ``edges[i] <= value < edges[i + 1]``."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    underflow: int  # values below edges[0]
    overflow: int  # values at or above edges[-1]

    @property
    def total(self) -> int:
        """Every value counted, in or out of range."""
        return self.underflow + sum(self.counts) + self.overflow


class Histogram(AggregationFunction[tuple[int, ...], HistogramResult]):
    """``histogram``: counts per bin, plus underflow and overflow; param ``edges``.

    A partial is ``(underflow, bin 0, ..., bin n-1, overflow)``: the slot of a
    value is ``bisect_right(edges, value)``.
    """

    __slots__ = ("edges",)

    def __init__(self, edges: Sequence[float]) -> None:
        checked = _checked(_HistogramParams, "histogram", {"edges": edges})
        self.edges: tuple[float, ...] = tuple(checked.edges)

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Histogram:
        return cls(_checked(_HistogramParams, "histogram", params).edges)

    def identity(self) -> tuple[int, ...]:
        return (0,) * (len(self.edges) + 1)

    def lift(self, value: object) -> tuple[int, ...]:
        slots = [0] * (len(self.edges) + 1)
        slots[bisect_right(self.edges, _local_number(value))] = 1
        return tuple(slots)

    def combine(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(map(add, a, b))

    def finish(self, partial: tuple[int, ...]) -> HistogramResult:
        return HistogramResult(self.edges, partial[1:-1], partial[0], partial[-1])

    def encode(self, partial: tuple[int, ...]) -> object:
        return list(partial)

    def decode(self, wire: object) -> tuple[int, ...]:
        slots = len(self.edges) + 1
        items = _wire_list(wire, "partial", slots)
        if len(items) != slots:
            raise MalformedMessage(f"expected {slots} counts", field="partial")
        return tuple(_wire_count(item, f"partial[{i}]") for i, item in enumerate(items))


class TopK(AggregationFunction[tuple[Number, ...], tuple[Number, ...]]):
    """``top_k``: the ``k`` largest values (with repeats), largest first; param ``k``."""

    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        self.k: int = _checked(_TopKParams, "top_k", {"k": k}).k

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> TopK:
        return cls(_checked(_TopKParams, "top_k", params).k)

    def identity(self) -> tuple[Number, ...]:
        return ()

    def lift(self, value: object) -> tuple[Number, ...]:
        return (_local_number(value),)

    def combine(self, a: tuple[Number, ...], b: tuple[Number, ...]) -> tuple[Number, ...]:
        merged = heapq.merge(a, b, key=_order_key, reverse=True)
        return tuple(itertools.islice(merged, self.k))

    def finish(self, partial: tuple[Number, ...]) -> tuple[Number, ...]:
        return partial

    def encode(self, partial: tuple[Number, ...]) -> object:
        return list(partial)

    def decode(self, wire: object) -> tuple[Number, ...]:
        items = _wire_list(wire, "partial", self.k)
        numbers = [_wire_number(item, f"partial[{i}]") for i, item in enumerate(items)]
        return tuple(sorted(numbers, key=_order_key, reverse=True))


class VectorSum(AggregationFunction[tuple[ExactSum, ...], tuple[Number, ...]]):
    """``vector_sum``: element-wise exact sums of equal-length vectors; param ``length``.

    Seed 000's night-demand query sums ``[kWh 0-8 h, 8-16 h, 16-24 h]`` with ``length=3``.
    """

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length: int = _checked(_VectorSumParams, "vector_sum", {"length": length}).length

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> VectorSum:
        return cls(_checked(_VectorSumParams, "vector_sum", params).length)

    def identity(self) -> tuple[ExactSum, ...]:
        return (ExactSum(),) * self.length

    def lift(self, value: object) -> tuple[ExactSum, ...]:
        if not isinstance(value, list | tuple) or len(value) != self.length:
            raise LocalProtocolError(f"value must be a list of {self.length} numbers")
        return tuple(
            ExactSum.of(_local_number(item, f"value[{i}]")) for i, item in enumerate(value)
        )

    def combine(self, a: tuple[ExactSum, ...], b: tuple[ExactSum, ...]) -> tuple[ExactSum, ...]:
        return tuple(map(add, a, b))

    def finish(self, partial: tuple[ExactSum, ...]) -> tuple[Number, ...]:
        return tuple(element.result() for element in partial)

    def encode(self, partial: tuple[ExactSum, ...]) -> object:
        return [element.to_wire() for element in partial]

    def decode(self, wire: object) -> tuple[ExactSum, ...]:
        items = _wire_list(wire, "partial", self.length)
        if len(items) != self.length:
            raise MalformedMessage(f"expected {self.length} sums", field="partial")
        return tuple(ExactSum.from_wire(item, f"partial[{i}]") for i, item in enumerate(items))
