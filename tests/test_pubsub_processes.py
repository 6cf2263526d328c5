"""The Event Manager on real processes: failover under kill -9, and the historian's durability.

Event Managers and subscribers are ``gridmesh node`` processes on loopback; the
publisher is a ``UdpNode`` in this process, so the test knows exactly which
events the flow acknowledged. Subscribers print every event as a JSON line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridmesh.historian import HistorianConfig, QueryCursor, open_historian
from gridmesh.node import NodeConfig
from gridmesh.protocols.pubsub import EventManagerRef, PubSubConfig
from gridmesh.runtime import UdpNode
from gridmesh.runtime._cluster import free_udp_ports

HOST = "127.0.0.1"
RATE_PER_S = 1000
PUBLISH_S = 4.0
KILL_AT_S = 2.0


def start_node(
    node_id: int, port: int, config: Path, log: Path, *filters: str
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "gridmesh",
        "node",
        "--listen",
        f"{HOST}:{port}",
        "--id",
        str(node_id),
        "--config",
        str(config),
        "--quiet",
    ]
    for text in filters:
        command += ["--subscribe", text]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def flow_config(tmp_path: Path, ports: dict[int, int], *, historian: int | None = None) -> Path:
    managers = ", ".join(f'{{node_id = {i}, address = "{HOST}:{ports[i]}"}}' for i in sorted(ports))
    text = f"[pubsub]\nevent_managers = [{managers}]\n"
    if historian is not None:
        text += f'[historian]\npath = "{tmp_path / f"em-{historian}.sqlite3"}"\n'
    path = tmp_path / f"flow-{historian or 0}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def received_events(log: Path) -> list[dict[str, object]]:
    lines = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith('{"event"'):
            lines.append(json.loads(line))
    return lines


async def wait_for_lines(logs: list[Path], text: str, *, timeout_s: float = 60.0) -> None:
    """Until every log holds ``text``: processes start slowly on a loaded host."""
    deadline = time.time() + timeout_s
    while not all(log.exists() and text in log.read_text(encoding="utf-8") for log in logs):
        if time.time() > deadline:
            raise AssertionError(f"{text!r} missing from a log after {timeout_s} s")
        await asyncio.sleep(0.1)


async def publish_steadily(
    publisher: UdpNode, acked: dict[tuple[int, int], float], *, kill: subprocess.Popen[bytes]
) -> tuple[float, int]:
    """1,000 events/s for PUBLISH_S seconds; kill -9 ``kill`` after KILL_AT_S.

    Returns when it killed, and how many events it published.
    """
    publisher.node.pubsub.on_acked = lambda events, now: acked.update(
        dict.fromkeys((e.key for e in events), now)
    )
    start = time.time()
    killed_at = 0.0
    sent = 0
    while (elapsed := time.time() - start) < PUBLISH_S:
        due = int(elapsed * RATE_PER_S)
        while sent < due:
            publisher.publish("MEASUREMENT/SENSOR/7/PowerConsumption", sent, unit="kW")
            sent += 1
        if not killed_at and elapsed >= KILL_AT_S:
            kill.send_signal(signal.SIGKILL)
            killed_at = time.time()
        await asyncio.sleep(0.005)
    deadline = time.time() + 20.0
    while publisher.node.pubsub.unacknowledged and time.time() < deadline:
        await asyncio.sleep(0.05)
    assert publisher.node.pubsub.unacknowledged == 0, "the flow stopped acknowledging"
    return killed_at, sent


@pytest.mark.processes
@pytest.mark.timeout(120)
@pytest.mark.parametrize("victim", [1, 2])
def test_kill_9_of_an_event_manager_at_1000_events_per_second_loses_no_acknowledged_event(
    tmp_path: Path, victim: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Clients start at EM (id mod 2) + 1: publisher 3 at EM 2; subscribers 4, 6 at EM 1, 5 at EM 2.
    em_ports = dict(zip((1, 2), free_udp_ports(HOST, 2), strict=True))
    config = flow_config(tmp_path, em_ports)
    managers = {i: start_node(i, p, config, tmp_path / f"em-{i}.log") for i, p in em_ports.items()}
    subscriber_ports = dict(zip((4, 5, 6), free_udp_ports(HOST, 3), strict=True))
    subscribers = {
        i: start_node(i, p, config, tmp_path / f"sub-{i}.log", "MEASUREMENT/#")
        for i, p in subscriber_ports.items()
    }
    acked: dict[tuple[int, int], float] = {}

    async def run() -> tuple[float, int, float | None]:
        refs = tuple(EventManagerRef(node_id=i, address=f"{HOST}:{p}") for i, p in em_ports.items())
        publisher = UdpNode(
            node_id=3,
            listen=(HOST, free_udp_ports(HOST, 1)[0]),
            config=NodeConfig(pubsub=PubSubConfig(event_managers=refs)),
        )
        await publisher.start()
        try:
            await wait_for_lines([tmp_path / f"em-{i}.log" for i in managers], "listening on")
            subscribed = [tmp_path / f"sub-{i}.log" for i in subscribers]
            await wait_for_lines(subscribed, '"ok": true')
            killed_at, published = await publish_steadily(publisher, acked, kill=managers[victim])
            await asyncio.sleep(3.0)  # let the queues drain to the subscribers
            return killed_at, published, publisher.node.pubsub.last_failover_at
        finally:
            publisher.close()

    try:
        killed_at, published, publisher_failover_at = asyncio.run(run())
    finally:
        for process in [*subscribers.values(), *managers.values()]:
            process.send_signal(signal.SIGTERM)
        for process in [*subscribers.values(), *managers.values()]:
            process.wait(timeout=10)
    assert published > RATE_PER_S * PUBLISH_S * 0.9
    assert len(acked) == published
    report = []
    for node_id in subscribers:
        lines = received_events(tmp_path / f"sub-{node_id}.log")
        got = {(int(e["event"]["source"]), int(e["event"]["event_id"])) for e in lines}  # type: ignore[index]
        missing = set(acked) - got
        assert not missing, f"subscriber {node_id} lost {len(missing)} acknowledged events"
        assert len(lines) == len(got), f"subscriber {node_id} saw an event twice"
        # Failover time: the longest silence after the kill, at 1,000 events/s.
        after = sorted(int(e["received_us"]) / 1e6 for e in lines)  # type: ignore[call-overload]
        gaps = [b - a for a, b in itertools.pairwise(after) if b >= killed_at]
        report.append(f"subscriber {node_id}: longest gap after the kill {max(gaps) * 1000:.0f} ms")
    if publisher_failover_at is not None:
        delay_ms = (publisher_failover_at - killed_at) * 1000
        report.append(f"publisher failed over {delay_ms:.0f} ms after the kill")
    with capsys.disabled():
        print(f"\nkill -9 of EM {victim}: " + "; ".join(report))


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_the_historian_keeps_every_acknowledged_event_through_kill_9(tmp_path: Path) -> None:
    (port,) = free_udp_ports(HOST, 1)
    config = flow_config(tmp_path, {1: port}, historian=1)
    manager = start_node(1, port, config, tmp_path / "em-1.log")
    acked: dict[tuple[int, int], float] = {}

    async def run() -> None:
        publisher = UdpNode(
            node_id=3,
            listen=(HOST, free_udp_ports(HOST, 1)[0]),
            config=NodeConfig(
                pubsub=PubSubConfig(
                    event_managers=(EventManagerRef(node_id=1, address=f"{HOST}:{port}"),)
                )
            ),
        )
        await publisher.start()
        publisher.node.pubsub.on_acked = lambda events, now: acked.update(
            dict.fromkeys((e.key for e in events), now)
        )
        try:
            await wait_for_lines([tmp_path / "em-1.log"], "listening on")
            for index in range(20_000):  # as fast as the window allows
                publisher.publish("HISTORY/meter/1", index)
                if index % 200 == 0:
                    await asyncio.sleep(0)
                if len(acked) >= 3000:
                    break
                if index % 1000 == 999:
                    await asyncio.sleep(0.05)
            manager.send_signal(signal.SIGKILL)  # mid-stream: events are in flight
            await asyncio.sleep(0.5)
        finally:
            publisher.close()

    try:
        asyncio.run(run())
    finally:
        manager.kill()
        manager.wait(timeout=10)
    assert len(acked) >= 1000
    with open_historian(HistorianConfig(path=tmp_path / "em-1.sqlite3")) as historian:
        stored: set[tuple[int, int]] = set()
        cursor = None
        while True:
            page = historian.query("#", since_us=None, until_us=None, limit=5000, after=cursor)
            stored.update(e.key for e in page)
            if len(page) < 5000:
                break
            cursor = QueryCursor.of(page[-1])
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events are not in the historian"
    assert os.stat(tmp_path / "em-1.sqlite3").st_mode & 0o077 == 0
