"""A local cluster: N real ``gridmesh node`` processes on one host."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gridmesh.errors import GridmeshError
from gridmesh.runtime._address import format_address
from gridmesh.runtime._control import ControlClient

__all__ = ["ClusterError", "ProcessCluster", "free_udp_ports"]

_POLL_INTERVAL_S = 0.2
#: How much longer than an aggregate query's own timeout the client waits for its answer.
_AGGREGATE_SLACK_S = 2.0


class ClusterError(GridmeshError):
    """The local cluster could not be started or did not form in time."""


def free_udp_ports(host: str, count: int) -> list[int]:
    """``count`` UDP ports the OS reports free on ``host`` right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ProcessCluster:
    """Starts, queries and kills ``count`` node processes; node ``i`` has id ``i + 1``."""

    def __init__(
        self,
        count: int,
        *,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        node_args: Sequence[str] = (),
        args_for: Callable[[int], Sequence[str]] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """``node_args`` go to every node, ``args_for(i)`` to node index ``i`` only
        (its own ``--config`` with its readings, say)."""
        if count < 1:
            raise ClusterError("a cluster needs at least one node")
        ports = (
            free_udp_ports(host, count)
            if base_port is None
            else list(range(base_port, base_port + count))
        )
        self.addresses = [format_address(host, port) for port in ports]
        self._node_args = list(node_args)
        self._args_for = args_for
        self._log_dir = log_dir
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * count

    @property
    def seed_address(self) -> str:
        return self.addresses[0]

    def alive(self) -> list[int]:
        """Indices of nodes whose process is running."""
        return [i for i, p in enumerate(self._processes) if p is not None and p.poll() is None]

    def start(self) -> None:
        for index, address in enumerate(self.addresses):
            command = [
                sys.executable, "-m", "gridmesh", "node",
                "--listen", address,
                "--join", self.seed_address,
                "--id", str(index + 1),
                "--seed", str(index + 1),
                *self._node_args,
                *(self._args_for(index) if self._args_for is not None else ()),
            ]  # fmt: skip
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                log = (self._log_dir / f"node-{index + 1}.log").open("wb")
            else:
                log = subprocess.DEVNULL  # type: ignore[assignment]
            self._processes[index] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            if self._log_dir is not None:
                log.close()

    def kill(self, indices: Sequence[int]) -> None:
        """``kill -9`` the given nodes and reap them."""
        for index in indices:
            process = self._processes[index]
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        """Ask every node to stop, then kill what is left after a grace period."""
        for process in self._processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for process in self._processes:
            if process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()

    async def wait_formed(self, client: ControlClient, *, timeout_s: float = 30.0) -> None:
        """Wait until every live node knows at least every other live node."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = self.alive()
            answers = await client.request_all(
                [self.addresses[i] for i in live], {"op": "status"}, timeout_s=1.0
            )
            counts = [a.get("members") if a else None for a in answers.values()]
            if all(isinstance(c, int) and c >= len(live) - 1 for c in counts):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster did not form within {timeout_s:g} s: members {counts}")
            await asyncio.sleep(_POLL_INTERVAL_S)

    async def views(self, client: ControlClient) -> dict[int, list[int]]:
        """Each live node's view (node id -> the node ids it links to)."""
        live = self.alive()
        answers = await client.request_all(
            [self.addresses[i] for i in live], {"op": "members"}, timeout_s=1.0
        )
        views: dict[int, list[int]] = {}
        for index in live:
            answer = answers[self.addresses[index]]
            members = answer.get("members") if answer else None
            if isinstance(members, list):
                views[index + 1] = [m[0] for m in members if isinstance(m, list) and m]
        return views

    async def broadcast(
        self, client: ControlClient, payload: object, *, topic: str, via: int = 0
    ) -> int:
        answer = await client.request(
            self.addresses[via], {"op": "broadcast", "topic": topic, "payload": payload}
        )
        message_id = answer.get("message_id")
        if not answer.get("ok") or type(message_id) is not int:
            raise ClusterError(f"broadcast refused: {answer.get('error')}")
        return message_id

    async def delivered(
        self, client: ControlClient, message_id: int, *, origin: int, timeout_s: float = 10.0
    ) -> dict[int, float | None]:
        """Latency per live node (None: not delivered), polled until all have it or timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = [i for i in self.alive() if i != origin]
            answers = await client.request_all(
                [self.addresses[i] for i in live],
                {"op": "delivered", "message_id": message_id},
                timeout_s=1.0,
            )
            result: dict[int, float | None] = {}
            for index in live:
                answer = answers[self.addresses[index]]
                latency = answer.get("latency_s") if answer and answer.get("delivered") else None
                result[index] = float(latency) if isinstance(latency, int | float) else None
            if all(v is not None for v in result.values()) or time.monotonic() > deadline:
                return result
            await asyncio.sleep(_POLL_INTERVAL_S)

    async def aggregate(
        self,
        client: ControlClient,
        function: str,
        reading: str,
        *,
        via: int = 0,
        params: Mapping[str, object] | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float = 10.0,
        replies_min: int | None = None,
    ) -> dict[str, object]:
        """Node ``via`` aggregates ``reading``; its answer: ``value``, ``contributors`` ..."""
        body: dict[str, object] = {
            "op": "aggregate",
            "function": function,
            "reading": reading,
            "timeout_s": timeout_s,
        }
        for key, value in (
            ("params", dict(params) if params is not None else None),
            ("fanout", fanout),
            ("hops", hops),
            ("replies_min", replies_min),
        ):
            if value is not None:
                body[key] = value
        answer = await client.request(
            self.addresses[via], body, timeout_s=timeout_s + _AGGREGATE_SLACK_S
        )
        if not answer.get("ok"):
            raise ClusterError(f"aggregate refused: {answer.get('error')}")
        return answer

    async def start_estimate(
        self,
        client: ControlClient,
        function: str,
        reading: str = "",
        *,
        via: int = 0,
        rounds: int | None = None,
    ) -> int:
        """Node ``via`` starts a push-sum estimate; returns its id."""
        body: dict[str, object] = {"op": "start_estimate", "function": function, "reading": reading}
        if rounds is not None:
            body["rounds"] = rounds
        answer = await client.request(self.addresses[via], body)
        estimate_id = answer.get("estimate_id")
        if not answer.get("ok") or type(estimate_id) is not int:
            raise ClusterError(f"start_estimate refused: {answer.get('error')}")
        return estimate_id

    async def estimates(
        self, client: ControlClient, estimate_id: int
    ) -> dict[int, dict[str, object] | None]:
        """Each live node's view of an estimate (``value``, ``rounds``, ``finished`` ...);
        None where a node did not answer or does not run it."""
        live = self.alive()
        answers = await client.request_all(
            [self.addresses[i] for i in live],
            {"op": "estimate", "estimate_id": estimate_id},
            timeout_s=1.0,
        )
        views: dict[int, dict[str, object] | None] = {}
        for index in live:
            answer = answers[self.addresses[index]]
            views[index] = answer if answer is not None and answer.get("running") else None
        return views
