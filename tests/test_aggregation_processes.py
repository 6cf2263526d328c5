"""Aggregation on real processes: 20 ``gridmesh node`` processes on loopback, one seed.

Each node reads its own ``[readings]`` from its own configuration file; one
node's tree aggregation must return the exact sum, vector sum, count, min and
max of all twenty with every node counted, and a push-sum estimate started by
another must bring every node within 1% of the true sum and size.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.runtime import ControlClient, ProcessCluster

NODES = 20
# Generous per-hop budgets: a loaded host must not turn a slow reply into a missing one.
# A query still ends as soon as every child answered.
HOPS = 4
TIMEOUT_S = 20.0


def demand_kw(index: int) -> float:
    return (index + 1) * 1.25


def night_kwh(index: int) -> list[float | int]:
    """Three 8-hour periods (seed 000's night-demand query); floats no sum keeps exact."""
    node = index + 1
    return [0.1 * node, 0.7 + node / 3, 11 * node]


def write_configs(directory: Path) -> list[Path]:
    paths = []
    for index in range(NODES):
        path = directory / f"node-{index + 1}.toml"
        path.write_text(
            "[membership]\n"
            "exchange_interval_s = 0.3\n"
            "[pushsum]\n"
            "round_s = 0.1\n"
            "[readings]\n"
            f"demand_kw = {demand_kw(index)!r}\n"
            f"night_kwh = [{', '.join(repr(v) for v in night_kwh(index))}]\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


async def finished_estimates(
    cluster: ProcessCluster, client: ControlClient, estimate_id: int, timeout_s: float
) -> list[float]:
    """Every node's value once every node ran all its rounds and has no request waiting."""
    deadline = time.monotonic() + timeout_s
    while True:
        views = await cluster.estimates(client, estimate_id)
        if all(v is not None and v["finished"] and not v["unsettled"] for v in views.values()):
            values = [v["value"] for v in views.values() if v is not None]
            assert all(isinstance(value, float) for value in values), values
            return values  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"estimate {estimate_id} not finished in {timeout_s} s: {views}")
        await asyncio.sleep(0.25)


@pytest.mark.processes
@pytest.mark.timeout(180)
def test_20_processes_aggregate_exactly_and_estimate_within_1_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = write_configs(tmp_path)
    cluster = ProcessCluster(
        NODES,
        node_args=["--quiet"],
        args_for=lambda index: ["--config", str(configs[index])],
        log_dir=tmp_path / "logs",
    )
    truth_sum = math.fsum(demand_kw(i) for i in range(NODES))
    truth_night = [math.fsum(period) for period in zip(*map(night_kwh, range(NODES)), strict=True)]
    assert truth_sum == 262.5
    started = time.monotonic()
    cluster.start()
    try:

        async def scenario() -> dict[str, float]:
            took: dict[str, float] = {}
            async with await ControlClient.open() as client:
                await cluster.wait_formed(client, timeout_s=60.0)
                took["formed_s"] = time.monotonic() - started

                async def aggregate(
                    function: str, reading: str, via: int, **params: object
                ) -> dict[str, object]:
                    answer = await cluster.aggregate(
                        client,
                        function,
                        reading,
                        via=via,
                        params=params,
                        hops=HOPS,
                        timeout_s=TIMEOUT_S,
                    )
                    coverage = (answer["contributors"], answer["missing"], answer["declined"])
                    assert coverage == (NODES, 0, 0), (function, answer)
                    took[f"{function}_s"] = float(answer["elapsed_s"])  # type: ignore[arg-type]
                    return answer

                total = await aggregate("sum", "demand_kw", via=7)
                assert total["value"] == truth_sum
                night = await aggregate("vector_sum", "night_kwh", via=13, length=3)
                assert night["value"] == truth_night  # bit for bit: math.fsum, not float +
                count = await aggregate("count", "demand_kw", via=19)
                assert count["value"] == NODES
                least, most = await asyncio.gather(
                    aggregate("min", "demand_kw", via=1), aggregate("max", "demand_kw", via=2)
                )
                assert (least["value"], most["value"]) == (1.25, NODES * 1.25)

                sum_id = await cluster.start_estimate(client, "sum", "demand_kw", rounds=30)
                size_id = await cluster.start_estimate(client, "size", via=5, rounds=30)
                sums = await finished_estimates(cluster, client, sum_id, timeout_s=40.0)
                sizes = await finished_estimates(cluster, client, size_id, timeout_s=10.0)
                took["pushsum_s"] = time.monotonic() - started - took["formed_s"]
                assert len(sums) == len(sizes) == NODES
                worst_sum = max(abs(v - truth_sum) / truth_sum for v in sums)
                worst_size = max(abs(v - NODES) / NODES for v in sizes)
                assert worst_sum < 0.01 and worst_size < 0.01, (sums, sizes)
                took["pushsum_worst_sum_error"] = worst_sum
            return took

        took = asyncio.run(scenario())

        # The operator's command, on the same cluster: one line of JSON.
        capsys.readouterr()
        address = cluster.addresses[4]
        limits = ["--hops", str(HOPS), "--timeout", str(TIMEOUT_S)]
        assert main(["aggregate", "sum", "demand_kw", "--via", address, *limits]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["value"] == truth_sum and answer["contributors"] == NODES
    finally:
        cluster.stop()
    with capsys.disabled():
        print(f"\n20 processes: {took}, total {time.monotonic() - started:.1f} s")
