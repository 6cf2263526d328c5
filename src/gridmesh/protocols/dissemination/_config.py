"""How a node disseminates: the mode, its defaults and its limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.protocols.dissemination._reliability import RELIABILITY_MAX
from gridmesh.wire import HOPS_MAX

__all__ = ["FANOUT_MAX", "GossipConfig", "GossipMode", "Infection"]

#: Hard limit on the fanout a message may ask relays for.
FANOUT_MAX = 64

GossipMode = Literal[
    "push", "pull", "push-pull", "lazy", "tree", "unicast", "broker", "hierarchy", "hybrid"
]
Infection = Literal["die", "forever"]


class GossipConfig(BaseModel):
    """Defaults and limits of dissemination; see docs/PROTOCOL.md, "Dissemination".

    ``mode``: ``push`` (eager push on receipt), ``pull`` (periodic digest
    exchange only), ``push-pull`` (both), ``lazy`` (announce ids, send the
    payload on request) or ``tree`` (Plumtree: eager push along a spanning
    tree, ids on the other links; needs the ``hyparview`` membership).
    The baselines gossip is compared with: ``unicast`` (the origin sends to
    every member), ``broker`` (through the node whose service is ``broker``),
    ``hierarchy`` (each node to the members of group ``parent:<its id>``) and
    ``hybrid`` (native multicast in a LAN domain, gossip between the domains'
    gateways; needs a driver with multicast, i.e. the simulator).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: GossipMode = "push"
    infection: Infection = Field(
        default="die",
        description="die: relay a message once; forever: relay every copy while hops remain",
    )
    fanout: float = Field(default=6.0, ge=1.0, le=FANOUT_MAX, description="mean copies per relay")
    hops: int = Field(default=10, ge=1, le=HOPS_MAX)
    hops_max: int = Field(
        default=HOPS_MAX, ge=1, le=HOPS_MAX, description="receivers clamp hops_left to this"
    )
    reliability: float | None = Field(
        default=None,
        gt=0.0,
        le=RELIABILITY_MAX,
        description="when set, the default fanout reaches everyone with this probability",
    )
    network_size: int | None = Field(
        default=None, ge=1, description="size estimate for reliability; default: the membership's"
    )
    expected_loss: float = Field(default=0.0, ge=0.0, lt=1.0)
    expected_crashed: float = Field(default=0.0, ge=0.0, lt=1.0)
    seen_cache_max: int = Field(default=4096, ge=16, le=10_000_000)
    store_max: int = Field(
        default=1024, ge=1, le=1_000_000, description="messages kept to answer pulls and grafts"
    )
    store_ttl_s: float = Field(default=600.0, gt=0.0, le=30 * 86_400.0)
    pull_interval_s: float = Field(default=1.0, gt=0.0, le=86_400.0)
    pull_window_s: float = Field(
        default=60.0, gt=0.0, le=30 * 86_400.0, description="a pull digest covers this much"
    )
    pull_fanout: int = Field(default=1, ge=1, le=FANOUT_MAX)
    anti_entropy_interval_s: float = Field(
        default=0.0, ge=0.0, le=86_400.0, description="0: off; else a repair exchange this often"
    )
    digest_max: int = Field(default=256, ge=1, le=4096, description="message ids per digest")
    reply_messages_max: int = Field(
        default=32, ge=1, le=4096, description="messages sent back for one digest"
    )
    request_timeout_s: float = Field(
        default=2.0, gt=0.0, le=60.0, description="lazy/tree: wait this long for a payload"
    )

    @model_validator(mode="after")
    def _consistent(self) -> GossipConfig:
        if self.hops > self.hops_max:
            raise ValueError(f"hops ({self.hops}) must not exceed hops_max ({self.hops_max})")
        if self.infection == "forever" and self.mode not in ("push", "push-pull"):
            raise ValueError("infection = 'forever' applies to the push and push-pull modes only")
        return self

    @property
    def keeps_messages(self) -> bool:
        """Whether this node stores what it delivers (to answer pulls, grafts, repairs)."""
        return (
            self.mode in ("pull", "push-pull", "lazy", "tree") or self.anti_entropy_interval_s > 0
        )
