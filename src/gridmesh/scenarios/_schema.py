"""Scenario files: TOML, validated field by field with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.config import load_toml, parse_toml, validate_model
from gridmesh.errors import LocalProtocolError
from gridmesh.grid import RuleList
from gridmesh.node import NodeConfig
from gridmesh.protocols.aggregation import (
    AGG_FANOUT_MAX,
    COLLECT_VECTOR_LENGTH_MAX,
    DEFAULT_REGISTRY,
    PUSHSUM_FUNCTIONS,
    PUSHSUM_ROUNDS_MAX,
    READING_BYTES_MAX,
    REPLY_OVERHEAD_BYTES,
)
from gridmesh.protocols.membership import GROUP_BYTES_MAX, check_profile
from gridmesh.scenarios._devices import DevicesSpec, check_devices
from gridmesh.scenarios._dr import DrSpec
from gridmesh.scenarios._readings import ReadingSpec
from gridmesh.scenarios._redy import RedySpec
from gridmesh.scenarios._security import SecuritySpec
from gridmesh.sim import NetworkConfig, RouterTopologyConfig
from gridmesh.wire import TOPIC_BYTES_MAX

__all__ = [
    "AggregateSpec",
    "BootstrapSpec",
    "BroadcastSpec",
    "CrashSpec",
    "CrashedFractionSpec",
    "EstimateSpec",
    "FaultsSpec",
    "PartitionSpec",
    "ReadingSpec",
    "RoleSpec",
    "Scenario",
    "SimulationSpec",
    "load_scenario",
    "parse_scenario",
]

NODES_MAX = 10_000_000
_DOCS = "docs/SCENARIOS.md"
_TIME_S_MAX = 30 * 86_400.0


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoleSpec(_Spec):
    """A group of nodes with one role; ids are given in file order, from 1.

    ``service`` (default: the role's name) and ``groups`` (default: those of
    ``[node]``) are what these nodes advertise and which group messages they
    deliver (seed 002: set at deployment, nothing at the sender).
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    count: int = Field(ge=1, le=NODES_MAX)
    service: str | None = None
    groups: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _profile_fits(self) -> RoleSpec:
        check_profile(self.service or self.name, self.groups or ())
        return self


class SimulationSpec(_Spec):
    duration_s: float = Field(default=30.0, gt=0.0, le=_TIME_S_MAX)
    seed: int = Field(default=1, ge=0, le=2**63 - 1)
    wire_fidelity: bool = Field(
        default=False, description="encode and decode every simulated message"
    )
    link_stress: bool = Field(
        default=False, description="trace each broadcast's copies over a router topology"
    )


class BootstrapSpec(_Spec):
    """How nodes find their first contact (partial-view and gossiped memberships).

    ``first``: everyone contacts node 1 (a star); ``previous``: node i contacts
    node i - 1 (a chain); ``random``: a random earlier node. With ``contacts``
    > 1, each node knows that many (nodes 1..k, i-1..i-k, or k random earlier
    ones), as an operator would configure several seeds. Node i starts at
    ``spread_s * (i - 1) / nodes``.
    """

    contact: Literal["first", "previous", "random"] = "first"
    contacts: int = Field(
        default=1, ge=1, le=16, description="how many distinct earlier nodes each node knows"
    )
    spread_s: float = Field(default=0.0, ge=0.0, le=_TIME_S_MAX)


class CrashedFractionSpec(_Spec):
    """Crash a random fraction of one role's nodes (never a broadcast or query origin).

    With ``spread_s`` > 0 each chosen node crashes at its own time, uniform in
    ``[at_s, at_s + spread_s)`` (crashes during a query, not before it).
    """

    role: str
    fraction: float = Field(ge=0.0, le=1.0)
    at_s: float = Field(default=0.0, ge=0.0, le=_TIME_S_MAX)
    spread_s: float = Field(default=0.0, ge=0.0, le=_TIME_S_MAX)
    recover_s: float | None = Field(default=None, ge=0.0, le=_TIME_S_MAX)

    @model_validator(mode="after")
    def _recover_after_crash(self) -> CrashedFractionSpec:
        if self.recover_s is not None and self.recover_s <= self.at_s + self.spread_s:
            raise ValueError("recover_s must be later than at_s + spread_s")
        return self


class CrashSpec(_Spec):
    """Crash one node (and optionally restart it with fresh state)."""

    node: int = Field(ge=1, le=NODES_MAX)
    at_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    recover_s: float | None = Field(default=None, ge=0.0, le=_TIME_S_MAX)

    @model_validator(mode="after")
    def _recover_after_crash(self) -> CrashSpec:
        if self.recover_s is not None and self.recover_s <= self.at_s:
            raise ValueError("recover_s must be later than at_s")
        return self


