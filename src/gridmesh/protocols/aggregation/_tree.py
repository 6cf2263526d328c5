"""Tree aggregation: WS-Gossip's request-response gossip (seed 000, IV.A).

Theory of operation
-------------------
A **query** asks every node it reaches for one named *reading* of its own
(``"night_kwh"``, ``"voltage"``) and names the aggregation function that
combines them (a name and small parameters: no code travels; every node builds
the function from its own ``FunctionRegistry``, see ``_functions``). The query
spreads like push gossip, hop by hop, and the replies come back along the tree
it built implicitly, combined level by level: "responses will then travel back
along the same tree implicitly created by the request message, but they are
buffered and filtered using the conveyed aggregation function, such that only
one aggregated value is returned by each peer. The reply is sent by each peer
as soon as a configured minimum of targets have replied [...] or when the
timeout expires" (seed 000, IV.A).

A query is named by its envelope's ``(origin, message_id)``; relays forward the
origin's envelope, so every node sees the same name. Per node and query:

* the peer a node **first** got the query from is its **parent**. The node
  lifts its own reading (if the application registered one under that name
  and the node is in the query's segment, below), and, while hops remain,
  forwards the query to up to ``fanout`` peers of its membership (its
  *targets*; fanout 0: every neighbour in its view, for an overlay like
  HyParView's whose flood reaches everyone);
* a **duplicate** of a query it knows is answered "not your child" at once:
  the sender stops waiting for it;
* it waits for its targets until each has answered, or ``replies_min`` of them
  answered with a value, or its **deadline** passes, then replies **once** to
  its parent with its partial: own value combined with its children's;
* a reply that comes after the node replied is **late**: counted, never merged
  (its parent may already have reported upwards).

**Deadlines shrink with the hops left**, so parents wait longer than
children. The origin gives a total ``timeout_s`` for ``hops`` hops; the query
carries the per-hop budget ``hop_timeout_ms = timeout_s / hops``. A node that
receives a query with ``h`` hops left can have a subtree ``h - 1`` levels deep
and waits ``(h - 1)`` budgets from the moment it received the query; its
parent waits one budget more from its own receipt. So a child's reply, even
one sent on its deadline, beats its parent's deadline whenever the budget
exceeds a round trip: that is the one rule the origin must respect (no
synchronized clocks are assumed; every wait is relative to a node's receipt).

**The fanout decides who is asked.** The query spreads like infect-and-die
gossip, so a node nobody picked is never asked, and no one counts it
``missing``: the origin cannot see it. The origin puts the fanout in the
query, and every relay uses it. Unless the caller or the configuration sets
one, a node that knows the network's size ``n`` asks ``ln n + c`` targets,
``c`` from ``reliability`` (``default_fanout``), which reaches every node with
that probability (Kermarrec, Massoulié, Ganesh 2003): 17 at 10^5 nodes for
0.99, where a fixed 8 leaves about a hundred unasked. A node with a partial
view knows no size and asks 8; over HyParView, fanout 0 floods the active
view, which reaches every node of a connected overlay.

**Value replies are acknowledged** (``ACK``, a fourth reply status). A lost
reply used to drop its whole subtree: with 5% loss a query covered 65-84% of
10^4 nodes (99.97-100% with copies and ACKs). A node sends its value reply
again every quarter of a hop's budget until its parent acknowledges it
(``reply_retries`` copies at most); the parent waits a budget longer than the
child, so copies come in time. The parent merges each child once and
acknowledges every copy, even after it replied. A crashed parent still
loses its subtree: sending the value to a second parent could count it twice
(the first may have merged it and lost every ACK), and ``contributors`` must
stay exact.

**Coverage travels with the value.** A value reply carries how many nodes'
readings its partial holds (``contributors``), how many targets in its subtree
had not answered when their parent replied (``missing``: dead, slow, lost
replies, or late ones, which are indistinguishable at that moment) and how
many nodes could not take part (``declined``: unknown function, invalid
parameters, too many queries pending, a reply too large to send). A node's
value is in the result exactly when every link up to the origin delivered its
reply in time, and ``contributors`` counts exactly those nodes; so the origin
learns a value *and* precisely how many nodes it covers. The functions are
exact monoids, so with no fault and every node reached, the result is the exact
aggregate of all readings, whatever the tree's shape.

State machine of one query at one node (anything else is refused):

=========  ================================================  ======================
state      input                                             effect → next
=========  ================================================  ======================
new        ``AGG_QUERY`` from ``s``, function known          ``s`` is the parent; lift own
                                                             reading if in the segment;
                                                             forward to targets;
                                                             none → reply now → *answered*,
                                                             else → *waiting*
new        ``AGG_QUERY``, function unknown / params invalid  reply DECLINED; raise
                                                             ``MalformedMessage`` → new
new        ``AGG_QUERY``, ``pending_max`` queries waiting    reply DECLINED → new
waiting,   ``AGG_QUERY`` from ``s``                          reply NOT_CHILD to ``s``
answered
waiting    VALUE from an unanswered target                   merge partial and coverage;
                                                             done → reply → *answered*
waiting    NOT_CHILD / DECLINED from an unanswered target    target no longer awaited;
                                                             done → reply → *answered*
waiting    deadline                                          unanswered targets are missing;
                                                             reply → *answered*
waiting    VALUE from a target already merged (a copy)       ACK; count duplicate, drop
waiting    reply from a non-target, or a second non-VALUE    raise ``UnexpectedMessage``
answered   VALUE reply                                       ACK; count duplicate (merged
                                                             before) or late, drop
replied    ACK from the parent                               no more copies
replied    a quarter budget with no ACK                      send the VALUE again, at
                                                             most ``reply_retries`` times
unknown    any reply                                         raise ``UnexpectedMessage``
=========  ================================================  ======================

The origin is a *waiting* node without a parent: its "reply" is the
``AggregateResult`` handed to the application's callback.

**Segments** (seed 000: "query the last measured voltage value throughout a
segment of a Smart Grid [...] all the IED in that Smart Grid's segment"). A
query may name a *segment*, a ``Scope``: a service type (``"ied"``), a group
(``"feeder-7"``, as nodes list in ``NodeConfig.groups``), or both. A node
contributes only if its **own** descriptor is in the segment (what it
configured, not what others say of it); any other node still relays and
replies with the identity, so the tree, its deadlines and its coverage work as
without a segment, and ``contributors`` counts segment members only. Relays
choose targets the way group gossip does (``dissemination``): peers of the
segment first (``PeerSampling.sample(..., scope=...)``, the membership's own
scoped draw), topped up with others to carry the query where the segment is
sparse in a partial view; so with the whole directory in sight a query to 50
meters of a feeder costs about 50 nodes' messages, not the network's.
``fanout 0`` floods the view as before. A segment restricts any function; no
segment keeps the six-item query body of nodes that predate segments.

**Every reply, uncombined.** Seed 000's other shape, "all the received
replies are propagated back to the initiator", is the function ``collect``
(``_collect``): its partial is the bounded set of ``(node_id, value)``
entries, so ``collect`` (``TreeAggregation.collect``) returns each reading
with its node id in a ``CollectResult``, within ``limit`` entries and
``bytes_max`` bytes (default: what fits this node's largest reply); what did
not fit is counted in ``dropped``, never lost silently. Functions lift a
reading with ``lift_from(node_id, value)``, so only ``collect`` sees the id.

**Limits.** ``pending_max`` queries waiting per node, ``fanout_max`` targets per
query (so children per query), ``hops_max``, ``hop_timeout_s_max`` per-hop
budget, ``seen_max`` remembered queries, ``readings_max`` named readings; a
partial is decoded by its function, which bounds it (``_functions``), and the
whole reply must fit ``message_bytes_max`` or the node declines instead.

Bodies (see docs/PROTOCOL.md, "Tree aggregation"):

* ``AGG_QUERY``: ``[function, params, reading, fanout, hop_timeout_ms,
  replies_min]``, or those and ``[service, group]`` (the segment; each text or
  null, not both null); ``hops_left`` in the envelope;
* ``AGG_REPLY``: ``[query_origin, query_id, 0, partial, contributors, missing,
  declined]`` (VALUE), ``[query_origin, query_id, 1]`` (NOT_CHILD),
  ``[query_origin, query_id, 2]`` (DECLINED) or ``[query_origin, query_id, 3]``
  (ACK, a parent to a child that sent a VALUE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import LocalProtocolError, MalformedMessage, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, PeerSampling, Scope, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.protocols.aggregation._collect import (
    COLLECT_LIMIT_DEFAULT,
    REPLY_OVERHEAD_BYTES,
    Collect,
    Collection,
    CollectResult,
)
from gridmesh.protocols.aggregation._functions import AggregationFunction
from gridmesh.protocols.aggregation._registry import FUNCTION_NAME_BYTES_MAX, FunctionRegistry
from gridmesh.protocols.dissemination import RELIABILITY_MAX, SizeEstimate, fanout_for
from gridmesh.protocols.membership import GROUP_BYTES_MAX, SERVICE_BYTES_MAX
from gridmesh.wire import HOPS_MAX, UINT64_MAX, Envelope, Kind, encode

__all__ = [
    "AGG_FANOUT_DEFAULT",
    "AGG_FANOUT_MAX",
    "HOP_TIMEOUT_MS_MAX",
    "READING_BYTES_MAX",
    "AggregateResult",
    "CollectCallback",
    "ReadingProvider",
    "ResultCallback",
    "Segment",
    "TreeAggregation",
    "TreeAggregationConfig",
]

#: Targets one node may forward a query to (and so children it may wait for).
AGG_FANOUT_MAX = 64
#: Targets per node where neither a fanout nor the network's size is known.
AGG_FANOUT_DEFAULT = 8
#: A reading's name, e.g. "night_kwh", in UTF-8 bytes.
READING_BYTES_MAX = 64
#: The largest per-hop budget a query may carry: one hour.
HOP_TIMEOUT_MS_MAX = 3_600_000
#: Copies of one value reply a node may send after the first.
REPLY_RETRIES_MAX = 8

#: Reply statuses.
VALUE = 0
NOT_CHILD = 1
DECLINED = 2
ACK = 3

#: The application's source of one reading: called with ``now``; returns the value
#: to lift (an int, a float, a vector ...) or ``None`` when it has none.
ReadingProvider = Callable[[float], object]

QueryKey = tuple[int, int]

#: Which nodes contribute: a ``Scope`` (a service type, a group, or both), a group
#: name for short, or ``None`` for every node.
Segment = Scope | str | None


class TreeAggregationConfig(BaseModel):
    """Defaults and limits of tree aggregation; see docs/PROTOCOL.md, "Tree aggregation"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fanout: int | None = Field(
        default=None,
        ge=0,
        le=AGG_FANOUT_MAX,
        description="targets per node; 0: every neighbour in the view (at most fanout_max); "
        f"None: what reaches every node with `reliability` where the network's size is "
        f"known, else {AGG_FANOUT_DEFAULT}",
    )
    reliability: float = Field(
        default=0.99,
        gt=0.0,
        le=RELIABILITY_MAX,
        description="with no fanout set, the chance a query reaches every node",
    )
    network_size: int | None = Field(
        default=None, ge=1, description="size for reliability; default: the membership's, if any"
    )
    hops: int = Field(default=10, ge=1, le=HOPS_MAX)
    timeout_s: float = Field(
        default=10.0, gt=0.0, le=86_400.0, description="how long the origin waits in all"
    )
    replies_min: int = Field(
        default=0,
        ge=0,
        le=AGG_FANOUT_MAX,
        description="reply once this many children answered with a value; 0: wait for all",
    )
    reply_retries: int = Field(
        default=3,
        ge=0,
        le=REPLY_RETRIES_MAX,
        description="a value reply with no ACK is sent again this often, a quarter of a hop's "
        "budget apart",
    )
    fanout_max: int = Field(
        default=AGG_FANOUT_MAX, ge=1, le=AGG_FANOUT_MAX, description="receivers clamp to this"
    )
    hops_max: int = Field(default=HOPS_MAX, ge=1, le=HOPS_MAX, description="receivers clamp")
    hop_timeout_s_max: float = Field(
        default=60.0,
        gt=0.0,
        le=HOP_TIMEOUT_MS_MAX / 1000,
        description="receivers clamp a query's per-hop budget to this",
    )
    pending_max: int = Field(
        default=256, ge=1, le=1_000_000, description="queries waiting for children at once"
    )
    seen_max: int = Field(default=4096, ge=16, le=10_000_000, description="queries remembered")
    readings_max: int = Field(default=256, ge=1, le=65_536, description="named readings")

    @model_validator(mode="after")
    def _consistent(self) -> TreeAggregationConfig:
        if self.hops > self.hops_max:
            raise ValueError(f"hops ({self.hops}) must not exceed hops_max ({self.hops_max})")
        if self.fanout is not None and self.fanout > self.fanout_max:
            raise ValueError(f"fanout ({self.fanout}) must not exceed fanout_max")
        return self


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """What the origin of a query learns: the value and how much of the network it covers.

    ``contributors``: nodes whose reading is in ``value`` (the origin included);
    ``missing``: targets, anywhere in the tree, that had not answered when their
    parent replied (late or never); ``declined``: nodes that could not take part;
    ``segment``: the nodes asked to contribute (``None``: all); ``fanout``: the
    targets per node the query asked for (0: every neighbour in the view).
    """

    query_id: int
    function: str
    reading: str
    value: object
    contributors: int
    missing: int
    declined: int
    started_at: float
    finished_at: float
    segment: Scope | None = None
    fanout: int = 0

    @property
    def complete(self) -> bool:
        """Every node the query reached answered in time and took part.

        A node the query never reached is invisible here: how likely that is
        depends on the fanout (see ``TreeAggregationConfig.reliability``).
        """
        return self.missing == 0 and self.declined == 0


