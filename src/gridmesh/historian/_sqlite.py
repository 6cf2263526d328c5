"""The SQLite historian: the default event store, one file, no server.

Theory of operation
-------------------
**Durability.** The database runs in WAL mode. ``append`` writes its batch in
one transaction (``BEGIN IMMEDIATE``, one ``executemany``, ``COMMIT``: a group
commit) and returns only after ``COMMIT`` returned, so the runtime
acknowledges publishers only for events that are in the WAL. With
``synchronous = full`` (the default) the commit also waits for ``fsync`` of
the WAL: an acknowledged event survives a ``kill -9`` *and* a power loss or
kernel crash. With ``synchronous = normal`` the WAL is synced only at
checkpoints: a committed transaction is in the operating system's page cache,
which survives the death of the process (``kill -9``, a segfault, an OOM kill)
but not of the machine. ``bench/historian.py`` measures what the fsync costs.

**Schema.** One table, ``events``, keyed by ``(source, event_id)`` (a rowid
table, so rows go in at the end of the b-tree and age-ordered deletes walk an
index); ``events_by_time (time_us, source, event_id)`` serves time-range
queries, paging and retention; ``events_by_topic (topic, time_us, source,
event_id)`` serves exact topics and narrow prefixes (``_scan_by_topic`` picks
the walk for a prefix by a capped count of its rows). Integers are biased into
the signed range (see ``_rows``). The file carries ``PRAGMA application_id``
(``GRMH``) and ``PRAGMA user_version`` (``SCHEMA_VERSION``), both written in the
transaction that creates the schema. Opening checks them: a file of a newer
schema, an unknown version, or another application's database raises
``HistorianError`` (reason ``schema``) and is left untouched.

**The file** is created with mode 0600 (SQLite creates ``-wal`` and ``-shm``
with the database's mode), before SQLite opens it with ``mode=rw``, so SQLite
never creates it with the process's umask and never interprets the name
(``:memory:`` is a file here). With ``synchronous = full`` the directory is
synced after the file is created, so the file itself survives a power loss.

**Concurrency.** One ``SqliteHistorian`` serializes its calls with a lock, so
the runtime may call it from a worker thread (an ``fsync`` should not stall the
event loop). Another process may read the file meanwhile (WAL readers never
block the writer); a second writer waits up to ``busy_timeout_s`` and then gets
``HistorianError`` (reason ``locked``). Retention deletes in transactions of
``RETENTION_CHUNK_ROWS`` and releases the lock between them, so appends are not
held up for a whole pass.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

from gridmesh.errors import LocalProtocolError
from gridmesh.historian._config import HistorianConfig
from gridmesh.historian._errors import HistorianError
from gridmesh.historian._interface import (
    QueryCursor,
    wall_clock_us,
)
from gridmesh.historian._query import QueryPlan, StoredKey, run_query
from gridmesh.historian._rows import SCHEMA_VERSION, Row
from gridmesh.historian._skeleton import RETENTION_CHUNK_ROWS, StoreSkeleton  # re-exported
from gridmesh.protocols.pubsub import Event

__all__ = ["APPLICATION_ID", "RETENTION_CHUNK_ROWS", "SqliteHistorian"]

#: ``PRAGMA application_id``: "GRMH", so ``file(1)`` and this module know the file.
APPLICATION_ID = 0x47524D48
#: Rows one retention transaction deletes.
#: Reading a row in time order and testing its topic costs about this many
#: times reading one key of the covering topic index (measured: 0.2 vs 1 us);
#: ``_scan_by_topic`` weighs the two walks with it.
SORT_COST_RATIO = 5
#: The WAL is truncated to this after a checkpoint (it grows during big batches).
WAL_BYTES_MAX = 64 * 1024 * 1024

_SCHEMA = (
    # source, event_id, seq, time_us: unsigned 64-bit values minus 2**63 (see _rows).
    """CREATE TABLE events (
        source INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        topic TEXT NOT NULL,
        time_us INTEGER NOT NULL,
        unit TEXT NOT NULL,
        value BLOB NOT NULL,
        stored_us INTEGER NOT NULL,
        PRIMARY KEY (source, event_id)
    )""",
    "CREATE INDEX events_by_time ON events (time_us, source, event_id)",
    "CREATE INDEX events_by_topic ON events (topic, time_us, source, event_id)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_INSERT = "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_COLUMNS = "source, event_id, seq, topic, time_us, unit, value"
_ORDER = "ORDER BY time_us, source, event_id"
# Two subqueries: each is one b-tree descent; "min(rowid), max(rowid)" scans.
_ROWID_SPAN = "SELECT (SELECT min(rowid) FROM events), (SELECT max(rowid) FROM events)"
# Primary result codes (https://www.sqlite.org/rescode.html) -> HistorianError.reason.
_REASONS = {
    3: "unwritable",  # SQLITE_PERM
    5: "locked",  # SQLITE_BUSY
    6: "locked",  # SQLITE_LOCKED
    8: "unwritable",  # SQLITE_READONLY
    10: "unwritable",  # SQLITE_IOERR
    11: "corrupt",  # SQLITE_CORRUPT
    13: "unwritable",  # SQLITE_FULL
    14: "unwritable",  # SQLITE_CANTOPEN
    26: "corrupt",  # SQLITE_NOTADB
}


class SqliteHistorian(StoreSkeleton):
    """Events in one SQLite file; see the module docstring for the guarantees."""

    def __init__(
        self, config: HistorianConfig, *, clock_us: Callable[[], int] = wall_clock_us
    ) -> None:
        if config.backend != "sqlite":
            raise LocalProtocolError(
                f"SqliteHistorian needs backend 'sqlite', not {config.backend!r}"
            )
        self.config = config
        self.path = Path(config.path)
        self.location = str(self.path)
        self._clock_us = clock_us
        self._lock = threading.Lock()
        self._create_file()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path.absolute().as_uri() + "?mode=rw",
                uri=True,
                timeout=config.busy_timeout_s,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # calls are serialized by self._lock
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from None
        try:
            self._open_schema()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    # -- the Historian interface ------------------------------------------------------------

    def _insert(self, rows: list[Row]) -> int:
        with self._lock, self._guard("append") as db:
            if not rows:
                return 0
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            db.executemany(_INSERT, rows)
            db.execute("COMMIT")
            return db.total_changes - before

    def _select(self, plan: QueryPlan, after: QueryCursor | None) -> list[Event]:
        with self._lock, self._guard("query") as db:
            db.execute("BEGIN")  # one snapshot for every chunk of this page
            try:
                by_topic = self._scan_by_topic(db, plan)

                def fetch(
                    plan: QueryPlan, key: StoredKey | None, rows_max: int
                ) -> list[tuple[object, ...]]:
                    return _fetch(db, plan, key, rows_max, by_topic=by_topic)

                return run_query(plan, after, fetch, self.location)
            finally:
                if db.in_transaction:  # an error may have ended it already
                    db.execute("COMMIT")

    def count(self) -> int:
        """How many events are stored (a scan of the smallest index)."""
        with self._lock, self._guard("count") as db:
            (number,) = db.execute("SELECT count(*) FROM events").fetchone()
            return int(number)

    def close(self) -> None:
        """Close the database; idempotent. Later calls raise ``LocalProtocolError``."""
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None

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

    def _scan_by_topic(self, db: sqlite3.Connection, plan: QueryPlan) -> bool:
        """Whether to walk the topic index (then sort by time) rather than the time index.

        An exact topic walks the topic index, where its rows are already in time
        order; a filter without a literal prefix walks the time index. For a
        prefix range, a rough cost model decides (see ``SORT_COST_RATIO``): the
        topic walk reads every key in the range once per chunk, R keys; the
        time walk reads rows until a chunk is full, about chunk x N / R rows of
        N, or every row of the time window, if that is fewer. Capped counts on
        the covering indexes measure R and the window, never more keys than the
        cheaper walk would read.
        """
        if plan.exact is not None or plan.lower is None:
            return plan.exact is not None
        low, high = db.execute(_ROWID_SPAN).fetchone()
        stored = 0 if low is None else high - low + 1  # rowids grow: about N
        threshold = math.isqrt(SORT_COST_RATIO * plan.chunk_rows * stored) + 1
        in_range = _capped_count(db, "events_by_topic", plan, threshold, time=False)
        if in_range >= threshold:
            return False
        if plan.since is None and plan.until is None:
            return True
        cap = in_range // max(SORT_COST_RATIO, 1) + 1
        return _capped_count(db, "events_by_time", plan, cap, time=True) >= cap

    def _delete_chunk(self, older_than: int | None, chunk: int) -> int:
        params: tuple[int, ...]
        if older_than is None:
            select, params = f"SELECT rowid FROM events {_ORDER} LIMIT ?", (chunk,)
        else:
            select = f"SELECT rowid FROM events WHERE time_us < ? {_ORDER} LIMIT ?"
            params = (older_than, chunk)
        with self._lock, self._guard("apply_retention") as db:
            db.execute("BEGIN IMMEDIATE")
            cursor = db.execute(f"DELETE FROM events WHERE rowid IN ({select})", params)
            db.execute("COMMIT")
        return int(cursor.rowcount)

    def _create_file(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            existed = self.path.exists()
            os.close(os.open(self.path, flags, 0o600))
            if not existed and self.config.synchronous == "full":
                _sync_directory(self.path.absolute().parent)
        except OSError as exc:
            raise HistorianError(
                self.location,
                f"cannot create or open the database file: {exc.strerror or exc}",
                reason="unwritable",
            ) from None

    def _open_schema(self) -> None:
        with self._guard("open") as db:
            fresh = self._check_schema(db)
            (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise HistorianError(
                    self.location, f"WAL journal mode refused (mode {mode!r})", reason="unwritable"
                )
            db.execute(f"PRAGMA synchronous = {self.config.synchronous.upper()}")
            db.execute(f"PRAGMA journal_size_limit = {WAL_BYTES_MAX}")
            if fresh:
                db.execute("BEGIN IMMEDIATE")
                if self._check_schema(db):  # no other process created it meanwhile
                    for statement in _SCHEMA:
                        db.execute(statement)
                db.execute("COMMIT")

    def _check_schema(self, db: sqlite3.Connection) -> bool:
        """True for an empty file; raises unless the file holds a schema this code reads."""
        (application_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if application_id == APPLICATION_ID:
            if version > SCHEMA_VERSION:
                detail = (
                    f"schema version {version} was written by a newer gridmesh; "
                    f"this one reads version {SCHEMA_VERSION}"
                )
            elif version != SCHEMA_VERSION:
                detail = f"unknown schema version {version}; expected {SCHEMA_VERSION}"
            else:
                return False
            raise HistorianError(self.location, detail, reason="schema")
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and version == 0 and tables == 0:
            return True
        raise HistorianError(
            self.location,
            f"not a gridmesh historian database (application_id {application_id:#x}, "
            f"user_version {version}, {tables} schema objects)",
            reason="schema",
        )

    @contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        """The open connection; any SQLite error becomes a ``HistorianError``, rolled back."""
        db = self._db
        if db is None:
            raise LocalProtocolError(f"the historian at {self.location} is closed")
        try:
            yield db
        except sqlite3.Error as exc:
            if db.in_transaction:
                with suppress(sqlite3.Error):  # the original error is the one to report
                    db.execute("ROLLBACK")
            raise self._error(exc, action) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _error(self, exc: sqlite3.Error, action: str) -> HistorianError:
        code = getattr(exc, "sqlite_errorcode", None)
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        reason = _REASONS.get(code & 0xFF, "database") if isinstance(code, int) else "database"
        return HistorianError(self.location, f"{action} failed: {exc} ({name})", reason=reason)


def _where(plan: QueryPlan, after: StoredKey | None) -> tuple[str, list[object]]:
    """The WHERE conditions of a plan, with their parameters."""
    conditions = ["1"]
    params: list[object] = []
    if plan.exact is not None:
        conditions.append("topic = ?")
        params.append(plan.exact)
    elif plan.lower is not None:
        conditions.append("topic >= ? AND topic < ?")
        params += (plan.lower, plan.upper)
    if plan.since is not None:
        conditions.append("time_us >= ?")
        params.append(plan.since)
    if plan.until is not None:
        conditions.append("time_us < ?")
        params.append(plan.until)
    if after is not None:
        conditions.append("(time_us, source, event_id) > (?, ?, ?)")
        params += after
    return " AND ".join(conditions), params


def _capped_count(
    db: sqlite3.Connection, index: str, plan: QueryPlan, cap: int, *, time: bool
) -> int:
    """Rows of the prefix range (``time=False``) or the time window, counting to ``cap``."""
    if time:
        narrowed = QueryPlan(plan.topic_filter, None, None, None, plan.since, plan.until, 1)
    else:
        narrowed = QueryPlan(plan.topic_filter, None, plan.lower, plan.upper, None, None, 1)
    conditions, params = _where(narrowed, None)
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY {index} WHERE {conditions} LIMIT ?)"
    )
    (rows,) = db.execute(sql, (*params, cap)).fetchone()
    return int(rows)


def _fetch(
    db: sqlite3.Connection,
    plan: QueryPlan,
    after: StoredKey | None,
    rows_max: int,
    *,
    by_topic: bool,
) -> list[tuple[object, ...]]:
    conditions, params = _where(plan, after)
    params.append(rows_max)
    if by_topic and plan.exact is None:
        # Sort the keys of the range on the covering topic index, then read
        # only the rows that made the chunk.
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE rowid IN (SELECT rowid FROM events "
            f"INDEXED BY events_by_topic WHERE {conditions} {_ORDER} LIMIT ?) {_ORDER}"
        )
    else:
        index = "events_by_topic" if by_topic else "events_by_time"
        sql = (
            f"SELECT {_COLUMNS} FROM events INDEXED BY {index} WHERE {conditions} {_ORDER} LIMIT ?"
        )
    return db.execute(sql, params).fetchall()


def _sync_directory(directory: Path) -> None:
    """Make a new directory entry durable (POSIX needs an fsync of the directory)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
