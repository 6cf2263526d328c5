"""`gridmesh plan`: output formats, and exit status 2 with one clear paragraph on bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from gridmesh.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["plan", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_peers_as_json_reproduce_table_i(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "peers", "--format", "json")
    assert (status, err) == (0, "")
    plan = json.loads(out)
    assert plan["command"] == "peers"
    assert plan["conventions"]["megabit"] == "decimal"
    assert plan["conventions"]["count_rounding"] == "floor"
    assert plan["traffic"]["message_bytes"] == 800
    assert plan["traffic"]["envelope_bytes"] is None
    assert plan["gossip"] == {"fanout": None, "default_fanout": "ceil(ln n + 1)"}
    rows = {row["technology"]: row for row in plan["rows"]}
    assert len(rows) == 23
    # Table I: 10e6 / 6400 = 1562.5 ("1.5 k"); DSL 8 Mbps up 1.3 Mbps -> 203
    assert rows["ethernet-10m"]["publishers_max"] == 1562
    assert rows["dsl-8m"]["subscribers_max"] == 203
    assert rows["ethernet-10m"]["gossip_fanout"] == 9
    assert rows["ethernet-10m"]["gossip_node_bits_per_second"] == 89_971_200


def test_customers_as_csv_reproduce_table_ii(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "customers", "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 15
    by_name = {row["technology"]: row for row in rows}
    assert by_name["fiber-662m"]["customers_max"] == "6507725"
    assert by_name["3g4g-14.4m"]["customers_max"] == "141558"
    assert by_name["dsl-8m"]["shared_channel"] == "false"


def test_subsystems_compare_paper_shows_the_differences_per_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "subsystems", "--compare-paper", "--format", "json")
    assert status == 0
    rows = {row["region"]: row for row in json.loads(out)["rows"]}
    assert len(rows) == 15
    differences = {
        name: row["paper_subsystems_difference"]
        for name, row in rows.items()
        if row["paper_subsystems_difference"] != 0
    }
    assert differences == {"Southern England": 1, "TOTAL": 2}
    assert rows["TOTAL"]["paper_customers_difference"] == 1
    assert rows["London"]["paper_agrees"] is True
    assert rows["TOTAL"]["paper_discrepancy"]
    # London on DSL 8 Mbps alone: 1274319 customers / 78643.2 (Table II, unrounded) = 16.2 -> 17
    assert rows["London"]["subsystems_by_technology"]["dsl-8m"] == 17


def test_subsystems_csv_has_one_column_per_technology(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "subsystems", "--tech", "fiber-1g", "--tech", "dsl-24m",
        "--region", "A=100000", "--region", "B=250000", "--format", "csv",
    )  # fmt: skip
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["region"] for row in rows] == ["A", "B", "TOTAL"]
    assert "subsystems_by_technology.fiber-1g" in rows[0]
    # A: 100000 * 6400 / 60 bit/s over 24 * 2^20: 0.4239 -> 1; TOTAL 350000: 1.4837 -> 2
    assert rows[0]["subsystems_by_technology.dsl-24m"] == "1"
    assert rows[2]["subsystems_by_technology.dsl-24m"] == "2"


def test_the_table_states_its_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "customers", "--tech", "fiber-100m", "--compare-paper")
    assert status == 0
    assert "Customers per actor" in out
    assert "983,040" in out
    assert "Mbps = 2^20 bit/s" in out
    assert "agrees" in out


def test_flags_change_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "peers", "--link", "lte:150:50:5000", "--shared-link", "mesh:300",
        "--message-bytes", "1000", "--per-second", "2", "--fanout", "4", "--format", "json",
    )  # fmt: skip
    assert status == 0
    plan = json.loads(out)
    lte, mesh = plan["rows"]
    # 150e6 / 16000 = 9375, 50e6 / 16000 = 3125; 300e6 / 16000 = 18750 in one channel
    assert (lte["publishers_max"], lte["subscribers_max"]) == (9375, 3125)
    assert (mesh["publishers_max"], mesh["shared_channel"]) == (18750, True)
    assert (lte["coverage"], mesh["coverage"]) == ("5 km", "")
    # 4 * 9375 * 2 * 8000 = 600,000,000 bit/s
    assert lte["gossip_node_bits_per_second"] == 600_000_000
    assert plan["gossip"]["fanout"] == 4


def test_gridmesh_overhead_is_in_the_json_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "customers", "--gridmesh-overhead", "--format", "json")
    assert status == 0
    traffic = json.loads(out)["traffic"]
    assert traffic["envelope_bytes"] == 90
    assert traffic["signature_bytes"] == 75
    assert traffic["message_bytes"] == 965
    status, out, _ = run(
        capsys, "customers", "--gridmesh-overhead", "--signature-bytes", "0", "--format", "json"
    )
    assert json.loads(out)["traffic"]["message_bytes"] == 890


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["peers", "--link", "dsl-x:-5:1"], "--link download_mbps", "greater than 0 (Mbps)"),
        (["peers", "--link", "dsl-x:5:-1"], "--link upload_mbps", "greater than 0 (Mbps)"),
        (["peers", "--shared-link", "w:0"], "--shared-link download_mbps", "greater than 0"),
        (["peers", "--link", "lte:150"], "--link", "NAME:DOWN:UP"),
        (["peers", "--link", "lte:150:50:5:5"], "--link", "NAME:DOWN:UP[:COVERAGE_M]"),
        (["peers", "--shared-link", "w:100:-1"], "--shared-link coverage_m", "greater than 0"),
        (["peers", "--message-bytes", "0"], "--message-bytes", "at least 1 (bytes)"),
        (["customers", "--message-bytes", "lots"], "--message-bytes", "valid integer"),
        (["peers", "--tech", "fibre-1g"], "--tech", "did you mean 'fiber-1g'"),
        (["subsystems", "--regions", "Narnia"], "--regions", "uk-dso"),
        (["subsystems", "--region", "Cornwall"], "--region", "NAME=CUSTOMERS"),
        (["subsystems", "--region", "Cornwall=-3"], "--region", "at least 1"),
        (["peers", "--per-minute", "0"], "--per-minute", "greater than 0"),
        (["peers", "--fanout", "65"], "--fanout", "at most 64"),
        (["peers", "--signature-bytes", "10"], "--signature-bytes", "--gridmesh-overhead"),
        (["peers", "--tech", "dsl", "--tech", "dsl-8m", "--link", "dsl-8m:1:1"],
         "technology name", "each technology once"),
        (["peers", "--message-bytes", "64990", "--gridmesh-overhead"], "--message-bytes",
         "at most about"),
        (["peers", "--message-bytes", "801", "--compare-paper"], "--compare-paper",
         "800-byte messages"),
    ],
)  # fmt: skip
def test_invalid_flags_exit_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str, expected: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("gridmesh: command line: ")
    assert f"field '{field}'" in err
    assert expected in err
    assert "Traceback" not in err


def test_an_invalid_file_exits_2_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(
        '[[technology]]\nname = "lte"\ndownload_mbps = 100\nupload_mbps = 10\n\n'
        '[[technology]]\nname = "bad"\ndownload_mbps = -100\nupload_mbps = 10\n',
        encoding="utf-8",
    )
    status, _, err = run(capsys, "peers", str(path))
    assert status == 2
    assert err == (
        f"gridmesh: {path}: field 'technology[1].download_mbps': "
        "expected a number greater than 0 (Mbps); got -100.\n"
    )


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("[traffic]\nmessage_bytes = 0\n", "traffic.message_bytes", "at least 1 (bytes)"),
        ('technologies = ["fiber-2g"]\n', "technologies[0]", "a preset name"),
        ("[traffic]\nmesage_bytes = 800\n", "traffic.mesage_bytes", "no such field"),
        ('[units]\nmegabit = "metric"\n', "units.megabit", "'decimal' or 'binary'"),
        ('[[region]]\nname = "x"\n', "region[0]", "exactly one of customers or area_km2"),
        ("[traffic]\nmessages_per_second = 1\nmessages_per_minute = 1\n", "traffic", "not both"),
        ('[[technology]]\nname = "w"\ndownload_mbps = 5\n', "technology[0]", "upload_mbps"),
        ("technologies = [\n", "(syntax)", "valid TOML"),
    ],
)
def test_invalid_file_values_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, field: str, expected: str
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(text, encoding="utf-8")
    status, out, err = run(capsys, "subsystems", str(path))
    assert (status, out) == (2, "")
    assert err.startswith(f"gridmesh: {path}: field '{field}'")
    assert expected in err


def test_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "peers", str(tmp_path / "absent.toml"))
    assert status == 2
    assert "field '(file)': expected a readable TOML file" in err
