"""``report.html``: one self-contained page per run that a person can read.

The page holds what was run (name, seed, code version, the scenario file and
every parameter with its default), the summary figures ``gridmesh simulate``
prints, and a plot of each series the report has (:mod:`._series`): a plot
whose data is absent is left out, never drawn empty.

Rules the page keeps:

- **Nothing external.** Plots are SVG (matplotlib, glyphs drawn as paths so
  no font is needed) in ``data:`` URIs; the CSS is inline; there is no script.
  A Content-Security-Policy of ``default-src 'none'`` makes the browser refuse
  anything else, so the page opens the same offline, from a mail attachment or
  a CI artifact.
- **Deterministic.** Equal reports and scenario files give equal bytes:
  matplotlib runs with its default style (a user's matplotlibrc does not leak
  in), a fixed ``svg.hashsalt`` for the ids it would otherwise draw at random,
  no date in the SVG metadata, and no wall-clock figure or path in the page.
  The bytes depend on the matplotlib version, which the footer names.
- **Readable anywhere.** Each plot has a caption and alt text that states its
  main figures; the layout is one column that fits a phone's width; tables
  and the scenario file scroll sideways inside themselves if they must.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridmesh.scenarios._report import summary_sections
from gridmesh.scenarios._series import Cell, Series, numbers, report_series

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["PLOT_TITLES", "render_html", "write_html"]

PLOT_TITLES = {
    "delivery": "Delivery over time",
    "latency_cdf": "Latency CDF",
    "load_per_node": "Messages sent per node",
    "dr_reduction": "Requested vs achieved reduction",
    "imbalance": "Imbalance over time",
    "load_shifted": "Load moved earlier by devices",
}

_CURVES_MAX = 10  # broadcasts drawn in one delivery plot (delivery.csv has them all)
_POINTS_MAX = 4000  # points per line in a time-series plot (the CSV has them all)
_SOURCE_CHARS_MAX = 200_000  # of the scenario file shown in the page
_PARAMETER_ROWS_MAX = 2000
_LEGEND_CHARS_MAX = 40

# Matplotlib settings on top of its default style; svg.hashsalt makes the ids stable.
_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "gridmesh-report",
    "svg.fonttype": "path",
    "font.size": 12.0,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": "small",
    "legend.frameon": False,
}
# Narrow enough that the labels stay legible when a phone scales the plot to its width.
_FIGURE_SIZE_IN = (6.0, 3.9)


@dataclass(frozen=True, slots=True)
class _Plot:
    key: str
    title: str
    alt: str
    svg: bytes
    note: str = ""


def write_html(
    report: dict[str, Any],
    directory: Path,
    *,
    source: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.html`` (see :func:`render_html`); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.html"
    path.write_text(render_html(report, source=source, parameters=parameters), encoding="utf-8")
    return path


def render_html(
    report: dict[str, Any],
    *,
    source: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> str:
    """The page for ``report``; ``source`` is the scenario file's text, ``parameters``
    the validated scenario with its defaults (``Scenario.model_dump(mode="json")``)."""
    import matplotlib  # noqa: PLC0415  (only report pages load matplotlib)

    series = report_series(report)
    plots = _plots(report, series)
    name = str(report["scenario"])
    body = [
        _header(report, parameters),
        _nav(),
        "<main>",
        _summary(report),
        _plots_section(plots),
        _scenario_section(source, parameters),
        _files_section(series),
        "</main>",
        "<footer><p>Written by gridmesh "
        f"{_e(report['gridmesh_version'])} with matplotlib {_e(matplotlib.__version__)}. "
        "The same scenario file and seed, with the same versions, give this page byte for "
        "byte.</p></footer>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>{_e(name)} (seed {_e(report['seed'])}): gridmesh report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------- page parts


def _header(report: dict[str, Any], parameters: Mapping[str, Any] | None) -> str:
    seed = _e(report["seed"])
    file_seed = ((parameters or {}).get("simulation") or {}).get("seed")
    if file_seed is not None and file_seed != report["seed"]:
        seed += f" <small>(given on the command line; the file says {_e(file_seed)})</small>"
    description = (parameters or {}).get("description")
    facts = [
        ("seed", seed),
        ("gridmesh version", _e(report["gridmesh_version"])),
        ("simulated time", f"{_e(report['duration_s'])} s"),
        ("nodes (live at the end)", f"{report['nodes']:,} ({report['live_nodes']:,})"),
        ("wire fidelity", "on" if report.get("wire_fidelity") else "off"),
    ]
    return (
        '<header>\n<p class="kicker">gridmesh simulation report</p>\n'
        f"<h1>{_e(report['scenario'])}</h1>\n"
        + (f'<p class="description">{_e(description)}</p>\n' if description else "")
        + '<dl class="facts">\n'
        + "\n".join(f"<dt>{term}</dt><dd>{value}</dd>" for term, value in facts)
        + "\n</dl>\n</header>"
    )


def _nav() -> str:
    links = [
        ("summary", "Summary"),
        ("plots", "Plots"),
        ("scenario", "Scenario"),
        ("files", "Files"),
    ]
    items = "".join(f'<li><a href="#{key}">{text}</a></li>' for key, text in links)
    return f'<nav aria-label="Contents"><ul>{items}</ul></nav>'


def _summary(report: dict[str, Any]) -> str:
    bodies = []
    for index, section in enumerate(summary_sections(report)):
        rows = []
        for row, (name, value) in enumerate(section):
            # The terminal table indents a query's detail rows with spaces; HTML would drop them.
            cls = ' class="head"' if index and row == 0 else ""
            cls = ' class="detail"' if name.startswith(" ") else cls
            # A narrow screen may wrap a value at " / ", never between a number and its unit.
            value_html = _e(value).replace(" ms", "&nbsp;ms").replace(" pairs", "&nbsp;pairs")
            rows.append(
                f'<tr{cls}><th scope="row">{_e(name.strip())}</th><td>{value_html}</td></tr>'
            )
        bodies.append("<tbody>\n" + "\n".join(rows) + "\n</tbody>")
    return (
        '<section id="summary">\n<h2>Summary</h2>\n<div class="scroll">\n'
        '<table class="summary">\n<caption>The figures <code>gridmesh simulate</code> prints '
        "(every figure is in <code>report.json</code> and <code>summary.csv</code>)</caption>\n"
        + "\n".join(bodies)
        + "\n</table>\n</div>\n</section>"
    )


def _plots_section(plots: list[_Plot]) -> str:
    if not plots:
        return (
            '<section id="plots">\n<h2>Plots</h2>\n<p>This run has no series to plot '
            "(no broadcast was delivered and no load was measured).</p>\n</section>"
        )
    figures = []
    for plot in plots:
        data = base64.b64encode(plot.svg).decode("ascii")
        note = f'\n<p class="note">{_e(plot.note)}</p>' if plot.note else ""
        figures.append(
            f'<figure id="plot-{plot.key}">\n<figcaption>{_e(plot.title)}</figcaption>\n'
            f'<img src="data:image/svg+xml;base64,{data}" alt="{_e(plot.alt)}" '
            f'width="{round(_FIGURE_SIZE_IN[0] * 96)}" height="{round(_FIGURE_SIZE_IN[1] * 96)}">'
            f"{note}\n</figure>"
        )
    return '<section id="plots">\n<h2>Plots</h2>\n' + "\n".join(figures) + "\n</section>"


def _scenario_section(source: str | None, parameters: Mapping[str, Any] | None) -> str:
    parts = ['<section id="scenario">\n<h2>Scenario</h2>']
    if source is not None:
        shown = source[:_SOURCE_CHARS_MAX].strip("\n").rstrip()
        cut = (
            f'<p class="note">The first {_SOURCE_CHARS_MAX:,} of its {len(source):,} '
            "characters.</p>\n"
            if len(source) > _SOURCE_CHARS_MAX
            else ""
        )
        parts.append(f"<h3>The scenario file</h3>\n{cut}<pre><code>{_e(shown)}</code></pre>")
    if parameters is not None:
        rows = list(_parameter_rows(parameters))
        shown_rows = rows[:_PARAMETER_ROWS_MAX]
        cut = (
            f'<p class="note">The first {_PARAMETER_ROWS_MAX:,} of {len(rows):,}.</p>\n'
            if len(rows) > _PARAMETER_ROWS_MAX
            else ""
        )
        table = "\n".join(
            f'<tr><th scope="row"><code>{_e(path)}</code></th>'
            f"<td><code>{_e(value)}</code></td></tr>"
            for path, value in shown_rows
        )
        parts.append(
            f"<details>\n<summary>Every parameter, defaults included ({len(rows):,})</summary>\n"
            f'{cut}<div class="scroll">\n<table class="parameters">\n'
            '<thead><tr><th scope="col">parameter</th><th scope="col">value</th></tr></thead>\n'
            f"<tbody>\n{table}\n</tbody>\n</table>\n</div>\n</details>"
        )
    if source is None and parameters is None:
        parts.append("<p>The scenario was not given to the report writer.</p>")
    return "\n".join(parts) + "\n</section>"


def _parameter_rows(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Dotted paths to values; lists of plain values stay on one row."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _parameter_rows(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _parameter_rows(item, f"{path}[{index}]")
    else:
        yield path, json.dumps(value, ensure_ascii=False)


def _files_section(series: list[Series]) -> str:
    described = {
        "delivery": "share of each broadcast's live targets reached, by time",
        "latency_cdf": "latency quantiles over every delivery",
        "load_per_node": "messages sent per node, quantiles",
        "dr_reduction": "requested and achieved reduction, by time",
        "imbalance": "imbalance (and the centralized optimum), by time",
        "load_shifted": "load moved earlier by devices reacting to commands, by time",
    }
    files = [
        ("report.json", "every figure of the run"),
        ("summary.csv", "every figure of report.json, one per row"),
    ]
    files += [(f"{s.name}.csv", described[s.name]) for s in series]
    items = "\n".join(
        f'<li><a href="{_e(name)}">{_e(name)}</a>: {_e(text)}</li>' for name, text in files
    )
    return (
        '<section id="files">\n<h2>Files</h2>\n<p>Written beside this page:</p>\n'
        f"<ul>\n{items}\n</ul>\n</section>"
    )


# ----------------------------------------------------------------------------- plots


def _plots(report: dict[str, Any], series: list[Series]) -> list[_Plot]:
    import matplotlib  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    drawers: dict[str, Callable[[Any, Series, dict[str, Any]], tuple[str, str]]] = {
        "delivery": _draw_delivery,
        "latency_cdf": _draw_latency,
        "load_per_node": _draw_load,
        "dr_reduction": _draw_reduction,
        "imbalance": _draw_imbalance,
        "load_shifted": _draw_load_shifted,
    }
    plots = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # restored on leaving the context
        matplotlib.rcParams.update(_RC)
        for table in series:
            figure = Figure(figsize=_FIGURE_SIZE_IN, layout="constrained")
            axes = figure.add_subplot()
            alt, note = drawers[table.name](axes, table, report)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None})
            plots.append(_Plot(table.name, PLOT_TITLES[table.name], alt, buffer.getvalue(), note))
    return plots


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

    axis.set_major_formatter(PercentFormatter(xmax=1.0))


def _draw_delivery(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    by_broadcast: dict[Cell, list[tuple[Cell, ...]]] = {}
    for row in table.rows:  # in report order
        by_broadcast.setdefault(row[0], []).append(row)
    finals: list[float] = []
    last_s = 0.0
    for drawn, rows in enumerate(by_broadcast.values()):
        curve = Series(table.name, table.columns, tuple(rows))
        times = numbers(curve.column("time_after_broadcast_s"))
        reached = numbers(curve.column("reached_fraction"))
        finals.append(reached[-1])
        last_s = max(last_s, times[-1])
        if drawn < _CURVES_MAX:
            topic = str(curve.column("topic")[0])
            if len(topic) > _LEGEND_CHARS_MAX:
                topic = topic[: _LEGEND_CHARS_MAX - 1] + "…"
            label = f"at {curve.column('at_s')[0]:g} s: {topic}"
            axes.step([0.0, *times], [0.0, *reached], where="post", label=label)
    axes.set_xlim(left=0.0)
    axes.set_ylim(0.0, 1.02)
    _percent_axis(axes.yaxis)
    axes.set_xlabel("seconds after the broadcast")
    axes.set_ylabel("live targets reached")
    axes.legend(loc="lower right")
    count = len(by_broadcast)
    if count == 1:
        share = f"{finals[0]:.2%} of its live targets were reached"
    else:
        share = (
            f"between {min(finals):.2%} and {max(finals):.2%} of their live targets were reached"
        )
    alt = (
        f"Step curves of the share of live targets reached against seconds after the broadcast, "
        f"for {count} broadcast{'s' if count > 1 else ''}: {share}; the last delivery came "
        f"{last_s:.3g} s after its broadcast."
    )
    note = (
        f"The first {_CURVES_MAX} of {count} broadcasts; delivery.csv holds them all."
        if count > _CURVES_MAX
        else ""
    )
    return alt, note


def _draw_latency(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    fractions = numbers(table.column("fraction_of_deliveries"))
    latency = numbers(table.column("latency_s"))
    axes.step(latency, fractions, where="post", label="deliveries")
    quantiles = report.get("latency_s") or {}
    for key, style in (("p50", ":"), ("p99", "--")):
        value = quantiles.get(key)
        if isinstance(value, int | float):
            axes.axvline(value, color="0.4", linestyle=style, label=f"{key} {value:.3g} s")
    axes.set_xlim(left=0.0)
    axes.set_ylim(0.0, 1.02)
    _percent_axis(axes.yaxis)
    axes.set_xlabel("seconds from the broadcast to the delivery")
    axes.set_ylabel("deliveries")
    axes.legend(loc="lower right")
    alt = (
        f"Cumulative distribution of delivery latency over {report.get('delivered', 0):,} "
        f"deliveries: median {_g(quantiles.get('p50'))} s, 99th percentile "
        f"{_g(quantiles.get('p99'))} s, maximum {_g(latency[-1])} s."
    )
    return alt, ""


def _draw_load(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    fractions = numbers(table.column("fraction_of_nodes"))
    sent = numbers(table.column("messages_sent"))
    axes.step(fractions, sent, where="post", label="nodes, least to most loaded")
    mean = (report.get("messages_per_node") or {}).get("mean")
    if isinstance(mean, int | float):
        axes.axhline(mean, color="0.4", linestyle="--", label=f"mean {mean:.3g}")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, max(1.0, sent[-1] * 1.1))  # the busiest node's level stays in view
    _percent_axis(axes.xaxis)
    axes.set_xlabel("nodes, sorted by messages sent")
    axes.set_ylabel("messages sent in the run")
    axes.legend(loc="lower right")
    alt = (
        f"Messages sent per node over the run, nodes sorted from least to most loaded: "
        f"minimum {_g(sent[0])}, median {_g(sent[len(sent) // 2])}, mean {_g(mean)}, "
        f"maximum {_g(sent[-1])}."
    )
    return alt, ""


def _draw_reduction(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    time_s, note = _thinned(table, "time_s")
    requested = _thinned(table, "requested_kw")[0]
    achieved = _thinned(table, "achieved_kw")[0]
    axes.step(time_s, requested, where="post", linestyle="--", label="requested")
    axes.plot(time_s, achieved, label="achieved")
    axes.set_xlabel("simulated time (s)")
    axes.set_ylabel("load reduction (kW)")
    axes.legend(loc="best")
    alt = (
        f"Requested (dashed) and achieved load reduction in kW from {_g(time_s[0])} s to "
        f"{_g(time_s[-1])} s: largest requested {_g(_peak(requested))} kW, largest achieved "
        f"{_g(_peak(achieved))} kW."
    )
    return alt, note


def _draw_imbalance(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    time_s, note = _thinned(table, "time_s")
    imbalance = _thinned(table, "imbalance_kw")[0]
    axes.axhline(0.0, color="0.6", linewidth=0.8, zorder=1)  # under an optimum that sits at 0
    axes.plot(time_s, imbalance, label="imbalance")
    alt = (
        f"Imbalance in kW from {_g(time_s[0])} s to {_g(time_s[-1])} s: largest absolute "
        f"imbalance {_g(_peak(imbalance, absolute=True))} kW"
    )
    if "centralized_optimum_kw" in table.columns:
        optimum = _thinned(table, "centralized_optimum_kw")[0]
        axes.plot(time_s, optimum, linestyle="--", label="centralized optimum")
        alt += f"; centralized optimum (dashed) {_g(_peak(optimum, absolute=True))} kW"
    axes.set_xlabel("simulated time (s)")
    axes.set_ylabel("imbalance (kW)")
    axes.legend(loc="best")
    return alt + ".", note


def _draw_load_shifted(axes: Any, table: Series, report: dict[str, Any]) -> tuple[str, str]:
    time_s, note = _thinned(table, "time_s")
    shifted = _thinned(table, "shifted_kw")[0]
    axes.step(time_s, shifted, where="post")
    axes.set_xlabel("simulated time (s)")
    axes.set_ylabel("load moved earlier (kW)")
    alt = (
        f"Load that devices moved earlier in answer to commands, in kW, from {_g(time_s[0])} s "
        f"to {_g(time_s[-1])} s: largest {_g(_peak(shifted))} kW."
    )
    return alt, note


def _thinned(table: Series, column: str) -> tuple[list[float], str]:
    """A column with at most _POINTS_MAX points, evenly picked (the last one kept)."""
    values = numbers(table.column(column))
    if len(values) <= _POINTS_MAX:
        return values, ""
    step = math.ceil(len(values) / _POINTS_MAX)
    picked = values[::step]
    if (len(values) - 1) % step:
        picked.append(values[-1])
    note = f"One point in {step} of {len(values):,} is drawn; {table.name}.csv holds them all."
    return picked, note


def _peak(values: list[float], *, absolute: bool = False) -> float | None:
    finite = [abs(v) if absolute else v for v in values if not math.isnan(v)]
    return max(finite) if finite else None


def _g(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"


# A column that fits a phone; system fonts only (nothing to download).
_CSS = """
:root { color-scheme: light; --line: #d8dce0; --muted: #5a6270; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 60rem; padding: 1rem 1.25rem 2rem;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  color: #1b1f24; background: #fff; }
h1 { font-size: 1.75rem; margin: .1rem 0 .5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 2rem 0 .75rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
.kicker { margin: 0; color: var(--muted); font-size: .9rem; text-transform: uppercase;
  letter-spacing: .05em; }
.description { margin: 0 0 1rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1.25rem; padding: 0;
  margin: 1rem 0 0; }
a { color: #0a58ca; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); font-size: .9rem; padding-bottom: .4rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; font-weight: normal; }
.summary td { text-align: right; }
.summary tr.head th, .summary tr.head td { font-weight: 600; padding-top: .9rem; }
.summary tr.detail th { padding-left: 1.5rem; }
thead th { font-weight: 600; }
.parameters th, .parameters td { overflow-wrap: anywhere; font-size: .85rem; }
figure { margin: 1.5rem 0; }
figcaption { font-weight: 600; margin-bottom: .25rem; }
figure img { display: block; width: 100%; max-width: 46rem; height: auto; }
.note { color: var(--muted); font-size: .9rem; margin: .25rem 0; }
pre { background: #f5f7f9; border: 1px solid var(--line); padding: .75rem; overflow-x: auto;
  font-size: .85rem; line-height: 1.4; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
details { margin-top: 1rem; }
summary { cursor: pointer; font-weight: 600; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .85rem;
  border-top: 1px solid var(--line); }
@media (max-width: 40rem) {
  body { padding: .75rem .75rem 1.5rem; font-size: 15px; }
  h1 { font-size: 1.45rem; }
  th, td { padding: .25rem .3rem; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; }
}
"""
