"""Scenario files, the runner that simulates them, and their reports."""

from gridmesh.scenarios._report import percentiles, render_summary, write_report
from gridmesh.scenarios._runner import run_scenario
from gridmesh.scenarios._schema import Scenario, load_scenario, parse_scenario

__all__ = [
    "Scenario",
    "load_scenario",
    "parse_scenario",
    "percentiles",
    "render_summary",
    "run_scenario",
    "write_report",
]
