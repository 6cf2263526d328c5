"""Command-line commands that run real nodes: node, cluster, broadcast, aggregate, status."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import random
import secrets
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from gridmesh.config import config_error, load_toml, validate_model
from gridmesh.errors import ConfigError, GridmeshError
from gridmesh.historian import Historian, HistorianConfig, open_historian
from gridmesh.node import NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.aggregation import TreeAggregationConfig
from gridmesh.protocols.pubsub import Event, SubscribeResult
from gridmesh.runtime._address import format_address, ip_endpoint, parse_address
from gridmesh.runtime._cluster import ClusterError, ProcessCluster
from gridmesh.runtime._control import ControlClient, NodeUnreachable
from gridmesh.runtime._readings import ReadingValue, constant_reading, load_readings
from gridmesh.runtime._tcp import TcpNode
from gridmesh.runtime._udp import UdpNode
from gridmesh.security._link import LinkCredentials

__all__ = [
    "NodeSettings",
    "add_runtime_commands",
    "load_node_config",
    "load_node_settings",
    "node_endpoints",
    "run_async",
    "start_node",
]

_T = TypeVar("_T")
EXIT_FAILURE = 1
_DOCS = "docs/OPERATIONS.md"


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def add_runtime_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser("node", help="run one gridmesh node on a UDP (or TCP/TLS) port")
    node.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to bind")
    node.add_argument(
        "--join", action="append", default=[], metavar="HOST:PORT", help="seed node (repeatable)"
    )
    node.add_argument("--id", type=int, default=None, help="node id (default: random 64-bit)")
    node.add_argument("--advertise", metavar="HOST:PORT", help="address peers should use")
    node.add_argument("--seed", type=int, default=None, help="seed the node's randomness")
    node.add_argument("--config", type=Path, help="node configuration file (TOML)")
    _add_tuning_flags(node)
    node.add_argument("--quiet", action="store_true", help="do not log each delivery")
    node.add_argument(
        "--pki",
        type=Path,
        metavar="DIR",
        help="run secure: this node's certificate and key from a PKI directory "
        "(gridmesh pki ...); it then admits only peers certified by the same authority",
    )
    node.add_argument(
        "--transport",
        choices=["udp", "tcp"],
        default="udp",
        help="udp (default): datagrams, peers proven by gridmesh's own handshake; tcp: TLS 1.3 "
        "with client certificates (needs --pki); control requests stay on the UDP port",
    )
    node.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="FILTER",
        help="subscribe to this topic filter; print each event as a JSON line (repeatable)",
    )
    node.set_defaults(handler=_node)

    publish = commands.add_parser(
        "publish", help="ask a running node to publish an event through its Event Managers"
    )
    publish.add_argument("topic", help="e.g. MEASUREMENT/SENSOR/1234/PowerConsumption")
    publish.add_argument("value", help="JSON, or plain text")
    publish.add_argument("--via", required=True, metavar="HOST:PORT", help="the publishing node")
    publish.add_argument("--unit", default="", help="e.g. kW")
    publish.set_defaults(handler=_publish)

    cluster = commands.add_parser("cluster", help="start N node processes on this host")
    cluster.add_argument("--nodes", type=int, required=True, help="how many node processes")
    cluster.add_argument("--host", default="127.0.0.1")
    cluster.add_argument("--base-port", type=int, default=None, help="default: free ports")
    cluster.add_argument("--broadcast", metavar="PAYLOAD", help="broadcast this, report, exit")
    cluster.add_argument("--topic", default="BROADCAST")
    cluster.add_argument(
        "--kill", type=int, default=0, metavar="K", help="then kill -9 K nodes and broadcast again"
    )
    cluster.add_argument("--log-dir", type=Path, default=None, help="keep each node's log here")
    _add_tuning_flags(cluster)
    cluster.set_defaults(handler=_cluster)

    broadcast = commands.add_parser("broadcast", help="ask a running node to broadcast")
    broadcast.add_argument("payload", metavar="PAYLOAD", help="JSON, or plain text")
    broadcast.add_argument("--via", required=True, metavar="HOST:PORT", help="node to start at")
    broadcast.add_argument("--topic", default="BROADCAST")
    broadcast.add_argument("--fanout", type=float, default=None, help="mean copies per relay")
    broadcast.add_argument("--hops", type=int, default=None)
    broadcast.add_argument("--group", default="", help="only nodes of this group deliver it")
    broadcast.add_argument(
        "--reliability", type=float, default=None, help="delivery probability, instead of --fanout"
    )
    broadcast.set_defaults(handler=_broadcast)

    aggregate = commands.add_parser(
        "aggregate", help="ask a running node to aggregate a reading over the nodes it reaches"
    )
    aggregate.add_argument(
        "function", help="sum, count, min, max, mean, vector_sum, ...; collect: every reading"
    )
    aggregate.add_argument("reading", help="the reading's name, as in the nodes' [readings]")
    aggregate.add_argument("--via", required=True, metavar="HOST:PORT", help="node to start at")
    aggregate.add_argument(
        "--params", default=None, metavar="JSON", help="function parameters, e.g. '{\"length\": 3}'"
    )
    aggregate.add_argument("--fanout", type=int, default=None, help="targets per node; 0: all")
    aggregate.add_argument("--hops", type=int, default=None)
    aggregate.add_argument("--timeout", type=float, default=None, metavar="S", help="in all")
    aggregate.add_argument("--replies-min", type=int, default=None, metavar="N")
    aggregate.add_argument(
        "--segment", default=None, metavar="GROUP", help="only nodes of this group contribute"
    )
    aggregate.set_defaults(handler=_aggregate)

    status = commands.add_parser("status", help="ask running nodes for their state")
    status.add_argument(
        "addresses", nargs="+", metavar="HOST:PORT", help="nodes; HOST:FIRST-LAST for a range"
    )
    status.add_argument("--message", type=int, default=None, help="did they deliver this id?")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_status)


def _add_tuning_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--membership",
        choices=["full", "cyclon", "newscast", "hyparview"],
        default=None,
        help="membership protocol (default: full)",
    )
    parser.add_argument("--fanout", type=int, default=None, help="gossip fanout f")
    parser.add_argument("--hops", type=int, default=None, help="gossip hops r")
    parser.add_argument("--exchange-interval", type=float, default=None, metavar="S")
    parser.add_argument("--member-timeout", type=float, default=None, metavar="S")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What a node's configuration file and flags say: its ``NodeConfig`` and static readings."""

    config: NodeConfig
    readings: Mapping[str, ReadingValue]
    historian: HistorianConfig | None = None


