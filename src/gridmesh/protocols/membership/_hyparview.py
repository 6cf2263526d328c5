"""A robust active view: HyParView with SWIM-style probing of its links.

Theory of operation
-------------------
Cyclon and Newscast give a node a random sample of the system, but a dead
entry stays in a view until shuffling flushes it, and after a massive failure a
survivor whose sample held only dead nodes is cut off (plain Cyclon keeps ~79%
of survivors connected after 95% fail). Dissemination needs better: a few
links that are *known* to be alive, repaired at once. This module follows
HyParView (Leitão, Pereira, Rodrigues, DSN 2007) and adds failure detection on
its links in the style of SWIM (Das, Gupta, Motivala, DSN 2002).

**Two views.** The *active view* (``active_size``, ~5) holds symmetric links:
if A lists B, B lists A. Dissemination sends over these. The *passive view*
(``passive_size``, 100 here) is a larger random sample of other nodes, kept by a
periodic random-walk shuffle; it is where replacements come from.

**Joining.** A node sends ``JOIN`` to one contact. The contact takes it into its
active view (dropping a random neighbour with ``DISCONNECT`` if full), answers
``CONNECT`` so the link is symmetric, and sends ``FORWARD_JOIN(new, ttl =
active_walk_length)`` to its other neighbours. Each hop forwards the walk to a
random neighbour; at ``ttl == passive_walk_length`` the node also puts the
newcomer in its passive view; where the walk ends (ttl 0, or a node with no
other neighbour) the newcomer enters the active view and gets a ``CONNECT``.

**Failure detection (SWIM-style, per active link).** Any message from a
neighbour proves it alive. Every ``probe_interval_s`` a node checks each
neighbour: silent for one interval, it gets a ``PING``; silent for two, up to
``indirect_probes`` other neighbours are asked to ping it too (``PING_REQ``;
they relay the ``ACK``), so a lossy direct path alone cannot condemn it;
silent for ``failure_timeout_s``, it is declared failed and dropped from both
views. With 5% loss a healthy neighbour is condemned only if a whole
``failure_timeout_s`` window of direct and indirect probes is lost: with the
defaults, two rounds in a row in which the direct probe (10% lost) and all
three indirect ones (19% each) fail, about 0.1 · (0.1 · 0.19³)² = 5e-8 per
silent spell. With a 3 s timeout and 2 indirect probes it was 3e-4, and a
60-second run at 200 nodes condemned 6 healthy links.
Suspicion is local to the link and never disseminated. Links are meant to be
symmetric, but a lost ``CONNECT`` can leave one side linked alone; a
neighbour's ``PING`` says which side thinks it is linked, and the other side
then takes the link up if it has room, or answers ``DISCONNECT``.

**Repair.** While the active view is short, the node sends ``NEIGHBOR``
requests to random passive entries, up to ``repair_parallelism`` per free slot
at a time: after a massive failure most candidates are dead, and asking them
one at a time would take one timeout each. A request is *high priority* when
the active view is empty or every link in it is silent for 2.5 probe intervals
(a view worn down by churn whose last ends died), and then is always accepted
(the receiver drops a random neighbour if it must); otherwise it is accepted
only if the receiver has room. A view that stays short for ``escalate_after_s``
(its owner keeps being refused: a handful of nodes that only link to each
other, say), or that is *thin* (fewer than half a full view of live links, so
one or two deaths from alone), sends one high-priority request at a time; its
receiver makes room by dropping a random neighbour and names the asker to it
as a partner in the ``DISCONNECT``, so the dropped node asks the short asker in
turn and the shortfall is filled instead of moved on. Under churn (10^4 nodes,
1% leave and 1% join a second) almost every view is full, so low-priority
requests are refused; thin views used to wait ``escalate_after_s`` for their
one escalated request, and a joiner whose two links died within a second was
cut off (3 of 200 rounds partitioned, one node each). With the thin rule,
none at seed 1 and one at seed 2: a node worn down by four displacements in
12 s became thin a second after its last link had crashed. So evictions
spare thin nodes: every ``PING`` to a neighbour and every ``ACK`` says how
many links its sender has, and a node that must drop a neighbour (and has
no silent one) drops one of those with the most links. That alone moved the
isolated rounds between seeds (seed 1: 2, seeds 2 and 3: none), so two more
rules shorten the time a thin node spends one death from alone: a node that
a drop leaves thin asks the partner named in the ``DISCONNECT`` with high
priority (a partner that filled meanwhile would refuse a low one), and a
node with one live link or none has two escalated requests in flight, not
one (a dead candidate costs ``neighbor_timeout_s``). With all three: seeds
1-3, none of 200 rounds partitioned, at the same message count. Acceptances
beyond the free slots are undone with ``DISCONNECT``. A
candidate that does not answer within ``neighbor_timeout_s`` is removed from
the passive view. A node with no candidates left joins again through a seed: at
once when it is alone, after ``escalate_after_s`` when it is short. Seeds whose
node id is known start in the passive view.

**Mass failure.** When half the links a node has (at most half a full view) are
silent for 2.5 probe intervals at once (a healthy neighbour's silence runs up
to two intervals and a round trip, since it is pinged at the tick after one
interval), the silent links count as free slots for repair: the node asks for
replacements at once instead of waiting out ``failure_timeout_s``, and an
accepted replacement evicts the most silent suspect (a node that is merely slow
loses one link and goes to the passive view). Every eviction picks a suspect
(silent 2.5 intervals) first, a random neighbour only when none is. When half
the view is declared failed within two timeouts, the node *recovers* for
``recovery_s``: each probe tick with a full view it swaps one link for a random
passive entry, asked with high priority. Repair alone stops as soon as every
view is full, so survivors that filled their views from each other stay an
island for good; swaps move links out of an island whose members know someone
outside it. A swap keeps degrees: the candidate's ``NEIGHBOR_REPLY`` names the
neighbour it dropped to take us, and the ``DISCONNECT`` we send the neighbour
we drop names that node as a partner with a free slot, which it asks at once.
Half the swaps (and, for a short view, all of them) go to the *reserve*
instead: ``reserve_size`` entries copied from the passive view one per shuffle
and then one per ``reserve_interval_s``. The passive view turns over in seconds
and, after the failure, fills with nearby survivors only, so an island's
passive views soon name nobody outside it; the reserve still holds a sample
taken before the failure.

**Steady swaps.** Islands also form without any failure: in the 10^4-node
bench (seed 3), 0.06 s into the joins node 31 lost its only link to a
displacement, and newcomers joined through it before its next repair tick;
not alone any more, the group asked with low priority, full views refused,
476 nodes joined through it and the overlay stayed split. So a node also swaps one link every
``swap_interval_s`` (600 s, jittered), the same degree-preserving swap. An
island of k nodes then merges within about ``swap_interval_s / k`` once its
members know anyone outside, and the whole overlay keeps mixing. With 10^4
nodes that is some 17 swaps a second somewhere, a link lasting on the order
of a quarter of an hour: slow next to a broadcast, and a tree (Plumtree)
bridges a dropped tree link at once. A lone false failure never triggers
recovery; with 10% loss a node sees half its view silent at once on about one
probe tick in a thousand, and then only asks.

**Confirmed joins.** A ``JOIN`` is answered by its contact with ``CONNECT``.
Until some ``CONNECT`` arrives, the node sends its ``JOIN`` again, every
``join_retry_s`` at first and then twice as long each time (at most a
minute). Without this, a node whose ``JOIN`` is lost is found later by nodes
that pick *it* as their contact, and all of them form an island that never
merges, since nobody in it is short of neighbours (at 2,000 nodes with 10%
loss, a 592-node island formed in the first seconds and stayed).

**Random walks.** ``FORWARD_JOIN`` and ``SHUFFLE`` travel as relayed
messages: the walk's TTL is the envelope's ``hops_left`` (bounded, and only
ever decreasing), and each hop forwards the origin's bytes untouched.

**Passive view upkeep.** Every ``shuffle_interval_s`` a node sends its own
descriptor plus ``shuffle_active`` active and ``shuffle_passive`` passive
entries on a random walk of ``shuffle_walk_length`` hops; the node where it
ends answers with as many of its passive entries, and both keep what they
received, overwriting first what they sent. A share ``shuffle_direct_share``
(half) of the shuffles go straight to a random passive entry instead (one
hop, as in Cyclon). Walks on the active view only mix what is near: before
these, the survivors of a 90% failure could already be split in what they
knew of each other at the moment of the failure (seed 3: a 45-node part),
and no repair can join nodes that know nothing of each other. Each probe tick a node also pings
``passive_probes`` random passive entries and drops those that stay silent for
``neighbor_timeout_s``, so passive views hold live nodes. Any node that
contacts us (``JOIN``, ``NEIGHBOR``, a shuffle, a ``PING``, which carries its
sender's descriptor) is alive and is remembered in the passive view.

Those two rules and a passive view of 100 (HyParView used 30) are what carry
the overlay through 95% failures. A survivor reconnects if it knows a live
node, or a live node knows it: its own repair, or another's repair or passive
probe, makes the first contact, and a node that is alone asks with high
priority. It knows no live node with probability 0.95^100 = 0.6%, and is known
by none with about e^-5 = 0.7% (each node sits in ~100 passive views), so
about 4e-5 of the survivors stay cut off; with a view of 60 it was 1 in 100
(measured: a survivor that no survivor listed, and that listed none).

Rules that never bend: a node is never in its own views, never in both views
at once, and the views never exceed their sizes; every descriptor a peer
sends is checked before it is stored.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import MalformedMessage
from gridmesh.protocols._host import Host, Peer, Scope, new_envelope
from gridmesh.protocols.membership._descriptors import (
    descriptor,
    fit,
    other_seeds,
    parse_descriptor,
    parse_descriptors,
)
from gridmesh.wire import Envelope, Kind

__all__ = ["HyParView", "HyParViewConfig"]

_VIEW_MAX = 1000
_ACTIVE_MAX = 64
_WALK_MAX = 32
_JOIN_RETRY_MAX_S = 60.0
_INDIRECT_PENDING_MAX = 64
_SHUFFLE_ACTIVE_MAX = 64
_SUSPECT_INTERVALS = 2.5
_RESERVE_STRIDE = 37  # prime: successive copies come from scattered passive positions


class HyParViewConfig(BaseModel):
    """Sizes, walk lengths and timing of the active view."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["hyparview"] = "hyparview"
    active_size: int = Field(default=5, ge=1, le=_ACTIVE_MAX)
    passive_size: int = Field(default=100, ge=1, le=_VIEW_MAX)
    active_walk_length: int = Field(default=6, ge=1, le=_WALK_MAX)
    passive_walk_length: int = Field(default=3, ge=0, le=_WALK_MAX)
    shuffle_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    shuffle_walk_length: int = Field(default=3, ge=1, le=_WALK_MAX)
    shuffle_active: int = Field(default=3, ge=0, le=_SHUFFLE_ACTIVE_MAX)
    shuffle_passive: int = Field(default=4, ge=0, le=_VIEW_MAX)
    shuffle_direct_share: float = Field(default=0.5, ge=0.0, le=1.0)
    probe_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    indirect_probes: int = Field(default=3, ge=0, le=16)
    failure_timeout_s: float = Field(default=4.0, gt=0.0, le=86_400.0)
    neighbor_timeout_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    repair_parallelism: int = Field(default=3, ge=1, le=16)
    passive_probes: int = Field(default=1, ge=0, le=16)
    escalate_after_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    join_retry_s: float = Field(default=2.0, gt=0.0, le=3600.0)
    recovery_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    reserve_size: int = Field(default=16, ge=0, le=_VIEW_MAX)
    reserve_interval_s: float = Field(default=10.0, gt=0.0, le=86_400.0)
    swap_interval_s: float = Field(default=600.0, ge=0.0, le=86_400.0)

    @model_validator(mode="after")
    def _consistent(self) -> HyParViewConfig:
        if self.passive_walk_length > self.active_walk_length:
            raise ValueError("passive_walk_length must not exceed active_walk_length")
        if self.failure_timeout_s <= 2 * self.probe_interval_s:
            raise ValueError("failure_timeout_s must exceed two probe intervals")
        return self


