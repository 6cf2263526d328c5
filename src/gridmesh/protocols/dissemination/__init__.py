"""Dissemination: getting one message to every node (of a group).

* ``Gossip``: push, pull, push-pull and lazy push, infect-and-die or
  infect-forever, with optional anti-entropy repair (seed 000);
* ``TreeGossip``: Plumtree, eager push along a spanning tree;
* ``fanout_for``: the mean fanout for a requested delivery probability.
"""

from __future__ import annotations

from gridmesh.protocols._host import Host, PeerSampling
from gridmesh.protocols.dissemination._config import (
    FANOUT_MAX,
    GossipConfig,
    GossipMode,
    Infection,
)
from gridmesh.protocols.dissemination._gossip import GROUP_BYTES_MAX, Gossip, SizeEstimate
from gridmesh.protocols.dissemination._reliability import (
    RELIABILITY_MAX,
    copies_for,
    fanout_for,
    reach_probability,
)
from gridmesh.protocols.dissemination._store import MessageKey, MessageStore
from gridmesh.protocols.dissemination._tree import TreeGossip

__all__ = [
    "FANOUT_MAX",
    "GROUP_BYTES_MAX",
    "RELIABILITY_MAX",
    "Gossip",
    "GossipConfig",
    "GossipMode",
    "Infection",
    "MessageKey",
    "MessageStore",
    "PushGossipConfig",
    "SizeEstimate",
    "TreeGossip",
    "copies_for",
    "fanout_for",
    "make_dissemination",
    "reach_probability",
]

#: The name this configuration had while push was the only mode.
PushGossipConfig = GossipConfig


def make_dissemination(
    host: Host,
    config: GossipConfig,
    peers: PeerSampling,
    size_estimate: SizeEstimate = lambda: None,
) -> Gossip:
    """The dissemination protocol ``config.mode`` names."""
    if config.mode == "tree":
        return TreeGossip(host, config, peers, size_estimate)
    return Gossip(host, config, peers, size_estimate)
