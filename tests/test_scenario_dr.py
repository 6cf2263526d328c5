"""``[dr]``: demand response for corrective control (seed 001 V.A) over real service calls.

Runs are small (2,000 customers, 4 aggregators, a 260-second run); the
figures are checked against each other and against what the customers could
give, so a report that claims success the meters did not deliver, or hides why
a request failed, fails a test. The domain logic (``gridmesh.grid``'s DR
module) is tested alone first.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gridmesh.cli import main
from gridmesh.errors import ConfigError, LocalProtocolError, MalformedMessage
from gridmesh.grid import (
    Activation,
    AggregatorStanding,
    CommandState,
    Customer,
    Dispatch,
    DrOffer,
    DrRequest,
    DrStatus,
    MeterReport,
    ReductionLog,
    ShedAnswer,
    ShedCommand,
    ShedOutcome,
    answer_shed,
    explain_shortfall,
    meter_report,
    split_request,
)
from gridmesh.scenarios import load_scenario, parse_scenario, run_scenario
from gridmesh.scenarios._report import summary_sections

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SMALL = """
name = "dr-small"
[simulation]
duration_s = 260.0
seed = 1
[[roles]]
name = "dso"
count = 1
[[roles]]
name = "aggregator"
count = 4
[[roles]]
name = "meter"
count = 2000
[node.membership]
exchange_interval_s = 0
[node.services]
calls_pending_max = 256
[network]
domain_size = 100
[network.lan]
loss = 0.05
latency = { model = "uniform", low_s = 0.002, high_s = 0.010 }
[network.wan]
loss = 0.05
latency = { model = "lognormal", median_s = 0.050, sigma = 0.5, max_s = 2.0 }
[[faults.crashed]]
role = "meter"
fraction = 0.02
at_s = 0.0
spread_s = 250.0
[dr]
fault_at_s = 65.0
request_kw = 400.0
"""


def _run(text: str, seed: int | None = None) -> dict[str, Any]:
    return run_scenario(parse_scenario(text), seed=seed)


def _with(**dr: object) -> str:
    """SMALL with more ``[dr]`` fields (TOML values as Python literals)."""
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in dr.items())
    return SMALL.replace("request_kw = 400.0\n", "", 1) + lines


def _crash(node: int, at_s: float, recover_s: float | None = None) -> str:
    recover = "" if recover_s is None else f"recover_s = {recover_s}\n"
    return f"[[faults.crashes]]\nnode = {node}\nat_s = {at_s}\n{recover}"


def _reasons(dr: dict[str, Any]) -> list[str]:
    why = dr["why"]
    assert why is not None, "a request that failed must say why"
    return [reason["reason"] for reason in why["reasons"]]


# -- the domain logic, alone ---------------------------------------------------------


def test_a_meter_commits_what_it_has_and_sheds_it_after_its_delay() -> None:
    customer = Customer(base_load_kw=0.5, flexibility_kw=3.0, activation_delay_s=20.0)
    full = answer_shed(customer, ShedCommand(1, 2.0, until_s=500.0), 0.0, now=100.0)
    assert (full.outcome, full.accepted_kw, full.active_at_s) == (ShedOutcome.ACCEPTED, 2.0, 120.0)
    partial = answer_shed(customer, ShedCommand(1, 5.0, until_s=500.0), 0.0, now=100.0)
    assert (partial.outcome, partial.accepted_kw) == (ShedOutcome.PARTIAL, 3.0)
    spent = answer_shed(customer, ShedCommand(1, 1.0, until_s=500.0), 3.0, now=100.0)
    assert (spent.outcome, spent.accepted_kw) == (ShedOutcome.UNAVAILABLE, 0.0)
    gone = Customer(0.5, 3.0, 20.0, unavailable=True)
    assert answer_shed(gone, ShedCommand(1, 1.0, 500.0), 0.0, 100.0).accepted_kw == 0.0
    late = answer_shed(customer, ShedCommand(1, 1.0, until_s=50.0), 0.0, now=100.0)
    assert late.outcome is ShedOutcome.EXPIRED
    # What is shed is reported as shed, not as flexibility.
    assert meter_report(customer, 2.0) == MeterReport(load_kw=1.5, flexibility_kw=1.0, shed_kw=2.0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"event": 1, "shed_kw": 2.0},
        {"event": -1, "shed_kw": 2.0, "until_s": 9.0},
        {"event": 1, "shed_kw": 0.0, "until_s": 9.0},
        {"event": 1, "shed_kw": math.nan, "until_s": 9.0},
        {"event": 1, "shed_kw": True, "until_s": 9.0},
        {"event": 1, "shed_kw": 2.0, "until_s": math.inf},
    ],
)
def test_a_malformed_shed_command_is_a_remote_protocol_error(value: object) -> None:
    with pytest.raises(MalformedMessage):
        ShedCommand.parse(value)


def test_answers_reports_and_statuses_travel_as_plain_data_and_back() -> None:
    answer = ShedAnswer(ShedOutcome.PARTIAL, 1.5, 80.0, 900.0)
    assert ShedAnswer.parse(answer.to_value(), 900.0) == answer
    with pytest.raises(MalformedMessage):  # accepting kW while saying "unavailable"
        ShedAnswer.parse({**answer.to_value(), "outcome": "unavailable"}, 900.0)
    report = MeterReport(1.0, 0.5, 0.0)
    assert MeterReport.parse(report.to_value()) == report
    with pytest.raises(MalformedMessage):
        MeterReport.parse({"load_kw": -1.0, "flexibility_kw": 0.5, "shed_kw": 0.0})
    status = DrStatus(10.0, 4.0, 2.0, exhausted=True)
    assert DrStatus.parse(status.to_value()) == status
    with pytest.raises(MalformedMessage):
        DrStatus.parse({**status.to_value(), "exhausted": 1})
    request = DrRequest(event=1, target_kw=2000.0, deadline_s=245.0, until_s=1865.0)
    assert DrRequest.parse(request.to_value()) == request
    with pytest.raises(MalformedMessage):  # holding less long than the deadline
        DrRequest.parse({**request.to_value(), "until_s": 100.0})
    offer = DrOffer(customers=9800, flexibility_kw=6600.0, load_kw=12000.0)
    assert DrOffer.parse(offer.to_value()) == offer
    with pytest.raises(MalformedMessage):
        DrOffer.parse({**offer.to_value(), "customers": -1})


def test_an_activation_over_selects_then_tops_up_for_what_failed() -> None:
    activation = Activation(
        event=1, target_kw=10.0, margin=0.2, deadline_s=180.0, until_s=1800.0, started_s=0.0
    )
    assert activation.plan_kw(0.0) == pytest.approx(12.0)  # the target and its margin
    for meter, kw in ((1, 5.0), (2, 4.0), (3, 3.0)):
        activation.add(meter, kw)
    assert activation.plan_kw(0.0) == 0.0  # 12 kW outstanding
    assert [meter for meter, _ in activation.take(2)] == [1, 2]
    activation.on_timeout(1)  # meter 1 is down: 5 kW short of the plan
    assert activation.plan_kw(1.0) == pytest.approx(5.0)
    activation.on_answer(2, ShedAnswer(ShedOutcome.PARTIAL, 3.0, 30.0, 1800.0), now=2.0)
    assert activation.confirmed_kw == 3.0 and not activation.covered
    assert activation.active_kw(29.0) == 0.0 and activation.active_kw(30.0) == 3.0
    with pytest.raises(LocalProtocolError):
        activation.add(2, 1.0)  # a customer is commanded once per event
    with pytest.raises(LocalProtocolError):
        activation.on_timeout(2)  # an answered command cannot time out: the table says no
    assert activation.on_deadline() == 1  # meter 3 was never sent
    assert activation.plan_kw(180.0) == 0.0
    tally = activation.tally()
    assert tally[CommandState.FAILED.value]["asked_kw"] == 5.0
    assert tally[CommandState.DROPPED.value]["count"] == 1


def test_a_restarted_aggregator_sends_again_what_had_no_answer() -> None:
    activation = Activation(1, 4.0, 0.0, 180.0, 1800.0, 0.0)
    activation.add(7, 4.0)
    assert [meter for meter, _ in activation.take(1)] == [7]
    assert activation.on_restart() == 1
    assert [meter for meter, _ in activation.take(1)] == [7]  # queued again, once
    assert activation.take(1) == []


def test_the_dso_splits_in_proportion_to_offers_and_moves_a_lost_share() -> None:
    assert split_request(90.0, {2: 10.0, 3: 20.0, 4: None}) == {2: 20.0, 3: 40.0, 4: 30.0}
    assert split_request(8.0, {2: 0.0, 3: 0.0}) == {2: 4.0, 3: 4.0}
    dispatch = Dispatch.start(1, 60.0, {2: 100.0, 3: 50.0, 4: 30.0}, now=0.0)
    assert dispatch.targets() == pytest.approx({2: 100 / 3, 3: 50 / 3, 4: 10.0})
    changes = dispatch.on_unreachable(2, now=5.0)  # 33.3 kW to move; spare: 33.3 and 20
    assert set(changes) == {3, 4} and dispatch.unassigned_kw == 0.0
    assert math.fsum(dispatch.targets().values()) == pytest.approx(60.0)
    assert dispatch.standing(2) is AggregatorStanding.LOST and dispatch.lost() == [2]
    # Aggregator 3 runs out: its deficit goes to 4 (spare 20 - 12.5) and the rest is unassigned.
    status = DrStatus(confirmed_kw=10.0, active_kw=0.0, outstanding_kw=0.0, exhausted=True)
    dispatch.on_status(3, status, now=10.0)
    assert dispatch.unassigned_kw > 0 and dispatch.exhausted() == [3]
    assert math.fsum(dispatch.targets().values()) + dispatch.unassigned_kw == pytest.approx(60.0)
    # Aggregator 2 answers again: it gets back what nobody took.
    unassigned_kw = dispatch.unassigned_kw
    back = dispatch.on_status(2, DrStatus(0.0, 0.0, 0.0, exhausted=False), now=15.0)
    assert back == {2: pytest.approx(unassigned_kw)} and dispatch.unassigned_kw == 0.0


def test_the_reduction_log_says_when_a_level_was_reached() -> None:
    log = ReductionLog()
    for time_s, kw in ((10.0, 3.0), (10.0, 1.0), (20.0, 2.0), (30.0, -6.0)):
        log.change(time_s, kw)
    assert [log.at(t) for t in (0.0, 10.0, 19.9, 20.0, 30.0)] == [0.0, 4.0, 4.0, 6.0, 0.0]
    assert log.reached(5.0, since_s=0.0) == 20.0
    assert log.reached(4.0, since_s=15.0) == 15.0
    assert log.reached(7.0, since_s=0.0) is None
    with pytest.raises(LocalProtocolError):
        log.change(25.0, 1.0)


def test_a_shortfall_is_explained_largest_cause_first() -> None:
    common: dict[str, Any] = {
        "unassigned_kw": 0.0,
        "lost_aggregators": [(2, 30.0)],
        "crashed_customers": (3, 6.0),
        "crashed_after_accepting": (0, 0.0),
        "lost_commands": (0, 0.0),
        "unavailable": (2, 4.0),
        "late": (0, 0.0),
        "not_sent": (0, 0.0),
        "orphaned": (0, 0.0),
    }
    reasons = explain_shortfall(
        requested_kw=100.0,
        achieved_kw=40.0,
        request_sent=True,
        flexibility_kw=80.0,
        known_flexibility_kw=70.0,
        **common,
    )
    assert [(r.reason, r.kw) for r in reasons] == [
        ("aggregator_lost", 30.0),
        ("not_enough_flexibility", 20.0),
        ("flexibility_unknown", 10.0),
        ("customers_crashed", 6.0),
        ("flexibility_unavailable", 4.0),
    ]
    down = explain_shortfall(
        requested_kw=100.0,
        achieved_kw=0.0,
        request_sent=False,
        flexibility_kw=0.0,
        known_flexibility_kw=0.0,
        **common,
    )
    assert [r.reason for r in down] == ["dso_down"]


# -- whole runs ------------------------------------------------------------------------


def test_the_request_is_met_within_the_deadline_despite_loss_and_failures() -> None:
    report = _run(SMALL)
    dr = report["dr"]
    assert dr["met"] and dr["dso_confirmed"] and dr["why"] is None, dr["why"]
    assert dr["achieved_kw"] >= dr["requested_kw"] and dr["shortfall_kw"] == 0.0
    # The load drops after each customer's activation delay (5..60 s), not at once.
    assert 5.0 < dr["time_to_activation_s"] <= dr["deadline_s"]
    assert dr["commanded_kw"] >= dr["requested_kw"] * 1.05  # over-selected
    assert dr["confirmed_kw"] <= dr["commanded_kw"]
    # What the meters delivered is what the aggregators confirmed, less the customers
    # that went down before their load was due to drop, plus answers that never came back.
    commands, customers = dr["commands"], dr["customers"]
    delivered = (
        dr["confirmed_kw"]
        - commands["crashed_after_accepting"]["kw"]
        + customers["accepted_unconfirmed_kw"]
    )
    assert dr["achieved_kw_end"] == pytest.approx(delivered, abs=0.01)
    assert dr["achieved_kw"] <= customers["region_flexibility_available_kw"]
    # The faults were there: some meters were down, some reports timed out.
    reports = dr["reports"]
    assert customers["down_at_end"] == 40 and reports["timeouts"] > 0
    assert reports["copies"] > reports["calls"] > reports["answered"]
    # Each meter is read about once a minute: 2,000 meters, 260 s.
    assert 2000 * 4 <= reports["calls"] <= 2000 * 5
    # Reports are ~800 bytes on the wire (seed 001): the meters sent them (and a few answers).
    traffic = dr["traffic"]["meters"]
    assert 700 < traffic["bytes"] / traffic["messages"] <= reports["report_bytes"] == 800
    assert sum(agg["meters"] for agg in dr["per_aggregator"]) == 2000
    assert report["bytes_sent"] == sum(role["bytes"] for role in dr["traffic"].values())


def test_the_reduction_series_is_what_the_report_says() -> None:
    report = _run(SMALL)
    dr, series = report["dr"], report["dr_reduction"]
    times, requested, achieved = series["time_s"], series["requested_kw"], series["achieved_kw"]
    assert len(times) == len(requested) == len(achieved) == 261 and times[-1] == 260.0
    assert all(kw == 0.0 for t, kw in zip(times, requested, strict=True) if t < 65.0)
    assert all(kw == 400.0 for t, kw in zip(times, requested, strict=True) if t >= 65.0)
    assert all(kw == 0.0 for t, kw in zip(times, achieved, strict=True) if t < 70.0)
    assert achieved == sorted(achieved)  # nothing is released within the run
    assert achieved[-1] == dr["achieved_kw_end"]
    reached_at = 65.0 + dr["time_to_activation_s"]
    assert achieved[math.ceil(reached_at)] >= 400.0 > achieved[math.floor(reached_at) - 1]


def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    first = json.dumps(_run(SMALL), sort_keys=True)
    assert json.dumps(_run(SMALL), sort_keys=True) == first
    assert json.dumps(_run(SMALL, seed=2), sort_keys=True) != first


def test_a_region_without_enough_flexibility_reports_the_shortfall_and_why() -> None:
    dr = _run(_with(request_kw=2000.0))["dr"]
    assert not dr["met"] and dr["time_to_activation_s"] is None
    assert dr["shortfall_kw"] == pytest.approx(2000.0 - dr["achieved_kw"], abs=0.001)
    assert _reasons(dr)[0] == "not_enough_flexibility"
    flexibility_kw = dr["customers"]["region_flexibility_up_kw"]
    assert dr["why"]["reasons"][0]["kw"] == pytest.approx(2000.0 - flexibility_kw, abs=0.001)
    # Every aggregator used what it had and said so; the DSO could place the rest nowhere.
    assert dr["achieved_kw"] <= dr["customers"]["region_flexibility_available_kw"]
    assert dr["dso"]["aggregators_exhausted"] == [2, 3, 4, 5]
    assert dr["dso"]["unassigned_kw"] > 0.0


def test_losing_the_only_commanding_aggregator_is_reported_not_hidden() -> None:
    # Four commands in flight at a time: it is down a second into its activation.
    text = _with(request_kw=300.0, region=[2], commands_inflight_max=4) + _crash(2, at_s=66.0)
    dr = _run(text)["dr"]
    assert not dr["met"] and not dr["dso_confirmed"]
    assert "aggregator_lost" in _reasons(dr)
    assert dr["dso"]["aggregators_lost"] == [2]
    (agg,) = [entry for entry in dr["per_aggregator"] if entry["node"] == 2]
    assert agg["requested"] and not agg["up_at_end"] and agg["commands"]["answered"] > 0
    # What its customers did shed before it went down still counts, and nothing more.
    assert 0.0 < dr["achieved_kw"] < 300.0


def test_a_lost_aggregators_share_goes_to_another_that_meets_it() -> None:
    text = _with(request_kw=200.0, region=[2, 3]) + _crash(2, at_s=30.0)
    dr = _run(text)["dr"]
    assert dr["met"] and dr["dso_confirmed"]
    assert dr["dso"]["aggregators_lost"] == [2]
    assert dr["dso"]["redistributed_kw"] > 0.0
    assert dr["dso"]["targets_kw"] == {"2": 0.0, "3": pytest.approx(200.0)}


def test_a_restarted_aggregator_finishes_its_activation() -> None:
    # Down 0.1 s after the request with commands in flight; back at 70 s with an empty table.
    text = _with(request_kw=200.0, region=[2]) + _crash(2, at_s=65.1, recover_s=70.0)
    dr = _run(text)["dr"]
    (agg,) = [entry for entry in dr["per_aggregator"] if entry["node"] == 2]
    assert agg["restarts"] == 1
    assert agg["commands"]["calls"] > agg["commands"]["answered"]  # some died with it
    assert dr["met"], dr["why"]
    assert dr["commands"]["orphaned"]["count"] == 0  # every command was answered in the end


def test_heavy_loss_is_reported_not_claimed_as_success() -> None:
    dr = _run(SMALL.replace("loss = 0.05", "loss = 0.9"))["dr"]
    assert not dr["met"] and not dr["dso_confirmed"]
    reasons = _reasons(dr)
    assert "commands_lost" in reasons and "flexibility_unknown" in reasons
    assert dr["commands"]["lost"]["count"] > 0


def test_a_reduction_the_dso_never_heard_of_is_said_so() -> None:
    # 80% loss: the customers shed enough, but the DSO's status polls mostly die.
    dr = _run(SMALL.replace("loss = 0.05", "loss = 0.8"))["dr"]
    assert dr["met"] and not dr["dso_confirmed"]
    assert _reasons(dr) == ["dso_not_informed"]


def test_no_request_is_sent_while_the_dso_is_down() -> None:
    dr = _run(SMALL + _crash(1, at_s=10.0))["dr"]
    assert not dr["request_sent"] and not dr["met"] and dr["achieved_kw"] == 0.0
    assert _reasons(dr) == ["dso_down"]


def test_with_security_on_the_pki_default_rights_allow_every_dr_call() -> None:
    # The DSO calls aggregator/#, aggregators call meter/#, meters only answer (docs/PKI.md).
    text = SMALL.replace("count = 2000", "count = 400").replace(
        "request_kw = 400.0", "request_kw = 80.0"
    )
    report = _run(text + "[security]\nenabled = true\n")
    assert report["rejected"] == {} and report["security"]["links_established"] > 0
    assert report["dr"]["met"] and report["dr"]["dso_confirmed"]


def test_the_summary_says_whether_the_request_was_met_and_why_not() -> None:
    rows = dict(summary_sections(_run(_with(request_kw=2000.0)))[-1])
    assert rows["DR requested / achieved"].startswith("2,000.0 / ")
    assert rows["  met within the deadline"].startswith("no: ")
    assert rows["  why"].startswith("not_enough_flexibility")


def test_the_example_is_the_acceptance_run_at_its_default_size() -> None:
    scenario = load_scenario(EXAMPLES / "dr-corrective.toml")
    assert scenario.dr is not None
    assert len(scenario.role_ids(scenario.dr.meters)) == 100_000
    assert scenario.network.lan.loss == scenario.network.wan.loss == 0.05
    assert [(c.role, c.fraction) for c in scenario.faults.crashed] == [("meter", 0.02)]
    assert scenario.dr.deadline_s == 180.0


def test_the_cli_writes_the_reduction_csv(tmp_path: Path) -> None:
    path = tmp_path / "dr.toml"
    path.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--quiet", "--no-html", "--out", str(out)]) == 0
    rows = (out / "dr_reduction.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "time_s,requested_kw,achieved_kw" and len(rows) == 262


# -- scenario-file errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (("request_kw = 400.0", 'request_kw = 400.0\ndso = "utility"'), "dr.dso", "a role of"),
        (("request_kw = 400.0", 'request_kw = 400.0\nmeters = "dso"'), "dr.meters", "three"),
        (("request_kw = 400.0", "request_kw = 400.0\nregion = [2, 50]"), "dr.region[1]", "2..5"),
        (("request_kw = 400.0", "request_kw = 400.0\nregion = [2, 2]"), "dr.region", "distinct"),
        (("request_kw = 400.0", "request_kw = 0.0"), "dr.request_kw", "greater than 0"),
        (("fault_at_s = 65.0\n", ""), "dr.fault_at_s", "this field is required"),
        (("fault_at_s = 65.0", "fault_at_s = 100.0"), "dr.deadline_s", "within the run"),
        (
            ("request_kw = 400.0", "request_kw = 400.0\nreduction_s = 60.0"),
            "dr.reduction_s",
            "at least deadline_s",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\ncommand_timeout_s = 60.0"),
            "dr.command_timeout_s",
            "node.services.timeout_s_max",
        ),
        (
            ("calls_pending_max = 256", "calls_pending_max = 16"),
            "node.services.calls_pending_max",
            "at least 73",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\nreport_bytes = 65000"),
            "dr.report_bytes",
            "to fit one message",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\nsample_interval_s = 0.001"),
            "dr.sample_interval_s",
            "at least duration_s",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\nreport_interval_s = 0.5"),
            "dr.report_interval_s",
            "at least 1",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\nmargn = 0.2"),
            "dr.margn",
            "no such field",
        ),
        (
            (
                "request_kw = 400.0",
                "request_kw = 400.0\n[dr.customers]\n"
                'activation_delay_s = { model = "uniform", low = -5.0, high = 60.0 }',
            ),
            "dr.customers.activation_delay_s",
            "a distribution of values in 0..3,600",
        ),
        (
            ("request_kw = 400.0", "request_kw = 400.0\n[dr.customers]\nunavailable_share = 2"),
            "dr.customers.unavailable_share",
            "at most 1",
        ),
    ],
)
def test_dr_errors_name_the_file_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = SMALL.replace(*edit, 1)
    assert text != SMALL
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="dr.toml")
    assert caught.value.source == "dr.toml"
    assert caught.value.field == field
    assert expected in caught.value.expected


def test_an_aggregator_serves_at_most_what_one_dr_shed_rule_can_command() -> None:
    text = SMALL.replace("count = 4", "count = 1").replace("count = 2000", "count = 100001")
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="dr.toml")
    assert caught.value.field == "dr.aggregators"
    assert "at most 100,000 meters each" in caught.value.expected