def load_node_settings(path: Path | None, args: argparse.Namespace) -> NodeSettings:
    """The node configuration and ``[readings]``: file (if any), then flags, all validated."""
    raw: dict[str, Any] = {} if path is None else load_toml(path)
    source = "command line" if path is None else str(path)
    readings = raw.pop("readings", {})  # the node's data, not the protocols' configuration
    historian = raw.pop("historian", None)  # the Event Manager's store, not a protocol's
    config = _node_config(raw, source, args)
    store = None
    if historian is not None:
        store = validate_model(HistorianConfig, historian, source=source, docs=_DOCS)
        if not any(
            ref.node_id == getattr(args, "id", None) for ref in config.pubsub.event_managers
        ):
            raise ConfigError(
                source,
                "historian",
                "a [historian] only on an Event Manager (a node whose --id is listed in "
                "pubsub.event_managers)",
            )
    return NodeSettings(
        config,
        load_readings(
            readings, source=source, docs=_DOCS, readings_max=config.aggregation.readings_max
        ),
        store,
    )


def load_node_config(path: Path | None, args: argparse.Namespace) -> NodeConfig:
    """The node configuration: file (if any), then flags on top, all validated."""
    return load_node_settings(path, args).config


def _node_config(raw: dict[str, Any], source: str, args: argparse.Namespace) -> NodeConfig:
    flags = {
        ("membership", "kind"): ("--membership", args.membership),
        ("gossip", "fanout"): ("--fanout", args.fanout),
        ("gossip", "hops"): ("--hops", args.hops),
        ("membership", "exchange_interval_s"): ("--exchange-interval", args.exchange_interval),
        ("membership", "member_timeout_s"): ("--member-timeout", args.member_timeout),
    }
    for (section, field), (_, value) in flags.items():
        if value is not None and isinstance(raw.setdefault(section, {}), dict):
            raw[section][field] = value
    try:
        return NodeConfig.model_validate(raw)
    except ValidationError as exc:
        location = tuple(exc.errors(include_url=False)[0]["loc"])
        flag, value = flags.get(location, (None, None))  # type: ignore[arg-type]
        if flag is not None and value is not None:
            raise config_error("command line", exc, docs=_DOCS, field=flag, got=value) from None
        raise config_error(source, exc, docs=_DOCS) from None


