"""Cyclon: a partial view kept fresh by enhanced shuffling.

Theory of operation
-------------------
Seed 003 (ReDy, section 2) keeps its overlay with the enhanced shuffling of
Voulgaris, Gavidia and van Steen (J. Network Syst. Manage. 2005). Each node
holds a *view* of at most ``view_size`` (c) descriptors, each with an *age*.
Every ``shuffle_interval_s`` a node P:

1. adds one to the age of every entry;
2. picks the entry Q with the highest age, **removes it**, and picks
   ``shuffle_length - 1`` (L - 1) other entries at random;
3. sends Q those entries plus its own descriptor with age 0 (``SHUFFLE``).

Q answers with up to L random entries of its own (``SHUFFLE_REPLY``, never
P's own entry), then merges what P sent. Merging (both sides) skips entries
for the merging node itself or already in the view, fills empty slots first,
then overwrites the entries it just sent to the other side, and drops the
rest. So every shuffle *reverses* the link P→Q into Q→P: in-degrees stay
balanced, and views converge to uniform random samples of the live nodes.

Failure handling is implicit, as the paper intends: Q left P's view when it was
picked, so a dead Q simply never comes back; dead entries age and are picked
first. Beyond the paper, a shuffle left unanswered for ``reply_timeout_s`` is
retried at once with the next-oldest entry, up to ``retries`` times a period:
free when nothing fails, and after a mass failure a node sheds up to three dead
entries a period instead of one.

Joining needs one contact (ReDy: "a node has just to find one node"): a node
whose view is empty sends a shuffle with only its own descriptor to a seed,
which may be known by address only. Leaving needs nothing.

**One shuffle in flight.** Messages take time, and a node may be asked to
shuffle while its own request is on the way. If it then answered with entries
it had already sent to Q, the same entries would end up in three views while
Q's reply found nothing left to overwrite and was dropped: duplicates and
losses that widen the in-degree spread (measured at 2,000 nodes with 5-50 ms
links: std 2.65 instead of 1.95, 6% of views short). So a node keeps exactly
one outstanding request, matched to its reply by message id, never answers
with the entries reserved for it, and keeps the slot Q's entry left free for
the reply. A reply that is not to the request in flight, or not from the peer it
went to, is refused (``UnexpectedMessage``): nobody can push entries into a
view unasked by answering a shuffle it never sent.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import MalformedMessage, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, Scope, new_envelope
from gridmesh.protocols.membership._descriptors import (
    descriptor,
    fit,
    other_seeds,
    parse_descriptors,
)
from gridmesh.wire import Envelope, Kind

__all__ = ["AGE_MAX", "VIEW_SIZE_MAX", "Cyclon", "CyclonConfig"]

VIEW_SIZE_MAX = 1000
#: Ages above this are refused: a view entry that old would have been shuffled out long ago.
AGE_MAX = 1_000_000


class CyclonConfig(BaseModel):
    """View size c, shuffle length L and the shuffle period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cyclon"] = "cyclon"
    view_size: int = Field(default=20, ge=2, le=VIEW_SIZE_MAX)
    shuffle_length: int = Field(default=8, ge=1, le=VIEW_SIZE_MAX)
    # 5 s: a shuffle costs two ~200-byte messages, and a snapshot taken while
    # exchanges are in flight sees their entries twice or not at all; with WAN
    # round trips of ~80 ms, a 1 s period made that 8% of the nodes at any instant.
    shuffle_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    reply_timeout_s: float = Field(
        default=1.0, gt=0.0, le=3600.0, description="capped so that all retries fit in a period"
    )
    retries: int = Field(default=2, ge=0, le=16)

    @model_validator(mode="after")
    def _shorter_than_view(self) -> CyclonConfig:
        if self.shuffle_length >= self.view_size:
            raise ValueError("shuffle_length must be smaller than view_size (L < c)")
        return self


