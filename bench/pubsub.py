"""Events per second through one Event Manager process on loopback, and Mosquitto beside it.

What is measured
----------------
Three processes on this host: a broker, one subscriber, one publisher.

* **gridmesh**: the broker is a ``gridmesh node`` process that is the flow's
  only Event Manager (unsigned events; with ``--historian`` also a SQLite
  historian in it). The subscriber is a ``UdpNode`` in a child process that
  subscribes to ``bench/#`` and counts events (it acknowledges each batch);
  the publisher is a ``UdpNode`` in this process that publishes ``--events``
  events as fast as its window lets it (at-least-once: each is acknowledged).
* **mosquitto**: the broker is Mosquitto; subscriber and publisher are Paho
  MQTT clients (Python, as ours are), QoS 1 both ways (acknowledged, like
  ours; at most 20,000 events, as Paho's Python clients are slow), and, when
  ``mosquitto_pub``/``mosquitto_sub`` are installed (Debian's
  mosquitto-clients), Mosquitto's own C clients too (one topic, QoS 1, at
  most 50,000 events: ``mosquitto_pub -l`` drops what it still queues when its
  input ends; the run reports how many arrived).

The figure is events delivered to the subscriber per second: the event
count over the time from the first publish to the last event the subscriber
received. Each variant runs ``--repeats`` times, interleaved; medians, min
and max. Every event has a topic ``bench/SENSOR/<n mod 1000>/PowerConsumption``
and a small value (``{"kw": 1.5}``, unit ``kW``; for MQTT the same fields as
a CBOR payload). Target (issue 6): >= 50,000 events/s through one Event
Manager, unsigned.

    .venv/bin/python bench/pubsub.py [--events 200000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cbor2

from _machine import machine as machine_info
from gridmesh import __version__
from gridmesh.node import NodeConfig
from gridmesh.protocols.pubsub import Event, EventManagerRef, PubSubConfig
from gridmesh.runtime import UdpNode
from gridmesh.runtime._cluster import free_udp_ports

HOST = "127.0.0.1"
TARGET_EVENTS_PER_S = 50_000
PAHO_EVENTS_MAX = 20_000
C_EVENTS_MAX = 50_000
# The defaults, but one publisher may send as fast as it can (the default bucket is
# 20,000 events/s per publisher) and a subscriber may fall far behind.
FAST = {
    "publisher_rate_max": 10_000_000.0,
    "publisher_burst_max": 10_000_000,
    "queue_events_max": 1_000_000,
}


def topic(index: int) -> str:
    return f"bench/SENSOR/{index % 1000}/PowerConsumption"


# -- gridmesh ---------------------------------------------------------------------


def pubsub_config(em_port: int) -> PubSubConfig:
    refs = (EventManagerRef(node_id=1, address=f"{HOST}:{em_port}"),)
    return PubSubConfig(event_managers=refs, **FAST)  # type: ignore[arg-type]


def run_subscriber(em_port: int, count: int, out: Path) -> None:
    """Child process: subscribe, count ``count`` distinct events, write the timings."""

    async def main() -> None:
        (port,) = free_udp_ports(HOST, 1)
        node = UdpNode(
            node_id=4,
            listen=(HOST, port),
            config=NodeConfig(pubsub=pubsub_config(em_port)),
        )
        await node.start()
        done = asyncio.Event()
        state = {"first": 0.0, "last": 0.0, "count": 0}

        def on_event(event: Event, now: float) -> None:
            if not state["count"]:
                state["first"] = time.time()
            state["count"] += 1
            if state["count"] >= count:
                state["last"] = time.time()
                done.set()

        ready = asyncio.Event()
        node.subscribe("bench/#", on_event=on_event, on_done=lambda result: ready.set())
        await asyncio.wait_for(ready.wait(), 30)
        out.with_suffix(".ready").write_text("ready")
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            stats = node.stats()
            out.write_text(
                json.dumps(
                    {
                        **state,
                        "duplicates": stats["ps_duplicates"],
                        "gap": stats["ps_gap"],
                    }
                )
            )
            node.close()

    asyncio.run(main())


def run_gridmesh(count: int, historian: str | None, work: Path) -> dict[str, float]:
    (em_port,) = free_udp_ports(HOST, 1)
    config = work / "em.toml"
    text = (
        f'[pubsub]\nevent_managers = [{{node_id = 1, address = "{HOST}:{em_port}"}}]\n'
        + "".join(f"{key} = {value}\n" for key, value in FAST.items())
    )
    if historian is not None:
        db = work / f"events-{time.monotonic_ns()}.sqlite3"
        text += f'[historian]\npath = "{db}"\nsynchronous = "{historian}"\n'
    config.write_text(text)
    broker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridmesh",
            "node",
            "--listen",
            f"{HOST}:{em_port}",
            "--id",
            "1",
            "--config",
            str(config),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
    )
    out = work / f"sub-{time.monotonic_ns()}.json"
    subscriber = subprocess.Popen(
        [sys.executable, __file__, "_subscriber", str(em_port), str(count), str(out)]
    )
    try:
        wait_for(out.with_suffix(".ready"), 60)
        publish_start, acked_at = asyncio.run(publish_all(em_port, count))
        subscriber.wait(timeout=600)
        result = json.loads(out.read_text())
    finally:
        for process in (subscriber, broker):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    return {
        "events_per_s": count / (result["last"] - publish_start),
        "acked_per_s": count / (acked_at - publish_start),
        "duplicates": result["duplicates"],
        "gap": result["gap"],
    }


async def publish_all(em_port: int, count: int) -> tuple[float, float]:
    (port,) = free_udp_ports(HOST, 1)
    node = UdpNode(node_id=3, listen=(HOST, port), config=NodeConfig(pubsub=pubsub_config(em_port)))
    await node.start()
    pubsub = node.node.pubsub
    window = pubsub.config.publish_window_max
    value = {"kw": 1.5}
    acked = asyncio.Event()
    pubsub.on_acked = lambda events, now: acked.set()
    start = time.time()
    published = 0
    while published < count:
        room = window * 2 - pubsub.unacknowledged
        if room <= 0:  # wait for acknowledgements instead of spinning on the CPU
            acked.clear()
            await acked.wait()
            continue
        for _ in range(min(room, count - published, 1024)):
            node.publish(topic(published), value, unit="kW")
            published += 1
        await asyncio.sleep(0)
    while pubsub.unacknowledged:
        await asyncio.sleep(0.001)
    acked_at = time.time()
    node.close()
    return start, acked_at


def wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        if time.time() > deadline:
            raise RuntimeError(f"{path} did not appear in {timeout_s} s")
        time.sleep(0.05)


# -- mosquitto ----------------------------------------------------------------------


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    (port,) = free_udp_ports(HOST, 1)  # a free UDP port is almost always a free TCP port
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 0\nmax_queued_messages 0\n"
    )
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return broker, port


def run_mosquitto_paho(count: int, work: Path) -> dict[str, float]:
    import paho.mqtt.client as mqtt

    broker, port = start_mosquitto(work)
    out = work / f"msub-{time.monotonic_ns()}.json"
    subscriber = subprocess.Popen(
        [sys.executable, __file__, "_paho_subscriber", str(port), str(count), str(out)]
    )
    try:
        wait_for(out.with_suffix(".ready"), 60)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
        client.max_inflight_messages_set(4096)
        client.max_queued_messages_set(0)
        acked = threading.Semaphore(0)
        client.on_publish = lambda *args: acked.release()
        client.connect(HOST, port)
        client.loop_start()
        start = time.time()
        for index in range(count):
            payload = cbor2.dumps([index, int(time.time() * 1e6), {"kw": 1.5}, "kW"])
            client.publish(topic(index), payload, qos=1)
        for _ in range(count):
            acked.acquire(timeout=600)
        acked_at = time.time()
        client.loop_stop()
        client.disconnect()
        subscriber.wait(timeout=600)
        result = json.loads(out.read_text())
    finally:
        for process in (subscriber, broker):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    return {
        "events_per_s": count / (result["last"] - start),
        "acked_per_s": count / (acked_at - start),
    }


def run_paho_subscriber(port: int, count: int, out: Path) -> None:
    import paho.mqtt.client as mqtt

    state = {"first": 0.0, "last": 0.0, "count": 0}
    done = threading.Event()

    def on_message(client: object, userdata: object, message: object) -> None:
        if not state["count"]:
            state["first"] = time.time()
        state["count"] += 1
        if state["count"] >= count:
            state["last"] = time.time()
            done.set()

    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(HOST, port)
    client.subscribe("bench/#", qos=1)
    client.loop_start()
    subscribed.wait(30)
    out.with_suffix(".ready").write_text("ready")
    done.wait(600)
    client.loop_stop()
    out.write_text(json.dumps(state))


def run_mosquitto_c(count: int, work: Path) -> dict[str, float] | None:
    """Mosquitto's C clients: ``mosquitto_pub -l`` (QoS 1) into ``mosquitto_sub -C count``.

    ``mosquitto_pub`` may disconnect at the end of its input with messages still
    queued, so the subscriber gives up after ``_C_CLIENT_WAIT_S``; what it
    received (``delivered``) is then fewer than ``count``, and the rate counts
    only what arrived.
    """
    pub = shutil.which("mosquitto_pub")
    sub = shutil.which("mosquitto_sub")
    if pub is None or sub is None:
        return None
    broker, port = start_mosquitto(work)
    received = work / f"c-sub-{time.monotonic_ns()}.txt"
    try:
        with received.open("wb") as out:
            subscriber = subprocess.Popen(
                [sub, "-h", HOST, "-p", str(port), "-t", "bench/#", "-q", "1", "-C", str(count)],
                stdout=out,
            )
            time.sleep(0.5)
            lines = "".join(f'{{"kw": 1.5, "seq": {i}}}\n' for i in range(count)).encode()
            start = time.time()
            topic = "bench/SENSOR/1/PowerConsumption"
            command = [pub, "-h", HOST, "-p", str(port), "-t", topic, "-q", "1", "-l"]
            subprocess.run(command, input=lines, check=True)
            published = time.time()
            try:
                subscriber.wait(timeout=_C_CLIENT_WAIT_S)
                end = time.time()
            except subprocess.TimeoutExpired:
                subscriber.terminate()
                subscriber.wait(timeout=10)
                end = published
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    delivered = received.read_bytes().count(b"\n")
    return {"events_per_s": delivered / (end - start), "delivered": delivered}


_C_CLIENT_WAIT_S = 30.0


# -- driver -------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_subscriber":
        run_subscriber(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_paho_subscriber":
        run_paho_subscriber(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="gridmesh,gridmesh-historian-normal,"
        "gridmesh-historian-full,mosquitto-paho,mosquitto-c",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/pubsub.json"))
    args = parser.parse_args()
    variants = args.variants.split(",")
    machine = machine_info() | {"gridmesh": __version__}
    print(
        f"gridmesh {__version__} pub/sub benchmark, {args.events:,} events, "
        f"python {machine['python']}, {machine['cpus']} CPUs"
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        for repeat in range(args.repeats):
            for name in variants:
                if name == "gridmesh":
                    result = run_gridmesh(args.events, None, work)
                elif name.startswith("gridmesh-historian-"):
                    result = run_gridmesh(args.events, name.rsplit("-", 1)[1], work)
                elif name == "mosquitto-paho":
                    # Paho's Python clients manage a few thousand QoS 1 messages/s:
                    # fewer events keep the run short; the rate is per its own count.
                    result = run_mosquitto_paho(min(args.events, PAHO_EVENTS_MAX), work)
                elif name == "mosquitto-c":
                    # mosquitto_pub -l drops what it still queues when its input ends
                    # (about 65% of 200,000 here): 50,000 arrive whole.
                    maybe = run_mosquitto_c(min(args.events, C_EVENTS_MAX), work)
                    if maybe is None:
                        print("  mosquitto-c: mosquitto_pub/mosquitto_sub not installed; skipped")
                        continue
                    result = maybe
                else:
                    raise SystemExit(f"unknown variant {name}")
                runs[name].append(result)
                print(
                    f"  run {repeat + 1} {name:28s} {result['events_per_s']:>10,.0f} events/s"
                    + (
                        f"  (acked {result['acked_per_s']:,.0f}/s)"
                        if "acked_per_s" in result
                        else ""
                    )
                )
    report = {
        "machine": machine,
        "events": args.events,
        "repeats": args.repeats,
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "results": {
            name: {"events_per_s": summary([r["events_per_s"] for r in results]), "runs": results}
            for name, results in runs.items()
            if results
        },
    }
    print("medians:")
    for name, result in report["results"].items():  # type: ignore[attr-defined]
        print(f"  {name:28s} {result['events_per_s']['median']:>10,.0f} events/s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
