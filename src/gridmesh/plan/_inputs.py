"""What a planner gives the capacity planner: links, traffic, regions, conventions.

Theory of operation
-------------------
Input arrives from two places, a TOML file and command-line flags, and both
are validated by the same pydantic types, so a limit is written once. Every
failure becomes one ``ConfigError`` that names the source (the file, or
``"command line"``), the field (``technology[2].download_mbps`` or
``--link``) and what would have been accepted, with its unit.

Everything that grows has a bound: bandwidths up to ``BANDWIDTH_MBPS_MAX``,
messages up to ``MESSAGE_SIZE_BYTES_MAX``, at most ``TECHNOLOGIES_MAX`` links
and ``REGIONS_MAX`` regions in one plan.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from gridmesh.config import config_error, load_toml, parse_toml, validate_model
from gridmesh.plan._units import (
    CountRounding,
    MegabitUnit,
    MegabyteUnit,
    SubsystemAverage,
    SubsystemRounding,
    exact,
)
from gridmesh.protocols.dissemination import FANOUT_MAX
from gridmesh.wire import AUTH_BYTES_MAX, TOPIC_BYTES_MAX

__all__ = [
    "BANDWIDTH_MBPS_MAX",
    "CUSTOMERS_MAX",
    "FANOUT",
    "MESSAGE_BYTES",
    "MESSAGE_RATE",
    "MESSAGE_SIZE_BYTES_MAX",
    "PAPER_HOUSES_PER_KM2",
    "REGIONS_MAX",
    "REGION_CUSTOMERS",
    "SIGNATURE_BYTES",
    "TECHNOLOGIES_MAX",
    "TOPIC",
    "GossipSpec",
    "PlanSpec",
    "Region",
    "Technology",
    "TrafficSpec",
    "UnitsSpec",
    "WireSpec",
    "load_plan_file",
    "parse_plan",
    "validate_flag",
]

_DOCS = "docs/PLANNING.md"

#: 10 Tbit/s: far above any single link a planner would size.
BANDWIDTH_MBPS_MAX = 10_000_000
#: 16 MiB: far above any event message; gridmesh's own limit is lower (MESSAGE_BYTES_MAX).
MESSAGE_SIZE_BYTES_MAX = 16 * 2**20
#: A million messages per second per peer.
MESSAGE_RATE_MAX = 1_000_000
#: Ten times the world's households.
CUSTOMERS_MAX = 20_000_000_000
TECHNOLOGIES_MAX = 1000
REGIONS_MAX = 10_000
#: Seed 001, V.B.1: "the house density in the UK is 109 houses per Km^2".
PAPER_HOUSES_PER_KM2 = 109
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"

Bandwidth = Annotated[float, Field(gt=0, le=BANDWIDTH_MBPS_MAX, allow_inf_nan=False)]
MessageBytes = Annotated[int, Field(ge=1, le=MESSAGE_SIZE_BYTES_MAX)]
MessageRate = Annotated[float, Field(gt=0, le=MESSAGE_RATE_MAX, allow_inf_nan=False)]
SignatureBytes = Annotated[int, Field(ge=0, le=AUTH_BYTES_MAX)]
Fanout = Annotated[int, Field(ge=1, le=FANOUT_MAX)]
RegionCustomers = Annotated[int, Field(ge=1, le=CUSTOMERS_MAX)]
Topic = Annotated[str, Field(min_length=1, max_length=TOPIC_BYTES_MAX)]

MESSAGE_BYTES: TypeAdapter[int] = TypeAdapter(MessageBytes)
MESSAGE_RATE: TypeAdapter[float] = TypeAdapter(MessageRate)
SIGNATURE_BYTES: TypeAdapter[int] = TypeAdapter(SignatureBytes)
FANOUT: TypeAdapter[int] = TypeAdapter(Fanout)
REGION_CUSTOMERS: TypeAdapter[int] = TypeAdapter(RegionCustomers)
TOPIC: TypeAdapter[str] = TypeAdapter(Topic)
TechnologyName = Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME_PATTERN)]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Technology(_Spec):
    """One link technology: how fast it is each way, and whether both ways share it."""

    name: TechnologyName
    family: str = Field(default="", max_length=64, description="display group, e.g. DSL")
    scope: Literal["lan", "wan"] | None = None
    download_mbps: Bandwidth
    upload_mbps: Bandwidth | None = None
    shared_channel: bool = False
    coverage_m: float | None = Field(default=None, gt=0, le=1e8, allow_inf_nan=False)
    coverage_note: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_bandwidth_per_channel(self) -> Technology:
        if self.shared_channel and self.upload_mbps not in (None, self.download_mbps):
            raise ValueError("a shared channel has one bandwidth: give download_mbps only")
        if not self.shared_channel and self.upload_mbps is None:
            raise ValueError("upload_mbps, unless shared_channel = true")
        return self

    def download_bps(self, megabit: MegabitUnit) -> Fraction:
        return exact(self.download_mbps) * megabit.bits

    def upload_bps(self, megabit: MegabitUnit) -> Fraction:
        """The upload channel; a shared channel is the same channel as download."""
        mbps = self.download_mbps if self.upload_mbps is None else self.upload_mbps
        return exact(mbps) * megabit.bits


class Region(_Spec):
    """A region with its customers, given directly or as area times house density."""

    name: str = Field(min_length=1, max_length=100)
    customers: RegionCustomers | None = None
    area_km2: float | None = Field(default=None, gt=0, le=1e8, allow_inf_nan=False)
    houses_per_km2: float = Field(default=PAPER_HOUSES_PER_KM2, gt=0, le=1e6, allow_inf_nan=False)

    @model_validator(mode="after")
    def _customers_or_area(self) -> Region:
        if (self.customers is None) == (self.area_km2 is None):
            raise ValueError("exactly one of customers or area_km2")
        if self.area_km2 is not None and self.customer_count > CUSTOMERS_MAX:
            raise ValueError(f"area_km2 * houses_per_km2 at most {CUSTOMERS_MAX:,} customers")
        return self

    @property
    def customer_count(self) -> int:
        """Customers; from an area, rounded half up (39193.5 km2 * 109 -> 4272092)."""
        if self.customers is not None:
            return self.customers
        assert self.area_km2 is not None
        return CountRounding.NEAREST.apply(exact(self.area_km2) * exact(self.houses_per_km2))


class UnitsSpec(_Spec):
    """Conventions; a missing one takes the paper's for the command (docs/PLANNING.md)."""

    megabit: MegabitUnit | None = None
    megabyte: MegabyteUnit | None = None
    count_rounding: CountRounding | None = None
    subsystem_average: SubsystemAverage | None = None
    subsystem_rounding: SubsystemRounding | None = None


