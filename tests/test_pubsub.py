"""The Event Manager in the simulator: delivery, at-least-once, failover, limits, bad input."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gridmesh.errors import InvalidTopic, LocalProtocolError
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer, new_envelope
from gridmesh.protocols.membership import FullMembershipConfig, PeerDirectory
from gridmesh.protocols.pubsub import (
    Event,
    EventManagerRef,
    PubackStatus,
    PublishQueueFull,
    PubSubConfig,
    SubackStatus,
    SubscribeResult,
)
from gridmesh.sim import ConstantLatency, LinkClass, NetworkConfig, Simulator, UniformLatency
from gridmesh.wire import Kind


@dataclass
class Flow:
    """A simulated network whose first ``managers`` nodes are the flow's Event Managers."""

    sim: Simulator
    managers: tuple[int, ...]
    received: dict[int, list[Event]] = field(default_factory=dict)
    acked: dict[int, list[Event]] = field(default_factory=dict)
    answers: list[SubscribeResult] = field(default_factory=list)

    def node(self, node_id: int) -> Node:
        node = self.sim.node(node_id)
        assert node is not None, f"node {node_id} is down"
        return node

    def subscribe(self, node_id: int, *filters: str, at: float = 0.0) -> None:
        def go(now: float) -> None:
            self.node(node_id).subscribe(
                list(filters),
                now=now,
                on_event=lambda event, _: self.received.setdefault(node_id, []).append(event),
                on_done=self.answers.append,
            )

        self.sim.schedule(at, go)

    def publish_every(
        self, node_id: int, topic: str, *, start: float, stop: float, interval_s: float
    ) -> None:
        """Publish on ``topic`` every ``interval_s`` while the node is up."""

        def watch(now: float) -> None:
            node = self.node(node_id)
            node.pubsub.on_acked = lambda events, _: self.acked.setdefault(node_id, []).extend(
                events
            )

        self.sim.schedule(start, watch)
        count = round((stop - start) / interval_s)
        for index in range(count):
            at = start + index * interval_s

            def one(now: float, index: int = index) -> None:
                node = self.sim.node(node_id)
                if node is not None:
                    node.publish(topic, {"n": index, "kw": 1.5}, now=now, unit="kW")

            self.sim.schedule(at, one)


def flow(
    count: int,
    *,
    managers: int = 2,
    loss: float = 0.0,
    seed: int = 1,
    latency_s: float = 0.005,
    jitter_s: float = 0.0,
    **limits: object,
) -> Flow:
    latency = (
        UniformLatency(low_s=latency_s, high_s=latency_s + jitter_s)
        if jitter_s
        else ConstantLatency(delay_s=latency_s)
    )
    link = LinkClass(latency=latency, loss=loss)
    sim = Simulator(seed=seed, network=NetworkConfig(lan=link, wan=link), wire_fidelity=True)
    refs = tuple(EventManagerRef(node_id=i, address=str(i)) for i in range(1, managers + 1))
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pubsub=PubSubConfig(event_managers=refs, **limits),  # type: ignore[arg-type]
    )
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1))
    sim.add_nodes(
        count,
        lambda i: Node(
            i,
            transport=sim,
            rng=sim.node_rng,
            config=config,
            address=sim.address_of(i),
            directory=directory,
        ),
    )
    return Flow(sim, tuple(r.node_id for r in refs))


def keys(events: list[Event]) -> set[tuple[int, int]]:
    return {event.key for event in events}


