"""ReDy balancing (``[redy]``, seed 003): the units balance the grid over real messages."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from gridmesh.errors import ConfigError
from gridmesh.scenarios import load_scenario, parse_scenario, run_scenario
from gridmesh.scenarios._redy import REDY_SERVICE, redy_topic
from gridmesh.scenarios._report import summary_sections
from gridmesh.scenarios._series import report_series
from tests.test_scenarios import EXAMPLES

# 1,000 units on a Cyclon overlay at a sunny noon (a surplus), 1% loss; 10% fail
# at 32-34 s for good, 2% leave at 25 s and rejoin at 45 s.
SMALL = """
name = "redy-small"
[simulation]
duration_s = 60.0
seed = 1
[[roles]]
name = "unit"
count = 1000
[node.membership]
kind = "cyclon"
view_size = 8
shuffle_length = 4
shuffle_interval_s = 5.0
[node.aggregation]
fanout = 8
hops = 12
timeout_s = 4.0
[node.gossip]
fanout = 8
hops = 12
[bootstrap]
contact = "random"
contacts = 3
spread_s = 2.0
[network.wan]
loss = 0.01
latency = { model = "lognormal", median_s = 0.040, sigma = 0.4, max_s = 2.0 }
[[faults.crashed]]
role = "unit"
fraction = 0.10
at_s = 32.0
spread_s = 2.0
[[faults.crashed]]
role = "unit"
fraction = 0.02
at_s = 25.0
recover_s = 45.0
[redy]
consumers = 0.2
prosumers = 0.79
producers = 0.01
producer_kw = [10.0, 20.0]
base_load_kw = [0.2, 1.0]
running_share = 0.2
output_share = 1.0
start_s = 15.0
epoch_s = 10.0
"""


def scenario_text(*edits: tuple[str, str], count: int | None = None) -> str:
    text = SMALL
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    if count is not None:
        text = text.replace("count = 1000", f"count = {count}", 1)
    return text


def run(text: str, seed: int | None = None) -> dict[str, Any]:
    return run_scenario(parse_scenario(text, source="redy.toml"), seed=seed)


@cache
def small_report() -> dict[str, Any]:
    return run(SMALL)


def redy(report: dict[str, Any]) -> dict[str, Any]:
    section = report["redy"]
    assert isinstance(section, dict)
    return section


# -- balancing --------------------------------------------------------------------


def test_imbalance_falls_to_5_percent_of_its_start_and_stays_there_with_10_percent_failing() -> (
    None
):
    report = small_report()
    result = redy(report)
    assert result["units"] == 1000 and result["units_up"] < 910  # 10% failed for good
    start = result["start_imbalance_kw"]
    assert start < -500.0  # a surplus the units must absorb
    assert result["target_kw"] == pytest.approx(0.05 * abs(start), abs=1e-3)
    # Settled within one count of the first epoch (15 s + 4 s timeout + gossip) ...
    assert result["settled_at_s"] is not None and result["settled_at_s"] <= 21.0
    # ... and held through the failures and the rejoining, to the end.
    assert result["held"] is True
    assert result["max_after_settling_kw"] <= result["target_kw"]
    series = report["imbalance"]
    after = [
        abs(value)
        for time_s, value in zip(series["time_s"], series["imbalance_kw"], strict=True)
        if time_s >= result["settled_at_s"]
    ]
    assert max(after) <= 0.05 * abs(start)
    assert abs(series["imbalance_kw"][-1]) <= 0.01 * abs(start)


def test_the_centralized_optimum_is_never_above_the_achieved_imbalance() -> None:
    series = small_report()["imbalance"]
    pairs = list(zip(series["imbalance_kw"], series["centralized_optimum_kw"], strict=True))
    assert len(pairs) == 61  # one sample a second, 0..60 s
    for achieved, optimum in pairs:
        assert abs(optimum) <= abs(achieved) + 1e-3


def test_every_epoch_counts_nearly_every_unit_and_every_live_unit_acts() -> None:
    result = redy(small_report())
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert result["epochs_missed"] == 0
    for epoch in epochs:
        assert epoch["contributors"] >= 0.9 * epoch["units_up"]
        assert epoch["units_acting"] >= 0.98 * epoch["units_up"]
        assert epoch["share_error"]["max"] <= 0.02
    last = epochs[-1]
    assert last["units_acting"] == last["units_up"] == result["units_up"]


def test_units_that_rejoin_ask_a_neighbour_and_act_again() -> None:
    report = small_report()
    result = redy(report)
    # The 20 rejoined units know nothing: those that are not gossiped an epoch
    # first ask (and units the gossip missed).
    assert 10 <= result["answers"] <= result["asks"]
    series = report["imbalance"]
    at = {t: v for t, v in zip(series["time_s"], series["imbalance_kw"], strict=True)}
    # Their load came back at 45 s with no action; by their next tick they act.
    assert abs(at[52.0]) <= 0.02 * abs(result["start_imbalance_kw"])


def test_with_scarce_flexibility_the_units_leave_what_the_central_optimum_leaves() -> None:
    # An evening: little sun, and fewer shiftable loads running than the shortfall.
    text = scenario_text(
        ("running_share = 0.2", "running_share = 0.1"),
        ("output_share = 1.0", "output_share = 0.1"),
        ("consumers = 0.2\nprosumers = 0.79", "consumers = 0.7\nprosumers = 0.29"),
        count=400,
    )
    report = run(text)
    result = redy(report)
    optimum = result["final_centralized_optimum_kw"]
    assert optimum > 0.2 * result["start_imbalance_kw"] > 0.0  # a shortfall, not all coverable
    assert result["held"] is False  # 5% is out of reach, and the report says so
    assert result["final_imbalance_kw"] == pytest.approx(optimum, rel=0.01)


def test_a_changing_output_is_followed_epoch_by_epoch() -> None:
    # The sun swings by 20% over 10 minutes; the units know it only from each epoch.
    text = scenario_text(
        (
            "output_share = 1.0",
            "output_share = 0.8\noutput_variation = 0.2\noutput_period_s = 600.0",
        ),
        count=300,
    )
    result = redy(run(text))
    start = abs(result["start_imbalance_kw"])
    assert abs(result["final_uncontrolled_kw"] - result["start_imbalance_kw"]) >= 0.15 * start
    assert result["max_after_settling_kw"] <= 0.15 * start
    assert abs(result["final_imbalance_kw"]) <= 0.05 * start


def test_the_pushsum_estimator_balances_from_every_units_own_estimates() -> None:
    text = scenario_text(
        ("view_size = 8\nshuffle_length = 4", "view_size = 20\nshuffle_length = 8"),
        (
            "[redy]\n",
            "[node.pushsum]\njoin_fanout = 2\nretries_max = 2\n"
            '[redy]\nestimator = "pushsum"\nrounds = 12\nsettle_rounds = 10\n',
        ),
        ("epoch_s = 10.0", "epoch_s = 14.0"),
        ("duration_s = 60.0", "duration_s = 75.0"),
        count=400,
    )
    report = run(text)
    result = redy(report)
    assert result["estimator"] == "pushsum"
    assert result["held"] is True
    assert result["settled_at_s"] <= 35.0
    assert abs(result["final_imbalance_kw"]) <= 0.02 * abs(result["start_imbalance_kw"])
    counters = result["protocol_at_live_units"]
    assert counters["pushes"] > 0 and counters["replies"] > 0
    for epoch in result["epochs"][1:]:
        assert epoch["share_error"]["p50"] <= 0.02


def test_while_the_initiator_is_down_no_epoch_starts_and_the_units_hold() -> None:
    text = scenario_text(
        (
            "[[faults.crashed]]",
            "[[faults.crashes]]\nnode = 1\nat_s = 30.0\nrecover_s = 52.0\n[[faults.crashed]]",
        ),
        count=300,
    )
    result = redy(run(text))
    assert result["epochs_missed"] == 2  # the epochs of 35 and 45 s
    assert [e["epoch"] for e in result["epochs"]] == [1, 2, 5]
    assert result["held"] is True  # holding the last decision kept the balance


def test_a_bad_balance_message_is_counted_and_dropped() -> None:
    text = scenario_text(
        (
            "[redy]",
            f'[[broadcast]]\nat_s = 40.0\norigin = 5\ntopic = "{redy_topic(1)}"\n'
            'payload = { epoch = 99, imbalance_kw = "a lot" }\n[redy]',
        ),
        count=300,
    )
    result = redy(run(text))
    assert result["bad_payloads"] >= 250  # nearly every unit got it, and refused it
    assert result["held"] is True


def test_the_report_draws_the_imbalance_series_beside_the_optimum() -> None:
    series = {s.name: s for s in report_series(small_report())}
    imbalance = series["imbalance"]
    assert imbalance.columns == ("time_s", "imbalance_kw", "centralized_optimum_kw")
    assert len(imbalance.rows) == 61


def test_the_printed_summary_says_where_the_imbalance_went() -> None:
    rows = dict(row for section in summary_sections(small_report()) for row in section)
    start = redy(small_report())["start_imbalance_kw"]
    assert rows["ReDy imbalance start / final"] == f"{start:,.1f} / 0.0 kW"
    assert rows["  within target from / held"].endswith("/ yes")
    assert rows["  epochs (missed), estimator"] == "5 (0), tree"


def test_same_seed_gives_an_identical_report_and_another_seed_does_not() -> None:
    text = scenario_text(count=300)
    first = json.dumps(run(text), sort_keys=True)
    assert json.dumps(run(text), sort_keys=True) == first
    assert json.dumps(run(text, seed=2), sort_keys=True) != first


def test_the_example_is_the_acceptance_run_at_10_thousand_units() -> None:
    scenario = load_scenario(EXAMPLES / "redy-balancing.toml")
    assert scenario.redy is not None and scenario.redy.estimator == "tree"
    assert scenario.node_count == 10_000
    crashed = [c for c in scenario.faults.crashed if c.recover_s is None]
    assert [c.fraction for c in crashed] == [0.10]
    assert scenario.redy.target_share == 0.05
    assert REDY_SERVICE.startswith("emd/")  # what an EMD's certificate lets it expose


# -- scenario-file errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (("start_s = 15.0", "start_s = 15.0\nspeed = 2"), "redy.speed", "no such field"),
        (("epoch_s = 10.0", "epoch_s = 0"), "redy.epoch_s", "greater than 0"),
        (
            ("start_s = 15.0", 'start_s = 15.0\nestimator = "oracle"'),
            "redy.estimator",
            "'tree' or 'pushsum'",
        ),
        (("consumers = 0.2", "consumers = 0.3"), "redy.consumers", "adding up to 1"),
        (
            ("base_load_kw = [0.2, 1.0]", "base_load_kw = [1.0, 0.2]"),
            "redy.base_load_kw",
            "low <= high",
        ),
        (
            ("start_s = 15.0", "start_s = 15.0\nrounds = 4\nsettle_rounds = 6"),
            "redy.settle_rounds",
            "at most rounds (4)",
        ),
        (("[redy]", '[redy]\nrole = "meters"'), "redy.role", "a role of this file, one of: unit"),
        (("[redy]", "[redy]\ninitiator = 5000"), "redy.initiator", "a governance unit"),
        (("start_s = 15.0", "start_s = 57.0"), "redy.start_s", "at most 56 s"),
        (("epoch_s = 10.0", "epoch_s = 3.0"), "redy.epoch_s", "at least 4 s"),
        (
            (
                "[redy]",
                "[node.pushsum]\nestimates_max = 2\n"
                '[redy]\nestimator = "pushsum"\nrounds = 5\nsettle_rounds = 4',
            ),
            "node.pushsum.estimates_max",
            "at least 3",
        ),
        (
            (
                "[redy]",
                '[readings.redy_state_kw]\nvalue = { model = "constant", value = 1.0 }\n[redy]',
            ),
            "readings.redy_state_kw",
            "[redy]'s own",
        ),
        (
            ("start_s = 15.0", "start_s = 15.0\nsample_interval_s = 0.0001"),
            "redy.sample_interval_s",
            "at least duration_s / 100,000",
        ),
    ],
)
def test_redy_errors_name_the_file_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = scenario_text(edit)
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="grid.toml")
    assert caught.value.source == "grid.toml"
    assert caught.value.field == field
    assert expected in caught.value.expected


def test_with_security_on_units_balance_and_ask_each_other_as_emds() -> None:
    text = scenario_text(count=200) + '\n[security]\nenabled = true\nroles = { unit = "emd" }\n'
    report = run(text)
    result = redy(report)
    assert result["answers"] >= 1 and result["asks"] >= result["answers"]
    assert report["rejected"].get("unauthorized", 0) == 0  # EMDs may call emd/# now
    assert abs(result["final_imbalance_kw"]) <= 0.05 * abs(result["start_imbalance_kw"])
