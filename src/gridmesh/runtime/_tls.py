"""One TLS 1.3 connection with client certificates, carrying length-prefixed frames.

Theory of operation
-------------------
``TcpNode`` (``_tcp.py``) keeps the connections; this module is one of them.
TLS runs in memory (``ssl.SSLObject`` over two ``ssl.MemoryBIO``\\s, as
asyncio's own ``sslproto`` does) on a plain TCP transport, so the connection
sees every step: a failed handshake is an exception here, counted and
answered with the TLS alert, on the event loop asyncio or uvloop alike,
rather than a log line of the loop's. Nothing is mocked: it is OpenSSL's TLS.

A connection goes through these states, and only forward::

    HANDSHAKE --TLS done, certificate verified--> PREFACE (accepting side)
              \\-----------------------------------> OPEN (dialling side, preface sent)
    PREFACE   --a valid preface frame-------------> OPEN
    any       --error, timeout, close, EOF--------> CLOSED

* **HANDSHAKE**: TLS 1.3 only; both sides present a node certificate of the
  grid's authority and require the other's (``tls_context``). OpenSSL checks
  the chain to the authority and the validity dates; the owner then checks the
  peer's certificate with gridmesh's own rules (``verify_node_certificate``:
  the identity extension, the revocation set) and binds the connection to
  that ``NodeIdentity``. Host names play no part: who a peer is, is its
  certificate's node id.
* **PREFACE**: the dialling side's first frame says where it listens
  (``gridmesh-tcp-v1 <ip>:<port>``, its advertised address), so the accepting
  side can name the peer by the address its protocols know it by (they answer
  to the *source* of a message) and send back over the same connection.
* **OPEN**: every frame is ``length (4 bytes, big-endian) || encoded envelope``,
  ``1 <= length <= frame_bytes_max``. A frame out of those bounds, a preface
  that is not one, or a TLS error after the handshake is a typed error
  (``MessageTooLarge``, ``MalformedMessage``, ``Uncertified``), counted by the
  owner, and closes this connection, never the node.

**Bounded.** The handshake and the preface must finish within
``handshake_timeout_s``. Plaintext is read 64 KiB at a time and cut into
frames at once, so the buffer never holds more than one frame and one chunk;
a frame's length is checked before its bytes are waited for. What waits to be
written is bounded by the owner (``write_buffer_bytes_max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import struct
import tempfile
from pathlib import Path
from typing import Final, Protocol, cast

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)

from gridmesh.errors import MalformedMessage, MessageTooLarge, RemoteProtocolError
from gridmesh.runtime._address import format_address, ip_endpoint
from gridmesh.security import NodeIdentity, Uncertified
from gridmesh.security._link import LinkCredentials

__all__ = [
    "FRAME_HEADER",
    "PREFACE_MAGIC",
    "ConnectionOwner",
    "TlsConnection",
    "TlsState",
    "tls_context",
]

#: A frame's length: 4 bytes, big-endian, not counting itself.
FRAME_HEADER: Final = struct.Struct(">I")
#: What the dialling side's first frame starts with; its advertised address follows.
PREFACE_MAGIC: Final = b"gridmesh-tcp-v1 "
_PREFACE_BYTES_MAX = len(PREFACE_MAGIC) + 64  # "[v6 address]:port" fits
_READ_CHUNK_BYTES = 64 * 1024


def tls_context(credentials: LinkCredentials, *, server_side: bool) -> ssl.SSLContext:
    """TLS 1.3 only, this node's certificate presented, the peer's required, only the grid CA.

    Host names are not checked: a peer's identity is its certificate's node id,
    which the owner reads after the handshake. No session tickets: every
    connection proves both certificates afresh.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=credentials.authority.der)
    if server_side:
        context.num_tickets = 0
    _load_identity(context, credentials)
    return context


def _load_identity(context: ssl.SSLContext, credentials: LinkCredentials) -> None:
    """Give ``context`` this node's certificate and key.

    ``ssl`` loads keys only from files. The key goes into a private temporary
    directory encrypted under a one-time random password, and is deleted at once.
    """
    password = secrets.token_bytes(32)
    certificate = ssl.DER_cert_to_PEM_cert(credentials.identity.certificate).encode("ascii")
    key = credentials.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
    )
    with tempfile.TemporaryDirectory(prefix="gridmesh-tls-") as directory:
        path = Path(directory) / "identity.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(certificate + key)
        context.load_cert_chain(path, password=password)


