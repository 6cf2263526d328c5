"""``gridmesh bridge mqtt``: a gridmesh node that bridges its flow to an MQTT broker.

The configuration file is a node's (docs/OPERATIONS.md: ``[gossip]``,
``[membership]``, ``[pubsub]``, ...) plus a ``[bridge.mqtt]`` table
(docs/BRIDGES.md). paho-mqtt is imported only when the bridge starts, so the
rest of the command line works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sys
from pathlib import Path
from typing import Any

from gridmesh.bridges._mqtt import MqttBridge
from gridmesh.bridges._mqtt_config import MqttBridgeConfig, load_mqtt_bridge_config
from gridmesh.config import load_toml, validate_model
from gridmesh.errors import ConfigError, LocalProtocolError
from gridmesh.node import NodeConfig
from gridmesh.runtime import UdpNode, load_readings
from gridmesh.runtime.cli import node_endpoints, run_async, start_node

__all__ = ["add_bridge_commands"]

_NODE_DOCS = "docs/OPERATIONS.md"
#: How long the bridge waits for the broker before saying it is still trying.
_CONNECT_WARNING_S = 10.0


def add_bridge_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``gridmesh bridge mqtt``."""
    bridge = commands.add_parser(
        "bridge", help="run a node that bridges its flow to another protocol (MQTT)"
    )
    kinds = bridge.add_subparsers(dest="bridge", required=True, metavar="KIND")
    mqtt = kinds.add_parser(
        "mqtt", help="bridge gridmesh topics to and from an MQTT broker (docs/BRIDGES.md)"
    )
    mqtt.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to bind")
    mqtt.add_argument(
        "--id",
        type=int,
        required=True,
        help="node id: events the bridge publishes carry it (loop prevention), and the "
        "default MQTT client id is made from it",
    )
    mqtt.add_argument(
        "--config",
        type=Path,
        required=True,
        help="node configuration with [pubsub] and [bridge.mqtt] (TOML)",
    )
    mqtt.add_argument(
        "--join", action="append", default=[], metavar="HOST:PORT", help="seed node (repeatable)"
    )
    mqtt.add_argument("--advertise", metavar="HOST:PORT", help="address peers should use")
    mqtt.add_argument("--seed", type=int, default=None, help="seed the node's randomness")
    mqtt.add_argument("--quiet", action="store_true", help="log only warnings")
    mqtt.set_defaults(handler=_bridge_mqtt)


def _load(path: Path, node_id: int) -> tuple[NodeConfig, MqttBridgeConfig, dict[str, Any]]:
    """The node's configuration, the bridge's, and the node's ``[readings]``."""
    raw = load_toml(path)
    source = str(path)
    bridge = raw.pop("bridge", None)
    if not isinstance(bridge, dict) or "mqtt" not in bridge:
        raise ConfigError(source, "bridge.mqtt", "a [bridge.mqtt] table (see docs/BRIDGES.md)")
    others = sorted(set(bridge) - {"mqtt"})
    if others:
        raise ConfigError(source, f"bridge.{others[0]}", "no such bridge (there is bridge.mqtt)")
    bridge_config = load_mqtt_bridge_config(bridge["mqtt"], source=source)
    readings = raw.pop("readings", {})
    if "historian" in raw:
        raise ConfigError(
            source, "historian", "no [historian] on a bridge: run it on an Event Manager node"
        )
    config = validate_model(NodeConfig, raw, source=source, docs=_NODE_DOCS)
    if config.pubsub.mode == "event_manager" and not config.pubsub.event_managers:
        raise ConfigError(
            source,
            "pubsub.event_managers",
            "at least one Event Manager: the bridge publishes and subscribes through them "
            "(or pubsub.mode = 'gossip')",
        )
    if any(ref.node_id == node_id for ref in config.pubsub.event_managers):
        raise ConfigError(
            "command line",
            "--id",
            "a node id that is no Event Manager's (a bridge is a client of the flow)",
            got=node_id,
        )
    return config, bridge_config, readings


def _bridge_mqtt(args: argparse.Namespace) -> int:
    listen, seeds = node_endpoints(args)
    if not 0 < args.id < 2**64:
        raise ConfigError("command line", "--id", "an integer in 1..2**64-1", got=args.id)
    config, bridge_config, raw_readings = _load(args.config, args.id)
    readings = load_readings(
        raw_readings,
        source=str(args.config),
        docs=_NODE_DOCS,
        readings_max=config.aggregation.readings_max,
    )
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    log = logging.getLogger("gridmesh.bridge.mqtt")

    async def serve() -> None:
        udp = UdpNode(
            node_id=args.id,
            listen=listen,
            config=config,
            seeds=seeds,
            advertise=args.advertise,
            rng=random.Random(args.seed) if args.seed is not None else None,
        )
        await start_node(udp, readings, args.listen)
        bridge = MqttBridge(udp, bridge_config)
        try:
            await bridge.start()
        except LocalProtocolError:  # paho-mqtt is missing
            udp.close()
            raise ConfigError(
                "command line", "bridge mqtt", "paho-mqtt installed: pip install 'gridmesh[mqtt]'"
            ) from None
        log.warning(
            "MQTT bridge node %d listening on %s, broker %s:%d, %d outbound and %d inbound rules",
            args.id,
            udp.advertise,
            bridge_config.host,
            bridge_config.port,
            len(bridge_config.outbound),
            len(bridge_config.inbound),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if await bridge.wait_ready(_CONNECT_WARNING_S):
            log.warning("MQTT bridge node %d ready: both directions subscribed", args.id)
        else:
            log.warning(
                "not connected to the MQTT broker %s:%d after %.0f s; still trying",
                bridge_config.host,
                bridge_config.port,
                _CONNECT_WARNING_S,
            )
        await stop.wait()
        bridge.close()
        udp.close()
        log.warning(
            "MQTT bridge node %d stopped: %s",
            args.id,
            json.dumps({"bridge": bridge.stats(), "node": udp.stats()}, sort_keys=True),
        )

    run_async(serve())
    return 0
