"""Everything the MQTT bridge asks of paho-mqtt, in one module imported only when a bridge starts.

paho-mqtt is an optional dependency (``pip install 'gridmesh[mqtt]'``);
keeping its imports here lets ``gridmesh.bridges`` and the command line load
without it.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = [
    "ERR_NO_CONN",
    "ERR_QUEUE_SIZE",
    "ERR_SUCCESS",
    "connect_properties",
    "new_client",
    "subscribe",
]

ERR_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
ERR_NO_CONN = MQTTErrorCode.MQTT_ERR_NO_CONN
ERR_QUEUE_SIZE = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
#: MQTT 5 caps the receive maximum at 65,535 (section 3.1.2.11.3).
_RECEIVE_MAXIMUM_MAX = 65535


def new_client(client_id: str) -> mqtt.Client:
    """An MQTT 5 client with callback API 2 that acknowledges messages only when told."""
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )


def connect_properties(*, receive_maximum: int, session_expiry_s: int) -> Properties:
    """CONNECT properties: how many QoS 1/2 messages may wait unacknowledged, and the session."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = min(receive_maximum, _RECEIVE_MAXIMUM_MAX)
    if session_expiry_s:
        properties.SessionExpiryInterval = session_expiry_s
    return properties


def subscribe(client: mqtt.Client, topic_filter: str, *, qos: int, identifier: int) -> int | None:
    """SUBSCRIBE with no-local and a subscription identifier; the packet id, or ``None``."""
    properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
    properties.SubscriptionIdentifier = identifier
    options = SubscribeOptions(qos=qos, noLocal=True)
    _, mid = client.subscribe(topic_filter, options=options, properties=properties)
    return mid
