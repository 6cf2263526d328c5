"""Shared test configuration. Every failure that depends on a seed prints it."""

from __future__ import annotations


def pytest_report_header() -> str:
    return "gridmesh: simulator runs are seeded; a failing seed is printed in its message"
