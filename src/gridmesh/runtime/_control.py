"""A client for the loopback control channel of running nodes."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from typing import cast

from gridmesh.errors import GridmeshError, RemoteProtocolError
from gridmesh.runtime._address import parse_address
from gridmesh.wire import Envelope, Kind, decode, encode

__all__ = ["ControlClient", "NodeUnreachable"]


class NodeUnreachable(GridmeshError):
    """A node did not answer a control request in time."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        super().__init__(f"node {address} did not answer within {timeout_s:g} s")


class ControlClient(asyncio.DatagramProtocol):
    """Sends control requests over UDP and matches replies by message id."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[dict[str, object]]] = {}
        self._socket: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, bind_host: str = "127.0.0.1") -> ControlClient:
        client = cls()
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: client, local_addr=(bind_host, 0))
        return client

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport implements DatagramTransport without subclassing it.
        self._socket = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            message = decode(data)
        except RemoteProtocolError:
            return
        future = self._pending.get(message.message_id)
        if message.kind is Kind.CONTROL_REPLY and future is not None and not future.done():
            body = message.body
            future.set_result(body if isinstance(body, dict) else {"ok": False})

    async def request(
        self, address: str, body: dict[str, object], *, timeout_s: float = 2.0, attempts: int = 3
    ) -> dict[str, object]:
        """Send ``body`` to the node at ``address``; retried, since UDP may drop."""
        destination = parse_address(address)
        request_id = secrets.randbits(64)
        message = Envelope(
            kind=Kind.CONTROL,
            message_id=request_id,
            origin=0,
            sender=0,
            topic="",
            created_us=int(time.time() * 1e6),
            hops_left=0,
            body=body,
        )
        data = encode(message)
        future: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            for _ in range(attempts):
                assert self._socket is not None
                self._socket.sendto(data, destination)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout_s / attempts)
                except TimeoutError:
                    continue
            raise NodeUnreachable(address, timeout_s)
        finally:
            self._pending.pop(request_id, None)

    async def request_all(
        self, addresses: Iterable[str], body: dict[str, object], *, timeout_s: float = 2.0
    ) -> dict[str, dict[str, object] | None]:
        """The same request to many nodes at once; None where a node did not answer."""
        targets = list(addresses)

        async def one(address: str) -> dict[str, object] | None:
            try:
                return await self.request(address, body, timeout_s=timeout_s)
            except NodeUnreachable:
                return None

        answers = await asyncio.gather(*(one(address) for address in targets))
        return dict(zip(targets, answers, strict=True))