def _resolve_seed(text: str) -> Peer:
    """A seed given by name is looked up once, here: nodes only ever send to IP literals."""
    host, port = parse_address(text, field="--join")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConfigError(
            "command line", "--join", "a resolvable HOST:PORT", got=f"{text} ({exc})"
        ) from None
    return Peer(0, format_address(str(infos[0][4][0]), port))


def node_endpoints(args: argparse.Namespace) -> tuple[tuple[str, int], tuple[Peer, ...]]:
    """``--listen`` as (host, port) and the ``--join`` seeds, checked with ``--advertise``."""
    listen = parse_address(args.listen, field="--listen")
    seeds = tuple(_resolve_seed(a) for a in args.join)
    if args.advertise is not None:
        if ip_endpoint(args.advertise) is None:
            raise ConfigError(
                "command line",
                "--advertise",
                "IP:PORT (peers are reached by IP)",
                got=args.advertise,
            )
    elif ip_endpoint(args.listen) is None or ipaddress.ip_address(listen[0]).is_unspecified:
        raise ConfigError(
            "command line",
            "--advertise",
            "an IP:PORT peers can reach, when --listen is a name or a wildcard address",
            got=args.listen,
        )
    return listen, seeds


async def start_node(udp: UdpNode, readings: Mapping[str, ReadingValue], listen_text: str) -> None:
    """Give a node its static readings and bind it; a bind failure is a ``ConfigError``."""
    for name, value in readings.items():
        udp.set_reading(name, constant_reading(value))
    try:
        await udp.start()
    except OSError as exc:
        raise ConfigError(
            "command line",
            "--listen",
            "an address this host can bind",
            got=f"{listen_text} ({exc.strerror})",
        ) from None


