"""Grid topologies: ids, parents, splits, groups, the UK preset, limits, the simulator."""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from gridmesh.errors import ConfigError, LocalProtocolError
from gridmesh.grid import (
    CUSTOMERS_PER_DTC,
    DTCS_PER_SUBSTATION,
    FAMILY_BASE_LATENCY_S,
    ROLE_ORDER,
    DeviceKind,
    GridRole,
    GridTopology,
    HomeSpec,
    LinkPlan,
    RegionSpec,
    build_topology,
    grid_topology,
    link_profile,
    simulation_layout,
    uk_regions,
    uk_topology,
)
from gridmesh.node import Node, NodeConfig
from gridmesh.plan import PAPER_UK_TOTAL, TECHNOLOGY_PRESETS, UK_DSO_REGIONS
from gridmesh.protocols import Delivery
from gridmesh.protocols.dissemination import GossipConfig
from gridmesh.protocols.membership import FullMembershipConfig
from gridmesh.security import Role
from gridmesh.sim import LogNormalLatency, Simulator, UniformLatency

#: Which role each role's parent has (a device: its home's EMD, or its meter).
PARENT_ROLES = {
    GridRole.DSO: set(),
    GridRole.AGGREGATOR: {GridRole.DSO},
    GridRole.INDUSTRIAL: {GridRole.DSO},
    GridRole.SUBSTATION: {GridRole.DSO},
    GridRole.DTC: {GridRole.SUBSTATION},
    GridRole.METER: {GridRole.DTC},
    GridRole.EMD: {GridRole.METER},
    GridRole.DEVICE: {GridRole.EMD, GridRole.METER},
}


def small(seed: int = 1, **options: object) -> GridTopology:
    """2 regions x 2 substations x 3 DTCs x 4 meters, one industrial customer per region."""
    shape: dict[str, object] = {
        "regions": ["London", "Yorkshire"],
        "substations_per_region": 2,
        "dtcs_per_substation": 3,
        "meters_per_dtc": 4,
        "industrial_per_region": 1,
        "seed": seed,
    }
    return grid_topology(**(shape | options))  # type: ignore[arg-type]


# -- ids and counts -------------------------------------------------------------


def test_each_level_has_the_counts_its_fan_outs_give() -> None:
    topology = small(homes=HomeSpec(emd_share=1.0, devices={DeviceKind.PV: 1.0}))
    assert {role.value: len(topology.ids(role)) for role in GridRole} == {
        "dso": 2,
        "aggregator": 2,
        "industrial": 2,
        "substation": 4,
        "dtc": 12,
        "meter": 48,
        "emd": 48,
        "device": 48,
    }
    assert topology.node_count == len(topology) == 166
    assert topology.counts()["device:pv"] == 48 and topology.counts()["device:hvac"] == 0


def test_ids_are_given_level_by_level_in_contiguous_blocks() -> None:
    topology = small()
    first = 1
    for code, role in enumerate(ROLE_ORDER):
        ids = topology.ids(role)
        assert ids.start == first, role
        assert (topology.role_codes[ids.start - 1 : ids.stop - 1] == code).all()
        first = ids.stop
    assert first == topology.node_count + 1
    assert topology.roots() == (1, 2) and topology.region_of(1) == "London"


def test_the_same_seed_gives_the_same_topology_and_another_seed_another() -> None:
    assert small(seed=7).digest() == small(seed=7).digest()
    assert small(seed=7).digest() != small(seed=8).digest()
    # The seed draws homes only: the levels above them do not move.
    a, b = small(seed=7), small(seed=8)
    for role in (GridRole.DSO, GridRole.SUBSTATION, GridRole.DTC, GridRole.METER):
        assert a.ids(role) == b.ids(role)
    core = a.ids(GridRole.METER).stop - 1
    assert (a.parent_ids[:core] == b.parent_ids[:core]).all()


def test_a_uk_topology_is_fixed_by_its_seed() -> None:
    assert uk_topology(1e-5, seed=3).digest() == uk_topology(1e-5, seed=3).digest()


# -- parents and children ----------------------------------------------------------


