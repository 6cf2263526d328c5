"""The MQTT bridge against a real Mosquitto broker.

In one asyncio process: an Event Manager (node 1), the bridge's node (node 2)
with an ``MqttBridge``, and a gridmesh client (node 3), all ``UdpNode``s on
loopback; MQTT clients are paho-mqtt on their own threads. A Mosquitto broker
runs on a free port with a generated configuration, as in
tests/test_topics_mosquitto.py. Nothing sleeps for a fixed time: every wait
polls a condition with a deadline, and a negative ("this never arrived") is
shown by a sentinel sent after it that did arrive.

Needs the ``mosquitto`` binary (``apt-get install -y mosquitto``; ``make test``
installs it). Without it the broker tests fail; they are never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gridmesh.bridges import (
    InboundRule,
    MqttBridge,
    MqttBridgeConfig,
    OutboundRule,
    load_mqtt_bridge_config,
)
from gridmesh.bridges._mqtt_mapping import (
    Inbound,
    RuleMatcher,
    Unmappable,
    decode_inbound,
    encode_outbound,
    map_topic,
)
from gridmesh.cli import main
from gridmesh.errors import ConfigError
from gridmesh.node import NodeConfig
from gridmesh.protocols.pubsub import Event, EventManagerRef, PubSubConfig, SubscribeResult
from gridmesh.runtime import UdpNode, free_udp_ports

HOST = "127.0.0.1"
WAIT_S = 15.0
BRIDGE_ID = 2
CLIENT_ID = 3
_CLIENT_IDS = itertools.count(1)  # MQTT client ids must be unique per broker
INSTALL_HINT = (
    "the mosquitto broker is not installed, and this test needs it: install it with "
    "`apt-get install -y mosquitto` (Debian/Ubuntu; `make test` does this)"
)


# -- the broker ------------------------------------------------------------------


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def mosquitto(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Mosquitto broker listening on ``port`` until the block ends."""
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} {HOST}\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "log_dest stderr\n"
        "max_queued_messages 100000\n",
        encoding="utf-8",
    )
    log_path = directory / "mosquitto.log"
    with log_path.open("ab") as log:
        broker = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            if broker.poll() is not None:
                pytest.fail(f"mosquitto exited with {broker.returncode}:\n{log_path.read_text()}")
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on port {port} within 10 s")
                time.sleep(0.02)
        yield broker
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


@pytest.fixture(scope="module")
def broker_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_tcp_port()
    with mosquitto(tmp_path_factory.mktemp("mosquitto"), port):
        yield port


# -- waiting -----------------------------------------------------------------------


async def until(condition: Callable[[], object], what: str, *, timeout_s: float = WAIT_S) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"no {what} within {timeout_s} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


# -- an MQTT device or application ---------------------------------------------------


