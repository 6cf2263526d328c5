"""The smart-grid domain: roles, topologies, services and rules (docs/GRID.md).

* ``_roles``: the actors of seeds 000, 001 and 003 (DSO, aggregator, industrial
  customer, substation, DTC, smart meter, EMD, devices) with their PKI roles,
  default topics and, for devices, their electrical character;
* ``_topology``, ``_uk``, ``_links``: seeded hierarchies DSO -> substations ->
  DTCs -> meters -> EMDs -> devices, seed 001's UK preset (Table III) and
  Table I link technologies;
* ``_simulation``: a topology as the simulator runs it.
"""

from __future__ import annotations

from gridmesh.grid._links import (
    EVENT_MESSAGE_BITS,
    FAMILY_BASE_LATENCY_S,
    LinkProfile,
    link_profile,
)
from gridmesh.grid._roles import (
    DEVICE_PROFILES,
    ROLE_PROFILES,
    DeviceKind,
    DeviceProfile,
    DeviceUnit,
    GridRole,
    RoleProfile,
    device_profile,
    role_profile,
)
from gridmesh.grid._simulation import (
    RoleBlock,
    SimulationLayout,
    simulation_layout,
    simulation_network,
)
from gridmesh.grid._topology import (
    DEFAULT_DEVICE_SHARES,
    DEFAULT_TARIFFS,
    NODES_MAX,
    ROLE_ORDER,
    GridTopology,
    HomeSpec,
    LinkPlan,
    RegionSpec,
    build_topology,
    grid_topology,
)
from gridmesh.grid._uk import CUSTOMERS_PER_DTC, DTCS_PER_SUBSTATION, uk_regions, uk_topology

__all__ = [
    "CUSTOMERS_PER_DTC",
    "DEFAULT_DEVICE_SHARES",
    "DEFAULT_TARIFFS",
    "DEVICE_PROFILES",
    "DTCS_PER_SUBSTATION",
    "EVENT_MESSAGE_BITS",
    "FAMILY_BASE_LATENCY_S",
    "NODES_MAX",
    "ROLE_ORDER",
    "ROLE_PROFILES",
    "DeviceKind",
    "DeviceProfile",
    "DeviceUnit",
    "GridRole",
    "GridTopology",
    "HomeSpec",
    "LinkPlan",
    "LinkProfile",
    "RegionSpec",
    "RoleBlock",
    "RoleProfile",
    "SimulationLayout",
    "build_topology",
    "device_profile",
    "grid_topology",
    "link_profile",
    "role_profile",
    "simulation_layout",
    "simulation_network",
    "uk_regions",
    "uk_topology",
]