class Cyclon:
    """One node's Cyclon view."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.CYCLON_SHUFFLE, Kind.CYCLON_REPLY})

    __slots__ = ("_ages", "_config", "_host", "_peers", "_pending", "_seeds", "replies", "shuffles")

    def __init__(self, host: Host, config: CyclonConfig, *, seeds: tuple[Peer, ...] = ()) -> None:
        self._host = host
        self._config = config
        self._seeds = seeds
        # The view: parallel lists, so an entry costs two references (peers are interned).
        self._peers: list[Peer] = []
        self._ages: list[int] = []
        # The shuffle in flight: its message id, the target's node id (0: a seed known by
        # address only) and the node ids sent in it (replacement candidates for the reply,
        # reserved until the reply comes).
        self._pending: tuple[int, int, list[int]] | None = None
        self.shuffles = 0
        self.replies = 0

    # -- peer sampling -------------------------------------------------------

    def sample(self, count: int, exclude: int = 0, scope: Scope | None = None) -> list[Peer]:
        eligible = [
            p for p in self._peers if p.node_id != exclude and (scope is None or scope.admits(p))
        ]
        if count >= len(eligible):
            self._host.rng.shuffle(eligible)
            return eligible
        return self._host.rng.sample(eligible, count)

    def neighbors(self) -> list[Peer]:
        return list(self._peers)

    def ages(self) -> list[int]:
        """Ages of the view entries, in the order of ``neighbors()``."""
        return list(self._ages)

    def stats(self) -> dict[str, int]:
        return {
            "view": len(self._peers),
            "shuffles": self.shuffles,
            "shuffle_replies": self.replies,
        }

    # -- life cycle ----------------------------------------------------------

    def start(self, now: float) -> None:
        me = self._host.node_id
        for seed in self._seeds:
            if seed.node_id not in (0, me) and len(self._peers) < self._config.view_size:
                self._add(seed, 0)
        interval = self._config.shuffle_interval_s
        # A random phase, so that nodes started together do not shuffle in lockstep.
        self._host.call_at(now + interval * self._host.rng.random(), self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._shuffle(now, self._config.retries)
        self._host.call_at(now + self._config.shuffle_interval_s, self._on_timer)

    def _retry_if_silent(self, request_id: int, retries_left: int, now: float) -> None:
        pending = self._pending
        if retries_left > 0 and pending is not None and pending[0] == request_id:
            self._shuffle(now, retries_left - 1)  # the silent target already left the view

    def _shuffle(self, now: float, retries_left: int) -> None:
        host = self._host
        peers, ages = self._peers, self._ages
        if not peers:
            seeds = other_seeds(host, self._seeds)
            if seeds:  # (re)join through a seed with our own descriptor only
                target = seeds[int(host.rng.random() * len(seeds))]
                self._send_shuffle(target, [descriptor(host.me, 0)], [], now, retries_left)
            return
        for index in range(len(ages)):
            ages[index] = min(ages[index] + 1, AGE_MAX)  # a peer would refuse more
        oldest = max(range(len(ages)), key=ages.__getitem__)
        target = peers.pop(oldest)
        ages.pop(oldest)
        chosen = host.rng.sample(
            range(len(peers)), min(self._config.shuffle_length - 1, len(peers))
        )
        entries = [descriptor(host.me, 0)] + [descriptor(peers[i], ages[i]) for i in chosen]
        entries = fit(entries, host.message_bytes_max // 2)
        sent = [peers[i].node_id for i in chosen[: len(entries) - 1]]
        self._send_shuffle(target, entries, sent, now, retries_left)

    def _send_shuffle(
        self, target: Peer, entries: list[list[Any]], sent: list[int], now: float, retries_left: int
    ) -> None:
        host, config = self._host, self._config
        message = new_envelope(host, Kind.CYCLON_SHUFFLE, [entries], now)
        self._pending = (message.message_id, target.node_id, sent)  # the previous one is over
        self.shuffles += 1
        host.send((target,), message)
        if retries_left > 0:
            timeout = min(config.reply_timeout_s, config.shuffle_interval_s / (config.retries + 1))
            request_id = message.message_id
            host.call_at(
                now + timeout, lambda later: self._retry_if_silent(request_id, retries_left, later)
            )

    # -- messages ------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        limit = VIEW_SIZE_MAX  # the wire limit: peers may use another shuffle length
        body = message.body
        if message.kind is Kind.CYCLON_SHUFFLE:
            if type(body) is not list or len(body) != 1:
                raise MalformedMessage("SHUFFLE body must be [entries]", field="body")
            received = parse_descriptors(self._host, body[0], entries_max=limit, stamp_max=AGE_MAX)
            self._answer(message, received, source, now)
        else:
            if type(body) is not list or len(body) != 2 or type(body[0]) is not int:
                raise MalformedMessage("SHUFFLE_REPLY body must be [request_id, entries]")
            received = parse_descriptors(self._host, body[1], entries_max=limit, stamp_max=AGE_MAX)
            pending = self._pending
            if pending is None or pending[0] != body[0] or pending[1] not in (0, message.origin):
                raise UnexpectedMessage("a SHUFFLE_REPLY to no shuffle in flight", field="body")
            self._pending = None
            self.replies += 1
            self._merge(received, pending[2])

    def _answer(
        self, message: Envelope, received: list[tuple[Peer, int]], source: str, now: float
    ) -> None:
        host = self._host
        requester = message.origin
        if requester in (0, host.node_id):
            raise MalformedMessage("SHUFFLE from an invalid origin", field="origin")
        peers = self._peers
        reserved = self._pending[2] if self._pending is not None else ()
        candidates = [
            i for i, p in enumerate(peers) if p.node_id != requester and p.node_id not in reserved
        ]
        chosen = host.rng.sample(candidates, min(self._config.shuffle_length, len(candidates)))
        budget = self._host.message_bytes_max // 2
        entries = fit([descriptor(peers[i], self._ages[i]) for i in chosen], budget)
        sent = [peers[i].node_id for i in chosen[: len(entries)]]
        reply_to = Peer(requester, source)  # where it came from, not where it says it is
        reply = new_envelope(host, Kind.CYCLON_REPLY, [message.message_id, entries], now)
        host.send((reply_to,), reply)
        # While our own shuffle is in flight, one free slot belongs to its reply.
        self._merge(received, sent, reserve_slots=0 if self._pending is None else 1)

    def _merge(
        self, received: list[tuple[Peer, int]], sent: list[int], *, reserve_slots: int = 0
    ) -> None:
        peers, ages = self._peers, self._ages
        view_size = self._config.view_size - reserve_slots
        position = {p.node_id: i for i, p in enumerate(peers)}
        replaceable = list(sent)
        for peer, age in received:
            node_id = peer.node_id
            if node_id == self._host.node_id or node_id in position:
                continue
            if len(peers) < view_size:
                position[node_id] = len(peers)
                self._add(peer, age)
                continue
            while replaceable:
                slot = position.pop(replaceable.pop(), -1)
                if slot >= 0:
                    peers[slot] = peer
                    ages[slot] = age
                    position[node_id] = slot
                    break

    def _add(self, peer: Peer, age: int) -> None:
        self._peers.append(peer)
        self._ages.append(age)
