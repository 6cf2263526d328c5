"""TCP links with TLS 1.3 and client certificates, on real loopback sockets.

Certificates come from the project's PKI (`gridmesh pki init/issue/revoke`) in a
temporary directory; every connection is real TLS (OpenSSL), nothing is mocked.
Attackers are raw TLS or TCP clients written here, or TcpNodes with the wrong
credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.keystore import PkiLayout, read_private_key
from gridmesh.node import NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.runtime import ControlClient, NodeUnreachable, TcpConfig, TcpNode
from gridmesh.runtime._tls import FRAME_HEADER, PREFACE_MAGIC, TlsConnection, tls_context
from gridmesh.runtime.cli import _credentials as link_credentials  # what `--pki DIR` gives
from gridmesh.security import make_revocation
from gridmesh.security._link import LinkCredentials
from gridmesh.wire import MESSAGE_BYTES_MAX, Envelope, Kind, encode
from tests.test_runtime import eventually

HOST = "127.0.0.1"
CONFIG = NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0.2, member_timeout_s=5))
ROLES = {1: "dso", 2: "dtc", 3: "meter", 5: "dtc", 6: "meter"}
REVOKED = 6  # revoked in the grid's revocations.cbor after its credentials were loaded


@dataclass(frozen=True)
class Pki:
    directory: Path
    foreign: Path  # another authority, with a node 9
    revoked: LinkCredentials  # node 6, loaded before its revocation

    def credentials(self, node_id: int) -> LinkCredentials:
        return link_credentials(self.directory, node_id)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    directory, foreign = root / "grid", root / "foreign"
    assert main(["pki", "init", "--dir", str(directory), "--name", "TLS grid"]) == 0
    assert main(["pki", "init", "--dir", str(foreign), "--name", "Another grid"]) == 0
    for node_id, role in ROLES.items():
        issue = ["pki", "issue", "--dir", str(directory), "--node-id", str(node_id)]
        assert main([*issue, "--role", role]) == 0
    assert main(["pki", "issue", "--dir", str(foreign), "--node-id", "9", "--role", "dtc"]) == 0
    revoked = link_credentials(directory, REVOKED)
    serial = hex(revoked.identity.serial)
    assert main(["pki", "revoke", "--dir", str(directory), "--serial", serial]) == 0
    return Pki(directory, foreign, revoked)


def free_ports(count: int) -> list[int]:
    """Ports free for both TCP (peers) and UDP (control) on loopback right now."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            with contextlib.suppress(OSError):
                udp.bind((HOST, port))
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


class Grid:
    """TcpNodes on loopback, closed at the end."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.nodes: dict[int, TcpNode] = {}

    async def start(
        self,
        node_id: int,
        *,
        join: int | None = None,
        credentials: LinkCredentials | None = None,
        tcp: TcpConfig | None = None,
    ) -> TcpNode:
        (port,) = free_ports(1)
        node = TcpNode(
            node_id=node_id,
            listen=(HOST, port),
            credentials=credentials or self.pki.credentials(node_id),
            config=CONFIG,
            seeds=() if join is None else (Peer(0, self.nodes[join].advertise),),
            rng=random.Random(node_id),
            tcp=tcp,
        )
        await node.start()
        self.nodes[node_id] = node
        return node

    async def start_joined(self, first: int, *others: int) -> list[TcpNode]:
        """Start ``first``, then ``others`` joining it; return them once all know each other."""
        nodes = [await self.start(first)]
        nodes += [await self.start(node_id, join=first) for node_id in others]
        await joined(*nodes)
        return nodes

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> LoopFactory:
    """asyncio's own event loop, and uvloop's (what `gridmesh node` runs on)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


def run(pki: Pki, loop_factory: LoopFactory, scenario: Callable[[Grid], object]) -> None:
    """Run ``scenario(grid)`` (a coroutine) on a fresh event loop; close every node after."""

    async def body() -> None:
        grid = Grid(pki)
        try:
            await scenario(grid)  # type: ignore[misc]
        finally:
            grid.close()
            await asyncio.sleep(0.05)  # let the transports finish closing

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(body())


async def joined(*nodes: TcpNode) -> None:
    await eventually(
        lambda: all(len(n.node.membership.neighbors()) == len(nodes) - 1 for n in nodes)
    )


def stat(node: TcpNode, name: str) -> int:
    return node.stats().get(name, 0)


