"""``[devices]`` and ``[[rules]]`` in scenario files: homes' devices react to disseminated tariffs.

Runs are small (a few hundred meters); figures are checked against what the
broadcast itself measured (who delivered the cheap tariff, and when), so a
device that reacts without the tariff, too early or twice fails a test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gridmesh.cli import main
from gridmesh.errors import ConfigError
from gridmesh.grid import (
    DEFAULT_DEVICE_SHARES,
    DeviceKind,
    DeviceReaction,
    HomeFleet,
    HomeSpec,
    commanded_kinds,
    draw_home,
    kinds_of,
)
from gridmesh.protocols import Delivery
from gridmesh.scenarios import load_scenario, parse_scenario, run_scenario
from gridmesh.scenarios._devices import LOAD_SHIFTED_POINTS, DevicesService
from gridmesh.sim import Simulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

LAUNDRY = """
[[rules]]
id = "laundry"
policy = "price_responsive_shift"
filter = "TARIFF/#"
[rules.params]
price_below = 0.10
value_key = "price_eur_kwh"
device_class = "washing_machine"
topic = "HOME/{device_class}/COMMAND/start"
"""

DISPLAY = """
[[rules]]
id = "display"
policy = "threshold"
filter = "TARIFF/#"
params = { below = 0.10, value_key = "price_eur_kwh", topic = "HOME/DISPLAY/{1}/cheap" }
"""

HOMES = (
    """
name = "homes"
[simulation]
duration_s = 12.0
seed = 3
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter"
count = 300
[node.gossip]
fanout = 8
[node.membership]
exchange_interval_s = 0
[network.wan]
loss = 0.05
latency = { model = "lognormal", median_s = 0.05, sigma = 0.5 }
[[faults.crashed]]
role = "meter"
fraction = 0.1
[[broadcast]]
at_s = 1.0
origin = "utility"
topic = "TARIFF/RTP/price"
payload = { price_eur_kwh = 0.245 }
[[broadcast]]
at_s = 5.0
origin = "utility"
topic = "TARIFF/RTP/price"
payload = { price_eur_kwh = 0.081, reason = "overproduction" }
[devices]
roles = ["meter"]
shares = { washing_machine = 1.0 }
"""
    + LAUNDRY
    + DISPLAY
)


def devices_of(report: dict[str, Any]) -> dict[str, Any]:
    section = report["devices"]
    assert isinstance(section, dict)
    return section


def test_devices_react_exactly_where_and_when_the_cheap_tariff_is_delivered() -> None:
    report = run_scenario(parse_scenario(HOMES))
    devices = devices_of(report)
    normal, cheap = report["per_broadcast"]  # type: ignore[misc]
    assert normal["delivered"] > 0 and cheap["targets"] == 270  # 30 of 300 meters crashed
    delivered = cheap["delivered"]
    assert 260 <= delivered <= 270, f"seed {report['seed']}"
    # Every home has a washing machine: exactly the meters that delivered the cheap
    # tariff react, once each, and at the moment it arrived (latency from its creation).
    assert devices["homes"] == 300 and devices["devices"]["washing_machine"] == 300
    assert devices["reacted"]["washing_machine"] == delivered
    assert devices["homes_reacted"] == delivered == devices["reactions_total"]
    assert devices["reaction_latency_s"] == cheap["latency_s"]
    assert devices["reacted"]["dishwasher"] == 0  # no home has one
    # The normal tariff moved nothing: the moved load appears with the cheap one.
    series = report["load_shifted"]
    assert isinstance(series, dict)
    assert len(series["time_s"]) == LOAD_SHIFTED_POINTS + 1
    before = [kw for t, kw in zip(series["time_s"], series["shifted_kw"], strict=True) if t < 5.0]
    assert set(before) == {0.0}
    assert series["shifted_kw"][-1] == devices["load_shifted_kw_total"] == 2.0 * delivered
    assert devices["energy_moved_kwh"]["washing_machine"] == delivered * 2.0 * 1800 / 3600
    # One command and one informational notice per cheap delivery; none for the normal one.
    assert devices["signals"] == {
        "laundry": {"commandable": delivered, "informational": 0},
        "display": {"commandable": 0, "informational": delivered},
    }
    stats = devices["rule_engine"]
    assert stats["events"] == normal["delivered"] + delivered
    assert stats["signals_commandable"] == delivered
    assert devices["commands"] == {"commands": delivered, "commands_applied": delivered}


def service_for(text: str) -> DevicesService:
    return DevicesService(parse_scenario(text), seed=3)


def tariff(message_id: int, price: float, created_s: float, received_s: float) -> Delivery:
    return Delivery(
        message_id=message_id,
        origin=1,
        topic="TARIFF/RTP/price",
        payload={"price_eur_kwh": price},
        created_us=int(created_s * 1e6),
        received_at=received_s,
        hops_left=3,
    )


class _Node:
    """What ``DevicesService.equip`` reads of a node."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id