class HyParView:
    """One node's active and passive views."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset(
        {
            Kind.VIEW_JOIN,
            Kind.VIEW_FORWARD_JOIN,
            Kind.VIEW_CONNECT,
            Kind.VIEW_NEIGHBOR,
            Kind.VIEW_NEIGHBOR_REPLY,
            Kind.VIEW_DISCONNECT,
            Kind.VIEW_SHUFFLE,
            Kind.VIEW_SHUFFLE_REPLY,
            Kind.PING,
            Kind.PING_REQ,
            Kind.ACK,
        }
    )

    __slots__ = (
        "_active",
        "_config",
        "_degrees",
        "_heard",
        "_host",
        "_indirect",
        "_join_retry_at",
        "_join_retry_s",
        "_passive",
        "_passive_ids",
        "_passive_pings",
        "_recent_failures",
        "_recovering_until",
        "_requests",
        "_reserve",
        "_reserve_at",
        "_reserve_turn",
        "_seeds",
        "_short_since",
        "_shuffled",
        "_swap_at",
        "failures",
        "joins",
    )

    def __init__(
        self, host: Host, config: HyParViewConfig, *, seeds: tuple[Peer, ...] = ()
    ) -> None:
        self._host = host
        self._config = config
        self._seeds = seeds
        self._active: list[Peer] = []
        # The passive view as parallel lists: ~16 bytes an entry. A dict cost 90
        # (deletions leave slots a dict never gives back); a scan of 100 ids is ~1 us.
        self._passive: list[Peer] = []
        self._passive_ids: list[int] = []
        self._heard: dict[int, float] = {}  # active neighbour -> last time it was heard from
        self._degrees: dict[int, int] = {}  # active neighbour -> its active view, as it said
        # NEIGHBOR request id -> (candidate, sent at, high priority, a refresh)
        self._requests: dict[int, tuple[Peer, float, bool, bool]] = {}
        self._recent_failures: list[float] = []  # when neighbours were declared failed
        self._recovering_until = 0.0  # refresh links until then: a mass failure was seen
        self._reserve: list[Peer] = []  # slow samples of the passive view: long memory
        self._reserve_at = 0.0  # when the next passive entry is copied into the reserve
        self._reserve_turn = 0
        self._short_since: float | None = None  # since when the active view has been short
        self._indirect: dict[int, list[Peer]] = {}  # pinged for others: target -> requesters
        self._passive_pings: dict[int, float] = {}  # passive entry -> when we pinged it
        self._shuffled: list[int] = []  # node ids sent in our last shuffle
        self._swap_at = 0.0  # when the next steady link swap is due (0: never)
        # An unconfirmed join is sent again at _join_retry_at; None once a CONNECT came.
        self._join_retry_at: float | None = None
        self._join_retry_s = config.join_retry_s
        self.failures = 0
        self.joins = 0

    # -- peer sampling -------------------------------------------------------

    def sample(self, count: int, exclude: int = 0, scope: Scope | None = None) -> list[Peer]:
        eligible = [
            p for p in self._active if p.node_id != exclude and (scope is None or scope.admits(p))
        ]
        self._host.rng.shuffle(eligible)
        return eligible[:count]

    def neighbors(self) -> list[Peer]:
        return list(self._active)

    def passive(self) -> list[Peer]:
        return list(self._passive)

    def stats(self) -> dict[str, int]:
        return {
            "view": len(self._active),
            "passive_view": len(self._passive),
            "failures_detected": self.failures,
            "joins": self.joins,
        }

    # -- life cycle ----------------------------------------------------------

    def start(self, now: float) -> None:
        host, config = self._host, self._config
        self._keep_passive([s for s in self._seeds if s.node_id not in (0, host.node_id)], [])
        self._join(now)
        host.call_at(now + config.probe_interval_s * host.rng.random(), self._on_probe_timer)
        host.call_at(now + config.shuffle_interval_s * host.rng.random(), self._on_shuffle_timer)
        if config.swap_interval_s > 0:
            self._swap_at = now + config.swap_interval_s * host.rng.random()

    def _join(self, now: float) -> None:
        host = self._host
        seeds = other_seeds(host, self._seeds)
        if seeds:
            contact = seeds[int(host.rng.random() * len(seeds))]
            self.joins += 1
            host.send((contact,), new_envelope(host, Kind.VIEW_JOIN, [self._me()], now))
            self._join_retry_at = now + self._join_retry_s

    def _me(self) -> list[object]:
        return descriptor(self._host.me, 0)

    def _on_probe_timer(self, now: float) -> None:
        retry_at = self._join_retry_at
        if retry_at is not None and now >= retry_at:
            self._join_retry_s = min(2 * self._join_retry_s, _JOIN_RETRY_MAX_S)
            self._join(now)
        self._probe(now)
        self._repair(now)
        if now < self._recovering_until:
            self._refresh(now)
        elif self._swap_at and now >= self._swap_at:
            self._swap_at = now + self._config.swap_interval_s * (0.5 + self._host.rng.random())
            if len(self._active) >= self._config.active_size:
                self._refresh(now)
        self._host.call_at(now + self._config.probe_interval_s, self._on_probe_timer)

    def _on_shuffle_timer(self, now: float) -> None:
        self._shuffle(now)
        if now >= self._reserve_at:
            self._keep_in_reserve(now)
        self._host.call_at(now + self._config.shuffle_interval_s, self._on_shuffle_timer)

    # -- failure detection ---------------------------------------------------

    def _probe(self, now: float) -> None:
        host, config = self._host, self._config
        interval = config.probe_interval_s
        for peer in list(self._active):
            silence = now - self._heard.get(peer.node_id, now)
            if silence >= config.failure_timeout_s:
                self._fail(peer, now)
                continue
            if silence < interval:
                continue
            host.send((peer,), new_envelope(host, Kind.PING, self._ping_body(), now))
            if silence >= 2 * interval and config.indirect_probes:
                helpers = [p for p in self._active if p.node_id != peer.node_id]
                host.rng.shuffle(helpers)
                request = new_envelope(host, Kind.PING_REQ, [descriptor(peer, 0)], now)
                host.send(helpers[: config.indirect_probes], request)
        self._probe_passive(now)

    def _probe_passive(self, now: float) -> None:
        """Drop passive entries that did not answer; ping a few others."""
        host, config = self._host, self._config
        pings = self._passive_pings
        for node_id, sent_at in list(pings.items()):
            if now - sent_at >= config.neighbor_timeout_s:
                del pings[node_id]
                self._remove_passive(node_id)
        candidates = [p for p in self._passive if p.node_id not in pings]
        targets = _pick(host, candidates, config.passive_probes)
        if targets:
            for peer in targets:
                pings[peer.node_id] = now
            host.send(targets, new_envelope(host, Kind.PING, [self._me(), False], now))

    def _fail(self, peer: Peer, now: float) -> None:
        self.failures += 1
        self._remove_active(peer.node_id)
        self._remove_passive(peer.node_id)
        config = self._config
        window = 2 * config.failure_timeout_s
        recent = [t for t in self._recent_failures if now - t < window]
        recent.append(now)
        self._recent_failures = recent[-config.active_size :]
        if 2 * len(recent) >= config.active_size:  # half the links gone at once
            self._recovering_until = now + config.recovery_s

    def _mass_silence(self, suspects: int) -> bool:
        """Half the links we have (at most half a full view) are silent at once."""
        return suspects > 0 and 2 * suspects >= min(len(self._active), self._config.active_size)

    def _suspects(self, now: float) -> list[Peer]:
        """Active neighbours silent for 2.5 probe intervals or more, most silent first.

        A healthy neighbour is pinged once silent for one interval, at the next
        tick, so its silence runs up to two intervals and a round trip; past
        2.5 a ping went unanswered.
        """
        heard, limit = self._heard, _SUSPECT_INTERVALS * self._config.probe_interval_s
        silent = [p for p in self._active if now - heard.get(p.node_id, now) >= limit]
        silent.sort(key=lambda p: heard.get(p.node_id, now))
        return silent

    # -- repair --------------------------------------------------------------

    def _repair(self, now: float) -> None:
        host, config = self._host, self._config
        for request_id, (candidate, sent_at, _, _) in list(self._requests.items()):
            if now - sent_at >= config.neighbor_timeout_s:
                del self._requests[request_id]
                self._remove_passive(candidate.node_id)  # it did not answer: presumed dead
                self._remove_reserve(candidate.node_id)
        free = config.active_size - len(self._active)
        suspects = len(self._suspects(now))
        if self._mass_silence(suspects):
            free += suspects  # most links silent at once: replace them before they time out
        if free <= 0:
            self._short_since = None
            return
        if self._short_since is None:
            self._short_since = now
        wanted = free * config.repair_parallelism - len(self._requests)
        if wanted <= 0:
            return
        asked = self._asked()
        candidates = [p for p in self._passive if p.node_id not in asked]
        # Alone: no link, or none heard from lately. Under churn a view worn down to
        # two links whose ends then died asked with low priority, full views refused,
        # and nobody listed the node until it escalated (the churn bench, round 79).
        alone = suspects == len(self._active)
        # Thin: fewer than half a full view of live links, one or two deaths from
        # alone. Under churn full views refuse low priority, so a thin view used to
        # wait escalate_after_s, and a joiner whose two links died within a round
        # was cut off (the churn bench, round 101).
        live = len(self._active) - suspects
        thin = self._thin(live)
        # One escalated request at a time (each displaces a neighbour of its
        # receiver); two with one live link or none, so a dead candidate, which
        # costs neighbor_timeout_s, does not leave the last link alone that long.
        escalated = sum(1 for _, _, high, _ in self._requests.values() if high)
        allowed = 2 if live <= 1 else 1
        starving = (thin or now - self._short_since >= config.escalate_after_s) and (
            escalated < allowed
        )
        if not candidates:
            if (alone and not self._requests) or starving:
                self._short_since = now  # one rejoin per escalation period
                self._join(now)
            return
        more = allowed - escalated if starving else 0
        for candidate in host.rng.sample(candidates, min(wanted, len(candidates))):
            self._ask(candidate, alone or more > 0, now)
            more -= 1

    def _thin(self, live: int) -> bool:
        """``live`` links are fewer than half a full view: one or two deaths from alone."""
        return 2 * live < self._config.active_size

    def _asked(self) -> set[int]:
        """Node ids with a NEIGHBOR request of ours in flight."""
        return {candidate.node_id for candidate, _, _, _ in self._requests.values()}

    def _ask(self, candidate: Peer, high: bool, now: float, *, refresh: bool = False) -> None:
        host = self._host
        request = new_envelope(host, Kind.VIEW_NEIGHBOR, [self._me(), high], now)
        self._requests[request.message_id] = (candidate, now, high, refresh)
        host.send((candidate,), request)

    def _refresh(self, now: float) -> None:
        """Swap one link for a random reserve or passive entry.

        After a mass failure this runs every probe tick; otherwise once per
        ``swap_interval_s``. Repair alone stops once every view is full, and
        nodes that filled their views from each other stay an island. A swap
        moves a link out of any island. It keeps degrees: the candidate takes us in place of a
        neighbour ``d`` (named in its answer), we drop a neighbour ``o`` and
        tell it to link with ``d``, which has just been left a free slot.
        """
        if any(refresh for _, _, _, refresh in self._requests.values()):
            return
        rng = self._host.rng
        asked = self._asked()
        active = {peer.node_id for peer in self._active}
        stored = [p for p in self._reserve if p.node_id not in asked and p.node_id not in active]
        full = len(self._active) >= self._config.active_size
        if stored and (not full or rng.random() < 0.5):
            pool = stored  # sampled before the failure: reaches beyond an island
        elif full:
            pool = [p for p in self._passive if p.node_id not in asked]
        else:
            return  # short: repair works through the passive view
        if pool:
            self._ask(pool[int(rng.random() * len(pool))], True, now, refresh=True)

    def _keep_in_reserve(self, now: float) -> None:
        """Copy one random passive entry into the reserve, over a random old one.

        The passive view turns over within seconds and, after a mass failure,
        fills with the survivors nearby; the reserve fills one entry per
        shuffle, then turns over once in ``reserve_size x reserve_interval_s``
        (160 s), and so still holds a sample of the whole system when recovery
        needs a way out.
        """
        config = self._config
        if len(self._reserve) >= config.reserve_size:  # while filling: every shuffle
            self._reserve_at = now + config.reserve_interval_s
        if not self._passive or config.reserve_size == 0:
            return
        # Positions by a counter, not the random source: the passive view's order is
        # random already, and a steady overlay then draws the same numbers as without
        # a reserve (runs stay comparable with and without it).
        turn = self._reserve_turn
        self._reserve_turn = turn + 1
        entry = self._passive[(turn * _RESERVE_STRIDE) % len(self._passive)]
        reserve = self._reserve
        if any(p.node_id == entry.node_id for p in reserve):
            return
        if len(reserve) >= config.reserve_size:
            reserve[turn % len(reserve)] = entry
        else:
            reserve.append(entry)

    def _remove_reserve(self, node_id: int) -> None:
        self._reserve = [p for p in self._reserve if p.node_id != node_id]

    # -- passive view upkeep -------------------------------------------------

    def _shuffle(self, now: float) -> None:
        host, config = self._host, self._config
        if not self._active:
            return
        walk = config.shuffle_walk_length
        if self._passive and host.rng.random() < config.shuffle_direct_share:
            target, walk = self._passive[int(host.rng.random() * len(self._passive))], 1
        else:
            target = self._active[int(host.rng.random() * len(self._active))]
        others = [p for p in self._active if p.node_id != target.node_id]
        chosen = _pick(host, others, config.shuffle_active)
        if walk == 1:  # straight to a passive entry: do not send it its own descriptor
            passive = [p for p in self._passive if p.node_id != target.node_id]
        else:
            passive = self._passive
        chosen += _pick(host, passive, config.shuffle_passive)
        entries = fit([descriptor(p, 0) for p in chosen], host.message_bytes_max // 2)
        self._shuffled = [p.node_id for p in chosen[: len(entries)]]
        body = [self._me(), entries]
        host.send((target,), new_envelope(host, Kind.VIEW_SHUFFLE, body, now, hops_left=walk))

    def _keep_passive(self, received: list[Peer], replaceable: list[int]) -> None:
        """Store ``received`` in the passive view, overwriting ``replaceable`` ids first."""
        host = self._host
        ids = self._passive_ids
        size = self._config.passive_size
        spare = list(replaceable)
        for peer in received:
            node_id = peer.node_id
            if node_id == host.node_id or node_id in ids:
                continue
            if self._position(self._active, node_id) >= 0:
                continue
            if len(ids) >= size:
                victim = -1
                while spare and victim not in ids:
                    victim = spare.pop()
                if victim not in ids:
                    victim = ids[int(host.rng.random() * len(ids))]
                self._remove_passive(victim)
            self._passive.append(peer)
            ids.append(node_id)

    # -- messages ------------------------------------------------------------

    def observe(self, sender: int, now: float) -> None:
        """Any message from an active neighbour proves it alive."""
        if sender in self._heard:
            self._heard[sender] = now

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.sender in (0, self._host.node_id):
            raise MalformedMessage("active-view message from an invalid sender", field="sender")
        self.observe(message.sender, now)
        body = message.body
        if type(body) is not list:
            raise MalformedMessage("active-view body must be a list", field="body")
        kind = message.kind
        if kind is Kind.PING:
            self._on_ping(message, body, source, now)
        elif kind is Kind.ACK:
            self._on_ack(message, body, now)
        elif kind is Kind.PING_REQ:
            self._on_ping_req(message, body, source, now)
        elif kind is Kind.VIEW_NEIGHBOR_REPLY:
            self._on_neighbor_reply(message, body, now)
        elif kind is Kind.VIEW_DISCONNECT:
            self._on_disconnect(message, body, now)
        elif kind is Kind.VIEW_SHUFFLE:
            self._on_shuffle(message, body, now)
        elif kind is Kind.VIEW_SHUFFLE_REPLY:
            if len(body) != 1:
                raise MalformedMessage("SHUFFLE_REPLY body must be [entries]", field="body")
            entries = parse_descriptors(self._host, body[0], entries_max=self._entries_max())
            self._keep_passive([peer for peer, _ in entries], self._shuffled)
        elif kind is Kind.VIEW_FORWARD_JOIN:
            self._on_forward_join(message, body, now)
        elif kind is Kind.VIEW_JOIN:
            self._on_join(self._described(message, body, sender=True), source, now)
        elif kind is Kind.VIEW_CONNECT:
            self._add_active(self._described(message, body, sender=True), now)
            self._join_retry_at = None  # our join (or a walk of it) was answered
            self._join_retry_s = self._config.join_retry_s
        else:
            self._on_neighbor(
                message, self._described(message, body, sender=True), body, source, now
            )

    def _described(self, message: Envelope, body: list[object], *, sender: bool) -> Peer:
        """The descriptor a JOIN, FORWARD_JOIN, CONNECT or NEIGHBOR body starts with.

        With ``sender``, it must describe the node that sent the message.
        """
        if not body:
            raise MalformedMessage("expected a descriptor first", field="body")
        peer, _ = parse_descriptor(self._host, body[0])
        if sender and peer.node_id != message.sender:
            raise MalformedMessage("descriptor does not match the sender", field="body")
        if peer.node_id == self._host.node_id:
            raise MalformedMessage("descriptor names the receiver itself", field="body")
        return peer

    def _on_join(self, newcomer: Peer, source: str, now: float) -> None:
        host = self._host
        others = [p for p in self._active if p.node_id != newcomer.node_id]
        self._add_active(newcomer, now)
        host.send(
            (Peer(newcomer.node_id, source),),
            new_envelope(host, Kind.VIEW_CONNECT, [self._me()], now),
        )
        if others:
            walk = self._config.active_walk_length
            join = new_envelope(
                host, Kind.VIEW_FORWARD_JOIN, [descriptor(newcomer, 0)], now, hops_left=walk
            )
            host.send(others, join)

    def _on_forward_join(self, message: Envelope, body: list[object], now: float) -> None:
        if len(body) != 1:
            raise MalformedMessage("FORWARD_JOIN body must be [descriptor]", field="body")
        ttl = min(message.hops_left, _WALK_MAX)
        newcomer = self._described(message, body, sender=False)
        host = self._host
        if self._position(self._active, newcomer.node_id) >= 0:
            return
        onward = [p for p in self._active if p.node_id not in (message.sender, newcomer.node_id)]
        if ttl == 0 or not onward:
            self._add_active(newcomer, now)
            host.send((newcomer,), new_envelope(host, Kind.VIEW_CONNECT, [self._me()], now))
            return
        if ttl == self._config.passive_walk_length:
            self._keep_passive([newcomer], [])
        target = onward[int(host.rng.random() * len(onward))]
        host.send((target,), message.relayed(host.node_id, ttl - 1))

    def _on_neighbor(
        self, message: Envelope, sender: Peer, body: list[object], source: str, now: float
    ) -> None:
        if len(body) != 2 or type(body[1]) is not bool:
            raise MalformedMessage("NEIGHBOR body must be [descriptor, high_priority]")
        accepted = body[1] or len(self._active) < self._config.active_size
        dropped = None
        if accepted:
            # A high-priority asker is short: the neighbour we drop for it is told
            # to ask it in turn, so the shortfall is filled rather than moved on.
            dropped = self._add_active(sender, now, partner=sender if body[1] else None)
        else:
            self._keep_passive([sender], [])
        host = self._host
        answer: list[object] = [message.message_id, accepted]
        if dropped is not None:
            answer.append(descriptor(dropped, 0))  # has a free slot now: a swap partner
        reply = new_envelope(host, Kind.VIEW_NEIGHBOR_REPLY, answer, now)
        host.send((Peer(sender.node_id, source),), reply)  # where it came from

    def _on_neighbor_reply(self, message: Envelope, body: list[object], now: float) -> None:
        if len(body) not in (2, 3) or type(body[0]) is not int or type(body[1]) is not bool:
            raise MalformedMessage(
                "NEIGHBOR_REPLY body must be [request_id, accepted] or "
                "[request_id, accepted, dropped descriptor]"
            )
        dropped = self._described(message, body[2:], sender=False) if len(body) == 3 else None
        request = self._requests.pop(body[0], None)
        if request is None or request[0].node_id != message.sender:
            return  # late, or not ours: the slot was refilled or the request timed out
        candidate, _, _, refresh = request
        if not body[1]:
            return  # refused: it stays in the passive view, another candidate is tried
        host = self._host
        if len(self._active) < self._config.active_size:
            self._add_active(candidate, now)
        elif refresh or self._mass_silence(len(self._suspects(now))):  # a swap, or silent links
            self._add_active(candidate, now, partner=dropped)
        else:  # filled meanwhile: undo the link the other side just made
            host.send((candidate,), new_envelope(host, Kind.VIEW_DISCONNECT, [], now))

    def _on_disconnect(self, message: Envelope, body: list[object], now: float) -> None:
        if len(body) > 1:
            raise MalformedMessage("DISCONNECT body must be [] or [partner descriptor]")
        partner = self._described(message, body, sender=False) if body else None
        position = self._position(self._active, message.sender)
        if position < 0:
            return
        peer = self._active[position]
        self._remove_active(peer.node_id)
        self._keep_passive([peer], [])
        if partner is not None and self._position(self._active, partner.node_id) < 0:
            self._keep_passive([partner], [])
            # A swap: the partner has a free slot for us. If the drop left us thin,
            # ask with high priority, or a partner that filled meanwhile refuses.
            self._ask(partner, self._thin(len(self._active) - len(self._suspects(now))), now)
        elif not self._active:
            self._repair(now)  # alone: ask (high priority) now, not at the next probe tick

    def _on_shuffle(self, message: Envelope, body: list[object], now: float) -> None:
        if len(body) != 2:
            raise MalformedMessage("SHUFFLE body must be [descriptor, entries]", field="body")
        ttl = min(message.hops_left, _WALK_MAX)
        host = self._host
        origin, _ = parse_descriptor(host, body[0])
        if origin.node_id != message.origin:
            raise MalformedMessage("SHUFFLE must describe its origin", field="body")
        if origin.node_id == host.node_id:
            return  # the walk came back to its start
        if type(body[1]) is not list or len(body[1]) > self._entries_max():
            raise MalformedMessage("SHUFFLE entries must be a short list", field="body")
        onward = [p for p in self._active if p.node_id not in (message.sender, origin.node_id)]
        if ttl > 1 and onward:  # walk on; only the node where the walk ends reads the entries
            target = onward[int(host.rng.random() * len(onward))]
            host.send((target,), message.relayed(host.node_id, ttl - 1))
            return
        entries = [p for p, _ in parse_descriptors(host, body[1], entries_max=self._entries_max())]
        answer = _pick(host, self._passive, len(entries) + 1)
        offered = fit([descriptor(p, 0) for p in answer], host.message_bytes_max // 2)
        answer = answer[: len(offered)]
        reply = new_envelope(host, Kind.VIEW_SHUFFLE_REPLY, [offered], now)
        host.send((origin,), reply)
        self._keep_passive([origin, *entries], [p.node_id for p in answer])

    def _ping_body(self) -> list[object]:
        """A neighbour's PING: who we are, that we link to it, how many links we have."""
        return [self._me(), True, len(self._active)]

    def _on_ping(self, message: Envelope, body: list[object], source: str, now: float) -> None:
        host = self._host
        if body and (
            len(body) not in (2, 3)
            or type(body[1]) is not bool
            or (len(body) == 3 and not _is_degree(body[2]))
        ):
            raise MalformedMessage("PING body must be [descriptor, from_neighbor(, degree)]")
        position = self._position(self._active, message.sender)
        if position >= 0:
            to = self._active[position]
            if len(body) == 3:
                self._degrees[to.node_id] = body[2]  # type: ignore[assignment]
        elif body:  # a live node we do not link to
            to = self._described(message, body, sender=True)
            if not body[1]:
                self._keep_passive([to], [])  # a passive probe: remember a live node
            elif len(self._active) < self._config.active_size:
                self._add_active(to, now)  # it links to us alone: make the link whole
            else:
                host.send((to,), new_envelope(host, Kind.VIEW_DISCONNECT, [], now))
                self._keep_passive([to], [])
        ack = [host.node_id, len(self._active)]  # our links: a neighbour's eviction choice
        host.send((Peer(message.sender, source),), new_envelope(host, Kind.ACK, ack, now))

    def _on_ping_req(self, message: Envelope, body: list[object], source: str, now: float) -> None:
        if len(body) != 1:
            raise MalformedMessage("PING_REQ body must be [target descriptor]", field="body")
        host = self._host
        target, _ = parse_descriptor(host, body[0])
        position = self._position(self._active, message.sender)
        requester = self._active[position] if position >= 0 else Peer(message.sender, source)
        waiting = self._indirect.get(target.node_id)
        if waiting is None:
            if len(self._indirect) >= _INDIRECT_PENDING_MAX:
                del self._indirect[next(iter(self._indirect))]
            waiting = self._indirect[target.node_id] = []
        if len(waiting) < self._config.active_size and requester not in waiting:
            waiting.append(requester)  # at most one requester per possible neighbour
        host.send((target,), new_envelope(host, Kind.PING, [], now))

    def _on_ack(self, message: Envelope, body: list[object], now: float) -> None:
        about = body[0] if len(body) in (1, 2) else None
        if type(about) is not int or (len(body) == 2 and not _is_degree(body[1])):
            raise MalformedMessage("ACK body must be [about_node_id(, degree)]", field="body")
        if about != message.sender:  # an indirect ack, relayed by a helper
            self.observe(about, now)
            return
        if len(body) == 2 and about in self._heard:  # an active neighbour's own ack
            self._degrees[about] = body[1]  # type: ignore[assignment]
        self._passive_pings.pop(about, None)
        waiting = self._indirect.pop(about, None)
        if waiting:  # we pinged `about` for others: tell them it answered
            host = self._host
            host.send(waiting, new_envelope(host, Kind.ACK, [about], now))

    # -- view bookkeeping ----------------------------------------------------

    def _add_active(self, peer: Peer, now: float, *, partner: Peer | None = None) -> Peer | None:
        """Link ``peer``; if the view is full, drop a neighbour and return it.

        The dropped one is the most silent suspect, else a random one of the
        neighbours with the most links (as their last PING or ACK said; unknown
        counts as a full view), so a thin neighbour is not worn down further;
        its ``DISCONNECT`` names ``partner`` (a node with a free slot) if given.
        """
        host = self._host
        if peer.node_id == host.node_id or self._position(self._active, peer.node_id) >= 0:
            return None
        self._short_since = None  # progress: the escalation clock starts again
        victim = None
        if len(self._active) >= self._config.active_size:
            suspects = self._suspects(now)
            if suspects:
                victim = suspects[0]
            else:
                full, degrees = self._config.active_size, self._degrees
                most = max(degrees.get(p.node_id, full) for p in self._active)
                richest = [p for p in self._active if degrees.get(p.node_id, full) == most]
                victim = richest[int(host.rng.random() * len(richest))]
            self._remove_active(victim.node_id)
            self._keep_passive([victim], [])
            hint = (
                []
                if partner is None or partner.node_id == victim.node_id
                else [descriptor(partner, 0)]
            )
            host.send((victim,), new_envelope(host, Kind.VIEW_DISCONNECT, hint, now))
        self._remove_passive(peer.node_id)
        self._passive_pings.pop(peer.node_id, None)
        self._active.append(peer)
        self._heard[peer.node_id] = now
        return victim

    def _remove_active(self, node_id: int) -> None:
        position = self._position(self._active, node_id)
        if position >= 0:
            self._active.pop(position)
            self._heard.pop(node_id, None)
            self._degrees.pop(node_id, None)

    def _remove_passive(self, node_id: int) -> None:
        ids = self._passive_ids
        if node_id in ids:  # swap with the last entry, then drop it: order does not matter
            position = ids.index(node_id)
            ids[position] = ids[-1]
            self._passive[position] = self._passive[-1]
            ids.pop()
            self._passive.pop()

    @staticmethod
    def _position(view: list[Peer], node_id: int) -> int:
        for index, peer in enumerate(view):
            if peer.node_id == node_id:
                return index
        return -1

    @staticmethod
    def _entries_max() -> int:
        # The wire limit, not our own shuffle sizes: peers may be configured otherwise.
        return _SHUFFLE_ACTIVE_MAX + _VIEW_MAX + 1


def _is_degree(value: object) -> bool:
    """An active-view size as PING and ACK carry it."""
    return type(value) is int and 0 <= value <= _ACTIVE_MAX


def _pick(host: Host, peers: list[Peer], count: int) -> list[Peer]:
    return host.rng.sample(peers, min(count, len(peers)))
