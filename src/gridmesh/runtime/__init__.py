"""Real I/O: the asyncio UDP and TCP (TLS 1.3) drivers, the control channel, the local cluster."""

from gridmesh.runtime._address import format_address, is_loopback, parse_address
from gridmesh.runtime._cluster import ClusterError, ProcessCluster, free_udp_ports
from gridmesh.runtime._control import ControlClient, NodeUnreachable
from gridmesh.runtime._readings import (
    READINGS_MAX,
    ReadingValue,
    StaticReadings,
    constant_reading,
    load_readings,
)
from gridmesh.runtime._tcp import TcpConfig, TcpNode
from gridmesh.runtime._udp import (
    CONTROL_AGGREGATES_MAX,
    CONTROL_ANSWERS_KEPT_MAX,
    DELIVERIES_KEPT_MAX,
    UdpNode,
)

__all__ = [
    "CONTROL_AGGREGATES_MAX",
    "CONTROL_ANSWERS_KEPT_MAX",
    "DELIVERIES_KEPT_MAX",
    "READINGS_MAX",
    "ClusterError",
    "ControlClient",
    "NodeUnreachable",
    "ProcessCluster",
    "ReadingValue",
    "StaticReadings",
    "TcpConfig",
    "TcpNode",
    "UdpNode",
    "constant_reading",
    "format_address",
    "free_udp_ports",
    "is_loopback",
    "load_readings",
    "parse_address",
]