class MqttPeer:
    """A paho MQTT 5 client on its own thread, as a device or an application would run one."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.messages: list[mqtt.MQTTMessage] = []  # appended on paho's thread
        self.subacks: set[int] = set()
        self.pubacks: set[int] = set()
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, message: self.messages.append(message)
        self.client.connect(HOST, port)
        self.client.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, code: ReasonCode, _p: object) -> None:
        assert not code.is_failure, f"connection refused: {code}"
        self.connected.set()

    def _on_subscribe(self, _c: object, _u: object, mid: int, codes: object, _p: object) -> None:
        self.subacks.add(mid)

    def _on_publish(self, _c: object, _u: object, mid: int, _code: object, _p: object) -> None:
        self.pubacks.add(mid)

    async def subscribe(self, topic_filter: str) -> None:
        await until(self.connected.is_set, "CONNACK")
        _, mid = self.client.subscribe(topic_filter, qos=1)
        await until(lambda: mid in self.subacks, f"SUBACK for {topic_filter}")

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1) -> int:
        return self.client.publish(topic, payload, qos=qos).mid

    def on(self, prefix: str) -> list[mqtt.MQTTMessage]:
        return [m for m in list(self.messages) if m.topic.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the gridmesh side ---------------------------------------------------------------


def bridge_config(port: int, **overrides: object) -> MqttBridgeConfig:
    """The mapping the tests use; a fresh client id each time (a clean session)."""
    fields: dict[str, object] = {
        "host": HOST,
        "port": port,
        "client_id": f"gridmesh-test-{os.getpid()}-{next(_CLIENT_IDS)}",
        "reconnect_delay_min_s": 1,
        "reconnect_delay_max_s": 1,
        "outbound": [
            {"filter": "MEASUREMENT/#", "strip": "MEASUREMENT/", "prefix": "gridmesh/out/"},
            {"filter": "TARIFF/#", "prefix": "gridmesh/value/", "payload": "value"},
        ],
        "inbound": [
            {
                "filter": "site/+/meter/#",
                "strip": "site/",
                "prefix": "MEASUREMENT/SITE/",
                "unit": "W",
            },
            {"filter": "text/#", "prefix": "NOTE/", "payload": "text"},
            {"filter": "text/special/#", "prefix": "SPECIAL/", "payload": "text"},
            # the bridge's own publishes never come back (no-local); another client's do
            {"filter": "gridmesh/out/#", "strip": "gridmesh/out/", "prefix": "ECHO/"},
        ],
    }
    fields.update(overrides)
    return MqttBridgeConfig.model_validate(fields)


@dataclass
class Rig:
    """Event Manager (node 1), bridge (node 2), gridmesh client (node 3), MQTT peers."""

    port: int
    nodes: list[UdpNode]
    bridge: MqttBridge
    events: list[Event] = field(default_factory=list)  # what node 3 received

    @property
    def client(self) -> UdpNode:
        return self.nodes[2]

    def received(self, prefix: str) -> list[Event]:
        return [e for e in self.events if e.topic.startswith(prefix)]


@contextlib.asynccontextmanager
async def rig(port: int, config: MqttBridgeConfig) -> AsyncIterator[Rig]:
    ports = free_udp_ports(HOST, 3)
    managers = (EventManagerRef(node_id=1, address=f"{HOST}:{ports[0]}"),)
    node_config = NodeConfig(pubsub=PubSubConfig(event_managers=managers))
    nodes = [
        UdpNode(node_id=i, listen=(HOST, p), config=node_config, rng=random.Random(i))
        for i, p in zip((1, BRIDGE_ID, CLIENT_ID), ports, strict=True)
    ]
    for node in nodes:
        await node.start()
    bridge = MqttBridge(nodes[1], config)
    setup = Rig(port, nodes, bridge)
    subscribed: list[SubscribeResult] = []
    try:
        nodes[2].subscribe(
            ["MEASUREMENT/#", "NOTE/#", "SPECIAL/#", "ECHO/#"],
            on_event=lambda event, _now: setup.events.append(event),
            on_done=subscribed.append,
        )
        await until(lambda: bool(subscribed), "node 3 subscribed")
        assert subscribed[0].ok
        await bridge.start()  # after: a persistent session's backlog may come at once
        await until(lambda: bridge.ready, "the bridge ready")
        yield setup
    finally:
        bridge.close()
        for node in nodes:
            node.close()


def run(scenario: Callable[[], object]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


# -- MQTT -> gridmesh ------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_an_mqtt_message_arrives_in_gridmesh_on_the_mapped_topic_with_value_and_unit(
    broker_port: int,
) -> None:
    async def scenario() -> None:
        async with rig(broker_port, bridge_config(broker_port)) as setup:
            device = MqttPeer(broker_port, "meter-42")
            try:
                await until(device.connected.is_set, "CONNACK")
                device.publish("site/7/meter/42/power", json.dumps({"value": 1520.5, "unit": "kW"}))
                device.publish("site/7/meter/43/power", "230.25")  # bare JSON: the rule's unit
                device.publish("text/special/hello", "grüß dich")  # two rules match: the first
                await until(lambda: len(setup.events) >= 3, "three bridged events")
            finally:
                device.close()
            by_topic = {e.topic: e for e in setup.events}
            first = by_topic["MEASUREMENT/SITE/7/meter/42/power"]
            assert (first.value, first.unit, first.source) == (1520.5, "kW", BRIDGE_ID)
            second = by_topic["MEASUREMENT/SITE/7/meter/43/power"]
            assert (second.value, second.unit) == (230.25, "W")
            assert by_topic["NOTE/text/special/hello"].value == "grüß dich"
            assert not setup.received("SPECIAL/")  # one message in, one event out
            await until(lambda: setup.bridge.stats()["inbound_pending"] == 0, "broker acks")
            stats = setup.bridge.stats()
            assert stats["inbound"] == stats["inbound_acked"] == 3
            assert stats["copies"] == 1  # Mosquitto's second copy, for the later rule

    run(scenario)


# -- gridmesh -> MQTT ------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_a_gridmesh_event_arrives_at_an_mqtt_subscriber_on_the_mapped_topic_as_json(
    broker_port: int,
) -> None:
    async def scenario() -> None:
        async with rig(broker_port, bridge_config(broker_port)) as setup:
            app = MqttPeer(broker_port, "dashboard")
            try:
                await app.subscribe("gridmesh/#")
                event = setup.client.publish(
                    "MEASUREMENT/SENSOR/1/PowerConsumption", 3.25, unit="kW"
                )
                setup.client.publish("TARIFF/night", {"price": 0.11, "currency": "GBP"})
                await until(lambda: len(app.messages) >= 2, "two MQTT messages")
            finally:
                app.close()
            by_topic = {m.topic: m for m in app.messages}
            message = by_topic["gridmesh/out/SENSOR/1/PowerConsumption"]
            assert message.qos == 1
            assert json.loads(message.payload) == {
                "value": 3.25,
                "unit": "kW",
                "time_us": event.time_us,
                "source": CLIENT_ID,
                "seq": event.seq,
                "event_id": event.event_id,
            }
            tariff = json.loads(by_topic["gridmesh/value/TARIFF/night"].payload)
            assert tariff == {"price": 0.11, "currency": "GBP"}  # payload "value": the value alone
            await until(lambda: setup.bridge.stats()["outbound_acked"] == 2, "broker PUBACKs")
            assert setup.bridge.stats()["outbound"] == 2

    run(scenario)


# -- loop prevention ---------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_a_message_bridged_in_from_mqtt_is_not_published_back_to_mqtt(broker_port: int) -> None:
    async def scenario() -> None:
        async with rig(broker_port, bridge_config(broker_port)) as setup:
            device = MqttPeer(broker_port, "meter-7")
            app = MqttPeer(broker_port, "watcher")
            try:
                await app.subscribe("gridmesh/out/#")
                # MEASUREMENT/SITE/7/... matches the outbound filter MEASUREMENT/#: without
                # loop prevention it would go out again as gridmesh/out/SITE/7/...
                device.publish("site/7/meter/1/power", "100")
                await until(lambda: setup.received("MEASUREMENT/SITE/"), "the bridged event")
                # Sentinel: an event from node 3 takes the same path out (the Event Manager
                # delivers to the bridge in order), after the bridged event would have.
                setup.client.publish("MEASUREMENT/SENSOR/sentinel", 1)
                await until(lambda: app.on("gridmesh/out/SENSOR/sentinel"), "the sentinel")
                assert not app.on("gridmesh/out/SITE/"), "the bridged message came back out"
                assert setup.bridge.stats()["looped"] == 1
                # No-local: the bridge's own publish on gridmesh/out/SENSOR/sentinel matches
                # its inbound filter gridmesh/out/#, yet does not come back as ECHO/...;
                # another client's publish there does (and arrives after it would have).
                device.publish("gridmesh/out/probe", "2")
                await until(lambda: setup.received("ECHO/"), "the probe")
                assert [e.topic for e in setup.received("ECHO/")] == ["ECHO/probe"]
            finally:
                device.close()
                app.close()
            assert len(setup.received("MEASUREMENT/SITE/")) == 1

    run(scenario)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_bad_mqtt_messages_are_counted_and_dropped_and_the_bridge_keeps_bridging(
    broker_port: int,
) -> None:
    config = bridge_config(broker_port, inbound_payload_bytes_max=1024)

    async def scenario() -> None:
        async with rig(broker_port, config) as setup:
            device = MqttPeer(broker_port, "bad-meter")
            app = MqttPeer(broker_port, "bad-watcher")
            try:
                await app.subscribe("gridmesh/out/#")
                deep = "site/7/meter/" + "/".join(["x"] * 29)  # 32 levels: MQTT and gridmesh
                device.publish(deep, "1")  # +2 levels of prefix -1 of strip: 33, too deep
                device.publish("site/7/meter/1/power", b"9" * 2000)  # > 1024 bytes
                device.publish("site/7/meter/1/power", b"not json{")
                device.publish("site/7/meter/1/power", b"\xff\xfe")  # not UTF-8
                device.publish("site/7/meter/1/power", str(2**70))  # no 64-bit integer
                device.publish("site/7/meter/1/power", '{"value": 1, "unit": 5}')
                device.publish("site/7/meter/2/power", "42")  # and a good one after them
                setup.client.publish("MEASUREMENT/SENSOR/blob", b"\x00\x01")  # bytes in JSON
                setup.client.publish("MEASUREMENT/SENSOR/ok", 7)
                await until(lambda: setup.received("MEASUREMENT/SITE/7/meter/2/"), "good event")
                await until(lambda: app.on("gridmesh/out/SENSOR/ok"), "good MQTT message")
            finally:
                device.close()
                app.close()
            await until(lambda: setup.bridge.stats()["inbound_pending"] == 0, "broker acks")
            stats = setup.bridge.stats()
            dropped = {k: v for k, v in stats.items() if k.startswith("dropped_") and v}
            assert dropped == {
                "dropped_in_invalid_topic": 1,
                "dropped_in_too_large": 1,
                "dropped_in_bad_payload": 3,
                "dropped_in_bad_value": 1,
                "dropped_out_unencodable": 1,
            }
            assert [e.value for e in setup.received("MEASUREMENT/SITE/")] == [42]
            assert not app.on("gridmesh/out/SENSOR/blob")

    run(scenario)


# -- 1,000 each way --------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(120)
def test_a_thousand_messages_each_way_all_arrive(
    broker_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 1000

    async def scenario() -> tuple[float, float]:
        async with rig(broker_port, bridge_config(broker_port)) as setup:
            device = MqttPeer(broker_port, "many-meters")
            app = MqttPeer(broker_port, "many-watcher")
            try:
                await app.subscribe("gridmesh/out/#")
                await until(device.connected.is_set, "CONNACK")
                start = time.monotonic()
                for i in range(count):
                    device.publish(f"site/9/meter/{i}/power", str(i))
                await until(
                    lambda: len(setup.received("MEASUREMENT/SITE/9/")) >= count,
                    f"{count} events in gridmesh",
                    timeout_s=60,
                )
                inbound_s = time.monotonic() - start
                start = time.monotonic()
                for i in range(count):
                    setup.client.publish(f"MEASUREMENT/SENSOR/{i}/PowerConsumption", i, unit="kW")
                await until(
                    lambda: len(app.on("gridmesh/out/SENSOR/")) >= count,
                    f"{count} MQTT messages",
                    timeout_s=60,
                )
                outbound_s = time.monotonic() - start
            finally:
                device.close()
                app.close()
            inbound = setup.received("MEASUREMENT/SITE/9/")
            assert sorted(int(e.value) for e in inbound) == list(range(count))  # type: ignore[call-overload]
            outbound = [json.loads(m.payload)["value"] for m in app.on("gridmesh/out/SENSOR/")]
            assert sorted(outbound) == list(range(count))
            stats = setup.bridge.stats()
            assert stats["inbound"] == stats["outbound"] == count
            assert not any(v for k, v in stats.items() if k.startswith("dropped_"))
            return inbound_s, outbound_s

    inbound_s, outbound_s = asyncio.run(scenario())
    with capsys.disabled():
        print(
            f"\nMQTT bridge, {count} QoS 1 messages: MQTT -> gridmesh {inbound_s:.2f} s "
            f"({count / inbound_s:,.0f}/s), gridmesh -> MQTT {outbound_s:.2f} s "
            f"({count / outbound_s:,.0f}/s)"
        )


# -- gossip mode ------------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_in_gossip_mode_the_bridge_acknowledges_what_it_published(broker_port: int) -> None:
    async def scenario() -> None:
        (port,) = free_udp_ports(HOST, 1)
        node = UdpNode(
            node_id=BRIDGE_ID,
            listen=(HOST, port),
            config=NodeConfig(pubsub=PubSubConfig(mode="gossip")),
        )
        await node.start()
        bridge = MqttBridge(node, bridge_config(broker_port))
        device = MqttPeer(broker_port, "gossip-meter")
        try:
            await bridge.start()
            await until(lambda: bridge.ready, "the bridge ready")
            await until(device.connected.is_set, "CONNACK")
            for i in range(3):
                device.publish(f"site/1/meter/{i}/power", str(i))
            await until(lambda: bridge.stats()["inbound"] == 3, "three published")
            await until(lambda: bridge.stats()["inbound_pending"] == 0, "acknowledged")
            assert bridge.stats()["looped"] == 3  # its own filters matched: not sent back
        finally:
            device.close()
            bridge.close()
            node.close()

    run(scenario)


# -- flow control -----------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_the_broker_holds_back_what_the_flow_has_not_acknowledged(broker_port: int) -> None:
    config = bridge_config(broker_port, inbound_inflight_max=5)  # the receive maximum

    async def scenario() -> None:
        async with rig(broker_port, config) as setup:
            manager = setup.nodes[0]
            manager.close()  # the Event Manager goes away: the flow acknowledges nothing
            device = MqttPeer(broker_port, "held-meter")
            try:
                await until(device.connected.is_set, "CONNACK")
                mids = {device.publish(f"site/3/meter/{i}/power", str(i)) for i in range(20)}
                await until(lambda: mids <= device.pubacks, "the broker took all 20")
                await until(lambda: setup.bridge.stats()["inbound"] == 5, "5 in the bridge")
                deadline = time.monotonic() + 0.3  # a negative: nothing more comes meanwhile
                while time.monotonic() < deadline:
                    assert setup.bridge.stats()["inbound"] == 5
                    await asyncio.sleep(0.01)
                # The Event Manager comes back on its address; the bridge's node publishes
                # again, the flow acknowledges, the bridge acknowledges, the broker sends more.
                setup.nodes[0] = UdpNode(
                    node_id=1, listen=manager.listen, config=manager.node.config
                )
                await setup.nodes[0].start()
                await until(lambda: setup.bridge.stats()["inbound_acked"] == 20, "all 20 stored")
            finally:
                device.close()
            stats = setup.bridge.stats()
            assert stats["inbound"] == 20
            assert not any(v for k, v in stats.items() if k.startswith("dropped_"))

    run(scenario)


# -- what survives a bridge crash -------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_an_mqtt_message_the_flow_never_acknowledged_is_delivered_again_after_a_bridge_crash(
    broker_port: int,
) -> None:
    # A persistent session: the broker keeps what the bridge has not acknowledged.
    config = bridge_config(broker_port, session_expiry_s=60)

    async def first_life() -> None:
        async with rig(broker_port, config) as setup:
            setup.nodes[0].close()  # the Event Manager goes away: nothing gets acknowledged
            device = MqttPeer(broker_port, "crash-meter")
            try:
                await until(device.connected.is_set, "CONNACK")
                device.publish("site/5/meter/1/power", "11")
                await until(lambda: setup.bridge.stats()["inbound"] == 1, "the bridge took it")
            finally:
                device.close()
            stats = setup.bridge.stats()
            assert (stats["inbound_acked"], stats["inbound_pending"]) == (0, 1)
        # leaving the block closes every node and the bridge without acknowledging: the
        # event that was waiting in the bridge's node for its Event Manager is gone

    async def second_life() -> None:
        async with rig(broker_port, config) as setup:  # same client id: the session resumes
            await until(lambda: setup.received("MEASUREMENT/SITE/5/"), "the message again")
            assert [e.value for e in setup.received("MEASUREMENT/SITE/5/")] == [11]
            await until(lambda: setup.bridge.stats()["inbound_acked"] == 1, "acknowledged")

    asyncio.run(first_life())
    asyncio.run(second_life())


# -- reconnect -------------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_the_bridge_reconnects_and_subscribes_again_after_the_broker_restarts(
    tmp_path: Path,
) -> None:
    port = free_tcp_port()

    async def scenario() -> None:
        with mosquitto(tmp_path, port) as broker:
            async with rig(port, bridge_config(port)) as setup:
                broker.terminate()
                broker.wait(timeout=10)
                await until(lambda: not setup.bridge.connected, "the disconnect")
                with mosquitto(tmp_path, port):
                    await until(lambda: setup.bridge.ready, "reconnected and subscribed")
                    device = MqttPeer(port, "after-restart")
                    app = MqttPeer(port, "after-restart-watcher")
                    try:
                        await app.subscribe("gridmesh/out/#")
                        device.publish("site/1/meter/1/power", "5")
                        setup.client.publish("MEASUREMENT/SENSOR/again", 6)
                        await until(lambda: setup.received("MEASUREMENT/SITE/1/"), "inbound")
                        await until(lambda: app.on("gridmesh/out/SENSOR/again"), "outbound")
                    finally:
                        device.close()
                        app.close()
                    stats = setup.bridge.stats()
                    assert (stats["connects"], stats["disconnects"]) == (2, 1)

    run(scenario)


# -- the command ------------------------------------------------------------------------------


@pytest.mark.processes
@pytest.mark.timeout(90)
def test_gridmesh_bridge_mqtt_runs_a_bridge_node_from_a_config_file(
    broker_port: int, tmp_path: Path
) -> None:
    em_port, bridge_port, client_port = free_udp_ports(HOST, 3)
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[pubsub]\nevent_managers = [{{node_id = 1, address = "{HOST}:{em_port}"}}]\n'
        f'[bridge.mqtt]\nhost = "{HOST}"\nport = {broker_port}\n'
        'client_id = "gridmesh-test-command"\n'
        '[[bridge.mqtt.inbound]]\nfilter = "cmd/#"\nprefix = "MEASUREMENT/"\n'
        '[[bridge.mqtt.outbound]]\nfilter = "TARIFF/#"\nprefix = "cmd-out/"\n',
        encoding="utf-8",
    )
    log_path = tmp_path / "bridge.log"
    command = [sys.executable, "-m", "gridmesh", "bridge", "mqtt", "--listen"]
    command += [f"{HOST}:{bridge_port}", "--id", "2", "--config", str(config)]

    async def scenario(process: subprocess.Popen[bytes]) -> None:
        refs = (EventManagerRef(node_id=1, address=f"{HOST}:{em_port}"),)
        node_config = NodeConfig(pubsub=PubSubConfig(event_managers=refs))
        manager = UdpNode(node_id=1, listen=(HOST, em_port), config=node_config)
        client = UdpNode(node_id=CLIENT_ID, listen=(HOST, client_port), config=node_config)
        await manager.start()
        await client.start()
        events: list[Event] = []
        subscribed: list[SubscribeResult] = []
        client.subscribe(
            "MEASUREMENT/#", on_event=lambda e, _now: events.append(e), on_done=subscribed.append
        )
        device = MqttPeer(broker_port, "command-device")
        try:
            await device.subscribe("cmd-out/#")
            await until(
                lambda: process.poll() is not None or b"ready" in log_path.read_bytes(),
                "the bridge's ready line",
                timeout_s=60,
            )
            assert process.poll() is None, log_path.read_text()
            device.publish("cmd/meter/1", '{"value": 5, "unit": "kWh"}')
            client.publish("TARIFF/day", 0.3)
            await until(lambda: bool(events), "the bridged event")
            await until(lambda: bool(device.on("cmd-out/")), "the bridged tariff")
        finally:
            device.close()
            manager.close()
            client.close()
        assert [(e.topic, e.value, e.unit, e.source) for e in events] == [
            ("MEASUREMENT/cmd/meter/1", 5, "kWh", 2)
        ]
        assert [m.topic for m in device.on("cmd-out/")] == ["cmd-out/TARIFF/day"]

    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        asyncio.run(scenario(process))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    stopped = log_path.read_text(encoding="utf-8")
    assert '"inbound": 1' in stopped and '"outbound": 1' in stopped, stopped


# -- the mapping, without a broker ------------------------------------------------------------


def test_a_topic_maps_by_strip_and_prefix_and_is_checked() -> None:
    assert map_topic("site/7/p", strip="site/", prefix="M/") == "M/7/p"
    assert map_topic("a/b", strip="", prefix="") == "a/b"
    for topic, strip, prefix, reason in [
        ("other/7", "site/", "M/", "unmapped"),  # does not start with strip
        ("site/", "site/", "", "invalid_topic"),  # nothing left: an empty name
        ("a/" * 31 + "b", "", "X/", "invalid_topic"),  # 33 levels
    ]:
        with pytest.raises(Unmappable) as caught:
            map_topic(topic, strip=strip, prefix=prefix)
        assert caught.value.reason == reason


def test_the_first_rule_in_configuration_order_maps_a_topic() -> None:
    rules = RuleMatcher(["a/#", "a/b/#", "+/c", "#"])
    assert [rules.first(t) for t in ("a/b/c", "x/c", "z", "$SYS/x")] == [0, 2, 3, None]


def test_inbound_payloads_decode_by_the_rules_format() -> None:
    json_rule = InboundRule(filter="#", unit="W")
    assert decode_inbound(b"1.5", json_rule) == Inbound(1.5, "W")
    assert decode_inbound(b'{"value": [1, 2], "unit": "kW", "time_us": 7}', json_rule) == (
        Inbound([1, 2], "kW", 7)
    )
    assert decode_inbound(b'{"v": 1}', json_rule) == Inbound({"v": 1}, "W")  # no "value": whole
    assert decode_inbound(b"\xff", InboundRule(filter="#", payload="bytes")).value == b"\xff"
    assert decode_inbound("é".encode(), InboundRule(filter="#", payload="text")).value == "é"
    for payload, rule in [
        (b"{", json_rule),
        (b"\xff", json_rule),
        (b'{"value": 1, "time_us": -1}', json_rule),
        (b'{"value": 1, "time_us": 1.5}', json_rule),
        (b"[" * 100_000, json_rule),
        (b"\xff", InboundRule(filter="#", payload="text")),
    ]:
        with pytest.raises(Unmappable) as caught:
            decode_inbound(payload, rule)
        assert caught.value.reason == "bad_payload"


@given(st.binary(max_size=512), st.sampled_from(["json", "text", "bytes"]))
def test_decoding_any_bytes_raises_nothing_but_unmappable(payload: bytes, form: str) -> None:
    with contextlib.suppress(Unmappable):
        decode_inbound(payload, InboundRule(filter="#", payload=form))


def test_outbound_payloads_encode_by_the_rules_format() -> None:
    event = Event("T/x", {"a": [1, None]}, 5, 3, 9, 2**64 - 1, "kW")
    document = json.loads(encode_outbound(event, OutboundRule(filter="#")))
    assert document == {
        "value": {"a": [1, None]},
        "unit": "kW",
        "time_us": 5,
        "source": 3,
        "seq": 9,
        "event_id": 2**64 - 1,
    }
    assert encode_outbound(event, OutboundRule(filter="#", payload="value")) == b'{"a":[1,null]}'
    blob = Event("T/x", b"\x00", 5, 3, 9, 1)
    assert encode_outbound(blob, OutboundRule(filter="#", payload="value")) == b"\x00"
    for value in (b"\x00", float("nan")):
        with pytest.raises(Unmappable) as caught:
            encode_outbound(Event("T/x", value, 5, 3, 9, 1), OutboundRule(filter="#"))
        assert caught.value.reason == "unencodable"


# -- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "expected"),
    [
        ({"outbound": [{"filter": "a/#/b"}]}, "bridge.mqtt.outbound[0].filter", "'#' must be"),
        ({"inbound": [{"filter": "site/*"}]}, "bridge.mqtt.inbound[0].filter", "write '#'"),
        ({"inbound": [{"filter": "a/+b"}]}, "bridge.mqtt.inbound[0].filter", "'+' must be"),
        (
            {"inbound": [{"filter": "#", "prefix": "A/+/"}]},
            "bridge.mqtt.inbound[0].prefix",
            "no wildcards",
        ),
        ({"outbound": [{"filter": "#", "payload": "xml"}]}, "bridge.mqtt.outbound[0].payload", ""),
        ({"qos": 3}, "bridge.mqtt.qos", ""),
        ({"port": 0}, "bridge.mqtt.port", "at least 1"),
        ({"hots": "broker"}, "bridge.mqtt.hots", "no such field"),
        ({"inbound_payload_bytes_max": 0}, "bridge.mqtt.inbound_payload_bytes_max", "at least 1"),
        ({"password": "x"}, "bridge.mqtt", "a password needs a username"),
    ],
)
def test_a_bad_bridge_configuration_names_the_field(
    raw: dict[str, object], field: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mqtt_bridge_config(raw, source="bridge.toml")
    assert caught.value.source == "bridge.toml"
    assert caught.value.field == field
    assert expected in caught.value.expected


def test_the_password_does_not_show_in_the_configuration() -> None:
    config = load_mqtt_bridge_config({"username": "u", "password": "hunter2"}, source="x")
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[pubsub]\nevent_managers = [{node_id = 1, address = "127.0.0.1:1"}]\n', "bridge.mqtt"),
        ("[bridge.mqtt]\n", "pubsub.event_managers"),
        (
            '[pubsub]\nevent_managers = [{node_id = 1, address = "127.0.0.1:1"}]\n'
            '[bridge.mqtt]\noutbound = [{filter = "a/#/b"}]\n',
            "bridge.mqtt.outbound[0].filter",
        ),
        (
            '[pubsub]\nevent_managers = [{node_id = 1, address = "127.0.0.1:1"}]\n'
            "[bridge.mqtt]\n[bridge.modbus]\n",
            "bridge.modbus",
        ),
    ],
)
def test_gridmesh_bridge_mqtt_exits_2_naming_the_field_of_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, field: str
) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    (port,) = free_udp_ports(HOST, 1)
    argv = ["bridge", "mqtt", "--listen", f"{HOST}:{port}", "--id", "2", "--config", str(path)]
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert f"field '{field}'" in message
    assert str(path) in message
    assert "Traceback" not in message


def test_the_example_bridge_configuration_is_valid(tmp_path: Path) -> None:
    from gridmesh.bridges.cli import _load

    path = Path(__file__).parent.parent / "examples" / "bridge-mqtt.toml"
    config, bridge, readings = _load(path, node_id=2)
    assert config.pubsub.event_managers
    assert bridge.inbound and bridge.outbound
    assert readings == {}
