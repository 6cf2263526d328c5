"""Plan files: the examples run, and a file says the same as the flags it stands for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridmesh.cli import main
from gridmesh.plan import load_plan_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def json_plan(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["plan", *argv, "--format", "json"]) == 0
    plan: dict[str, object] = json.loads(capsys.readouterr().out)
    return plan


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("plan-*.toml")), ids=lambda p: p.name)
@pytest.mark.parametrize("command", ["peers", "customers", "subsystems"])
def test_every_example_plan_runs(
    capsys: pytest.CaptureFixture[str], path: Path, command: str
) -> None:
    load_plan_file(path)
    plan = json_plan(capsys, command, str(path))
    assert plan["rows"]


def test_the_uk_example_is_the_papers_defaults_written_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from_file = json_plan(capsys, "subsystems", str(EXAMPLES / "plan-uk-dr.toml"))
    from_defaults = json_plan(capsys, "subsystems")
    assert from_file == from_defaults


def test_the_county_example_uses_its_own_links_regions_and_overhead(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = json_plan(capsys, "subsystems", str(EXAMPLES / "plan-county-dr.toml"))
    rows = plan["rows"]
    assert isinstance(rows, list)
    # Cornwall by area: 3563 km2 * 79 houses/km2 = 281477; Somerset 3452 * 109 = 376268
    assert [(r["region"], r["customers"]) for r in rows] == [
        ("Cornwall", 281477),
        ("Devon", 520000),
        ("Somerset", 376268),
        ("TOTAL", 1177745),
    ]
    assert plan["traffic"] == {
        "payload_bytes": 800,
        "envelope_bytes": 92,  # 90 with the default topic; this topic is 42 characters
        "signature_bytes": 75,
        "message_bytes": 967,
        "messages_per_second": 0.016667,
        "messages_per_minute": 1,
        "topic": "MEASUREMENT/SMARTMETER/1234/DemandResponse",
    }
    assert all(r["gossip_fanout"] == 12 for r in rows)


def test_flags_override_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "plan-county-dr.toml")
    plan = json_plan(capsys, "customers", path, "--tech", "fiber-100m", "--megabit", "binary")
    rows = plan["rows"]
    assert isinstance(rows, list)
    assert [r["technology"] for r in rows] == ["fiber-100m"]
    # 100 * 2^20 * 60 / (967 * 8) = 813269.4 -> floor (the file's rounding) 813269
    assert rows[0]["customers_max"] == 813269