class PartitionSpec(_Spec):
    """Split the nodes at random into groups of the given fractions, then heal."""

    start_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    heal_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    fractions: list[float] = Field(min_length=2, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> PartitionSpec:
        if self.heal_s < self.start_s:
            raise ValueError("heal_s must not be earlier than start_s")
        if any(not 0.0 < f <= 1.0 for f in self.fractions):
            raise ValueError("every fraction must be in (0, 1]")
        if abs(sum(self.fractions) - 1.0) > 1e-9:
            raise ValueError("fractions must add up to 1")
        return self


class FaultsSpec(_Spec):
    crashed: list[CrashedFractionSpec] = Field(default_factory=list, max_length=1000)
    crashes: list[CrashSpec] = Field(default_factory=list, max_length=100_000)
    partitions: list[PartitionSpec] = Field(default_factory=list, max_length=1000)


class BroadcastSpec(_Spec):
    """One message disseminated by push gossip from ``origin``."""

    at_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    origin: str | int = Field(description="a role name (its first node) or a node id")
    topic: str = Field(min_length=1, max_length=TOPIC_BYTES_MAX)
    payload: Any = None
    fanout: float | None = Field(default=None, ge=1, le=64, description="mean copies per relay")
    hops: int | None = Field(default=None, ge=1, le=64)
    group: str = Field(default="", max_length=64, description="only this group's nodes deliver")
    reliability: float | None = Field(default=None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_way_to_choose_fanout(self) -> BroadcastSpec:
        if self.fanout is not None and self.reliability is not None:
            raise ValueError("give fanout or reliability, not both")
        return self


class AggregateSpec(_Spec):
    """One tree-aggregation query (seed 000's request-response gossip) from ``origin``.

    Unset ``fanout``, ``hops``, ``timeout_s`` and ``replies_min`` take
    ``[node.aggregation]``'s defaults. With a ``segment`` (a group the roles
    give their nodes) only that group's nodes contribute; the others relay.
    """

    at_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    origin: str | int = Field(description="a role name (its first node) or a node id")
    function: str = Field(min_length=1, max_length=64)
    reading: str = Field(min_length=1, max_length=READING_BYTES_MAX)
    params: dict[str, Any] = Field(default_factory=dict)
    fanout: int | None = Field(default=None, ge=0, le=AGG_FANOUT_MAX)
    hops: int | None = Field(default=None, ge=1, le=64)
    timeout_s: float | None = Field(default=None, gt=0.0, le=86_400.0)
    replies_min: int | None = Field(default=None, ge=0, le=AGG_FANOUT_MAX)
    segment: str | None = Field(
        default=None, min_length=1, max_length=GROUP_BYTES_MAX, description="a group name"
    )

    @model_validator(mode="after")
    def _function_known(self) -> AggregateSpec:
        try:
            DEFAULT_REGISTRY.create(self.function, self.params)
        except (LocalProtocolError, ValueError) as error:
            raise ValueError(str(error).splitlines()[0]) from None
        return self


class EstimateSpec(_Spec):
    """One push-sum estimate started by ``origin``; read at every live node at the end."""

    at_s: float = Field(ge=0.0, le=_TIME_S_MAX)
    origin: str | int = Field(description="a role name (its first node) or a node id")
    function: Literal["mean", "sum", "size"]
    reading: str = Field(default="", max_length=READING_BYTES_MAX)
    rounds: int | None = Field(default=None, ge=1, le=PUSHSUM_ROUNDS_MAX)

    @model_validator(mode="after")
    def _reading_given(self) -> EstimateSpec:
        assert self.function in PUSHSUM_FUNCTIONS
        if (self.function == "size") == bool(self.reading):
            raise ValueError("size takes no reading; mean and sum need one")
        return self


class Scenario(_Spec):
    """A whole simulated run."""

    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    simulation: SimulationSpec = SimulationSpec()
    roles: list[RoleSpec] = Field(min_length=1, max_length=1000)
    node: NodeConfig = NodeConfig()
    bootstrap: BootstrapSpec = BootstrapSpec()
    network: NetworkConfig = NetworkConfig()
    routers: RouterTopologyConfig = RouterTopologyConfig()
    faults: FaultsSpec = FaultsSpec()
    broadcast: list[BroadcastSpec] = Field(default_factory=list, max_length=100_000)
    readings: dict[str, ReadingSpec] = Field(default_factory=dict, max_length=256)
    aggregate: list[AggregateSpec] = Field(default_factory=list, max_length=10_000)
    estimate: list[EstimateSpec] = Field(default_factory=list, max_length=16)
    security: SecuritySpec = SecuritySpec()
    dr: DrSpec | None = None
    redy: RedySpec | None = None
    devices: DevicesSpec | None = None
    rules: RuleList = ()

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        names = [role.name for role in self.roles]
        if len(set(names)) != len(names):
            raise ValueError("role names must be unique")
        total = self.node_count
        if total > NODES_MAX:
            raise ValueError(f"at most {NODES_MAX} nodes in all")
        if self.security.enabled:
            for name in names:
                if self.security.pki_role(name) is None:
                    raise ValueError(
                        f"security.roles needs an entry for role {name!r} (one of dso, "
                        "aggregator, substation, dtc, meter, emd, device)"
                    )
        for unknown in set(self.security.roles) - set(names):
            raise ValueError(f"security.roles names unknown role {unknown!r}")
        for crashed in self.faults.crashed:
            if crashed.role not in names:
                raise ValueError(f"faults.crashed names unknown role {crashed.role!r}")
        for crash in self.faults.crashes:
            if crash.node > total:
                raise ValueError(f"faults.crashes names node {crash.node}; there are {total}")
        for spec in self.broadcast:
            self.origin_id(spec)  # raises ValueError when it does not resolve
            if spec.at_s > self.simulation.duration_s:
                raise ValueError(f"broadcast at_s={spec.at_s} is after the end of the run")
        self._check_readings(names)
        self._check_queries()
        # [devices] and [[rules]] (scenarios/_devices.py): errors located at their fields.
        check_devices(self)
        # [redy] (scenarios/_redy_spec.py): its role, initiator, epochs and readings.
        if self.redy is not None:
            self.redy.check(self)
        # [dr] (scenarios/_dr.py): its roles, region, deadline, timeouts and call limits.
        if self.dr is not None:
            self.dr.check(self)
        return self

    def _check_readings(self, roles: list[str]) -> None:
        for name, reading in self.readings.items():
            where = f"readings.{name}"
            if not 0 < len(name.encode()) <= READING_BYTES_MAX:
                raise ValueError(f"{where}: a reading name is 1..{READING_BYTES_MAX} bytes")
            for role in reading.roles or ():
                if role not in roles:
                    raise ValueError(f"{where} names unknown role {role!r}")
            if reading.total_of is not None:
                source = self.readings.get(reading.total_of)
                if source is None or source.vector is None:
                    raise ValueError(
                        f"{where}: total_of must name a vector reading, got {reading.total_of!r}"
                    )

    def _check_queries(self) -> None:
        duration_s = self.simulation.duration_s
        defaults = self.node.aggregation
        groups = {group for role in self.roles for group in self._role_groups(role)}
        for index, query in enumerate(self.aggregate):
            where = f"aggregate[{index}]"
            self._origin_id(query.origin, where)
            reading = self.readings.get(query.reading)
            if reading is None:
                raise ValueError(f"{where} names reading {query.reading!r}; define [readings.*]")
            if query.segment is not None and query.segment not in groups:
                raise ValueError(
                    f"{where}: segment {query.segment!r} is no node's group; give a role "
                    f"groups = [...] (or [node] groups) that holds it"
                )
            if query.function == "collect":
                self._check_collect(query, where)
            elif query.function == "vector_sum":
                length = query.params.get("length")
                if reading.length != length:
                    shape = "a scalar" if reading.length is None else f"{reading.length} elements"
                    raise ValueError(
                        f"{where}: vector_sum length {length} does not fit reading "
                        f"{query.reading!r} ({shape})"
                    )
            elif reading.length is not None:
                raise ValueError(
                    f"{where}: {query.function} takes a number, but reading {query.reading!r} "
                    f"is a vector (use vector_sum, or a total_of reading)"
                )
            fanout = defaults.fanout if query.fanout is None else query.fanout
            hops = defaults.hops if query.hops is None else query.hops
            timeout_s = defaults.timeout_s if query.timeout_s is None else query.timeout_s
            if (fanout or 0) > defaults.fanout_max or hops > defaults.hops_max:
                raise ValueError(f"{where}: fanout or hops above node.aggregation's limits")
            if not 0.001 <= timeout_s / hops <= defaults.hop_timeout_s_max:
                raise ValueError(
                    f"{where}: timeout_s / hops must be in 0.001..{defaults.hop_timeout_s_max} s"
                )
            if query.at_s + timeout_s > duration_s:
                raise ValueError(
                    f"{where}: at_s + timeout_s = {query.at_s + timeout_s} s is after the end "
                    f"of the run ({duration_s} s); its result might not come in time"
                )
        pushsum = self.node.pushsum
        for index, estimate in enumerate(self.estimate):
            where = f"estimate[{index}]"
            self._origin_id(estimate.origin, where)
            if estimate.reading:
                reading = self.readings.get(estimate.reading)
                if reading is None or reading.length is not None:
                    raise ValueError(
                        f"{where} needs a scalar reading; {estimate.reading!r} is "
                        + ("not defined" if reading is None else "a vector")
                    )
            rounds = pushsum.rounds if estimate.rounds is None else estimate.rounds
            if estimate.at_s + rounds * pushsum.round_s > duration_s:
                raise ValueError(
                    f"{where}: its {rounds} rounds of {pushsum.round_s} s end after the run"
                )

    def _check_collect(self, query: AggregateSpec, where: str) -> None:
        length = self.readings[query.reading].length
        if length is not None and length > COLLECT_VECTOR_LENGTH_MAX:
            raise ValueError(
                f"{where}: collect takes a number or a vector of at most "
                f"{COLLECT_VECTOR_LENGTH_MAX} elements; reading {query.reading!r} has {length}"
            )
        bytes_max = self.aggregate_params(query)["bytes_max"]
        most = self.node.message_bytes_max - REPLY_OVERHEAD_BYTES
        if not isinstance(bytes_max, int) or bytes_max > most:
            raise ValueError(
                f"{where}: collect bytes_max {bytes_max} would not fit one reply of "
                f"node.message_bytes_max ({self.node.message_bytes_max}): at most {most}"
            )

    def aggregate_params(self, query: AggregateSpec) -> dict[str, Any]:
        """The params ``query`` runs with: ``collect``'s ``bytes_max`` defaults, as in
        ``Node.collect``, to what fits one reply of ``node.message_bytes_max``."""
        params = dict(query.params)
        if query.function == "collect":
            params.setdefault("bytes_max", self.node.message_bytes_max - REPLY_OVERHEAD_BYTES)
        return params

    @property
    def node_count(self) -> int:
        return sum(role.count for role in self.roles)

    def group_ids(self, group: str) -> list[int]:
        """The node ids whose role (or ``[node]``) lists ``group`` in its groups."""
        ids: list[int] = []
        for role in self.roles:
            if group in self._role_groups(role):
                ids.extend(self.role_ids(role.name))
        return ids

    def _role_groups(self, role: RoleSpec) -> tuple[str, ...]:
        return self.node.groups if role.groups is None else role.groups

    def node_configs(self) -> list[tuple[range, RoleSpec, NodeConfig]]:
        """Each role's node ids and node configuration (``node`` plus its profile)."""
        result = []
        first = 1
        base = self.node.model_dump()
        for role in self.roles:
            config = NodeConfig.model_validate(
                {
                    **base,
                    "service": role.service or role.name,
                    "groups": self._role_groups(role),
                }
            )
            result.append((range(first, first + role.count), role, config))
            first += role.count
        return result

    def role_ids(self, name: str) -> range:
        first = 1
        for role in self.roles:
            if role.name == name:
                return range(first, first + role.count)
            first += role.count
        raise ValueError(f"unknown role {name!r}")

    def origin_id(self, spec: BroadcastSpec | AggregateSpec | EstimateSpec) -> int:
        """The node id a broadcast, query or estimate starts from."""
        return self._origin_id(spec.origin, "broadcast" if isinstance(spec, BroadcastSpec) else "")

    def _origin_id(self, origin: str | int, where: str) -> int:
        if isinstance(origin, int):
            if not 1 <= origin <= self.node_count:
                raise ValueError(f"{where} origin {origin} is not a node id".lstrip())
            return origin
        if where and origin not in {role.name for role in self.roles}:
            raise ValueError(f"{where} origin names unknown role {origin!r}")
        return self.role_ids(origin)[0]

    def reading_holders(self, name: str) -> list[int]:
        """The node ids that hold reading ``name`` (a ``total_of``: its vector's holders)."""
        spec = self.readings[name]
        if spec.total_of is not None:
            return self.reading_holders(spec.total_of)
        if spec.roles is None:
            return list(range(1, self.node_count + 1))
        return [node_id for role in spec.roles for node_id in self.role_ids(role)]


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; raises ``ConfigError`` naming file and field."""
    return validate_model(Scenario, load_toml(path), source=str(path), docs=_DOCS)


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    return validate_model(Scenario, parse_toml(text, source=source), source=source, docs=_DOCS)
