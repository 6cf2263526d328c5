"""Publisher signatures on pub/sub events (security/_events.py): attacks in the simulator.

Every event a certified node publishes carries its signature; the Event
Manager checks it (and freshness) before it accepts the event, replicas before
they store it, subscribers before their application sees it. An Event
Manager is a relay like any other: one that alters or forges events is caught
downstream, and the honest events still arrive.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import pytest

from gridmesh.errors import MalformedMessage
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.protocols.pubsub import (
    Event,
    EventManagerRef,
    PubackStatus,
    PublishRefused,
    PubSubConfig,
)
from gridmesh.protocols.pubsub._wire import parse_event, parse_publish_item
from gridmesh.security._confidential import GroupKey
from gridmesh.wire import AUTH_BYTES_MAX, Envelope, Kind
from tests.helpers import RecordingTransport
from tests.test_security_sim import SecureGrid

HONEST = {"shed_kw": 500}


def _tamper_events(events: list[object]) -> list[object]:
    """Raise every honest command tenfold; add a made-up one in the DSO's name."""
    out: list[object] = []
    for item in events:
        assert isinstance(item, list)
        if item[5] == HONEST:
            altered = [*item[:5], {"shed_kw": 5000}, *item[6:]]  # the signature stays
            out.append(altered)
            forged = [*item]
            forged[1] = item[1] ^ 1  # another event id: the signature cannot match
            forged[5] = {"shed_kw": 9999}
            out.append(forged)
        else:
            out.append(item)
    return out


class EvilEventManager(Node):
    """A certified Event Manager that rewrites what it delivers and replicates."""

    def send(self, peers: Sequence[Peer], message: Envelope) -> None:
        body = message.body
        if message.kind is Kind.PS_DELIVER and isinstance(body, list):
            message = replace(message, body=[body[0], body[1], _tamper_events(body[2])])
        elif message.kind is Kind.PS_REPLICATE and isinstance(body, list):
            ops: list[object] = []
            for op in body[3]:
                assert isinstance(op, list)
                if op[0] == 0:  # a new event
                    ops.extend([0, event] for event in _tamper_events([op[1]]))
                else:
                    ops.append(op)
            message = replace(message, body=[*body[:3], ops])
        super().send(peers, message)


def _config() -> NodeConfig:
    return NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pubsub=PubSubConfig(
            event_managers=(
                EventManagerRef(node_id=2, address="2"),
                EventManagerRef(node_id=3, address="3"),
            )
        ),
    )


def test_an_event_manager_that_alters_or_forges_events_is_caught_downstream() -> None:
    # Clients start at Event Manager (node id mod 2): even nodes at the evil EM 2, odd at EM 3.
    grid = SecureGrid(10, config=_config(), node_class={2: EvilEventManager})
    received: dict[int, list[object]] = {}
    acked: list[Event] = []

    def setup(now: float) -> None:
        for node_id in (7, 8, 9, 10):
            grid.node(node_id).subscribe(
                "DR/COMMAND/#",
                now=now,
                on_event=lambda e, _, n=node_id: received.setdefault(n, []).append(e.value),
            )

    def publish(now: float) -> None:
        grid.node(1).publish("DR/COMMAND/region-1", HONEST, now=now)  # through EM 3
        grid.node(1).publish("DR/COMMAND/region-1", {"hold": True}, now=now)
        meter = grid.node(6)  # through the evil EM 2, which replicates it to EM 3
        meter.pubsub.on_acked = lambda events, _: acked.extend(events)
        meter.publish("METER/6/load", HONEST, now=now)

    grid.sim.schedule(0.5, setup)
    grid.sim.schedule(1.5, publish)
    grid.sim.run(until_s=6.0)
    refused = {n: grid.node(n).stats()["ps_not_authentic"] for n in (7, 8, 9, 10)}
    # The subscribers the evil EM serves each refused the altered and the forged command.
    assert refused == {7: 0, 8: 2, 9: 0, 10: 2}
    for node_id in (8, 10):
        assert grid.node(node_id).stats()["rejected_bad_signature"] == 2
    # Those EM 3 serves got the DSO's command as signed; nobody got an altered one.
    assert received == {
        7: [HONEST, {"hold": True}],
        8: [{"hold": True}],
        9: [HONEST, {"hold": True}],
        10: [{"hold": True}],
    }
    # EM 3 refused the altered and the forged copy of the meter's event from its replica.
    replica = grid.node(3).event_manager
    assert replica is not None and replica.counters["not_authentic"] == 2
    assert [event.value for event in acked] == [HONEST]


class UnsignedPublisher(Node):
    """A certified meter whose events leave unsigned (a bug, or an attacker's client)."""

    def sign_event(self, event: Event) -> Event:
        return event


