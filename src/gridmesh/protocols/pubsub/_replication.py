"""Ordered, acknowledged streams of replication ops between Event Managers.

Theory of operation
-------------------
Every Event Manager of a flow keeps the flow's whole state: the subscribers,
their filters and, per subscriber, the queue of events it has not yet
acknowledged. A replica that holds the same state can take a subscriber over
the moment its Event Manager dies, and deliver exactly what is missing (plus
duplicates of what was delivered but whose acknowledgement had not yet spread,
which at-least-once allows and subscribers suppress by event id).

Each Event Manager sends the changes it *originates* (an event a publisher
gave it, a subscription a subscriber asked it for, acknowledgements its
subscribers sent it) to every other replica as a **stream**: numbered batches
of ops, applied by the receiver strictly in order, acknowledged cumulatively
(``[incarnation, stream, applied]``) and sent again until acknowledged — TCP's
idea on datagrams. The receiver acknowledges every batch it gets, early ones
too, and lists up to ``MISSING_REPORTED_MAX`` batches it lacks below the
newest it holds (TCP's selective acknowledgements); the sender sends those
again at once if it sent them a while ago (a quarter of
``retry_interval_s``). So a lost batch holds the stream up for a round trip
or so, not a whole retry interval. Order matters: a subscription must take effect at a replica
before the events published after it, or the replica would not queue them
for the subscriber. Ops received from a replica are never forwarded: the
replicas form a full mesh, and each op reaches each replica from its origin.

A stream belongs to one *incarnation* of its sender (a random number drawn at
start) and has a number. A new stream starts whenever the sender (re)starts,
or the receiver was declared down and is heard again, or comes back with a
new incarnation; its first batches are a **snapshot** of the sender's state
(every subscriber and its queue), so a restarted replica catches up, and
merging is a union: subscriber state by version, queues by event id.

Waiting: a publisher's events are acknowledged when every replica that is up
has applied the batch that carries them (``StreamOut.wait``). A replica that
falls silent for ``failover_timeout_s`` is declared down, its stream dropped
and its waits released: the flow keeps running on the replicas that are left.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MISSING_REPORTED_MAX", "Release", "StreamIn", "StreamOut"]

#: Missing batches one acknowledgement lists.
MISSING_REPORTED_MAX = 32

#: Called once when every replica a wait counted on has applied (or went down).
Release = Callable[[], None]


@dataclass(slots=True)
class Waiter:
    """Something held until ``remaining`` replicas applied its batch."""

    remaining: int
    release: Release

    def done_one(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self.release()


@dataclass(slots=True)
class StreamOut:
    """My stream to one replica: batches in flight, and who waits on which."""

    incarnation: int
    number: int
    next_seq: int = 1
    acked_seq: int = 0
    unsent: int = 0  # the newest batches of ``unacked`` were never sent
    unacked: deque[tuple[int, list[object], float]] = field(default_factory=deque)
    waits: deque[tuple[int, Waiter]] = field(default_factory=deque)

    def push(self, ops: list[object]) -> int:
        """Number a batch of ops, to be sent by the next ``due``; returns its number."""
        seq = self.next_seq
        self.next_seq += 1
        self.unacked.append((seq, ops, float("-inf")))
        self.unsent += 1
        return seq

    def wait(self, seq: int, waiter: Waiter) -> None:
        """``waiter`` counts this replica done once it applied batch ``seq``."""
        if seq <= self.acked_seq:
            waiter.done_one()
        else:
            self.waits.append((seq, waiter))

    def acked(self, applied: int) -> None:
        """The replica applied every batch up to ``applied``."""
        if applied >= self.next_seq:
            return  # it acknowledges what was never sent: not this stream
        self.acked_seq = max(self.acked_seq, applied)
        unacked = self.unacked
        while unacked and unacked[0][0] <= applied:
            unacked.popleft()
        self.unsent = min(self.unsent, len(unacked))
        waits = self.waits
        while waits and waits[0][0] <= applied:
            waits.popleft()[1].done_one()

    def resend(self, seqs: list[int], now: float, gap_s: float) -> list[tuple[int, list[object]]]:
        """The batches ``seqs`` the receiver lacks, stamped as sent now.

        A batch sent within the last ``gap_s`` is left alone: its copy may be on its way.
        """
        unacked = self.unacked
        if not unacked:
            return []
        first = unacked[0][0]
        last_sent = len(unacked) - self.unsent
        out: list[tuple[int, list[object]]] = []
        for seq in seqs:
            index = seq - first
            if 0 <= index < last_sent:
                number, ops, sent = unacked[index]
                if sent <= now - gap_s:
                    unacked[index] = (number, ops, now)
                    out.append((number, ops))
        return out

    def release_all(self) -> None:
        """The replica is down: nobody waits for it any longer."""
        waits = self.waits
        while waits:
            waits.popleft()[1].done_one()
        self.unacked.clear()
        self.unsent = 0

    def due(self, now: float, retry_interval_s: float) -> list[tuple[int, list[object]]]:
        """Batches to send now, stamped as sent: those never sent, then copies of the
        oldest ones unacknowledged for ``retry_interval_s``.

        Never-sent batches are the tail (``unsent`` of them); the copies are the
        stale prefix of the rest, up to the first recent one (which a fast
        retransmit may have stamped; the later ones follow once it is applied).
        """
        unacked = self.unacked
        out: list[tuple[int, list[object]]] = []
        first_unsent = len(unacked) - self.unsent
        cutoff = now - retry_interval_s
        for index in range(first_unsent):
            seq, ops, sent = unacked[index]
            if sent > cutoff:
                break
            out.append((seq, ops))
            unacked[index] = (seq, ops, now)
        for index in range(first_unsent, len(unacked)):
            seq, ops, _ = unacked[index]
            out.append((seq, ops))
            unacked[index] = (seq, ops, now)
        self.unsent = 0
        return out


@dataclass(slots=True)
class StreamIn:
    """A replica's stream to me: what I applied, and batches that came early."""

    incarnation: int = 0
    number: int = -1
    applied: int = 0
    early: dict[int, list[object]] = field(default_factory=dict)

    def missing(self) -> list[int]:
        """Batches below the newest early one that have not come (at most MISSING_REPORTED_MAX)."""
        early = self.early
        if not early:
            return []
        newest = max(early)
        gaps: list[int] = []
        for seq in range(self.applied + 1, newest):
            if seq not in early:
                gaps.append(seq)
                if len(gaps) >= MISSING_REPORTED_MAX:
                    break
        return gaps

    def accept(
        self, incarnation: int, number: int, seq: int, ops: list[object], early_max: int
    ) -> list[list[object]]:
        """Batches to apply now, in order (none for a duplicate or a stale stream)."""
        if incarnation != self.incarnation or number > self.number:
            if seq != 1:
                return []  # the start of the new stream will come again
            self.incarnation, self.number, self.applied = incarnation, number, 0
            self.early.clear()
        elif number < self.number:
            return []
        if seq <= self.applied:
            return []
        if seq > self.applied + 1:
            if len(self.early) < early_max:
                self.early[seq] = ops
            return []
        ready = [ops]
        self.applied = seq
        early = self.early
        while self.applied + 1 in early:
            self.applied += 1
            ready.append(early.pop(self.applied))
        return ready
