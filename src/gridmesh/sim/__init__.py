"""The deterministic simulator: virtual time, a lossy network, faults, real nodes."""

from gridmesh.sim._engine import NodeFactory, Simulator
from gridmesh.sim._network import (
    ConstantLatency,
    LatencyModel,
    LinkClass,
    LogNormalLatency,
    NetworkConfig,
    UniformLatency,
)

__all__ = [
    "ConstantLatency",
    "LatencyModel",
    "LinkClass",
    "LogNormalLatency",
    "NetworkConfig",
    "NodeFactory",
    "Simulator",
    "UniformLatency",
]
