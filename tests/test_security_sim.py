"""Attacks in the simulator: each must fail while honest delivery goes on unaffected.

A grid authority certifies the honest nodes; every node with credentials
talks only over links proven by the handshake (security/_link.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridmesh.node import Node, NodeConfig, SecurityConfig
from gridmesh.protocols import Delivery, Peer
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.protocols.pubsub import (
    EventManagerRef,
    PubackStatus,
    PublishRefused,
    PubSubConfig,
    SubackStatus,
    SubscribeResult,
)
from gridmesh.protocols.rpc import CallResult, CallUnauthorized
from gridmesh.security import (
    Role,
    ScoreConfig,
    create_authority,
    issue_node_certificate,
    load_authority,
    make_revocation,
    verify_node_certificate,
)
from gridmesh.security._confidential import GroupKey
from gridmesh.security._link import LinkCredentials
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator
from gridmesh.wire import Envelope, Kind, encode

#: The simulation's clock starts at 0; certificates are dated from this Unix time.
EPOCH_S = 1_795_000_000.0
#: Node 1 is the utility's information system, node 2 an aggregator; the others meters.
ROLES = {1: Role.DSO, 2: Role.AGGREGATOR}


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(random.Random(seed).randbytes(32))


class SecureGrid:
    """``honest`` certified nodes (ids 1..honest, roles ``ROLES``) plus uncertified ones."""

    def __init__(
        self,
        honest: int,
        intruders: int = 0,
        *,
        seed: int = 1,
        node_class: dict[int, type[Node]] | None = None,
        config: NodeConfig | None = None,
        group_keys: dict[int, tuple[GroupKey, ...]] | None = None,
    ) -> None:
        self.authority_key = key(10_000 + seed)
        self.authority = load_authority(
            create_authority("Sim Grid", self.authority_key, now=EPOCH_S - 60, valid_days=30)
        )
        count = honest + intruders
        link = LinkClass(latency=ConstantLatency(delay_s=0.01))
        self.sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link))
        directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1))
        config = config or NodeConfig(
            gossip=GossipConfig(fanout=6, hops=10),
            membership=FullMembershipConfig(exchange_interval_s=0),
        )
        self.honest = range(1, honest + 1)
        self.intruders = range(honest + 1, count + 1)
        self.received: dict[int, list[Delivery]] = {}
        self.sim.on_deliver = lambda n, d: self.received.setdefault(n, []).append(d)
        classes = node_class or {}
        self.sim.add_nodes(
            count,
            lambda i: classes.get(i, Node)(
                i,
                transport=self.sim,
                rng=self.sim.node_rng,
                config=config,
                address=str(i),
                directory=directory,
                credentials=self.credentials(
                    i, ROLES.get(i, Role.METER), (group_keys or {}).get(i, ())
                )
                if i in self.honest
                else None,
            ),
        )

    def credentials(
        self, node_id: int, role: Role = Role.METER, group_keys: tuple[GroupKey, ...] = ()
    ) -> LinkCredentials:
        node_key = key(node_id)
        der = issue_node_certificate(
            self.authority,
            self.authority_key,
            node_key.public_key(),
            node_id=node_id,
            role=role,
            permissions=None,
            serial=1000 + node_id,
            now=EPOCH_S - 60,
            valid_days=10,
        )
        identity = verify_node_certificate(der, self.authority, now=EPOCH_S)
        return LinkCredentials(
            self.authority, identity, node_key, epoch_s=EPOCH_S, group_keys=group_keys
        )

    def node(self, node_id: int) -> Node:
        node = self.sim.node(node_id)
        assert node is not None
        return node

    def broadcast(self, origin: int, at: float, topic: str = "TARIFF/RTP") -> None:
        self.sim.schedule(at, lambda now: self.node(origin).broadcast(0.12, topic=topic, now=now))

    def delivered(self, node_id: int, topic: str) -> int:
        return sum(1 for d in self.received.get(node_id, []) if d.topic == topic)


def test_certified_nodes_gossip_to_each_other_over_authenticated_links() -> None:
    grid = SecureGrid(30)
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=5.0)
    assert all(grid.delivered(n, "TARIFF/RTP") == 1 for n in grid.honest if n != 1)
    stats = grid.node(2).stats()
    assert stats["sec_links"] > 0 and stats["sec_handshakes_failed"] == 0
    assert not any(k.startswith("rejected_") for k in stats), stats


def test_a_node_without_a_certificate_can_neither_send_nor_receive() -> None:
    grid = SecureGrid(30, intruders=2)
    intruder = grid.intruders[0]
    grid.broadcast(1, at=0.5)  # honest traffic, some of it aimed at the intruders
    grid.broadcast(intruder, at=0.6, topic="DR/COMMAND/forged")  # plain gossip from outside
    grid.sim.run(until_s=10.0)
    honest_others = [n for n in grid.honest if n != 1]
    assert all(grid.delivered(n, "TARIFF/RTP") == 1 for n in honest_others)
    assert not any(grid.delivered(n, "DR/COMMAND/forged") for n in grid.honest)
    assert all(grid.delivered(n, "TARIFF/RTP") == 0 for n in grid.intruders)
    refused = sum(grid.node(n).stats().get("rejected_uncertified", 0) for n in grid.honest)
    assert refused >= 1
    # What honest nodes meant for the intruders never left unsealed: their handshakes failed.
    failed = sum(grid.node(n).stats()["sec_handshakes_failed"] for n in grid.honest)
    assert failed >= 1


def test_a_message_sealed_for_one_link_claiming_another_sender_is_refused() -> None:
    grid = SecureGrid(5)
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=2.0)
    node2, node3 = grid.node(2), grid.node(3)
    links = node2._links
    assert links is not None
    # Node 2 seals, for its link to node 3, a gossip message naming node 4 as sender.
    forged = Envelope(Kind.GOSSIP, 77, 4, 4, "DR/COMMAND/x", 0, 10, [6, 1, "", False])
    frames, _ = links.send("3", encode(forged), grid.sim.now)
    assert frames
    before = node3.stats().get("rejected_uncertified", 0)
    node3.receive_datagram(frames[0], "2", grid.sim.now)
    assert node3.stats()["rejected_uncertified"] == before + 1
    assert grid.delivered(3, "DR/COMMAND/x") == 0


class EvilRelay(Node):
    """A certified node that tampers with what it relays (``tamper`` decides how)."""

    tamper: object = None

    def send(self, peers: Sequence[Peer], message: Envelope) -> None:
        if message.kind is Kind.GOSSIP and message.origin != self.node_id and self.tamper:
            message = self.tamper(message)  # type: ignore[operator]
        super().send(peers, message)


def evil_grid(honest: int, evil: int, tamper: object, *, seed: int = 1) -> SecureGrid:
    grid = SecureGrid.__new__(SecureGrid)
    SecureGrid.__init__(grid, honest, seed=seed, node_class={evil: EvilRelay})
    node = grid.node(evil)
    assert isinstance(node, EvilRelay)
    node.tamper = tamper
    return grid


def refused(grid: SecureGrid, reason: str) -> int:
    return sum(grid.node(n).stats().get(f"rejected_{reason}", 0) for n in grid.honest)


def test_a_relay_that_alters_the_payload_is_caught_and_the_true_tariff_still_arrives() -> None:
    def alter(message: Envelope) -> Envelope:
        fanout, _payload, group, forever = message.body  # type: ignore[misc]
        return replace(message, body=[fanout, 9.99, group, forever], wire_prefix=None)

    grid = evil_grid(30, evil=5, tamper=alter)
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=5.0)
    tariffs = [d.payload for n in grid.honest if n not in (1, 5) for d in grid.received.get(n, [])]
    assert tariffs and set(tariffs) == {0.12}
    assert len(tariffs) == 28  # everyone else got the true one, once
    assert refused(grid, "bad_signature") >= 1


def test_a_relay_that_forges_a_message_from_another_origin_is_caught() -> None:
    def forge(message: Envelope) -> Envelope:
        # A DR command "from the DSO": the relay has no DSO key, so it signs with its own.
        evil = evil_node[0]
        forged = replace(
            message, message_id=message.message_id ^ 1, topic="DR/COMMAND/all", wire_prefix=None
        )
        return evil.authenticate(replace(forged, auth=None))

    evil_node: list[Node] = []
    grid = evil_grid(20, evil=5, tamper=forge)
    evil_node.append(grid.node(5))
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=5.0)
    assert not any(grid.delivered(n, "DR/COMMAND/all") for n in grid.honest)
    assert refused(grid, "certificate_invalid") >= 1


def test_a_relay_that_extends_the_hop_count_is_caught() -> None:
    grid = evil_grid(20, evil=5, tamper=lambda m: replace(m, hops_left=min(64, m.hops_left + 5)))
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=5.0)
    assert refused(grid, "bad_signature") >= 1
    assert all(grid.delivered(n, "TARIFF/RTP") == 1 for n in grid.honest if n not in (1, 5))


def test_a_meter_cannot_publish_a_dr_command_and_nobody_relays_it() -> None:
    grid = SecureGrid(20)
    grid.broadcast(7, at=0.5, topic="DR/COMMAND/region-1")  # node 7 is a meter
    grid.broadcast(1, at=0.6)  # the DSO's tariff goes through meanwhile
    grid.sim.run(until_s=5.0)
    assert not any(grid.delivered(n, "DR/COMMAND/region-1") for n in grid.honest)
    assert all(grid.delivered(n, "TARIFF/RTP") == 1 for n in grid.honest if n != 1)
    assert refused(grid, "unauthorized") >= 1


def test_a_replayed_old_tariff_is_refused() -> None:
    recorded: list[Envelope] = []

    def record(message: Envelope) -> Envelope:
        if not recorded:
            recorded.append(message)
        return message

    grid = evil_grid(20, evil=5, tamper=record)
    grid.sim.crash(20, at=0.1)  # node 20 misses the tariff and comes back with no memory of it
    grid.sim.recover(20, at=60.0)
    grid.broadcast(1, at=0.5)
    grid.sim.run(until_s=5.0)
    assert recorded

    def replay(now: float) -> None:  # 65 s on, past the 30 s freshness bound
        grid.node(5).send([grid.node(20).me], recorded[0])

    grid.sim.schedule(65.0, replay)
    grid.sim.run(until_s=70.0)
    assert grid.delivered(20, "TARIFF/RTP") == 0
    assert grid.node(20).stats().get("rejected_stale", 0) == 1


def test_a_revoked_node_is_cut_off_once_the_revocation_spreads() -> None:
    grid = SecureGrid(20)
    victim = 9  # a meter whose key was stolen
    grid.sim.schedule(
        0.5, lambda now: grid.node(victim).broadcast(1.0, topic="METER/9/reading", now=now)
    )
    serial = grid.node(victim)._credentials.identity.serial
    revocation = make_revocation(
        grid.authority_key, serial, now=EPOCH_S + 1, expires_at=int(EPOCH_S) + 86_400
    )
    grid.sim.schedule(1.0, lambda now: grid.node(1).revoke(revocation, now=now))
    grid.sim.schedule(
        3.0, lambda now: grid.node(victim).broadcast(2.0, topic="METER/9/reading", now=now)
    )
    grid.sim.run(until_s=8.0)
    readings = {
        n: [d.payload for d in grid.received.get(n, []) if d.topic == "METER/9/reading"]
        for n in grid.honest
        if n != victim
    }
    assert all(values == [1.0] for values in readings.values()), readings  # before, not after
    assert sum(grid.node(n).stats().get("rejected_revoked", 0) for n in grid.honest) >= 1


def test_a_node_flooding_at_100_times_its_fair_rate_is_throttled_then_cut_off() -> None:
    config = NodeConfig(
        gossip=GossipConfig(fanout=6, hops=10),
        membership=FullMembershipConfig(exchange_interval_s=0),
        security=SecurityConfig(score=ScoreConfig(rate_per_s=50.0, burst=100.0)),
    )
    grid = SecureGrid(20, config=config)
    flooder = 9
    for index in range(5000):  # 5,000 messages/s for a second: 100x the 50/s fair rate
        grid.sim.schedule(
            1.0 + index / 5000,
            lambda now, i=index: grid.node(flooder).broadcast(
                i, topic="METER/9/flood", now=now, fanout=19, hops=1
            ),
        )
    grid.broadcast(1, at=1.5)  # the DSO's tariff, in the middle of the flood
    grid.sim.run(until_s=6.0)
    others = [n for n in grid.honest if n not in (1, flooder)]
    assert all(grid.delivered(n, "TARIFF/RTP") == 1 for n in others)
    flood = [grid.delivered(n, "METER/9/flood") for n in others]
    assert max(flood) < 5000 * 0.1  # at most its burst and rate got through
    assert sum(grid.node(n).stats().get("rejected_throttled", 0) for n in others) > 1000
    # Its score fell through the disconnect threshold: its links were dropped.
    assert sum(grid.node(n).stats()["sec_links_closed"] for n in others) >= len(others) // 2


def test_an_event_manager_enforces_who_may_publish_and_subscribe_what() -> None:
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pubsub=PubSubConfig(event_managers=(EventManagerRef(node_id=2, address="2"),)),
    )
    grid = SecureGrid(10, config=config)
    refused: list[PublishRefused] = []
    answers: list[SubscribeResult] = []
    received: dict[int, list[str]] = {}

    def setup(now: float) -> None:
        for node_id, text in ((7, "DR/COMMAND/#"), (8, "#")):  # meters; "#" is not theirs
            grid.node(node_id).subscribe(
                text,
                now=now,
                on_event=lambda e, _, n=node_id: received.setdefault(n, []).append(e.topic),
                on_done=answers.append,
            )
        grid.node(9).pubsub.on_refused = lambda error, _: refused.append(error)

    def publish(now: float) -> None:
        grid.node(9).publish("DR/COMMAND/region-1", {"shed_kw": 50}, now=now)  # a meter: no
        grid.node(9).publish("METER/9/load", 1.2, now=now)  # its own: yes
        grid.node(1).publish("DR/COMMAND/region-1", {"shed_kw": 500}, now=now)  # the DSO: yes

    grid.sim.schedule(0.5, setup)
    grid.sim.schedule(1.5, publish)
    grid.sim.run(until_s=5.0)
    assert [a.statuses for a in sorted(answers, key=lambda a: a.filters)] == [
        (SubackStatus.UNAUTHORIZED,),  # "#"
        (SubackStatus.GRANTED,),  # "DR/COMMAND/#"
    ]
    assert [(e.event.topic, e.status) for e in refused] == [
        ("DR/COMMAND/region-1", PubackStatus.UNAUTHORIZED)
    ]
    assert received == {7: ["DR/COMMAND/region-1"]}  # the DSO's command only


def test_a_service_call_the_callers_role_may_not_make_is_refused_with_a_typed_error() -> None:
    grid = SecureGrid(5)
    results: list[CallResult] = []

    def setup(now: float) -> None:
        grid.node(3).expose("meter/last_voltage", lambda args, now: 231.4)
        grid.node(1).call(grid.node(3).me, "meter/last_voltage", now=now, on_result=results.append)
        grid.node(4).call(grid.node(3).me, "meter/last_voltage", now=now, on_result=results.append)

    grid.sim.schedule(0.5, setup)
    grid.sim.run(until_s=3.0)
    outcomes = {r.target: (r.value, type(r.error).__name__) for r in results}
    assert sorted(((r.ok, r.value) for r in results), key=str) == [(False, None), (True, 231.4)]
    assert any(isinstance(r.error, CallUnauthorized) for r in results), outcomes


def test_a_confidential_topic_is_read_only_by_the_holders_of_its_group_key() -> None:
    dr_key = GroupKey(b"dr-2026", "DR/COMMAND/#", bytes(range(32)))
    holders = {1, 2, *range(10, 21)}  # the DSO, the aggregator and meters 10..20
    grid = SecureGrid(20, group_keys={n: (dr_key,) for n in holders})
    grid.sim.schedule(
        0.5,
        lambda now: grid.node(1).broadcast({"shed_kw": 500}, topic="DR/COMMAND/region-1", now=now),
    )
    grid.sim.run(until_s=5.0)
    got = {
        n: [d.payload for d in grid.received.get(n, []) if d.topic == "DR/COMMAND/region-1"]
        for n in grid.honest
        if n != 1
    }
    assert all(got[n] == [{"shed_kw": 500}] for n in holders - {1})
    assert all(got[n] == [] for n in range(3, 10))  # relayed it, could not read it
    unreadable = sum(grid.node(n).stats()["sec_sealed_unreadable"] for n in range(3, 10))
    assert unreadable == 7