def test_a_device_reacts_only_once_its_meter_has_delivered_the_cheap_tariff() -> None:
    service = service_for(HOMES)
    for node_id in (2, 3):
        service.equip(_Node(node_id))  # type: ignore[arg-type]
    service.on_deliver(2, tariff(10, 0.245, 1.0, 1.2))
    assert devices_of(service.report(Simulator(seed=3)))["reactions_total"] == 0
    service.on_deliver(2, tariff(11, 0.081, 5.0, 5.25))
    devices = devices_of(service.report(Simulator(seed=3)))
    assert devices["homes_reacted"] == 1  # node 3 never delivered it: its machine waits
    assert devices["reaction_latency_s"]["max"] == pytest.approx(0.25)
    # The meter restarts: its rules start empty (the cheap tariff fires again), but the
    # machine's moved cycle still runs, so it is not started twice.
    service.equip(_Node(2))  # type: ignore[arg-type]
    service.on_deliver(2, tariff(12, 0.079, 6.0, 6.1))
    devices = devices_of(service.report(Simulator(seed=3)))
    assert devices["reactions_total"] == 1
    assert devices["signals"]["laundry"]["commandable"] == 2
    assert devices["commands"]["already_running"] == 1
    assert devices["engines"] == 2 and devices["rule_engine"]["events"] == 3


def test_device_counts_by_kind_follow_the_drawn_mix() -> None:
    text = HOMES.replace("count = 300", "count = 2000").replace(
        "shares = { washing_machine = 1.0 }",
        "shares = { power_sensor = 1.0, hvac = 0.2, dishwasher = 0.5, ev_charger = 0.1 }",
    )
    scenario = parse_scenario(text)
    counts = devices_of(DevicesService(scenario, seed=3).report(Simulator(seed=3)))["devices"]
    homes = 2000
    assert counts["power_sensor"] == homes
    for kind, share in (("hvac", 0.2), ("dishwasher", 0.5), ("ev_charger", 0.1)):
        sigma = math.sqrt(homes * share * (1 - share))
        assert abs(counts[kind] - homes * share) < 4.5 * sigma, (kind, counts[kind])
    for kind in ("washing_machine", "battery", "pv", "water_heater", "temperature_sensor"):
        assert counts[kind] == 0  # left out of shares: never
    other = devices_of(DevicesService(scenario, seed=4).report(Simulator(seed=3)))["devices"]
    assert other != counts  # another seed draws other homes


def test_without_shares_homes_draw_the_grid_default_mix() -> None:
    text = HOMES.replace("count = 300", "count = 3000").replace(
        "shares = { washing_machine = 1.0 }\n", ""
    )
    counts = devices_of(DevicesService(parse_scenario(text), seed=1).report(Simulator(seed=3)))[
        "devices"
    ]
    for kind, share in DEFAULT_DEVICE_SHARES.items():
        sigma = math.sqrt(3000 * share * (1 - share))
        assert abs(counts[kind.value] - 3000 * share) <= max(4.5 * sigma, 0.0), kind


def test_the_same_seed_gives_the_same_report_and_another_seed_does_not() -> None:
    scenario = parse_scenario(HOMES.replace("shares = { washing_machine = 1.0 }\n", ""))
    first = json.dumps(run_scenario(scenario, seed=5), sort_keys=True)
    second = json.dumps(run_scenario(scenario, seed=5), sort_keys=True)
    other = json.dumps(run_scenario(scenario, seed=6), sort_keys=True)
    assert first == second
    assert json.loads(first)["devices"] != json.loads(other)["devices"]


