"""Real I/O: the asyncio UDP driver, the control channel and the local cluster."""

from gridmesh.runtime._address import format_address, is_loopback, parse_address
from gridmesh.runtime._cluster import ClusterError, ProcessCluster, free_udp_ports
from gridmesh.runtime._control import ControlClient, NodeUnreachable
from gridmesh.runtime._udp import DELIVERIES_KEPT_MAX, UdpNode

__all__ = [
    "DELIVERIES_KEPT_MAX",
    "ClusterError",
    "ControlClient",
    "NodeUnreachable",
    "ProcessCluster",
    "UdpNode",
    "format_address",
    "free_udp_ports",
    "is_loopback",
    "parse_address",
]
