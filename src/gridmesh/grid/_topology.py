"""Grid topologies: DSO -> substations -> DTCs -> meters -> EMDs -> devices, seeded.

Theory of operation
-------------------
A ``GridTopology`` is the deployment a simulation or a plan runs on: every
node's ``GridRole``, parent, region, substation, DTC, tariff and uplink
technology, for up to ``NODES_MAX`` nodes. ``build_topology`` makes one from
a ``RegionSpec`` per region (how many customers, substations, DTCs,
aggregators and industrial customers), a ``HomeSpec`` (what a home holds),
a tariff mix and a ``LinkPlan`` (which seed 001 Table I technology each
level's uplink uses). ``grid_topology`` is the same with equal fan-outs
everywhere; ``uk_topology`` (``_uk``) is seed 001's Table III.

**Node ids.** Ids run from 1, level by level (breadth first):

1. DSOs, one per region, in region order (the roots: no parent);
2. aggregators, region by region (parent: their region's DSO);
3. industrial customers, region by region (parent: the DSO, seed 001 V.A);
4. substations, region by region (parent: the DSO);
5. DTCs, substation by substation (parent: their substation);
6. meters, one per customer home, DTC by DTC (parent: their DTC);
7. EMDs, one per home that has one, in meter order (parent: the meter);
8. devices, home by home, in ``DeviceKind`` order within a home (parent:
   the home's EMD, or its meter where it has none: seed 000's SM -> IED).

So each role is one contiguous block of ids (as a scenario's roles are),
the children a parent has in one level are consecutive, and a DTC's meters
are consecutive.

**Splits.** Within a region, child ``j`` of ``c`` goes to parent
``j * p // c`` of ``p``: contiguous, as even as integers allow (sizes differ
by one at most), the rule of the scenario runner's hierarchy mode. Counts
are fixed by the specs; the seed decides only what each home draws (its
tariff, whether it has an EMD, which devices), from a NumPy generator in a
fixed order and fixed-size chunks, so ``(specs, seed)`` fixes every node.

**Groups** (seed 002: joined at deployment, nothing to configure at the
sender): ``region:<name>`` for every node; ``substation:<id>`` and
``dtc:<id>`` (ids of the substation and DTC) for a substation and the nodes
under it; ``tariff:<name>`` for an industrial customer and every node of a
home; ``device:<kind>`` for a device.

**Storage.** Columns of NumPy arrays, read-only once built, about 29 bytes
a node (see ``nbytes``); groups and children are computed on demand, so a
topology of 10^6 nodes holds no per-node Python object.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from gridmesh.errors import ConfigError, LocalProtocolError
from gridmesh.grid._links import LinkProfile, link_profile
from gridmesh.grid._roles import DeviceKind, GridRole
from gridmesh.protocols.membership import GROUP_BYTES_MAX

__all__ = [
    "CHUNK_HOMES",
    "DEFAULT_DEVICE_SHARES",
    "DEFAULT_TARIFFS",
    "NODES_MAX",
    "NO_CODE",
    "REGIONS_MAX",
    "ROLE_ORDER",
    "TARIFFS_MAX",
    "GridTopology",
    "HomeSpec",
    "LinkPlan",
    "RegionSpec",
    "build_topology",
    "grid_topology",
]

#: Most nodes in one topology (ids fit an unsigned 32-bit column).
NODES_MAX = 100_000_000
#: Most regions in one topology.
REGIONS_MAX = 1000
#: Most tariff models in one mix.
TARIFFS_MAX = 16
#: Homes drawn per chunk: bounds the draws' temporary memory.
CHUNK_HOMES = 1 << 16
#: A role's code is its index here (``GridTopology.role_codes``).
ROLE_ORDER: tuple[GridRole, ...] = tuple(GridRole)
#: Kind or tariff code of a node that has none.
NO_CODE = 255
_KINDS: tuple[DeviceKind, ...] = tuple(DeviceKind)
_TOPOLOGY_STREAM = 0x67726964  # "grid": keeps these draws apart from other uses of a seed
_TARIFF_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SOURCE = "build_topology()"

#: Stated assumption (no seed gives a mix): most homes on a flat tariff,
#: some on time-of-use, a tenth on real-time pricing.
DEFAULT_TARIFFS: tuple[tuple[str, float], ...] = (("flat", 0.6), ("TOU", 0.3), ("RTP", 0.1))
#: Chance a home has each device: stated, illustrative assumptions, not survey
#: data. Every EMD has a power sensor (ReDy: a governance unit has detection units).
DEFAULT_DEVICE_SHARES: Mapping[DeviceKind, float] = MappingProxyType(
    {
        DeviceKind.POWER_SENSOR: 1.0,
        DeviceKind.TEMPERATURE_SENSOR: 0.5,
        DeviceKind.HVAC: 0.2,
        DeviceKind.WATER_HEATER: 0.3,
        DeviceKind.DISHWASHER: 0.5,
        DeviceKind.WASHING_MACHINE: 0.9,
        DeviceKind.EV_CHARGER: 0.1,
        DeviceKind.PV: 0.1,
        DeviceKind.BATTERY: 0.05,
    }
)

_U32 = NDArray[np.uint32]
#: Device shares as given: by kind or kind name, as a mapping or as pairs.
_Shares = Mapping[DeviceKind, float] | Mapping[str, float] | Iterable[tuple[str, float]]


def _count(value: object, source: str, field: str, low: int, high: int = NODES_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(source, field, f"an integer in {low}..{high}", got=value)
    return value


def _share(value: object, source: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(source, field, "a share in 0..1", got=value)  # NaN fails too
    return float(value)


def _expect(value: object, kind: type, source: str, field: str) -> None:
    if not isinstance(value, kind):
        raise ConfigError(source, field, f"a {kind.__name__}", got=value)


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """One region: its customers (homes, one meter each) and the nodes that serve them.

    ``dtcs`` are split evenly over ``substations`` and ``customers`` over
    ``dtcs``, so ``1 <= substations <= dtcs <= customers``.
    """

    name: str
    customers: int
    substations: int = 1
    dtcs: int = 1
    aggregators: int = 1
    industrial: int = 0

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name or name != name.strip():
            raise ConfigError(_SOURCE, "regions[].name", "a non-empty name", got=name)
        if len(f"region:{name}".encode()) > GROUP_BYTES_MAX:
            raise ConfigError(
                _SOURCE,
                f"regions[{name!r}].name",
                f"a name of at most {GROUP_BYTES_MAX - len('region:')} bytes "
                f"(group 'region:<name>' fits {GROUP_BYTES_MAX} bytes)",
                got=name,
            )
        where = f"regions[{name!r}]"
        customers = _count(self.customers, _SOURCE, f"{where}.customers", 1)
        substations = _count(self.substations, _SOURCE, f"{where}.substations", 1)
        _count(self.dtcs, _SOURCE, f"{where}.dtcs", substations, customers)
        _count(self.aggregators, _SOURCE, f"{where}.aggregators", 0)
        _count(self.industrial, _SOURCE, f"{where}.industrial", 0)

    @property
    def core_nodes(self) -> int:
        """Its nodes other than homes: DSO, aggregators, industrial, substations, DTCs."""
        return 1 + self.aggregators + self.industrial + self.substations + self.dtcs


@dataclass(frozen=True, slots=True)
class HomeSpec:
    """What a customer home holds besides its meter: an EMD and devices, by chance.

    ``emd_share``: the chance a home has an EMD (ReDy's governance unit);
    ``devices``: the chance it has each ``DeviceKind`` (kinds left out: never).
    A home without an EMD hangs its devices off its meter.
    """

    emd_share: float = 1.0
    devices: _Shares = field(default_factory=lambda: DEFAULT_DEVICE_SHARES)

    def __post_init__(self) -> None:
        source = "HomeSpec()"
        object.__setattr__(self, "emd_share", _share(self.emd_share, source, "homes.emd_share"))
        given: object = self.devices
        pairs = given.items() if isinstance(given, Mapping) else given
        if isinstance(pairs, str) or not isinstance(pairs, Iterable):
            raise ConfigError(source, "homes.devices", "a map of device kind to share", got=pairs)
        shares: dict[DeviceKind, float] = {}
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ConfigError(source, "homes.devices", "(device kind, share) pairs", got=pair)
            name, share = pair
            try:
                kind = DeviceKind(name)
            except ValueError:
                raise ConfigError(
                    source, "homes.devices", f"device kinds, from: {', '.join(_KINDS)}", got=name
                ) from None
            shares[kind] = _share(share, source, f"homes.devices.{kind.value}")
        object.__setattr__(self, "devices", MappingProxyType(shares))

    def __hash__(self) -> int:
        return hash((self.emd_share, tuple(self.share_of(kind) for kind in _KINDS)))

    def share_of(self, kind: DeviceKind) -> float:
        """The chance a home has a device of ``kind``."""
        assert isinstance(self.devices, Mapping)
        return float(self.devices.get(kind, 0.0))

    @property
    def devices_per_home(self) -> float:
        """The expected number of devices in a home."""
        return sum(self.share_of(kind) for kind in _KINDS)


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """Which seed 001 Table I technology each level's uplink (to its parent) uses.

    Defaults are stated assumptions: fibre for the DSO, aggregators, industrial
    customers and substations; a cellular WAN for DTCs (seed 000: DTCs are on a
    WAN); the DTC's WiFi LAN for meters (seed 000: meters share their DTC's
    LAN; Table I's only LAN families are Ethernet and WiFi); WiFi in the home
    for EMDs and devices (a home area network Table I does not list).
    """

    dso: str = "fiber-2448m"
    aggregator: str = "fiber-1g"
    industrial: str = "fiber-100m"
    substation: str = "fiber-1g"
    dtc: str = "3g4g-84m"
    meter: str = "wifi-54m"
    emd: str = "wifi-54m"
    device: str = "wifi-54m"

    def __post_init__(self) -> None:
        for role in ROLE_ORDER:
            link_profile(
                getattr(self, role.value), field=f"links.{role.value}", source="LinkPlan()"
            )

    def technology_of(self, role: GridRole) -> str:
        """The technology of ``role``'s uplink."""
        return str(getattr(self, GridRole(role).value))

    def profile_of(self, role: GridRole) -> LinkProfile:
        """The ``LinkProfile`` (bandwidths, assumed latency) of ``role``'s uplink."""
        return link_profile(self.technology_of(role))


def _check_tariffs(
    tariffs: Sequence[tuple[str, float]], source: str
) -> tuple[tuple[str, float], ...]:
    items = list(tariffs) if isinstance(tariffs, list | tuple) else None
    if not items or len(items) > TARIFFS_MAX:
        raise ConfigError(source, "tariffs", f"1..{TARIFFS_MAX} (name, share) pairs", got=tariffs)
    checked: list[tuple[str, float]] = []
    for index, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConfigError(source, f"tariffs[{index}]", "a (name, share) pair", got=item)
        name, share = item
        if not isinstance(name, str) or not _TARIFF_NAME.match(name):
            raise ConfigError(
                source, f"tariffs[{index}].name", "1..32 of A-Z a-z 0-9 _ -", got=name
            )
        checked.append((name, _share(share, source, f"tariffs[{index}].share")))
    if len({name for name, _ in checked}) != len(checked):
        raise ConfigError(source, "tariffs", "distinct tariff names", got=tariffs)
    total = math.fsum(share for _, share in checked)
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(source, "tariffs", "shares that add up to 1", got=total)
    return tuple(checked)


def _check_seed(seed: object, source: str) -> int:
    if type(seed) is not int or not 0 <= seed <= 2**63 - 1:
        raise ConfigError(source, "seed", "an integer in 0..2**63-1", got=seed)
    return seed


def _exclusive_cumsum(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    out = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


def _split(
    children: NDArray[np.int64], parents: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per region ``r``, ``children[r]`` split contiguously over ``parents[r]``.

    Returns each child's region and its parent's index in the parents' block.
    """
    region = np.repeat(np.arange(len(children), dtype=np.int64), children)
    local = np.arange(len(region), dtype=np.int64) - _exclusive_cumsum(children)[region]
    parent = _exclusive_cumsum(parents)[region] + local * parents[region] // children[region]
    return region, parent


@dataclass(frozen=True, slots=True, eq=False)
class GridTopology:
    """A seeded grid hierarchy, as read-only columns indexed by ``node_id - 1``.

    Arrays: ``role_codes`` (index into ``ROLE_ORDER``), ``kind_codes`` (index
    into ``DeviceKind``, ``NO_CODE`` if not a device), ``region_codes`` (into
    ``regions``), ``parent_ids`` (0 for a root), ``substation_ids`` and
    ``dtc_ids`` (0 above that level), ``tariff_codes`` (into ``tariffs``,
    ``NO_CODE`` if none).
    """

    region_specs: tuple[RegionSpec, ...]
    homes: HomeSpec
    tariffs: tuple[tuple[str, float], ...]
    links: LinkPlan
    seed: int
    blocks: Mapping[GridRole, range]
    role_codes: NDArray[np.uint8]
    kind_codes: NDArray[np.uint8]
    region_codes: NDArray[np.uint16]
    parent_ids: _U32
    substation_ids: _U32
    dtc_ids: _U32
    tariff_codes: NDArray[np.uint8]
    _child_offsets: NDArray[np.int64] = field(repr=False)
    _child_ids: _U32 = field(repr=False)

    def __post_init__(self) -> None:
        for array in self._arrays():
            array.flags.writeable = False

    def _arrays(self) -> tuple[NDArray[np.generic], ...]:
        return (
            self.role_codes,
            self.kind_codes,
            self.region_codes,
            self.parent_ids,
            self.substation_ids,
            self.dtc_ids,
            self.tariff_codes,
            self._child_offsets,
            self._child_ids,
        )

    # -- sizes ---------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self.role_codes)

    def __len__(self) -> int:
        return self.node_count

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.region_specs)

    @property
    def tariff_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.tariffs)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (the topology's memory, less a few hundred bytes)."""
        return sum(array.nbytes for array in self._arrays())

    def ids(self, role: GridRole | str) -> range:
        """The ids of ``role``'s nodes: one contiguous block."""
        try:
            return self.blocks[GridRole(role)]
        except ValueError:
            raise LocalProtocolError(f"no grid role {role!r}") from None

    def counts(self) -> dict[str, int]:
        """Nodes per role, and devices per kind as ``device:<kind>``."""
        result = {role.value: len(ids) for role, ids in self.blocks.items()}
        kinds = np.bincount(self.kind_codes[self.ids(GridRole.DEVICE).start - 1 :],
                            minlength=len(_KINDS))  # fmt: skip
        result |= {f"device:{kind.value}": int(kinds[i]) for i, kind in enumerate(_KINDS)}
        return result

    # -- one node ------------------------------------------------------------

    def _index(self, node_id: int) -> int:
        if type(node_id) is not int or not 1 <= node_id <= self.node_count:
            raise LocalProtocolError(
                f"a node id of this topology is an integer in 1..{self.node_count}; got {node_id!r}"
            )
        return node_id - 1

    def role_of(self, node_id: int) -> GridRole:
        return ROLE_ORDER[int(self.role_codes[self._index(node_id)])]

    def device_kind_of(self, node_id: int) -> DeviceKind | None:
        code = int(self.kind_codes[self._index(node_id)])
        return None if code == NO_CODE else _KINDS[code]

    def parent_of(self, node_id: int) -> int | None:
        """The parent's id; ``None`` for a DSO (a root)."""
        return int(self.parent_ids[self._index(node_id)]) or None

    def children_of(self, node_id: int) -> tuple[int, ...]:
        """The children's ids, ascending."""
        index = self._index(node_id) + 1  # offsets are indexed by parent id; 0: the roots
        start, end = self._child_offsets[index], self._child_offsets[index + 1]
        return tuple(self._child_ids[start:end].tolist())

    def roots(self) -> tuple[int, ...]:
        """The DSOs: the nodes with no parent."""
        return tuple(self._child_ids[self._child_offsets[0] : self._child_offsets[1]].tolist())

    def path_to_root(self, node_id: int) -> tuple[int, ...]:
        """``node_id``, its parent, and so on up to its DSO."""
        path = [node_id]
        parent = self.parent_of(node_id)
        while parent is not None:
            path.append(parent)
            parent = self.parent_of(parent)
        return tuple(path)

    def region_of(self, node_id: int) -> str:
        return self.region_specs[int(self.region_codes[self._index(node_id)])].name

    def substation_of(self, node_id: int) -> int | None:
        """The substation a node is under (itself, for a substation); ``None`` above."""
        return int(self.substation_ids[self._index(node_id)]) or None

    def dtc_of(self, node_id: int) -> int | None:
        """The DTC a node is under (itself, for a DTC); ``None`` above."""
        return int(self.dtc_ids[self._index(node_id)]) or None

    def home_of(self, node_id: int) -> int | None:
        """The meter of the home a meter, EMD or device belongs to; ``None`` otherwise."""
        node = node_id
        while (role := self.role_of(node)) in (GridRole.EMD, GridRole.DEVICE):
            node = int(self.parent_ids[node - 1])
        return node if role is GridRole.METER else None

    def tariff_of(self, node_id: int) -> str | None:
        code = int(self.tariff_codes[self._index(node_id)])
        return None if code == NO_CODE else self.tariffs[code][0]

    def link_of(self, node_id: int) -> LinkProfile:
        """The technology of the node's uplink (a DSO's: to the backbone)."""
        return self.links.profile_of(self.role_of(node_id))

    def groups_of(self, node_id: int) -> tuple[str, ...]:
        """The node's groups: region, substation, DTC, tariff, device kind (those it has)."""
        index = self._index(node_id)
        groups = [f"region:{self.region_specs[self.region_codes[index]].name}"]
        if substation := int(self.substation_ids[index]):
            groups.append(f"substation:{substation}")
        if dtc := int(self.dtc_ids[index]):
            groups.append(f"dtc:{dtc}")
        if (tariff := int(self.tariff_codes[index])) != NO_CODE:
            groups.append(f"tariff:{self.tariffs[tariff][0]}")
        if (kind := int(self.kind_codes[index])) != NO_CODE:
            groups.append(f"device:{_KINDS[kind].value}")
        return tuple(groups)

    # -- groups --------------------------------------------------------------

    def members(self, group: str) -> _U32:
        """The ids of the nodes in ``group``, ascending; ``LocalProtocolError`` if no such group."""
        prefix, _, value = group.partition(":") if isinstance(group, str) else ("", "", "")
        mask: NDArray[np.bool_] | None = None
        if prefix == "region" and value in self.regions:
            mask = self.region_codes == self.regions.index(value)
        elif prefix in ("substation", "dtc") and value.isdigit() and value == str(int(value)):
            block = self.ids(GridRole.SUBSTATION if prefix == "substation" else GridRole.DTC)
            if int(value) in block:
                column = self.substation_ids if prefix == "substation" else self.dtc_ids
                mask = column == int(value)
        elif prefix == "tariff" and value in self.tariff_names:
            mask = self.tariff_codes == self.tariff_names.index(value)
        elif prefix == "device" and value in tuple(DeviceKind):
            mask = self.kind_codes == _KINDS.index(DeviceKind(value))
        if mask is None:
            raise LocalProtocolError(
                f"no group {group!r} in this topology; groups are region:<name>, "
                "substation:<id>, dtc:<id>, tariff:<name> and device:<kind>"
            )
        return (np.flatnonzero(mask) + 1).astype(np.uint32)

    def group_names(self) -> tuple[str, ...]:
        """Every group some node is in: regions, substations, DTCs, tariffs, device kinds."""
        counts = self.counts()
        return (
            *(f"region:{name}" for name in self.regions),
            *(f"substation:{i}" for i in self.ids(GridRole.SUBSTATION)),
            *(f"dtc:{i}" for i in self.ids(GridRole.DTC)),
            *(f"tariff:{name}" for name in self.tariff_names),
            *(f"device:{k.value}" for k in _KINDS if counts[f"device:{k.value}"]),
        )

    def digest(self) -> str:
        """SHA-256 of every column and name: equal digests, equal topologies."""
        sha = hashlib.sha256()
        sha.update(repr((self.regions, self.tariffs, self.links, self.seed)).encode())
        for array in self._arrays():
            sha.update(array.dtype.str.encode())
            sha.update(np.ascontiguousarray(array).tobytes())
        return sha.hexdigest()


def grid_topology(
    *,
    regions: int | Sequence[str] = 1,
    substations_per_region: int = 2,
    dtcs_per_substation: int = 5,
    meters_per_dtc: int = 20,
    aggregators_per_region: int = 1,
    industrial_per_region: int = 0,
    homes: HomeSpec | None = None,
    tariffs: Sequence[tuple[str, float]] = DEFAULT_TARIFFS,
    links: LinkPlan | None = None,
    seed: int = 1,
) -> GridTopology:
    """A topology with the same fan-out everywhere; regions by count (``region-1``...) or names.

    Raises ``ConfigError`` naming the parameter that is out of range.
    """
    source = "grid_topology()"
    if type(regions) is int:
        count = _count(regions, source, "regions", 1, REGIONS_MAX)
        names = [f"region-{i}" for i in range(1, count + 1)]
    elif isinstance(regions, Sequence) and not isinstance(regions, str):
        names = list(regions)
    else:
        raise ConfigError(source, "regions", "a count or a list of region names", got=regions)
    substations = _count(substations_per_region, source, "substations_per_region", 1)
    dtcs = substations * _count(dtcs_per_substation, source, "dtcs_per_substation", 1)
    customers = dtcs * _count(meters_per_dtc, source, "meters_per_dtc", 1)
    aggregators = _count(aggregators_per_region, source, "aggregators_per_region", 0)
    industrial = _count(industrial_per_region, source, "industrial_per_region", 0)
    specs = [RegionSpec(n, customers, substations, dtcs, aggregators, industrial) for n in names]
    return build_topology(
        specs, homes=homes, tariffs=tariffs, links=links, seed=seed, source=source
    )


def build_topology(
    regions: Sequence[RegionSpec],
    *,
    homes: HomeSpec | None = None,
    tariffs: Sequence[tuple[str, float]] = DEFAULT_TARIFFS,
    links: LinkPlan | None = None,
    seed: int = 1,
    nodes_max: int = NODES_MAX,
    source: str = _SOURCE,
) -> GridTopology:
    """The topology of ``regions`` (see the module's theory of operation for the id order).

    Raises ``ConfigError`` naming the field at fault.
    """
    homes = HomeSpec() if homes is None else homes
    links = LinkPlan() if links is None else links
    _expect(homes, HomeSpec, source, "homes")
    _expect(links, LinkPlan, source, "links")
    seed = _check_seed(seed, source)
    nodes_max = _count(nodes_max, source, "nodes_max", 1, NODES_MAX)
    tariff_mix = _check_tariffs(tariffs, source)
    specs = tuple(regions) if isinstance(regions, list | tuple) else ()
    if not 1 <= len(specs) <= REGIONS_MAX or not all(isinstance(s, RegionSpec) for s in specs):
        raise ConfigError(source, "regions", f"1..{REGIONS_MAX} RegionSpec", got=regions)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(source, "regions", "distinct region names", got=names)
    core = sum(spec.core_nodes + spec.customers for spec in specs)
    if core > nodes_max:
        raise ConfigError(source, "regions", f"at most nodes_max={nodes_max} nodes", got=core)
    return _Builder(
        specs=specs,
        homes=homes,
        tariffs=tariff_mix,
        links=links,
        seed=seed,
        nodes_max=nodes_max,
        source=source,
    ).build()


class _Builder:
    """Fills the columns block by block, in id order."""

    def __init__(
        self,
        *,
        specs: tuple[RegionSpec, ...],
        homes: HomeSpec,
        tariffs: tuple[tuple[str, float], ...],
        links: LinkPlan,
        seed: int,
        nodes_max: int,
        source: str,
    ) -> None:
        self.specs, self.homes, self.tariffs, self.links = specs, homes, tariffs, links
        self.seed, self.nodes_max, self.source = seed, nodes_max, source
        self.rng = np.random.default_rng([seed, _TOPOLOGY_STREAM])
        self.cumulative = np.cumsum([share for _, share in tariffs])

    def _per_region(self, name: str) -> NDArray[np.int64]:
        return np.array([getattr(spec, name) for spec in self.specs], dtype=np.int64)

    def _tariffs(self, count: int) -> NDArray[np.uint8]:
        # 'right': a share of 0 is never drawn; min() guards the float sum falling short of 1.
        codes = np.searchsorted(self.cumulative, self.rng.random(count), side="right")
        return np.minimum(codes, len(self.tariffs) - 1).astype(np.uint8)

    def _draw_homes(
        self, count: int
    ) -> tuple[NDArray[np.uint8], NDArray[np.bool_], NDArray[np.bool_]]:
        """Per home: tariff code, has an EMD, and a (homes, kinds) matrix of devices owned."""
        shares = np.array([self.homes.share_of(kind) for kind in _KINDS])
        tariff = np.empty(count, dtype=np.uint8)
        has_emd = np.empty(count, dtype=np.bool_)
        owned = np.empty((count, len(_KINDS)), dtype=np.bool_)
        for start in range(0, count, CHUNK_HOMES):
            end = min(start + CHUNK_HOMES, count)
            tariff[start:end] = self._tariffs(end - start)
            has_emd[start:end] = self.rng.random(end - start) < self.homes.emd_share
            owned[start:end] = self.rng.random((end - start, len(_KINDS))) < shares
        return tariff, has_emd, owned

    def build(self) -> GridTopology:
        region_count = len(self.specs)
        aggregators, industrial = self._per_region("aggregators"), self._per_region("industrial")
        substations, dtcs = self._per_region("substations"), self._per_region("dtcs")
        customers = self._per_region("customers")
        industrial_tariffs = self._tariffs(int(industrial.sum()))
        home_tariffs, has_emd, owned = self._draw_homes(int(customers.sum()))
        home_of_device, kind_of_device = np.nonzero(owned)
        del owned
        sizes = {
            GridRole.DSO: region_count,
            GridRole.AGGREGATOR: int(aggregators.sum()),
            GridRole.INDUSTRIAL: int(industrial.sum()),
            GridRole.SUBSTATION: int(substations.sum()),
            GridRole.DTC: int(dtcs.sum()),
            GridRole.METER: int(customers.sum()),
            GridRole.EMD: int(has_emd.sum()),
            GridRole.DEVICE: len(home_of_device),
        }
        total = sum(sizes.values())
        if total > self.nodes_max:
            raise ConfigError(
                self.source, "homes", f"at most nodes_max={self.nodes_max} nodes", got=total
            )
        blocks: dict[GridRole, range] = {}
        first = 1
        for role in ROLE_ORDER:
            blocks[role] = range(first, first + sizes[role])
            first += sizes[role]

        role_col = np.empty(total, dtype=np.uint8)
        kind = np.full(total, NO_CODE, dtype=np.uint8)
        region = np.empty(total, dtype=np.uint16)
        parent = np.zeros(total, dtype=np.uint32)
        substation = np.zeros(total, dtype=np.uint32)
        dtc = np.zeros(total, dtype=np.uint32)
        tariff = np.full(total, NO_CODE, dtype=np.uint8)
        for code, grid_role in enumerate(ROLE_ORDER):
            ids = blocks[grid_role]
            role_col[ids.start - 1 : ids.stop - 1] = code

        def block(grid_role: GridRole) -> slice:
            ids = blocks[grid_role]
            return slice(ids.start - 1, ids.stop - 1)

        dso_first = blocks[GridRole.DSO].start
        region[block(GridRole.DSO)] = np.arange(region_count)
        for grid_role, counts in (
            (GridRole.AGGREGATOR, aggregators),
            (GridRole.INDUSTRIAL, industrial),
            (GridRole.SUBSTATION, substations),
        ):
            where = np.repeat(np.arange(region_count), counts)
            region[block(grid_role)] = where
            parent[block(grid_role)] = dso_first + where
        tariff[block(GridRole.INDUSTRIAL)] = industrial_tariffs
        substation[block(GridRole.SUBSTATION)] = np.arange(
            blocks[GridRole.SUBSTATION].start, blocks[GridRole.SUBSTATION].stop
        )

        where, above = _split(dtcs, substations)
        here = block(GridRole.DTC)
        region[here] = where
        parent[here] = substation[here] = blocks[GridRole.SUBSTATION].start + above
        dtc[here] = np.arange(blocks[GridRole.DTC].start, blocks[GridRole.DTC].stop)

        where, above = _split(customers, dtcs)
        here = block(GridRole.METER)
        region[here] = where
        parent[here] = dtc[here] = blocks[GridRole.DTC].start + above
        substation[here] = substation[parent[here] - 1]
        tariff[here] = home_tariffs

        meter_first = blocks[GridRole.METER].start
        homes_with_emd = np.flatnonzero(has_emd)
        here = block(GridRole.EMD)
        parent[here] = meter_first + homes_with_emd
        # A home's EMD id, or 0 where it has none.
        emd_of_home = np.zeros(len(has_emd), dtype=np.int64)
        emd_of_home[homes_with_emd] = np.arange(
            blocks[GridRole.EMD].start, blocks[GridRole.EMD].stop
        )
        here_devices = block(GridRole.DEVICE)
        kind[here_devices] = kind_of_device
        parent[here_devices] = np.where(
            has_emd[home_of_device], emd_of_home[home_of_device], meter_first + home_of_device
        )
        for inherits, home in ((here, homes_with_emd), (here_devices, home_of_device)):
            meters = meter_first - 1 + home
            region[inherits] = region[meters]
            substation[inherits] = substation[meters]
            dtc[inherits] = dtc[meters]
            tariff[inherits] = tariff[meters]

        # Children, grouped by parent id (0: the roots) and ascending within a parent.
        order = np.argsort(parent, kind="stable").astype(np.uint32) + 1
        offsets = np.zeros(total + 2, dtype=np.int64)
        np.cumsum(np.bincount(parent, minlength=total + 1), out=offsets[1:])
        return GridTopology(
            region_specs=self.specs,
            homes=self.homes,
            tariffs=self.tariffs,
            links=self.links,
            seed=self.seed,
            blocks=MappingProxyType(blocks),
            role_codes=role_col,
            kind_codes=kind,
            region_codes=region,
            parent_ids=parent,
            substation_ids=substation,
            dtc_ids=dtc,
            tariff_codes=tariff,
            _child_offsets=offsets,
            _child_ids=order,
        )
