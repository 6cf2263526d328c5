"""Admission on real loopback sockets: certified UdpNodes talk, an uncertified one is refused."""

from __future__ import annotations

import asyncio
import random
import socket
import time

from gridmesh.node import NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.runtime import UdpNode, free_udp_ports
from gridmesh.security import (
    Role,
    create_authority,
    issue_node_certificate,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._link import LinkCredentials
from gridmesh.wire import Envelope, Kind, encode
from tests.test_security_sim import key

CONFIG = NodeConfig(membership=FullMembershipConfig(exchange_interval_s=0.2, member_timeout_s=5))


def credentials(node_id: int, role: Role = Role.DTC) -> LinkCredentials:
    now = time.time()
    authority_key = key(4242)
    authority = load_authority(
        create_authority("Loopback Grid", authority_key, now=now - 60, valid_days=1)
    )
    node_key = key(node_id)
    der = issue_node_certificate(
        authority,
        authority_key,
        node_key.public_key(),
        node_id=node_id,
        role=role,
        permissions=None,
        serial=500 + node_id,
        now=now - 60,
        valid_days=1,
    )
    return LinkCredentials(authority, verify_node_certificate(der, authority, now=now), node_key)


async def eventually(check: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_certified_udp_nodes_join_and_deliver_and_an_uncertified_one_is_refused() -> None:
    async def run() -> None:
        port_a, port_b, port_c = free_udp_ports("127.0.0.1", 3)
        a = UdpNode(
            node_id=1,
            listen=("127.0.0.1", port_a),
            config=CONFIG,
            rng=random.Random(1),
            credentials=credentials(1, Role.DSO),
        )
        b = UdpNode(
            node_id=2,
            listen=("127.0.0.1", port_b),
            config=CONFIG,
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(2),
            credentials=credentials(2),
        )
        intruder = UdpNode(
            node_id=3,
            listen=("127.0.0.1", port_c),
            config=CONFIG,
            seeds=(Peer(0, a.advertise),),
            rng=random.Random(3),
        )
        for node in (a, b, intruder):
            await node.start()
        try:
            await eventually(lambda: len(b.node.membership.neighbors()) == 1)
            await eventually(lambda: len(a.node.membership.neighbors()) == 1)
            message_id = a.node.broadcast("0.12 EUR/kWh", topic="TARIFF/RTP", now=time.time())
            await eventually(lambda: message_id in b.deliveries)
            # The intruder's join and a gossip message it sends straight to a are refused.
            forged = Envelope(Kind.GOSSIP, 99, 3, 3, "DR/COMMAND/x", 0, 5, [6, "shed", "", False])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.sendto(encode(forged), ("127.0.0.1", port_a))
            await eventually(lambda: a.stats().get("rejected_uncertified", 0) >= 2)
            assert 99 not in a.deliveries
            assert all(p.node_id != 3 for p in a.node.membership.neighbors())
            assert message_id not in intruder.deliveries
            assert a.stats()["sec_links"] >= 1 and b.stats()["sec_links"] >= 1
        finally:
            for node in (a, b, intruder):
                node.close()

    asyncio.run(run())