def test_a_rule_whose_threshold_is_not_crossed_produces_nothing() -> None:
    text = HOMES.replace("price_eur_kwh = 0.081", "price_eur_kwh = 0.1001")  # above 0.10
    report = run_scenario(parse_scenario(text))
    devices = devices_of(report)
    delivered = sum(b["delivered"] for b in report["per_broadcast"])  # type: ignore[attr-defined]
    assert devices["rule_engine"]["events"] == delivered > 500  # every tariff was heard
    assert devices["rule_engine"]["signals"] == 0
    assert devices["reactions_total"] == 0 and devices["homes_reacted"] == 0
    assert devices["reaction_latency_s"]["p50"] is None
    assert set(report["load_shifted"]["shifted_kw"]) == {0.0}  # type: ignore[index]


def test_a_periodic_rule_ticks_at_live_nodes_and_restarts_with_its_node() -> None:
    text = """
name = "ticks"
[simulation]
duration_s = 10.0
[[roles]]
name = "dtc"
count = 4
[[roles]]
name = "meter"
count = 20
[node.membership]
exchange_interval_s = 0
[[faults.crashes]]
node = 2
at_s = 5.0
recover_s = 7.0
[devices]
roles = ["meter"]
rules_at = ["dtc"]
[[rules]]
id = "report"
policy = "group_report"
filter = "METER/+/load_kw"
params = { interval_s = 2.0, topic = "DTC/report" }
"""
    devices = devices_of(run_scenario(parse_scenario(text)))
    # Ticks at 2, 4, 6, 8, 10 s at DTCs 1, 3, 4; DTC 2 ticks at 2 and 4, crashes at 5 and
    # comes back at 7 with a new engine that ticks at 9.
    assert devices["signals"]["report"] == {"commandable": 0, "informational": 3 * 5 + 2 + 1}
    assert devices["engines"] == 5 and devices["rule_nodes"] == 4
    assert devices["reactions_total"] == 0  # reports command nothing


def test_the_tariff_example_moves_load_only_after_overproduction_lowers_the_tariff() -> None:
    report = run_scenario(load_scenario(EXAMPLES / "tariff-broadcast.toml"))
    devices = devices_of(report)
    normal, cheap = report["per_broadcast"]  # type: ignore[misc]
    assert (normal["at_s"], cheap["at_s"]) == (1.0, 10.0)
    assert devices["homes"] == 10_000
    assert devices["homes_reacted"] <= cheap["delivered"] <= 9_500
    for kind, reacted in devices["reacted"].items():
        assert 0 < reacted <= devices["devices"][kind], kind
    series = report["load_shifted"]
    assert isinstance(series, dict)
    first_s = cheap["at_s"] + cheap["latency_cdf_s"][0]  # the first delivery of the cheap tariff
    last_s = cheap["at_s"] + cheap["latency_s"]["max"]
    for time_s, kw in zip(series["time_s"], series["shifted_kw"], strict=True):
        if time_s < first_s:
            assert kw == 0.0, time_s
        elif time_s >= last_s:
            assert kw == devices["load_shifted_kw_total"] > 0, time_s
    assert devices["signals"]["display"]["informational"] == cheap["delivered"]


# -- the home's devices, sans-I/O ---------------------------------------------------------


def test_a_command_starts_the_kinds_it_names_and_nothing_else() -> None:
    assert commanded_kinds({"action": "start_early", "device_class": "hvac"}) == (DeviceKind.HVAC,)
    assert commanded_kinds({"action": "start_early", "device_class": "pv"}) == "not_reactive"
    assert commanded_kinds({"action": "start_early", "device_class": "x"}) == "unknown_device_class"
    assert commanded_kinds({"action": "charge_storage"}) == (DeviceKind.BATTERY,)
    assert DeviceKind.HVAC not in commanded_kinds({"action": "start_flexible_loads"})
    assert commanded_kinds({"action": "release"}) == "action.release"
    assert commanded_kinds({}) == "no_action"
    fleet = HomeFleet(3)
    fleet.add(1, 0b111111111)
    started = fleet.command(1, {"action": "start_flexible_loads"}, 10.0)
    assert [r.kind.value for r in started] == [
        "water_heater",
        "dishwasher",
        "washing_machine",
        "ev_charger",
        "battery",
    ]
    assert sum(r.power_kw for r in started) == pytest.approx(3 + 2 + 2 + 7.4 + 5)
    assert fleet.command(2, {"action": "charge_storage"}, 10.0) == []  # home 2 has nothing
    assert fleet.counters["not_applied.no_device"] == 1
    battery = fleet.command(1, {"action": "charge_storage"}, 7210.0)  # its cycle has ended
    assert [(r.kind, r.until_s) for r in battery] == [(DeviceKind.BATTERY, 14410.0)]


