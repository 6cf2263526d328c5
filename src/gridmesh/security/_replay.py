"""Replay protection: a sliding window of sequence numbers per origin, and freshness.

Theory of operation
-------------------
A relay can neither forge nor alter a signed message, but it can send a copy
again: a DR command replayed an hour later switches loads off an hour late.
Every origin therefore numbers what it signs with ``(epoch, seq)`` and stamps
its creation time ``created_s`` (its own clock, seconds), and every receiver
runs ``ReplayGuard.check(origin, epoch, seq, created_s, now)`` *after* the
signature verified (before it, a forger could move an origin's window
forward and have its genuine messages refused) and before acting on the
message. The check raises, and leaves the state unchanged, or records the
message:

1. **Freshness.** ``created_s`` must lie in ``[now - freshness_s, now +
   future_skew_s]``, else ``Stale``. This bounds for how long any copy is
   worth keeping track of, and needs clocks synchronized to well within
   ``future_skew_s`` (NTP or GNSS; a DSO's network has them).
2. **Epoch.** An origin that restarts has forgotten its sequence numbers; it
   signs with a higher *epoch* (incarnation) and starts ``seq`` again. The
   guard keeps one epoch per origin: a higher epoch resets the window to the
   new message, a lower one is ``Replayed`` (messages an origin sent just
   before it restarted, still in flight, are lost with them). An origin
   takes its epoch from a counter it persists, or from its start time in
   whole seconds, which needs no storage while its clock never steps back.
3. **Window** (RFC 4303 section 3.4.3, RFC 6347 section 4.1.2.6). Per origin
   the guard keeps the highest ``seq`` accepted and a bitmap of the
   ``window`` sequence numbers at and below it (bit *i*: ``highest - i``
   seen). A ``seq`` above the highest is accepted and slides the window
   (numbers may be skipped: gossip loses some); one within the window and
   not yet seen is accepted and marked (gossip reorders); one already marked,
   or left of the window, is ``Replayed``. ``window`` must exceed the
   reordering an origin's messages meet: its rate times the spread of path
   delays (1,000 messages/s spread over 1 s needs 1,024).

A message accepted once is never accepted again while its origin is in the
table: either its bit is marked, or it is left of the window, or its epoch is
below the origin's. Only the table's eviction can break that, and only for
fresh messages (older ones are ``Stale`` anyway).

**Bounded origins.** At most ``origins_max`` origins are tracked, in two
generations like ``protocols._seen.SeenCache``: an origin is recorded in the
current generation whenever a message of it is checked; when that holds
``origins_max // 2`` origins it becomes the previous one, and the old previous
generation is dropped. So an origin stays at least until ``origins_max // 2``
*other* origins have been active after its last message. An evicted origin
starts afresh at its next message, so a still-fresh copy of one of its old
messages would be accepted once more. A copy is fresh for at most
``freshness_s + future_skew_s`` after the original was accepted (the original
was not from further in the future than ``future_skew_s``), so replays stay
impossible as long as::

    origins_max >= 2 * (distinct origins active per second) * (freshness_s + future_skew_s)

With the defaults (30 s, 5 s, 65,536 origins) that is about 936 distinct
origins per second: plenty for a meter or a DTC, not for a DSO that hears
10^6 meters a minute (16,667 per second: it needs ``origins_max`` of about
1.2 million, some 300 MB). ``origins_evicted_fresh`` counts origins evicted
while one of their messages could still be fresh; a node that sees it grow
must raise ``origins_max`` or lower ``freshness_s``.

This module does no I/O and keeps no clock: ``now`` comes in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import MalformedMessage
from gridmesh.security._errors import Replayed, Stale
from gridmesh.wire import UINT64_MAX

__all__ = [
    "WINDOW_MAX",
    "WINDOW_MIN",
    "ReplayConfig",
    "ReplayGuard",
    "ReplayedMessage",
    "StaleMessage",
]

#: The narrowest window: RFC 4303 asks for at least 32 and recommends 64.
WINDOW_MIN = 64
#: The widest window: 512 bytes of bitmap per origin.
WINDOW_MAX = 4096


class ReplayedMessage(Replayed):
    """``(origin, epoch, seq)`` was accepted before, is left of the window, or is of an old epoch.

    ``why`` is ``"duplicate"``, ``"behind_window"`` or ``"old_epoch"``.
    """

    def __init__(
        self,
        origin: int,
        epoch: int,
        seq: int,
        why: Literal["duplicate", "behind_window", "old_epoch"],
    ) -> None:
        self.origin = origin
        self.epoch = epoch
        self.seq = seq
        self.why = why
        super().__init__(
            f"origin {origin} epoch {epoch} seq {seq}: {why.replace('_', ' ')}",
            field="epoch" if why == "old_epoch" else "seq",
        )


class StaleMessage(Stale):
    """``created_s`` is older than ``freshness_s`` or further ahead than ``future_skew_s``.

    ``why`` is ``"too_old"`` or ``"from_future"``.
    """

    def __init__(
        self, origin: int, created_s: float, now: float, why: Literal["too_old", "from_future"]
    ) -> None:
        self.origin = origin
        self.created_s = created_s
        self.now = now
        self.why = why
        super().__init__(
            f"origin {origin} created at {created_s!r}, now {now!r}: {why.replace('_', ' ')}",
            field="created_s",
        )


class ReplayConfig(BaseModel):
    """Limits of replay protection (``[security.replay]``); see docs/ACCESS.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(
        default=1024,
        ge=WINDOW_MIN,
        le=WINDOW_MAX,
        description="sequence numbers remembered per origin (its rate x path delay spread)",
    )
    freshness_s: float = Field(
        default=30.0, gt=0.0, le=86_400.0, description="a message older than this is Stale"
    )
    future_skew_s: float = Field(
        default=5.0,
        ge=0.0,
        le=3600.0,
        description="a message created further ahead of this node's clock is Stale",
    )
    origins_max: int = Field(
        default=65_536,
        ge=2,
        le=100_000_000,
        description="origins tracked; at least 2 x origins/s x (freshness_s + future_skew_s)",
    )


