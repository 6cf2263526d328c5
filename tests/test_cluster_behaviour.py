"""One behaviour test, two drivers: the simulator and real processes over UDP on loopback.

A 20-node cluster receives a broadcast; after `kill -9` of 3 nodes it still
does. The protocol classes, their configuration and the assertions are the
same for both drivers; only the harness that starts nodes differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol

import pytest

from gridmesh.runtime import ControlClient, ProcessCluster
from gridmesh.sim import Simulator
from tests.helpers import joining_mesh

NODES = 20
FANOUT = 12  # with 19 peers, a live node is missed with probability < 1e-6 per broadcast
EXCHANGE_INTERVAL_S = 0.3
MEMBER_TIMEOUT_S = 5.0


class Cluster(Protocol):
    def broadcast(self, payload: object) -> int: ...

    def received(self, message_id: int) -> dict[int, bool]:
        """For every live node but the origin (node 1): did it deliver the message?"""
        ...

    def kill(self, node_ids: list[int]) -> None: ...


class SimCluster:
    def __init__(self) -> None:
        self.sim: Simulator
        self.sim, self.deliveries = joining_mesh(
            NODES,
            fanout=FANOUT,
            exchange_interval_s=EXCHANGE_INTERVAL_S,
            member_timeout_s=MEMBER_TIMEOUT_S,
        )
        self.sim.run(5.0)

    def broadcast(self, payload: object) -> int:
        node = self.sim.node(1)
        assert node is not None
        message_id = node.broadcast(payload, topic="TARIFF", now=self.sim.now)
        self.sim.run(self.sim.now + 3.0)
        return message_id

    def received(self, message_id: int) -> dict[int, bool]:
        return {
            node_id: any(d.message_id == message_id for d in self.deliveries.get(node_id, []))
            for node_id in range(2, NODES + 1)
            if self.sim.is_up(node_id)
        }

    def kill(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            self.sim.crash(node_id, at=self.sim.now)
        self.sim.run(self.sim.now + 1.0)


class RealCluster:
    def __init__(self, cluster: ProcessCluster) -> None:
        self.cluster = cluster
        asyncio.run(self._with_client(lambda c: cluster.wait_formed(c, timeout_s=60.0)))

    async def _with_client(self, step):  # type: ignore[no-untyped-def]
        async with await ControlClient.open() as client:
            return await step(client)

    def broadcast(self, payload: object) -> int:
        return asyncio.run(  # type: ignore[no-any-return]
            self._with_client(lambda c: self.cluster.broadcast(c, payload, topic="TARIFF"))
        )

    def received(self, message_id: int) -> dict[int, bool]:
        latencies = asyncio.run(
            self._with_client(
                lambda c: self.cluster.delivered(c, message_id, origin=0, timeout_s=10.0)
            )
        )
        return {index + 1: latency is not None for index, latency in latencies.items()}

    def kill(self, node_ids: list[int]) -> None:
        self.cluster.kill([node_id - 1 for node_id in node_ids])


@pytest.fixture(params=["simulator", pytest.param("udp-processes", marks=pytest.mark.processes)])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if request.param == "simulator":
        yield SimCluster()
        return
    processes = ProcessCluster(
        NODES,
        node_args=[
            "--quiet",
            "--fanout", str(FANOUT),
            "--exchange-interval", str(EXCHANGE_INTERVAL_S),
            "--member-timeout", str(MEMBER_TIMEOUT_S),
        ],
    )  # fmt: skip
    processes.start()
    try:
        yield RealCluster(processes)
    finally:
        processes.stop()


def test_a_20_node_cluster_receives_a_broadcast_and_still_does_after_3_kills(
    cluster: Cluster,
) -> None:
    first = cluster.broadcast({"price_eur_kwh": 0.081})
    reached = cluster.received(first)
    assert len(reached) == NODES - 1 and all(reached.values()), reached

    cluster.kill([5, 11, 17])
    second = cluster.broadcast({"price_eur_kwh": 0.064})
    reached = cluster.received(second)
    assert sorted(reached) == sorted(set(range(2, NODES + 1)) - {5, 11, 17})
    assert all(reached.values()), reached
