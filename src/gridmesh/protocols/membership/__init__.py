"""Membership: who a node may talk to (peer sampling), four ways.

* ``FullMembership``: everyone knows everyone (static, or gossiped with heartbeats);
* ``Cyclon``: a uniform partial view by enhanced shuffling (seed 003, ReDy);
* ``Newscast``: a partial view ordered by freshness (seed 000's Peer Service);
* ``HyParView``: a small symmetric active view with probing and repair, kept from
  a larger passive view (beyond the seeds: for dissemination under failures).

All four implement ``gridmesh.protocols.Membership``; ``make_membership`` builds
the one a configuration names.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from gridmesh.protocols._host import Host, Membership, Peer
from gridmesh.protocols.membership._cyclon import AGE_MAX, VIEW_SIZE_MAX, Cyclon, CyclonConfig
from gridmesh.protocols.membership._descriptors import (
    GROUP_BYTES_MAX,
    GROUPS_MAX,
    SERVICE_BYTES_MAX,
    check_profile,
)
from gridmesh.protocols.membership._directory import PeerDirectory
from gridmesh.protocols.membership._full import (
    MEMBERS_PER_MESSAGE_LIMIT,
    FullMembership,
    FullMembershipConfig,
)
from gridmesh.protocols.membership._hyparview import HyParView, HyParViewConfig
from gridmesh.protocols.membership._newscast import CACHE_SIZE_MAX, Newscast, NewscastConfig

__all__ = [
    "AGE_MAX",
    "CACHE_SIZE_MAX",
    "GROUPS_MAX",
    "GROUP_BYTES_MAX",
    "MEMBERS_PER_MESSAGE_LIMIT",
    "SERVICE_BYTES_MAX",
    "VIEW_SIZE_MAX",
    "Cyclon",
    "CyclonConfig",
    "FullMembership",
    "FullMembershipConfig",
    "HyParView",
    "HyParViewConfig",
    "MembershipConfig",
    "Newscast",
    "NewscastConfig",
    "PeerDirectory",
    "check_profile",
    "make_membership",
]


def _kind(value: Any) -> str:
    """The membership kind a config names; ``full`` when it names none."""
    if isinstance(value, dict):
        return str(value.get("kind", "full"))
    return str(getattr(value, "kind", "full"))


MembershipConfig = Annotated[
    Annotated[FullMembershipConfig, Tag("full")]
    | Annotated[CyclonConfig, Tag("cyclon")]
    | Annotated[NewscastConfig, Tag("newscast")]
    | Annotated[HyParViewConfig, Tag("hyparview")],
    Discriminator(_kind),
]


def make_membership(
    host: Host,
    config: FullMembershipConfig | CyclonConfig | NewscastConfig | HyParViewConfig,
    *,
    seeds: tuple[Peer, ...] = (),
    directory: PeerDirectory | None = None,
) -> Membership:
    """The membership protocol ``config`` names, for ``host``."""
    if isinstance(config, CyclonConfig):
        return Cyclon(host, config, seeds=seeds)
    if isinstance(config, NewscastConfig):
        return Newscast(host, config, seeds=seeds)
    if isinstance(config, HyParViewConfig):
        return HyParView(host, config, seeds=seeds)
    return FullMembership(host, config, directory=directory, seeds=seeds)