class _Window:
    """One origin's state: its epoch, highest seq, the bitmap below it, last activity."""

    __slots__ = ("active_s", "bitmap", "epoch", "highest")

    def __init__(self, epoch: int, highest: int, active_s: float) -> None:
        self.epoch = epoch
        self.highest = highest
        self.bitmap = 1  # bit i: highest - i was accepted
        self.active_s = active_s


# Shared by every fresh guard as its "previous generation": nothing is ever
# inserted into a previous generation, so sharing an empty one is safe, and a
# simulated node that hears nobody pays for one dict, not two.
_NO_ORIGINS: dict[int, _Window] = {}


def _is_uint64(value: object) -> bool:
    return type(value) is int and 0 <= value <= UINT64_MAX


class ReplayGuard:
    """Refuses copies and stale messages: ``check(origin, epoch, seq, created_s, now)``."""

    __slots__ = (
        "_current",
        "_generation_max",
        "_mask",
        "_previous",
        "config",
        "origins_evicted",
        "origins_evicted_fresh",
    )

    def __init__(
        self,
        *,
        window: int = 1024,
        freshness_s: float = 30.0,
        future_skew_s: float = 5.0,
        origins_max: int = 65_536,
    ) -> None:
        self.config = ReplayConfig(
            window=window,
            freshness_s=freshness_s,
            future_skew_s=future_skew_s,
            origins_max=origins_max,
        )
        self._mask = (1 << window) - 1
        self._generation_max = origins_max // 2
        self._current: dict[int, _Window] = {}
        self._previous = _NO_ORIGINS
        #: Origins dropped from the table, and those of them active within
        #: freshness_s + future_skew_s (whose copies could be replayed).
        self.origins_evicted = 0
        self.origins_evicted_fresh = 0

    @classmethod
    def from_config(cls, config: ReplayConfig) -> ReplayGuard:
        return cls(
            window=config.window,
            freshness_s=config.freshness_s,
            future_skew_s=config.future_skew_s,
            origins_max=config.origins_max,
        )

    def __len__(self) -> int:
        """The number of origins tracked."""
        return len(self._current) + len(self._previous)

    def check(self, origin: int, epoch: int, seq: int, created_s: float, now: float) -> None:
        """Record the message, or raise ``Replayed`` / ``Stale`` and leave its window as it was.

        Call it once the signature verified. ``MalformedMessage`` if a number is
        not an unsigned 64-bit integer (``created_s``: not a number).
        """
        if not (_is_uint64(origin) and _is_uint64(epoch) and _is_uint64(seq)):
            raise MalformedMessage("origin, epoch and seq must be unsigned 64-bit integers")
        if type(created_s) is not float and type(created_s) is not int:
            raise MalformedMessage("created_s must be a number", field="created_s")
        config = self.config
        # Written so that NaN fails both: it is neither old nor new enough.
        if not now - config.freshness_s <= created_s:
            raise StaleMessage(origin, created_s, now, "too_old")
        if not created_s <= now + config.future_skew_s:
            raise StaleMessage(origin, created_s, now, "from_future")
        state = self._current.get(origin)
        if state is None:
            state = self._previous.get(origin)
            if state is None:
                self._insert(origin, _Window(epoch, seq, now), now)
                return
            # Active again: it moves to the current generation whatever the outcome.
            del self._previous[origin]
            self._insert(origin, state, now)
        if epoch != state.epoch:
            if epoch < state.epoch:
                raise ReplayedMessage(origin, epoch, seq, "old_epoch")
            state.epoch = epoch  # the origin restarted: a fresh window
            state.highest = seq
            state.bitmap = 1
        elif seq > state.highest:
            shift = seq - state.highest
            if shift >= self.config.window:
                state.bitmap = 1
            else:
                state.bitmap = ((state.bitmap << shift) | 1) & self._mask
            state.highest = seq
        else:
            offset = state.highest - seq
            if offset >= self.config.window:
                raise ReplayedMessage(origin, epoch, seq, "behind_window")
            bit = 1 << offset
            if state.bitmap & bit:
                raise ReplayedMessage(origin, epoch, seq, "duplicate")
            state.bitmap |= bit
        state.active_s = now

    def _insert(self, origin: int, state: _Window, now: float) -> None:
        current = self._current
        if len(current) >= self._generation_max:
            dropped = self._previous
            self.origins_evicted += len(dropped)
            config = self.config
            fresh_since = now - config.freshness_s - config.future_skew_s
            self.origins_evicted_fresh += sum(
                1 for state in dropped.values() if state.active_s > fresh_since
            )
            self._previous = current
            current = self._current = {}
        current[origin] = state
