"""Per-node load when push gossip replaces the central Event Manager.

Theory of operation
-------------------
With an Event Manager (seed 001, IV.A) one link carries everything: each of
``n`` peers sends its messages up to the EM, which forwards them. Replace the
EM with infect-and-die push gossip of fanout ``f`` (seed 000;
``gridmesh.protocols.dissemination``) and every node that learns a message
forwards it once to ``f`` peers. Over one message, ``n`` nodes send about
``n * f`` copies, so each node sends ``f`` copies and receives about ``f``
(one new, ``f - 1`` duplicates). If every node disseminates ``r`` messages per
second of ``b`` bits, each node's link carries in each direction::

    gossip load = f * n * r * b   bit/s

That is the price of having no central node: the load is spread evenly but
every node sees every message ``f`` times. It suits broadcast flows (tariffs,
DR commands); for per-meter readings it shows why they should be aggregated
on the way up rather than flooded.

Default fanout: ``ceil(ln n + 1)``, capped at ``FANOUT_MAX``. Push gossip
reaches all but a fraction of about ``exp(-f)`` of the nodes (the solution of
``pi = 1 - exp(-f pi)``), so ``f = ln n + 1`` leaves ``n exp(-f) = 1/e`` nodes,
fewer than one, unreached per message in expectation; Kermarrec, Massoulié and
Ganesh (2003) put the chance that nobody is missed at ``exp(-exp(-1))``,
about 0.69, for ``c = 1``. Raise ``--fanout`` for more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from gridmesh.protocols.dissemination import FANOUT_MAX

__all__ = ["GossipLoad", "default_fanout", "gossip_load"]


def default_fanout(nodes: int) -> int:
    """``ceil(ln n + 1)``, at least 1 and at most ``FANOUT_MAX``."""
    assert nodes >= 1
    return max(1, min(FANOUT_MAX, math.ceil(math.log(nodes) + 1)))


@dataclass(frozen=True, slots=True)
class GossipLoad:
    """What one node's link carries, each way, when ``nodes`` peers gossip every message."""

    nodes: int
    fanout: int
    node_bits_per_second: Fraction


def gossip_load(
    nodes: int, messages_per_second: Fraction, message_bits: int, *, fanout: int | None = None
) -> GossipLoad:
    """The per-node gossip load for ``nodes`` peers each sending at ``messages_per_second``."""
    assert nodes >= 0
    f = default_fanout(max(nodes, 1)) if fanout is None else fanout
    return GossipLoad(nodes, f, f * nodes * messages_per_second * message_bits)
