"""A plan as a readable table (rich), with the conventions it used in the caption."""

from __future__ import annotations

from fractions import Fraction

from rich.table import Table

from gridmesh.plan._capacity import CustomersRow, PeersRow, SubsystemsPlan
from gridmesh.plan._compare import (
    Comparison,
    compare_customers,
    compare_peers,
    compare_regions,
)
from gridmesh.plan._records import PlanContext, format_bandwidth, format_coverage
from gridmesh.plan._units import CountRounding, MegabitUnit, MegabyteUnit, format_fixed

__all__ = ["customers_table", "peers_table", "subsystems_table"]

_PER_NODE = "Gossip per node"


def _caption(context: PlanContext) -> str:
    traffic = context.traffic
    conventions = context.conventions
    size = f"{traffic.message_bytes}-byte messages"
    if traffic.wire is not None:
        wire = traffic.wire
        size += (
            f" (payload {wire.payload_bytes} + envelope {wire.envelope_bytes}"
            f" + signature {wire.signature_bytes}, measured)"
        )
    rate = traffic.messages_per_second
    per = f"{_fraction(rate)} per second" if rate >= 1 else f"{_fraction(rate * 60)} per minute"
    megabit = "10^6" if conventions.megabit is MegabitUnit.DECIMAL else "2^20"
    lines = [f"{size}, {per} per sender; Mbps = {megabit} bit/s"]
    if context.command == "subsystems":
        megabyte = "10^6" if conventions.megabyte is MegabyteUnit.DECIMAL else "2^20"
        lines.append(
            f"MBytes = {megabyte} bytes; subsystems = {conventions.subsystem_rounding.value}"
            f" of the {conventions.subsystem_average.value} over the technologies"
        )
    else:
        truncated = conventions.count_rounding is CountRounding.FLOOR
        lines.append("counts truncated" if truncated else "counts rounded to the nearest")
    fanout = "ceil(ln n + 1)" if context.fanout is None else str(context.fanout)
    lines.append(f"gossip: fanout {fanout}; load each way on every node's link")
    return "\n".join(lines)


def _fraction(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else format_fixed(value, 3)


def _mbps(bits_per_second: Fraction, megabit: MegabitUnit) -> str:
    whole, _, part = format_fixed(bits_per_second / megabit.bits, 1).partition(".")
    return f"{int(whole):,}.{part} Mbps"


def _verdict(**comparisons: Comparison | None) -> str:
    """ "agrees", or which printed values differ and by how much (computed - printed)."""
    present = {name: c for name, c in comparisons.items() if c is not None}
    if not present:
        return ""
    wrong = [f"{name} {_signed(c.difference)}" for name, c in present.items() if not c.agrees]
    return "differs: " + ", ".join(wrong) if wrong else "agrees"


def _signed(value: Fraction) -> str:
    text = format_fixed(abs(value), 2).removesuffix(".00")
    return f"+{text}" if value >= 0 else f"-{text}"


def peers_table(rows: list[PeersRow], context: PlanContext) -> Table:
    """Table I: publishers and subscribers per Event Manager link."""
    table = Table(title="Peers per Event Manager link (seed 001, Table I)")
    table.caption = _caption(context)
    for column in ("Technology", "Download", "Upload", "Publishers", "Subscribers"):
        table.add_column(column, justify="left" if column == "Technology" else "right")
    table.add_column("Coverage")
    table.add_column("Gossip f", justify="right")
    table.add_column(_PER_NODE, justify="right")
    if context.compare_paper:
        for column in ("Paper pubs", "Paper subs", "Paper"):
            table.add_column(column, justify="right")
    megabit = context.conventions.megabit
    for row in rows:
        technology = row.technology
        shared = technology.shared_channel
        cells = [
            technology.name,
            format_bandwidth(technology.download_mbps),
            "shared" if shared else format_bandwidth(technology.upload_mbps or 0),
            f"{row.publishers_max:,}",
            "same channel" if shared else f"{row.subscribers_max:,}",
            format_coverage(technology),
            str(row.gossip.fanout),
            _mbps(row.gossip.node_bits_per_second, megabit),
        ]
        if context.compare_paper:
            publishers, subscribers = compare_peers(row) or (None, None)
            cells += [
                publishers.printed if publishers else "",
                subscribers.printed if subscribers else "",
                _verdict(pubs=publishers, subs=subscribers),
            ]
        table.add_row(*cells)
    return table


def customers_table(rows: list[CustomersRow], context: PlanContext) -> Table:
    """Table II: customers per actor."""
    table = Table(title="Customers per actor (seed 001, Table II)")
    table.caption = _caption(context)
    table.add_column("Technology")
    table.add_column("Download", justify="right")
    table.add_column("Customers", justify="right")
    table.add_column("Gossip f", justify="right")
    table.add_column(_PER_NODE, justify="right")
    if context.compare_paper:
        table.add_column("Paper", justify="right")
        table.add_column("Difference", justify="right")
    megabit = context.conventions.megabit
    for row in rows:
        cells = [
            row.technology.name,
            format_bandwidth(row.technology.download_mbps),
            f"{row.customers_max:,}",
            str(row.gossip.fanout),
            _mbps(row.gossip.node_bits_per_second, megabit),
        ]
        if context.compare_paper:
            customers = compare_customers(row)
            cells += [customers.printed if customers else "", _verdict(customers=customers)]
        table.add_row(*cells)
    return table


def subsystems_table(plan: SubsystemsPlan, context: PlanContext) -> Table:
    """Table III: customers, load and subsystems per region, and the whole area."""
    count = len(plan.technologies)
    table = Table(title=f"Subsystems per region over {count} technologies (seed 001, Table III)")
    table.caption = _caption(context)
    table.add_column("Region", no_wrap=True)
    for column in ("Customers", "MBytes/min", "Load", "Average", "Subsystems", "Gossip f"):
        table.add_column(column, justify="right")
    table.add_column(_PER_NODE, justify="right")
    if context.compare_paper:
        for column in ("Paper customers", "Paper MBytes/min", "Paper subsystems", "Paper"):
            table.add_column(column, justify="right")
    conventions = context.conventions
    compared = compare_regions(plan, conventions.megabyte) if context.compare_paper else {}
    rows = [*plan.rows, *([plan.total] if plan.total is not None else [])]
    for row in rows:
        cells = [
            row.name,
            f"{row.customers:,}",
            format_fixed(row.bytes_per_minute / conventions.megabyte.bytes, 2),
            _mbps(row.load_bits_per_second, conventions.megabit),
            format_fixed(row.average, 3),
            str(row.subsystems),
            str(row.gossip.fanout),
            _mbps(row.gossip.node_bits_per_second, conventions.megabit),
        ]
        if context.compare_paper:
            comparison = compared.get(row.name)
            if comparison is None:
                cells += ["", "", "", ""]
            else:
                subsystems = comparison.subsystems
                cells += [
                    comparison.customers.printed,
                    comparison.megabytes_per_minute.printed,
                    subsystems.printed if subsystems else "",
                    _verdict(
                        customers=comparison.customers,
                        mbytes=comparison.megabytes_per_minute,
                        subsystems=subsystems,
                    ),
                ]
        table.add_row(*cells, end_section=row is plan.rows[-1])
    return table