ResultCallback = Callable[[AggregateResult], None]
CollectCallback = Callable[[CollectResult], None]


class _Query:
    """One query this node waits on children for."""

    __slots__ = (
        "budget_s",
        "contributors",
        "declined",
        "fanout",
        "function",
        "merged",
        "missing",
        "name",
        "on_result",
        "parent",
        "partial",
        "reading",
        "replies_min",
        "segment",
        "started_at",
        "waiting",
    )

    def __init__(
        self,
        function: AggregationFunction[Any, Any],
        own: tuple[object, int],
        parent: Peer | None,
        waiting: set[int],
        replies_min: int,
    ) -> None:
        self.function = function
        self.partial, self.contributors = own
        self.parent = parent  # None at the origin
        self.waiting = waiting  # targets that have not answered
        self.replies_min = replies_min
        self.merged: set[int] = set()  # targets that answered with a value (merged)
        self.missing = 0
        self.declined = 0
        self.on_result: ResultCallback | None = None  # the origin's only, like name and reading
        self.name = ""
        self.reading = ""
        self.segment: Scope | None = None
        self.started_at = 0.0
        self.fanout = 0
        self.budget_s = 0.0  # a hop's budget: copies of our reply go a quarter of it apart

    def done(self) -> bool:
        return not self.waiting or 0 < self.replies_min <= len(self.merged)


