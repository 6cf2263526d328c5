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
from gridmesh.sim._overlay import OverlaySnapshot, UniformityTest, snapshot, uniformity_test

__all__ = [
    "ConstantLatency",
    "LatencyModel",
    "LinkClass",
    "LogNormalLatency",
    "NetworkConfig",
    "NodeFactory",
    "OverlaySnapshot",
    "Simulator",
    "UniformLatency",
    "UniformityTest",
    "snapshot",
    "uniformity_test",
]
