"""Aggregation in scenario files: readings, [[aggregate]], [[estimate]], the night-demand example.

Seed 000, IV.C, second scenario: meters report their devices' energy needs for
the next night's three 8-hour periods and the utility sums them. The examples
run here with fewer meters (same settings otherwise) to keep the tests fast.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gridmesh.errors import ConfigError
from gridmesh.scenarios import (
    Scenario,
    draw_reading,
    load_scenario,
    parse_scenario,
    render_summary,
    run_scenario,
    write_report,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NIGHT = EXAMPLES / "night-demand.toml"
NIGHT_FAULTS = EXAMPLES / "night-demand-faults.toml"


def shrunk(path: Path, *, meters: int = 300, dtcs: int = 3, seed: int | None = None) -> Scenario:
    """The example at ``path`` with fewer meters and DTCs, everything else as written."""
    raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    counts = {"meter": meters, "dtc": dtcs}
    for role in raw["roles"]:
        role["count"] = counts.get(role["name"], role["count"])
    if seed is not None:
        raw["simulation"]["seed"] = seed
    return Scenario.model_validate(raw)


def aggregates(report: dict[str, object]) -> list[dict[str, Any]]:
    section = report["aggregates"]
    assert isinstance(section, list)
    return section


def test_both_night_demand_examples_parse_at_full_size() -> None:
    plain, faulty = load_scenario(NIGHT), load_scenario(NIGHT_FAULTS)
    assert plain.node_count == faulty.node_count == 3031
    assert [q.function for q in plain.aggregate] == ["vector_sum", "count", "max"]
    assert plain.readings["night_kwh"].length == 3
    assert not plain.faults.crashed and faulty.faults.crashed


@pytest.mark.parametrize("seed", [1, 2])
def test_without_faults_the_night_totals_equal_the_truth_exactly(seed: int) -> None:
    scenario = shrunk(NIGHT, seed=seed)
    report = run_scenario(scenario)
    meters = scenario.role_ids("meter")
    # The truth, computed here from the readings themselves, not taken from the report.
    nights = [draw_reading(scenario.readings["night_kwh"], "night_kwh", i, seed) for i in meters]
    assert all(isinstance(night, list) and len(night) == 3 for night in nights)
    per_period = [math.fsum(night[k] for night in nights) for k in range(3)]  # type: ignore[index]
    totals = [math.fsum(night) for night in nights]  # type: ignore[arg-type]
    vector, count, largest = aggregates(report)
    assert vector["value"] == vector["truth"] == per_period, f"seed {seed}"
    assert count["value"] == count["truth"] == len(meters), f"seed {seed}"
    assert largest["value"] == largest["truth"] == max(totals), f"seed {seed}"
    for query in (vector, count, largest):
        assert query["exact"] and query["complete"], f"seed {seed}: {query}"
        assert query["fanout"] == 12  # the example's, not the default
        assert query["contributors"] == query["readers_up"] == len(meters)
        assert query["took_part"] == query["nodes_up"] == scenario.node_count
        assert query["missing"] == query["declined"] == 0
        assert query["coverage"] == 1.0
        assert query["seconds"] < 10.0  # every child answered: no timeout
    assert vector["relative_error"] == [0.0, 0.0, 0.0]
    (estimate,) = report["estimates"]  # type: ignore[misc]
    assert estimate["truth"] == math.fsum(totals)
    assert estimate["nodes_with_value"] == scenario.node_count
    assert estimate["relative_error"]["max"] < 0.01, f"seed {seed}"


def test_the_same_seed_gives_byte_identical_reports_and_another_seed_does_not(
    tmp_path: Path,
) -> None:
    def report_bytes(seed: int, name: str) -> bytes:
        report = run_scenario(shrunk(NIGHT_FAULTS, meters=200, dtcs=2), seed=seed)
        return write_report(report, tmp_path / name).read_bytes()

    first, second, other = report_bytes(7, "a"), report_bytes(7, "b"), report_bytes(8, "c")
    assert first == second
    assert first != other
    assert json.loads(first)["aggregates"] != json.loads(other)["aggregates"]


def test_under_loss_and_crashes_the_result_comes_by_the_timeout_with_its_coverage() -> None:
    scenario = shrunk(NIGHT_FAULTS, seed=3)
    report = run_scenario(scenario)
    vector, count, largest, again = aggregates(report)
    for query in (vector, count, largest, again):
        assert query["answered"], "seed 3"
        assert query["seconds"] <= 10.0  # by the origin's timeout, whatever was lost
        assert query["missing"] > 0  # lost queries and "not your child" answers, at least
        assert query["coverage"] == round(query["contributors"] / query["readers_up"], 6)
    for query in (vector, count, largest):  # crashed parents took their subtrees along
        assert 0 < query["contributors"] < query["readers_up"], "seed 3"
        assert not query["exact"]
    # After the crashes, loss alone costs nothing: a value reply goes again until acked.
    assert again["contributors"] == again["readers_up"] and again["exact"], "seed 3"
    # A count is the contributors, by definition: the coverage the origin reports is honest.
    assert count["value"] == count["contributors"]
    # Needs are never negative, so a partial sum stays below the truth, period by period.
    assert all(v < t for v, t in zip(vector["value"], vector["truth"], strict=True))
    assert all(0 < e < 1 for e in vector["relative_error"])
    # 5% of 300 meters crashed during the first query; the second sees only the survivors.
    assert vector["readers_up"] == 300 and again["readers_up"] == 285
    assert report["network"]["lost"] > 0  # type: ignore[index]


def test_each_query_is_charged_its_own_messages_only() -> None:
    # Static membership and no broadcasts: the queries are the only traffic, so the
    # per-query counts must add up to everything the simulator sent.
    scenario = shrunk(NIGHT, meters=200, dtcs=2)
    scenario = scenario.model_copy(update={"estimate": []})
    report = run_scenario(scenario)
    queries = aggregates(report)
    assert sum(q["messages"] for q in queries) == report["messages_sent"]
    assert sum(q["bytes"] for q in queries) == report["bytes_sent"]
    fanout = scenario.node.aggregation.fanout
    assert fanout is not None
    nodes = scenario.node_count
    for query in queries:
        # Each node asks `fanout` children once and answers each query copy once, and
        # each value reply but the origin's result is acknowledged once ...
        base = 2 * fanout * nodes + (nodes - 1)
        # ... unless its ACK was slower than a quarter of the hop budget (a WAN link's
        # tail): then a copy of the reply went, and got an ACK of its own.
        extra = query["messages"] - base
        assert 0 <= extra <= nodes // 20 and extra % 2 == 0, query["messages"]
        assert query["messages_per_node"]["max"] >= fanout


READINGS = """
name = "readings"
[simulation]
duration_s = 20.0
seed = 2
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter"
count = 150
[node.membership]
exchange_interval_s = 0
[node.aggregation]
fanout = 12
[readings.one]
roles = ["meter"]
value = { model = "constant", value = 1.0 }
[readings.night]
roles = ["meter"]
devices_min = 0
devices_max = 3
vector = [{ model = "uniform", low = 0.0, high = 2.0 }, { model = "constant", value = 0.5 }]
[readings.night_total]
total_of = "night"
[[aggregate]]
at_s = 5.0
origin = "utility"
function = "sum"
reading = "one"
[[aggregate]]
at_s = 5.0
origin = "utility"
function = "vector_sum"
reading = "night"
params = { length = 2 }
[[estimate]]
at_s = 1.0
origin = 2
function = "size"
rounds = 15
"""


def test_a_restarted_meter_answers_with_the_reading_it_had() -> None:
    text = READINGS + "[[faults.crashes]]\nnode = 40\nat_s = 1.0\nrecover_s = 3.0\n"
    report = run_scenario(parse_scenario(text))
    ones, night = aggregates(report)
    assert ones["value"] == 150.0 and ones["exact"], "seed 2"  # node 40 included again
    assert night["exact"], "seed 2"


def test_readings_are_drawn_per_node_and_held_by_their_roles_only() -> None:
    scenario = parse_scenario(READINGS)
    spec = scenario.readings["night"]
    first = draw_reading(spec, "night", 17, seed=2)
    assert draw_reading(spec, "night", 17, seed=2) == first
    assert draw_reading(spec, "night", 17, seed=3) != first or first == [0.0, 0.0]
    assert scenario.reading_holders("night") == list(range(2, 152))
    assert scenario.reading_holders("night_total") == list(range(2, 152))
    # 0-3 devices of 0.5 kWh each in the second element: a multiple of 0.5 up to 1.5.
    seconds = {draw_reading(spec, "night", i, seed=2)[1] for i in range(2, 152)}  # type: ignore[index]
    assert seconds == {0.0, 0.5, 1.0, 1.5}
    report = run_scenario(scenario)
    ones, _ = aggregates(report)
    assert ones["readers_up"] == 150 and ones["nodes_up"] == 151
    (size,) = report["estimates"]  # type: ignore[misc]
    assert size["truth"] == 151.0 and size["readers_up"] is None
    assert size["relative_error"]["max"] < 0.05, "seed 2"


def test_the_summary_shows_each_query_beside_its_truth() -> None:
    report = run_scenario(shrunk(NIGHT, meters=100, dtcs=1))
    console = Console(width=120, record=True)
    console.print(render_summary(report))
    text = console.export_text()
    assert "vector_sum(night_kwh) from 1 at 2.0 s" in text
    assert "truth (readers up at start)" in text and "exact" in text
    assert "push-sum sum(night_total_kwh)" in text
    assert "delivery ratio" not in text  # no broadcasts: their rows would say nothing


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (('function = "sum"', 'function = "summ"'), "aggregate[0]", "unknown aggregation"),
        (("length = 2", "length = 3"), "(top level)", "vector_sum length 3 does not fit"),
        (('reading = "one"', 'reading = "night"'), "(top level)", "is a vector"),
        (('reading = "one"', 'reading = "two"'), "(top level)", "names reading 'two'"),
        (("at_s = 5.0", "at_s = 15.0"), "(top level)", "after the end of the run"),
        (("rounds = 15", "rounds = 25"), "(top level)", "end after the run"),
        (('function = "size"', 'function = "mean"'), "estimate[0]", "mean and sum need one"),
        (('total_of = "night"', 'total_of = "one"'), "(top level)", "must name a vector"),
        (('roles = ["meter"]', 'roles = ["meters"]'), "(top level)", "unknown role 'meters'"),
        (("devices_max = 3", "devices_max = -1"), "readings.night.devices_max", "at least 0"),
        (
            (
                "[readings.night_total]",
                '[readings.night_total]\nvalue = { model = "constant", value = 1 }',
            ),
            "readings.night_total",
            "exactly one of",
        ),
        (("high = 2.0", "high = -2.0"), "readings.night.vector[0].uniform", "at least low"),
        (('origin = "utility"', 'origin = "dso"'), "(top level)", "unknown role 'dso'"),
        (("origin = 2", "origin = 999"), "(top level)", "not a node id"),
    ],
)
def test_aggregation_errors_name_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = READINGS.replace(*edit, 1)
    assert text != READINGS
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="night.toml")
    assert caught.value.field == field, caught.value
    assert expected in caught.value.expected, caught.value


def test_crashes_spread_over_a_window_fall_inside_it() -> None:
    text = READINGS + (
        '[[faults.crashed]]\nrole = "meter"\nfraction = 0.2\nat_s = 5.0\nspread_s = 1.0\n'
    )
    scenario = parse_scenario(text)
    report = run_scenario(scenario)
    ones, _ = aggregates(report)
    assert ones["readers_up"] == 150  # all up when the query starts at 5.0 s
    assert report["live_nodes"] == 151 - 30
    with pytest.raises(ConfigError, match="recover_s"):
        parse_scenario(text + "recover_s = 5.5\n")


SEGMENTS = """
name = "segments"
[simulation]
duration_s = 20.0
seed = 4
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter_a"
count = 60
groups = ["feeder-1"]
[[roles]]
name = "meter_b"
count = 90
groups = ["feeder-2"]
[node.membership]
exchange_interval_s = 0
[node.aggregation]
fanout = 12
[readings.volts]
roles = ["meter_a", "meter_b"]
value = { model = "uniform", low = 220.0, high = 240.0 }
[readings.phases]
roles = ["meter_a", "meter_b"]
vector = [{ model = "uniform", low = 220.0, high = 240.0 }, { model = "constant", value = 230 }]
[[aggregate]]
at_s = 5.0
origin = "utility"
function = "sum"
reading = "volts"
segment = "feeder-1"
[[aggregate]]
at_s = 5.0
origin = "utility"
function = "collect"
reading = "volts"
segment = "feeder-1"
[[aggregate]]
at_s = 5.0
origin = "utility"
function = "collect"
reading = "volts"
params = { limit = 100 }
[[aggregate]]
at_s = 5.0
origin = 2
function = "collect"
reading = "phases"
segment = "feeder-2"
"""


def test_a_segment_query_and_collect_are_reported_against_the_segments_truth() -> None:
    scenario = parse_scenario(SEGMENTS)
    feeder_1, feeder_2 = scenario.group_ids("feeder-1"), scenario.group_ids("feeder-2")
    assert (feeder_1, feeder_2) == (list(range(2, 62)), list(range(62, 152)))
    report = run_scenario(scenario)
    total, pairs, capped, vectors = aggregates(report)
    # The truth, computed here: feeder 1's meters only, not the 150 meters.
    volts = [draw_reading(scenario.readings["volts"], "volts", i, seed=4) for i in feeder_1]
    assert total["value"] == total["truth"] == math.fsum(volts)  # type: ignore[arg-type]
    assert total["segment"] == "feeder-1" and total["readers_up"] == 60
    assert pairs["value"] == pairs["truth"]
    assert pairs["value"] == {"pairs": 60, "dropped": 0, "cut": None, "truncated": False}
    # Meters 2..151 answer; limit 100 keeps the lowest ids, 2..101, and cuts at 102.
    assert capped["value"] == capped["truth"]
    assert capped["value"] == {"pairs": 100, "dropped": 50, "cut": 102, "truncated": True}
    assert capped["segment"] is None and capped["readers_up"] == 150
    # The origin is a feeder-2 meter: it contributes its own [volts, 230] pair.
    assert vectors["value"] == vectors["truth"]
    assert vectors["value"] == {"pairs": 90, "dropped": 0, "cut": None, "truncated": False}
    bytes_max = scenario.node.message_bytes_max - 128  # Node.collect's default: one reply
    for query, readers in ((total, 60), (pairs, 60), (capped, 150), (vectors, 90)):
        assert query["exact"] and query["complete"], query
        assert query["contributors"] == query["readers_up"] == readers
        assert query["coverage"] == 1.0
        if query["function"] == "collect":
            assert query["params"]["bytes_max"] == bytes_max
            assert query["relative_error"] is None  # pairs have no error, only equality
    assert capped["params"] == {"limit": 100, "bytes_max": bytes_max}

    console = Console(width=120, record=True)
    console.print(render_summary(report))
    text = console.export_text()
    assert "collect(volts) in feeder-1 from 1 at 5.0 s" in text
    assert "100 pairs, 50 dropped" in text


def test_under_loss_a_collect_holds_fewer_pairs_than_the_truth_and_is_not_exact() -> None:
    # 40%: a value reply goes up to four times until acknowledged, so 10% lost nothing.
    link = 'loss = 0.4\nlatency = { model = "uniform", low_s = 0.002, high_s = 0.010 }\n'
    lossy = f"[network.lan]\n{link}[network.wan]\n{link}[node.membership]"
    text = SEGMENTS.replace("[node.membership]", lossy)
    scenario = parse_scenario(text)
    scenario = scenario.model_copy(update={"aggregate": scenario.aggregate[1:2]})
    (pairs,) = aggregates(run_scenario(scenario))
    assert pairs["answered"] and not pairs["exact"], "seed 4"
    assert pairs["truth"]["pairs"] == pairs["readers_up"] == 60
    # Every pair that came is a contributor's: none is invented, none dropped silently.
    assert 0 < pairs["value"]["pairs"] == pairs["contributors"] < 60, "seed 4"
    assert pairs["value"]["dropped"] == 0 and pairs["missing"] > 0


_WIDE = ", ".join(['{ model = "constant", value = 1 }'] * 65)


@pytest.mark.parametrize(
    ("edit", "field", "expected"),
    [
        (('segment = "feeder-1"', 'segment = "feeder-3"'), "(top level)", "no node's group"),
        (('segment = "feeder-1"', 'segment = ""'), "aggregate[0].segment", "at least 1"),
        (
            ("params = { limit = 100 }", "params = { k = 3 }"),
            "aggregate[2]",
            "collect",
        ),
        (
            ("params = { limit = 100 }", "params = { bytes_max = 4000 }"),
            "(top level)",
            "would not fit one reply",
        ),
        (
            (
                '[readings.phases]\nroles = ["meter_a", "meter_b"]\nvector = [',
                f"[readings.phases]\nvector = [{_WIDE}]\n#",
            ),
            "(top level)",
            "at most 64 elements",
        ),
    ],
)
def test_segment_and_collect_errors_name_the_field_and_what_is_expected(
    edit: tuple[str, str], field: str, expected: str
) -> None:
    text = SEGMENTS.replace(*edit, 1)
    assert text != SEGMENTS
    if "bytes_max" in edit[1]:
        text = text.replace(
            "[node.membership]", "[node]\nmessage_bytes_max = 4096\n[node.membership]"
        )
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, source="segments.toml")
    assert caught.value.field == field, caught.value
    assert expected in caught.value.expected, caught.value
