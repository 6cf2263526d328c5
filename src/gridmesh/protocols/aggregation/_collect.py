"""Collect: every node's reading, uncombined, as bounded ``(node id, value)`` pairs.

Theory of operation
-------------------
Seed 000 (IV.A) gives request-response gossip two shapes: "all the received
replies are propagated back to the initiator" ("query the last measured voltage
value throughout a segment of a Smart Grid"), or a filter aggregates them on
the way so that "only one aggregated value is returned by each peer". The
first is the second with a function whose partial is *the set of replies*:
``collect`` is that function. It travels the tree every query travels
(``_tree``), with the same deadlines, coverage, segments and refusals; only
its partial differs.

**The partial** is a multiset of *entries* ``(node_id, value)``, kept sorted in
one total order (by node id, then by value), plus ``dropped``, how many
readings it stands for but does not hold, and ``cut``, the node id from which
on it holds none (``None`` when nothing was dropped). ``lift_from(node_id,
value)`` is one entry; ``combine`` is multiset union, within the bounds;
``identity()`` holds nothing. ``finish`` gives a ``Collection``: the entries
as pairs, ``dropped`` and ``cut``.

**Bounds** (bounded everything). A query names ``limit`` (entries, at most
``COLLECT_LIMIT_MAX``) and ``bytes_max`` (the encoded partial, at most
``COLLECT_BYTES_MAX``, which leaves room in a ``MESSAGE_BYTES_MAX`` reply for
the envelope and the coverage: ``REPLY_OVERHEAD_BYTES``). Walk the union's
entries in order, adding up entries and bytes; the first entry that would
pass ``limit`` entries or ``bytes_max - PARTIAL_OVERHEAD_BYTES`` bytes sets
the **cut** at its node id, and every entry of that node id or a higher one
is dropped and counted in ``dropped``, never silently lost. So a result holds
every reading of the nodes below ``cut`` and none of the others: the caller
knows exactly whose readings are missing. Whatever the tree does,
``len(values) + dropped`` is the number of readings collected, which the
tree's ``contributors`` counts too. A node holds one such bounded partial per
query it waits on (``pending_max``).

**Why a cut in a fixed order, not first come.** The rule that never bends
(``_functions``) is that ``combine`` is associative and commutative exactly.
"Keep what came first" would make the result depend on the tree's shape and
on timing. A cut in one total order does not, *if partials remember it*.
Say the whole union's walk first fails at node id ``c``. A part's own walk
fails no earlier (its entries before any entry are a subset of the union's),
so each part's cut is ``>= c``, and each part holds every entry of its own
below ``c``. Combining two parts walks only entries below the smaller of
their cuts: below ``c`` that is exactly the union's prefix, so the walk
fails at ``c`` or a part's cut is ``c``; either way the combined cut is
``c`` and the entries kept are those below it. Had the parts forgotten their
cuts, an entry dropped from a part would no longer take room in the walk and
a higher entry could slip in behind it (Hypothesis found exactly that).
``dropped`` is the multiset's size minus the entries kept, capped at
``UINT64_MAX`` (a cap on a sum of non-negative counts stays associative).
With one entry per node the entries kept are those of the **lowest node
ids**: a caller who needs the others asks a smaller segment.

**Why a multiset.** In an honest tree a node's entry is in exactly one
subtree, so ids never repeat. Only a lying node can repeat one, and the laws
must hold for every input; so two entries with one id are both kept (``1``
and ``1.0`` too, ordered ``-0.0 < int < float`` as ``min`` orders them), and
the result lists both: a lie shows, it is not resolved silently.

**Values** are numbers (an ``int`` in the wire's 64-bit range or a finite
``float``, never a ``bool``) or vectors of 1..``COLLECT_VECTOR_LENGTH_MAX``
numbers (a phasor ``[magnitude, angle]``, three phase voltages). ``lift``
checks a local value (``LocalProtocolError``); ``decode`` checks a peer's
partial (``MalformedMessage``): its shape, every id and value, the order,
``limit`` and the byte bound. So a hostile child can lie about readings (no
signatures yet: issue 7) but cannot make a partial larger than the query allows.

**Sizes** are computed, not measured: an entry ``[node_id, value]`` takes the
CBOR bytes of a two-item array head, the id and the value, a float counted as
the 9 bytes the codec sends (``entry_bytes``). The wire form of a partial is
``[dropped, cut, [[node_id, value], ...]]``, ``cut`` null or a node id,
entries in order: ``PARTIAL_OVERHEAD_BYTES`` (22) plus its entries' bytes at
most. ``decode`` also checks that ``dropped`` is 0 exactly when ``cut`` is
null and that every entry lies below ``cut``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols._host import Scope
from gridmesh.protocols.aggregation._functions import (
    AggregationFunction,
    Number,
    _checked,
    _local_number,
    _order_key,
    _Params,
    _wire_count,
    _wire_list,
    _wire_number,
)
from gridmesh.wire import MESSAGE_BYTES_MAX, UINT64_MAX, int_bytes

__all__ = [
    "COLLECT_BYTES_MAX",
    "COLLECT_BYTES_MIN",
    "COLLECT_LIMIT_DEFAULT",
    "COLLECT_LIMIT_MAX",
    "COLLECT_VECTOR_LENGTH_MAX",
    "PARTIAL_OVERHEAD_BYTES",
    "REPLY_OVERHEAD_BYTES",
    "Collect",
    "CollectResult",
    "Collected",
    "CollectedValue",
    "Collection",
    "entry_bytes",
]

#: Entries one collection may hold; 4,096 entries of 64-bit ids and floats fill
#: about 78 KB, more than a message: the byte bound binds first for real ids.
COLLECT_LIMIT_MAX = 4096
#: The ``limit`` a collection gets when its caller names none.
COLLECT_LIMIT_DEFAULT = 1000
#: Numbers in one vector value.
COLLECT_VECTOR_LENGTH_MAX = 64
#: An ``AGG_REPLY`` around its partial, at most: envelope (44 bytes with 64-bit
#: ids and times) and body head, key, status and three counts (47 bytes), rounded up.
REPLY_OVERHEAD_BYTES = 128
#: A partial around its entries, at most: ``[dropped, cut, [...]]``'s heads, two counts.
PARTIAL_OVERHEAD_BYTES = 22
#: The largest ``bytes_max``: a partial this large still fits a ``MESSAGE_BYTES_MAX`` reply.
COLLECT_BYTES_MAX = MESSAGE_BYTES_MAX - REPLY_OVERHEAD_BYTES
#: The smallest ``bytes_max``: room for a few entries.
COLLECT_BYTES_MIN = 64

#: One node's collected value: a number or a vector of numbers (a tuple).
CollectedValue = Number | tuple[Number, ...]
#: ``(node_id, value)``.
Entry = tuple[int, CollectedValue]


@dataclass(frozen=True, slots=True)
class Collected:
    """A partial of ``collect``: ``entries`` in order, how many more it stands for, the cut."""

    entries: tuple[Entry, ...] = ()
    dropped: int = 0
    cut: int | None = None  # no entry of this node id or above; None: nothing dropped


@dataclass(frozen=True, slots=True)
class Collection:
    """What ``collect`` finishes to: ``(node_id, value)`` pairs by node id, and ``dropped``.

    ``dropped`` readings were collected but cut to stay within ``limit`` and
    ``bytes_max``: those of node ids ``cut`` and above (``None``: none dropped).
    """

    values: tuple[Entry, ...]
    dropped: int
    cut: int | None = None

    @property
    def truncated(self) -> bool:
        """Some collected readings did not fit the bounds."""
        return self.dropped > 0


class _CollectParams(_Params):
    limit: int = Field(
        default=COLLECT_LIMIT_DEFAULT, ge=1, le=COLLECT_LIMIT_MAX, description="entries kept"
    )
    bytes_max: int = Field(
        default=COLLECT_BYTES_MAX,
        ge=COLLECT_BYTES_MIN,
        le=COLLECT_BYTES_MAX,
        description="the encoded partial, at most",
    )


# -- sizes and order ---------------------------------------------------------------------


def _number_bytes(number: Number) -> int:
    return int_bytes(number) if type(number) is int else 9  # the codec sends doubles


def _value_bytes(value: CollectedValue) -> int:
    if isinstance(value, tuple):
        return (1 if len(value) < 24 else 2) + sum(map(_number_bytes, value))
    return _number_bytes(value)


def entry_bytes(entry: Entry) -> int:
    """The CBOR bytes of ``[node_id, value]`` on the wire."""
    node_id, value = entry
    return 1 + int_bytes(node_id) + _value_bytes(value)


def _entry_key(entry: Entry) -> tuple[int, tuple[int, object]]:
    """The one total order of entries: node id, then numbers before vectors, then values."""
    node_id, value = entry
    if isinstance(value, tuple):
        return (node_id, (1, tuple(map(_order_key, value))))
    return (node_id, (0, _order_key(value)))


# -- the function ------------------------------------------------------------------------


class Collect(AggregationFunction[Collected, Collection]):
    """``collect``: every reading with its node id, bounded by ``limit`` and ``bytes_max``.

    ``lift`` takes a pair ``(node_id, value)``; tree aggregation calls
    ``lift_from(node_id, value)`` with the lifting node's own id.
    """

    __slots__ = ("_entry_bytes_max", "bytes_max", "limit")

    def __init__(self, limit: int = COLLECT_LIMIT_DEFAULT, bytes_max: int = COLLECT_BYTES_MAX):
        checked = _checked(_CollectParams, "collect", {"limit": limit, "bytes_max": bytes_max})
        self.limit: int = checked.limit
        self.bytes_max: int = checked.bytes_max
        self._entry_bytes_max = checked.bytes_max - PARTIAL_OVERHEAD_BYTES

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> Collect:
        checked = _checked(_CollectParams, "collect", params)
        return cls(checked.limit, checked.bytes_max)

    def identity(self) -> Collected:
        return Collected()

    def lift(self, value: object) -> Collected:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise LocalProtocolError("collect lifts a pair (node_id, value)")
        node_id, reading = value
        if type(node_id) is not int or not 0 < node_id <= UINT64_MAX:
            raise LocalProtocolError(f"node_id must be in 1..2**64-1, got {node_id!r}")
        entry = (node_id, _local_value(reading))
        if entry_bytes(entry) > self._entry_bytes_max:
            return Collected((), 1, node_id)  # collected, and cut at once: it can never fit
        return Collected((entry,))

    def lift_from(self, node_id: int, value: object) -> Collected:
        return self.lift((node_id, value))

    def combine(self, a: Collected, b: Collected) -> Collected:
        if not b.entries and not b.dropped:
            return a
        if not a.entries and not a.dropped:
            return b
        bound = b.cut if a.cut is None else a.cut if b.cut is None else min(a.cut, b.cut)
        cut = bound
        kept: list[Entry] = []
        limit, room = self.limit, self._entry_bytes_max
        for entry in heapq.merge(a.entries, b.entries, key=_entry_key):
            node_id = entry[0]
            if bound is not None and node_id >= bound:
                break  # a part dropped readings of this id: keeping these would skip them
            room -= entry_bytes(entry)
            if len(kept) == limit or room < 0:
                cut = node_id
                while kept and kept[-1][0] == node_id:  # a node id is kept whole or not at all
                    kept.pop()
                break
            kept.append(entry)
        lost = len(a.entries) + len(b.entries) - len(kept)
        return Collected(tuple(kept), min(a.dropped + b.dropped + lost, UINT64_MAX), cut)

    def finish(self, partial: Collected) -> Collection:
        return Collection(partial.entries, partial.dropped, partial.cut)

    def encode(self, partial: Collected) -> object:
        return [
            partial.dropped,
            partial.cut,
            [
                [node_id, list(value) if isinstance(value, tuple) else value]
                for node_id, value in partial.entries
            ],
        ]

    def decode(self, wire: object) -> Collected:
        items = _wire_list(wire, "partial", 3)
        if len(items) != 3:
            raise MalformedMessage("expected [dropped, cut, entries]", field="partial")
        dropped = _wire_count(items[0], "partial.dropped")
        cut = items[1]
        if cut is not None and (type(cut) is not int or not 0 < cut <= UINT64_MAX):
            raise MalformedMessage("cut must be null or a node id", field="partial.cut")
        if (cut is None) != (dropped == 0):
            raise MalformedMessage("a cut exactly when readings were dropped", field="partial.cut")
        listed = _wire_list(items[2], "partial.entries", self.limit)
        entries: list[Entry] = []
        room = self._entry_bytes_max
        previous: tuple[int, tuple[int, object]] | None = None
        for i, item in enumerate(listed):
            entry = _wire_entry(item, f"partial.entries[{i}]")
            room -= entry_bytes(entry)
            if room < 0:
                raise MalformedMessage(
                    f"entries exceed bytes_max ({self.bytes_max})", field="partial.entries"
                )
            key = _entry_key(entry)
            if previous is not None and key < previous:
                raise MalformedMessage(
                    "entries must be ordered by node id, then value", field="partial.entries"
                )
            previous = key
            entries.append(entry)
        if cut is not None and entries and entries[-1][0] >= cut:
            raise MalformedMessage("an entry at or above the cut", field="partial.entries")
        return Collected(tuple(entries), dropped, cut)


def _local_value(value: object) -> CollectedValue:
    if isinstance(value, list | tuple):
        if not 0 < len(value) <= COLLECT_VECTOR_LENGTH_MAX:
            raise LocalProtocolError(
                f"a vector value has 1..{COLLECT_VECTOR_LENGTH_MAX} numbers, got {len(value)}"
            )
        return tuple(_local_number(item, f"value[{i}]") for i, item in enumerate(value))
    return _local_number(value)


def _wire_entry(item: object, field: str) -> Entry:
    pair = _wire_list(item, field, 2)
    if len(pair) != 2:
        raise MalformedMessage("expected [node_id, value]", field=field)
    node_id, value = pair
    if type(node_id) is not int or not 0 < node_id <= UINT64_MAX:
        raise MalformedMessage("node_id must be in 1..2**64-1", field=field)
    if isinstance(value, list | tuple):
        numbers = _wire_list(value, field, COLLECT_VECTOR_LENGTH_MAX)
        if not numbers:
            raise MalformedMessage("a vector value has at least one number", field=field)
        return (node_id, tuple(_wire_number(number, field) for number in numbers))
    return (node_id, _wire_number(value, field))


# -- the result a collecting origin gets --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What the origin of a collection learns: the readings by node, the cut, the coverage.

    ``values``: ``(node_id, value)`` pairs by node id; ``dropped``: readings
    collected but cut by ``limit`` or ``bytes_max``, those of node ids ``cut``
    and above (``None``: nothing dropped); ``contributors`` ==
    ``len(values) + dropped`` unless a node lied; ``missing``, ``declined`` and
    ``fanout`` as in ``AggregateResult``.
    """

    query_id: int
    reading: str
    segment: Scope | None
    values: tuple[Entry, ...]
    dropped: int
    cut: int | None
    contributors: int
    missing: int
    declined: int
    started_at: float
    finished_at: float
    fanout: int = 0

    @property
    def truncated(self) -> bool:
        """Some collected readings were cut to stay within the bounds."""
        return self.dropped > 0

    @property
    def complete(self) -> bool:
        """Every node the query reached answered in time and took part (cut or not)."""
        return self.missing == 0 and self.declined == 0
