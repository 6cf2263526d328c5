"""``gridmesh plan peers | customers | subsystems``: the capacity planner on the command line.

Input comes from an optional TOML file, then flags on top. For a list
(technologies, regions) any flag replaces the file's list; for a value a flag
overrides the file, and the file overrides the paper's default. Every bad
value is a ``ConfigError`` naming the file or flag, so the CLI prints one
paragraph and exits with status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from gridmesh.config import config_error
from gridmesh.errors import ConfigError
from gridmesh.plan._capacity import (
    Traffic,
    plan_customers,
    plan_peers,
    plan_subsystems,
)
from gridmesh.plan._compare import PAPER_MESSAGE_BYTES, PAPER_MESSAGES_PER_SECOND
from gridmesh.plan._inputs import (
    FANOUT,
    MESSAGE_BYTES,
    MESSAGE_RATE,
    REGION_CUSTOMERS,
    SIGNATURE_BYTES,
    TOPIC,
    PlanSpec,
    Region,
    Technology,
    load_plan_file,
    validate_flag,
)
from gridmesh.plan._presets import resolve_regions, resolve_technologies
from gridmesh.plan._records import (
    PlanContext,
    Record,
    customers_records,
    peers_records,
    subsystems_records,
    to_csv,
    to_json,
)
from gridmesh.plan._table import customers_table, peers_table, subsystems_table
from gridmesh.plan._units import (
    Conventions,
    CountRounding,
    MegabitUnit,
    MegabyteUnit,
    SubsystemAverage,
    SubsystemRounding,
    exact,
    paper_conventions,
)
from gridmesh.plan._wire import COSE_SIGN1_EDDSA_BYTES, DEFAULT_TOPIC, measure_wire_size
from gridmesh.wire import MESSAGE_BYTES_MAX

__all__ = ["add_plan_commands"]

COMMAND_LINE = "command line"
_DOCS = "docs/PLANNING.md"
_DEFAULT_TECHNOLOGIES = {
    "peers": "paper-table-1",
    "customers": "paper-table-2",
    "subsystems": "paper-table-2",
}
_DEFAULT_REGIONS = "uk-dso"
_T = TypeVar("_T")


def add_plan_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan",
        help="capacity planning: peers per link, customers per actor, subsystems per region",
        description="Size a deployment from link bandwidths and message sizes (seed 001, "
        "IV.A and V.B). Defaults reproduce the paper; see docs/PLANNING.md.",
    )
    questions = plan.add_subparsers(dest="question", required=True, metavar="QUESTION")

    peers = questions.add_parser(
        "peers", help="publishers and subscribers one Event Manager link serves (Table I)"
    )
    _add_common_flags(peers, "peers")
    peers.add_argument(
        "--rounding", choices=[r.value for r in CountRounding], help="default: floor (Table I)"
    )
    peers.set_defaults(handler=lambda args: _run(args, "peers"))

    customers = questions.add_parser(
        "customers", help="customers one actor's download link receives from (Table II)"
    )
    _add_common_flags(customers, "customers")
    customers.add_argument(
        "--rounding", choices=[r.value for r in CountRounding], help="default: nearest (Table II)"
    )
    customers.set_defaults(handler=lambda args: _run(args, "customers"))

    subsystems = questions.add_parser("subsystems", help="subsystems each region needs (Table III)")
    _add_common_flags(subsystems, "subsystems")
    subsystems.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="NAME=CUSTOMERS",
        help="a region and its customer count (repeatable)",
    )
    subsystems.add_argument(
        "--regions",
        action="append",
        default=[],
        metavar="PRESET",
        help="preset regions: uk-dso (Table III) or one of its region names (repeatable)",
    )
    subsystems.add_argument(
        "--megabyte", choices=[u.value for u in MegabyteUnit], help="default: binary (Table III)"
    )
    subsystems.add_argument(
        "--average",
        choices=[a.value for a in SubsystemAverage],
        help="how to average over technologies (default: ratio-mean)",
    )
    subsystems.add_argument(
        "--subsystem-rounding",
        choices=[r.value for r in SubsystemRounding],
        help="default: ceil",
    )
    subsystems.set_defaults(handler=lambda args: _run(args, "subsystems"))


def _add_common_flags(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE", help="plan file (TOML)")
    parser.add_argument(
        "--tech",
        action="append",
        default=[],
        metavar="PRESET",
        help=f"preset technology or group (repeatable; default {_DEFAULT_TECHNOLOGIES[command]})",
    )
    parser.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="NAME:DOWN:UP[:COVERAGE_M]",
        help="a link with separate download and upload channels, in Mbps (repeatable)",
    )
    parser.add_argument(
        "--shared-link",
        action="append",
        default=[],
        metavar="NAME:MBPS[:COVERAGE_M]",
        help="a link whose one channel carries both directions, in Mbps (repeatable)",
    )
    parser.add_argument("--message-bytes", metavar="N", help="message size (default 800)")
    rate = parser.add_mutually_exclusive_group()
    default_rate = "1 per second" if command == "peers" else "1 per minute"
    rate.add_argument("--per-second", metavar="R", help=f"messages per second per sender "
                      f"(default {default_rate})")  # fmt: skip
    rate.add_argument("--per-minute", metavar="R", help="messages per minute per sender")
    parser.add_argument(
        "--megabit",
        choices=[u.value for u in MegabitUnit],
        help=f"what Mbps means (default {paper_conventions(command).megabit.value})",
    )
    parser.add_argument(
        "--gridmesh-overhead",
        action="store_true",
        help="add gridmesh's measured envelope and a signature to every message",
    )
    parser.add_argument(
        "--signature-bytes",
        metavar="N",
        help=f"signature size with --gridmesh-overhead (default {COSE_SIGN1_EDDSA_BYTES}, "
        "COSE_Sign1/EdDSA; 0: unsigned)",
    )
    parser.add_argument("--topic", metavar="TOPIC", help="topic for the measured envelope")
    parser.add_argument(
        "--fanout", metavar="F", help="gossip fanout for the gossip column (default ceil(ln n + 1))"
    )
    parser.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="output format"
    )
    parser.add_argument(
        "--compare-paper",
        action="store_true",
        help="show the paper's printed values beside preset rows, with the difference",
    )


@dataclass(frozen=True, slots=True)
class _Request:
    technologies: list[Technology]
    regions: list[Region]
    context: PlanContext


def _run(args: argparse.Namespace, command: str) -> int:
    request = _request(args, command)
    context = request.context
    conventions = context.conventions
    records: list[Record]
    if command == "peers":
        rows = plan_peers(request.technologies, context.traffic, conventions, fanout=context.fanout)
        records, table = peers_records(rows, context), peers_table(rows, context)
    elif command == "customers":
        found = plan_customers(
            request.technologies, context.traffic, conventions, fanout=context.fanout
        )
        records, table = customers_records(found, context), customers_table(found, context)
    else:
        plan = plan_subsystems(
            request.regions,
            request.technologies,
            context.traffic,
            conventions,
            fanout=context.fanout,
        )
        records, table = subsystems_records(plan, context), subsystems_table(plan, context)
    if args.format == "json":
        print(to_json(context, records))
    elif args.format == "csv":
        print(to_csv(records), end="")
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
        console.print(table)
    return 0


def _request(args: argparse.Namespace, command: str) -> _Request:
    spec = load_plan_file(args.file) if args.file is not None else PlanSpec()
    source = str(args.file) if args.file is not None else COMMAND_LINE
    technologies = _technologies(args, spec, source, command)
    regions = _regions(args, spec, source) if command == "subsystems" else []
    traffic = _traffic(args, spec, source, command)
    fanout = spec.gossip.fanout
    if args.fanout is not None:
        fanout = validate_flag(FANOUT, args.fanout, "--fanout")
    context = PlanContext(command, _conventions(args, spec, command), traffic, fanout, False)
    if args.compare_paper:
        _check_paper_traffic(traffic, command)
        context = PlanContext(command, context.conventions, traffic, fanout, True)
    return _Request(technologies, regions, context)


def _pick(
    flag: str | None,
    adapter: TypeAdapter[_T],
    name: str,
    from_file: _T | None,
    default: _T,
    *,
    unit: str = "",
) -> _T:
    """The flag's value (validated), else the file's, else the default."""
    if flag is not None:
        return validate_flag(adapter, flag, name, unit=unit)
    return default if from_file is None else from_file


def _technologies(
    args: argparse.Namespace, spec: PlanSpec, source: str, command: str
) -> list[Technology]:
    if args.tech or args.link or args.shared_link:
        chosen = resolve_technologies(args.tech, source=COMMAND_LINE, field="--tech")
        chosen += [_link(text, shared=False) for text in args.link]
        chosen += [_link(text, shared=True) for text in args.shared_link]
        where = COMMAND_LINE
    elif spec.technologies or spec.technology:
        chosen = resolve_technologies(spec.technologies, source=source, field="technologies")
        chosen += spec.technology
        where = source
    else:
        default = _DEFAULT_TECHNOLOGIES[command]
        chosen = resolve_technologies([default], source=COMMAND_LINE, field="--tech")
        where = COMMAND_LINE
    seen: set[str] = set()
    for technology in chosen:
        if technology.name in seen:
            raise ConfigError(where, "technology name", "each technology once", got=technology.name)
        seen.add(technology.name)
    return chosen


def _link(text: str, *, shared: bool) -> Technology:
    """``NAME:DOWN:UP[:COVERAGE_M]`` or, shared, ``NAME:MBPS[:COVERAGE_M]``."""
    flag = "--shared-link" if shared else "--link"
    parts = text.split(":")
    bandwidths = 1 if shared else 2
    if len(parts) not in (1 + bandwidths, 2 + bandwidths):
        example = (
            "NAME:MBPS[:COVERAGE_M], e.g. wifi6:1200 or wifi6:1200:300"
            if shared
            else "NAME:DOWN:UP[:COVERAGE_M], e.g. lte:150:50 or lte:150:50:5000"
        )
        raise ConfigError(COMMAND_LINE, flag, example + " (Mbps, metres)", got=text)
    raw = {"name": parts[0], "download_mbps": parts[1], "shared_channel": shared}
    if not shared:
        raw["upload_mbps"] = parts[2]
    if len(parts) == 2 + bandwidths:
        raw["coverage_m"] = parts[-1]
    try:
        return Technology.model_validate(raw)
    except ValidationError as exc:
        raise config_error(COMMAND_LINE, exc, docs=_DOCS, field=flag, got=text) from None


def _regions(args: argparse.Namespace, spec: PlanSpec, source: str) -> list[Region]:
    if args.region or args.regions:
        chosen = resolve_regions(args.regions, source=COMMAND_LINE, field="--regions")
        for text in args.region:
            name, equals, customers = text.rpartition("=")
            if not equals or not name.strip():
                raise ConfigError(
                    COMMAND_LINE, "--region", "NAME=CUSTOMERS, e.g. Cornwall=270000", got=text
                )
            count = validate_flag(REGION_CUSTOMERS, customers, "--region")
            chosen.append(Region(name=name.strip(), customers=count))
        where = COMMAND_LINE
    elif spec.regions or spec.region:
        chosen = resolve_regions(spec.regions, source=source, field="regions") + spec.region
        where = source
    else:
        chosen = resolve_regions([_DEFAULT_REGIONS], source=COMMAND_LINE, field="--regions")
        where = COMMAND_LINE
    names = [region.name for region in chosen]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(where, "region name", "each region once", got=name)
    return chosen


def _traffic(args: argparse.Namespace, spec: PlanSpec, source: str, command: str) -> Traffic:
    payload = _pick(
        args.message_bytes,
        MESSAGE_BYTES,
        "--message-bytes",
        spec.traffic.message_bytes,
        PAPER_MESSAGE_BYTES,
        unit=" (bytes)",
    )
    if args.per_second is not None:
        rate = exact(
            validate_flag(
                MESSAGE_RATE, args.per_second, "--per-second", unit=" (messages per second)"
            )
        )
    elif args.per_minute is not None:
        rate = (
            exact(
                validate_flag(
                    MESSAGE_RATE, args.per_minute, "--per-minute", unit=" (messages per minute)"
                )
            )
            / 60
        )
    elif spec.traffic.messages_per_second is not None:
        rate = exact(spec.traffic.messages_per_second)
    elif spec.traffic.messages_per_minute is not None:
        rate = exact(spec.traffic.messages_per_minute) / 60
    else:
        rate = PAPER_MESSAGES_PER_SECOND[command]
    wire = spec.wire
    overhead = args.gridmesh_overhead or wire.gridmesh_overhead
    signature = _pick(
        args.signature_bytes,
        SIGNATURE_BYTES,
        "--signature-bytes",
        wire.signature_bytes,
        COSE_SIGN1_EDDSA_BYTES,
        unit=" (bytes)",
    )
    topic = _pick(args.topic, TOPIC, "--topic", wire.topic, DEFAULT_TOPIC)
    if not overhead:
        for flag, value in (("--signature-bytes", args.signature_bytes), ("--topic", args.topic)):
            if value is not None:
                raise ConfigError(COMMAND_LINE, flag, "--gridmesh-overhead as well", got=value)
        return Traffic(payload, rate)
    size = measure_wire_size(payload, topic=topic, signature_bytes=signature)
    if size.message_bytes > MESSAGE_BYTES_MAX:
        fits = MESSAGE_BYTES_MAX - size.envelope_bytes - size.signature_bytes
        where = COMMAND_LINE if args.message_bytes is not None else source
        field = "--message-bytes" if args.message_bytes is not None else "traffic.message_bytes"
        raise ConfigError(
            where,
            field,
            f"at most about {fits} bytes with gridmesh's overhead (a gridmesh message is at "
            f"most {MESSAGE_BYTES_MAX} bytes)",
            got=payload,
        )
    return Traffic(payload, rate, size)


def _conventions(args: argparse.Namespace, spec: PlanSpec, command: str) -> Conventions:
    paper = paper_conventions(command)
    units = spec.units

    def choose(
        flag: str | None, from_file: _T | None, kind: Callable[[str], _T], default: _T
    ) -> _T:
        if flag is not None:
            return kind(flag)  # argparse checked the choices
        return default if from_file is None else from_file

    return Conventions(
        megabit=choose(args.megabit, units.megabit, MegabitUnit, paper.megabit),
        megabyte=choose(
            getattr(args, "megabyte", None), units.megabyte, MegabyteUnit, paper.megabyte
        ),
        count_rounding=choose(
            getattr(args, "rounding", None),
            units.count_rounding,
            CountRounding,
            paper.count_rounding,
        ),
        subsystem_average=choose(
            getattr(args, "average", None),
            units.subsystem_average,
            SubsystemAverage,
            paper.subsystem_average,
        ),
        subsystem_rounding=choose(
            getattr(args, "subsystem_rounding", None),
            units.subsystem_rounding,
            SubsystemRounding,
            paper.subsystem_rounding,
        ),
    )


def _check_paper_traffic(traffic: Traffic, command: str) -> None:
    rate = PAPER_MESSAGES_PER_SECOND[command]
    paper_size = traffic.wire is None and traffic.payload_bytes == PAPER_MESSAGE_BYTES
    if paper_size and traffic.messages_per_second == rate:
        return
    per = "1 per second" if rate == 1 else "1 per minute"
    raise ConfigError(
        COMMAND_LINE,
        "--compare-paper",
        f"the paper's traffic: {PAPER_MESSAGE_BYTES}-byte messages, {per}, no --gridmesh-overhead",
        got=f"{traffic.message_bytes} bytes at {float(traffic.messages_per_second):g}/s",
    )