class TreeAggregation:
    """One node's request-response gossip aggregation (seed 000, IV.A)."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.AGG_QUERY, Kind.AGG_REPLY})

    __slots__ = (
        "_config",
        "_functions",
        "_host",
        "_merged",
        "_peers",
        "_pending",
        "_readings",
        "_seen",
        "_size_estimate",
        "_unacked",
        "answered",
        "declined",
        "duplicates",
        "late",
        "missing",
        "not_child",
        "overloaded",
        "oversized",
        "queries",
        "reading_errors",
        "resent",
    )

    def __init__(
        self,
        host: Host,
        config: TreeAggregationConfig,
        peers: PeerSampling,
        functions: FunctionRegistry,
        size_estimate: SizeEstimate = lambda: None,
    ) -> None:
        self._host = host
        self._config = config
        self._peers = peers
        self._functions = functions
        self._size_estimate = size_estimate
        self._pending: dict[QueryKey, _Query] = {}
        # Children whose values were merged into queries answered already (the
        # newest pending_max), so a resent value is acknowledged, not counted late.
        self._merged: dict[QueryKey, set[int]] = {}
        # Value replies sent and not yet acknowledged: query -> (parent, reply, copies
        # left, seconds between copies).
        self._unacked: dict[QueryKey, tuple[Peer, Envelope, int, float]] = {}
        self._seen = SeenCache(config.seen_max)
        self._readings: dict[str, ReadingProvider] = {}
        self.queries = 0  # queries this node started
        self.answered = 0  # value replies sent to a parent
        self.not_child = 0  # "not your child" replies sent
        self.declined = 0  # DECLINED replies sent
        self.late = 0  # value replies that came after this node had replied
        self.resent = 0  # copies of value replies sent for want of an ACK
        self.duplicates = 0  # value replies merged already, acknowledged again
        self.missing = 0  # targets that had not answered when this node replied
        self.reading_errors = 0  # local readings that failed or did not fit the function
        self.overloaded = 0  # queries declined because pending_max were waiting
        self.oversized = 0  # replies declined because they would not fit a message

    # -- API -----------------------------------------------------------------

    def set_reading(self, name: str, provider: ReadingProvider | None) -> None:
        """Answer queries for reading ``name`` with ``provider(now)``; ``None`` removes it."""
        check_reading(name)
        readings = self._readings
        if provider is None:
            readings.pop(name, None)
            return
        if not callable(provider):
            raise LocalProtocolError(f"the provider of reading {name!r} is not callable")
        if name not in readings and len(readings) >= self._config.readings_max:
            raise LocalProtocolError(f"at most {self._config.readings_max} readings")
        readings[name] = provider

    def provider(self, name: str) -> ReadingProvider | None:
        """The provider registered for reading ``name`` (push-sum reads it too), if any."""
        return self._readings.get(name)

    def aggregate(
        self,
        function: str,
        reading: str,
        *,
        now: float,
        on_result: ResultCallback,
        params: Mapping[str, object] | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
        segment: Segment = None,
    ) -> int:
        """Start a query; ``on_result`` gets the ``AggregateResult`` (maybe before this returns).

        Only nodes within ``segment`` contribute; the others relay. Returns the
        query id. Raises ``LocalProtocolError`` for an unknown function, invalid
        parameters, segment or limits, or with ``pending_max`` queries waiting.
        """
        config = self._config
        built = self._functions.create(function, params)
        check_reading(reading)
        scope = as_segment(segment)
        fanout = self.default_fanout() if fanout is None else fanout
        hops = config.hops if hops is None else hops
        timeout_s = config.timeout_s if timeout_s is None else timeout_s
        replies_min = config.replies_min if replies_min is None else replies_min
        if type(fanout) is not int or not 0 <= fanout <= config.fanout_max:
            raise LocalProtocolError(f"fanout must be in 0..{config.fanout_max}, got {fanout}")
        if type(hops) is not int or not 1 <= hops <= config.hops_max:
            raise LocalProtocolError(f"hops must be in 1..{config.hops_max}, got {hops}")
        if type(replies_min) is not int or not 0 <= replies_min <= AGG_FANOUT_MAX:
            raise LocalProtocolError(f"replies_min must be in 0..{AGG_FANOUT_MAX}")
        hop_timeout_ms = round(timeout_s * 1000.0 / hops) if math.isfinite(timeout_s) else 0
        if not timeout_s > 0 or not 1 <= hop_timeout_ms <= config.hop_timeout_s_max * 1000:
            raise LocalProtocolError(
                f"timeout_s / hops must be in 0.001..{config.hop_timeout_s_max} s, "
                f"got {timeout_s} / {hops}"
            )
        if len(self._pending) >= config.pending_max:
            raise LocalProtocolError(f"{config.pending_max} queries are waiting already")
        host = self._host
        body: list[object] = [
            function,
            dict(params or {}),
            reading,
            fanout,
            hop_timeout_ms,
            replies_min,
        ]
        if scope is not None:  # no segment, no item: what nodes before segments sent
            body.append([scope.service, scope.group])
        message = new_envelope(host, Kind.AGG_QUERY, body, now, hops_left=hops)
        key = (message.origin, message.message_id)
        self._seen.add(key)
        self.queries += 1
        targets = self._targets(fanout, 0, scope)
        own = self._own(built, reading, now, scope)
        query = _Query(built, own, None, _ids(targets), replies_min)
        query.on_result = on_result
        query.name = function
        query.reading = reading
        query.segment = scope
        query.started_at = now
        query.fanout = fanout
        if targets:
            host.send(targets, message)
        self._wait(key, query, now + timeout_s, now)
        return message.message_id

    def default_fanout(self) -> int:
        """The fanout of a query that names none.

        The configured ``fanout`` if set. Otherwise, where the network's size
        is known (``network_size``, or the membership's count, which full
        membership keeps), the whole number of targets that reaches every node
        with probability ``reliability`` (``dissemination.fanout_for``: ln n +
        c, Kermarrec et al. 2003, rounded up; 12 at 10^3 nodes, 17 at 10^5 for
        0.99); else ``AGG_FANOUT_DEFAULT``.
        """
        config = self._config
        if config.fanout is not None:
            return config.fanout
        nodes = config.network_size or self._size_estimate()
        if nodes is None:
            return AGG_FANOUT_DEFAULT
        wanted = math.ceil(fanout_for(config.reliability, nodes))
        return max(1, min(wanted, config.fanout_max))

    def collect(
        self,
        reading: str,
        *,
        now: float,
        on_result: CollectCallback,
        segment: Segment = None,
        limit: int = COLLECT_LIMIT_DEFAULT,
        bytes_max: int | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
    ) -> int:
        """Collect ``reading`` from every node of ``segment``, uncombined (``collect``).

        ``on_result`` gets a ``CollectResult``: at most ``limit`` ``(node_id,
        value)`` pairs in at most ``bytes_max`` bytes (default: what fits this
        node's largest message), and how many were cut. Returns the query id.
        """
        if bytes_max is None:
            bytes_max = self._host.message_bytes_max - REPLY_OVERHEAD_BYTES
        params = {"limit": limit, "bytes_max": bytes_max}
        if not isinstance(self._functions.create("collect", params), Collect):
            raise LocalProtocolError("this node's registry holds another 'collect'")
        return self.aggregate(
            "collect",
            reading,
            now=now,
            on_result=partial(_collected, on_result),
            params=params,
            fanout=fanout,
            hops=hops,
            timeout_s=timeout_s,
            replies_min=replies_min,
            segment=segment,
        )

    #: The counters ``stats`` reports, each as ``aggregation_<name>``.
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "queries",
        "pending",
        "answered",
        "not_child",
        "declined",
        "late",
        "resent",
        "duplicates",
        "missing",
        "reading_errors",
        "overloaded",
        "oversized",
    )

    def stats(self) -> dict[str, int]:
        return {
            f"aggregation_{name}": len(self._pending) if name == "pending" else getattr(self, name)
            for name in self.COUNTERS
        }

    @classmethod
    def idle_stats(cls) -> dict[str, int]:
        """What ``stats`` says of a node that never took part in a query."""
        return {f"aggregation_{name}": 0 for name in cls.COUNTERS}

    # -- input ---------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.kind is Kind.AGG_QUERY:
            self._on_query(message, source, now)
        elif message.kind is Kind.AGG_REPLY:
            self._on_reply(message, source, now)

    def _on_query(self, message: Envelope, source: str, now: float) -> None:
        key = (message.origin, message.message_id)
        sender = Peer(message.sender, source)
        if key in self._seen:  # a duplicate: the sender must not wait for us
            self.not_child += 1
            self._send_status(sender, key, NOT_CHILD, now)
            return
        name, params, reading, fanout, hop_timeout_ms, replies_min, segment = parse_query_body(
            message.body
        )
        try:
            function = self._functions.create_from_wire(name, params)
        except MalformedMessage:
            self.declined += 1  # the sender hears at once that nothing will come
            self._send_status(sender, key, DECLINED, now)
            raise
        config = self._config
        if len(self._pending) >= config.pending_max:
            self.overloaded += 1
            self.declined += 1
            self._send_status(sender, key, DECLINED, now)
            return
        self._seen.add(key)  # only now: a malformed copy must not hide a genuine one
        own = self._own(function, reading, now, segment)
        hops_left = min(message.hops_left, config.hops_max) - 1
        targets = self._targets(fanout, sender.node_id, segment) if hops_left > 0 else []
        budget_s = min(hop_timeout_ms / 1000.0, config.hop_timeout_s_max)
        if not targets:  # a leaf: answer at once
            coverage = (own[1], 0, 0)
            self._reply(
                key, sender, function, own[0], coverage=coverage, budget_s=budget_s, now=now
            )
            return
        self._host.send(targets, message.relayed(self._host.node_id, hops_left))
        query = _Query(function, own, sender, _ids(targets), min(replies_min, AGG_FANOUT_MAX))
        query.budget_s = budget_s
        self._wait(key, query, now + hops_left * budget_s, now)

    def _on_reply(self, message: Envelope, source: str, now: float) -> None:
        key, status, body = parse_reply_head(message.body)
        sender = message.sender
        if status == ACK:
            unacked = self._unacked.get(key)
            if unacked is not None and unacked[0].node_id == sender:
                del self._unacked[key]
            elif key not in self._seen:
                raise UnexpectedMessage("AGG_REPLY for no query this node knows", field="body")
            return  # else a second ACK, or one for a reply we gave up on
        query = self._pending.get(key)
        if query is None:
            if key not in self._seen:
                raise UnexpectedMessage("AGG_REPLY for no query this node knows", field="body")
            if status == VALUE:
                if sender in self._merged.get(key, ()):
                    self.duplicates += 1  # a copy whose first ACK was lost
                else:  # the query was answered here already: too late to merge
                    self.late += 1
                self._ack(sender, source, key, now)  # either way: no more copies
            return
        if status == VALUE and sender in query.merged:
            self.duplicates += 1
            self._ack(sender, source, key, now)
            return
        if sender not in query.waiting:
            raise UnexpectedMessage("AGG_REPLY from a peer this node did not ask", field="sender")
        if status == VALUE:
            child = query.function.decode(body[3])
            contributors = _wire_count(body[4], "contributors")
            missing = _wire_count(body[5], "missing")
            declined = _wire_count(body[6], "declined")
            query.partial = query.function.combine(query.partial, child)
            query.contributors = _capped(query.contributors + contributors)
            query.missing = _capped(query.missing + missing)
            query.declined = _capped(query.declined + declined)
            query.merged.add(sender)
            self._ack(sender, source, key, now)
        elif status == DECLINED:
            query.declined = _capped(query.declined + 1)
        query.waiting.discard(sender)
        if query.done():
            self._finish(key, now)

    def _ack(self, sender: int, source: str, key: QueryKey, now: float) -> None:
        """Tell a child its value reply arrived, so it sends no more copies."""
        self._send_status(Peer(sender, source), key, ACK, now)

    # -- the steps -----------------------------------------------------------

    def _own(
        self,
        function: AggregationFunction[Any, Any],
        reading: str,
        now: float,
        segment: Scope | None,
    ) -> tuple[object, int]:
        """This node's partial and contribution (1 or 0) for ``reading``."""
        provider = self._readings.get(reading)
        if provider is None:
            return function.identity(), 0
        host = self._host
        if segment is not None and not segment.admits(host.me):  # a relay only
            return function.identity(), 0
        try:
            value = provider(now)
            if value is None:
                return function.identity(), 0
            return function.lift_from(host.node_id, value), 1
        except Exception:  # the application's reading failed: this node adds nothing
            self.reading_errors += 1
            return function.identity(), 0

    def _targets(self, fanout: int, exclude: int, segment: Scope | None) -> list[Peer]:
        """Up to ``fanout`` peers (0: the whole view) with known ids, never ``exclude``.

        With a segment, peers within it first, then others to carry the query on.
        """
        fanout_max = self._config.fanout_max
        if fanout == 0:
            peers = [p for p in self._peers.neighbors() if p.node_id and p.node_id != exclude]
            if len(peers) > fanout_max:
                peers = self._host.rng.sample(peers, fanout_max)
            return peers
        count = min(fanout, fanout_max)
        sample = self._peers.sample
        if segment is None:
            return [p for p in sample(count, exclude) if p.node_id]
        chosen = [p for p in sample(count, exclude, segment) if p.node_id]
        if len(chosen) < count:  # too few of the segment in sight: others relay
            taken = {p.node_id for p in chosen}
            for peer in sample(count, exclude):
                if len(chosen) >= count:
                    break
                if peer.node_id and peer.node_id not in taken:
                    chosen.append(peer)
        return chosen

    def _wait(self, key: QueryKey, query: _Query, deadline: float, now: float) -> None:
        if query.done():  # nobody to wait for
            self._pending[key] = query
            self._finish(key, now)
            return
        self._pending[key] = query
        self._host.call_at(deadline, partial(self._expire, key, query))

    def _expire(self, key: QueryKey, query: _Query, now: float) -> None:
        if self._pending.get(key) is query:
            self._finish(key, now)

    def _finish(self, key: QueryKey, now: float) -> None:
        """Reply to the parent (or report to the origin's application), once."""
        query = self._pending.pop(key)
        unanswered = len(query.waiting)
        self.missing += unanswered
        missing = _capped(query.missing + unanswered)
        if query.merged:
            merged = self._merged
            merged[key] = query.merged
            if len(merged) > self._config.pending_max:
                del merged[next(iter(merged))]
        if query.parent is not None:
            coverage = (query.contributors, missing, query.declined)
            parent, function = query.parent, query.function
            self._reply(
                key,
                parent,
                function,
                query.partial,
                coverage=coverage,
                budget_s=query.budget_s,
                now=now,
            )
            return
        assert query.on_result is not None
        result = AggregateResult(
            query_id=key[1],
            function=query.name,
            reading=query.reading,
            value=query.function.finish(query.partial),
            contributors=query.contributors,
            missing=missing,
            declined=query.declined,
            started_at=query.started_at,
            finished_at=now,
            segment=query.segment,
            fanout=query.fanout,
        )
        query.on_result(result)

    def _reply(
        self,
        key: QueryKey,
        parent: Peer,
        function: AggregationFunction[Any, Any],
        value: object,
        *,
        coverage: tuple[int, int, int],
        budget_s: float,
        now: float,
    ) -> None:
        """Send ``parent`` the partial ``value`` and ``(contributors, missing, declined)``.

        Until the parent acknowledges it, the same reply goes again every quarter
        of a hop's budget, ``reply_retries`` times at most: the parent waits at
        least a budget longer than this node, so the copies come in time.
        """
        host = self._host
        body = [*key, VALUE, function.encode(value), *coverage]
        message = new_envelope(host, Kind.AGG_REPLY, body, now)
        if len(encode(message)) > host.message_bytes_max:
            self.oversized += 1
            self.declined += 1
            self._send_status(parent, key, DECLINED, now)
            return
        self.answered += 1
        host.send([parent], message)
        retries = self._config.reply_retries
        if retries and len(self._unacked) < self._config.pending_max:
            interval = budget_s / 4
            self._unacked[key] = (parent, message, retries, interval)
            host.call_at(now + interval, partial(self._resend, key, message))

    def _resend(self, key: QueryKey, message: Envelope, now: float) -> None:
        unacked = self._unacked.get(key)
        if unacked is None or unacked[1] is not message:
            return  # acknowledged
        parent, _, left, interval = unacked
        self.resent += 1
        self._host.send([parent], message)
        if left > 1:
            self._unacked[key] = (parent, message, left - 1, interval)
            self._host.call_at(now + interval, partial(self._resend, key, message))
        else:
            del self._unacked[key]

    def _send_status(self, peer: Peer, key: QueryKey, status: int, now: float) -> None:
        host = self._host
        host.send([peer], new_envelope(host, Kind.AGG_REPLY, [*key, status], now))


# -- bodies ------------------------------------------------------------------------------


def check_reading(name: object) -> None:
    """``LocalProtocolError`` unless ``name`` is a reading name (text, 1..64 bytes)."""
    if type(name) is not str or not 0 < len(name.encode()) <= READING_BYTES_MAX:
        raise LocalProtocolError(f"a reading name is text of 1..{READING_BYTES_MAX} bytes")


def as_segment(segment: object) -> Scope | None:
    """The ``Scope`` a caller's segment names; ``LocalProtocolError`` unless one can travel."""
    if segment is None:
        return None
    scope = Scope(group=segment) if isinstance(segment, str) else segment
    if not isinstance(scope, Scope):
        raise LocalProtocolError("a segment is a group name, a Scope or None")
    if scope.service is None and scope.group is None:
        return None  # admits every node: no segment
    for text, bytes_max, what in (
        (scope.service, SERVICE_BYTES_MAX, "service"),
        (scope.group, GROUP_BYTES_MAX, "group"),
    ):
        if text is not None and (type(text) is not str or not 0 < len(text.encode()) <= bytes_max):
            raise LocalProtocolError(f"a segment's {what} is text of 1..{bytes_max} bytes")
    return scope


def parse_query_body(
    body: object,
) -> tuple[str, dict[str, object], str, int, int, int, Scope | None]:
    """``[function, params, reading, fanout, hop_timeout_ms, replies_min(, segment)]``, checked."""
    if type(body) is not list or len(body) not in (6, 7):
        raise MalformedMessage(
            "AGG_QUERY body must be [function, params, reading, fanout, hop_timeout_ms, "
            "replies_min] or those and [service, group]",
            field="body",
        )
    name, params, reading, fanout, hop_timeout_ms, replies_min = body[:6]
    if type(name) is not str or len(name.encode()) > FUNCTION_NAME_BYTES_MAX:
        raise MalformedMessage("function must be a short text", field="body")
    if type(params) is not dict:
        raise MalformedMessage("params must be a map", field="body")
    if type(reading) is not str or not 0 < len(reading.encode()) <= READING_BYTES_MAX:
        raise MalformedMessage(
            f"reading must be text of 1..{READING_BYTES_MAX} bytes", field="body"
        )
    if type(fanout) is not int or not 0 <= fanout <= AGG_FANOUT_MAX:
        raise MalformedMessage(f"fanout must be in 0..{AGG_FANOUT_MAX}", field="body")
    if type(hop_timeout_ms) is not int or not 1 <= hop_timeout_ms <= HOP_TIMEOUT_MS_MAX:
        raise MalformedMessage(f"hop_timeout_ms must be in 1..{HOP_TIMEOUT_MS_MAX}", field="body")
    if type(replies_min) is not int or not 0 <= replies_min <= AGG_FANOUT_MAX:
        raise MalformedMessage(f"replies_min must be in 0..{AGG_FANOUT_MAX}", field="body")
    segment = _wire_segment(body[6]) if len(body) == 7 else None
    return name, params, reading, fanout, hop_timeout_ms, replies_min, segment


def _wire_segment(item: object) -> Scope:
    """``[service, group]``, each text or null, not both null (that is no segment)."""
    if type(item) is not list or len(item) != 2:
        raise MalformedMessage("a segment is [service, group]", field="body")
    service, group = item
    for text, bytes_max in ((service, SERVICE_BYTES_MAX), (group, GROUP_BYTES_MAX)):
        if text is not None and (type(text) is not str or not 0 < len(text.encode()) <= bytes_max):
            raise MalformedMessage(
                f"a segment's service and group are null or text of 1..{bytes_max} bytes",
                field="body",
            )
    if service is None and group is None:
        raise MalformedMessage("a segment names a service, a group or both", field="body")
    return Scope(service=service, group=group)


def parse_reply_head(body: object) -> tuple[QueryKey, int, list[object]]:
    """The query key and status of an ``AGG_REPLY``; the partial is its function's to decode."""
    if type(body) is not list or len(body) not in (3, 7):
        raise MalformedMessage(
            "AGG_REPLY body must be [origin, query_id, status, ...]", field="body"
        )
    origin, query_id, status = body[0], body[1], body[2]
    if (
        type(origin) is not int
        or type(query_id) is not int
        or not 0 < origin <= UINT64_MAX
        or not 0 <= query_id <= UINT64_MAX
    ):
        raise MalformedMessage("AGG_REPLY must name [origin, query_id]", field="body")
    if status not in (VALUE, NOT_CHILD, DECLINED, ACK) or type(status) is not int:
        raise MalformedMessage("AGG_REPLY status must be 0, 1, 2 or 3", field="body")
    if (len(body) == 7) != (status == VALUE):
        raise MalformedMessage("a VALUE reply has 7 items, the others 3", field="body")
    return (origin, query_id), status, body


def _wire_count(value: object, field: str) -> int:
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise MalformedMessage(f"expected a count in 0..{UINT64_MAX}", field=field)
    return value


def _capped(count: int) -> int:
    """A sum of counts; a hostile child cannot push it past the wire's range."""
    return min(count, UINT64_MAX)


def _ids(peers: list[Peer]) -> set[int]:
    return {peer.node_id for peer in peers}


def _collected(on_result: CollectCallback, result: AggregateResult) -> None:
    """Hand a collecting origin its ``CollectResult``."""
    collection = result.value
    assert isinstance(collection, Collection)  # ``collect`` checked the function it named
    on_result(
        CollectResult(
            query_id=result.query_id,
            reading=result.reading,
            segment=result.segment,
            values=collection.values,
            dropped=collection.dropped,
            cut=collection.cut,
            contributors=result.contributors,
            missing=result.missing,
            declined=result.declined,
            started_at=result.started_at,
            finished_at=result.finished_at,
            fanout=result.fanout,
        )
    )
