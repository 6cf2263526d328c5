"""Publish/subscribe: the Event Manager (seed 001, sections III.B.3 and IV.A).

* ``Event``: topic, value, unit, time, source, sequence number and event id.
"""

from __future__ import annotations

from gridmesh.protocols.pubsub._event import Event, EventKey

__all__ = ["Event", "EventKey"]