def ancestors_reach_a_dso(topology: GridTopology) -> None:
    """Every node has one parent of the right role, up to a DSO of its own region."""
    roles = np.array(ROLE_ORDER)[topology.role_codes]
    parents = topology.parent_ids.astype(np.int64)
    is_root = parents == 0
    assert (roles[is_root] == GridRole.DSO).all() and is_root.sum() == len(topology.regions)
    for role, allowed in PARENT_ROLES.items():
        mine = roles == role
        if allowed:
            assert set(roles[parents[mine] - 1]) <= allowed, role
            same_region = topology.region_codes[parents[mine] - 1] == topology.region_codes[mine]
            assert same_region.all(), role
    current = np.arange(1, len(topology) + 1)
    for _ in range(len(GridRole)):  # deeper than any path: a cycle would never reach 0
        step = parents[np.maximum(current, 1) - 1]
        current = np.where(current == 0, 0, step)
    assert (current == 0).all()


def test_every_node_has_exactly_one_parent_up_to_its_dso() -> None:
    ancestors_reach_a_dso(small(homes=HomeSpec(emd_share=0.5)))
    ancestors_reach_a_dso(uk_topology(2e-5, industrial_per_region=2))


def test_children_are_the_inverse_of_parents() -> None:
    topology = small(homes=HomeSpec(emd_share=0.5))
    seen = 0
    for node_id in range(1, len(topology) + 1):
        children = topology.children_of(node_id)
        assert list(children) == sorted(children)
        assert all(topology.parent_of(child) == node_id for child in children)
        seen += len(children)
    assert seen == len(topology) - len(topology.roots())
    dso = topology.ids(GridRole.DSO)[0]
    assert [topology.role_of(c) for c in topology.children_of(dso)] == [
        GridRole.AGGREGATOR,
        GridRole.INDUSTRIAL,
        GridRole.SUBSTATION,
        GridRole.SUBSTATION,
    ]


def test_a_path_runs_from_a_device_to_its_dso_through_every_level() -> None:
    topology = small(homes=HomeSpec(devices={DeviceKind.EV_CHARGER: 1.0}))
    device = topology.ids(GridRole.DEVICE)[-1]
    path = topology.path_to_root(device)
    assert [topology.role_of(n) for n in path] == [
        GridRole.DEVICE,
        GridRole.EMD,
        GridRole.METER,
        GridRole.DTC,
        GridRole.SUBSTATION,
        GridRole.DSO,
    ]
    assert topology.dtc_of(device) == path[3] and topology.substation_of(device) == path[4]
    assert topology.home_of(device) == path[2] and topology.device_kind_of(device) == "ev_charger"
    assert topology.parent_of(path[-1]) is None and topology.dtc_of(path[-1]) is None


def test_children_are_split_as_evenly_as_integers_allow() -> None:
    spec = RegionSpec("Odd", customers=103, substations=3, dtcs=10)
    topology = build_topology([spec], homes=HomeSpec(emd_share=0.0, devices={}))
    per_dtc = [len(topology.children_of(d)) for d in topology.ids(GridRole.DTC)]
    per_substation = [len(topology.children_of(s)) for s in topology.ids(GridRole.SUBSTATION)]
    assert sum(per_dtc) == 103 and max(per_dtc) - min(per_dtc) <= 1
    assert sum(per_substation) == 10 and max(per_substation) - min(per_substation) <= 1
    assert len(topology) == 1 + 1 + 3 + 10 + 103


def test_a_home_without_an_emd_hangs_its_devices_off_its_meter() -> None:
    topology = small(homes=HomeSpec(emd_share=0.5, devices={DeviceKind.POWER_SENSOR: 1.0}))
    emd_homes = {topology.parent_of(e) for e in topology.ids(GridRole.EMD)}
    assert 0 < len(emd_homes) < 48
    for device in topology.ids(GridRole.DEVICE):
        home = topology.home_of(device)
        parent = topology.parent_of(device)
        assert home is not None and parent is not None
        assert parent == home if home not in emd_homes else topology.parent_of(parent) == home
        assert topology.tariff_of(device) == topology.tariff_of(home)


def test_homes_draw_devices_and_tariffs_at_their_shares() -> None:
    homes = HomeSpec(devices={DeviceKind.EV_CHARGER: 0.25, DeviceKind.PV: 0.0})
    topology = grid_topology(regions=1, substations_per_region=4, dtcs_per_substation=10,
                             meters_per_dtc=500, homes=homes, seed=5)  # fmt: skip
    meters = len(topology.ids(GridRole.METER))
    counts = topology.counts()
    assert counts["device:pv"] == 0 and counts["emd"] == meters
    assert abs(counts["device:ev_charger"] / meters - 0.25) < 0.01
    meter_tariffs = topology.tariff_codes[topology.ids(GridRole.METER).start - 1 :][:meters]
    shares = np.bincount(meter_tariffs, minlength=3) / meters
    assert np.allclose(shares, [0.6, 0.3, 0.1], atol=0.01)
    assert homes.devices_per_home == 0.25


