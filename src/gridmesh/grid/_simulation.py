"""A grid topology as the simulator runs it: role blocks, node profiles, a network.

Theory of operation
-------------------
``Simulator`` gives node ids from 1 in the order nodes are added, gives each
node a ``NodeConfig`` (its ``service`` and ``groups``: what it advertises and
which group messages it delivers, seed 002), and has two link classes: a
message between two nodes of one *domain* (``domain_size`` consecutive ids)
crosses ``lan``, any other crosses ``wan``. ``simulation_layout`` maps a
``GridTopology`` onto exactly that:

* **ids**: the topology's ids, unchanged (each role one block, ``roles``);
* **profiles**: ``service`` = the grid role's name, ``groups`` = the base
  config's groups plus ``GridTopology.groups_of``; configs are shared
  between nodes of one profile, so their number is that of distinct
  profiles (about DTCs x tariffs x kinds), not of nodes;
* **network**: ``lan`` = the meters' uplink technology (the DTC's LAN,
  seed 000), ``wan`` = the DTCs' uplink technology, with the latencies of
  ``_links``; ``domain_size`` = the mean number of meters per DTC, so a
  domain is about one DTC's meters (they are consecutive ids).

What this leaves out, because the simulator has no per-node link classes
yet: a DTC and its meters are in different id blocks, so the simulator
sends between them over ``wan``; so are homes' EMDs and devices, and the
fibre of substations and the DSO is not modelled apart from the DTCs' WAN.
``GridTopology.link_of`` has every node's technology for a simulator that
takes per-node links (docs/GRID.md, "Future work").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from gridmesh.errors import ConfigError
from gridmesh.grid._roles import GridRole, role_profile
from gridmesh.grid._topology import ROLE_ORDER, GridTopology
from gridmesh.node import Node, NodeConfig
from gridmesh.protocols import Peer
from gridmesh.protocols.membership import PeerDirectory, check_profile
from gridmesh.security import Role
from gridmesh.sim import NetworkConfig, Simulator

__all__ = ["RoleBlock", "SimulationLayout", "simulation_layout", "simulation_network"]


@dataclass(frozen=True, slots=True)
class RoleBlock:
    """One grid role's nodes: a contiguous block of ids, and the PKI role they certify as."""

    role: GridRole
    pki_role: Role
    ids: range


def _loss(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError("simulation_layout()", field, "a probability in 0..1", got=value)
    return float(value)


def simulation_network(
    topology: GridTopology, *, lan_loss: float = 0.0, wan_loss: float = 0.0
) -> NetworkConfig:
    """The simulator's two link classes and domain size for ``topology`` (see the module doc)."""
    meters, dtcs = len(topology.ids(GridRole.METER)), len(topology.ids(GridRole.DTC))
    domain_size = max(1, math.floor(meters / dtcs + 0.5))
    return NetworkConfig(
        lan=topology.links.profile_of(GridRole.METER).link_class(_loss(lan_loss, "lan_loss")),
        wan=topology.links.profile_of(GridRole.DTC).link_class(_loss(wan_loss, "wan_loss")),
        domain_size=domain_size,
    )


@dataclass(frozen=True, slots=True, eq=False)
class SimulationLayout:
    """What a ``Simulator`` needs to run ``topology``: blocks, configs, a network."""

    topology: GridTopology
    network: NetworkConfig
    roles: tuple[RoleBlock, ...]
    base: NodeConfig
    _configs: dict[tuple[int, int, int, int, int], NodeConfig] = field(
        default_factory=dict, repr=False
    )

    def node_config(self, node_id: int) -> NodeConfig:
        """``node_id``'s config: ``base`` with its role as service and its groups added."""
        topology = self.topology
        index = topology._index(node_id)
        key = (
            int(topology.role_codes[index]),
            int(topology.region_codes[index]),
            int(topology.dtc_ids[index]) or int(topology.substation_ids[index]),
            int(topology.tariff_codes[index]),
            int(topology.kind_codes[index]),
        )
        config = self._configs.get(key)
        if config is None:
            service = ROLE_ORDER[key[0]].value
            groups = tuple(dict.fromkeys((*self.base.groups, *topology.groups_of(node_id))))
            try:
                check_profile(service, groups)
            except ValueError as error:
                raise ConfigError(
                    "simulation_layout()",
                    "base.groups",
                    f"groups that fit with the grid's: {error}",
                ) from None
            config = self.base.model_copy(update={"service": service, "groups": groups})
            self._configs[key] = config
        return config

    @property
    def profiles(self) -> int:
        """How many distinct node configs have been made so far."""
        return len(self._configs)

    def pki_roles(self) -> list[Role]:
        """Each node's PKI role, in id order (``[i]`` is node ``i + 1``'s)."""
        return [block.pki_role for block in self.roles for _ in block.ids]

    def peer_directory(self, sim: Simulator) -> PeerDirectory:
        """Every node's descriptor: the shared directory of a static full membership."""
        return PeerDirectory(
            sim.peer(node_id, str(node_id), config.service, config.groups)
            for node_id in range(1, self.topology.node_count + 1)
            for config in (self.node_config(node_id),)
        )

    def node_factory(
        self,
        sim: Simulator,
        *,
        directory: PeerDirectory | None = None,
        seeds: Callable[[int], tuple[Peer, ...]] | None = None,
    ) -> Callable[[int], Node]:
        """Builds node ``i`` on ``sim`` with its config; give a directory or seeds to join by."""

        def make(node_id: int) -> Node:
            return Node(
                node_id,
                transport=sim,
                rng=sim.node_rng,
                config=self.node_config(node_id),
                address=sim.address_of(node_id),
                directory=directory,
                seeds=() if seeds is None else seeds(node_id),
            )

        return make


def simulation_layout(
    topology: GridTopology,
    *,
    base: NodeConfig | None = None,
    lan_loss: float = 0.0,
    wan_loss: float = 0.0,
) -> SimulationLayout:
    """How ``Simulator`` runs ``topology``; ``base`` tunes every node (default ``NodeConfig()``)."""
    roles = tuple(
        RoleBlock(role, role_profile(role).pki_role, ids)
        for role, ids in topology.blocks.items()
        if len(ids)
    )
    return SimulationLayout(
        topology=topology,
        network=simulation_network(topology, lan_loss=lan_loss, wan_loss=wan_loss),
        roles=roles,
        base=NodeConfig() if base is None else base,
    )
