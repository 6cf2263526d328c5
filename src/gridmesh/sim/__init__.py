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
from gridmesh.sim._routers import LinkStress, RouterTopology, RouterTopologyConfig, TrafficTrace

__all__ = [
    "ConstantLatency",
    "LatencyModel",
    "LinkClass",
    "LinkStress",
    "LogNormalLatency",
    "NetworkConfig",
    "NodeFactory",
    "OverlaySnapshot",
    "RouterTopology",
    "RouterTopologyConfig",
    "Simulator",
    "TrafficTrace",
    "UniformLatency",
    "UniformityTest",
    "snapshot",
    "uniformity_test",
]
