"""The asyncio UDP driver on real loopback sockets, and the runtime CLI's errors."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import cbor2
import pytest

from gridmesh.cli import main
from gridmesh.errors import LocalProtocolError
from gridmesh.node import NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.runtime import ControlClient, NodeUnreachable, UdpNode, free_udp_ports
from gridmesh.wire import Envelope, Kind, encode

T = TypeVar("T")
FAST = NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0.05, member_timeout_s=5))


async def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def with_two_nodes(body: Callable[[UdpNode, UdpNode], Awaitable[T]]) -> T:
    async def run() -> T:
        port_a, port_b = free_udp_ports("127.0.0.1", 2)
        a = UdpNode(node_id=1, listen=("127.0.0.1", port_a), config=FAST, rng=random.Random(1))
        b = UdpNode(
            node_id=2,
            listen=("127.0.0.1", port_b),
            config=FAST,
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(2),
        )
        await a.start()
        await b.start()
        try:
            await eventually(lambda: len(a.node.membership.neighbors()) == 1)
            await eventually(lambda: len(b.node.membership.neighbors()) == 1)
            return await body(a, b)
        finally:
            a.close()
            b.close()

    return asyncio.run(run())


def test_two_real_nodes_join_and_deliver_a_broadcast() -> None:
    async def body(a: UdpNode, b: UdpNode) -> None:
        message_id = a.node.broadcast({"price": 0.08}, topic="TARIFF", now=0.0 + 1e9)
        await eventually(lambda: message_id in b.deliveries)
        assert b.deliveries[message_id].payload == {"price": 0.08}

    with_two_nodes(body)


def test_malformed_datagrams_are_counted_and_dropped_and_the_node_keeps_working() -> None:
    async def body(a: UdpNode, b: UdpNode) -> None:
        garbage = [
            b"",
            b"\xff\xff",
            b"\x00" * 70_000,  # larger than message_bytes_max
            cbor2.dumps([2, 1, 0, 0, 0, "", 0, 0, None, None]),  # wrong version
            encode(Envelope(Kind.GOSSIP, 1, 9, 9, "T", 0, 3, "not [fanout, payload]")),
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            for data in garbage:
                if len(data) <= 65_507:
                    raw.sendto(data, a.listen)
            raw.sendto(b"\x00" * 65_000 + b"\x00" * 500, a.listen)
        await eventually(lambda: sum((a.node.rejected or {}).values()) == len(garbage))
        assert a.node.rejected == {"malformed": 3, "too_large": 1, "version": 1}
        message_id = a.node.broadcast("still alive", topic="T", now=1e9)
        await eventually(lambda: message_id in b.deliveries)

    with_two_nodes(body)


def test_the_control_channel_answers_status_broadcast_and_delivered() -> None:
    async def body(a: UdpNode, b: UdpNode) -> None:
        async with await ControlClient.open() as client:
            status = await client.request(a.advertise, {"op": "status"})
            assert status["ok"] and status["node_id"] == 1 and status["members"] == 1
            stats = status["stats"]
            assert isinstance(stats, dict) and {"send_errors", "oversized", "delivered"} <= set(
                stats
            )
            sent = await client.request(a.advertise, {"op": "broadcast", "payload": "hi"})
            message_id = sent["message_id"]
            assert isinstance(message_id, int)
            await eventually(lambda: message_id in b.deliveries)
            got = await client.request(b.advertise, {"op": "delivered", "message_id": message_id})
            assert got["delivered"] is True and isinstance(got["latency_s"], float)
            bad = await client.request(a.advertise, {"op": "broadcast", "fanout": 0})
            assert bad["ok"] is False and "fanout" in str(bad["error"])
            unknown = await client.request(a.advertise, {"op": "reboot"})
            assert unknown["ok"] is False
            with pytest.raises(NodeUnreachable):
                await client.request("127.0.0.1:9", {"op": "status"}, timeout_s=0.3)

    with_two_nodes(body)


def test_control_requests_from_other_hosts_are_refused_and_counted() -> None:
    async def body(a: UdpNode, b: UdpNode) -> None:
        request = encode(Envelope(Kind.CONTROL, 5, 0, 0, "", 0, 0, {"op": "broadcast"}))
        before = a.node.gossip.delivered
        a.datagram_received(request, ("192.0.2.7", 4000))  # TEST-NET-1: never loopback
        assert a.node.rejected == {"malformed": 1}
        assert a.node.gossip.delivered == before

    with_two_nodes(body)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["node", "--listen", "localhost"], "--listen"),
        (["node", "--listen", "127.0.0.1:70000"], "--listen"),
        (["node", "--listen", "127.0.0.1:9000", "--fanout", "0"], "gossip.fanout"),
        (["node", "--listen", "127.0.0.1:9000", "--id", "0"], "--id"),
        (["node", "--listen", "127.0.0.1:9000", "--join", "nowhere"], "--join"),
        (["cluster", "--nodes", "0"], "--nodes"),
        (["cluster", "--nodes", "3", "--kill", "3"], "--kill"),
        (["status", "127.0.0.1:1-99999"], "addresses"),
    ],
)
def test_runtime_commands_refuse_bad_arguments_with_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_node_that_cannot_bind_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["node", "--listen", f"127.0.0.1:{port}", "--quiet"]) == 2
    assert "--listen" in capsys.readouterr().err


def test_broadcast_and_status_to_an_unreachable_node_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (port,) = free_udp_ports("127.0.0.1", 1)
    assert main(["broadcast", "--via", f"127.0.0.1:{port}", "hello"]) == 1
    assert "did not answer" in capsys.readouterr().err
    assert main(["status", f"127.0.0.1:{port}", "--json"]) == 1


def test_the_example_node_configuration_is_valid_and_documents_the_defaults() -> None:
    import argparse
    from pathlib import Path

    from gridmesh.runtime.cli import load_node_config

    path = Path(__file__).resolve().parent.parent / "examples" / "node.toml"
    unset = {"hops": None, "exchange_interval": None, "member_timeout": None, "membership": None}
    assert load_node_config(path, argparse.Namespace(fanout=None, **unset)) == NodeConfig()
    flags = argparse.Namespace(fanout=9, **unset)
    assert load_node_config(path, flags).gossip.fanout == 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["node", "--listen", "0.0.0.0:9000"], "--advertise"),
        (["node", "--listen", "localhost:9000"], "--advertise"),
        (["node", "--listen", "127.0.0.1:9000", "--advertise", "example.org:9"], "--advertise"),
        (["node", "--listen", "127.0.0.1:9000", "--join", "no-such-host.invalid:9"], "--join"),
    ],
)
def test_nodes_are_reached_by_ip_so_names_and_wildcards_need_care(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_real_nodes_run_lazy_push_groups_and_anti_entropy_over_udp() -> None:
    """The dissemination modes are the same code on sockets: lazy push (IHAVE,
    IWANT), a group message, and anti-entropy for a node that starts late."""

    async def run() -> None:
        ports = free_udp_ports("127.0.0.1", 3)
        gossip = {"mode": "lazy", "fanout": 2, "anti_entropy_interval_s": 0.1}
        membership = {"exchange_interval_s": 0.05, "member_timeout_s": 5}

        def config(groups: tuple[str, ...]) -> NodeConfig:
            return NodeConfig.model_validate(
                {"gossip": gossip, "membership": membership, "groups": groups}
            )

        a = UdpNode(
            node_id=1, listen=("127.0.0.1", ports[0]), config=config(()), rng=random.Random(1)
        )
        b = UdpNode(
            node_id=2,
            listen=("127.0.0.1", ports[1]),
            config=config(("tariff:RTP",)),
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(2),
        )
        c = UdpNode(
            node_id=3,
            listen=("127.0.0.1", ports[2]),
            config=config(()),
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(3),
        )
        await a.start()
        await b.start()
        try:
            await eventually(lambda: len(a.node.membership.neighbors()) == 1)
            everyone = a.node.broadcast("tariff", topic="T", now=time.time())
            rtp = a.node.broadcast("rtp only", topic="T", now=time.time(), group="tariff:RTP")
            await eventually(lambda: everyone in b.deliveries and rtp in b.deliveries)
            assert b.node.gossip.requested >= 2  # the payloads came on request (IWANT)
            await c.start()  # after both broadcasts: only anti-entropy can bring them
            await eventually(lambda: everyone in c.deliveries)
            await asyncio.sleep(0.3)
            assert rtp not in c.deliveries  # not its group: repaired, carried, not delivered
            assert c.node.gossip.repaired >= 1
        finally:
            for node in (a, b, c):
                node.close()

    asyncio.run(run())


def test_the_udp_runtime_refuses_hybrid_multicast_clearly() -> None:
    config = NodeConfig.model_validate({"gossip": {"mode": "hybrid"}})
    with pytest.raises(LocalProtocolError, match="multicast"):
        UdpNode(node_id=1, listen=("127.0.0.1", 0), config=config)
