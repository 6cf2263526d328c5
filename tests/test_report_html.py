"""`gridmesh simulate` writes report.html and CSV files beside report.json.

The page is self-contained (nothing external, no script), shows what was run
and a plot per series the report has, and is byte-identical for the same
scenario and seed, across processes. The browser side is in
tests/test_report_html_chromium.py.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gridmesh.cli import main
from gridmesh.scenarios import parse_scenario, render_html, run_scenario, write_outputs
from gridmesh.scenarios._html import PLOT_TITLES

# Two broadcasts (one inside a partition), crashes and loss; a description that needs escaping.
SMALL = """
name = "report-small"
description = "Tariff <b>&</b> \\"quotes\\" <script>alert(1)</script>"
[simulation]
duration_s = 8.0
seed = 4
[[roles]]
name = "utility"
count = 1
[[roles]]
name = "meter"
count = 200
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

BASIC_FILES = {
    "report.json",
    "report.html",
    "summary.csv",
    "delivery.csv",
    "latency_cdf.csv",
    "load_per_node.csv",
}


def simulate(directory: Path, *args: str) -> Path:
    scenario = directory / "small.toml"
    if not scenario.exists():
        scenario.write_text(SMALL, encoding="utf-8")
    out = directory / "out"
    assert main(["simulate", str(scenario), "--quiet", "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI run of SMALL, shared read-only by the tests below."""
    return simulate(tmp_path_factory.mktemp("small"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


class _Links(HTMLParser):
    """Every src and href of a page, and whether it has a <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name == "src":
                self.sources.append(value or "")
            elif name == "href":
                self.links.append(value or "")


def test_simulate_writes_a_page_and_a_csv_per_series_beside_the_report(small_run: Path) -> None:
    assert {path.name for path in small_run.iterdir()} == BASIC_FILES
    page = (small_run / "report.html").read_text(encoding="utf-8")
    report = json.loads((small_run / "report.json").read_text(encoding="utf-8"))
    assert "<h1>report-small</h1>" in page
    assert "<dt>seed</dt><dd>4</dd>" in page
    assert f"<dt>gridmesh version</dt><dd>{report['gridmesh_version']}</dd>" in page
    for key in ("delivery", "latency_cdf", "load_per_node"):
        assert f"<figcaption>{PLOT_TITLES[key]}</figcaption>" in page
    for key in ("dr_reduction", "imbalance"):  # no data, no plot
        assert PLOT_TITLES[key] not in page
    # The summary figures the terminal shows.
    assert "delivery ratio (live)" in page and f"{report['messages_sent']:,}" in page


def test_the_page_loads_nothing_and_runs_nothing(small_run: Path) -> None:
    page = (small_run / "report.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "default-src 'none'" in page  # the browser refuses anything that slipped in
    assert len(parser.sources) == 3
    assert all(src.startswith("data:image/svg+xml;base64,") for src in parser.sources)
    for link in parser.links:  # anchors in the page, or the files beside it
        assert link.startswith("#") or (small_run / link).is_file(), link
    assert "url(" not in page and "@import" not in page and "http://" not in page
    assert 'alt=""' not in page and page.count(' alt="') == 3


def test_scenario_text_is_shown_escaped_with_every_parameter(small_run: Path) -> None:
    page = (small_run / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page and "<b>&</b>" not in page
    assert "Tariff &lt;b&gt;&amp;&lt;/b&gt; &quot;quotes&quot; &lt;script&gt;" in page
    assert "fanout = 7" in page  # the file, as written
    # Defaults the file does not set are listed too.
    assert "<code>node.gossip.seen_cache_max</code>" in page
    assert "<code>faults.partitions[0].fractions</code></th><td><code>[0.5, 0.5]</code>" in page


def test_two_runs_give_byte_identical_pages_and_csvs_and_another_seed_does_not(
    small_run: Path, tmp_path: Path
) -> None:
    # The second run is another process with another hash seed: nothing may depend on either.
    (tmp_path / "small.toml").write_text(SMALL, encoding="utf-8")
    command = [sys.executable, "-m", "gridmesh.cli", "simulate", str(tmp_path / "small.toml")]
    subprocess.run(
        [*command, "--quiet", "--out", str(tmp_path / "again")],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        timeout=120,
    )
    for name in sorted(BASIC_FILES):
        assert (tmp_path / "again" / name).read_bytes() == (small_run / name).read_bytes(), name
    other = simulate(tmp_path, "--seed", "5")
    page = (other / "report.html").read_text(encoding="utf-8")
    assert page != (small_run / "report.html").read_text(encoding="utf-8")
    assert "given on the command line; the file says 4" in page


def test_csv_files_hold_the_series_of_the_report_with_units_in_their_headers(
    small_run: Path,
) -> None:
    report = json.loads((small_run / "report.json").read_text(encoding="utf-8"))
    delivery = read_csv(small_run / "delivery.csv")
    assert list(delivery[0]) == [
        "broadcast_index",
        "at_s",
        "origin",
        "topic",
        "time_after_broadcast_s",
        "time_s",
        "reached_fraction",
    ]
    for index, broadcast in enumerate(report["per_broadcast"]):
        rows = [row for row in delivery if row["broadcast_index"] == str(index)]
        assert [float(row["time_after_broadcast_s"]) for row in rows] == broadcast["latency_cdf_s"]
        assert float(rows[0]["reached_fraction"]) == 0.0
        assert float(rows[-1]["reached_fraction"]) == broadcast["delivery_ratio"]
        assert float(rows[-1]["time_s"]) == pytest.approx(
            broadcast["at_s"] + broadcast["latency_s"]["max"]
        )
    latency = read_csv(small_run / "latency_cdf.csv")
    assert list(latency[0]) == ["fraction_of_deliveries", "latency_s"]
    assert [float(row["latency_s"]) for row in latency] == report["latency_cdf_s"]
    assert float(latency[-1]["latency_s"]) == report["latency_s"]["max"]
    load = read_csv(small_run / "load_per_node.csv")
    assert list(load[0]) == ["fraction_of_nodes", "messages_sent"]
    assert int(load[-1]["messages_sent"]) == report["messages_per_node"]["max"]
    assert float(load[-1]["fraction_of_nodes"]) == 1.0
    summary = {row["metric"]: row["value"] for row in read_csv(small_run / "summary.csv")}
    assert float(summary["delivery_ratio"]) == report["delivery_ratio"]
    assert float(summary["latency_s.p99"]) == report["latency_s"]["p99"]
    assert summary["per_broadcast[1].topic"] == "TARIFF/RTP"
    assert summary["per_broadcast[0].sent"] == "true" and summary["overlay"] == ""
    assert not any("latency_cdf_s" in metric for metric in summary)  # those have their own CSV


def test_a_plot_and_a_csv_whose_data_is_absent_are_left_out(small_run: Path) -> None:
    report = json.loads((small_run / "report.json").read_text(encoding="utf-8"))
    quiet = copy.deepcopy(report)  # as a run whose only broadcast reached nobody
    for broadcast in quiet["per_broadcast"]:
        broadcast["latency_cdf_s"] = [None] * 51
    quiet["latency_cdf_s"] = [None] * 51
    page = render_html(quiet)
    assert PLOT_TITLES["load_per_node"] in page
    assert PLOT_TITLES["delivery"] not in page and PLOT_TITLES["latency_cdf"] not in page
    del quiet["messages_per_node_cdf"]  # as a report written before the series existed
    assert "no series to plot" in render_html(quiet)
    assert "<figure" not in render_html(quiet)


def series_report(small_run: Path, **series: Any) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((small_run / "report.json").read_text(encoding="utf-8"))
    report.update(series)
    return report


def test_the_grid_services_series_are_plotted_and_written_when_present(
    small_run: Path, tmp_path: Path
) -> None:
    report = series_report(
        small_run,
        dr_reduction={
            "time_s": [0.0, 60.0, 120.0, 180.0],
            "requested_kw": [0.0, 500.0, 500.0, 0.0],
            "achieved_kw": [0.0, 410.5, None, 20.0],
        },
        imbalance={
            "time_s": [0.0, 1.0, 2.0],
            "imbalance_kw": [120.0, -40.0, 5.0],
            "centralized_optimum_kw": [0.0, 0.0, 0.0],
        },
        load_shifted={"time_s": [0.0, 10.0, 20.0], "shifted_kw": [0.0, 47.5, 47.5]},
    )
    written = write_outputs(report, tmp_path, source=SMALL)
    assert {path.name for path in written} == BASIC_FILES | {
        "dr_reduction.csv",
        "imbalance.csv",
        "load_shifted.csv",
    }
    reduction = (tmp_path / "dr_reduction.csv").read_text(encoding="utf-8")
    assert reduction.splitlines() == [
        "time_s,requested_kw,achieved_kw",
        "0.0,0.0,0.0",
        "60.0,500.0,410.5",
        "120.0,500.0,",  # no value at that time
        "180.0,0.0,20.0",
    ]
    imbalance = (tmp_path / "imbalance.csv").read_text(encoding="utf-8")
    assert imbalance.splitlines()[0] == "time_s,imbalance_kw,centralized_optimum_kw"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for title in PLOT_TITLES.values():
        assert f"<figcaption>{title}</figcaption>" in page
    assert "largest requested 500 kW, largest achieved 410 kW" in page  # the alt text
    assert "largest absolute imbalance 120 kW; centralized optimum (dashed) 0 kW" in page
    assert "from 0 s to 20 s: largest 47.5 kW" in page  # the devices' moved load
    shifted = (tmp_path / "load_shifted.csv").read_text(encoding="utf-8")
    assert shifted.splitlines() == ["time_s,shifted_kw", "0.0,0.0", "10.0,47.5", "20.0,47.5"]
    # The optimum is optional; a later run without the series removes the stale CSV files.
    del report["imbalance"]["centralized_optimum_kw"], report["dr_reduction"]
    write_outputs(report, tmp_path, html=False)
    assert (tmp_path / "imbalance.csv").read_text().splitlines()[0] == "time_s,imbalance_kw"
    assert not (tmp_path / "dr_reduction.csv").exists()


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ({"time_s": [0.0, 1.0], "requested_kw": [1.0], "achieved_kw": [1.0, 2.0]}, "as long as"),
        ({"time_s": [0.0], "requested_kw": [1.0]}, r"missing \['achieved_kw'\]"),
        ({"time_s": [0.0], "requested_kw": [1.0], "achieved_kw": [1.0], "kw": [1]}, "unknown"),
        ({"time_s": [None], "requested_kw": [1.0], "achieved_kw": [1.0]}, "must hold numbers"),
        ({"time_s": [0.0], "requested_kw": ["1"], "achieved_kw": [1.0]}, "numbers or null"),
        ([1.0, 2.0], "object of columns"),
    ],
)
def test_a_series_of_the_wrong_shape_is_refused_naming_its_key(
    small_run: Path, tmp_path: Path, series: object, message: str
) -> None:
    report = series_report(small_run, dr_reduction=series)
    with pytest.raises(ValueError, match=message) as error:
        write_outputs(report, tmp_path, html=False)
    assert "dr_reduction" in str(error.value)


def test_a_long_series_is_thinned_in_the_plot_and_whole_in_the_csv(
    small_run: Path, tmp_path: Path
) -> None:
    count = 10_001
    report = series_report(
        small_run,
        imbalance={
            "time_s": [float(t) for t in range(count)],
            "imbalance_kw": [float(t % 7) for t in range(count)],
        },
    )
    written = write_outputs(report, tmp_path)
    assert len((tmp_path / "imbalance.csv").read_text().splitlines()) == count + 1
    page = written[-1].read_text(encoding="utf-8")
    assert "One point in 3 of 10,001 is drawn; imbalance.csv holds them all." in page


def test_no_html_writes_json_and_csv_only_and_removes_an_older_page(tmp_path: Path) -> None:
    out = simulate(tmp_path)
    assert (out / "report.html").exists()
    simulate(tmp_path, "--no-html")
    assert {path.name for path in out.iterdir()} == BASIC_FILES - {"report.html"}


def test_a_report_from_run_scenario_renders_without_a_scenario_file() -> None:
    report = run_scenario(parse_scenario(SMALL))
    page = render_html(report)
    assert "<h1>report-small</h1>" in page and "was not given to the report writer" in page
