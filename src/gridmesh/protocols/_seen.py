"""A bounded set of recently seen message keys, for duplicate suppression.

Two generations of plain sets: keys go into ``_current``; when it holds half
the capacity, it becomes ``_previous`` and a fresh set starts. A lookup checks
both. So the cache never holds more than ``capacity`` keys, always remembers
at least the ``capacity // 2`` newest, and every operation is O(1) — unlike
evicting one key at a time from an insertion-ordered dict, which degrades as
deleted slots pile up at its front.
"""

from __future__ import annotations

from collections.abc import Hashable, Set

__all__ = ["SeenCache"]

# Shared by every fresh cache: a simulated node that never sees a message
# should not pay for a second empty set.
_NOTHING: frozenset[Hashable] = frozenset()


class SeenCache:
    """Remembers the newest keys, at most ``capacity`` of them."""

    __slots__ = ("_current", "_generation_max", "_previous")

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self._generation_max = capacity // 2
        self._current: set[Hashable] = set()
        self._previous: Set[Hashable] = _NOTHING

    def add(self, key: Hashable) -> bool:
        """Record ``key``; return False if it was already known (a duplicate)."""
        if key in self._current or key in self._previous:
            return False
        current = self._current
        if len(current) >= self._generation_max:
            self._previous = current
            current = self._current = set()
        current.add(key)
        return True

    def __contains__(self, key: Hashable) -> bool:
        return key in self._current or key in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
