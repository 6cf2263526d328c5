"""The callee's memory of calls it served: what makes a retransmitted call harmless.

A caller sends the same call (same message id) again until a result comes, so
a callee sees copies. It keeps the result message of every call it served,
by ``(caller, call_id)``, and answers a copy from here without running the
handler again (Birrell and Nelson, "Implementing Remote Procedure Calls",
1984, section 3.2: at-most-once through call identifiers; the NFS "duplicate
request cache", Juszczak 1989, is the same idea).

Entries leave in the order they came (so oldest first): when ``ttl_s`` has
passed, by which time no copy should still be on its way (a caller retransmits
for at most its timeout, and ``ttl_s`` is at least the longest one allowed),
or earlier when the cache holds ``entries_max`` entries or ``bytes_max``
bytes of results. An early departure is counted in ``evicted``: a copy that
arrives after it finds no result (see ``ServiceCalls``).

The cache also counts entries per caller: a caller's entries are its calls
still *in flight* as the callee sees them (copies may still come), and
``calls_inflight_max`` bounds them, so that one caller cannot push every other
caller's results out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from gridmesh.wire import Envelope

__all__ = ["CachedResult", "CallKey", "ResultCache"]

#: ``(caller node id, call id)``: names one call.
CallKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CachedResult:
    """The answer to one call served: the result message, as sent the first time."""

    service: str
    reply: Envelope
    size_bytes: int
    expires_at: float


class ResultCache:
    """Results of recent calls, oldest first, bounded in time, entries and bytes."""

    __slots__ = (
        "_bytes",
        "_bytes_max",
        "_entries",
        "_entries_max",
        "_per_caller",
        "_ttl_s",
        "evicted",
    )

    def __init__(self, *, entries_max: int, bytes_max: int, ttl_s: float) -> None:
        assert entries_max >= 1 and bytes_max >= 1 and ttl_s > 0
        self._entries: OrderedDict[CallKey, CachedResult] = OrderedDict()
        self._per_caller: dict[int, int] = {}
        self._bytes = 0
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self._ttl_s = ttl_s
        self.evicted = 0  # entries pushed out before their time for want of room

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The encoded size of every result held."""
        return self._bytes

    def get(self, key: CallKey) -> CachedResult | None:
        return self._entries.get(key)

    def inflight(self, caller: int) -> int:
        """How many of ``caller``'s results are held (call ``expire`` first)."""
        return self._per_caller.get(caller, 0)

    def expire(self, now: float) -> None:
        """Forget the results whose time has passed."""
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires_at > now:
                break
            self._drop(key)

    def add(self, key: CallKey, service: str, reply: Envelope, size_bytes: int, now: float) -> None:
        """Keep ``reply``, the answer to call ``key``, for ``ttl_s`` from ``now``."""
        assert key not in self._entries
        assert 0 < size_bytes <= self._bytes_max, "a result must fit the cache alone"
        entries = self._entries
        while entries and (
            len(entries) >= self._entries_max or self._bytes + size_bytes > self._bytes_max
        ):
            self._drop(next(iter(entries)))
            self.evicted += 1
        entries[key] = CachedResult(service, reply, size_bytes, now + self._ttl_s)
        self._bytes += size_bytes
        caller = key[0]
        self._per_caller[caller] = self._per_caller.get(caller, 0) + 1

    def _drop(self, key: CallKey) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size_bytes
        caller = key[0]
        left = self._per_caller[caller] - 1
        if left:
            self._per_caller[caller] = left
        else:
            del self._per_caller[caller]
