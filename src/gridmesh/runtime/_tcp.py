"""The TCP driver: one real ``Node`` whose peers speak TLS 1.3 with client certificates.

Theory of operation
-------------------
``TcpNode`` is ``UdpNode`` (the application API, the wall clock, the timers and
the loopback control channel on the UDP port of the same number) with its
peers moved to TCP. Every connection is TLS 1.3 only, and both ends prove a
node certificate of the grid's authority (``_tls.py``): the node's own
certificate and key come from its ``LinkCredentials``, the only trust anchor
is the authority's certificate, and after the handshake the peer's certificate
is checked again with gridmesh's own rules (``verify_node_certificate``: the
identity extension, validity with the grid's clock skew, the node's revocation
set). The connection is then bound to that ``NodeIdentity``: every frame it
carries goes to ``Node.receive_authenticated``, which admits it as the SIGMA
link layer admits an opened frame (the peer's rate and score; ``sender`` must
be the certified node id) without the link layer itself, since TLS already
authenticates and encrypts. Sending, the node hands plain envelopes to
``send`` (``Node(..., transport_authenticates=True)``).

**Connections are found by the peer's listening address**, the address the
protocols know a peer by: the address dialled, or the one an accepting
side learns from the dialling side's preface (believed for sending only when
its host is the IP the connection comes from; otherwise replies dial that
address, where TLS proves whoever answers). When both sides dial each other
at once, both keep the connection dialled by the smaller node id for sending;
the other falls idle and is closed.

**Sending** to an address without a connection dials it on demand; what is sent
meanwhile waits in a queue of ``pending_max`` frames (the oldest dropped
first) and leaves when the connection opens, or is dropped and counted when
the dial fails, after which sends to that address are dropped for
``reconnect_backoff_s`` rather than dialled again and again.

**Bounded everything** (``TcpConfig``): ``connections_max`` connections and
dials in all (an accepted one beyond is closed at once; a dial beyond closes
the least recently used connection); ``accepts_per_s`` connections accepted a
second from all addresses together, like the UDP handshake budget (per address
would mean per IP here, and many meters may share one behind a NAT);
``handshake_timeout_s`` for connecting,
TLS and the preface; frames of at most the node's ``message_bytes_max``; at
most ``write_buffer_bytes_max`` waiting to be written per connection (beyond,
a frame is dropped and counted, as UDP would lose it); connections idle for
``idle_timeout_s`` are closed. Every refusal is a typed error counted in the
node's ``rejected_*`` (``uncertified``, ``certificate_invalid``, ``revoked``,
``too_large``, ``malformed``) and in the ``tcp_*`` counters, and closes only
the connection it came on.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import LocalProtocolError, RemoteProtocolError
from gridmesh.node import NodeConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.pubsub import EventStore
from gridmesh.runtime._address import ip_endpoint
from gridmesh.runtime._tls import (
    FRAME_HEADER,
    PREFACE_MAGIC,
    TlsConnection,
    TlsState,
    tls_context,
)
from gridmesh.runtime._udp import UdpNode
from gridmesh.security import (
    NodeIdentity,
    RevocationSet,
    TokenBucket,
    Uncertified,
)
from gridmesh.security._link import LinkCredentials, _verify_peer
from gridmesh.wire import Envelope, Kind, decode, encode

__all__ = ["TcpConfig", "TcpNode"]

_CONTROL_KINDS = (Kind.CONTROL, Kind.CONTROL_REPLY)
_LISTEN_BACKLOG = 128
_COUNTERS = (
    "accepted",  # TCP connections accepted
    "dialled",  # TCP connections made to peers
    "established",  # TLS done, certificate verified, address known
    "refused_full",  # accepted beyond connections_max, closed at once
    "accepts_shed",  # accepted beyond accepts_per_s, closed before any TLS
    "handshakes_failed",  # TLS handshake refused (another CA, TLS 1.2, no certificate ...)
    "handshake_timeouts",  # no handshake and preface within handshake_timeout_s
    "certificates_refused",  # TLS passed, gridmesh's own check did not (revoked, ...)
    "frames_refused",  # oversized, empty, or a bad preface: the connection closed
    "tls_errors",  # a TLS error after the handshake
    "connect_failed",  # a dial that did not connect in time
    "closed_idle",
    "closed_revoked",  # the peer's certificate was revoked while connected
    "closed_refused",  # the node asked (revoked, or the peer's score says disconnect)
    "closed_evicted",  # the least recently used, to make room for a dial
    "pending_dropped",  # queued for a dial that failed, or beyond pending_max
    "send_dropped",  # write buffer full, no room, or within the reconnect backoff
)


class TcpConfig(BaseModel):
    """The TCP driver's limits; every field has a sane default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connections_max: int = Field(default=1024, ge=1, le=65_536)
    handshake_timeout_s: float = Field(default=5.0, gt=0, le=120)
    idle_timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    pending_max: int = Field(default=64, ge=1, le=65_536)
    write_buffer_bytes_max: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=2**30)
    reconnect_backoff_s: float = Field(default=1.0, ge=0, le=3600)
    #: Connections accepted a second from all addresses together (each costs a TLS
    #: handshake: a signature and a certificate check), and the burst saved up.
    accepts_per_s: float = Field(default=200.0, gt=0, le=1e6)
    accept_burst: float = Field(default=400.0, ge=1, le=1e6)


