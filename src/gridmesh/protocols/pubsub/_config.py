"""Limits and defaults of the Event Manager; see docs/PUBSUB.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.wire import ADDRESS_BYTES_MAX, UINT64_MAX

__all__ = ["EVENT_MANAGERS_MAX", "EventManagerRef", "PubSubConfig"]

#: Replicas of one flow. Every event goes to every replica, so more costs more.
EVENT_MANAGERS_MAX = 8


class EventManagerRef(BaseModel):
    """One Event Manager of the flow: its node id and transport address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_id: int = Field(ge=1, le=UINT64_MAX)
    address: str = Field(min_length=1, max_length=ADDRESS_BYTES_MAX)


class PubSubConfig(BaseModel):
    """The Event Managers of this node's flow, and every limit of pub/sub."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["event_manager", "gossip"] = Field(
        default="event_manager",
        description="event_manager: through the flow's Event Managers, acknowledged, at least "
        "once; gossip: no broker, every event disseminated by gossip, delivered where a local "
        "filter matches (gossip's reliability, no acknowledgements)",
    )
    event_managers: tuple[EventManagerRef, ...] = Field(
        default=(),
        max_length=EVENT_MANAGERS_MAX,
        description="the replicated Event Managers of the flow; a node listed here is one",
    )
    # -- timing ---------------------------------------------------------------
    retry_interval_s: float = Field(
        default=0.2, gt=0.0, le=60.0, description="unacknowledged messages are sent again after"
    )
    heartbeat_interval_s: float = Field(
        default=0.25, gt=0.0, le=60.0, description="an idle link is probed this often"
    )
    failover_timeout_s: float = Field(
        default=1.0, gt=0.0, le=600.0, description="silence after which a peer counts as down"
    )
    replication_delay_s: float = Field(
        default=0.002,
        ge=0.0,
        le=1.0,
        description="an Event Manager gathers this long into one REPLICATE batch (publishes "
        "wait for it); acknowledgements of deliveries go with the next batch or tick",
    )
    subscriber_expiry_s: float = Field(
        default=3600.0,
        gt=0.0,
        le=30 * 86_400.0,
        description="a subscriber silent this long loses its subscriptions and queue",
    )
    # -- sizes ----------------------------------------------------------------
    event_bytes_max: int = Field(
        default=8192, ge=64, le=60_000, description="an event's encoded size (topic, value, unit)"
    )
    batch_events_max: int = Field(
        default=256, ge=1, le=4096, description="events in one PUBLISH, DELIVER or REPLICATE"
    )
    # -- publisher ------------------------------------------------------------
    publish_window_max: int = Field(
        default=4096, ge=1, le=1_000_000, description="events a publisher has unacknowledged"
    )
    publish_queue_max: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="events waiting for the window; beyond it publish() raises PublishQueueFull",
    )
    # -- subscriber -----------------------------------------------------------
    filters_max: int = Field(default=256, ge=1, le=100_000, description="filters per subscriber")
    dedup_events_max: int = Field(
        default=65_536, ge=2, le=10_000_000, description="recent event ids a subscriber remembers"
    )
    # -- Event Manager --------------------------------------------------------
    subscribers_max: int = Field(default=100_000, ge=1, le=10_000_000)
    subscriptions_max: int = Field(
        default=1_000_000, ge=1, le=100_000_000, description="filters over all subscribers"
    )
    queue_events_max: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="events queued per subscriber; beyond it the publisher with the most "
        "queued events loses its newest (counted, and the subscriber told)",
    )
    deliver_window_max: int = Field(
        default=2048, ge=1, le=100_000, description="events in flight to one subscriber"
    )
    publisher_rate_max: float = Field(
        default=20_000.0, gt=0.0, description="events/s one publisher may sustain"
    )
    publisher_burst_max: int = Field(
        default=40_000, ge=1, description="events one publisher may send at once"
    )
    replication_backlog_max: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="unacknowledged REPLICATE batches per replica; beyond it publishes wait",
    )
    seen_events_max: int = Field(
        default=1_000_000, ge=2, le=100_000_000, description="event ids kept for duplicates"
    )

    @model_validator(mode="after")
    def _distinct_event_managers(self) -> PubSubConfig:
        ids = [ref.node_id for ref in self.event_managers]
        if len(set(ids)) != len(ids):
            raise ValueError("event_managers lists a node id twice")
        if self.failover_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("failover_timeout_s must exceed heartbeat_interval_s")
        return self
