"""A plan as flat records, and those records as JSON or CSV.

One record per row, the same fields in JSON and CSV, so a spreadsheet and a
script read the same plan. Counts are integers; exact fractions become
integers where whole, else floats to three decimals (megabytes per minute to
two, as Table III prints them). Bandwidths keep the user's Mbps; loads are in
bit/s, which needs no megabit convention. JSON also states the conventions
and traffic the plan used; CSV has rows only (one TOTAL row last).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from fractions import Fraction

from gridmesh.plan._capacity import CustomersRow, PeersRow, SubsystemsPlan, SubsystemsRow, Traffic
from gridmesh.plan._compare import (
    Comparison,
    RegionComparison,
    compare_customers,
    compare_peers,
    compare_regions,
)
from gridmesh.plan._inputs import Technology
from gridmesh.plan._units import Conventions, exact, format_fixed

__all__ = [
    "PlanContext",
    "Record",
    "customers_records",
    "format_bandwidth",
    "format_coverage",
    "number",
    "peers_records",
    "subsystems_records",
    "to_csv",
    "to_json",
]

Record = dict[str, object]


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What every output of one plan states besides its rows."""

    command: str
    conventions: Conventions
    traffic: Traffic
    fanout: int | None  # None: ceil(ln n + 1) per row
    compare_paper: bool

    def as_record(self) -> Record:
        traffic = self.traffic
        wire = traffic.wire
        return {
            "command": self.command,
            "conventions": self.conventions.as_dict(),
            "traffic": {
                "payload_bytes": traffic.payload_bytes,
                "envelope_bytes": None if wire is None else wire.envelope_bytes,
                "signature_bytes": None if wire is None else wire.signature_bytes,
                "message_bytes": traffic.message_bytes,
                "messages_per_second": number(traffic.messages_per_second, 6),
                "messages_per_minute": number(traffic.messages_per_minute, 6),
                "topic": None if wire is None else wire.topic,
            },
            "gossip": {
                "fanout": self.fanout,  # null: each row's default_fanout(n)
                "default_fanout": "ceil(ln n + 1)",
            },
        }


def number(value: Fraction, places: int = 3) -> int | float:
    """An exact value for JSON/CSV: an integer when whole, else rounded to ``places``."""
    if value.denominator == 1:
        return value.numerator
    magnitude = float(format_fixed(abs(value), places))
    return magnitude if value >= 0 else -magnitude


def format_bandwidth(mbps: float) -> str:
    """As Table I prints it: 0.028 -> "28 kbps", 14.4 -> "14.4 Mbps", 1000 -> "1 Gbps"."""
    value = exact(mbps)
    if value < 1:
        return f"{_plain(value * 1000)} kbps"
    if value >= 1000 and (value / 1000).denominator == 1:
        return f"{_plain(value / 1000)} Gbps"
    return f"{_plain(value)} Mbps"


def format_coverage(technology: Technology) -> str:
    """As Table I prints it: 100 -> "100 m", 1200 -> "1.2 km"; a note where there is no range."""
    if technology.coverage_m is None:
        return technology.coverage_note or ""
    metres = exact(technology.coverage_m)
    if metres < 1000:
        return f"{_plain(metres)} m"
    return f"{_plain(metres / 1000)} km"


def _plain(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return format_fixed(value, 6).rstrip("0")


def _paper(prefix: str, comparison: Comparison | None) -> Record:
    if comparison is None:
        return {f"paper_{prefix}": None, f"paper_{prefix}_difference": None}
    return {
        f"paper_{prefix}": comparison.printed,
        f"paper_{prefix}_difference": number(comparison.difference, 2),
    }


def _discrepancy(*comparisons: Comparison | None) -> Record:
    agrees = [c.agrees for c in comparisons if c is not None]
    notes = {c.discrepancy for c in comparisons if c is not None and not c.agrees}
    return {
        "paper_agrees": all(agrees) if agrees else None,
        "paper_discrepancy": "; ".join(sorted(n for n in notes if n)) or None,
    }


def _technology(technology: Technology) -> Record:
    return {
        "technology": technology.name,
        "family": technology.family,
        "download_mbps": technology.download_mbps,
        "upload_mbps": technology.upload_mbps,
        "shared_channel": technology.shared_channel,
        "coverage": format_coverage(technology),
    }


def peers_records(rows: list[PeersRow], context: PlanContext) -> list[Record]:
    records = []
    for row in rows:
        record = _technology(row.technology) | {
            "publishers_max": row.publishers_max,
            "subscribers_max": row.subscribers_max,
            "gossip_fanout": row.gossip.fanout,
            "gossip_node_bits_per_second": number(row.gossip.node_bits_per_second),
        }
        if context.compare_paper:
            publishers, subscribers = compare_peers(row) or (None, None)
            record |= _paper("publishers", publishers) | _paper("subscribers", subscribers)
            record |= _discrepancy(publishers, subscribers)
        records.append(record)
    return records


def customers_records(rows: list[CustomersRow], context: PlanContext) -> list[Record]:
    records = []
    for row in rows:
        record = _technology(row.technology) | {
            "customers_max": row.customers_max,
            "gossip_fanout": row.gossip.fanout,
            "gossip_node_bits_per_second": number(row.gossip.node_bits_per_second),
        }
        if context.compare_paper:
            customers = compare_customers(row)
            record |= _paper("customers", customers) | _discrepancy(customers)
        records.append(record)
    return records


def subsystems_records(plan: SubsystemsPlan, context: PlanContext) -> list[Record]:
    """One record per region, then the TOTAL record when there is one."""
    megabyte = context.conventions.megabyte
    compared = compare_regions(plan, megabyte) if context.compare_paper else {}
    rows = [*plan.rows, *([plan.total] if plan.total is not None else [])]
    return [_region(row, plan, context, compared.get(row.name)) for row in rows]


def _region(
    row: SubsystemsRow,
    plan: SubsystemsPlan,
    context: PlanContext,
    comparison: RegionComparison | None,
) -> Record:
    megabyte = context.conventions.megabyte
    record: Record = {
        "region": row.name,
        "customers": row.customers,
        "megabytes_per_minute": number(row.bytes_per_minute / megabyte.bytes, 2),
        "load_bits_per_second": number(row.load_bits_per_second),
        "average": number(row.average),
        "subsystems": row.subsystems,
        "subsystems_by_technology": {
            t.name: count for t, count in zip(plan.technologies, row.per_technology, strict=True)
        },
        "gossip_fanout": row.gossip.fanout,
        "gossip_node_bits_per_second": number(row.gossip.node_bits_per_second),
    }
    if context.compare_paper:
        customers = comparison.customers if comparison else None
        megabytes = comparison.megabytes_per_minute if comparison else None
        subsystems = comparison.subsystems if comparison else None
        record |= _paper("customers", customers) | _paper("megabytes_per_minute", megabytes)
        record |= _paper("subsystems", subsystems) | _discrepancy(customers, megabytes, subsystems)
    return record


def to_json(context: PlanContext, records: list[Record]) -> str:
    return json.dumps(context.as_record() | {"rows": records}, indent=2, ensure_ascii=False)


def to_csv(records: list[Record]) -> str:
    """Records as CSV; a nested mapping becomes one column per key (``name.key``)."""
    flat = [_flatten(record) for record in records]
    columns: dict[str, None] = {}
    for record in flat:
        columns |= dict.fromkeys(record)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def _flatten(record: Record) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{k}": _cell(v) for k, v in value.items()}
        else:
            flat[key] = _cell(value)
    return flat


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
