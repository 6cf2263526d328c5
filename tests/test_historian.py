"""The historian: events stored, deduplicated, queried by filter and time, retained, reopened.

Behaviour tests run against SQLite always and against PostgreSQL when a server
can be had (``GRIDMESH_TEST_POSTGRES_DSN``, or PostgreSQL's binaries and psycopg
here: the fixture starts a throw-away server on loopback). SQLite-only tests
(files, permissions, schema versions, locks) come after them.
"""

from __future__ import annotations

import ast
import contextlib
import os
import pwd
import random
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from typing import Any

import cbor2
import pytest
from pydantic import ValidationError

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.historian import (
    APPEND_EVENTS_MAX,
    QUERY_ROWS_MAX,
    SCHEMA_VERSION,
    Historian,
    HistorianConfig,
    HistorianError,
    QueryCursor,
    SqliteHistorian,
    _sqlite,
    open_historian,
)
from gridmesh.protocols.pubsub import Event
from gridmesh.topics import matches

UINT64_MAX = 2**64 - 1
STORED_US = 1_700_000_000_000_000
_ids = iter(range(1, 10**9))


def ev(
    topic: str,
    time_us: int,
    *,
    source: int = 1,
    event_id: int | None = None,
    value: object = 1.5,
    seq: int = 1,
    unit: str = "W",
) -> Event:
    return Event(
        topic, value, time_us, source, seq, next(_ids) if event_id is None else event_id, unit
    )


def order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: (e.time_us, e.source, e.event_id))


def every_page(store: Historian, topic_filter: str, limit: int, **kwargs: Any) -> list[Event]:
    """All events of a query, fetched ``limit`` at a time with cursors."""
    found: list[Event] = []
    after = None
    while True:
        page = store.query(topic_filter, limit=limit, after=after, **kwargs)
        assert len(page) <= limit
        found += page
        if len(page) < limit:
            return found
        after = QueryCursor.of(page[-1])


# --- a PostgreSQL server, when one can be had ------------------------------------------------


