"""Vectorized models: what the protocols do at 10^7+ nodes, in seconds.

``PushModel`` predicts push gossip (infect-and-die or infect-forever) with
full membership, loss and crashed nodes, hop by hop; it counts copies rather
than storing nodes, so a 32-million-node broadcast takes about a second and
a few tens of MiB. See docs/MODELS.md for what it assumes and how it was
checked against the simulator and the Kermarrec-Massoulie-Ganesh theorem.
"""

from gridmesh.models._occupancy import occupied_bins
from gridmesh.models._push import (
    COPIES_MAX,
    MODES,
    NODES_MAX,
    BroadcastRun,
    CopiesLimitExceeded,
    Mode,
    PushModel,
    crashed_count,
)
from gridmesh.models._summary import BroadcastSummary, run_broadcasts, run_generator, summarize

__all__ = [
    "COPIES_MAX",
    "MODES",
    "NODES_MAX",
    "BroadcastRun",
    "BroadcastSummary",
    "CopiesLimitExceeded",
    "Mode",
    "PushModel",
    "crashed_count",
    "occupied_bins",
    "run_broadcasts",
    "run_generator",
    "summarize",
]
