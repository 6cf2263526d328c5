"""Fanout from a requested delivery probability.

Theory of operation
-------------------
Kermarrec, Massoulié and Ganesh (IEEE TPDS 14(2), 2003, "Probabilistic
reliable dissemination in large-scale systems") show that when each of ``n``
nodes relays a message to a random number of uniformly chosen peers with mean
``ln n + c``, the probability that *every* node receives it tends to
``exp(-exp(-c))`` as ``n`` grows. The limit is set by the nodes nobody picked:
their number is close to Poisson with mean ``n * exp(-(ln n + c)) = exp(-c)``,
and a Poisson variable is 0 with probability ``exp(-exp(-c))``.

Inverting it: to reach everyone with probability ``p`` a node asks for a mean
fanout ``ln n - ln(-ln p)``. Lost copies and crashed targets thin the copies
out independently, so with an expected loss ``q`` and a crashed share ``x``
the nodes ask for ``(ln n + c) / ((1 - q) (1 - x))`` (the survivors then see
the mean the theorem needs).

The mean is rarely an integer. A relay turns it into a whole number of copies
by *randomized rounding*: ``floor(mean)`` copies plus one more with probability
``mean - floor(mean)``. That keeps the mean exact, which the theorem is about,
and keeps every node's load within one copy of it.
"""

from __future__ import annotations

import math

from gridmesh.errors import LocalProtocolError
from gridmesh.protocols._host import RandomSource

__all__ = ["RELIABILITY_MAX", "copies_for", "fanout_for", "reach_probability"]

#: Closer to 1 the fanout grows without bound; 1 - 1e-12 asks for ln n + 27.6.
RELIABILITY_MAX = 1.0 - 1e-12


def fanout_for(reliability: float, nodes: int, *, loss: float = 0.0, crashed: float = 0.0) -> float:
    """The mean fanout that reaches all ``nodes`` with probability ``reliability``."""
    if not 0.0 < reliability <= RELIABILITY_MAX:
        raise LocalProtocolError(
            f"reliability must be in (0, {RELIABILITY_MAX}], got {reliability!r}"
        )
    if nodes < 1:
        raise LocalProtocolError(f"the network must have at least 1 node, got {nodes}")
    if not 0.0 <= loss < 1.0 or not 0.0 <= crashed < 1.0:
        raise LocalProtocolError(
            f"loss and crashed must be in [0, 1), got loss={loss!r} crashed={crashed!r}"
        )
    c = -math.log(-math.log(reliability))
    mean = max(1.0, math.log(nodes) + c)
    return mean / ((1.0 - loss) * (1.0 - crashed))


def reach_probability(fanout: float, nodes: int) -> float:
    """The theorem's probability that mean ``fanout`` reaches all ``nodes``."""
    if nodes < 1 or fanout <= 0.0:
        raise LocalProtocolError("need nodes >= 1 and fanout > 0")
    return math.exp(-math.exp(-(fanout - math.log(nodes))))


def copies_for(fanout: float, rng: RandomSource) -> int:
    """A whole number of copies with mean ``fanout`` (randomized rounding)."""
    whole = math.floor(fanout)
    if fanout > whole and rng.random() < fanout - whole:
        whole += 1
    return whole
