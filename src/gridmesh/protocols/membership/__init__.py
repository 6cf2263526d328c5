"""Membership: who a node may gossip with (peer sampling)."""

from gridmesh.protocols.membership._directory import PeerDirectory
from gridmesh.protocols.membership._full import (
    MEMBERS_PER_MESSAGE_LIMIT,
    FullMembership,
    FullMembershipConfig,
)

__all__ = ["MEMBERS_PER_MESSAGE_LIMIT", "FullMembership", "FullMembershipConfig", "PeerDirectory"]
