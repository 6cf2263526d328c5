"""The baselines gossip is compared with, on the simulator: n-times unicast, a broker,
a static hierarchy, hybrid multicast; link stress; and `gridmesh compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gridmesh.cli import main
from gridmesh.scenarios import node_configs, parse_scenario, run_scenario

BASE = """
name = "baseline-{mode}"
[simulation]
duration_s = 10.0
seed = 2
link_stress = true
[[roles]]
name = "dso"
count = 1
{broker}
[[roles]]
name = "substation"
count = 4
[[roles]]
name = "dtc"
count = 20
[[roles]]
name = "meter"
count = {meters}
[node.gossip]
mode = "{mode}"
fanout = 4
hops = 12
[node.membership]
exchange_interval_s = 0
[network]
domain_size = 50
[network.lan]
loss = {loss}
latency = {{ model = "constant", delay_s = 0.002 }}
[network.wan]
loss = {loss}
latency = {{ model = "constant", delay_s = 0.03 }}
[routers]
core_routers = 8
core_extra_links = 4
[[broadcast]]
at_s = 1.0
origin = "dso"
topic = "TARIFF"
payload = 1
"""


def scenario_text(mode: str, *, loss: float = 0.0, broker: bool = False) -> str:
    broker_role = '[[roles]]\nname = "broker"\ncount = 1' if broker else ""
    meters = 374 if broker else 375  # 400 nodes either way
    return BASE.format(mode=mode, broker=broker_role, meters=meters, loss=loss)


def run(mode: str, **options: Any) -> dict[str, Any]:
    return run_scenario(parse_scenario(scenario_text(mode, **options)))


def test_unicast_loads_the_origin_with_one_copy_per_node() -> None:
    report = run("unicast")
    assert report["delivery_ratio"] == 1.0
    assert report["origin_messages_sent"] == 399
    assert report["busiest_node"]["messages_sent"] == 399
    assert report["messages_sent"] == 399  # nobody relays


def test_a_broker_takes_the_load_off_the_origin_and_is_a_single_point_of_failure() -> None:
    report = run("broker", broker=True)
    assert report["delivery_ratio"] == 1.0
    assert report["origin_messages_sent"] == 1
    assert report["busiest_node"]["messages_sent"] == 398  # the broker: all but origin and itself
    text = scenario_text("broker", broker=True).replace(
        "[[broadcast]]", "[[faults.crashes]]\nnode = 2\nat_s = 0.0\n\n[[broadcast]]"
    )
    assert run_scenario(parse_scenario(text))["delivered"] == 0


def test_the_hierarchy_relays_level_by_level_and_a_dead_parent_cuts_its_subtree() -> None:
    scenario = parse_scenario(scenario_text("hierarchy"))
    configs = node_configs(scenario)
    assert configs[2].groups == ("parent:1",)  # a substation under the DSO
    assert configs[6].groups == ("parent:2",)  # the first DTC under substation 2
    report = run_scenario(scenario)
    assert report["delivery_ratio"] == 1.0
    assert report["origin_messages_sent"] == 4
    assert report["messages_sent"] == 399  # every node gets exactly one copy
    text = scenario_text("hierarchy").replace(
        "[[broadcast]]", "[[faults.crashes]]\nnode = 2\nat_s = 0.0\n\n[[broadcast]]"
    )
    cut = run_scenario(parse_scenario(text))
    # Substation 2 feeds 5 DTCs and their ~94 meters: all of them miss it.
    assert cut["delivered"] == 399 - 1 - 5 - 94 or cut["delivered"] == 399 - 1 - 5 - 93


def test_hybrid_multicast_uses_one_transmission_per_domain() -> None:
    scenario = parse_scenario(scenario_text("hybrid"))
    gateways = [i for i, c in enumerate(node_configs(scenario)) if i and "gateway" in c.groups]
    assert gateways == [1, 51, 101, 151, 201, 251, 301, 351]
    report = run_scenario(scenario)
    assert report["delivery_ratio"] == 1.0, "seed 2"
    (broadcast,) = report["per_broadcast"]
    stress = broadcast["link_stress"]
    # 8 multicasts into 8 domains, plus each gateway gossiping to 4 others once.
    assert report["messages_sent"] == 8 + 8 * 4
    assert stress["mean"] < 2.0


def test_link_stress_is_lower_for_hybrid_multicast_than_for_unicast() -> None:
    unicast = run("unicast")["per_broadcast"][0]["link_stress"]
    hybrid = run("hybrid")["per_broadcast"][0]["link_stress"]
    assert unicast["copies"] == 399
    assert unicast["max"] == 399  # the origin's access link carries every copy
    assert hybrid["mean"] < unicast["mean"]
    assert hybrid["router_mean"] < unicast["router_mean"]


def test_gossip_survives_loss_that_costs_the_baselines_deliveries() -> None:
    push = run("push", loss=0.05)
    unicast = run("unicast", loss=0.05)
    assert push["delivery_ratio"] > unicast["delivery_ratio"], "seed 2"


def test_compare_writes_a_table_json_and_three_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for mode in ("push", "unicast", "hybrid"):
        path = tmp_path / f"{mode}.toml"
        path.write_text(scenario_text(mode), encoding="utf-8")
        files.append(str(path))
    out = tmp_path / "out"
    assert main(["compare", *files, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dissemination compared" in printed
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [row["mode"] for row in rows] == ["push", "unicast", "hybrid"]
    for name in ("delivery.png", "origin-load.png", "link-stress.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_router_paths_go_through_access_links_uplinks_and_the_core() -> None:
    from gridmesh.sim import RouterTopology, RouterTopologyConfig

    topology = RouterTopology(1000, 100, RouterTopologyConfig(core_routers=10), seed=3)
    assert topology.path(5, 17) == [5, 17]  # one domain: two access links
    path = topology.path(5, 517)
    assert path[:2] == [5, 1000 + 0] and path[-2:] == [1000 + 5, 517]
    assert all(link >= 1010 for link in path[2:-2])  # core links only in between
    again = RouterTopology(1000, 100, RouterTopologyConfig(core_routers=10), seed=3)
    assert again.path(5, 517) == path  # drawn from the seed