def test_a_reaction_stays_within_its_device_profile() -> None:
    assert DeviceReaction.default(DeviceKind.HVAC).power_kw == 2.5  # 3 kW less its 0.5 floor
    with pytest.raises(Exception, match="power_kw in"):
        DeviceReaction(DeviceKind.DISHWASHER, 2.5, 60.0)
    with pytest.raises(Exception, match="cannot react"):
        DeviceReaction(DeviceKind.PV, 1.0, 60.0)


def test_a_home_draws_one_number_per_kind_whatever_its_shares() -> None:
    import random

    few = HomeSpec(devices={"hvac": 1.0})
    rng_a, rng_b = random.Random(1), random.Random(1)
    assert kinds_of(draw_home(few, rng_a)) == (DeviceKind.HVAC,)
    draw_home(HomeSpec(), rng_b)
    assert rng_a.random() == rng_b.random()  # streams stay aligned


# -- scenario-file errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (('policy = "price_responsive_shift"', 'policy = "price_shift"'), "rules[0].policy",
         "a registered policy"),
        (("price_below = 0.10\n", "price_below = 0.10\ncolour = 1\n"), "rules[0].params.colour",
         "no such field"),
        (("price_below = 0.10\n", 'price_below = "low"\n'), "rules[0].params.price_below",
         "a valid number"),
        (('id = "display"', 'id = "laundry"'), "rules[1].id", "an id no other rule has"),
        (('device_class = "washing_machine"', 'device_class = "heat_pump"'),
         "rules[0].params.device_class", "a device kind that can react"),
        (('roles = ["meter"]', 'roles = ["meters"]'), "devices.roles[0]",
         "a role of this file, one of: meter, utility"),
        (('roles = ["meter"]', 'roles = ["meter"]\nrules_at = ["dtc"]'), "devices.rules_at[0]",
         "a role of this file"),
        (('roles = ["meter"]', 'roles = ["meter", "utility", "meter"]'), "devices.roles[2]",
         "a role not listed before"),
        (('roles = ["meter"]', 'roles = ["meter"]\nrole = "x"'), "devices.role", "no such field"),
        (('roles = ["meter"]\n', ""), "devices.roles", "this field is required"),
        (("washing_machine = 1.0", "washing_machine = 1.5"), "devices.shares.washing_machine",
         "a number of at most 1"),
        (("washing_machine = 1.0", "dryer = 1.0"), "devices.shares.dryer",
         "a device kind, one of: power_sensor"),
        (("washing_machine = 1.0 }", "washing_machine = 1.0 }\nkinds.pv = { run_s = 60 }"),
         "devices.kinds.pv", "a device kind that can react"),
        (("washing_machine = 1.0 }", "washing_machine = 1.0 }\nkinds.hvac = { power_kw = 3 }"),
         "devices.kinds.hvac.power_kw", "at most 2.5 kW"),
        (("washing_machine = 1.0 }", "washing_machine = 1.0 }\nkinds.hvac = { run_s = 0 }"),
         "devices.kinds.hvac.run_s", "greater than 0"),
        (("[devices]\nroles", "[other]\nroles"), "other", "no such field"),
    ],
)  # fmt: skip
def test_devices_and_rules_errors_name_the_file_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = HOMES.replace(*edit, 1)
    assert text != HOMES
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="homes.toml")
    assert caught.value.source == "homes.toml"
    assert caught.value.field == field
    assert expected in caught.value.expected


def test_rules_without_a_devices_section_are_refused() -> None:
    text = HOMES.replace('[devices]\nroles = ["meter"]\nshares = { washing_machine = 1.0 }\n', "")
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="homes.toml")
    assert caught.value.field == "rules"
    assert "[devices]" in caught.value.expected


def test_a_bad_devices_section_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "homes.toml"
    path.write_text(HOMES.replace('roles = ["meter"]', 'roles = ["meters"]'), encoding="utf-8")
    assert main(["simulate", str(path), "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "devices.roles[0]" in err and "Traceback" not in err