def _node(args: argparse.Namespace) -> int:
    listen, seeds = node_endpoints(args)
    node_id = args.id if args.id is not None else secrets.randbits(63) + 1
    if not 0 < node_id < 2**64:
        raise ConfigError("command line", "--id", "an integer in 1..2**64-1", got=node_id)
    settings = load_node_settings(args.config, args)
    if args.transport == "tcp" and args.pki is None:
        raise ConfigError(
            "command line",
            "--pki",
            "a PKI directory with this node's certificate and key (gridmesh pki issue): "
            "--transport tcp runs TLS 1.3 with client certificates of the grid's authority",
            got="nothing",
        )
    credentials = None if args.pki is None else _credentials(args.pki, node_id)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    log = logging.getLogger("gridmesh.node")

    def on_delivery(delivery: Delivery) -> None:
        log.info(
            "delivered message=%d origin=%d topic=%s latency_ms=%.1f",
            delivery.message_id,
            delivery.origin,
            delivery.topic,
            (delivery.received_at - delivery.created_us / 1e6) * 1000,
        )

    def on_event(event: Event, now: float) -> None:
        line = {
            "event": {
                "source": event.source,
                "event_id": event.event_id,
                "seq": event.seq,
                "topic": event.topic,
                "time_us": event.time_us,
                "value": event.value,
                "unit": event.unit,
            },
            "received_us": int(now * 1e6),
        }
        sys.stdout.write(json.dumps(line, default=repr) + "\n")
        sys.stdout.flush()

    def on_subscribed(result: SubscribeResult) -> None:
        statuses = [status.name for status in result.statuses]
        line = {"subscribed": list(result.filters), "statuses": statuses, "ok": result.ok}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    async def serve() -> None:
        historian: Historian | None = None
        if settings.historian is not None:
            try:
                historian = open_historian(settings.historian)
            except GridmeshError as exc:
                raise ConfigError(
                    str(args.config), "historian", "a store this node can open", got=str(exc)
                ) from None
        rng = random.Random(args.seed) if args.seed is not None else None
        udp: UdpNode
        if args.transport == "tcp":
            assert credentials is not None
            udp = TcpNode(
                node_id=node_id,
                listen=listen,
                credentials=credentials,
                config=settings.config,
                seeds=seeds,
                advertise=args.advertise,
                rng=rng,
                on_delivery=on_delivery,
                event_store=historian,
            )
        else:
            udp = UdpNode(
                node_id=node_id,
                listen=listen,
                config=settings.config,
                seeds=seeds,
                advertise=args.advertise,
                rng=rng,
                on_delivery=on_delivery,
                event_store=historian,
                credentials=credentials,
            )
        await start_node(udp, settings.readings, args.listen)
        log.warning("node %d listening on %s (%s)", node_id, udp.advertise, args.transport)
        if args.subscribe:
            udp.subscribe(args.subscribe, on_event=on_event, on_done=on_subscribed)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        retention = None if historian is None else asyncio.create_task(_retain(historian))
        await stop.wait()
        if retention is not None:
            retention.cancel()
        udp.close()
        if historian is not None:
            historian.close()
        log.warning("node %d stopped: %s", node_id, json.dumps(udp.stats(), sort_keys=True))

    run_async(serve())
    return 0


def _credentials(directory: Path, node_id: int) -> LinkCredentials:
    """This node's credentials from ``directory``; a ``ConfigError`` naming what is wrong."""
    from gridmesh.keystore import load_node_credentials
    from gridmesh.security import SecurityConfigError

    try:
        loaded = load_node_credentials(directory, node_id)
    except (SecurityConfigError, GridmeshError) as exc:
        raise ConfigError(
            "command line",
            "--pki",
            "a PKI directory with this node's certificate and key (gridmesh pki issue)",
            got=str(exc),
        ) from None
    return LinkCredentials(
        loaded.authority,
        loaded.identity,
        loaded.private_key,
        loaded.revocations,
        group_keys=loaded.group_keys,
    )


async def _retain(historian: Historian) -> None:
    """Apply the historian's retention once a minute while the node runs."""
    while True:
        await asyncio.sleep(60.0)
        removed = historian.apply_retention(int(time.time() * 1e6))
        if removed:
            logging.getLogger("gridmesh.node").info("historian retention removed %d", removed)