class TrafficSpec(_Spec):
    """Message size and how often each peer or customer sends one."""

    message_bytes: MessageBytes | None = None
    messages_per_second: MessageRate | None = None
    messages_per_minute: MessageRate | None = None

    @model_validator(mode="after")
    def _one_rate(self) -> TrafficSpec:
        if self.messages_per_second is not None and self.messages_per_minute is not None:
            raise ValueError("messages_per_second or messages_per_minute, not both")
        return self


class WireSpec(_Spec):
    """gridmesh's own per-message overhead (measured envelope + signature estimate)."""

    gridmesh_overhead: bool = False
    signature_bytes: SignatureBytes | None = None
    topic: Topic | None = None


class GossipSpec(_Spec):
    fanout: Fanout | None = None


class PlanSpec(_Spec):
    """A plan input file (see examples/plan-*.toml)."""

    units: UnitsSpec = UnitsSpec()
    traffic: TrafficSpec = TrafficSpec()
    wire: WireSpec = WireSpec()
    gossip: GossipSpec = GossipSpec()
    technologies: list[str] = Field(default=[], max_length=TECHNOLOGIES_MAX)
    technology: list[Technology] = Field(default=[], max_length=TECHNOLOGIES_MAX)
    regions: list[str] = Field(default=[], max_length=REGIONS_MAX)
    region: list[Region] = Field(default=[], max_length=REGIONS_MAX)


def load_plan_file(path: Path) -> PlanSpec:
    """Read and validate a plan file; raises ``ConfigError`` naming the file and field."""
    return validate_model(PlanSpec, load_toml(path), source=str(path), docs=_DOCS)


def parse_plan(text: str, *, source: str = "<plan>") -> PlanSpec:
    return validate_model(PlanSpec, parse_toml(text, source=source), source=source, docs=_DOCS)


_T = TypeVar("_T")


def validate_flag(adapter: TypeAdapter[_T], text: object, flag: str, *, unit: str = "") -> _T:
    """Validate one flag's value with a field's adapter; errors name the flag."""
    try:
        return adapter.validate_python(text)
    except ValidationError as exc:
        raise config_error(
            "command line", exc, docs=_DOCS, field=flag, got=text, unit=unit
        ) from None
