"""Scenario files, the runner that simulates them, their reports and comparisons."""

from gridmesh.scenarios._compare import (
    comparison_rows,
    render_comparison,
    run_comparison,
    write_comparison,
)
from gridmesh.scenarios._csv import write_csvs
from gridmesh.scenarios._html import render_html, write_html
from gridmesh.scenarios._outputs import write_outputs
from gridmesh.scenarios._readings import ReadingSpec, draw_reading, reading_table
from gridmesh.scenarios._report import percentiles, render_summary, write_report
from gridmesh.scenarios._runner import node_configs, run_scenario
from gridmesh.scenarios._schema import Scenario, load_scenario, parse_scenario

__all__ = [
    "ReadingSpec",
    "Scenario",
    "comparison_rows",
    "draw_reading",
    "load_scenario",
    "node_configs",
    "parse_scenario",
    "percentiles",
    "reading_table",
    "render_comparison",
    "render_html",
    "render_summary",
    "run_comparison",
    "run_scenario",
    "write_comparison",
    "write_csvs",
    "write_html",
    "write_outputs",
    "write_report",
]
