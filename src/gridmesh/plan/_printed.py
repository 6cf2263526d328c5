"""Numbers as seed 001 printed them, and how to tell whether a count agrees.

Table I prints counts at varying precision ("1.5 k", "15.6 k", "156 k",
"203"). Every printed value that follows a consistent convention is the exact
count *truncated* to the printed digits: 1562.5 peers is printed "1.5 k"
(rounding would print "1.6 k"), 546.875 is printed "546" (not 547). So a
printed value ``v`` with last-digit resolution ``r`` admits the counts in
``[v, v + r)`` and no others; ``PrintedCount.admits`` is that test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["PrintedCount"]

_COUNT = re.compile(r"^\s*(?P<whole>\d+)(?:\.(?P<part>\d+))?\s*(?P<kilo>k)?\s*$")


@dataclass(frozen=True, slots=True)
class PrintedCount:
    """A count as printed: its nominal value and the resolution of its last digit."""

    text: str
    value: Fraction
    resolution: Fraction

    @classmethod
    def parse(cls, text: str) -> PrintedCount:
        match = _COUNT.match(text)
        if match is None:
            raise ValueError(f"not a printed count: {text!r}")
        part = match["part"] or ""
        scale = 1000 if match["kilo"] else 1
        value = Fraction(f"{match['whole']}.{part or '0'}") * scale
        return cls(text, value, Fraction(scale, 10 ** len(part)))

    def admits(self, count: int) -> bool:
        """True when ``count`` truncated to the printed digits gives this value."""
        return self.value <= count < self.value + self.resolution

    def difference(self, count: int) -> Fraction:
        """``count`` minus the printed value (0 <= difference < resolution when admitted)."""
        return count - self.value
