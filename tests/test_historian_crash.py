"""Nothing acknowledged is lost: a writer killed with SIGKILL mid-stream, then the file reopened.

A child process appends batches to a SQLite historian in a loop and, each time
``append`` returns, prints the event ids it acknowledged and flushes. The test
kills it with SIGKILL at a seeded moment (no handler runs, no ``close``, the
process may be inside a transaction), reopens the file, and checks that every
acknowledged event is there with its content. Three kills in a row on the same
file, so a writer also restarts on a file that a killed writer left behind.
This proves durability against the death of the process; surviving a power
loss needs ``synchronous = full``, which no test can prove by killing a process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridmesh.historian import QUERY_ROWS_MAX, HistorianConfig, QueryCursor, SqliteHistorian
from gridmesh.protocols.pubsub import Event

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

SRC = Path(__file__).resolve().parent.parent / "src"
KILLS = 3
SEED = 20260522

WRITER = """
import sys
from gridmesh.historian import HistorianConfig, SqliteHistorian
from gridmesh.protocols.pubsub import Event

path, synchronous, first_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = SqliteHistorian(HistorianConfig(path=path, synchronous=synchronous))
out = sys.stdout
next_id = first_id
batch = 0
while True:
    batch += 1
    size = 1 + (batch * 37) % 200
    events = [
        Event(f"MEASUREMENT/SENSOR/{i % 13}/PowerConsumption", {"kW": i * 0.5, "batch": batch},
              i, 1 + i % 5, i, i, "kW")
        for i in range(next_id, next_id + size)
    ]
    store.append(events)
    next_id += size
    out.write(" ".join(str(event.event_id) for event in events) + "\\n")
    out.flush()
"""


def expected_event(event_id: int, batch: int) -> Event:
    i = event_id
    return Event(
        f"MEASUREMENT/SENSOR/{i % 13}/PowerConsumption",
        {"kW": i * 0.5, "batch": batch},
        i,
        1 + i % 5,
        i,
        i,
        "kW",
    )


def run_and_kill(path: Path, synchronous: str, first_id: int, acks_wanted: int) -> list[int]:
    """Start a writer, kill it after ``acks_wanted`` acknowledged batches; its acknowledged ids."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-c", WRITER, str(path), synchronous, str(first_id)]
    log = path.with_suffix(".stderr")
    with (
        log.open("wb") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env) as writer,
    ):
        assert writer.stdout is not None
        lines: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(lines) < acks_wanted and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            lines.append(line)
        alive = writer.poll() is None
        writer.kill()  # SIGKILL: no handler, no close, no flush
        rest = writer.stdout.read()
        writer.wait(timeout=10)
    errors = log.read_bytes()
    assert alive, f"the writer died by itself: {errors.decode(errors='replace')[-2000:]}"
    assert writer.returncode == -signal.SIGKILL
    assert len(lines) == acks_wanted, f"only {len(lines)} acknowledged batches before the deadline"
    # What the writer printed before it died; a last line cut short was not an acknowledgement.
    complete = b"".join(lines) + rest
    return [int(word) for line in complete.split(b"\n")[:-1] for word in line.split()]


def stored_events(path: Path) -> dict[int, Event]:
    found: dict[int, Event] = {}
    with SqliteHistorian(HistorianConfig(path=path)) as store:
        after = None
        while True:
            page = store.query("#", limit=QUERY_ROWS_MAX, after=after)
            found.update((event.event_id, event) for event in page)
            if len(page) < QUERY_ROWS_MAX:
                return found
            after = QueryCursor.of(page[-1])


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_every_acknowledged_event_survives_sigkill_of_the_writer(
    tmp_path: Path, synchronous: str
) -> None:
    rng = random.Random(SEED)
    path = tmp_path / "crash.sqlite3"
    acknowledged: list[int] = []
    first_id = 1
    for kill in range(KILLS):
        acks_wanted = rng.randrange(5, 40)
        acked = run_and_kill(path, synchronous, first_id, acks_wanted)
        assert acked, f"seed {SEED}, kill {kill}: nothing acknowledged"
        acknowledged += acked
        stored = stored_events(path)
        lost = [event_id for event_id in acknowledged if event_id not in stored]
        assert not lost, (
            f"seed {SEED}, synchronous {synchronous}, kill {kill}: {len(lost)} acknowledged "
            f"events lost, first {lost[:10]}"
        )
        # Content, not only presence: the batch number is in each value.
        for event_id in acked:
            event = stored[event_id]
            assert event == expected_event(event_id, event.value["batch"])  # type: ignore[index]
        # The next writer starts above anything this one may have written unacknowledged.
        first_id = max(stored) + 1
