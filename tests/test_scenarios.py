"""Scenario files and `gridmesh simulate`: determinism, the tariff example, clear errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.errors import ConfigError
from gridmesh.scenarios import load_scenario, parse_scenario, run_scenario

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TARIFF = EXAMPLES / "tariff-broadcast.toml"

SMALL = """
name = "small"
[simulation]
duration_s = 10.0
seed = 4
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter"
count = 300
[node.gossip]
fanout = 7
[node.membership]
exchange_interval_s = 0
[network.wan]
loss = 0.05
latency = { model = "lognormal", median_s = 0.05, sigma = 0.5 }
[[faults.crashed]]
role = "meter"
fraction = 0.1
[[faults.partitions]]
start_s = 3.0
heal_s = 4.0
fractions = [0.5, 0.5]
[[broadcast]]
at_s = 1.0
origin = "utility"
topic = "TARIFF/RTP"
payload = { price = 0.08 }
[[broadcast]]
at_s = 3.5
origin = 2
topic = "TARIFF/RTP"
payload = "during the partition"
"""


def simulate(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    assert main(["simulate", str(TARIFF), "--quiet", "--out", str(out), *args]) == 0
    return (out / "report.json").read_bytes()


def test_same_seed_gives_identical_report_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = simulate(tmp_path, "a", "--seed", "11")
    second = simulate(tmp_path, "b", "--seed", "11")
    other = simulate(tmp_path, "c", "--seed", "12")
    assert first == second
    assert first != other
    assert json.loads(other)["seed"] == 12


def test_the_tariff_example_reaches_99_percent_of_live_meters_within_a_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    report = json.loads(simulate(tmp_path, "tariff"))
    elapsed_s = time.perf_counter() - started
    assert elapsed_s < 60.0
    assert report["nodes"] == 10_001
    assert report["live_nodes"] == 10_001 - 500  # 5% of 10,000 meters crashed
    assert report["delivery_ratio"] >= 0.99, f"seed {report['seed']}"
    for field in ("p50", "p90", "p99", "max"):
        assert report["latency_s"][field] > 0
    assert report["messages_sent"] > 0 and report["bytes_sent"] > report["messages_sent"] * 50
    assert set(report["messages_per_node"]) == {"mean", "max"}
    assert report["origin_messages_sent"] == 18  # `fanout` copies of each of its 2 broadcasts
    assert "delivery ratio" in capsys.readouterr().out


def test_reports_count_what_the_network_did() -> None:
    report = run_scenario(parse_scenario(SMALL))
    assert report["nodes"] == 301 and report["live_nodes"] == 271
    network = report["network"]
    assert isinstance(network, dict)
    assert network["lost"] > 0 and network["to_down_nodes"] > 0 and network["partitioned"] > 0
    per_broadcast = report["per_broadcast"]
    assert isinstance(per_broadcast, list) and len(per_broadcast) == 2
    # The second broadcast starts inside a 50/50 partition: about half the nodes miss it.
    assert per_broadcast[0]["delivery_ratio"] > 0.95
    assert 0.3 < per_broadcast[1]["delivery_ratio"] < 0.7
    total = per_broadcast[0]["delivered"] + per_broadcast[1]["delivered"]
    assert report["delivered"] == total


def test_wire_fidelity_gives_the_same_report_apart_from_its_flag() -> None:
    plain = run_scenario(parse_scenario(SMALL))
    faithful = run_scenario(
        parse_scenario(SMALL.replace("seed = 4", "seed = 4\nwire_fidelity = true"))
    )
    assert faithful.pop("wire_fidelity") is True and plain.pop("wire_fidelity") is False
    assert faithful == plain


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (("count = 300", "count = -3"), "roles[1].count", "a number of at least 1"),
        (("fanout = 7", "fanuot = 7"), "node.gossip.fanuot", "no such field"),
        (("fanout = 7", "fanout = 700"), "node.gossip.fanout", "a number of at most 64"),
        (("loss = 0.05", "loss = 2"), "network.wan.loss", "a number of at most 1"),
        (('model = "lognormal"', 'model = "gaussian"'), "network.wan.latency", "'constant'"),
        (('role = "meter"', 'role = "meters"'), "(top level)", "unknown role 'meters'"),
        (("origin = 2", "origin = 999"), "(top level)", "not a node id"),
        (("fractions = [0.5, 0.5]", "fractions = [0.5, 0.6]"), "faults.partitions[0]", "add up"),
        (("at_s = 3.5", "at_s = 99.0"), "(top level)", "after the end"),
        (('name = "small"', "name = 5"), "name", "valid string"),
        (("duration_s = 10.0", "duration_s = ten"), "(syntax)", "valid TOML"),
    ],
)
def test_scenario_errors_name_the_file_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = SMALL.replace(*edit, 1)
    assert text != SMALL
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="grid.toml")
    assert caught.value.source == "grid.toml"
    assert caught.value.field == field
    assert expected in caught.value.expected


def test_a_scenario_without_roles_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario('name = "x"\n')
    assert caught.value.field == "roles"


def test_the_cli_prints_one_paragraph_and_exits_2_on_a_bad_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace("fanout = 7", "fanout = 0"), encoding="utf-8")
    assert main(["simulate", str(path), "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "node.gossip.fanout" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_missing_scenario_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(tmp_path / "nope.toml"), "--quiet"]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_every_example_scenario_is_valid() -> None:
    examples = sorted(EXAMPLES.glob("**/*.toml"))
    assert len([p for p in examples if p.parent.name == "compare"]) == 10
    assert TARIFF in examples
    # A node configuration and a bridge's; plan-*.toml are planner inputs.
    not_scenarios = {"node.toml", "bridge-mqtt.toml"}
    for path in examples:
        if not path.name.startswith("plan-") and path.name not in not_scenarios:
            load_scenario(path)


def test_the_python_api_example_in_the_readme_runs_and_reaches_everyone() -> None:
    import contextlib
    import io
    import runpy

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        runpy.run_path(str(EXAMPLES / "python_api.py"), run_name="__main__")
    assert output.getvalue().strip() == "999 of 999 nodes reached"
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    example = (EXAMPLES / "python_api.py").read_text(encoding="utf-8")
    assert example.split("\n\n", 1)[1].strip() in readme  # the README shows this very code


GROUPS = """
name = "rtp-tariff"
[simulation]
duration_s = 10.0
seed = 5
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter_rtp"
service = "meter"
count = 150
groups = ["tariff:RTP"]
[[roles]]
name = "meter_flat"
service = "meter"
count = 250
groups = ["tariff:flat"]
[node.gossip]
fanout = 8
[node.membership]
exchange_interval_s = 0
[[broadcast]]
at_s = 1.0
origin = "utility"
topic = "TARIFF/RTP/price"
group = "tariff:RTP"
payload = { price_eur_kwh = 0.081 }
"""


def test_a_group_broadcast_reaches_the_roles_in_that_group_only() -> None:
    report = run_scenario(parse_scenario(GROUPS))
    (broadcast,) = report["per_broadcast"]  # type: ignore[misc]
    assert broadcast["group"] == "tariff:RTP"
    assert broadcast["targets"] == 150
    assert broadcast["delivered"] == 150, "seed 5"
    # Static membership sees every node's groups: no flat-tariff meter even carries it.
    assert report["dissemination"]["carried"] == 0  # type: ignore[index]
    assert report["dissemination"]["delivered"] == 150  # type: ignore[index]


def test_a_role_group_name_that_is_too_long_is_refused() -> None:
    with pytest.raises(ConfigError, match="group"):
        parse_scenario(GROUPS.replace('groups = ["tariff:RTP"]', f'groups = ["{"x" * 65}"]'))


SECURE = """
name = "secure-tariff"
[simulation]
duration_s = 6.0
seed = 3
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter"
count = 80
[node.gossip]
fanout = 6
[node.membership]
exchange_interval_s = 0
[network.lan]
latency = { model = "uniform", low_s = 0.002, high_s = 0.030 }
[network.wan]
latency = { model = "uniform", low_s = 0.002, high_s = 0.030 }
[security]
enabled = true
roles = { utility = "dso" }
[[broadcast]]
at_s = 1.0
origin = "utility"
topic = "TARIFF/RTP"
payload = 0.12
[[broadcast]]
at_s = 2.0
origin = "meter"
topic = "DR/COMMAND/forged"
payload = "shed"
"""


def test_a_secure_scenario_delivers_the_signed_tariff_and_refuses_a_meters_dr_command() -> None:
    report = run_scenario(parse_scenario(SECURE))
    tariff, forged = report["per_broadcast"]  # type: ignore[misc]
    assert tariff["delivery_ratio"] == 1.0  # jitter reorders handshakes and frames: nothing lost
    assert forged["delivered"] == 0
    security = report["security"]
    assert security["origin_verified"] >= 80 and security["links"] > 0  # type: ignore[index]
    assert report["rejected"]["unauthorized"] >= 1  # type: ignore[index]
    assert json.dumps(report, sort_keys=True) == json.dumps(
        run_scenario(parse_scenario(SECURE)), sort_keys=True
    )


def test_a_secure_scenario_needs_a_pki_role_for_every_role() -> None:
    text = SECURE.replace('roles = { utility = "dso" }', "")
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="secure.toml")
    assert "security.roles needs an entry for role 'utility'" in caught.value.expected