@contextlib.asynccontextmanager
async def tls_client(
    node: TcpNode, credentials: LinkCredentials
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TLS 1.3 client with ``credentials``, connected to ``node``: an attacker's tool."""
    reader, writer = await asyncio.open_connection(
        HOST, node.listen[1], ssl=tls_context(credentials, server_side=False), server_hostname=""
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def plain_client(node: TcpNode) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to ``node``'s peer port: no TLS at all."""
    return await asyncio.open_connection(HOST, node.listen[1])


async def tls_client_closed(node: TcpNode, credentials: LinkCredentials, data: bytes) -> bool:
    """Whether ``node`` closes a ``tls_client`` connection that sent ``data``."""
    async with tls_client(node, credentials) as (reader, writer):
        writer.write(data)
        return await closed_by_peer(reader)


async def plain_client_closed(node: TcpNode, data: bytes = b"") -> bool:
    """Whether ``node`` closes a ``plain_client`` connection that sent ``data`` (if any)."""
    reader, writer = await plain_client(node)
    try:
        if data:
            writer.write(data)
        return await closed_by_peer(reader)
    finally:
        writer.close()


def framed(data: bytes) -> bytes:
    return FRAME_HEADER.pack(len(data)) + data


PREFACE = framed(PREFACE_MAGIC + f"{HOST}:1".encode())


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the other end closes the connection (EOF or reset) within 5 s."""
    try:
        return await asyncio.wait_for(reader.read(), 5.0) == b""
    except (ConnectionError, ssl.SSLError):
        return True


# -- honest nodes ---------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_two_nodes_gossip_over_mutually_authenticated_tls_1_3(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso, dtc = await grid.start_joined(1, 2)
        message_id = dso.node.broadcast("0.12 EUR/kWh", topic="TARIFF/RTP", now=time.time())
        await eventually(lambda: message_id in dtc.deliveries)
        assert stat(dtc, "sec_origin_verified") == 1  # signed end to end, checked on arrival
        table = "0.12;" * 8_000  # 40 kB: a frame of several TLS records
        big = dso.node.broadcast(table, topic="TARIFF/RTP", now=time.time())
        await eventually(lambda: big in dtc.deliveries)
        assert dtc.deliveries[big].payload == table
        for node, peer in ((dso, 2), (dtc, 1)):
            (connection,) = node.connections()
            assert connection.tls_version == "TLSv1.3"
            assert connection.identity is not None and connection.identity.node_id == peer
        assert stat(dso, "tcp_established") == 1 == stat(dtc, "tcp_established")
        assert not any(k.startswith("rejected_") for k in dso.stats() | dtc.stats())

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_three_nodes_gossip_and_a_closed_connection_is_dialled_again_on_demand(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso, dtc, meter = await grid.start_joined(1, 2, 3)
        tariff = dso.node.broadcast("0.12", topic="TARIFF/RTP", now=time.time())
        status = dtc.node.broadcast({"load": 0.7}, topic="DTC/2/STATUS", now=time.time())
        await eventually(lambda: tariff in dtc.deliveries and tariff in meter.deliveries)
        await eventually(lambda: status in dso.deliveries and status in meter.deliveries)
        for connection in dso.connections():  # the DSO drops every connection it has
            connection.close()
        assert dso.connections() == ()
        again = dso.node.broadcast("0.15", topic="TARIFF/RTP", now=time.time())
        await eventually(lambda: again in dtc.deliveries and again in meter.deliveries)
        assert stat(dso, "tcp_dialled") >= 1  # it dialled them back to send

    run(pki, loop_factory, scenario)


class WritesRefused:
    """An ``ssl.SSLObject`` whose writes OpenSSL refuses: a fault to inject."""

    def __init__(self, tls: ssl.SSLObject) -> None:
        self.tls = tls

    def write(self, data: object) -> int:
        raise ssl.SSLError("injected: the write is refused")

    def __getattr__(self, name: str) -> object:
        return getattr(self.tls, name)


@pytest.mark.timeout(20)
def test_a_dial_that_fails_writing_its_queued_frames_is_dialled_again(
    pki: Pki, loop_factory: LoopFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = TlsConnection.send
    refused: list[TlsConnection] = []

    def refused_once(connection: TlsConnection, frame: bytes) -> bool:
        if not connection.server_side and not refused:  # the first frame a dialled one sends
            refused.append(connection)
            connection._tls = WritesRefused(connection._tls)  # type: ignore[assignment]
        return send(connection, frame)

    monkeypatch.setattr(TlsConnection, "send", refused_once)

    async def scenario(grid: Grid) -> None:
        # The DTC's dial to the DSO closes as it writes the JOIN that waited for it; after
        # the backoff the DTC dials again rather than keep sending into the closed one.
        _, dtc = await grid.start_joined(1, 2)
        assert len(refused) == 1 and not refused[0].server_side
        assert stat(dtc, "tcp_tls_errors") == 1
        assert stat(dtc, "tcp_dialled") >= 2

    run(pki, loop_factory, scenario)


# -- refused peers --------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_node_certified_by_another_authority_fails_the_tls_handshake(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso = await grid.start(1)
        intruder = await grid.start(9, join=1, credentials=link_credentials(pki.foreign, 9))
        await eventually(lambda: stat(dso, "tcp_handshakes_failed") >= 1)
        await eventually(lambda: stat(intruder, "tcp_handshakes_failed") >= 1)
        assert stat(dso, "rejected_uncertified") >= 1
        assert stat(dso, "tcp_established") == 0
        assert dso.node.membership.neighbors() == [] == intruder.node.membership.neighbors()
        dtc = await grid.start(2, join=1)  # the node still serves honest peers
        await joined(dso, dtc)

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_a_revoked_certificate_is_refused_after_the_tls_handshake(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso = await grid.start(1)  # knows the revocation from revocations.cbor
        revoked = await grid.start(REVOKED, join=1, credentials=pki.revoked)
        await eventually(lambda: stat(dso, "rejected_revoked") >= 1)
        assert stat(dso, "tcp_handshakes_failed") == 0  # TLS itself cannot know
        assert stat(dso, "tcp_certificates_refused") >= 1
        assert dso.node.membership.neighbors() == []
        assert revoked.node.membership.neighbors() == []

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_a_revocation_that_arrives_by_gossip_cuts_the_revoked_nodes_connection(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso, _ = await grid.start_joined(1, 2)
        layout = PkiLayout(pki.directory)
        identity = pki.credentials(2).identity
        revocation = make_revocation(
            read_private_key(layout.ca_key),
            identity.serial,
            now=int(time.time()),
            reason="key_compromise",
            expires_at=identity.not_after,
        )
        dso.node.revoke(revocation, now=time.time())
        await eventually(lambda: dso.connections() == ())
        assert stat(dso, "tcp_closed_revoked") + stat(dso, "tcp_closed_refused") >= 1
        await eventually(lambda: stat(dso, "rejected_revoked") >= 1)  # it dials back: refused
        assert dso.connections() == ()

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_a_peer_certified_as_node_5_cannot_send_as_node_7(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso = await grid.start(1)
        forged = Envelope(Kind.GOSSIP, 99, 7, 7, "DTC/7/STATUS", 0, 5, [6, "x", "", False])
        async with tls_client(dso, pki.credentials(5)) as (_, writer):
            writer.write(PREFACE + framed(encode(forged)))
            await eventually(lambda: stat(dso, "rejected_uncertified") >= 1)
            assert 99 not in dso.deliveries
            assert stat(dso, "tcp_established") == 1  # TLS and the preface were fine
        assert dso.node.membership.neighbors() == []

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_a_tls_1_2_client_is_refused(pki: Pki, loop_factory: LoopFactory) -> None:
    async def scenario(grid: Grid) -> None:
        dso = await grid.start(1)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with pytest.raises(ssl.SSLError):
            _, writer = await asyncio.open_connection(
                HOST, dso.listen[1], ssl=old, server_hostname=""
            )
            writer.close()
        await eventually(lambda: stat(dso, "tcp_handshakes_failed") == 1)
        assert stat(dso, "rejected_uncertified") == 1

    run(pki, loop_factory, scenario)


# -- bad frames and limits: one connection closes, the node goes on ----------------------


@pytest.mark.timeout(20)
def test_oversized_frames_and_garbage_close_only_their_connection(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        dso, dtc = await grid.start_joined(1, 2)
        attacker = pki.credentials(5)
        too_large = PREFACE + FRAME_HEADER.pack(MESSAGE_BYTES_MAX + 1) + b"x" * 100
        assert await tls_client_closed(dso, attacker, too_large)
        assert stat(dso, "rejected_too_large") == 1
        garbage = b"\x00\x00\x00\x05hello, is this HTTP?"  # and no preface
        assert await tls_client_closed(dso, attacker, garbage)
        assert stat(dso, "rejected_malformed") == 1
        assert await tls_client_closed(dso, attacker, PREFACE + FRAME_HEADER.pack(0))  # empty
        assert stat(dso, "rejected_malformed") == 2
        assert stat(dso, "tcp_frames_refused") == 3
        async with tls_client(dso, attacker) as (_, writer):
            # A well-framed frame whose bytes are no envelope is the node's to judge: refused,
            # counted and scored like a bad message on a link, but the stream is intact.
            writer.write(PREFACE + framed(b"\xff" * 40))
            await eventually(lambda: stat(dso, "rejected_malformed") == 3)
            assert len(dso.connections()) == 2
        assert await plain_client_closed(dso, b"GET / HTTP/1.1\r\nHost: grid\r\n\r\n")  # no TLS
        assert stat(dso, "tcp_handshakes_failed") == 1
        # The node goes on: its honest peer still gets its tariffs, over the same connection.
        message_id = dso.node.broadcast("0.12", topic="TARIFF/RTP", now=time.time())
        await eventually(lambda: message_id in dtc.deliveries)
        assert stat(dtc, "tcp_established") == 1

    run(pki, loop_factory, scenario)


@pytest.mark.timeout(20)
def test_handshakes_connections_and_idle_time_are_bounded(
    pki: Pki, loop_factory: LoopFactory
) -> None:
    async def scenario(grid: Grid) -> None:
        limits = TcpConfig(connections_max=2, handshake_timeout_s=0.3, idle_timeout_s=0.4)
        dso = await grid.start(1, tcp=limits)
        quiet = [await plain_client(dso), await plain_client(dso)]
        assert await plain_client_closed(dso)  # beyond connections_max: closed at once
        assert stat(dso, "tcp_refused_full") == 1
        # The two that say nothing are closed when their handshake time is up.
        await eventually(lambda: stat(dso, "tcp_handshake_timeouts") == 2)
        for reader, writer in quiet:
            assert await closed_by_peer(reader)
            writer.close()
        async with tls_client(dso, pki.credentials(5)) as (reader, writer):
            writer.write(PREFACE)
            await eventually(lambda: len(dso.connections()) == 1)
            started = time.monotonic()
            assert await closed_by_peer(reader)  # silent: closed as idle
            assert time.monotonic() - started < 2.0
        assert stat(dso, "tcp_closed_idle") == 1
        assert stat(dso, "tcp_connections") == 0
        # All addresses together get accepts_per_s connections a second, before any TLS.
        frugal = await grid.start(2, tcp=TcpConfig(accepts_per_s=0.01, accept_burst=1))
        first = await plain_client(frugal)
        assert await plain_client_closed(frugal)
        first[1].close()
        assert stat(frugal, "tcp_accepts_shed") == 1

    run(pki, loop_factory, scenario)


# -- real processes -------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_gridmesh_node_transport_tcp_needs_a_pki(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", "--listen", f"{HOST}:7400", "--transport", "tcp"]) == 2
    error = capsys.readouterr().err
    assert "--pki" in error and "TLS" in error


@pytest.mark.processes
@pytest.mark.timeout(60)
def test_gridmesh_node_processes_deliver_a_tariff_over_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert main(["pki", "demo", "--dir", str(pki), "--dtcs", "1", "--meters", "1"]) == 0
    config = tmp_path / "node.toml"
    config.write_text("[membership]\nexchange_interval_s = 0.3\n", encoding="utf-8")
    ports = free_ports(3)
    ids = (1, 101, 101001)  # the DSO, a DTC, a meter
    addresses = {node_id: f"{HOST}:{port}" for node_id, port in zip(ids, ports, strict=True)}
    processes = []
    for node_id in ids:
        command = [sys.executable, "-m", "gridmesh", "node", "--listen", addresses[node_id]]
        command += ["--id", str(node_id), "--config", str(config), "--quiet"]
        command += ["--transport", "tcp", "--pki", str(pki)]
        if node_id != 1:
            command += ["--join", addresses[1]]
        with (tmp_path / f"node-{node_id}.log").open("wb") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    async def scenario() -> dict[int, dict[str, object]]:
        async with await ControlClient.open() as client:
            deadline = time.monotonic() + 40

            async def status(node_id: int) -> dict[str, object]:
                while True:  # a process may still be starting
                    try:
                        return await client.request(addresses[node_id], {"op": "status"})
                    except NodeUnreachable:
                        assert time.monotonic() < deadline, f"node {node_id} never answered"

            while [(await status(n)).get("members") for n in ids] != [2, 2, 2]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            answer = await client.request(
                addresses[1], {"op": "broadcast", "topic": "TARIFF/RTP", "payload": 0.12}
            )
            for node_id in (101, 101001):
                request = {"op": "delivered", "message_id": answer["message_id"]}
                while not (await client.request(addresses[node_id], request))["delivered"]:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            return {n: await status(n) for n in ids}

    try:
        states = asyncio.run(scenario())
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    for node_id in ids:
        stats = states[node_id]["stats"]
        assert isinstance(stats, dict)
        assert stats["tcp_established"] >= 1
        assert stats["tcp_handshakes_failed"] == 0
    meter = states[101001]["stats"]
    assert isinstance(meter, dict) and meter["sec_origin_verified"] >= 1
