"""Everything ``gridmesh simulate`` writes for a run: JSON, CSV files and a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridmesh.scenarios._csv import write_csvs
from gridmesh.scenarios._html import write_html
from gridmesh.scenarios._report import write_report
from gridmesh.scenarios._schema import Scenario

__all__ = ["write_outputs"]


def write_outputs(
    report: dict[str, Any],
    directory: Path,
    *,
    scenario: Scenario | None = None,
    source: str | None = None,
    html: bool = True,
) -> list[Path]:
    """Write ``report.json``, the CSV files and, unless ``html`` is false, ``report.html``.

    ``scenario`` and ``source`` (the file's text) put the parameters in the page.
    Returns the paths written, ``report.json`` first.
    """
    written = [write_report(report, directory), *write_csvs(report, directory)]
    if html:
        parameters = None if scenario is None else scenario.model_dump(mode="json")
        written.append(write_html(report, directory, source=source, parameters=parameters))
    else:  # a page left from an earlier run would describe another report
        (directory / "report.html").unlink(missing_ok=True)
    return written