# -- groups -----------------------------------------------------------------------


def test_groups_and_members_agree_for_every_node() -> None:
    topology = small(homes=HomeSpec(emd_share=0.5))
    by_group: dict[str, set[int]] = {}
    for node_id in range(1, len(topology) + 1):
        for group in topology.groups_of(node_id):
            by_group.setdefault(group, set()).add(node_id)
    assert set(by_group) == set(topology.group_names())
    for group, members in by_group.items():
        assert set(topology.members(group).tolist()) == members, group


def test_groups_name_region_substation_dtc_tariff_and_device_kind() -> None:
    topology = small(homes=HomeSpec(devices={DeviceKind.HVAC: 1.0}))
    dso, substation = topology.ids(GridRole.DSO)[1], topology.ids(GridRole.SUBSTATION)[0]
    dtc = topology.ids(GridRole.DTC)[0]
    device = topology.ids(GridRole.DEVICE)[0]
    assert topology.groups_of(dso) == ("region:Yorkshire",)
    assert topology.groups_of(substation) == ("region:London", f"substation:{substation}")
    assert topology.groups_of(dtc) == ("region:London", f"substation:{substation}", f"dtc:{dtc}")
    assert topology.groups_of(device) == (
        "region:London",
        f"substation:{substation}",
        f"dtc:{dtc}",
        f"tariff:{topology.tariff_of(device)}",
        "device:hvac",
    )
    industrial = topology.ids(GridRole.INDUSTRIAL)[0]
    assert topology.groups_of(industrial)[1].startswith("tariff:")
    # A DTC's group: the DTC, its meters, and everything in their homes.
    members = topology.members(f"dtc:{dtc}").tolist()
    assert members[:5] == [dtc, *topology.children_of(dtc)]
    assert all(topology.dtc_of(m) == dtc for m in members)


@pytest.mark.parametrize(
    "group", ["nonsense", "region:Narnia", "dtc:1", "dtc:011", "substation:x", "tariff:gold", ""]
)
def test_an_unknown_group_is_a_local_error(group: str) -> None:
    with pytest.raises(LocalProtocolError, match="no group"):
        small().members(group)


# -- the UK preset ------------------------------------------------------------------


def test_the_uk_preset_at_full_scale_is_table_iii() -> None:
    regions = uk_regions(1.0)
    assert [r.name for r in regions] == [p.region.name for p in UK_DSO_REGIONS]
    assert [r.customers for r in regions] == [p.printed.customers for p in UK_DSO_REGIONS]
    assert [r.aggregators for r in regions] == [p.printed.subsystems for p in UK_DSO_REGIONS]
    # The rows' subsystems add up to 87; the TOTAL row prints 80 (a known misprint).
    assert sum(r.aggregators for r in regions) == 87 != PAPER_UK_TOTAL.subsystems
    for region in regions:
        assert region.dtcs == math.ceil(region.customers / CUSTOMERS_PER_DTC)
        assert region.substations == math.ceil(region.dtcs / DTCS_PER_SUBSTATION)
    assert sum(r.dtcs for r in regions) == 319_635


@pytest.mark.parametrize("scale", [1e-3, 2.5e-4, 3e-6, 1e-9])
def test_a_scaled_uk_preset_keeps_table_iii_proportions_within_rounding(scale: float) -> None:
    regions = uk_regions(scale)
    for region, preset in zip(regions, UK_DSO_REGIONS, strict=True):
        share = preset.printed.customers * Fraction(scale)
        assert region.customers == max(1, math.floor(share + Fraction(1, 2)))
        assert abs(region.customers - share) <= Fraction(1, 2) or region.customers == 1
        assert region.aggregators == max(1, math.ceil(preset.printed.subsystems * scale))
        assert 1 <= region.substations <= region.dtcs <= region.customers


