"""Dissemination: getting one message to every node (of a group).

* ``Gossip``: push, pull, push-pull and lazy push, infect-and-die or
  infect-forever, with optional anti-entropy repair (seed 000);
* ``TreeGossip``: Plumtree, eager push along a spanning tree;
* ``BaselineGossip``: unicast, broker, static hierarchy, hybrid multicast;
* ``fanout_for``: the mean fanout for a requested delivery probability.
"""

from __future__ import annotations

from gridmesh.protocols._host import Host, PeerSampling
from gridmesh.protocols.dissemination._baselines import (
    BROKER_SERVICE,
    GATEWAY_GROUP,
    BaselineGossip,
    parent_group,
)
from gridmesh.protocols.dissemination._config import (
    FANOUT_MAX,
    GossipConfig,
    GossipMode,
    Infection,
)
from gridmesh.protocols.dissemination._gossip import (
    GROUP_BYTES_MAX,
    Gossip,
    SizeEstimate,
    gossip_body,
)
from gridmesh.protocols.dissemination._reliability import (
    RELIABILITY_MAX,
    copies_for,
    fanout_for,
    reach_probability,
)
from gridmesh.protocols.dissemination._store import MessageKey, MessageStore
from gridmesh.protocols.dissemination._tree import TreeGossip

__all__ = [
    "BROKER_SERVICE",
    "FANOUT_MAX",
    "GATEWAY_GROUP",
    "GROUP_BYTES_MAX",
    "RELIABILITY_MAX",
    "BaselineGossip",
    "Gossip",
    "GossipConfig",
    "GossipMode",
    "Infection",
    "MessageKey",
    "MessageStore",
    "SizeEstimate",
    "TreeGossip",
    "copies_for",
    "fanout_for",
    "gossip_body",
    "make_dissemination",
    "parent_group",
    "reach_probability",
]


def make_dissemination(
    host: Host,
    config: GossipConfig,
    peers: PeerSampling,
    size_estimate: SizeEstimate = lambda: None,
) -> Gossip:
    """The dissemination protocol ``config.mode`` names."""
    if config.mode == "tree":
        return TreeGossip(host, config, peers, size_estimate)
    if config.mode in ("unicast", "broker", "hierarchy", "hybrid"):
        return BaselineGossip(host, config, peers, size_estimate)
    return Gossip(host, config, peers, size_estimate)
