"""Dissemination: getting one message to every node."""

from gridmesh.protocols.dissemination._push import FANOUT_MAX, PushGossip, PushGossipConfig
from gridmesh.protocols.dissemination._reliability import (
    RELIABILITY_MAX,
    copies_for,
    fanout_for,
    reach_probability,
)

__all__ = [
    "FANOUT_MAX",
    "RELIABILITY_MAX",
    "PushGossip",
    "PushGossipConfig",
    "copies_for",
    "fanout_for",
    "reach_probability",
]