def test_uk_topology_at_one_thousandth_has_about_thirty_two_thousand_customers() -> None:
    topology = uk_topology(1e-3, homes=HomeSpec(emd_share=0.0, devices={}))
    meters = len(topology.ids(GridRole.METER))
    assert meters == 31_962  # 31,962,943 customers * 1e-3, region by region
    assert len(topology.regions) == 14 and len(topology.ids(GridRole.DSO)) == 14
    london = topology.members("region:London")
    london_meters = np.count_nonzero(topology.role_codes[london - 1] == 5)
    assert london_meters == 1274  # Table III: 1,274,319
    assert len(topology.ids(GridRole.DTC)) == sum(math.ceil(r.customers / 100) for r in
                                                  uk_regions(1e-3))  # fmt: skip


def test_scaling_the_uk_preset_scales_every_region() -> None:
    small_, large = uk_regions(1e-4), uk_regions(1e-3)
    for a, b in zip(small_, large, strict=True):
        assert abs(b.customers - 10 * a.customers) <= 10
    tiny = uk_regions(1e-9)
    assert all(r.customers == 1 and r.dtcs == 1 and r.substations == 1 for r in tiny)


# -- links ---------------------------------------------------------------------------


def test_every_table_i_technology_is_a_link_class() -> None:
    for name, preset in TECHNOLOGY_PRESETS.items():
        profile = link_profile(name)
        tech = preset.technology
        assert profile.download_mbps == tech.download_mbps
        upload = tech.upload_mbps or tech.download_mbps
        expected = (
            FAMILY_BASE_LATENCY_S[tech.family]
            + 6400 / (upload * 1e6)
            + (tech.coverage_m or 0) / 2e8
        )
        assert profile.median_latency_s == pytest.approx(expected)
        latency = profile.link_class().latency
        kind = UniformLatency if tech.scope == "lan" else LogNormalLatency
        assert isinstance(latency, kind), name
    satellite = link_profile("satellite-28k").median_latency_s
    assert satellite == pytest.approx(0.270 + 6400 / 28_000)