def test_a_subscriber_receives_exactly_the_events_its_filters_match() -> None:
    f = flow(6)
    f.subscribe(4, "MEASUREMENT/SENSOR/+/PowerConsumption")
    f.subscribe(5, "MEASUREMENT/#")
    f.subscribe(6, "TARIFF/*")  # LinkSmart's trailing * is MQTT's #
    for at, topic in enumerate(
        [
            "MEASUREMENT/SENSOR/1234/PowerConsumption",
            "MEASUREMENT/SENSOR/1234/Voltage",
            "TARIFF/RTP",
            "MEASUREMENT",
        ]
    ):
        f.sim.schedule(
            1.0 + at * 0.1,
            lambda now, topic=topic: f.node(3).publish(topic, 1.0, now=now, unit="kW"),
        )
    f.sim.run(until_s=3.0)
    topics = {node: [e.topic for e in events] for node, events in f.received.items()}
    assert topics == {
        4: ["MEASUREMENT/SENSOR/1234/PowerConsumption"],
        5: [
            "MEASUREMENT/SENSOR/1234/PowerConsumption",
            "MEASUREMENT/SENSOR/1234/Voltage",
            "MEASUREMENT",
        ],
        6: ["TARIFF/RTP"],
    }
    event = f.received[4][0]
    assert (event.value, event.unit, event.source, event.seq) == (1.0, "kW", 3, 1)
    assert all(answer.ok for answer in f.answers)


def test_every_acknowledged_event_arrives_once_under_twenty_percent_loss() -> None:
    f = flow(5, loss=0.2, seed=7)
    f.subscribe(4, "grid/#")
    f.subscribe(5, "grid/+/load")
    f.publish_every(3, "grid/feeder-1/load", start=1.0, stop=3.0, interval_s=0.01)
    f.sim.run(until_s=15.0)
    published = 200
    assert len(f.acked[3]) == published
    for subscriber in (4, 5):
        events = f.received[subscriber]
        assert keys(events) == keys(f.acked[3])
        assert len(events) == published  # duplicates were suppressed
    assert f.node(4).stats()["ps_duplicates"] + f.node(5).stats()["ps_duplicates"] >= 0
    assert f.node(3).pubsub.unacknowledged == 0


@pytest.mark.parametrize("victim", [1, 2])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killing_an_event_manager_under_1000_events_per_second_loses_no_acknowledged_event(
    seed: int, victim: int
) -> None:
    # Clients start at EM (id mod 2) + 1: the publisher (3) at EM 2, subscribers 4 and 6
    # at EM 1, subscriber 5 at EM 2. Killing either EM fails someone over.
    f = flow(6, seed=seed, loss=0.01)
    for subscriber in (4, 5, 6):
        f.subscribe(subscriber, "MEASUREMENT/#")
    f.publish_every(
        3, "MEASUREMENT/SENSOR/7/PowerConsumption", start=1.0, stop=4.0, interval_s=0.001
    )
    f.sim.crash(victim, at=2.5)
    f.sim.run(until_s=12.0)
    acked = keys(f.acked[3])
    assert len(acked) == 3000, f"seed {seed}: {3000 - len(acked)} events never acknowledged"
    for subscriber in (4, 5, 6):
        got = keys(f.received[subscriber])
        assert acked <= got, f"seed {seed}: subscriber {subscriber} lost {len(acked - got)}"
        assert len(f.received[subscriber]) == len(got)  # the application saw each event once
    moved = [n for n in (3, 4, 5, 6) if f.node(n).pubsub.counters["failovers"]]
    assert moved == ([4, 6] if victim == 1 else [3, 5])
    for node_id in moved:
        failover_at = f.node(node_id).pubsub.last_failover_at
        assert failover_at is not None and 2.5 < failover_at < 2.5 + 1.5


def test_a_restarted_event_manager_catches_up_and_can_take_over() -> None:
    # EM 1 crashes and comes back empty; EM 2 streams it a snapshot. Then EM 2 dies:
    # the subscribers it served move to EM 1, which must hold their queues.
    f = flow(6, seed=4)
    for subscriber in (4, 5, 6):
        f.subscribe(subscriber, "DR/#")
    f.publish_every(3, "DR/COMMAND/region-7", start=0.5, stop=6.0, interval_s=0.01)
    f.sim.crash(1, at=1.0)
    f.sim.recover(1, at=2.0)
    f.sim.crash(2, at=4.0)
    f.sim.run(until_s=15.0)
    acked = keys(f.acked[3])
    assert len(acked) == 550
    for subscriber in (4, 5, 6):
        assert acked <= keys(f.received[subscriber]), f"subscriber {subscriber}"
    restarted = f.node(1).event_manager
    assert restarted is not None and restarted.stats()["em_subscribers"] == 3