def test_the_event_manager_refuses_unsigned_and_stale_events() -> None:
    grid = SecureGrid(10, config=_config(), node_class={9: UnsignedPublisher})
    refused: list[PublishRefused] = []
    acked: list[Event] = []

    def publish(now: float) -> None:
        grid.node(9).pubsub.on_refused = lambda error, _: refused.append(error)
        grid.node(9).publish("METER/9/load", 1.2, now=now)  # its own topic, but unsigned
        meter = grid.node(8)
        meter.pubsub.on_refused = lambda error, _: refused.append(error)
        meter.pubsub.on_acked = lambda events, _: acked.extend(events)
        meter.publish("METER/8/load", 2.5, now=now)  # signed and fresh: accepted
        taken = int((now - 60.0) * 1e6)  # a minute old: past the 30 s freshness bound
        meter.publish("METER/8/load", 2.4, now=now, time_us=taken)

    grid.sim.schedule(61.0, publish)
    grid.sim.run(until_s=65.0)
    assert sorted((e.event.source, e.status) for e in refused) == [
        (8, PubackStatus.NOT_AUTHENTIC),
        (9, PubackStatus.NOT_AUTHENTIC),
    ]
    assert [e.value for e in acked] == [2.5]
    # Meter 8 publishes through EM 2, meter 9 through EM 3 (node id mod 2).
    counters = [grid.node(n).event_manager.counters for n in (2, 3)]  # type: ignore[union-attr]
    assert [c["not_authentic"] for c in counters] == [1, 1]
    assert grid.node(2).stats()["rejected_stale"] == 1
    assert grid.node(3).stats()["rejected_bad_signature"] == 1


def test_events_of_nodes_without_credentials_carry_no_signature() -> None:
    config = _config()
    plain = Node(5, transport=RecordingTransport(), rng=random.Random(1), config=config)
    event = plain.pubsub.new_event("METER/5/load", 1.0, now=1.0)
    assert event.auth is None and len(event.to_wire()) == 7


class RecordingEventManager(Node):
    """An honest Event Manager that keeps a copy of every event value it delivers."""

    seen_values: ClassVar[list[object]] = []

    def send(self, peers: Sequence[Peer], message: Envelope) -> None:
        if message.kind is Kind.PS_DELIVER and isinstance(message.body, list):
            self.seen_values.extend(item[5] for item in message.body[2])
        super().send(peers, message)


def test_a_confidential_topic_through_event_managers_is_read_only_by_key_holders() -> None:
    dr_key = GroupKey(b"dr-2026", "DR/COMMAND/#", bytes(range(32)))
    RecordingEventManager.seen_values = []
    grid = SecureGrid(
        10,
        config=_config(),
        node_class={2: RecordingEventManager, 3: RecordingEventManager},
        group_keys={n: (dr_key,) for n in (1, 7, 8)},  # the DSO and meters 7 and 8
    )
    received: dict[int, list[object]] = {}

    def setup(now: float) -> None:
        for node_id in (7, 8, 9, 10):
            grid.node(node_id).subscribe(
                "DR/COMMAND/#",
                now=now,
                on_event=lambda e, _, n=node_id: received.setdefault(n, []).append(e.value),
            )

    grid.sim.schedule(0.5, setup)
    grid.sim.schedule(1.5, lambda now: grid.node(1).publish("DR/COMMAND/region-1", HONEST, now=now))
    grid.sim.run(until_s=6.0)
    assert received == {7: [HONEST], 8: [HONEST]}  # the key holders, one per Event Manager
    assert [grid.node(n).stats()["ps_unreadable"] for n in (9, 10)] == [1, 1]
    # The Event Managers carried it sealed: no copy they delivered holds the command.
    assert len(RecordingEventManager.seen_values) == 4
    assert all(set(value) == {"gridmesh.sealed"} for value in RecordingEventManager.seen_values)  # type: ignore[arg-type]


def test_a_malformed_auth_item_is_a_typed_error_naming_it() -> None:
    event = [1, 2, 3, "DR/COMMAND/x", 4, 5.0, "kW"]
    assert parse_event([*event, b"\x82\x40\x40"]).auth == b"\x82\x40\x40"
    for bad, field in (
        ([*event, 7], "event.auth"),
        ([*event, b"x" * (AUTH_BYTES_MAX + 1)], "event.auth"),
        ([*event, b"", b""], "event"),
    ):
        with pytest.raises(MalformedMessage) as caught:
            parse_event(bad)
        assert caught.value.field == field
    with pytest.raises(MalformedMessage) as caught:
        parse_publish_item([2, 3, "METER/1/x", 4, 5.0, "kW", "not bytes"])
    assert caught.value.field == "event.auth"
