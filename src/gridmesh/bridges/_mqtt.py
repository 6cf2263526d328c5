"""The MQTT bridge: an Integration Proxy between a gridmesh flow and an MQTT broker.

Theory of operation
-------------------
Seed 001 (LinkSmart, section III.A) puts an *Integration Proxy* in front of
each device technology, so that devices speaking their own protocol take part
in the middleware's event flows. This one speaks MQTT 5 to a broker such as
Mosquitto, with paho-mqtt, and gridmesh to the flow's Event Managers, as one
``UdpNode``.

*Two threads.* paho runs its network loop on its own thread; the node runs on
the asyncio loop. The loop owns the node, the mapping and the counters; paho's
thread only hands each received MQTT message over: it appends it to the
*inbox* (at most ``inbound_queue_max``; beyond it the message is dropped and
counted) and wakes the loop with ``call_soon_threadsafe``, once per batch.
Calls into paho from the loop (publish, acknowledge) are thread-safe by
paho's contract.

*Outbound* (gridmesh -> MQTT). Each outbound rule's filter is one gridmesh
subscription. An event is mapped by the first rule whose filter matches it
(``_mqtt_mapping``) and published to the broker at ``qos``. paho keeps QoS 1
and 2 messages, at most ``outbound_queue_max``, until the broker acknowledges
them, across reconnects.

*Inbound* (MQTT -> gridmesh). Each inbound rule is one SUBSCRIBE with its own
subscription identifier, and with **no-local**, so the broker never returns to
the bridge what the bridge itself published. A message is mapped by the first
rule whose filter matches its topic (a broker that sends one copy per
matching subscription has the other copies skipped by their identifiers) and
published into the flow. A QoS 1 or 2 message is acknowledged to the broker
(manual acknowledgement, in the order received) only once the flow's Event
Manager acknowledged the event, or once the bridge dropped it: the broker's
*receive maximum* (``inbound_inflight_max``) should then bound what waits in the
bridge, and a message the bridge had not handed to the flow when it died is
sent again by the broker, if the session outlives the bridge
(``session_expiry_s`` > 0).

*Loop prevention.* An event the bridge published into the flow carries the
bridge's node id as its ``source``. An outbound rule whose filter matches it
would send it back to MQTT; the bridge skips every event whose source is its
own node (counted as ``looped``). Together with no-local on the MQTT side,
nothing crosses the bridge twice. The bridge's node should therefore publish
nothing else, which ``gridmesh bridge mqtt`` ensures.

*Gossip mode.* With ``pubsub.mode = "gossip"`` there is no Event Manager to
acknowledge anything: an inbound message is acknowledged to the broker as soon
as it is published into the flow, and reaches subscribers with gossip's
reliability.

*Bad input never stops the bridge.* Whatever cannot be mapped (an unmappable
topic, a payload too large, not JSON where JSON is required, a value an event
cannot hold) is dropped and counted per direction and reason; see
``stats()``.

*Reconnects.* paho reconnects by itself, waiting ``reconnect_delay_min_s``
doubling up to ``reconnect_delay_max_s``; the bridge subscribes again on every
connect. Messages received on a connection that has since gone are not
acknowledged on the next (their packet ids belong to the old one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gridmesh.bridges._mqtt_config import MqttBridgeConfig
from gridmesh.bridges._mqtt_mapping import (
    RuleMatcher,
    Unmappable,
    decode_inbound,
    encode_outbound,
    map_topic,
)
from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.protocols.pubsub import Event, PublishQueueFull, PublishRefused, SubscribeResult

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    from gridmesh.runtime import UdpNode

__all__ = ["INBOUND_DROP_REASONS", "OUTBOUND_DROP_REASONS", "MqttBridge"]

log = logging.getLogger("gridmesh.bridge.mqtt")

#: Why an MQTT message did not become an event.
INBOUND_DROP_REASONS = (
    "too_large",  # payload over inbound_payload_bytes_max
    "queue_full",  # inbox full (inbound_queue_max)
    "bad_payload",  # not UTF-8 / not JSON where the rule wants it
    "bad_value",  # the flow's publisher refused the value or unit (64-bit ints, event_bytes_max)
    "invalid_topic",  # the MQTT topic, or the mapped gridmesh topic, breaks gridmesh.topics
    "unmapped",  # the topic does not start with the rule's strip, or no rule matches
    "publish_queue_full",  # the node's pubsub.publish_queue_max is reached
)
#: Why a gridmesh event did not become an MQTT message.
OUTBOUND_DROP_REASONS = (
    "unencodable",  # a value JSON cannot carry (bytes in a json rule, NaN)
    "invalid_topic",  # the mapped MQTT topic breaks gridmesh.topics
    "unmapped",  # the topic does not start with the rule's strip
    "queue_full",  # paho holds outbound_queue_max messages already
    "disconnected",  # QoS 0 while the broker is away
    "mqtt_error",  # any other refusal by the MQTT client
)
_INSTALL_HINT = "the MQTT bridge needs paho-mqtt: pip install 'gridmesh[mqtt]'"


@dataclass(slots=True)
class _Pending:
    """An inbound QoS 1/2 message waiting to be acknowledged to the broker."""

    mid: int
    qos: int
    connection: int
    done: bool = False


@dataclass(slots=True)
class _Received:
    """One MQTT message handed from paho's thread to the loop."""

    message: mqtt.MQTTMessage
    connection: int
    pending: _Pending | None = field(default=None)


