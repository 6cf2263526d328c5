"""Built-in presets: seed 001's link technologies (Tables I, II) and UK DSO regions (Table III).

Theory of operation
-------------------
A preset is the planner's input (a ``Technology`` or a ``Region``) *and* the
row the paper printed for it, so ``--compare-paper`` and the tests can set
the two side by side. Presets are data only: every count the planner shows
is computed, never copied from here.

Two transcription facts, both documented in docs/PLANNING.md:

* Table I labels the 200 Mbps row WiMAX, but Table II lists it under DSL and
  the text says DSL reaches "up to 31.2k publishers" (= 200 Mbps) while
  WiMAX starts "from about 20k" (= 128 Mbps). Two sources against one: the
  preset is ``dsl-200m``.
* The fiber rows print 662 and 2448 Mbps (SONET OC-12 and OC-48 are 622.08
  and 2488.32 Mbps). The printed counts are computed from 662 and 2448, so
  the presets keep the printed bandwidths.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from gridmesh.errors import ConfigError
from gridmesh.plan._inputs import Region, Technology
from gridmesh.plan._printed import PrintedCount

__all__ = [
    "PAPER_UK_TOTAL",
    "REGION_GROUPS",
    "TECHNOLOGY_GROUPS",
    "TECHNOLOGY_PRESETS",
    "UK_DSO_REGIONS",
    "PrintedRegionRow",
    "PrintedTechnologyRow",
    "RegionPreset",
    "TechnologyPreset",
    "region_preset",
    "resolve_regions",
    "resolve_technologies",
    "technology_preset",
]


@dataclass(frozen=True, slots=True)
class PrintedTechnologyRow:
    """One row of Table I as printed, and its Table II count when it has one."""

    download: str
    upload: str  # "" where the paper leaves it blank (a shared channel)
    publishers: PrintedCount
    subscribers: PrintedCount | None  # None: one merged cell for a shared channel
    coverage: str
    customers: int | None  # Table II; None where the row is not in Table II
    discrepancy: str | None = None  # why the printed count follows no convention


@dataclass(frozen=True, slots=True)
class TechnologyPreset:
    technology: Technology
    printed: PrintedTechnologyRow


@dataclass(frozen=True, slots=True)
class PrintedRegionRow:
    """One row of Table III as printed."""

    customers: int
    megabytes_per_minute: str
    subsystems: int
    discrepancy: str | None = None


@dataclass(frozen=True, slots=True)
class RegionPreset:
    region: Region
    printed: PrintedRegionRow


_WIFI_54 = (
    "no convention gives 8.5 k: 54e6/6400 = 8437.5 (8.4 k), 54*2^20/6400 = 8847.4 (8.8 k); "
    "8.5 k would need 54.4 Mbps or 6353-bit messages"
)
_WIFI_600 = (
    "no convention gives 93.5 k: 600e6/6400 = 93750 (93.7 k), 600*2^20/6400 = 98304 (98.3 k); "
    "93.5 k would need 598.4 Mbps or 6417-bit messages"
)


def _tech(
    name: str,
    family_scope: tuple[str, str],
    link: tuple[float, float | None, float | None],
    printed: tuple[str, str, str, str, str, int | None],
    *,
    note: str | None = None,
    discrepancy: str | None = None,
) -> TechnologyPreset:
    """A preset from (family, scope), (download, upload, coverage_m) and the printed row."""
    family, scope = family_scope
    down, up, coverage_m = link
    download, upload, pubs, subs, coverage, customers = printed
    technology = Technology.model_validate(
        {
            "name": name,
            "family": family,
            "scope": scope,
            "download_mbps": down,
            "upload_mbps": up,
            "shared_channel": up is None,
            "coverage_m": coverage_m,
            "coverage_note": note,
        }
    )
    row = PrintedTechnologyRow(
        download=download,
        upload=upload,
        publishers=PrintedCount.parse(pubs),
        subscribers=PrintedCount.parse(subs) if subs else None,
        coverage=coverage,
        customers=customers,
        discrepancy=discrepancy,
    )
    return TechnologyPreset(technology, row)


_SATELLITES = "Depend on number of satellites"

# Table I, row by row, in the paper's order; the last field is Table II's count.
_TABLE_I = (
    _tech("ethernet-10m", ("Ethernet", "lan"), (10, 10, 100),
          ("10 Mbps", "10 Mbps", "1.5 k", "1.5 k", "100 m", None)),
    _tech("ethernet-100m", ("Ethernet", "lan"), (100, 100, 100),
          ("100 Mbps", "100 Mbps", "15.6 k", "15.6 k", "100 m", None)),
    _tech("ethernet-1g", ("Ethernet", "lan"), (1000, 1000, 100),
          ("1 Gbps", "1 Gbps", "156 k", "156 k", "100 m", None)),
    _tech("wifi-54m", ("WiFi", "lan"), (54, None, 300),
          ("54 Mbps", "", "8.5 k", "", "300 m", None), discrepancy=_WIFI_54),
    _tech("wifi-600m", ("WiFi", "lan"), (600, None, 1000),
          ("600 Mbps", "", "93.5 k", "", "1 km", None), discrepancy=_WIFI_600),
    _tech("fiber-100m", ("Optical Fiber", "wan"), (100, 100, 10_000),
          ("100 Mbps", "100 Mbps", "15.6 k", "15.6 k", "10 km", 983040)),
    _tech("fiber-662m", ("Optical Fiber", "wan"), (662, 662, 60_000),
          ("662 Mbps", "662 Mbps", "103.4k", "103.4k", "60 km", 6507725)),
    _tech("fiber-2448m", ("Optical Fiber", "wan"), (2448, 2448, 60_000),
          ("2448Mbps", "2448Mbps", "382.5k", "382.5k", "60 km", 24064819)),
    _tech("fiber-1g", ("Optical Fiber", "wan"), (1000, 1000, 20_000),
          ("1 Gbps", "1 Gbps", "156 k", "156 k", "20 km", 9830400)),
    _tech("dsl-8m", ("DSL", "wan"), (8, 1.3, 4_000),
          ("8 Mbps", "1.3 Mbps", "1.2 k", "203", "4 km", 78643)),
    _tech("dsl-12m", ("DSL", "wan"), (12, 3.5, 7_000),
          ("12 Mbps", "3.5 Mbps", "1.8 k", "546", "7 km", 117965)),
    _tech("dsl-24m", ("DSL", "wan"), (24, 3.3, 7_000),
          ("24 Mbps", "3.3 Mbps", "3.7 k", "515", "7 km", 235930)),
    _tech("dsl-85m", ("DSL", "wan"), (85, 85, 1_200),
          ("85 Mbps", "85 Mbps", "13.2 k", "13.2 k", "1.2 km", 835584)),
    _tech("dsl-200m", ("DSL", "wan"), (200, 200, 1_000),
          ("200 Mbps", "200 Mbps", "31.2 k", "31.2 k", "1 km", 1966080)),
    _tech("wimax-128m", ("WiMAX", "wan"), (128, 28, 10_000),
          ("128 Mbps", "28 Mbps", "20 k", "4.3 k", "10 km", 1258291)),
    _tech("wimax-1g", ("WiMAX", "wan"), (1000, 1000, 100_000),
          ("1 Gbps", "1 Gbps", "156 k", "156 k", "100 km", 9830400)),
    _tech("3g4g-14.4m", ("3G/4G", "wan"), (14.4, 5.75, 5_000),
          ("14.4 Mbps", "5.75 Mbps", "2.2 k", "898", "5 km", 141558)),
    _tech("3g4g-84m", ("3G/4G", "wan"), (84, 22, None),
          ("84 Mbps", "22 Mbps", "13 k", "3.4 k", "", 825754)),
    _tech("3g4g-326m", ("3G/4G", "wan"), (326, 86, None),
          ("326 Mbps", "86 Mbps", "50.9 k", "13.4 k", "", 3204710)),
    _tech("3g4g-1g", ("3G/4G", "wan"), (1000, 500, 100_000),
          ("1 Gbps", "500 Mbps", "156 k", "78 k", "100 km", 9830400)),
    _tech("satellite-28k", ("Satellite", "wan"), (0.028, None, None),
          ("28 kbps", "", "4", "", _SATELLITES, None), note=_SATELLITES),
    _tech("satellite-128k", ("Satellite", "wan"), (0.128, None, None),
          ("128 kbps", "", "20", "", "", None), note=_SATELLITES),
    _tech("satellite-450k", ("Satellite", "wan"), (0.45, None, None),
          ("450 kbps", "", "70", "", "", None), note=_SATELLITES),
)  # fmt: skip

TECHNOLOGY_PRESETS: dict[str, TechnologyPreset] = {p.technology.name: p for p in _TABLE_I}


def _names(*families: str) -> tuple[str, ...]:
    return tuple(p.technology.name for p in _TABLE_I if p.technology.family in families)


TECHNOLOGY_GROUPS: dict[str, tuple[str, ...]] = {
    "paper-table-1": tuple(TECHNOLOGY_PRESETS),
    # Table II and III: "only the WAN technologies of Table I ... with the exclusion of
    # satellites" (seed 001, V.B).
    "paper-table-2": tuple(p.technology.name for p in _TABLE_I if p.printed.customers),
    "lan": tuple(p.technology.name for p in _TABLE_I if p.technology.scope == "lan"),
    "wan": tuple(p.technology.name for p in _TABLE_I if p.technology.scope == "wan"),
    "ethernet": _names("Ethernet"),
    "wifi": _names("WiFi"),
    "fiber": _names("Optical Fiber"),
    "dsl": _names("DSL"),
    "wimax": _names("WiMAX"),
    "3g4g": _names("3G/4G"),
    "satellite": _names("Satellite"),
}

_SCOTLAND = (
    "78387 km2 * 109 / 2 = 4272091.5 per half, printed rounded up; the printed TOTAL "
    "counts the exact halves"
)


def _region(
    name: str, customers: int, megabytes: str, subsystems: int, discrepancy: str | None = None
) -> RegionPreset:
    region = Region(name=name, customers=customers)
    return RegionPreset(region, PrintedRegionRow(customers, megabytes, subsystems, discrepancy))


# Table III, in the paper's order.
UK_DSO_REGIONS: tuple[RegionPreset, ...] = (
    _region("East England", 2084080, "1590.03", 6),
    _region("East Midlands", 1703343, "1299.55", 5),
    _region("London", 1274319, "972.23", 4),
    _region("North Wales, Merseyside and Cheshire", 325692, "248.48", 1),
    _region("West Midlands", 547180, "417.47", 2),
    _region("North East England", 936528, "714.51", 3),
    _region("North West England", 1543985, "1177.97", 4),
    _region("North Scotland", 4272092, "3259.35", 11, _SCOTLAND),
    _region("South Scotland", 4272092, "3259.35", 11, _SCOTLAND),
    _region("South East England", 2081355, "1587.95", 6),
    _region("Southern England", 6762578, "5159.44", 17),
    _region("South Wales", 2264911, "1727.99", 6),
    _region("South West England", 2597361, "1981.63", 7),
    _region("Yorkshire", 1297427, "989.86", 4),
)

#: Table III's TOTAL row. Its customers are one fewer than the sum of the printed rows.
PAPER_UK_TOTAL = PrintedRegionRow(
    31962942,
    "24385.79",
    80,
    "the printed rows sum to 31962943 customers, one more (see Scotland); "
    "80 subsystems follows from no averaging that gives the regions' counts",
)

REGION_GROUPS: dict[str, tuple[RegionPreset, ...]] = {"uk-dso": UK_DSO_REGIONS}


def technology_preset(name: str) -> TechnologyPreset | None:
    return TECHNOLOGY_PRESETS.get(name)


def region_preset(name: str) -> RegionPreset | None:
    return next((p for p in UK_DSO_REGIONS if p.region.name == name), None)


def resolve_technologies(names: list[str], *, source: str, field: str) -> list[Technology]:
    """Preset technologies and groups by name, in order, each once."""
    resolved: dict[str, Technology] = {}
    for index, name in enumerate(names):
        if name in TECHNOLOGY_GROUPS:
            for member in TECHNOLOGY_GROUPS[name]:
                resolved.setdefault(member, TECHNOLOGY_PRESETS[member].technology)
        elif name in TECHNOLOGY_PRESETS:
            resolved.setdefault(name, TECHNOLOGY_PRESETS[name].technology)
        else:
            where = field if source == "command line" else f"{field}[{index}]"
            raise ConfigError(
                source, where, _expected(name, [*TECHNOLOGY_PRESETS, *TECHNOLOGY_GROUPS]), got=name
            )
    return list(resolved.values())


def resolve_regions(names: list[str], *, source: str, field: str) -> list[Region]:
    """Preset region groups (``uk-dso``) and single preset regions by name."""
    resolved: dict[str, Region] = {}
    singles = [p.region.name for p in UK_DSO_REGIONS]
    for index, name in enumerate(names):
        if name in REGION_GROUPS:
            for preset in REGION_GROUPS[name]:
                resolved.setdefault(preset.region.name, preset.region)
        elif (single := region_preset(name)) is not None:
            resolved.setdefault(name, single.region)
        else:
            where = field if source == "command line" else f"{field}[{index}]"
            raise ConfigError(source, where, _expected(name, [*REGION_GROUPS, *singles]), got=name)
    return list(resolved.values())


def _expected(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"a preset name{hint}, one of: {', '.join(known)}"
