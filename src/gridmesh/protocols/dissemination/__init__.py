"""Dissemination: getting one message to every node."""

from gridmesh.protocols.dissemination._push import FANOUT_MAX, PushGossip, PushGossipConfig

__all__ = ["FANOUT_MAX", "PushGossip", "PushGossipConfig"]
