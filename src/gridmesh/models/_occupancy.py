"""How many distinct bins ``balls`` uniform throws hit (the occupancy problem).

Theory of operation
-------------------
Throw balls one by one into ``bins`` equally likely bins. Once ``d`` bins are
occupied, each throw lands in an empty one with probability ``(bins - d) /
bins``, independently of the past, so the throws it takes to occupy the next
bin are geometric with that success probability. The number of occupied bins
after ``balls`` throws is therefore the number of leading partial sums of
independent geometric waits ``G_0, G_1, ...`` that stay within ``balls``.

That is exact, and it costs one draw per *occupied* bin, not per ball: the
model can throw 10^15 copies at a few remaining nodes, or 10^8 at a fresh
country, and pay only for the nodes they reach. Waits are drawn in NumPy
chunks sized from the expected answer, so memory stays bounded
(``CHUNK_MAX`` draws at a time) whatever the sizes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CHUNK_MAX", "occupied_bins"]

#: At most this many geometric waits are drawn at once (8 bytes each, a few arrays):
#: 2^16 keeps them in cache, faster than larger chunks and 2 MiB in all.
CHUNK_MAX = 1 << 16
_CHUNK_MIN = 1 << 10


def occupied_bins(rng: np.random.Generator, balls: int, bins: int) -> int:
    """The number of distinct bins hit when ``balls`` balls fall uniformly into ``bins``."""
    if balls <= 0 or bins <= 0:
        return 0
    if bins == 1 or balls == 1:
        return 1
    # Expected occupancy, to size the chunks: bins * (1 - (1 - 1/bins)^balls).
    expected = bins * -math.expm1(balls * math.log1p(-1.0 / bins))
    occupied = 0
    thrown = 0
    while occupied < bins:
        wanted = max(_CHUNK_MIN, int(expected * 1.01) + 64 - occupied)
        size = min(bins - occupied, wanted, CHUNK_MAX)
        empty = bins - np.arange(occupied, occupied + size, dtype=np.float64)
        waits = rng.geometric(empty / bins)
        ends = np.cumsum(waits)
        ends += thrown
        within = int(np.searchsorted(ends, balls, side="right"))
        if within < size:
            return occupied + within
        occupied += size
        thrown = int(ends[-1])
    return bins
