"""Sans-I/O protocol state machines: the heart of gridmesh.

Nothing here performs I/O, reads a clock or draws global randomness; see
``_host`` for the contract every protocol follows.
"""

from gridmesh.protocols._host import (
    Delivery,
    Host,
    Membership,
    Peer,
    PeerSampling,
    RandomSource,
    Scope,
    new_envelope,
)
from gridmesh.protocols._seen import SeenCache

__all__ = [
    "Delivery",
    "Host",
    "Membership",
    "Peer",
    "PeerSampling",
    "RandomSource",
    "Scope",
    "SeenCache",
    "new_envelope",
]
