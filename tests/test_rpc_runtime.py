"""Service calls between two real UDP nodes on loopback, in one process."""

from __future__ import annotations

import asyncio
import random
import time

from gridmesh.node import NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.protocols.rpc import CallResult, ServiceFailed, UnknownService
from gridmesh.runtime import UdpNode, free_udp_ports

FAST = NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0.05, member_timeout_s=5))


async def call(node: UdpNode, target: Peer | int, service: str, args: object) -> CallResult:
    """The result of one call from ``node``, on the wall clock."""
    done: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
    node.node.call(target, service, args, now=time.time(), on_result=done.set_result)
    return await asyncio.wait_for(done, timeout=10.0)


def test_two_real_nodes_call_each_others_services_by_peer_and_by_node_id() -> None:
    async def run() -> None:
        port_a, port_b = free_udp_ports("127.0.0.1", 2)
        a = UdpNode(node_id=1, listen=("127.0.0.1", port_a), config=FAST, rng=random.Random(1))
        b = UdpNode(
            node_id=2,
            listen=("127.0.0.1", port_b),
            config=FAST,
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(2),
        )

        def last_voltage(args: object, now: float) -> object:
            if args not in ("L1", "L2", "L3"):
                raise ServiceFailed(1, "no such phase")
            return {"phase": args, "volts": 230.4}

        a.node.expose("last_voltage", last_voltage)
        await a.start()
        await b.start()
        try:
            by_peer = await call(b, Peer(1, a.advertise), "last_voltage", "L2")
            assert by_peer.ok and by_peer.value == {"phase": "L2", "volts": 230.4}
            failed = await call(b, Peer(1, a.advertise), "last_voltage", "L9")
            assert isinstance(failed.error, ServiceFailed) and failed.error.code == 1

            async def a_is_known() -> None:  # b learns a's id from the membership
                while not b.node.membership.neighbors():
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(a_is_known(), timeout=10.0)
            unknown = await call(b, 1, "no_such_service", None)
            assert isinstance(unknown.error, UnknownService)
            assert unknown.target == 1
            assert a.stats()["rpc_calls_served"] == 2
        finally:
            a.close()
            b.close()

    asyncio.run(run())