class TlsState:
    """Where a connection is; it only moves forward (see the module's theory)."""

    HANDSHAKE: Final = "handshake"
    PREFACE: Final = "preface"
    OPEN: Final = "open"
    CLOSED: Final = "closed"


class ConnectionOwner(Protocol):
    """What a connection reports to the node that keeps it (``TcpNode``)."""

    def connection_made_tls(self, connection: TlsConnection) -> bool:
        """A TCP connection is up; False refuses it (too many)."""
        ...

    def authenticate(self, connection: TlsConnection, certificate: bytes) -> NodeIdentity | None:
        """The peer's certificate after the TLS handshake: its identity, or None to refuse."""
        ...

    def connection_open(self, connection: TlsConnection) -> None:
        """Authenticated, and the peer's address known: frames may flow."""
        ...

    def frame_received(self, connection: TlsConnection, frame: bytes) -> None: ...

    def connection_refused(
        self, connection: TlsConnection, error: RemoteProtocolError, counter: str
    ) -> None:
        """The connection is being closed for ``error``; ``counter`` names the transport count."""
        ...

    def connection_gone(self, connection: TlsConnection) -> None:
        """Closed, for whatever reason; called once."""
        ...


class TlsConnection(asyncio.Protocol):
    """One TCP connection: TLS 1.3 in memory, then length-prefixed frames."""

    def __init__(
        self,
        owner: ConnectionOwner,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        address: str = "",
        preface: bytes = b"",
        frame_bytes_max: int,
        handshake_timeout_s: float,
        write_buffer_bytes_max: int,
    ) -> None:
        self.owner = owner
        self.server_side = server_side
        #: The peer's listening address: dialled, or named by its preface (accepting side).
        self.address = address
        #: The peer's IP as the socket sees it.
        self.peer_host = ""
        #: Who the peer is, from its certificate; set once the handshake is verified.
        self.identity: NodeIdentity | None = None
        self.state: str = TlsState.HANDSHAKE
        #: What TLS the handshake agreed ("TLSv1.3"); "" before it finished.
        self.tls_version = ""
        #: Loop time of the last frame in or out (the owner closes idle connections).
        self.last_active_s = 0.0
        self._preface = preface
        self._frame_bytes_max = frame_bytes_max
        self._handshake_timeout_s = handshake_timeout_s
        self._write_buffer_bytes_max = write_buffer_bytes_max
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side)
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.owner.connection_made_tls(self):
            self.state = TlsState.CLOSED  # never the owner's: it is not told of the close
            self._transport = None
            transport.close()
            return
        loop = asyncio.get_running_loop()
        self.last_active_s = loop.time()
        self._deadline = loop.call_later(self._handshake_timeout_s, self._expire)
        if not self.server_side:
            self._handshake()  # the ClientHello

    def data_received(self, data: bytes) -> None:
        if self.state == TlsState.CLOSED:
            return
        self._incoming.write(data)
        if self.state == TlsState.HANDSHAKE:
            self._handshake()
            if self.state in (TlsState.HANDSHAKE, TlsState.CLOSED):
                return
        self._read()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.close()

    # -- sending ----------------------------------------------------------------

    def send(self, frame: bytes) -> bool:
        """Write one framed message; False if not open or too much waits to be written."""
        transport = self._transport
        if self.state != TlsState.OPEN or transport is None:
            return False
        if transport.get_write_buffer_size() > self._write_buffer_bytes_max:
            return False
        self._write(frame)
        return True

    def close(self) -> None:
        """Close (with a TLS close_notify when the handshake finished); idempotent."""
        if self.state == TlsState.CLOSED:
            return
        handshaken = self.state != TlsState.HANDSHAKE
        self.state = TlsState.CLOSED
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        transport = self._transport
        if transport is not None:
            if handshaken:
                # unwrap puts our close_notify out; the peer's need not have come.
                with contextlib.suppress(ssl.SSLError, ValueError):
                    self._tls.unwrap()
            self._flush()
            transport.close()
        self.owner.connection_gone(self)

    # -- internals --------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as error:
            self._flush()  # the alert tells the peer why
            self._refuse(
                Uncertified(f"TLS handshake: {_why(error)}", field="tls"), "handshakes_failed"
            )
            return
        self._flush()
        certificate = self._tls.getpeercert(binary_form=True)
        if certificate is None:  # CERT_REQUIRED makes this unreachable; refuse all the same
            self._refuse(Uncertified("no certificate", field="tls"), "handshakes_failed")
            return
        identity = self.owner.authenticate(self, certificate)
        if identity is None:
            self.close()
            return
        self.identity = identity
        self.tls_version = self._tls.version() or ""
        if self.server_side:
            self.state = TlsState.PREFACE
            return
        self._write(FRAME_HEADER.pack(len(self._preface)) + self._preface)
        if self.state != TlsState.CLOSED:
            self._open()

    def _open(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.state = TlsState.OPEN
        self.owner.connection_open(self)

    def _read(self) -> None:
        while self.state != TlsState.CLOSED:
            try:
                chunk = self._tls.read(_READ_CHUNK_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                self.close()
                return
            except ssl.SSLError as error:
                # After the handshake: a rejected client certificate (TLS 1.3 tells the
                # client only now), or a record that does not decrypt.
                self._refuse(Uncertified(f"TLS: {_why(error)}", field="tls"), "tls_errors")
                return
            if not chunk:
                self.close()
                return
            self._buffer += chunk
            self._frames()
        self._flush()  # TLS may have answers of its own to send (a KeyUpdate)

    def _frames(self) -> None:
        buffer = self._buffer
        start = 0
        limit = self._frame_bytes_max
        while self.state != TlsState.CLOSED:
            available = len(buffer) - start
            if available < FRAME_HEADER.size:
                break
            (length,) = FRAME_HEADER.unpack_from(buffer, start)
            if length > limit:
                self._refuse(MessageTooLarge(length, limit), "frames_refused")
                return
            if length == 0:
                self._refuse(MalformedMessage("an empty frame", field="length"), "frames_refused")
                return
            if available < FRAME_HEADER.size + length:
                break
            begin = start + FRAME_HEADER.size
            frame = bytes(buffer[begin : begin + length])
            start = begin + length
            if self.state == TlsState.PREFACE:
                self._on_preface(frame)
            else:
                self.owner.frame_received(self, frame)
        if start:
            del buffer[:start]

    def _on_preface(self, frame: bytes) -> None:
        endpoint = None
        if frame.startswith(PREFACE_MAGIC) and len(frame) <= _PREFACE_BYTES_MAX:
            text = frame[len(PREFACE_MAGIC) :]
            if text.isascii():
                endpoint = ip_endpoint(text.decode("ascii"))
        if endpoint is None:
            self._refuse(
                MalformedMessage(
                    "the first frame is not a gridmesh-tcp-v1 preface", field="preface"
                ),
                "frames_refused",
            )
            return
        self.address = format_address(*endpoint)
        self._open()

    def _expire(self) -> None:
        self._deadline = None
        if self.state in (TlsState.HANDSHAKE, TlsState.PREFACE):
            self._refuse(
                Uncertified(
                    f"no TLS handshake and preface within {self._handshake_timeout_s:g} s",
                    field="tls",
                ),
                "handshake_timeouts",
            )

    def _refuse(self, error: RemoteProtocolError, counter: str) -> None:
        self.owner.connection_refused(self, error, counter)
        self.close()

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:  # OpenSSL may take a large write in parts
                view = view[self._tls.write(view) :]
        except ssl.SSLError as error:
            self._refuse(Uncertified(f"TLS: {_why(error)}", field="tls"), "tls_errors")
            return
        self._flush()

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self._transport is not None:
            self._transport.write(pending)


def _why(error: ssl.SSLError) -> str:
    """OpenSSL's short reason ("CERTIFICATE_VERIFY_FAILED"), else the message."""
    reason = getattr(error, "reason", None)
    return str(reason) if reason else str(error)
