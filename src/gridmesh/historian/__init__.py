"""The Historian: the Event Manager's durable event store (seed 001, section III.B.3).

LinkSmart's Event Manager keeps what it publishes so that applications can ask
for the past ("every ``MEASUREMENT/SENSOR/+/PowerConsumption`` of feeder 7
since midnight"). This package stores ``Event`` objects in SQLite by default
(``SqliteHistorian``, the standard library's ``sqlite3``, no server) or in
PostgreSQL (``PostgresHistorian``, ``pip install 'gridmesh[postgres]'``), behind
one ``Historian`` interface. ``open_historian(config)`` picks by
``HistorianConfig.backend``.

It is I/O, so it lives outside the sans-I/O cores: ``gridmesh.protocols`` never
imports it; the runtime that drives an Event Manager calls ``append`` and
acknowledges publishers only once it returned. docs/HISTORIAN.md has the
guarantees, the schema and the query semantics.
"""

from __future__ import annotations

from collections.abc import Callable

from gridmesh.historian._config import (
    EVENTS_MAX_LIMIT,
    RETENTION_S_DEFAULT,
    RETENTION_S_MAX,
    HistorianConfig,
)
from gridmesh.historian._errors import HistorianError
from gridmesh.historian._interface import (
    APPEND_EVENTS_MAX,
    QUERY_ROWS_DEFAULT,
    QUERY_ROWS_MAX,
    Historian,
    QueryCursor,
    wall_clock_us,
)
from gridmesh.historian._postgres import PostgresHistorian
from gridmesh.historian._rows import SCHEMA_VERSION
from gridmesh.historian._sqlite import SqliteHistorian

__all__ = [
    "APPEND_EVENTS_MAX",
    "EVENTS_MAX_LIMIT",
    "QUERY_ROWS_DEFAULT",
    "QUERY_ROWS_MAX",
    "RETENTION_S_DEFAULT",
    "RETENTION_S_MAX",
    "SCHEMA_VERSION",
    "Historian",
    "HistorianConfig",
    "HistorianError",
    "PostgresHistorian",
    "QueryCursor",
    "SqliteHistorian",
    "open_historian",
]


def open_historian(
    config: HistorianConfig, *, clock_us: Callable[[], int] = wall_clock_us
) -> Historian:
    """The historian ``config`` describes, open; ``HistorianError`` if it cannot be.

    ``clock_us`` stamps ``stored_us``; tests pass a fake one.
    """
    if config.backend == "postgres":
        return PostgresHistorian(config, clock_us=clock_us)
    return SqliteHistorian(config, clock_us=clock_us)
