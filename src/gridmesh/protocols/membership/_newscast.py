"""Newscast: a peer cache ordered by freshness (seed 000's Peer Service).

Theory of operation
-------------------
Seed 000 (WS-Gossip, IV.B) keeps "a list where each service instance is
represented by an entry that contains its endpoint address, type and the
identification of the device", each with a heartbeat, exchanged with other
instances by Newscast (Jelasity, Kowalczyk, van Steen 2003). Here an entry is
a descriptor (node id = device id, address, service type, groups) stamped with
the time, in milliseconds of its owner's clock, at which its owner last
vouched for it.

Every ``exchange_interval_s`` a node picks a random entry of its cache and
sends it the whole cache plus a fresh entry for itself (``EXCHANGE``); the peer
answers the same way (``EXCHANGE_REPLY``). Both merge: the union of the two
caches and the two fresh entries, one entry per node (the newest stamp), the
merging node itself left out, the ``cache_size`` newest kept. An entry is only
ever refreshed by its owner, so a node that stopped — crashed, left, or cut off
— has entries that only grow older and fall off the end as fresher ones
arrive: that is the failure detection.

That alone strands a node whose cache holds only dead entries: it picks dead
partners, hears nothing fresher, and its own entries age out of everyone
else's cache (measured: 178 dead links still held at 10^4 nodes, 40 rounds
after half of them failed). So, as in Cyclon, a partner that does not answer
leaves the cache: an exchange unanswered within ``reply_timeout_s`` drops that
entry and is tried again with another partner, ``retries`` times a period at
most. A stranded cache empties within a few periods, and an empty cache
exchanges with a seed. A reply from anyone but the partner of the exchange in
flight is refused (``UnexpectedMessage``).

A dropped node leaves a *tombstone* with its last stamp: copies of its old
entry that other caches still hold are refused, until the node itself vouches
with a newer stamp. Tombstones travel: every exchange carries the sender's
``TOMBSTONES_PER_MESSAGE`` newest, and a receiver drops its entry for such a
node if it is no newer than the tombstone. Without them a small group of
survivors that mostly talk among themselves kept re-teaching each other dead
entries (measured at 10^4 nodes: 178 dead links held forever after half the
nodes failed); with local tombstones only, each node still had to pick every
dead partner itself, and 137 remained after 12 rounds. A forged tombstone
hides a live node only until its next fresh entry arrives.

Only a node's own descriptor (the message's origin describing itself) may
change its address, service or groups; third parties pass entries along, and
their stamps may not be later than the receiver's clock. Answers go to the
transport address a request came from, never to an address a peer claims.

Stamps are compared across nodes, so clocks must be roughly synchronised (as
meters' clocks are, for billing). A stamp more than ``clock_skew_max_s`` ahead
of the receiver's clock is clamped, so no node can pin its entries in others'
caches by claiming the future. A node with an empty cache exchanges with one of
its seeds, which may be known by address only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import MalformedMessage, UnexpectedMessage
from gridmesh.protocols._host import Host, Peer, Scope, new_envelope
from gridmesh.protocols.membership._descriptors import (
    descriptor,
    fit,
    other_seeds,
    parse_descriptors,
)
from gridmesh.wire import UINT64_MAX, Envelope, Kind

__all__ = ["CACHE_SIZE_MAX", "TOMBSTONES_PER_MESSAGE", "Newscast", "NewscastConfig"]

CACHE_SIZE_MAX = 1000
#: Tombstones an exchange carries (the sender's newest); a wire limit too.
TOMBSTONES_PER_MESSAGE = 8


class NewscastConfig(BaseModel):
    """Cache size and exchange period of Newscast."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["newscast"] = "newscast"
    cache_size: int = Field(default=20, ge=1, le=CACHE_SIZE_MAX)
    exchange_interval_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    clock_skew_max_s: float = Field(default=60.0, ge=0.0, le=86_400.0)
    reply_timeout_s: float = Field(
        default=1.0, gt=0.0, le=3600.0, description="capped so that all retries fit in a period"
    )
    retries: int = Field(default=2, ge=0, le=16)


