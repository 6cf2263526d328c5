"""``[redy]``: the fields of ReDy balancing and their checks (docs/SCENARIOS.md).

``scenarios/_redy.py`` runs what this describes; the checks against the rest
of the file (``RedySpec.check``) are called from ``Scenario``'s own, and every
error names the field it is about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.grid import UnitMix
from gridmesh.protocols.aggregation import PUSHSUM_ROUNDS_MAX
from gridmesh.scenarios._services import located

if TYPE_CHECKING:
    from gridmesh.scenarios._schema import Scenario

__all__ = ["REDY_READINGS", "REDY_SAMPLES_MAX", "REDY_STATE", "RedySpec"]

#: Push-sum's readings: uncontrolled net load, upward and downward flexibility (kW).
REDY_READINGS = ("redy_net_kw", "redy_raise_kw", "redy_lower_kw")
#: The tree's reading: the three as one vector.
REDY_STATE = "redy_state_kw"
#: Most samples of the grid's state in one run (``duration_s / sample_interval_s``).
REDY_SAMPLES_MAX = 100_000
_TIME_S_MAX = 30 * 86_400.0
_KW_MAX = 1_000_000.0


class RedySpec(BaseModel):
    """``[redy]``: governance units balancing the grid (docs/SCENARIOS.md, "ReDy balancing")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str | None = Field(
        default=None, description="the role whose nodes are governance units (default: all)"
    )
    initiator: str | int | None = Field(
        default=None, description="the unit that paces epochs: a role (its first node) or an id"
    )
    estimator: Literal["tree", "pushsum"] = Field(
        default="tree", description="tree aggregation + gossip of the totals, or push-sum"
    )
    consumers: float = Field(default=0.6, ge=0.0, le=1.0, description="share of homes")
    prosumers: float = Field(default=0.35, ge=0.0, le=1.0, description="homes with PV")
    producers: float = Field(default=0.05, ge=0.0, le=1.0, description="renewable plants")
    base_load_kw: tuple[float, float] = Field(
        default=(0.2, 1.2), description="a home's inflexible load, uniform in [low, high]"
    )
    producer_kw: tuple[float, float] = Field(
        default=(10.0, 50.0), description="a plant's capacity, uniform in [low, high]"
    )
    running_share: float = Field(
        default=0.3, ge=0.0, le=1.0, description="chance a shiftable device runs now"
    )
    output_share: float = Field(
        default=0.6, ge=0.0, le=1.0, description="renewable output now, a share of peak"
    )
    output_variation: float = Field(
        default=0.0, ge=0.0, le=1.0, description="relative amplitude of the output's swing"
    )
    output_period_s: float = Field(default=600.0, gt=0.0, le=_TIME_S_MAX)
    start_s: float = Field(default=10.0, ge=0.0, le=_TIME_S_MAX, description="first epoch")
    epoch_s: float = Field(default=15.0, gt=0.0, le=_TIME_S_MAX, description="epoch period")
    rounds: int = Field(
        default=10, ge=1, le=PUSHSUM_ROUNDS_MAX, description="pushsum: rounds per epoch"
    )
    settle_rounds: int = Field(
        default=8, ge=1, le=PUSHSUM_ROUNDS_MAX, description="pushsum: rounds to trust an epoch"
    )
    recount_below: float = Field(
        default=0.9, ge=0.0, le=1.0, description="tree: count again below this coverage"
    )
    counts_max: int = Field(default=2, ge=1, le=16, description="tree: counts per epoch")
    decide_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    sample_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    target_share: float = Field(
        default=0.05, gt=0.0, le=1.0, description="settled: |imbalance| <= this share of start"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RedySpec:
        shares = self.consumers + self.prosumers + self.producers
        if abs(shares - 1.0) > 1e-9:
            raise located(
                ("consumers",),
                f"consumers + prosumers + producers adding up to 1 (they add up to {shares:g})",
                self.consumers,
            )
        for name in ("base_load_kw", "producer_kw"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= _KW_MAX:
                raise located(
                    (name,), f"[low, high] with 0 <= low <= high <= {_KW_MAX:,.0f} kW", [low, high]
                )
        if self.settle_rounds > self.rounds:
            raise located(("settle_rounds",), f"at most rounds ({self.rounds})", self.settle_rounds)
        return self

    def mix(self) -> UnitMix:
        return UnitMix(
            consumers=self.consumers,
            prosumers=self.prosumers,
            producers=self.producers,
            base_load_kw=self.base_load_kw,
            producer_kw=self.producer_kw,
            running_share=self.running_share,
        )

    def check(self, scenario: Scenario) -> None:
        """Cross-checks against the rest of the file; errors located at the field."""
        roles = [role.name for role in scenario.roles]
        if self.role is not None and self.role not in roles:
            raise located(
                ("redy", "role"), f"a role of this file, one of: {', '.join(roles)}", self.role
            )
        units = self.unit_ids(scenario)
        if self.initiator_id(scenario) not in units:
            raise located(
                ("redy", "initiator"),
                f"a governance unit: a node id in {units.start}..{units.stop - 1} or a role "
                f"whose first node is one",
                self.initiator,
            )
        duration_s = scenario.simulation.duration_s
        settle_s, settles, shortest_s, ends = self.timing(scenario)
        if self.start_s + settle_s > duration_s:
            raise located(
                ("redy", "start_s"),
                f"a first epoch that settles ({settles}) before the end of the run: at most "
                f"{duration_s - settle_s:g} s",
                self.start_s,
            )
        if self.epoch_s < shortest_s:
            raise located(
                ("redy", "epoch_s"),
                f"at least {shortest_s:g} s, so that an epoch ends before the next one starts "
                f"({ends})",
                self.epoch_s,
            )
        estimates_max = scenario.node.pushsum.estimates_max
        if self.estimator == "pushsum" and estimates_max < len(REDY_READINGS):
            raise located(
                ("node", "pushsum", "estimates_max"),
                f"at least {len(REDY_READINGS)} with [redy] estimator = 'pushsum' (one estimate "
                f"per reading)",
                estimates_max,
            )
        for name in (*REDY_READINGS, REDY_STATE):
            if name in scenario.readings:
                raise located(
                    ("readings", name),
                    f"another name: {', '.join((*REDY_READINGS, REDY_STATE))} are [redy]'s own",
                    None,
                )
        fewest_s = duration_s / REDY_SAMPLES_MAX
        if self.sample_interval_s < fewest_s:
            raise located(
                ("redy", "sample_interval_s"),
                f"at least duration_s / {REDY_SAMPLES_MAX:,} = {fewest_s:g} s",
                self.sample_interval_s,
            )

    def timing(self, scenario: Scenario) -> tuple[float, str, float, str]:
        """How long an epoch takes to settle and to end, each with its reason."""
        if self.estimator == "tree":
            timeout_s = scenario.node.aggregation.timeout_s
            why = f"node.aggregation.timeout_s = {timeout_s:g} s"
            return timeout_s, why, timeout_s, why
        round_s = scenario.node.pushsum.round_s
        return (
            (self.settle_rounds + 1) * round_s,
            f"settle_rounds + 1 = {self.settle_rounds + 1} rounds of {round_s:g} s",
            (self.rounds + 1) * round_s,
            f"rounds + 1 = {self.rounds + 1} rounds of {round_s:g} s",
        )

    def unit_ids(self, scenario: Scenario) -> range:
        if self.role is None:
            return range(1, scenario.node_count + 1)
        return scenario.role_ids(self.role)

    def initiator_id(self, scenario: Scenario) -> int:
        """The initiator's node id: 0 when it names no node (``check`` refuses that)."""
        initiator = self.initiator
        if initiator is None:
            return self.unit_ids(scenario)[0]
        if isinstance(initiator, int):
            return initiator if 1 <= initiator <= scenario.node_count else 0
        if initiator not in {role.name for role in scenario.roles}:
            return 0
        return scenario.role_ids(initiator)[0]