def _cluster(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 1000:
        raise ConfigError("command line", "--nodes", "an integer in 1..1000", got=args.nodes)
    if not 0 <= args.kill < args.nodes:
        raise ConfigError(
            "command line", "--kill", f"an integer in 0..{args.nodes - 1}", got=args.kill
        )
    node_args: list[str] = ["--quiet"]
    for flag, value in (
        ("--membership", args.membership),
        ("--fanout", args.fanout),
        ("--hops", args.hops),
        ("--exchange-interval", args.exchange_interval),
        ("--member-timeout", args.member_timeout),
    ):
        if value is not None:
            node_args += [flag, str(value)]
    load_node_config(None, args)  # validate the flags before starting anything
    cluster = ProcessCluster(
        args.nodes,
        host=args.host,
        base_port=args.base_port,
        node_args=node_args,
        log_dir=args.log_dir,
    )
    cluster.start()
    try:
        return run_async(_drive_cluster(cluster, args))
    except ClusterError as error:
        print(f"gridmesh: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        cluster.stop()


async def _drive_cluster(cluster: ProcessCluster, args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    client = await ControlClient.open(args.host if args.host != "0.0.0.0" else "127.0.0.1")
    async with client:
        await cluster.wait_formed(client)
        console.print(f"cluster of {args.nodes} nodes formed; seed {cluster.seed_address}")
        if args.broadcast is None:
            for index, address in enumerate(cluster.addresses):
                console.print(f"  node {index + 1}: {address}")
            console.print(
                "Ctrl-C stops the cluster. Try: gridmesh broadcast --via "
                f"{cluster.seed_address} 'hello'"
            )
            await asyncio.Event().wait()
            return 0
        payload = _parse_payload(args.broadcast)
        ok = await _broadcast_and_report(cluster, client, console, payload, args.topic)
        if args.kill:
            victims = random.Random().sample(range(1, args.nodes), args.kill)
            cluster.kill(victims)
            console.print(f"killed (kill -9) nodes {sorted(v + 1 for v in victims)}")
            ok = await _broadcast_and_report(cluster, client, console, payload, args.topic) and ok
        return 0 if ok else EXIT_FAILURE


async def _broadcast_and_report(
    cluster: ProcessCluster, client: ControlClient, console: Any, payload: object, topic: str
) -> bool:
    from rich.table import Table

    message_id = await cluster.broadcast(client, payload, topic=topic)
    received = await cluster.delivered(client, message_id, origin=0)
    table = Table(title=f"message {message_id} from node 1")
    table.add_column("node", justify="right")
    table.add_column("address")
    table.add_column("delivered")
    table.add_column("latency", justify="right")
    for index, latency in sorted(received.items()):
        table.add_row(
            str(index + 1),
            cluster.addresses[index],
            "yes" if latency is not None else "NO",
            f"{latency * 1000:.1f} ms" if latency is not None else "-",
        )
    console.print(table)
    reached = sum(1 for v in received.values() if v is not None)
    console.print(f"{reached}/{len(received)} live nodes (besides the origin) received it")
    return reached == len(received)


def _parse_payload(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _publish(args: argparse.Namespace) -> int:
    via = format_address(*parse_address(args.via, field="--via"))
    body: dict[str, object] = {
        "op": "publish",
        "topic": args.topic,
        "value": _parse_payload(args.value),
        "unit": args.unit,
    }

    answer = _ask(via, body, "publish")
    if answer is None:
        return EXIT_FAILURE
    print(f"published event {answer.get('event_id')} (seq {answer.get('seq')}) via {via}")
    return 0


def _ask(via: str, body: dict[str, object], what: str) -> dict[str, object] | None:
    """One control request to the node at ``via``; None (said on stderr) if it failed."""

    async def ask() -> dict[str, object]:
        async with await ControlClient.open() as client:
            return await client.request(via, body)

    try:
        answer = run_async(ask())
    except NodeUnreachable as error:
        print(f"gridmesh: {error}", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"gridmesh: {what} refused: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def _broadcast(args: argparse.Namespace) -> int:
    via = format_address(*parse_address(args.via, field="--via"))
    body: dict[str, object] = {
        "op": "broadcast",
        "topic": args.topic,
        "payload": _parse_payload(args.payload),
    }
    if args.fanout is not None:
        body["fanout"] = args.fanout
    if args.hops is not None:
        body["hops"] = args.hops
    if args.group:
        body["group"] = args.group
    if args.reliability is not None:
        body["reliability"] = args.reliability
    answer = _ask(via, body, "broadcast")
    if answer is None:
        return EXIT_FAILURE
    print(answer["message_id"])
    return 0


#: How much longer than the query's own timeout the client waits for its answer.
_AGGREGATE_SLACK_S = 2.0


def _aggregate(args: argparse.Namespace) -> int:
    via = format_address(*parse_address(args.via, field="--via"))
    body: dict[str, object] = {
        "op": "aggregate",
        "function": args.function,
        "reading": args.reading,
    }
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            raise ConfigError("command line", "--params", "a JSON map", got=args.params)
        body["params"] = params
    for key, value in (
        ("fanout", args.fanout),
        ("hops", args.hops),
        ("timeout_s", args.timeout),
        ("replies_min", args.replies_min),
        ("segment", args.segment),
    ):
        if value is not None:
            body[key] = value
    if args.timeout is not None and not 0 < args.timeout <= 86_400:
        raise ConfigError("command line", "--timeout", "seconds in (0, 86400]", got=args.timeout)
    # The node answers when the query ends, by its timeout at the latest; without
    # --timeout that is the node's aggregation.timeout_s, assumed to be the default.
    query_s = args.timeout if args.timeout is not None else TreeAggregationConfig().timeout_s
    timeout_s = query_s + _AGGREGATE_SLACK_S

    async def ask() -> dict[str, object]:
        async with await ControlClient.open() as client:
            return await client.request(via, body, timeout_s=timeout_s)

    try:
        answer = run_async(ask())
    except NodeUnreachable as error:
        print(f"gridmesh: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not answer.get("ok"):
        print(f"gridmesh: aggregate refused: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(answer, sort_keys=True))
    return 0


def _expand(addresses: list[str]) -> list[str]:
    expanded: list[str] = []
    for text in addresses:
        host, _, ports = text.rpartition(":")
        first, dash, last = ports.partition("-")
        if dash and first.isdigit() and last.isdigit() and int(first) <= int(last):
            if int(last) - int(first) >= 10_000:
                raise ConfigError(
                    "command line", "addresses", "a port range of at most 10,000", got=text
                )
            expanded += [
                format_address(*parse_address(f"{host}:{p}"))
                for p in range(int(first), int(last) + 1)
            ]
        else:
            expanded.append(format_address(*parse_address(text, field="addresses")))
    return expanded


def _status(args: argparse.Namespace) -> int:
    addresses = _expand(args.addresses)

    async def ask() -> tuple[
        dict[str, dict[str, object] | None], dict[str, dict[str, object] | None]
    ]:
        async with await ControlClient.open() as client:
            status = await client.request_all(addresses, {"op": "status"})
            delivered: dict[str, dict[str, object] | None] = {}
            if args.message is not None:
                delivered = await client.request_all(
                    addresses, {"op": "delivered", "message_id": args.message}
                )
            return status, delivered

    status, delivered = run_async(ask())
    if args.json:
        print(
            json.dumps(
                {a: {"status": status[a], "delivered": delivered.get(a)} for a in addresses},
                indent=2,
                sort_keys=True,
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("address", "node id", "members", "delivered", "duplicates", "rejected"):
            table.add_column(column)
        if args.message is not None:
            table.add_column(f"got {args.message}")
        for address in addresses:
            answer = status[address]
            if answer is None:
                table.add_row(address, "unreachable")
                continue
            stats = answer.get("stats")
            stats = stats if isinstance(stats, dict) else {}
            rejected = sum(v for k, v in stats.items() if k.startswith("rejected_"))
            row = [
                address,
                str(answer.get("node_id")),
                str(answer.get("members")),
                str(stats.get("delivered")),
                str(stats.get("duplicates")),
                str(rejected),
            ]
            if args.message is not None:
                got = delivered.get(address)
                row.append("yes" if got and got.get("delivered") else "no")
            table.add_row(*row)
        Console().print(table)
    return 0 if all(a is not None for a in status.values()) else EXIT_FAILURE
