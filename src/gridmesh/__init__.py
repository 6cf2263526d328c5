"""gridmesh: peer-to-peer communication middleware for smart grids.

The public API: ``Node`` and ``NodeConfig`` (the sans-I/O node), the error
hierarchy, and the subpackages ``wire``, ``protocols``, ``sim`` and ``runtime``.
"""

from gridmesh.errors import (
    ConfigError,
    GridmeshError,
    LocalProtocolError,
    RemoteProtocolError,
)
from gridmesh.node import Node, NodeConfig

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GridmeshError",
    "LocalProtocolError",
    "Node",
    "NodeConfig",
    "RemoteProtocolError",
    "__version__",
]
