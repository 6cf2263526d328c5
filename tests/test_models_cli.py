"""`gridmesh model broadcast`: JSON and table output, determinism, exit status 2 on bad input."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from gridmesh.cli import main
from gridmesh.protocols.dissemination import fanout_for

UK_NODES = 31_962_942
VARYING = {"elapsed_s", "peak_rss_mib"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["model", "broadcast", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status, out, err = run(capsys, *argv, "--format", "json")
    assert (status, err) == (0, "")
    assert out.count("\n") == 1, "one JSON object on one line"
    record: dict[str, Any] = json.loads(out)
    return record


def test_json_reports_the_parameters_and_the_measured_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = as_json(
        capsys, "--nodes", "10000", "--fanout", "12", "--hops", "20", "--loss", "0.05",
        "--crashed", "0.1", "--runs", "40", "--seed", "3",
    )  # fmt: skip
    assert record["nodes"] == 10_000
    assert record["crashed_nodes"] == 1_000 and record["live_nodes"] == 9_000
    assert (record["fanout"], record["fanout_from"], record["reliability"]) == (
        12.0,
        "fanout",
        None,
    )
    assert (record["hops"], record["loss"], record["crashed"]) == (20, 0.05, 0.1)
    assert (record["runs"], record["seed"], record["mode"]) == (40, 3, "die")
    assert 0.0 <= record["all_reached_fraction"] <= 1.0
    assert 0.99 < record["delivery_ratio_mean"] <= 1.0
    assert record["delivery_ratio_min"] <= record["delivery_ratio_mean"]
    assert 4 < record["rounds_mean"] <= record["rounds_max"] <= 20
    assert record["messages_mean"] == pytest.approx(12 * 9_000, rel=0.01)
    assert record["expected_all_reached"] == pytest.approx(
        math.exp(-9_000 * math.exp(-12 * 0.95 * 0.9))
    )
    assert record["reached_by_round_mean"][0] == pytest.approx(1 / 9_000)
    assert record["elapsed_s"] > 0 and record["peak_rss_mib"] > 0


def test_the_same_seed_prints_the_same_json_but_for_time_and_memory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ("--nodes", "5000", "--fanout", "9.5", "--loss", "0.1", "--runs", "20", "--seed", "8")
    first, second = as_json(capsys, *argv), as_json(capsys, *argv)
    other = as_json(capsys, *argv[:-1], "9")
    assert {k: v for k, v in first.items() if k not in VARYING} == {
        k: v for k, v in second.items() if k not in VARYING
    }
    assert first["messages_mean"] != other["messages_mean"]


def test_reliability_picks_the_fanout_the_nodes_would(capsys: pytest.CaptureFixture[str]) -> None:
    plain = as_json(capsys, "--nodes", "20000", "--reliability", "0.99", "--loss", "0.1")
    assert plain["fanout"] == fanout_for(0.99, 20_000)  # nodes expect no loss unless told
    assert plain["fanout_from"] == "reliability" and plain["reliability"] == 0.99
    told = as_json(
        capsys, "--nodes", "20000", "--reliability", "0.99", "--loss", "0.1",
        "--expected-loss", "0.1", "--expected-crashed", "0.05",
    )  # fmt: skip
    assert told["fanout"] == fanout_for(0.99, 20_000, loss=0.1, crashed=0.05)
    assert (told["expected_loss"], told["expected_crashed"]) == (0.1, 0.05)


def test_infect_forever_has_no_kmg_figure(capsys: pytest.CaptureFixture[str]) -> None:
    record = as_json(capsys, "--nodes", "2000", "--fanout", "3", "--hops", "6", "--mode", "forever")
    assert record["mode"] == "forever" and record["expected_all_reached"] is None
    assert record["messages_mean"] == 3 + 9 + 27 + 81 + 243 + 729


def test_the_table_names_the_model_and_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--nodes", "3000", "--fanout", "9", "--runs", "5")
    assert status == 0
    assert "infect-and-die: 3,000 nodes" in out
    for label in ("all live nodes reached", "delivery ratio", "messages", "reached by round"):
        assert label in out


def test_a_whole_country_in_one_broadcast(capsys: pytest.CaptureFixture[str]) -> None:
    # The UK's 31,962,942 meters; bench/model_broadcast.py times it.
    record = as_json(
        capsys, "--nodes", str(UK_NODES), "--reliability", "0.9999", "--expected-loss", "0.01",
        "--expected-crashed", "0.01", "--loss", "0.01", "--crashed", "0.01",
    )  # fmt: skip
    assert record["live_nodes"] == UK_NODES - round(0.01 * (UK_NODES - 1))
    assert record["delivery_ratio_mean"] > 0.9999
    assert record["messages_mean"] == pytest.approx(
        record["fanout"] * record["live_nodes"], rel=0.01
    )


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["--nodes", "1", "--fanout", "3"], "--nodes", "a whole number in 2..1,000,000,000"),
        (["--nodes", "ten", "--fanout", "3"], "--nodes", "a whole number"),
        (["--nodes", "100", "--fanout", "0"], "--fanout", "a mean fanout in (0, 64]"),
        (["--nodes", "100", "--fanout", "64.5"], "--fanout", "a mean fanout in (0, 64]"),
        (["--nodes", "100", "--fanout", "nan"], "--fanout", "a mean fanout"),
        (["--nodes", "100", "--fanout", "3", "--hops", "0"], "--hops", "1..64"),
        (["--nodes", "100", "--fanout", "3", "--hops", "65"], "--hops", "1..64"),
        (["--nodes", "100", "--fanout", "3", "--loss", "1"], "--loss", "a share in [0, 1)"),
        (["--nodes", "100", "--fanout", "3", "--crashed", "-0.1"], "--crashed", "[0, 1)"),
        (["--nodes", "100", "--fanout", "3", "--runs", "0"], "--runs", "1..1,000,000"),
        (["--nodes", "100", "--fanout", "3", "--seed", "-1"], "--seed", "non-negative"),
        (["--nodes", "100", "--reliability", "1"], "--reliability", "a probability in (0, "),
        (["--nodes", "100", "--reliability", "0"], "--reliability", "a probability in (0, "),
        (["--nodes", "100", "--fanout", "3", "--expected-loss", "0.1"], "--expected-loss",
         "only together with --reliability"),
        (["--nodes", "10", "--reliability", "0.999999999", "--expected-loss", "0.9"],
         "--reliability", "fanout is at most 64"),
        (["--nodes", "1000", "--fanout", "20", "--hops", "30", "--mode", "forever"], "--hops",
         "fewer hops"),
    ],
)  # fmt: skip
def test_a_bad_value_is_one_paragraph_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str, expected: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err.startswith(f"gridmesh: command line: field '{field}': expected ")
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--nodes", "100"],  # neither --fanout nor --reliability
        ["--nodes", "100", "--fanout", "3", "--reliability", "0.9"],
        ["--nodes", "100", "--fanout", "3", "--mode", "sometimes"],
        ["--fanout", "3"],
    ],
)
def test_argparse_refuses_a_wrong_combination_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["model", "broadcast", *argv])
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err