def test_the_same_seed_gives_the_same_run() -> None:
    def run() -> list[tuple[int, int, int]]:
        f = flow(5, loss=0.1, seed=11)
        f.subscribe(4, "a/#")
        f.subscribe(5, "a/+")
        f.publish_every(3, "a/b", start=1.0, stop=2.0, interval_s=0.01)
        f.sim.crash(2, at=1.5)
        f.sim.run(until_s=6.0)
        return [(n, e.seq, e.event_id) for n in (4, 5) for e in f.received[n]]

    assert run() == run()


def test_a_publisher_flooding_at_100_times_its_rate_does_not_starve_another() -> None:
    f = flow(6, managers=1, publisher_rate_max=200.0, publisher_burst_max=50, queue_events_max=400)
    f.subscribe(6, "grid/#")
    f.publish_every(4, "grid/honest", start=1.0, stop=3.0, interval_s=0.01)  # 100/s
    for index in range(20_000):  # 10,000/s for 2 s: 100x the honest rate
        f.sim.schedule(
            1.0 + index * 0.0001,
            lambda now, i=index: f.node(5).publish("grid/flood", i, now=now),
        )
    f.sim.run(until_s=8.0)
    honest = keys(f.acked[4])
    assert len(honest) == 200
    got = f.received[6]
    assert honest <= keys(got)
    flooded = [e for e in got if e.source == 5]
    assert len(flooded) < 200 * 8  # held to its rate (200/s) plus a burst, not 10,000/s
    em = f.node(1).event_manager
    assert em is not None and em.counters["rate_limited"] > 0
    # The honest publisher's events were acknowledged promptly, not behind the flood.
    assert f.node(4).pubsub.counters["republished"] < 20


def test_a_full_queue_drops_the_newest_event_of_the_publisher_holding_most_of_it() -> None:
    f = flow(6, managers=1, queue_events_max=50)
    f.subscribe(6, "x/#")
    f.sim.crash(6, at=0.5)  # the subscriber stops acknowledging: its queue fills
    f.publish_every(4, "x/a", start=1.0, stop=1.5, interval_s=0.01)  # 50 events
    f.publish_every(5, "x/b", start=1.0, stop=2.0, interval_s=0.01)  # 100 events
    f.sim.run(until_s=3.0)
    em = f.node(1).event_manager
    assert em is not None
    assert em.stats()["em_queued"] == 50
    assert em.counters["overflow_dropped"] == 100
    assert len(f.acked[4]) == 50 and len(f.acked[5]) == 100  # publishers are not held back


def test_unsubscribing_a_filter_never_subscribed_gets_a_typed_status() -> None:
    f = flow(4, managers=1)
    f.subscribe(3, "a/b")
    f.sim.schedule(
        0.5, lambda now: f.node(3).unsubscribe(["a/c", "a/b"], now=now, on_done=f.answers.append)
    )
    f.sim.run(until_s=2.0)
    assert [answer.statuses for answer in f.answers] == [
        (SubackStatus.GRANTED,),
        (SubackStatus.NO_SUBSCRIPTION, SubackStatus.GRANTED),
    ]


def test_invalid_topics_and_oversized_events_are_refused_locally_with_typed_errors() -> None:
    f = flow(3, managers=1, event_bytes_max=256)
    node = f.node(2)
    with pytest.raises(InvalidTopic):
        node.publish("a/+/b", 1, now=0.0)
    with pytest.raises(InvalidTopic):
        node.publish("", 1, now=0.0)
    with pytest.raises(InvalidTopic):
        node.subscribe("a/#/b", now=0.0, on_event=lambda e, now: None)
    with pytest.raises(LocalProtocolError, match="event_bytes_max"):
        node.publish("a/b", "x" * 300, now=0.0)
    with pytest.raises(LocalProtocolError, match="plain data"):
        node.publish("a/b", {1, 2}, now=0.0)


