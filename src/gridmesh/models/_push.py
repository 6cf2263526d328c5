"""A counting model of push gossip, fast enough for a whole country.

Theory of operation
-------------------
The simulator runs the real ``PushGossip`` objects; this model predicts what
they do, hop by hop, at 10^7-10^9 nodes. It follows the protocol's rules
(``gridmesh.protocols.dissemination``):

* the origin sends its copies with ``hops_left = hops``; a live node that
  receives a copy relays while ``hops_left - 1 > 0``, so a message travels at
  most ``hops`` links. Round ``t`` is every copy on its ``t``-th link;
* a relay sends ``floor(f)`` copies, plus one with probability
  ``f - floor(f)`` (``copies_for``'s randomized rounding), to distinct nodes
  drawn uniformly from all nodes but itself and the neighbour the copy came
  from (the origin excludes only itself); a relay with fewer eligible nodes
  than copies sends one to each;
* each copy is lost independently with probability ``loss``; a share
  ``crashed`` of the nodes (never the origin) is down: down nodes neither
  receive nor relay, and senders still pick them, not knowing;
* **infect-and-die** (``mode="die"``): a node relays once, on its first copy;
  **infect-forever** (``mode="forever"``): it relays *every* copy it
  receives, duplicates included, while hops remain. Either way a node is
  reached on its first copy, and every later copy to a live node is a
  duplicate (copies back to the origin are duplicates too).

Why counts are enough. With full membership every target draw is uniform, so
nodes in the same situation are interchangeable: at the start of a round the
only things that matter are how many relays there are, how many live nodes
still lack the message (``unreached``) and how many are down. A relay's
eligible targets (``nodes - 2``; ``nodes - 1`` for the origin) never include
itself or its sender, both of which are live and reached, so a copy that
survives the loss lands on an unreached node with probability ``unreached /
eligible``, and otherwise on a down node or a reached one in proportion. The
copies of one round are therefore split by binomial draws, and the nodes they
newly reach are the occupied bins when the copies aimed at unreached nodes
fall uniformly among them (``occupied_bins``, exact). A round costs a few
draws plus one per node it newly reaches, whatever the number of copies:
10^8 nodes take seconds, infect-forever's ``f^t`` copies cost nothing extra,
and memory stays in the tens of MiB.

The one approximation: the model lets a relay's copies pick targets
independently (with replacement) where the protocol draws distinct ones. A
relay with ``k`` copies picks one target twice with probability at most
``k(k-1) / (2 (nodes - 2))``; a twice-picked copy is wasted, so the model is
slightly pessimistic. Summed over a broadcast it raises the expected number
of missed nodes by a factor of about ``exp(k(k-1) / (2 (nodes - 2)))``:
+1.8% at 2,000 nodes with 9 copies, +1% at 10^4 with 15, +0.001% at the UK's
32 million with 28 (``collision_bias``). ``tests/test_models_crossval.py``
compares the model with the simulator and with an exact per-copy reference.

Copies are counted in 64-bit integers; a broadcast that would send more than
``COPIES_MAX`` copies (infect-forever with many hops) raises
``CopiesLimitExceeded`` before any count can overflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gridmesh.errors import LocalProtocolError
from gridmesh.models._occupancy import occupied_bins
from gridmesh.protocols.dissemination import FANOUT_MAX, reach_probability
from gridmesh.wire import HOPS_MAX

__all__ = [
    "COPIES_MAX",
    "MODES",
    "NODES_MAX",
    "BroadcastRun",
    "CopiesLimitExceeded",
    "Mode",
    "PushModel",
    "crashed_count",
]

Mode = Literal["die", "forever"]
MODES: tuple[Mode, ...] = ("die", "forever")
#: Largest network the model accepts (one draw per node reached: about 20 s per 10^9).
NODES_MAX = 1_000_000_000
#: Most copies one modelled broadcast may send; keeps every count exact in int64.
COPIES_MAX = 10**18


class CopiesLimitExceeded(LocalProtocolError):
    """A modelled broadcast would send more than ``COPIES_MAX`` copies."""

    def __init__(self, round_index: int, copies: int) -> None:
        self.round_index = round_index
        self.copies = copies
        super().__init__(
            f"the broadcast would send more than {COPIES_MAX:.0e} copies by round "
            f"{round_index} ({copies:.3e}); infect-forever multiplies copies by about "
            "fanout x (1 - loss) every round: lower the hops or the fanout"
        )


def crashed_count(nodes: int, crashed: float) -> int:
    """How many nodes a crashed share takes down: the share of the non-origin nodes, rounded."""
    return int(crashed * (nodes - 1) + 0.5)


@dataclass(frozen=True, slots=True)
class BroadcastRun:
    """What one modelled broadcast did.

    ``curve[t]`` is how many live nodes had the message after round ``t``
    (``curve[0] == 1``: the origin); ``reached`` counts the origin too.
    """

    live: int
    reached: int
    rounds: int
    messages: int
    duplicates: int
    curve: tuple[int, ...]

    @property
    def all_reached(self) -> bool:
        return self.reached == self.live

    @property
    def delivery_ratio(self) -> float:
        """The share of the other live nodes that got the message (1.0 if there are none)."""
        return 1.0 if self.live <= 1 else (self.reached - 1) / (self.live - 1)


@dataclass(frozen=True, slots=True)
class PushModel:
    """Push gossip over ``nodes`` nodes with full membership; see the module docstring."""

    nodes: int
    fanout: float
    hops: int
    loss: float = 0.0
    crashed: float = 0.0
    mode: Mode = "die"

    def __post_init__(self) -> None:
        if not 2 <= self.nodes <= NODES_MAX:
            raise LocalProtocolError(f"nodes must be in 2..{NODES_MAX:,}, got {self.nodes}")
        if not 0.0 < self.fanout <= FANOUT_MAX:
            raise LocalProtocolError(f"fanout must be in (0, {FANOUT_MAX}], got {self.fanout}")
        if not 1 <= self.hops <= HOPS_MAX:
            raise LocalProtocolError(f"hops must be in 1..{HOPS_MAX}, got {self.hops}")
        if not 0.0 <= self.loss < 1.0 or not 0.0 <= self.crashed < 1.0:
            raise LocalProtocolError(
                f"loss and crashed must be in [0, 1), got {self.loss} and {self.crashed}"
            )
        if self.mode not in MODES:
            raise LocalProtocolError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def crashed_nodes(self) -> int:
        return crashed_count(self.nodes, self.crashed)

    @property
    def live_nodes(self) -> int:
        return self.nodes - self.crashed_nodes

    @property
    def collision_bias(self) -> float:
        """``k(k-1) / (2 (nodes - 2))`` for ``k = ceil(fanout)``: see the module docstring."""
        copies = math.ceil(self.fanout)
        return 0.0 if self.nodes <= 2 else copies * (copies - 1) / (2 * (self.nodes - 2))

    def expected_all_reached(self) -> float:
        """The Kermarrec-Massoulie-Ganesh limit on the live nodes (die mode, enough hops).

        The live nodes see a mean fanout ``f (1 - loss) (1 - crashed)`` among
        themselves, and all of them are reached with probability about
        ``exp(-live * exp(-that))``. It ignores hop limits and finite-size
        terms, and does not describe infect-forever.
        """
        live = self.live_nodes
        if live <= 1:
            return 1.0
        return reach_probability(self.fanout * (1.0 - self.loss) * (1.0 - self.crashed), live)

    def run(self, rng: np.random.Generator) -> BroadcastRun:
        """One broadcast from a live origin, drawn with ``rng``."""
        nodes, hops, loss = self.nodes, self.hops, self.loss
        whole = math.floor(self.fanout)
        extra = self.fanout - whole
        forever = self.mode == "forever"
        down = self.crashed_nodes
        live = nodes - down
        unreached = live - 1
        reached = 1
        relays = 1
        eligible = nodes - 1  # the origin excludes only itself
        messages = duplicates = last_new = 0
        curve = [1]
        for round_index in range(1, hops + 1):
            if whole >= eligible:
                sent = relays * eligible
            else:
                sent = relays * whole
                if extra:
                    sent += int(rng.binomial(relays, extra))
            if not sent:
                break
            if messages + sent > COPIES_MAX:
                raise CopiesLimitExceeded(round_index, messages + sent)
            messages += sent
            arrived = int(rng.binomial(sent, 1.0 - loss)) if loss else sent
            # Survivors land on unreached, down or other reached nodes, in proportion.
            fresh = int(rng.binomial(arrived, unreached / eligible)) if unreached else 0
            others = eligible - unreached
            lost_to_down = int(rng.binomial(arrived - fresh, down / others)) if down else 0
            new = occupied_bins(rng, fresh, unreached)
            delivered = arrived - lost_to_down
            duplicates += delivered - new
            reached += new
            unreached -= new
            if new:
                last_new = round_index
            curve.append(reached)
            relays = delivered if forever else new
            eligible = nodes - 2
            if not relays or not eligible:
                break
        return BroadcastRun(live, reached, last_new, messages, duplicates, tuple(curve))
