"""Planning and paging a topic-filter query, the same for every backend.

Theory of operation
-------------------
SQL cannot evaluate an MQTT-style filter (``+`` one level, ``#`` any number
including none, topics starting with ``$`` hidden from filters that start with
a wildcard), and a second implementation of those rules in SQL would drift from
``gridmesh.topics``. So a query runs in two stages:

1. **SQL narrows** by the filter's *literal prefix*, the levels before its first
   wildcard, to one range of the topic index. ``MEASUREMENT/SENSOR/+/x`` has the
   prefix ``MEASUREMENT/SENSOR`` followed by ``+``, and every topic it can match
   lies in ``["MEASUREMENT/SENSOR/", "MEASUREMENT/SENSOR0")`` (``0`` is the
   character after ``/``). Text compares byte-wise in SQLite and under
   ``COLLATE "C"`` in PostgreSQL, and UTF-8 byte order is code-point order, so
   the range is exact for every Unicode topic. A prefix followed by ``#`` also
   matches the parent level itself (``a/#`` matches ``a``), so its range starts
   at the parent: ``["a", "a0")``, which also holds the few siblings that extend
   the last literal level with a character below ``0`` (``a-1``, ``a.b``); one
   range keeps the plan a single index scan, and stage 2 drops them. A filter
   without wildcards is an equality; one that starts with a wildcard has no
   prefix, and SQL narrows by time only.
2. **Python decides** with ``gridmesh.topics.matches`` on every row SQL returns,
   once per distinct topic (a query remembers up to ``VERDICTS_MAX`` verdicts).

Paging stays exact when Python drops rows: rows come in chunks, in the order of
the result, each chunk starting strictly after the last *row* (matched or not)
of the one before, until ``limit`` events matched or SQL ran out. Memory is
bounded by one chunk plus one page; time is bounded by the rows in the time
range that SQL could not rule out, which is why the prefix matters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.historian._errors import HistorianError
from gridmesh.historian._interface import QUERY_ROWS_MAX, QueryCursor
from gridmesh.historian._rows import BIAS, event_from_row
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import matches, validate_topic_filter
from gridmesh.wire import UINT64_MAX

__all__ = ["QueryPlan", "StoredKey", "check_uint64", "plan_query", "run_query"]

#: ``(time_us, source, event_id)`` as stored (biased): the order of every result.
StoredKey = tuple[int, int, int]
#: Rows fetched per round trip: at least this many, so a small page with a
#: sparse filter does not cost one round trip per few rows.
CHUNK_ROWS_MIN = 256
#: Topics whose match a query remembers (a historian holds few topics, many times).
VERDICTS_MAX = 65_536


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """What SQL can do for one query; the backend turns it into a statement."""

    topic_filter: str  # normalized by gridmesh.topics
    exact: str | None  # the filter has no wildcard: topic = exact
    lower: str | None  # topic >= lower ...
    upper: str | None  # ... and topic < upper
    since: int | None  # stored time_us >= since
    until: int | None  # stored time_us < until
    limit: int

    @property
    def chunk_rows(self) -> int:
        return min(QUERY_ROWS_MAX, max(self.limit, CHUNK_ROWS_MIN))


def check_uint64(value: object, name: str) -> int:
    """``value`` if it is an integer in 0..2**64-1; ``LocalProtocolError`` otherwise."""
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise LocalProtocolError(f"{name} must be an integer in 0..2**64-1, got {value!r}")
    return value


def plan_query(
    topic_filter: str, since_us: int | None, until_us: int | None, limit: int
) -> QueryPlan:
    """Check a query's arguments (``InvalidTopic``, ``LocalProtocolError``) and plan it."""
    normalized = validate_topic_filter(topic_filter)
    if type(limit) is not int or not 1 <= limit <= QUERY_ROWS_MAX:
        raise LocalProtocolError(f"limit must be an integer in 1..{QUERY_ROWS_MAX}, got {limit!r}")
    since = None if since_us is None else check_uint64(since_us, "since_us")
    until = None if until_us is None else check_uint64(until_us, "until_us")
    if since is not None and until is not None and since > until:
        raise LocalProtocolError(f"since_us={since} is after until_us={until}")
    levels = normalized.split("/")
    wild = [i for i, level in enumerate(levels) if level in ("+", "#")]
    exact = lower = upper = None
    if not wild:
        exact = normalized
    elif wild[0] > 0:
        literal = "/".join(levels[: wild[0]])
        # "0" is the character after "/"; '#' also matches the parent level itself.
        lower = literal if levels[wild[0]] == "#" else literal + "/"
        upper = literal + "0"
    return QueryPlan(
        normalized,
        exact,
        lower,
        upper,
        None if since is None else since - BIAS,
        None if until is None else until - BIAS,
        limit,
    )


#: ``fetch(plan, after, rows_max)``: at most ``rows_max`` rows that SQL lets through,
#: strictly after ``after`` in ``(time_us, source, event_id)`` order, in that order,
#: each ``(source, event_id, seq, topic, time_us, unit, value)`` as stored.
Fetch = Callable[[QueryPlan, StoredKey | None, int], Sequence[tuple[object, ...]]]


def run_query(
    plan: QueryPlan, after: QueryCursor | None, fetch: Fetch, location: str
) -> list[Event]:
    """Fetch chunks until ``plan.limit`` events matched or the range is exhausted."""
    key: StoredKey | None = None
    if after is not None:
        key = (after.time_us - BIAS, after.source - BIAS, after.event_id - BIAS)
    chunk_rows = plan.chunk_rows
    found: list[Event] = []
    verdicts: dict[str, bool] = {}  # topics repeat: match each once per query
    while True:
        rows = fetch(plan, key, chunk_rows)
        for row in rows:
            topic = row[3]
            verdict = verdicts.get(topic)  # type: ignore[call-overload]
            if verdict is None:
                if len(verdicts) >= VERDICTS_MAX:
                    verdicts.clear()
                verdict = verdicts[topic] = _matches(plan.topic_filter, topic, location)  # type: ignore[index]
            if verdict:
                found.append(event_from_row(row, location))
                if len(found) == plan.limit:
                    return found
        if len(rows) < chunk_rows:
            return found
        last = rows[-1]
        key = (last[4], last[0], last[1])  # type: ignore[assignment]


def _matches(topic_filter: str, topic: object, location: str) -> bool:
    try:
        if type(topic) is str:
            return matches(topic_filter, topic)
    except InvalidTopic:
        pass  # only a name that append() refused can get here
    raise HistorianError(
        location, f"a stored topic is not a topic name: {topic!r:.80}", reason="corrupt"
    )
