"""The PostgreSQL historian: the same interface, for a site that runs a server.

Theory of operation
-------------------
Rows, query plans, paging and the checks on every argument are the ones of the
SQLite backend (``_rows``, ``_query``); only the SQL differs:

* ``topic`` is ``text COLLATE "C"``, so ``<`` and ``>=`` compare bytes (code
  points) as SQLite does and the literal-prefix range of ``_query`` is exact
  whatever the database's default collation;
* ``append`` is one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO
  NOTHING`` (one round trip, one transaction; its row count is the number of
  new events), committed with ``synchronous_commit = on`` forced for the
  session, so ``append`` returns after the server flushed the commit to its
  WAL. Durability then rests on the server's ``fsync = on`` (the default);
* the schema version lives in the table ``gridmesh_historian``; the schema is
  created under a transaction-level advisory lock, so two nodes starting
  against an empty database do not race.

``psycopg`` (version 3) is imported only when a ``PostgresHistorian`` is
made, so ``gridmesh.historian`` works without it. A lost connection fails the
call with ``HistorianError`` (reason ``unavailable``) and the next call
reconnects. ``HistorianConfig.synchronous`` applies to SQLite only.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from gridmesh.errors import LocalProtocolError
from gridmesh.historian._config import HistorianConfig
from gridmesh.historian._errors import HistorianError
from gridmesh.historian._interface import (
    QueryCursor,
    wall_clock_us,
)
from gridmesh.historian._query import QueryPlan, StoredKey, run_query
from gridmesh.historian._rows import SCHEMA_VERSION, Row
from gridmesh.historian._skeleton import StoreSkeleton
from gridmesh.protocols.pubsub import Event

__all__ = ["PostgresHistorian"]

_LOCK_KEY = 0x47524D48  # pg_advisory_xact_lock key: "GRMH"
_SCHEMA = (
    # source, event_id, seq, time_us: unsigned 64-bit values minus 2**63 (see _rows).
    """CREATE TABLE gridmesh_events (
        source bigint NOT NULL,
        event_id bigint NOT NULL,
        seq bigint NOT NULL,
        topic text COLLATE "C" NOT NULL,
        time_us bigint NOT NULL,
        unit text NOT NULL,
        value bytea NOT NULL,
        stored_us bigint NOT NULL,
        PRIMARY KEY (source, event_id)
    )""",
    "CREATE INDEX gridmesh_events_by_time ON gridmesh_events (time_us, source, event_id)",
    "CREATE INDEX gridmesh_events_by_topic ON gridmesh_events (topic, time_us, source, event_id)",
    "CREATE TABLE gridmesh_historian (name text PRIMARY KEY, number bigint NOT NULL)",
    f"INSERT INTO gridmesh_historian VALUES ('schema_version', {SCHEMA_VERSION})",
)
_INSERT = """INSERT INTO gridmesh_events
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[],
                         %s::bigint[], %s::text[], %s::bytea[], %s::bigint[])
    ON CONFLICT DO NOTHING"""
_COLUMNS = "source, event_id, seq, topic, time_us, unit, value"
_ORDER = "ORDER BY time_us, source, event_id"


def _psycopg() -> Any:
    return importlib.import_module("psycopg")


class PostgresHistorian(StoreSkeleton):
    """Events in a PostgreSQL database; see the module docstring."""

    def __init__(
        self, config: HistorianConfig, *, clock_us: Callable[[], int] = wall_clock_us
    ) -> None:
        if config.backend != "postgres" or not config.dsn:
            raise LocalProtocolError("PostgresHistorian needs backend 'postgres' and a dsn")
        self.config = config
        self._dsn = config.dsn
        self._clock_us = clock_us
        self._lock = threading.Lock()
        self._closed = False
        self._conn: Any = None
        try:
            self._pg = _psycopg()
        except ImportError:
            raise HistorianError(
                "postgres",
                "the postgres backend needs psycopg: pip install 'gridmesh[postgres]'",
                reason="unavailable",
            ) from None
        self.location = self._redacted(config.dsn)
        try:
            with self._lock, self._guard("open") as conn:
                self._open_schema(conn)
        except BaseException:
            self.close()
            raise

    # -- the Historian interface ------------------------------------------------------------

    def _insert(self, rows: list[Row]) -> int:
        with self._lock, self._guard("append") as conn:
            if not rows:
                return 0
            columns = [list(column) for column in zip(*rows, strict=True)]
            with conn.transaction():
                cursor = conn.execute(_INSERT, columns)
            return int(cursor.rowcount)

    def _select(self, plan: QueryPlan, after: QueryCursor | None) -> list[Event]:
        with self._lock, self._guard("query") as conn, conn.transaction():

            def fetch(
                plan: QueryPlan, key: StoredKey | None, rows_max: int
            ) -> list[tuple[object, ...]]:
                sql, params = _select(plan, key, rows_max)
                return list(conn.execute(sql, params).fetchall())

            return run_query(plan, after, fetch, self.location)

    def count(self) -> int:
        """How many events are stored."""
        with self._lock, self._guard("count") as conn:
            (number,) = conn.execute("SELECT count(*) FROM gridmesh_events").fetchone()
            conn.commit()
            return int(number)

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise ``LocalProtocolError``."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- inside -----------------------------------------------------------------------------

    def _delete_chunk(self, older_than: int | None, chunk: int) -> int:
        params: tuple[int, ...]
        if older_than is None:
            select, params = f"SELECT source, event_id FROM gridmesh_events {_ORDER}", (chunk,)
        else:
            select = f"SELECT source, event_id FROM gridmesh_events WHERE time_us < %s {_ORDER}"
            params = (older_than, chunk)
        with self._lock, self._guard("apply_retention") as conn, conn.transaction():
            cursor = conn.execute(
                f"DELETE FROM gridmesh_events WHERE (source, event_id) IN ({select} LIMIT %s)",
                params,
            )
        return int(cursor.rowcount)

    def _open_schema(self, conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            exists = conn.execute("SELECT to_regclass('gridmesh_historian')").fetchone()[0]
            if exists is None:
                if conn.execute("SELECT to_regclass('gridmesh_events')").fetchone()[0]:
                    raise HistorianError(
                        self.location,
                        "a table gridmesh_events exists without gridmesh_historian: "
                        "not a gridmesh historian schema",
                        reason="schema",
                    )
                for statement in _SCHEMA:
                    conn.execute(statement)
                return
            row = conn.execute(
                "SELECT number FROM gridmesh_historian WHERE name = 'schema_version'"
            ).fetchone()
        version = None if row is None else row[0]
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            detail = (
                f"schema version {version} was written by a newer gridmesh; "
                f"this one reads version {SCHEMA_VERSION}"
                if newer
                else f"unknown schema version {version}; expected {SCHEMA_VERSION}"
            )
            raise HistorianError(self.location, detail, reason="schema")

    def _connect(self) -> Any:
        conn = self._pg.connect(self._dsn, autocommit=False, connect_timeout=10)
        conn.execute("SET synchronous_commit = on")
        timeout_ms = int(self.config.busy_timeout_s * 1000)
        conn.execute(f"SET lock_timeout = {timeout_ms}")
        conn.commit()
        return conn

    @contextmanager
    def _guard(self, action: str) -> Iterator[Any]:
        """A live connection (made again after a failure); errors become ``HistorianError``."""
        if self._closed:
            raise LocalProtocolError(f"the historian at {self.location} is closed")
        pg = self._pg
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = None
                self._conn = self._connect()
            yield self._conn
        except pg.Error as exc:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()  # a failed transaction or a lost server: start afresh
            reason = "unavailable" if isinstance(exc, pg.OperationalError) else "database"
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HistorianError(
                self.location, f"{action} failed: {detail}", reason=reason
            ) from None

    def _redacted(self, dsn: str) -> str:
        try:
            parts = self._pg.conninfo.conninfo_to_dict(dsn)
        except self._pg.Error as exc:
            raise HistorianError(
                "postgres", f"the dsn is not valid: {exc}", reason="unavailable"
            ) from None
        parts.pop("password", None)
        return "postgres:" + " ".join(f"{key}={value}" for key, value in sorted(parts.items()))


def _select(plan: QueryPlan, key: StoredKey | None, rows_max: int) -> tuple[str, list[object]]:
    conditions: list[str] = []
    params: list[object] = []
    if plan.exact is not None:
        conditions.append("topic = %s")
        params.append(plan.exact)
    elif plan.lower is not None:
        conditions.append("topic >= %s AND topic < %s")
        params += (plan.lower, plan.upper)
    if plan.since is not None:
        conditions.append("time_us >= %s")
        params.append(plan.since)
    if plan.until is not None:
        conditions.append("time_us < %s")
        params.append(plan.until)
    if key is not None:
        conditions.append("(time_us, source, event_id) > (%s, %s, %s)")
        params += key
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    params.append(rows_max)
    return f"SELECT {_COLUMNS} FROM gridmesh_events{where} {_ORDER} LIMIT %s", params