def test_a_publisher_that_outruns_its_queue_gets_publish_queue_full() -> None:
    f = flow(3, managers=1, publish_window_max=4, publish_queue_max=10)
    f.sim.crash(1, at=0.0)  # no Event Manager answers: the window stays full
    f.sim.run(until_s=0.1)
    node = f.node(2)
    for index in range(10):
        node.publish("a/b", index, now=0.1)
    with pytest.raises(PublishQueueFull):
        node.publish("a/b", 10, now=0.1)
    f.sim.run(until_s=0.2)  # 4 leave for the window, making room for 4 more
    for index in range(4):
        node.publish("a/b", 11 + index, now=0.2)
    with pytest.raises(PublishQueueFull):
        node.publish("a/b", 15, now=0.2)
    assert node.pubsub.unacknowledged == 14


def test_a_node_that_is_no_event_manager_refuses_pubsub_traffic_for_one() -> None:
    f = flow(3, managers=1)
    node = f.node(3)
    message = new_envelope(node, Kind.PS_PUBLISH, [[1, 1, "a/b", 0, 1, ""]], 0.0)
    f.node(2).receive(message, "3", 0.0)
    assert f.node(2).stats()["rejected_malformed"] == 1


def raw(f: Flow, sender: int, kind: Kind, body: object) -> None:
    """Deliver a hand-made message from ``sender`` to EM 1."""
    message = new_envelope(f.node(sender), kind, body, f.sim.now)
    f.node(1).receive(message, str(sender), f.sim.now)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (Kind.PS_PUBLISH, []),
        (Kind.PS_PUBLISH, "garbage"),
        (Kind.PS_PUBLISH, [[1, 1, "a/b", 0, 1]]),
        (Kind.PS_PUBLISH, [[-1, 1, "a/b", 0, 1, ""]]),
        (Kind.PS_PUBLISH, [[1, 1, 7, 0, 1, ""]]),
        (Kind.PS_PUBLISH, [[1, 1, "a/b", 0, 1, "u" * 65]]),
        (Kind.PS_SUBSCRIBE, [1, 1, ["a/b"]]),
        (Kind.PS_SUBSCRIBE, [1, 1, "a/b", False]),
        (Kind.PS_SUBSCRIBE, [1, 1, ["x"] * 300, False]),
        (Kind.PS_DELIVER_ACK, [[1, 2]]),  # from no subscriber
        (Kind.PS_REPLICATE, [1, 1, 1, []]),  # from no Event Manager
        (Kind.PS_PING, []),
    ],
)
def test_malformed_pubsub_bodies_are_rejected_counted_and_survived(
    kind: Kind, body: object
) -> None:
    f = flow(3, managers=1)
    f.subscribe(3, "a/#")
    f.sim.run(until_s=0.5)
    raw(f, 2, kind, body)
    rejected = {k: v for k, v in f.node(1).stats().items() if k.startswith("rejected_")}
    assert sum(rejected.values()) == 1, rejected
    f.publish_every(2, "a/b", start=0.6, stop=0.7, interval_s=0.01)
    f.sim.run(until_s=2.0)
    assert len(f.received[3]) == 10  # the Event Manager kept working


def test_an_invalid_topic_from_a_peer_gets_a_status_not_a_drop() -> None:
    f = flow(3, managers=1)
    f.subscribe(3, "#")
    f.sim.run(until_s=0.5)
    answers: list[object] = []
    node2 = f.node(2)
    node2.pubsub  # noqa: B018 - build the client, so the answer has somewhere to go
    original = node2.pubsub._on_puback  # observe the raw statuses
    node2.pubsub._on_puback = lambda m, now: answers.append(m.body) or original(m, now)  # type: ignore[method-assign]
    raw(f, 2, Kind.PS_PUBLISH, [[1, 1, "a/+", 0, 1, ""], [2, 2, "ok/topic", 0, 1, ""]])
    f.sim.run(until_s=1.0)
    assert [[1, PubackStatus.INVALID_TOPIC]] in answers
    assert [[2, PubackStatus.ACCEPTED]] in answers
    assert [e.topic for e in f.received[3]] == ["ok/topic"]


