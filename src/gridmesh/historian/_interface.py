"""The ``Historian`` interface the Event Manager runtime calls, and its query cursor.

The interface is small on purpose, so that SQLite and PostgreSQL (and a test
double) are interchangeable:

* ``append(events)`` stores a batch in one transaction and returns only when
  the batch is durable: the broker acknowledges publishers after it returns.
  Events already stored (same ``(source, event_id)``) are skipped; the count
  of new ones is returned.
* ``query(filter, since_us=, until_us=, limit=, after=)`` returns at most
  ``limit`` events (``limit <= QUERY_ROWS_MAX``) on topics the filter matches,
  ``since_us <= time_us < until_us``, in ``(time_us, source, event_id)``
  order. The next page starts ``after=QueryCursor.of(page[-1])``: keyset
  paging, so page *k* costs the same as page 1 and a page never misses or
  repeats an event, whatever was appended or deleted in between.
* ``apply_retention(now_us)`` deletes events older than ``retention_s`` and the
  oldest beyond ``events_max``; ``count()``; ``close()``; ``with`` support.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from gridmesh.errors import LocalProtocolError
from gridmesh.protocols.pubsub import Event
from gridmesh.wire import UINT64_MAX

__all__ = [
    "APPEND_EVENTS_MAX",
    "QUERY_ROWS_DEFAULT",
    "QUERY_ROWS_MAX",
    "Historian",
    "QueryCursor",
    "wall_clock_us",
]

#: The most events one query returns; page with ``after`` for more.
QUERY_ROWS_MAX = 10_000
QUERY_ROWS_DEFAULT = 1_000
#: The most events one ``append`` takes: one transaction stays a bounded write.
APPEND_EVENTS_MAX = 100_000


def wall_clock_us() -> int:
    """The historian's clock for ``stored_us``: microseconds since the Unix epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class QueryCursor:
    """Where a page ended: the ``(time_us, source, event_id)`` of its last event."""

    time_us: int
    source: int
    event_id: int

    def __post_init__(self) -> None:
        for number in (self.time_us, self.source, self.event_id):
            if type(number) is not int or not 0 <= number <= UINT64_MAX:
                raise LocalProtocolError("a query cursor holds three integers in 0..2**64-1")

    @classmethod
    def of(cls, event: Event) -> QueryCursor:
        """The cursor that continues a query after ``event``."""
        return cls(event.time_us, event.source, event.event_id)


class Historian(Protocol):
    """What the Event Manager runtime needs from an event store (see module docstring)."""

    def append(self, events: Sequence[Event]) -> int:
        """Store ``events`` durably in one transaction; return how many were new."""
        ...

    def query(
        self,
        topic_filter: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int = QUERY_ROWS_DEFAULT,
        after: QueryCursor | None = None,
    ) -> list[Event]:
        """Events matching the filter and ``since_us <= time_us < until_us``, in time order."""
        ...

    def apply_retention(self, now_us: int) -> int:
        """Delete what retention no longer keeps; return how many events were deleted."""
        ...

    def count(self) -> int:
        """How many events are stored."""
        ...

    def close(self) -> None:
        """Release the database; later calls raise ``LocalProtocolError``. Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
