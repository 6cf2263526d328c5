"""Integration Proxies (seed 001, section III.A): gridmesh flows to and from other protocols.

* ``MqttBridge``: maps gridmesh topics to and from an MQTT 5 broker
  (Mosquitto, say) by the rules of an ``MqttBridgeConfig``; needs paho-mqtt
  (``pip install 'gridmesh[mqtt]'``), imported only when a bridge starts.
* ``gridmesh bridge mqtt`` runs one as a node (``gridmesh.bridges.cli``).

docs/BRIDGES.md has the mapping rules, payload formats, loop prevention and
the delivery guarantees with their limits.
"""

from __future__ import annotations

from gridmesh.bridges._mqtt import INBOUND_DROP_REASONS, OUTBOUND_DROP_REASONS, MqttBridge
from gridmesh.bridges._mqtt_config import (
    MQTT_RULES_MAX,
    InboundRule,
    MqttBridgeConfig,
    OutboundRule,
    load_mqtt_bridge_config,
)

__all__ = [
    "INBOUND_DROP_REASONS",
    "MQTT_RULES_MAX",
    "OUTBOUND_DROP_REASONS",
    "InboundRule",
    "MqttBridge",
    "MqttBridgeConfig",
    "OutboundRule",
    "load_mqtt_bridge_config",
]