class MqttBridge:
    """Bridges ``udp``'s flow and an MQTT broker by ``config``'s rules; see the module doc."""

    def __init__(self, udp: UdpNode, config: MqttBridgeConfig) -> None:
        self.udp = udp
        self.config = config
        self.client_id = config.client_id or f"gridmesh-bridge-{udp.node.node_id}"
        self._outbound = RuleMatcher([rule.filter for rule in config.outbound])
        self._inbound = RuleMatcher([rule.filter for rule in config.inbound])
        self._lock = threading.Lock()  # the inbox, the connection state, the counters
        self._inbox: deque[_Received] = deque()
        self._wake_pending = False
        self._connection = 0  # +1 on every connect and disconnect
        self._connected = False
        self._subscribing: set[int] = set()  # inbound SUBSCRIBEs not yet acknowledged
        self._flow_subscribing = len(config.outbound)  # outbound subscriptions not yet granted
        self._paho: ModuleType | None = None
        self._acks: deque[_Pending] = deque()  # in the order received: acknowledged in order
        self._awaiting: dict[int, _Pending] = {}  # event id -> its MQTT message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._previous_acked: Callable[[list[Event], float], None] | None = None
        self._previous_refused: Callable[[PublishRefused, float], None] | None = None
        self._closed = False
        # pubsub.mode = "gossip" has no Event Manager and no acknowledgements: a message is
        # settled once it is published (gossip's reliability, not at least once).
        self._flow_acknowledges = udp.node.config.pubsub.mode != "gossip"
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "connects",
                "disconnects",
                "connect_failures",
                "subscribe_refused",
                "inbound",
                "inbound_acked",
                "inbound_refused",
                "outbound",
                "outbound_acked",
                "outbound_refused",
                "looped",
                "copies",
            ),
            0,
        )
        for reason in INBOUND_DROP_REASONS:
            self._counters[f"dropped_in_{reason}"] = 0
        for reason in OUTBOUND_DROP_REASONS:
            self._counters[f"dropped_out_{reason}"] = 0

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe the outbound rules in the flow and start connecting to the broker.

        Returns at once; paho connects (and reconnects) in the background:
        ``wait_ready`` waits for it. The node must be started.
        """
        try:
            from gridmesh.bridges import _paho  # noqa: PLC0415 - paho-mqtt is optional
        except ImportError:  # pragma: no cover - paho-mqtt is in the test extra
            raise LocalProtocolError(_INSTALL_HINT) from None
        if self._client is not None:
            raise LocalProtocolError("the bridge is started already")
        self._loop = asyncio.get_running_loop()
        self._paho = _paho
        config = self.config
        pubsub = self.udp.node.pubsub
        self._previous_acked, self._previous_refused = pubsub.on_acked, pubsub.on_refused
        pubsub.on_acked, pubsub.on_refused = self._on_flow_acked, self._on_flow_refused
        for index, rule in enumerate(config.outbound):
            self.udp.subscribe(
                rule.filter,
                on_event=partial(self._on_event, index),
                on_done=self._on_flow_subscribed,
            )
        client = _paho.new_client(self.client_id)
        if config.username is not None:
            password = None if config.password is None else config.password.get_secret_value()
            client.username_pw_set(config.username, password)
        client.reconnect_delay_set(config.reconnect_delay_min_s, config.reconnect_delay_max_s)
        client.max_queued_messages_set(config.outbound_queue_max)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        properties = _paho.connect_properties(
            receive_maximum=config.inbound_inflight_max, session_expiry_s=config.session_expiry_s
        )
        client.connect_async(
            config.host,
            config.port,
            keepalive=config.keepalive_s,
            clean_start=config.session_expiry_s == 0,
            properties=properties,
        )
        self._client = client
        client.loop_start()

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the bridge is ``ready``, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    @property
    def connected(self) -> bool:
        """Connected to the broker now."""
        with self._lock:
            return self._connected

    @property
    def ready(self) -> bool:
        """Connected, every inbound subscription acknowledged by the broker and every
        outbound one granted by the flow: both directions bridge from now on."""
        with self._lock:
            return self._connected and not self._subscribing and self._flow_subscribing <= 0

    def close(self) -> None:
        """Unsubscribe from the flow, disconnect from the broker, stop paho's thread.

        Inbound messages not yet acknowledged are not: a persistent session
        (``session_expiry_s`` > 0) gets them again on the next connect.
        """
        if self._closed:
            return
        self._closed = True
        if self._client is None:
            return  # never started
        if self.config.outbound:
            with contextlib.suppress(LocalProtocolError):  # the node is gone already
                self.udp.unsubscribe([rule.filter for rule in self.config.outbound])
        pubsub = self.udp.node.pubsub
        if pubsub.on_acked == self._on_flow_acked:
            pubsub.on_acked, pubsub.on_refused = self._previous_acked, self._previous_refused
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._connected = False
            self._inbox.clear()

    def stats(self) -> dict[str, int]:
        """Counters: traffic each way, drops by direction and reason, the connection."""
        with self._lock:
            return {
                **self._counters,
                "connected": int(self._connected),
                "inbox": len(self._inbox),
                "inbound_pending": len(self._acks),
            }

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    # -- outbound: gridmesh -> MQTT ------------------------------------------------

    def _on_flow_subscribed(self, result: SubscribeResult) -> None:
        with self._lock:
            self._flow_subscribing -= 1
        if not result.ok:
            self._count("subscribe_refused")
            log.warning(
                "the flow refused the bridge's subscription to %s: %s",
                list(result.filters),
                [status.name for status in result.statuses],
            )

    def _on_event(self, index: int, event: Event, now: float) -> None:
        """An event from the flow, delivered for outbound rule ``index``."""
        try:
            if self._outbound.first(event.topic) != index:
                return  # an earlier rule maps it (it was delivered for that one too)
            if event.source == self.udp.node.node_id:
                self._count("looped")  # it came from MQTT through this bridge
                return
            rule = self.config.outbound[index]
            topic = map_topic(event.topic, strip=rule.strip, prefix=rule.prefix)
            payload = encode_outbound(event, rule)
        except Unmappable as drop:
            self._count(f"dropped_out_{drop.reason}")
            return
        self._publish(topic, payload, rule.retain)

    def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        client, paho = self._client, self._paho
        if client is None or paho is None or self._closed:
            self._count("dropped_out_disconnected")
            return
        qos = self.config.qos
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError:  # paho's own topic and size checks
            self._count("dropped_out_invalid_topic")
            return
        if info.rc == paho.ERR_SUCCESS or (info.rc == paho.ERR_NO_CONN and qos > 0):
            self._count("outbound")  # QoS 1/2 without a connection: paho sends it on reconnect
        elif info.rc == paho.ERR_NO_CONN:
            self._count("dropped_out_disconnected")
        elif info.rc == paho.ERR_QUEUE_SIZE:
            self._count("dropped_out_queue_full")
        else:
            self._count("dropped_out_mqtt_error")

    # -- inbound: MQTT -> gridmesh (paho's thread) ----------------------------------

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        wake = False
        with self._lock:
            if len(self._inbox) >= self.config.inbound_queue_max:
                self._counters["dropped_in_queue_full"] += 1
                drop = True
            else:
                drop = False
                self._inbox.append(_Received(message, self._connection))
                wake, self._wake_pending = not self._wake_pending, True
        if drop:
            client.ack(message.mid, message.qos)  # dropped for good: the broker may forget it
            return
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the bridge is going away
                self._loop.call_soon_threadsafe(self._drain)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._count("connect_failures")
            log.warning("the MQTT broker %s refused the bridge: %s", self._broker, reason)
            return
        paho = self._paho
        assert paho is not None, "start() sets it before paho's thread runs"
        mids = set()
        for index, rule in enumerate(self.config.inbound):
            mid = paho.subscribe(client, rule.filter, qos=self.config.qos, identifier=index + 1)
            if mid is not None:
                mids.add(mid)
        with self._lock:
            self._connection += 1
            self._connected = True
            self._subscribing = mids
            self._counters["connects"] += 1
        log.info(
            "connected to MQTT broker %s as %s (session present: %s)",
            self._broker,
            self.client_id,
            flags.session_present,
        )

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._count("connect_failures")
        log.warning("cannot reach the MQTT broker %s; retrying", self._broker)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            self._connection += 1
            self._connected = False
            if was_connected:
                self._counters["disconnects"] += 1
        if was_connected and not self._closed:
            log.warning("lost the MQTT broker %s (%s); reconnecting", self._broker, reason)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            self._subscribing.discard(mid)
        refused = sum(1 for reason in reasons if reason.is_failure)
        if refused:
            self._count("subscribe_refused", refused)
            log.warning("the MQTT broker refused an inbound subscription: %s", reasons)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason: ReasonCode,
        _properties: Properties,
    ) -> None:
        self._count("outbound_refused" if reason.is_failure else "outbound_acked")

    @property
    def _broker(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- inbound: MQTT -> gridmesh (the loop) ----------------------------------------

    def _drain(self) -> None:
        with self._lock:
            batch = list(self._inbox)
            self._inbox.clear()
            self._wake_pending = False
        for received in batch:
            if self._closed:
                return
            message = received.message
            if message.qos > 0:
                received.pending = _Pending(message.mid, message.qos, received.connection)
                self._acks.append(received.pending)
            try:
                event = self._bridge_in(message)
            except Unmappable as drop:
                self._count(f"dropped_in_{drop.reason}")
                self._settle(received.pending)
                continue
            if event is None or not self._flow_acknowledges:
                self._settle(received.pending)  # a copy for a later rule, or gossip mode
            elif received.pending is not None:
                self._awaiting[event.event_id] = received.pending

    def _bridge_in(self, message: mqtt.MQTTMessage) -> Event | None:
        """Publish ``message`` into the flow; ``None`` for a copy another rule handles."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            raise Unmappable("invalid_topic") from None
        index = self._inbound.first(topic)
        if index is None:
            raise Unmappable("unmapped")
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None)
        if identifiers and index + 1 not in identifiers:
            self._count("copies")  # the broker sent one copy per matching subscription
            return None
        if len(message.payload) > self.config.inbound_payload_bytes_max:
            raise Unmappable("too_large")
        rule = self.config.inbound[index]
        inbound = decode_inbound(bytes(message.payload), rule)
        name = map_topic(topic, strip=rule.strip, prefix=rule.prefix)
        try:
            event = self.udp.publish(
                name, inbound.value, unit=inbound.unit, time_us=inbound.time_us
            )
        except InvalidTopic:
            raise Unmappable("invalid_topic") from None
        except PublishQueueFull:
            raise Unmappable("publish_queue_full") from None
        except LocalProtocolError:
            raise Unmappable("bad_value") from None
        self._count("inbound")
        return event

    def _on_flow_acked(self, events: list[Event], now: float) -> None:
        settled = 0
        for event in events:
            pending = self._awaiting.pop(event.event_id, None)
            if pending is not None:
                settled += 1
                self._settle(pending)
        if settled:
            self._count("inbound_acked", settled)
        if self._previous_acked is not None:
            self._previous_acked(events, now)

    def _on_flow_refused(self, refusal: PublishRefused, now: float) -> None:
        pending = self._awaiting.pop(refusal.event.event_id, None)
        if pending is not None:
            self._count("inbound_refused")
            log.warning("the flow refused a bridged event: %s", refusal)
            self._settle(pending)
        if self._previous_refused is not None:
            self._previous_refused(refusal, now)

    def _settle(self, pending: _Pending | None) -> None:
        """Mark ``pending`` done; acknowledge to the broker every done message at the head."""
        if pending is None:
            return
        pending.done = True
        acks = self._acks
        client = self._client
        with self._lock:
            connection = self._connection
        # In order within a connection; one from a connection since gone is never
        # acknowledged (its packet id belongs to that connection) and holds nobody up.
        while acks and (acks[0].done or acks[0].connection != connection):
            head = acks.popleft()
            if head.done and client is not None and head.connection == connection:
                client.ack(head.mid, head.qos)
