"""Admission and signatures on real processes: `gridmesh node --pki` on loopback.

Three certified nodes (a DSO, a DTC, a meter, from `gridmesh pki demo`) and one
without a certificate: the DSO's tariff reaches the certified nodes, signed and
checked on the way; the uncertified node joins nobody and receives nothing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.runtime import ControlClient, NodeUnreachable, free_udp_ports

HOST = "127.0.0.1"


@pytest.mark.processes
@pytest.mark.timeout(120)
def test_certified_processes_deliver_a_signed_tariff_and_refuse_an_uncertified_one(
    tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    assert main(["pki", "demo", "--dir", str(pki), "--dtcs", "1", "--meters", "1"]) == 0
    config = tmp_path / "node.toml"
    config.write_text("[membership]\nexchange_interval_s = 0.3\n", encoding="utf-8")
    ports = free_udp_ports(HOST, 4)
    seed = f"{HOST}:{ports[0]}"
    nodes = [(1, True), (101, True), (101001, True), (55, False)]  # dso, dtc, meter, intruder
    processes = []
    for (node_id, certified), port in zip(nodes, ports, strict=True):
        command = [sys.executable, "-m", "gridmesh", "node", "--listen", f"{HOST}:{port}"]
        command += ["--id", str(node_id), "--config", str(config), "--quiet"]
        if certified:
            command += ["--pki", str(pki)]
        if port != ports[0]:
            command += ["--join", seed]
        with (tmp_path / f"node-{node_id}.log").open("wb") as log:  # the child keeps its copy
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    async def run() -> dict[int, dict[str, object]]:
        async with await ControlClient.open() as client:
            deadline = time.monotonic() + 60
            addresses = {
                node_id: f"{HOST}:{port}" for (node_id, _), port in zip(nodes, ports, strict=True)
            }

            async def status(node_id: int) -> dict[str, object]:
                while True:  # a process may still be starting
                    try:
                        return await client.request(addresses[node_id], {"op": "status"})
                    except NodeUnreachable:
                        assert time.monotonic() < deadline, f"node {node_id} never answered"

            while True:  # the certified three see each other
                views = [await status(n) for n in (1, 101, 101001)]
                if all(v.get("members") == 2 for v in views):
                    break
                assert time.monotonic() < deadline, views
                await asyncio.sleep(0.3)
            answer = await client.request(
                addresses[1], {"op": "broadcast", "topic": "TARIFF/RTP", "payload": 0.12}
            )
            message_id = answer["message_id"]
            for node_id in (101, 101001):
                while not (
                    await client.request(
                        addresses[node_id], {"op": "delivered", "message_id": message_id}
                    )
                )["delivered"]:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            intruder = await client.request(
                addresses[55], {"op": "delivered", "message_id": message_id}
            )
            assert intruder["delivered"] is False
            return {n: await status(n) for n in (1, 101, 101001, 55)}

    try:
        states = asyncio.run(run())
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    assert states[55]["members"] == 0
    stats = {n: states[n]["stats"] for n in states}
    assert stats[1]["rejected_uncertified"] > 0  # type: ignore[index]
    assert stats[101]["sec_origin_verified"] >= 1  # type: ignore[index]
    assert stats[101001]["sec_origin_verified"] >= 1  # type: ignore[index]
