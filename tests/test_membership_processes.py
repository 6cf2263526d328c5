"""The active view on real processes: 30 nodes on loopback, one seed, 10 killed with -9."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from gridmesh.runtime import ControlClient, ProcessCluster
from gridmesh.sim import OverlaySnapshot

NODES = 30
KILLED = [3, 7, 9, 12, 15, 18, 21, 24, 26, 29]  # cluster indices; node ids are index + 1


async def wait_for(
    cluster: ProcessCluster,
    client: ControlClient,
    done: Callable[[dict[int, list[int]]], bool],
    timeout_s: float,
) -> tuple[dict[int, list[int]], float]:
    started = time.monotonic()
    while True:
        views = await cluster.views(client)
        if len(views) == len(cluster.alive()) and done(views):
            return views, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not reached in {timeout_s} s: {views}")
        await asyncio.sleep(0.25)


def connected(views: dict[int, list[int]]) -> bool:
    shot = OverlaySnapshot(views)
    return shot.component_sizes() == [len(views)] and all(views.values())


@pytest.mark.processes
def test_a_30_process_overlay_forms_from_one_seed_and_repairs_after_10_kills() -> None:
    cluster = ProcessCluster(NODES, node_args=["--quiet", "--membership", "hyparview"])
    cluster.start()
    try:

        async def scenario() -> tuple[float, float]:
            async with await ControlClient.open() as client:
                await wait_for(cluster, client, connected, timeout_s=60.0)
                cluster.kill(KILLED)
                dead = {i + 1 for i in KILLED}

                def repaired(views: dict[int, list[int]]) -> bool:
                    no_dead_links = all(not dead & set(v) for v in views.values())
                    return no_dead_links and connected(views)

                views, took = await wait_for(cluster, client, repaired, timeout_s=30.0)
                assert set(views) == set(range(1, NODES + 1)) - dead
                return took, min(len(v) for v in views.values())

        took_s, smallest_view = asyncio.run(scenario())
        print(
            f"repaired {took_s:.1f} s after kill -9 of {len(KILLED)}; smallest view {smallest_view}"
        )
        assert took_s < 15.0  # failure_timeout 4 s + a few probe and repair rounds
    finally:
        cluster.stop()
