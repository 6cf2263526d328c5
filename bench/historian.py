"""Historian benchmark: appends per second, and query latency over 10^6 stored events.

    .venv/bin/python bench/historian.py                      # all, about 3 minutes
    .venv/bin/python bench/historian.py --stored 100000      # a quick look
    .venv/bin/python bench/historian.py --dir /var/tmp       # put the files on another disk

``append``: events/s into a fresh SQLite file, for batches of 1, 100 and 1000
events per ``append`` (one transaction each: the group commit), with
``synchronous`` FULL (fsync per commit: survives a power loss) and NORMAL (WAL
synced at checkpoints: survives a process kill). Each run appends for at least
``--seconds``; the figure is the median of ``--runs`` runs, with the spread.

``query``: ``--stored`` events (default 10^6) on 4,000 sensor topics
``MEASUREMENT/SENSOR/<n>/<quantity>`` plus 1% ``COMMAND/DR/feeder-<k>``, one
per millisecond, are appended once (NORMAL, batches of 10,000); then the
latency of one page (``limit`` 1,000, the median of ``--runs`` x 5 calls) for
filters from an exact topic to ``#``, the rate of reading a whole 10% time
window page by page, ``count()``, and one ``apply_retention`` that deletes the
oldest 10%. The machine and its load are printed and written with the results
to ``bench/results/historian.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gridmesh import __version__
from gridmesh.historian import HistorianConfig, QueryCursor, SqliteHistorian
from gridmesh.protocols.pubsub import Event

QUANTITIES = ("PowerConsumption", "Voltage", "Current", "Frequency")
SENSORS = 1000
BASE_US = 1_700_000_000_000_000


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "gridmesh": __version__,
    }


def make_events(count: int, *, start_id: int = 0, rng: random.Random) -> list[Event]:
    events = []
    for i in range(start_id, start_id + count):
        if rng.random() < 0.01:
            topic = f"COMMAND/DR/feeder-{rng.randrange(50)}"
        else:
            topic = f"MEASUREMENT/SENSOR/{rng.randrange(SENSORS)}/{rng.choice(QUANTITIES)}"
        value = {"v": round(rng.uniform(0, 500), 3)}
        events.append(Event(topic, value, BASE_US + i * 1000, 1 + i % 97, i, i, "W"))
    return events


def bench_append(directory: Path, runs: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    rng = random.Random(1)
    pool = make_events(200_000, rng=rng)
    for batch in (1, 100, 1000):
        for sync in ("full", "normal"):
            rates = []
            for run in range(runs):
                path = directory / f"append-{batch}-{sync}-{run}.sqlite3"
                config = HistorianConfig(path=path, synchronous=sync)  # type: ignore[arg-type]
                with SqliteHistorian(config) as store:
                    appended = 0
                    start = time.perf_counter()
                    while time.perf_counter() - start < seconds or appended < 2 * batch:
                        chunk = pool[appended % len(pool) : appended % len(pool) + batch]
                        if len(chunk) < batch:  # fresh ids beyond the pool
                            chunk = make_events(batch, start_id=10**9 + appended, rng=rng)
                        store.append(chunk)
                        appended += batch
                    elapsed = time.perf_counter() - start
                rates.append(appended / elapsed)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            row = {
                "batch": batch,
                "synchronous": sync,
                "events_per_s": round(statistics.median(rates)),
                "runs": [round(rate) for rate in rates],
            }
            rows.append(row)
            print(
                f"append  batch {batch:>5}  synchronous {sync:<6}  "
                f"{row['events_per_s']:>9,} events/s  (runs {row['runs']})",
                flush=True,
            )
    return rows


def timed(repeats: int, function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Median milliseconds of ``repeats`` calls of ``function(*args, **kwargs)``, and a result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def bench_query(directory: Path, stored: int, runs: int) -> dict[str, Any]:
    path = directory / "query.sqlite3"
    config = HistorianConfig(path=path, synchronous="normal")
    rng = random.Random(2)
    start = time.perf_counter()
    with SqliteHistorian(config) as store:
        for first in range(0, stored, 10_000):
            store.append(make_events(min(10_000, stored - first), start_id=first, rng=rng))
    fill_s = time.perf_counter() - start
    size_bytes = path.stat().st_size
    print(
        f"stored {stored:,} events in {fill_s:.1f} s ({stored / fill_s:,.0f} events/s, "
        f"batches of 10,000, NORMAL); file {size_bytes / 2**20:.0f} MiB",
        flush=True,
    )
    end_us = BASE_US + stored * 1000
    window_us = (stored // 10) * 1000
    queries = [
        ("exact topic", "MEASUREMENT/SENSOR/17/Voltage", {}),
        ("one sensor, '#'", "MEASUREMENT/SENSOR/17/#", {}),
        ("one quantity, '+'", "MEASUREMENT/SENSOR/+/Voltage", {}),
        ("sparse prefix 1%", "COMMAND/DR/#", {}),
        ("everything under a root", "MEASUREMENT/#", {}),
        ("no prefix", "+/+/+/Frequency", {}),
        ("'#', last 10%", "#", {"since_us": end_us - window_us}),
        (
            "one quantity, last 10%",
            "MEASUREMENT/SENSOR/+/Voltage",
            {"since_us": end_us - window_us},
        ),
        (
            "exact topic, last 10%",
            "MEASUREMENT/SENSOR/17/Voltage",
            {"since_us": end_us - window_us},
        ),
    ]
    results: dict[str, Any] = {
        "stored": stored,
        "fill_s": round(fill_s, 1),
        "file_bytes": size_bytes,
    }
    pages = []
    with SqliteHistorian(HistorianConfig(path=path)) as store:
        for label, topic_filter, window in queries:
            store.query(topic_filter, limit=1000, **window)  # warm the page cache
            ms, page = timed(runs * 5, store.query, topic_filter, limit=1000, **window)
            pages.append(
                {
                    "query": label,
                    "filter": topic_filter,
                    **window,
                    "ms": round(ms, 2),
                    "rows": len(page),
                }
            )
            print(
                f"query   {label:<26} {topic_filter:<32} {ms:8.2f} ms  ({len(page)} rows)",
                flush=True,
            )
        results["first_page_limit_1000"] = pages

        def read_window(topic_filter: str) -> int:
            total, after = 0, None
            while True:
                page = store.query(
                    topic_filter, since_us=end_us - window_us, limit=1000, after=after
                )
                total += len(page)
                if len(page) < 1000:
                    return total
                after = QueryCursor.of(page[-1])

        scans = []
        for topic_filter in ("#", "MEASUREMENT/SENSOR/+/Voltage"):
            ms, total = timed(runs, read_window, topic_filter)
            scans.append(
                {
                    "filter": topic_filter,
                    "rows": total,
                    "ms": round(ms, 1),
                    "rows_per_s": round(total / ms * 1000),
                }
            )
            print(
                f"page through the last 10% with {topic_filter!r}: {total:,} rows in {ms:.0f} ms "
                f"({total / ms * 1000:,.0f} rows/s)",
                flush=True,
            )
        results["window_scan_limit_1000"] = scans
        ms, count = timed(runs, store.count)
        results["count_ms"] = round(ms, 1)
        print(f"count() = {count:,} in {ms:.1f} ms", flush=True)
    retained = HistorianConfig(path=path, events_max=stored - stored // 10)
    with SqliteHistorian(retained) as store:
        start = time.perf_counter()
        deleted = store.apply_retention(end_us)
        ms = (time.perf_counter() - start) * 1000
    results["retention"] = {
        "deleted": deleted,
        "ms": round(ms),
        "rows_per_s": round(deleted / ms * 1000),
    }
    print(f"apply_retention deleted the oldest {deleted:,} in {ms:.0f} ms (FULL)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="per append run")
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go")
    parser.add_argument("--out", type=Path, default=Path("bench/results/historian.json"))
    parser.add_argument("--skip-append", action="store_true")
    args = parser.parse_args()
    info = machine()
    print("machine:", json.dumps(info), flush=True)
    with tempfile.TemporaryDirectory(prefix="gridmesh-historian-", dir=args.dir) as tmp:
        directory = Path(tmp)
        report: dict[str, Any] = {
            "machine": info,
            "directory": str(args.dir or tempfile.gettempdir()),
        }
        if not args.skip_append:
            report["append"] = bench_append(directory, args.runs, args.seconds)
        report["query"] = bench_query(directory, args.stored, args.runs)
    report["command"] = " ".join([".venv/bin/python", "bench/historian.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
