"""What both backends do the same way: the checks around append and query, and retention.

A backend subclasses ``StoreSkeleton`` and supplies the database work:
``_insert`` (one transaction, durable on return), ``_select`` (one page of a
checked query), ``_delete_chunk`` (at most ``chunk`` of the oldest events,
optionally only those older than a stored time) and ``count``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from gridmesh.errors import LocalProtocolError
from gridmesh.historian._config import HistorianConfig
from gridmesh.historian._interface import APPEND_EVENTS_MAX, QUERY_ROWS_DEFAULT, QueryCursor
from gridmesh.historian._query import QueryPlan, check_uint64, plan_query
from gridmesh.historian._rows import BIAS, Row, row_from_event
from gridmesh.protocols.pubsub import Event

__all__ = ["RETENTION_CHUNK_ROWS", "StoreSkeleton"]

#: Retention deletes at most this many events per transaction, so appends interleave.
RETENTION_CHUNK_ROWS = 20_000


class StoreSkeleton(ABC):
    """The backend-independent half of a ``Historian``."""

    config: HistorianConfig
    _clock_us: Callable[[], int]

    def append(self, events: Sequence[Event]) -> int:
        """Store ``events`` in one transaction, durable on return; how many were new."""
        if len(events) > APPEND_EVENTS_MAX:
            raise LocalProtocolError(f"{len(events)} events in one append > {APPEND_EVENTS_MAX}")
        stored_us = self._clock_us()
        return self._insert([row_from_event(event, stored_us) for event in events])

    def query(
        self,
        topic_filter: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        limit: int = QUERY_ROWS_DEFAULT,
        after: QueryCursor | None = None,
    ) -> list[Event]:
        """Events on topics ``topic_filter`` matches, ``since_us <= time_us < until_us``."""
        plan = plan_query(topic_filter, since_us, until_us, limit)
        if after is not None and not isinstance(after, QueryCursor):
            raise LocalProtocolError(f"after must be a QueryCursor, got {type(after).__name__}")
        return self._select(plan, after)

    def apply_retention(self, now_us: int) -> int:
        """Delete events with ``time_us`` older than ``retention_s``, then the oldest
        beyond ``events_max``; return how many were deleted."""
        check_uint64(now_us, "now_us")
        cutoff_us = now_us - self.config.retention_s * 1_000_000
        deleted = 0
        if cutoff_us > 0:
            deleted += self._delete_in_chunks(cutoff_us - BIAS, None)
        excess = self.count() - self.config.events_max
        if excess > 0:
            deleted += self._delete_in_chunks(None, excess)
        return deleted

    def _delete_in_chunks(self, older_than: int | None, rows_max: int | None) -> int:
        deleted = 0
        while rows_max is None or deleted < rows_max:
            chunk = RETENTION_CHUNK_ROWS
            if rows_max is not None:
                chunk = min(chunk, rows_max - deleted)
            removed = self._delete_chunk(older_than, chunk)
            deleted += removed
            if removed < chunk:
                break
        return deleted

    # -- what a backend supplies ----------------------------------------------------

    @abstractmethod
    def count(self) -> int:
        """How many events are stored."""

    @abstractmethod
    def _insert(self, rows: list[Row]) -> int:
        """Store ``rows`` in one transaction, durable on return; how many were new."""

    @abstractmethod
    def _select(self, plan: QueryPlan, after: QueryCursor | None) -> list[Event]:
        """One page of a checked query."""

    @abstractmethod
    def _delete_chunk(self, older_than: int | None, chunk: int) -> int:
        """Delete at most ``chunk`` of the oldest events (stored ``time_us < older_than``)."""