@dataclass(slots=True)
class _Dial:
    """Frames waiting for a connection being made to one address."""

    pending: deque[bytes] = field(default_factory=deque)
    connection: TlsConnection | None = None


class TcpNode(UdpNode):
    """Runs ``Node`` with its peers over TLS 1.3 on TCP; UDP only for loopback control."""

    transport_authenticates: ClassVar[bool] = True

    def __init__(
        self,
        *,
        node_id: int,
        listen: tuple[str, int],
        credentials: LinkCredentials,
        config: NodeConfig | None = None,
        seeds: tuple[Peer, ...] = (),
        advertise: str | None = None,
        rng: random.Random | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
        event_store: EventStore | None = None,
        tcp: TcpConfig | None = None,
    ) -> None:
        if credentials.identity.node_id != node_id:
            raise LocalProtocolError(
                f"node {node_id} was given the certificate of node {credentials.identity.node_id}"
            )
        if advertise is not None and ip_endpoint(advertise) is None:
            raise LocalProtocolError(
                f"advertise must be IP:PORT (peers dial it), got {advertise!r}"
            )
        revocations = credentials.revocations
        if revocations is None:  # revocations come by gossip: one set, the node's and ours
            revocations = RevocationSet()
            credentials = replace(credentials, revocations=revocations)
        super().__init__(
            node_id=node_id,
            listen=listen,
            config=config,
            seeds=seeds,
            advertise=advertise,
            rng=rng,
            on_delivery=on_delivery,
            event_store=event_store,
            credentials=credentials,
        )
        self.tcp = TcpConfig() if tcp is None else tcp
        self._credentials = credentials
        self._revocations = revocations
        self._server_context = tls_context(credentials, server_side=True)
        self._client_context = tls_context(credentials, server_side=False)
        self._preface = PREFACE_MAGIC + self.advertise.encode("ascii")
        self._server: asyncio.Server | None = None
        self._connections: set[TlsConnection] = set()
        self._by_address: dict[str, TlsConnection] = {}
        self._dials: dict[str, _Dial] = {}
        self._connecting = 0  # dials whose TCP connect is under way
        self._failed: OrderedDict[str, float] = OrderedDict()  # address -> loop time
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._accepts = TokenBucket(self.tcp.accepts_per_s, self.tcp.accept_burst)
        self.tcp_counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Listen on TCP and UDP (control) and start the node; ``OSError`` if it cannot bind."""
        loop = asyncio.get_running_loop()
        sock = _listening_socket(self.listen)
        try:
            self._server = await loop.create_server(self._connection, sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            await super().start()
        except BaseException:
            self._server.close()
            self._server = None
            raise
        self._sweeper = loop.call_later(self._sweep_interval_s(), self._sweep)

    def close(self) -> None:
        """Stop listening and close every connection (TLS close_notify) and dial."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for connection in list(self._connections):
            connection.close()
        self._dials.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        super().close()

    # -- Transport -------------------------------------------------------------

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None:
        data = encode(message)  # once for all peers
        if len(data) > self.node.config.message_bytes_max:
            self.oversized += len(peers)
            return
        frame = FRAME_HEADER.pack(len(data)) + data
        for peer in peers:
            self._send_frame(peer.address, frame)

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        raise LocalProtocolError("a TCP node's peers are proven by TLS: it sends no link frames")

    def connections(self) -> tuple[TlsConnection, ...]:
        """The open connections: each with its peer's ``address``, ``identity``, ``tls_version``."""
        return tuple(c for c in self._connections if c.state == TlsState.OPEN)

    def stats(self) -> dict[str, int]:
        """``UdpNode``'s counters plus the connections': ``tcp_*``."""
        counters = {f"tcp_{name}": count for name, count in self.tcp_counters.items()}
        counters["tcp_connections"] = len(self._connections)
        return super().stats() | counters

    # -- the UDP socket: loopback control only -----------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        node = self.node
        try:
            message = decode(data, message_bytes_max=node.config.message_bytes_max)
            if message.kind not in _CONTROL_KINDS:
                raise Uncertified(
                    f"{message.kind.name} by UDP: this node's peers speak TLS over TCP",
                    field="kind",
                )
            self._on_control(message, host, (host, port))
        except RemoteProtocolError as error:
            node.note_rejected(error)

    # -- ConnectionOwner: what connections report ------------------------------

    def connection_made_tls(self, connection: TlsConnection) -> bool:
        if connection.server_side:
            if self._closing or len(self._connections) + self._connecting >= (
                self.tcp.connections_max
            ):
                self.tcp_counters["refused_full"] += 1
                return False
            if not self._accepts.take(time.monotonic()):
                self.tcp_counters["accepts_shed"] += 1
                return False
            self.tcp_counters["accepted"] += 1
        else:
            if self._closing:
                return False
            self.tcp_counters["dialled"] += 1
        self._connections.add(connection)
        return True

    def authenticate(self, connection: TlsConnection, certificate: bytes) -> NodeIdentity | None:
        try:  # the link layer's check: the same rules whichever transport proves the peer
            return _verify_peer(self._credentials, certificate, time.time())
        except RemoteProtocolError as error:  # CertificateInvalid, CertificateRevoked
            self.node.note_rejected(error)
            self.tcp_counters["certificates_refused"] += 1
            return None

    def connection_open(self, connection: TlsConnection) -> None:
        self.tcp_counters["established"] += 1
        address = connection.address
        # An accepted one may name an address it does not hold: used for sending only
        # when that address is on the host it comes from.
        if not connection.server_side or _same_host(address, connection.peer_host):
            current = self._by_address.get(address)
            if current is None or self._prefer(connection, current):
                self._by_address[address] = connection
        dial = self._dials.get(address)
        if dial is not None and dial.connection is connection:
            del self._dials[address]
            # Known by its address first: a write that fails closes it, and connection_gone
            # then forgets it, so that the address is dialled again.
            for frame in dial.pending:
                self._write(connection, frame)

    def frame_received(self, connection: TlsConnection, frame: bytes) -> None:
        identity = connection.identity
        assert identity is not None
        connection.last_active_s = asyncio.get_running_loop().time()
        if not self.node.receive_authenticated(identity, frame, connection.address, time.time()):
            self.tcp_counters["closed_refused"] += 1
            connection.close()

    def connection_refused(
        self, connection: TlsConnection, error: RemoteProtocolError, counter: str
    ) -> None:
        self.tcp_counters[counter] += 1
        self.node.note_rejected(error)
        if not connection.server_side:  # a peer that refuses us is not dialled again at once
            self._back_off(connection.address)

    def connection_gone(self, connection: TlsConnection) -> None:
        self._connections.discard(connection)
        address = connection.address
        if self._by_address.get(address) is connection:
            del self._by_address[address]
        dial = self._dials.get(address)
        if dial is not None and dial.connection is connection:  # closed before it opened
            self._dial_failed(address)

    # -- internals ---------------------------------------------------------------

    def _connection(self, dialled: str | None = None) -> TlsConnection:
        """A new connection: accepted, or ``dialled`` to that address (it sends the preface)."""
        return TlsConnection(
            self,
            self._server_context if dialled is None else self._client_context,
            server_side=dialled is None,
            address=dialled or "",
            preface=b"" if dialled is None else self._preface,
            frame_bytes_max=self.node.config.message_bytes_max,
            handshake_timeout_s=self.tcp.handshake_timeout_s,
            write_buffer_bytes_max=self.tcp.write_buffer_bytes_max,
        )

    def _send_frame(self, address: str, frame: bytes) -> None:
        connection = self._by_address.get(address)
        if connection is not None:
            identity = connection.identity
            if identity is not None and self._revocations.is_revoked(identity.serial):
                self.tcp_counters["closed_revoked"] += 1
                self.tcp_counters["send_dropped"] += 1
                connection.close()
                return
            self._write(connection, frame)
            return
        dial = self._dials.get(address)
        if dial is None:
            failed_at = self._failed.get(address)
            loop = self._loop
            if loop is None or self._closing:
                self.send_errors += 1
                return
            if failed_at is not None and loop.time() - failed_at < self.tcp.reconnect_backoff_s:
                self.tcp_counters["send_dropped"] += 1
                return
            endpoint = self._resolve(address)
            if endpoint is None:
                self.send_errors += 1
                return
            if not self._room():
                self.tcp_counters["send_dropped"] += 1
                return
            dial = self._dials[address] = _Dial()
            self._connecting += 1
            task = loop.create_task(self._dial(address, endpoint, dial))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if len(dial.pending) >= self.tcp.pending_max:
            dial.pending.popleft()
            self.tcp_counters["pending_dropped"] += 1
        dial.pending.append(frame)

    def _write(self, connection: TlsConnection, frame: bytes) -> None:
        if connection.send(frame):
            assert self._loop is not None
            connection.last_active_s = self._loop.time()
        else:
            self.tcp_counters["send_dropped"] += 1

    async def _dial(self, address: str, endpoint: tuple[str, int], dial: _Dial) -> None:
        loop = asyncio.get_running_loop()

        def connection() -> TlsConnection:
            made = dial.connection = self._connection(address)
            return made

        try:
            await asyncio.wait_for(
                loop.create_connection(connection, *endpoint), self.tcp.handshake_timeout_s
            )
        except (OSError, TimeoutError):
            self.tcp_counters["connect_failed"] += 1
            if self._dials.get(address) is dial:
                self._dial_failed(address)
        finally:
            self._connecting -= 1

    def _dial_failed(self, address: str) -> None:
        dial = self._dials.pop(address)
        self.tcp_counters["pending_dropped"] += len(dial.pending)
        self._back_off(address)

    def _back_off(self, address: str) -> None:
        """No dial to ``address`` for ``reconnect_backoff_s``: what is sent meanwhile is dropped."""
        assert self._loop is not None
        failed = self._failed
        failed[address] = self._loop.time()
        failed.move_to_end(address)
        if len(failed) > self.tcp.connections_max:
            failed.popitem(last=False)

    def _room(self) -> bool:
        """Whether a dial fits; closes the least recently used open connection if not."""
        if len(self._connections) + self._connecting < self.tcp.connections_max:
            return True
        idle = [c for c in self._connections if c.state == TlsState.OPEN]
        if not idle:
            return False
        min(idle, key=lambda c: c.last_active_s).close()
        self.tcp_counters["closed_evicted"] += 1
        return True

    def _prefer(self, new: TlsConnection, old: TlsConnection) -> bool:
        """Both sides keep, for sending, the connection dialled by the smaller node id."""
        return self._dialler(new) <= self._dialler(old)

    def _dialler(self, connection: TlsConnection) -> int:
        if not connection.server_side:
            return self.node.node_id
        assert connection.identity is not None
        return connection.identity.node_id

    def _sweep_interval_s(self) -> float:
        return min(max(self.tcp.idle_timeout_s / 8, 0.05), 5.0)

    def _sweep(self) -> None:
        """Close idle connections and those of certificates revoked since they opened."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for connection in list(self._connections):
            identity = connection.identity
            if identity is not None and self._revocations.is_revoked(identity.serial):
                self.tcp_counters["closed_revoked"] += 1
                connection.close()
            elif (
                connection.state == TlsState.OPEN
                and now - connection.last_active_s > self.tcp.idle_timeout_s
            ):
                self.tcp_counters["closed_idle"] += 1
                connection.close()
        self._sweeper = loop.call_later(self._sweep_interval_s(), self._sweep)


def _same_host(address: str, host: str) -> bool:
    """Whether ``address`` (IP:port) is on ``host``, the IP a connection comes from."""
    endpoint = ip_endpoint(address)
    try:
        return endpoint is not None and ip_address(endpoint[0]) == ip_address(host)
    except ValueError:
        return False


def _listening_socket(listen: tuple[str, int]) -> socket.socket:
    """A non-blocking TCP socket bound to ``listen`` and listening; ``OSError`` if it cannot."""
    family, kind, proto, _, address = socket.getaddrinfo(*listen, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