def _postgres_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN: from GRIDMESH_TEST_POSTGRES_DSN, or a server started here for the session."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'gridmesh[postgres]')")
    given = os.environ.get("GRIDMESH_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl, initdb) on PATH or under /usr/lib")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start the server as 'postgres'")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="gridmesh-pg-"))
    data = home / "data"
    if as_user:
        shutil.chown(home, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    steps = [
        [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        [
            str(binaries / "pg_ctl"),
            *("-D", str(data), "-w", "-t", "30", "-l", str(home / "log"), "start"),
            "-o",
            f"-k {home} -c listen_addresses=127.0.0.1 -p {port}",
        ],
    ]
    for step in steps:
        done = subprocess.run(as_user + step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            pytest.skip(f"could not start PostgreSQL: {done.stderr.strip()[-300:]}")
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        stop = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(as_user + stop, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _reset_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS gridmesh_events, gridmesh_historian")


Make = Callable[..., Historian]


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Opens historians of one backend on one fresh database; closes them after the test."""
    opened: list[Historian] = []
    dsn = None
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        _reset_postgres(dsn)

    def factory(**fields: Any) -> Historian:
        if dsn is None:
            config = HistorianConfig(path=tmp_path / "events.sqlite3", **fields)
        else:
            config = HistorianConfig(backend="postgres", dsn=dsn, **fields)
        store = open_historian(config, clock_us=lambda: STORED_US)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


# --- append and deduplication ----------------------------------------------------------------


def test_append_returns_new_events_and_ignores_duplicates_by_source_and_event_id(
    make: Make,
) -> None:
    store = make()
    first = [ev("a/b", 10, source=1, event_id=7), ev("a/b", 11, source=2, event_id=7)]
    assert store.append(first) == 2
    again = Event("a/other", "changed", 99, 1, 5, 7)  # same (source, event_id): the first stays
    assert store.append([again, ev("a/b", 12, source=1, event_id=8)]) == 1
    twice = ev("a/c", 13, source=3, event_id=1)
    assert store.append([twice, twice]) == 1  # a duplicate inside one batch
    assert store.append([]) == 0
    assert store.count() == 4
    assert store.query("#") == order([*first, ev("a/b", 12, source=1, event_id=8), twice])


def test_a_bad_event_fails_the_whole_batch_and_stores_nothing(make: Make) -> None:
    store = make()
    good = ev("a", 1)
    with pytest.raises(InvalidTopic):
        store.append([good, ev("a/+", 2)])
    with pytest.raises(LocalProtocolError, match="plain data"):
        store.append([good, ev("a", 2, value={1, 2})])
    with pytest.raises(LocalProtocolError, match="64 bits"):
        store.append([good, ev("a", 2, value=2**64)])
    with pytest.raises(LocalProtocolError, match="time_us"):
        store.append([good, ev("a", -1)])
    with pytest.raises(LocalProtocolError, match="event_id"):
        store.append([good, ev("a", 1, event_id=2**64)])
    with pytest.raises(LocalProtocolError, match="unit"):
        store.append([good, ev("a", 1, unit="k\x00W")])
    with pytest.raises(LocalProtocolError, match="Event"):
        store.append([good, ("a", 1)])  # type: ignore[list-item]
    assert store.count() == 0


def test_a_batch_larger_than_append_events_max_is_refused(make: Make) -> None:
    store = make()
    with pytest.raises(LocalProtocolError, match="append"):
        store.append([ev("a", 1)] * (APPEND_EVENTS_MAX + 1))


def test_values_come_back_as_the_wire_would_deliver_them(make: Make) -> None:
    store = make()
    values: list[object] = [
        None,
        True,
        -(2**63),
        UINT64_MAX,
        0.1,
        float("inf"),
        "Zähler ⚡",
        b"\x00\xff",
        [1, [2, [3]]],
        {"kW": 1.25, "nested": {"a": [None]}},
    ]
    events = [ev("v", time_us, value=value) for time_us, value in enumerate(values)]
    store.append([*events, ev("v", 100, value=(1, 2))])
    got = store.query("v")
    assert [e.value for e in got] == [*values, [1, 2]]  # a tuple comes back a list
    assert got[:-1] == events


# --- queries -------------------------------------------------------------------------------

TOPICS = [
    "MEASUREMENT/SENSOR/1234/PowerConsumption",
    "MEASUREMENT/SENSOR/1234/Voltage",
    "MEASUREMENT/SENSOR/77/PowerConsumption",
    "MEASUREMENT/SENSOR",
    "MEASUREMENT/SENSOR0",  # just above the prefix range of MEASUREMENT/SENSOR/
    "MEASUREMENT/SENSOR.",  # just below it
    "MEASUREMENT/SENSORS/1",
    "MEASUREMENT",
    "MEASUREMENT/",
    "COMMAND/DR/feeder-7",
    "$SYS/broker/load",
    "$SYS",
    "a",
    "a/",
    "a//b",
    "/a",
    "/",
    "Zähler/温度/1",
    "Zähler/温度/2/😀",
    "Zähler/x",
    "Zählerz",
]
FILTERS = [
    "#",
    "+",
    "+/+",
    "+/#",
    "MEASUREMENT/#",
    "MEASUREMENT/SENSOR/#",
    "MEASUREMENT/SENSOR/+",
    "MEASUREMENT/SENSOR/+/PowerConsumption",
    "MEASUREMENT/+/1234/#",
    "MEASUREMENT/SENSOR/*",  # LinkSmart's spelling of '#'
    "MEASUREMENT/SENSOR",
    "MEASUREMENT/",
    "$SYS/#",
    "$SYS/+/load",
    "a/#",
    "a/+",
    "+/a",
    "/#",
    "Zähler/#",
    "Zähler/温度/+",
    "Zähler/温度/+/😀",
    "nothing/#",
]


@pytest.fixture
def stocked(make: Make) -> tuple[Historian, list[Event]]:
    rng = random.Random(20260522)
    events = [
        ev(rng.choice(TOPICS), rng.randrange(0, 50), source=rng.randrange(1, 4)) for _ in range(600)
    ]
    store = make()
    assert store.append(events) == len(events)
    return store, events


@pytest.mark.parametrize("topic_filter", FILTERS)
def test_a_query_returns_exactly_what_the_filter_matches_in_time_order(
    stocked: tuple[Historian, list[Event]], topic_filter: str
) -> None:
    store, events = stocked
    expected = order([e for e in events if matches(topic_filter, e.topic)])
    assert store.query(topic_filter, limit=QUERY_ROWS_MAX) == expected
    assert every_page(store, topic_filter, 7) == expected


def test_the_dollar_rule_hides_system_topics_from_leading_wildcards(
    stocked: tuple[Historian, list[Event]],
) -> None:
    store, _ = stocked
    assert not [e for e in store.query("#", limit=QUERY_ROWS_MAX) if e.topic.startswith("$")]
    assert {e.topic for e in store.query("$SYS/#", limit=QUERY_ROWS_MAX)} == {
        "$SYS",
        "$SYS/broker/load",
    }


def test_a_multi_level_wildcard_matches_its_parent_level(make: Make) -> None:
    store = make()
    store.append([ev("a", 1), ev("a/b", 2), ev("ab", 3), ev("a0", 4), ev("a.", 5)])
    assert [e.topic for e in store.query("a/#")] == ["a", "a/b"]


@pytest.mark.parametrize(
    ("since_us", "until_us", "times"),
    [
        (None, None, [0, 5, 10, 10, 20]),
        (5, None, [5, 10, 10, 20]),
        (None, 10, [0, 5]),  # until is exclusive
        (5, 11, [5, 10, 10]),
        (10, 10, []),
        (21, None, []),
    ],
)
def test_a_time_range_includes_since_and_excludes_until(
    make: Make, since_us: int | None, until_us: int | None, times: list[int]
) -> None:
    store = make()
    store.append([ev("t", t, source=s) for t, s in [(20, 1), (10, 2), (0, 1), (10, 1), (5, 1)]])
    got = store.query("t", since_us=since_us, until_us=until_us)
    assert [e.time_us for e in got] == times
    assert [(e.time_us, e.source) for e in got if e.time_us == 10] == [(10, 1), (10, 2)][
        : times.count(10)
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        {"since_us": 11, "until_us": 10},
        {"since_us": -1},
        {"until_us": 2**64},
        {"since_us": 1.5},
        {"since_us": True},
        {"limit": 0},
        {"limit": QUERY_ROWS_MAX + 1},
        {"after": (1, 2, 3)},
    ],
)
def test_invalid_query_arguments_raise_local_protocol_error(
    make: Make, arguments: dict[str, Any]
) -> None:
    store = make()
    with pytest.raises(LocalProtocolError):
        store.query("a/#", **arguments)


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a+", "a/b#", "", "a\x00"])
def test_an_invalid_filter_raises_invalid_topic(make: Make, topic_filter: str) -> None:
    with pytest.raises(InvalidTopic):
        make().query(topic_filter)


def test_paging_with_a_cursor_neither_repeats_nor_misses_across_equal_times(make: Make) -> None:
    store = make()
    events = [ev("p/x", t // 3, source=t % 3 + 1, event_id=1000 - t) for t in range(90)]
    store.append(events)
    for limit in (1, 2, 3, 10, 90, 91):
        assert every_page(store, "p/#", limit) == order(events)
    page = store.query("p/#", limit=5, since_us=10, until_us=20)
    rest = store.query("p/#", since_us=10, until_us=20, after=QueryCursor.of(page[-1]))
    assert page + rest == order([e for e in events if 10 <= e.time_us < 20])


def test_paging_stays_exact_when_most_rows_in_range_do_not_match(make: Make) -> None:
    # "+/x" has no literal prefix: SQL returns every row and Python drops all
    # but one in a hundred, across many chunks of rows.
    store = make()
    events = [ev("noise/y" if i % 100 else "m/x", i) for i in range(3000)]
    store.append(events)
    wanted = [e for e in events if e.topic == "m/x"]
    assert every_page(store, "+/x", 4) == wanted
    assert store.query("+/x", limit=QUERY_ROWS_MAX) == wanted


@pytest.mark.parametrize(("ratio", "by_topic"), [(0, False), (10**12, True)])
@pytest.mark.parametrize("window", [{}, {"since_us": 20}, {"since_us": 10, "until_us": 30}])
def test_both_sqlite_walks_of_a_prefix_range_give_the_same_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ratio: int,
    by_topic: bool,
    window: dict[str, int],
) -> None:
    # SORT_COST_RATIO 0 forces the walk in time order, a huge one the sorted
    # walk of the topic index: each must give exactly the brute-force answer.
    monkeypatch.setattr(_sqlite, "SORT_COST_RATIO", ratio)
    walks: list[bool] = []
    fetch = _sqlite._fetch

    def spy(*args: Any, by_topic: bool) -> list[tuple[object, ...]]:
        walks.append(by_topic)
        return fetch(*args, by_topic=by_topic)

    monkeypatch.setattr(_sqlite, "_fetch", spy)
    rng = random.Random(7)
    events = [ev(rng.choice(TOPICS), rng.randrange(0, 50)) for _ in range(400)]
    with sqlite_store(tmp_path / "walks.sqlite3") as store:
        store.append(events)
        for topic_filter in [f for f in FILTERS if f[0] not in "+#"]:
            walks.clear()
            low, high = window.get("since_us", 0), window.get("until_us", 2**64)
            expected = order(
                [e for e in events if matches(topic_filter, e.topic) and low <= e.time_us < high]
            )
            assert store.query(topic_filter, limit=QUERY_ROWS_MAX, **window) == expected
            assert every_page(store, topic_filter, 3, **window) == expected
            if expected and ("+" in topic_filter or "#" in topic_filter):
                assert set(walks) == {by_topic}, topic_filter


def test_a_page_continues_where_it_left_off_after_more_appends(make: Make) -> None:
    store = make()
    store.append([ev("s", t) for t in range(10)])
    page = store.query("s", limit=6)
    store.append([ev("s", 3), ev("s", 100)])  # one before the cursor, one after
    rest = store.query("s", after=QueryCursor.of(page[-1]))
    assert [e.time_us for e in page] == [0, 1, 2, 3, 4, 5]
    assert [e.time_us for e in rest] == [6, 7, 8, 9, 100]


def test_unsigned_64_bit_extremes_are_stored_and_ordered_faithfully(make: Make) -> None:
    store = make()
    edges = [0, 1, 2**63 - 1, 2**63, UINT64_MAX - 1, UINT64_MAX]
    events = [
        Event("u", value, time_us, source, seq, event_id)
        for value, (time_us, source, seq, event_id) in enumerate(
            [(t, t, t, t) for t in edges] + [(t, UINT64_MAX - t, 0, 2**62) for t in edges]
        )
    ]
    assert store.append(events) == len(events)
    assert store.query("u", limit=QUERY_ROWS_MAX) == order(events)
    assert [e.time_us for e in store.query("u", since_us=2**63)] == sorted(edges[3:] * 2)
    top = store.query("u", since_us=UINT64_MAX)
    assert [e.key for e in top] == [(0, 2**62), (UINT64_MAX, UINT64_MAX)]
    assert [e.time_us for e in store.query("u", until_us=1)] == [0, 0]
    assert every_page(store, "u", 1) == order(events)


def test_a_cursor_holds_unsigned_64_bit_integers() -> None:
    assert QueryCursor.of(Event("a", 0, UINT64_MAX, 0, 0, UINT64_MAX)) == QueryCursor(
        UINT64_MAX, 0, UINT64_MAX
    )
    with pytest.raises(LocalProtocolError):
        QueryCursor(-1, 0, 0)
    with pytest.raises(LocalProtocolError):
        QueryCursor(0, 2**64, 0)


def test_unicode_topics_and_units_round_trip_and_narrow_correctly(make: Make) -> None:
    store = make()
    cyrillic = "Z\u00e4hl\u0435r"  # a Cyrillic "\u0435" where "Zähler" has a Latin "e"
    topics = ["Zähler/温度/1", "Zähler/温度/2/😀", "Zählerz", "Zähler", "Zähler/x", f"{cyrillic}/1"]
    events = [ev(topic, i, unit="m³/h") for i, topic in enumerate(topics)]
    store.append(events)
    assert store.query("Zähler/#") == [events[0], events[1], events[3], events[4]]
    assert store.query("Zähler/温度/+/😀") == [events[1]]
    assert store.query(f"{cyrillic}/+") == [events[5]]


# --- retention -----------------------------------------------------------------------------


def test_retention_deletes_events_older_than_retention_s(make: Make) -> None:
    store = make(retention_s=10)
    now_us = 100_000_000
    cutoff_us = now_us - 10_000_000
    times = [0, cutoff_us - 1, cutoff_us, cutoff_us + 1, now_us, now_us + 5]
    store.append([ev("r", t) for t in times])
    assert store.apply_retention(now_us) == 2
    assert [e.time_us for e in store.query("r")] == times[2:]
    assert store.apply_retention(now_us) == 0
    assert store.apply_retention(5_000_000) == 0  # a cutoff before the epoch deletes nothing
    assert store.count() == 4


def test_retention_keeps_at_most_events_max_dropping_the_oldest(make: Make) -> None:
    store = make(events_max=5)
    events = [ev("r", t, source=2 - t % 2) for t in range(12)]
    store.append(events)
    assert store.apply_retention(1) == 7
    assert store.query("r") == order(events)[7:]
    assert store.apply_retention(1) == 0


def test_retention_by_age_and_count_together_report_the_total(make: Make) -> None:
    store = make(retention_s=1, events_max=3)
    store.append([ev("r", t * 1_000_000) for t in range(10)])  # t = 0 .. 9 s
    assert store.apply_retention(5_000_000) == 7  # 0-3 s by age, then 4-6 s by count
    assert [e.time_us for e in store.query("r")] == [7_000_000, 8_000_000, 9_000_000]


def test_retention_deletes_in_chunks(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    from gridmesh.historian import _skeleton

    monkeypatch.setattr(_skeleton, "RETENTION_CHUNK_ROWS", 7)
    store = make(retention_s=1, events_max=20)
    store.append([ev("r", t) for t in range(2_000_000, 2_000_050)])
    store.append([ev("r", t) for t in range(30)])
    assert store.apply_retention(2_000_000) == 30 + 30
    assert [e.time_us for e in store.query("r")] == list(range(2_000_030, 2_000_050))


def test_retention_rejects_a_time_that_is_not_unsigned_64_bit(make: Make) -> None:
    with pytest.raises(LocalProtocolError):
        make().apply_retention(-1)


# --- life cycle ----------------------------------------------------------------------------


def test_a_closed_historian_refuses_calls_and_closing_twice_is_harmless(make: Make) -> None:
    store = make()
    with store:
        store.append([ev("a", 1)])
    store.close()
    for call in (
        lambda: store.append([ev("a", 2)]),
        lambda: store.query("#"),
        store.count,
        lambda: store.apply_retention(1),
    ):
        with pytest.raises(LocalProtocolError, match="closed"):
            call()


def test_reopening_finds_every_event(make: Make) -> None:
    events = [ev(f"m/{i % 5}", i, source=i % 3) for i in range(500)]
    with make() as store:
        store.append(events[:250])
        store.append(events[250:])
    with make() as store:
        assert store.count() == 500
        assert store.query("#", limit=QUERY_ROWS_MAX) == order(events)
        assert store.append(events) == 0


# --- SQLite: the file ------------------------------------------------------------------------


def sqlite_store(path: Path, **fields: Any) -> SqliteHistorian:
    return SqliteHistorian(HistorianConfig(path=path, **fields), clock_us=lambda: STORED_US)


def test_the_sqlite_file_runs_in_wal_mode_with_the_configured_synchronous(tmp_path: Path) -> None:
    for name, level in (("full", 2), ("normal", 1)):
        path = tmp_path / f"{name}.sqlite3"
        with sqlite_store(path, synchronous=name) as store:
            assert store._db is not None
            assert store._db.execute("PRAGMA synchronous").fetchone() == (level,)
            with contextlib.closing(sqlite3.connect(path)) as other:
                assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_rows_hold_stored_us_from_the_historian_clock_and_biased_integers(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite3"
    with sqlite_store(path) as store:
        store.append([Event("a", 1, 0, UINT64_MAX, 3, 2**63)])
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT source, event_id, seq, time_us, stored_us FROM events").fetchone()
    assert row == (2**63 - 1, 0, 3 - 2**63, -(2**63), STORED_US)


def test_files_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.sqlite3"
    old = os.umask(0)  # prove the mode is set, not inherited from the umask
    try:
        with sqlite_store(path) as store:
            store.append([ev("a", 1)])
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(modes, 0o600)


def test_a_memory_name_is_an_ordinary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with sqlite_store(Path(":memory:")) as store:
        store.append([ev("a", 1)])
    with sqlite_store(Path(":memory:")) as store:
        assert store.count() == 1
    assert (tmp_path / ":memory:").is_file()


@pytest.mark.parametrize(
    "where", ["missing/dir/events.sqlite3", "a-file/events.sqlite3", "a-directory"]
)
def test_an_unwritable_path_raises_historian_error_naming_it(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-directory").mkdir()
    path = tmp_path / where
    with pytest.raises(HistorianError, match="unwritable") as caught:
        sqlite_store(path)
    assert str(path) in str(caught.value)
    assert caught.value.reason == "unwritable"
    assert caught.value.location == str(path)


def test_a_file_that_is_not_a_database_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"not a database, just text " * 100)
    with pytest.raises(HistorianError) as caught:
        sqlite_store(path)
    assert caught.value.reason == "corrupt"
    assert str(path) in str(caught.value)


def test_a_newer_schema_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite_store(path) as store:
        store.append([ev("a", 1)])
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.commit()
    with pytest.raises(HistorianError, match="newer gridmesh") as caught:
        sqlite_store(path)
    assert caught.value.reason == "schema"
    assert str(path) in str(caught.value)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite3"
    sqlite_store(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 0")
        db.commit()
    with pytest.raises(HistorianError, match="unknown schema version 0"):
        sqlite_store(path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE events (x)")
        db.commit()
    with pytest.raises(HistorianError, match="not a gridmesh historian") as caught:
        sqlite_store(path)
    assert caught.value.reason == "schema"


def test_a_value_that_is_not_plain_data_in_the_file_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "tampered.sqlite3"
    with sqlite_store(path) as store:
        store.append([ev("a", 1, event_id=5), ev("a", 2, event_id=6)])
    with contextlib.closing(sqlite3.connect(path)) as db:
        tagged = cbor2.dumps(cbor2.CBORTag(4242, 1))
        db.execute("UPDATE events SET value = ? WHERE time_us = ?", (tagged, 2 - 2**63))
        db.commit()
    with sqlite_store(path) as store:
        assert len(store.query("a", limit=1)) == 1  # the good row before it still reads
        with pytest.raises(HistorianError, match="not plain data") as caught:
            store.query("a")
    assert caught.value.reason == "corrupt"


def test_a_database_locked_by_another_writer_raises_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    with sqlite_store(path, busy_timeout_s=0.05) as store:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(HistorianError, match="locked") as caught:
                store.append([ev("a", 1)])
            assert caught.value.reason == "locked"
            assert store.query("#") == []  # readers are not blocked in WAL mode
            other.execute("ROLLBACK")
        assert store.append([ev("a", 1)]) == 1


def test_the_backend_must_match_the_class(tmp_path: Path) -> None:
    config = HistorianConfig(backend="postgres", dsn="host=127.0.0.1")
    with pytest.raises(LocalProtocolError):
        SqliteHistorian(config)


# --- configuration -------------------------------------------------------------------------


def test_the_default_configuration_is_a_durable_sqlite_file() -> None:
    config = HistorianConfig()
    assert (config.backend, config.synchronous) == ("sqlite", "full")
    assert config.retention_s == 30 * 24 * 3600
    assert config.events_max == 10_000_000


@pytest.mark.parametrize(
    "fields",
    [
        {"retension_s": 10},
        {"backend": "postgres"},
        {"dsn": "host=x"},
        {"backend": "mysql"},
        {"retention_s": 0},
        {"events_max": 0},
        {"synchronous": "off"},
        {"busy_timeout_s": -1},
    ],
)
def test_the_configuration_refuses_misspelt_or_out_of_range_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HistorianConfig(**fields)


def test_the_configuration_is_frozen() -> None:
    with pytest.raises(ValidationError):
        HistorianConfig().retention_s = 5  # type: ignore[misc]


# --- layering ------------------------------------------------------------------------------


def test_no_protocol_core_imports_the_historian() -> None:
    source = Path(__file__).resolve().parent.parent / "src" / "gridmesh"
    cores = [source / "topics.py", *(source / "protocols").rglob("*.py")]
    cores += [*(source / "wire").rglob("*.py")]
    for path in cores:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not [n for n in names if n.startswith("gridmesh.historian")], path


# --- PostgreSQL specifics --------------------------------------------------------------------


def test_the_postgres_backend_without_psycopg_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridmesh.historian import _postgres

    def missing() -> None:
        raise ImportError("No module named 'psycopg'")

    monkeypatch.setattr(_postgres, "_psycopg", missing)
    config = HistorianConfig(backend="postgres", dsn="host=127.0.0.1")
    with pytest.raises(HistorianError, match=r"gridmesh\[postgres\]") as caught:
        open_historian(config)
    assert caught.value.reason == "unavailable"


def test_an_unreachable_postgres_server_is_unavailable_and_the_password_never_shown() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} user=u password=s3cret connect_timeout=2"
    with pytest.raises(HistorianError) as caught:
        open_historian(HistorianConfig(backend="postgres", dsn=dsn))
    assert caught.value.reason == "unavailable"
    assert f"port={port}" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_postgres_refuses_a_newer_schema(postgres_dsn: str) -> None:
    import psycopg

    _reset_postgres(postgres_dsn)
    config = HistorianConfig(backend="postgres", dsn=postgres_dsn)
    open_historian(config).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE gridmesh_historian SET number = number + 1")
    with pytest.raises(HistorianError, match="newer gridmesh") as caught:
        open_historian(config)
    assert caught.value.reason == "schema"


def test_postgres_reconnects_after_losing_its_connection(postgres_dsn: str) -> None:
    import psycopg

    _reset_postgres(postgres_dsn)
    with open_historian(HistorianConfig(backend="postgres", dsn=postgres_dsn)) as store:
        store.append([ev("a", 1)])
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        with pytest.raises(HistorianError) as caught:
            store.append([ev("a", 2)])
        assert caught.value.reason == "unavailable"
        assert store.append([ev("a", 3)]) == 1  # a fresh connection
        assert [e.time_us for e in store.query("a")] == [1, 3]
