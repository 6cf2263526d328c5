"""Publish/subscribe: the Event Manager (seed 001, sections III.B.3 and IV.A).

* ``Event``: topic, value, unit, time, source, sequence number and event id;
* ``EventManager``: a topic broker whose replicas share the flow's state, so
  that clients fail over with nothing acknowledged lost (``_broker``,
  ``_replication``);
* ``PubSubClient``: a node's publisher and subscriber side, with failover;
* ``PubSubConfig``: the Event Managers of a flow and every limit.
"""

from __future__ import annotations

from gridmesh.protocols.pubsub._broker import EventManager, EventStore
from gridmesh.protocols.pubsub._client import (
    EventCallback,
    PublishQueueFull,
    PublishRefused,
    PubSubClient,
    SubscribeResult,
)
from gridmesh.protocols.pubsub._config import EVENT_MANAGERS_MAX, EventManagerRef, PubSubConfig
from gridmesh.protocols.pubsub._event import Event, EventKey
from gridmesh.protocols.pubsub._wire import (
    GOSSIP_EVENT_KEY,
    PubackStatus,
    SubackStatus,
    parse_event,
)

__all__ = [
    "EVENT_MANAGERS_MAX",
    "GOSSIP_EVENT_KEY",
    "Event",
    "EventCallback",
    "EventKey",
    "EventManager",
    "EventManagerRef",
    "EventStore",
    "PubSubClient",
    "PubSubConfig",
    "PubackStatus",
    "PublishQueueFull",
    "PublishRefused",
    "SubackStatus",
    "SubscribeResult",
    "parse_event",
]