class Newscast:
    """One node's Newscast cache."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.NEWSCAST_EXCHANGE, Kind.NEWSCAST_REPLY})

    __slots__ = (
        "_awaiting",
        "_config",
        "_host",
        "_peers",
        "_seeds",
        "_stamps",
        "_tombstones",
        "exchanges",
    )

    def __init__(self, host: Host, config: NewscastConfig, *, seeds: tuple[Peer, ...] = ()) -> None:
        self._host = host
        self._config = config
        self._seeds = seeds
        # The cache, newest first: parallel lists of interned peers and their stamps (ms).
        self._peers: list[Peer] = []
        self._stamps: list[int] = []
        self.exchanges = 0
        # The exchange in flight: its message id and the partner's node id.
        self._awaiting: tuple[int, int] | None = None
        # Dropped silent nodes -> their last stamp; at most 2 * cache_size of them.
        self._tombstones: dict[int, int] = {}

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

    def stamps(self) -> list[int]:
        """Stamps (ms) of the cache entries, in the order of ``neighbors()``."""
        return list(self._stamps)

    def stats(self) -> dict[str, int]:
        return {"view": len(self._peers), "exchanges": self.exchanges}

    # -- life cycle ----------------------------------------------------------

    def start(self, now: float) -> None:
        known = [(s, 0) for s in self._seeds if s.node_id not in (0, self._host.node_id)]
        self._merge(known, now)
        interval = self._config.exchange_interval_s
        self._host.call_at(now + interval * self._host.rng.random(), self._on_timer)

    def _on_timer(self, now: float) -> None:
        self._exchange(now, self._config.retries)
        self._host.call_at(now + self._config.exchange_interval_s, self._on_timer)

    def _exchange(self, now: float, retries_left: int) -> None:
        host = self._host
        if self._awaiting is not None:  # still unanswered when the next one starts
            self._drop(self._awaiting[1])
            self._awaiting = None
        target: Peer | None
        if self._peers:
            target = self._peers[int(host.rng.random() * len(self._peers))]
        else:
            seeds = other_seeds(host, self._seeds)
            target = seeds[int(host.rng.random() * len(seeds))] if seeds else None
        if target is None:
            return
        self.exchanges += 1
        message = new_envelope(host, Kind.NEWSCAST_EXCHANGE, self._body(now), now)
        self._awaiting = (message.message_id, target.node_id)
        host.send((target,), message)

        def check(later: float, awaiting: tuple[int, int] = self._awaiting) -> None:
            if self._awaiting != awaiting:
                return  # answered
            self._awaiting = None
            self._drop(awaiting[1])  # silent: it leaves the cache
            if retries_left > 0:
                self._exchange(later, retries_left - 1)

        config = self._config
        timeout = min(config.reply_timeout_s, config.exchange_interval_s / (config.retries + 1))
        host.call_at(now + timeout, check)

    def _drop(self, node_id: int) -> None:
        for index, peer in enumerate(self._peers):
            if peer.node_id == node_id:
                self._bury(node_id, self._stamps[index])
                del self._peers[index]
                del self._stamps[index]
                return

    def _bury(self, node_id: int, stamp: int) -> None:
        tombstones = self._tombstones
        tombstones.pop(node_id, None)  # re-inserted: the newest come last
        if len(tombstones) >= 2 * self._config.cache_size:
            del tombstones[next(iter(tombstones))]
        tombstones[node_id] = stamp

    def _body(self, now: float) -> list[object]:
        """``[entries, tombstones]``: our cache, freshest first, and our newest tombstones."""
        entries = [descriptor(self._host.me, _ms(now))]
        entries += [descriptor(p, s) for p, s in zip(self._peers, self._stamps, strict=True)]
        newest = list(self._tombstones.items())[-TOMBSTONES_PER_MESSAGE:]
        return [fit(entries, self._host.message_bytes_max // 2), [list(t) for t in newest]]

    # -- messages ------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.origin in (0, self._host.node_id):
            raise MalformedMessage("Newscast message from an invalid origin", field="origin")
        body = message.body
        if type(body) is not list or len(body) != 2:
            raise MalformedMessage("Newscast body must be [entries, tombstones]", field="body")
        # Up to the wire limit, not our own cache size: peers may be configured otherwise.
        received = parse_descriptors(self._host, body[0], entries_max=CACHE_SIZE_MAX + 1)
        certificates = _parse_tombstones(body[1])
        awaiting = self._awaiting
        if message.kind is Kind.NEWSCAST_REPLY:
            if awaiting is None or awaiting[1] not in (0, message.origin):
                raise UnexpectedMessage("an EXCHANGE_REPLY to no exchange in flight")
            self._awaiting = None  # the partner answered (0: a seed we knew by address only)
        if message.kind is Kind.NEWSCAST_EXCHANGE:
            host = self._host
            reply = new_envelope(host, Kind.NEWSCAST_REPLY, self._body(now), now)
            host.send((Peer(message.origin, source),), reply)  # where it came from
        self._accept_tombstones(certificates, now)
        self._merge(received, now, origin=message.origin)

    def _accept_tombstones(self, certificates: list[tuple[int, int]], now: float) -> None:
        me, ceiling = self._host.node_id, _ms(now)
        for node_id, claimed in certificates:
            stamp = min(claimed, ceiling)
            if node_id == me or self._tombstones.get(node_id, -1) >= stamp:
                continue
            index = next((i for i, p in enumerate(self._peers) if p.node_id == node_id), -1)
            if index >= 0 and self._stamps[index] > stamp:
                continue  # we know it alive since: the certificate is stale
            if index >= 0:
                del self._peers[index]
                del self._stamps[index]
            self._bury(node_id, stamp)

    def _merge(self, received: list[tuple[Peer, int]], now: float, origin: int = 0) -> None:
        me = self._host.node_id
        own_ceiling = _ms(now + self._config.clock_skew_max_s)
        hearsay_ceiling = _ms(now)
        tombstones = self._tombstones
        newest: dict[int, tuple[int, Peer]] = {
            p.node_id: (s, p) for p, s in zip(self._peers, self._stamps, strict=True)
        }
        for peer, claimed in received:
            node_id = peer.node_id
            first_hand = node_id == origin
            stamp = min(claimed, own_ceiling if first_hand else hearsay_ceiling)
            buried = tombstones.get(node_id)
            if node_id == me or (buried is not None and stamp <= buried):
                continue
            known = newest.get(node_id)
            if known is None or stamp > known[0]:
                # Hearsay may refresh an entry, not change what it says.
                entry = peer if known is None or first_hand else known[1]
                newest[node_id] = (stamp, entry)
                tombstones.pop(node_id, None)
        # Newest first; ties broken by node id so that every run orders alike.
        ranked = sorted(newest.items(), key=lambda item: (-item[1][0], item[0]))
        kept = ranked[: self._config.cache_size]
        self._peers = [peer for _, (_, peer) in kept]
        self._stamps = [stamp for _, (stamp, _) in kept]


def _parse_tombstones(items: object) -> list[tuple[int, int]]:
    if type(items) is not list or len(items) > TOMBSTONES_PER_MESSAGE:
        raise MalformedMessage(f"at most {TOMBSTONES_PER_MESSAGE} tombstones", field="body")
    parsed = []
    for item in items:
        if type(item) is not list or len(item) != 2:
            raise MalformedMessage("a tombstone is [node_id, stamp]", field="body")
        node_id, stamp = item
        if type(node_id) is not int or not 0 < node_id <= UINT64_MAX:
            raise MalformedMessage("a tombstone's node_id must be a positive 64-bit integer")
        if type(stamp) is not int or not 0 <= stamp <= UINT64_MAX:
            raise MalformedMessage("a tombstone's stamp must be an unsigned 64-bit integer")
        parsed.append((node_id, stamp))
    return parsed


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000.0))