def test_each_node_has_its_levels_link() -> None:
    topology = small(links=LinkPlan(dtc="dsl-24m"))
    assert topology.link_of(topology.ids(GridRole.DTC)[0]).technology == "dsl-24m"
    assert topology.link_of(topology.ids(GridRole.METER)[0]).scope == "lan"
    assert topology.link_of(1).technology == "fiber-2448m"


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: grid_topology(meters_per_dtc=0), "meters_per_dtc"),
        (lambda: grid_topology(regions=0), "regions"),
        (lambda: grid_topology(regions="London"), "regions"),
        (lambda: grid_topology(substations_per_region=1.5), "substations_per_region"),  # type: ignore[arg-type]
        (lambda: grid_topology(aggregators_per_region=-1), "aggregators_per_region"),
        (lambda: grid_topology(regions=["A", "A"]), "regions"),
        (lambda: grid_topology(seed=-1), "seed"),
        (lambda: grid_topology(tariffs=[("flat", 0.5)]), "tariffs"),
        (lambda: grid_topology(tariffs=[("flat", 0.5), ("flat", 0.5)]), "tariffs"),
        (lambda: grid_topology(tariffs=[("no spaces", 1.0)]), "tariffs[0].name"),
        (lambda: grid_topology(tariffs=[("RTP", 1.5)]), "tariffs[0].share"),
        (lambda: grid_topology(tariffs=[]), "tariffs"),
        (lambda: grid_topology(homes="many"), "homes"),  # type: ignore[arg-type]
        (lambda: RegionSpec("X", customers=0), "regions['X'].customers"),
        (lambda: RegionSpec("X", customers=5, dtcs=6), "regions['X'].dtcs"),
        (lambda: RegionSpec("X", customers=5, substations=2, dtcs=1), "regions['X'].dtcs"),
        (lambda: RegionSpec("X" * 58, customers=5), f"regions[{'X' * 58!r}].name"),
        (lambda: RegionSpec(" X", customers=5), "regions[].name"),
        (lambda: HomeSpec(emd_share=1.5), "homes.emd_share"),
        (lambda: HomeSpec(emd_share=math.nan), "homes.emd_share"),
        (lambda: HomeSpec(devices={"toaster": 0.5}), "homes.devices"),
        (lambda: HomeSpec(devices={"pv": -0.1}), "homes.devices.pv"),
        (lambda: HomeSpec(devices=5), "homes.devices"),  # type: ignore[arg-type]
        (lambda: HomeSpec(devices=["pv"]), "homes.devices"),  # type: ignore[list-item]
        (lambda: LinkPlan(meter="wifi-55m"), "links.meter"),
        (lambda: uk_topology(0), "scale"),
        (lambda: uk_topology(1.5), "scale"),
        (lambda: uk_topology(True), "scale"),
        (lambda: uk_topology(customers_per_dtc=0), "customers_per_dtc"),
        (lambda: uk_topology(industrial_per_region=-1), "industrial_per_region"),
        (lambda: build_topology([]), "regions"),
        (lambda: build_topology([RegionSpec("X", 10)], nodes_max=10), "regions"),
        (lambda: build_topology([RegionSpec("X", 10)], nodes_max=20), "homes"),
        (lambda: link_profile("carrier-pigeon"), "link"),
    ],
)
def test_invalid_parameters_name_their_field(call: object, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("node_id", [0, 167, -1, "1", 1.0, True])
def test_a_node_id_outside_the_topology_is_a_local_error(node_id: object) -> None:
    topology = small(homes=HomeSpec(emd_share=1.0, devices={DeviceKind.PV: 1.0}))
    with pytest.raises(LocalProtocolError, match=r"1\.\.166"):
        topology.groups_of(node_id)  # type: ignore[arg-type]


def test_the_columns_are_read_only() -> None:
    topology = small()
    with pytest.raises(ValueError, match="read-only"):
        topology.parent_ids[5] = 1
    with pytest.raises(LocalProtocolError):
        topology.ids("plant")


# -- scale -------------------------------------------------------------------------


def test_a_million_nodes_fit_in_bounded_memory() -> None:
    # Time is measured in docs/GRID.md (about 0.2 s); memory is deterministic, so it is a test.
    tracemalloc.start()
    try:
        topology = uk_topology(5.55e-3, seed=1)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 1_000_000 <= len(topology) <= 1_010_000
    assert topology.nbytes <= 30 * len(topology)
    assert peak_bytes <= 80 * len(topology)


# -- in the simulator -----------------------------------------------------------------


def test_a_layout_gives_the_simulator_role_blocks_profiles_and_a_network() -> None:
    topology = small(homes=HomeSpec(emd_share=0.5))
    layout = simulation_layout(topology, base=NodeConfig(groups=("everyone",)))
    assert [block.role for block in layout.roles] == list(GridRole)
    assert sum(len(block.ids) for block in layout.roles) == len(topology)
    pki = layout.pki_roles()
    assert len(pki) == len(topology) and pki[0] is Role.DSO and pki[-1] is Role.DEVICE
    assert layout.network.domain_size == 4  # meters per DTC
    assert layout.network.lan.latency.model == "uniform"
    assert layout.network.wan.latency.model == "lognormal"
    meter = topology.ids(GridRole.METER)[0]
    config = layout.node_config(meter)
    assert config.service == "meter"
    assert config.groups == ("everyone", *topology.groups_of(meter))
    # Profiles are shared: one per (role, region, DTC or substation, tariff, kind) in use.
    wide = small(meters_per_dtc=60)
    wide_layout = simulation_layout(wide)
    for node_id in range(1, len(wide) + 1):
        wide_layout.node_config(node_id)
    dtcs, tariffs, home_roles = 12, 3, 2 + len(DeviceKind)  # meter, EMD and each kind
    core = 2 + 2 + 2 * 3 + 4 + 12  # DSOs, aggregators, industrial (x tariff), substations, DTCs
    assert wide_layout.profiles <= dtcs * tariffs * home_roles + core < len(wide) / 9


def test_a_dtc_group_broadcast_reaches_exactly_that_dtcs_subtree() -> None:
    topology = small(seed=4)
    base = NodeConfig(
        gossip=GossipConfig(fanout=6), membership=FullMembershipConfig(exchange_interval_s=0)
    )
    layout = simulation_layout(topology, base=base)
    sim = Simulator(seed=4, network=layout.network)
    sim.add_nodes(len(topology), layout.node_factory(sim, directory=layout.peer_directory(sim)))
    received: dict[int, list[Delivery]] = {}
    sim.on_deliver = lambda node_id, d: received.setdefault(node_id, []).append(d)
    dtc = topology.ids(GridRole.DTC)[4]

    def tariff(now: float) -> None:
        dso = sim.node(1)
        assert isinstance(dso, Node)
        dso.broadcast({"price": 0.08}, topic="TARIFF/RTP", now=now, group=f"dtc:{dtc}")

    sim.schedule(0.5, tariff)
    sim.run(10.0)
    assert set(received) == set(topology.members(f"dtc:{dtc}").tolist()), "seed 4"
