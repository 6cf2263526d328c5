"""Units and rounding conventions of the capacity planner.

Theory of operation
-------------------
Seed 001 prints three tables that use *different* conventions, never stated;
they were recovered from the printed numbers (docs/PLANNING.md has the
arithmetic):

* Table I (peers per link): a megabit is 10**6 bits and counts are truncated.
* Table II (customers per actor): a megabit is 2**20 bits and counts are
  rounded to the nearest whole customer.
* Table III (subsystems per region): a megabit is 2**20 bits, a megabyte is
  2**20 bytes, and the subsystem count is an average over technologies that
  the paper does not define; gridmesh takes the mean of the per-technology
  ratios and rounds it up (``ratio-mean``, ``ceil``).

Every convention is an explicit value here, so a plan states the conventions
it used and a planner can switch them. All arithmetic is exact
(``fractions.Fraction``): a bandwidth of 14.4 Mbps is 72/5 Mbps, not the
nearest binary float, so a count never lands one below an integer boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

__all__ = [
    "SECONDS_PER_MINUTE",
    "Conventions",
    "CountRounding",
    "MegabitUnit",
    "MegabyteUnit",
    "SubsystemAverage",
    "SubsystemRounding",
    "exact",
    "format_fixed",
    "paper_conventions",
]

SECONDS_PER_MINUTE = 60


class MegabitUnit(StrEnum):
    """What "Mbps" means: 10**6 bits per second, or 2**20."""

    DECIMAL = "decimal"
    BINARY = "binary"

    @property
    def bits(self) -> int:
        return 10**6 if self is MegabitUnit.DECIMAL else 2**20


class MegabyteUnit(StrEnum):
    """What "MBytes" means: 10**6 bytes, or 2**20."""

    DECIMAL = "decimal"
    BINARY = "binary"

    @property
    def bytes(self) -> int:
        return 10**6 if self is MegabyteUnit.DECIMAL else 2**20


class CountRounding(StrEnum):
    """How a fractional count of peers or customers becomes a whole number."""

    FLOOR = "floor"  # truncate: never more than the link carries (Table I)
    NEAREST = "nearest"  # round half up (Table II)

    def apply(self, value: Fraction) -> int:
        if self is CountRounding.FLOOR:
            return math.floor(value)
        return math.floor(value + Fraction(1, 2))


class SubsystemRounding(StrEnum):
    """How a fractional number of subsystems becomes a whole number."""

    CEIL = "ceil"  # enough subsystems to carry the whole load
    NEAREST = "nearest"  # round half up

    def apply(self, value: Fraction) -> int:
        if self is SubsystemRounding.CEIL:
            return math.ceil(value)
        return math.floor(value + Fraction(1, 2))


class SubsystemAverage(StrEnum):
    """How Table III's "average number calculated for each WAN technology" is taken."""

    RATIO_MEAN = "ratio-mean"  # mean of load/capacity over technologies, then round
    COUNT_MEAN = "count-mean"  # mean of the rounded per-technology counts, then round


@dataclass(frozen=True, slots=True)
class Conventions:
    """The unit and rounding conventions one plan uses."""

    megabit: MegabitUnit
    megabyte: MegabyteUnit
    count_rounding: CountRounding
    subsystem_average: SubsystemAverage
    subsystem_rounding: SubsystemRounding

    def as_dict(self) -> dict[str, str]:
        return {
            "megabit": self.megabit.value,
            "megabyte": self.megabyte.value,
            "count_rounding": self.count_rounding.value,
            "subsystem_average": self.subsystem_average.value,
            "subsystem_rounding": self.subsystem_rounding.value,
        }


_PAPER = {
    # Table I: 10 Mbps / 6400 bit = 1562.5 printed "1.5 k"; 3.5 Mbps -> 546.875 printed 546.
    "peers": Conventions(
        MegabitUnit.DECIMAL,
        MegabyteUnit.BINARY,
        CountRounding.FLOOR,
        SubsystemAverage.RATIO_MEAN,
        SubsystemRounding.CEIL,
    ),
    # Table II: 100 * 2**20 * 60 / 6400 = 983040 printed; 662 Mbps -> 6507724.8 printed 6507725.
    "customers": Conventions(
        MegabitUnit.BINARY,
        MegabyteUnit.BINARY,
        CountRounding.NEAREST,
        SubsystemAverage.RATIO_MEAN,
        SubsystemRounding.CEIL,
    ),
    # Table III: 2084080 * 800 / 2**20 = 1590.027 printed 1590.03; subsystems: see module doc.
    "subsystems": Conventions(
        MegabitUnit.BINARY,
        MegabyteUnit.BINARY,
        CountRounding.NEAREST,
        SubsystemAverage.RATIO_MEAN,
        SubsystemRounding.CEIL,
    ),
}


def paper_conventions(command: str) -> Conventions:
    """The conventions of the seed 001 table that ``command`` reproduces."""
    return _PAPER[command]


def exact(value: float | int) -> Fraction:
    """``value`` as the exact decimal a user wrote (14.4 -> 72/5), not its binary float."""
    if isinstance(value, int):
        return Fraction(value)
    assert math.isfinite(value), value
    return Fraction(repr(value))


def format_fixed(value: Fraction, places: int) -> str:
    """``value`` with ``places`` decimals, rounded half up (1590.0268 -> "1590.03")."""
    assert value >= 0 and places >= 0
    scaled = math.floor(value * 10**places + Fraction(1, 2))
    if places == 0:
        return str(scaled)
    whole, part = divmod(scaled, 10**places)
    return f"{whole}.{part:0{places}d}"