def test_gossip_mode_delivers_each_event_to_the_nodes_whose_filters_match_with_no_broker() -> None:
    link = LinkClass(latency=ConstantLatency(delay_s=0.01), loss=0.02)
    sim = Simulator(seed=5, network=NetworkConfig(lan=link, wan=link), wire_fidelity=True)
    config = NodeConfig(
        membership=FullMembershipConfig(exchange_interval_s=0),
        pubsub=PubSubConfig(mode="gossip"),
    )
    count = 300
    directory = PeerDirectory(Peer(i, str(i)) for i in range(1, count + 1))
    sim.add_nodes(
        count,
        lambda i: Node(
            i, transport=sim, rng=sim.node_rng, config=config, address=str(i), directory=directory
        ),
    )
    received: dict[int, list[str]] = {}
    plain: list[object] = []
    sim.on_deliver = lambda node_id, delivery: plain.append(delivery)
    filters = {7: "TARIFF/#", 8: "TARIFF/RTP", 9: "MEASUREMENT/+/power", 10: "#"}

    def subscribe(now: float) -> None:
        for node_id, text in filters.items():
            node = sim.node(node_id)
            assert node is not None
            node.subscribe(
                text,
                now=now,
                on_event=lambda e, _, n=node_id: received.setdefault(n, []).append(e.topic),
            )

    sim.schedule(0.0, subscribe)
    topics = ["TARIFF/RTP", "TARIFF/ToU", "MEASUREMENT/feeder-1/power", "$SYS/uptime"]
    for index, topic in enumerate(topics):
        sim.schedule(
            1.0 + index,
            lambda now, t=topic: sim.node(1).publish(t, 0.12, now=now, unit="EUR/kWh"),  # type: ignore[union-attr]
        )
    sim.run(until_s=10.0)
    assert received == {
        7: ["TARIFF/RTP", "TARIFF/ToU"],
        8: ["TARIFF/RTP"],
        9: ["MEASUREMENT/feeder-1/power"],
        10: ["TARIFF/RTP", "TARIFF/ToU", "MEASUREMENT/feeder-1/power"],  # $ topics: not for #
    }
    assert plain == []  # events are not handed over as plain broadcasts too


def test_gossip_mode_refuses_an_event_whose_source_is_not_the_message_origin() -> None:
    f = flow(3, managers=0, mode="gossip")
    node = f.node(2)
    f.subscribe(2, "#")
    f.sim.run(until_s=0.1)
    forged = Event("a/b", 1, 0, 99, 1, 5).to_wire()
    node.deliver(
        new_envelope(f.node(3), Kind.GOSSIP, {}, 0.1, topic="a/b"), {"gridmesh.event": forged}, 0.1
    )
    assert node.stats()["rejected_malformed"] == 1
    assert 2 not in f.received


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_three_event_managers_with_jitter_and_loss_lose_nothing_when_one_dies(seed: int) -> None:
    # Reordering and loss between replicas: a replica may hold an event the dead EM
    # replicated to it alone; the publisher's copy after failover must reach the others.
    f = flow(15, managers=3, seed=seed, loss=0.02, latency_s=0.005, jitter_s=0.015)
    subscribers = range(7, 16)
    for subscriber in subscribers:
        f.subscribe(subscriber, "MEASUREMENT/#")
    for publisher in (4, 5, 6):
        f.publish_every(
            publisher, f"MEASUREMENT/p{publisher}", start=1.0, stop=4.0, interval_s=0.003
        )
    f.sim.crash(1, at=2.0)
    f.sim.run(until_s=12.0)
    acked = set().union(*(keys(f.acked[p]) for p in (4, 5, 6)))
    assert len(acked) == 3000
    for subscriber in subscribers:
        lost = acked - keys(f.received[subscriber])
        assert not lost, f"seed {seed}: subscriber {subscriber} lost {len(lost)}"
