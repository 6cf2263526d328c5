"""Full membership: every node knows every other node.

Theory of operation
-------------------
Seed 000 (WS-Gossip, II.1) names two ways to find gossip targets; this is the
first: "share the full list of participants, allowing each of them to locally
draw subsets as desired", right when the system is small or changes slowly.
It has two modes, chosen by ``exchange_interval_s``:

**Static** (``exchange_interval_s = 0``): the directory is given at
construction and never changes. The simulator uses it for large runs, where
one shared directory serves every node.

**Gossiped** (``exchange_interval_s > 0``), the membership of van Renesse,
Minsky and Hayden's gossip-style failure detector (Middleware 1998):

* a node joins by sending ``JOIN`` to any seed address; the seed adds it and
  answers with ``MEMBERS`` (a sample of what it knows, itself included). Until
  some peer is known the node repeats its ``JOIN`` every interval;
* every ``exchange_interval_s`` a node sends ``MEMBERS`` (its own descriptor
  plus up to ``members_per_message_max - 1`` others, each stamped with its
  heartbeat) to one random peer, which merges it and answers in kind
  (push-pull), so a new member reaches everyone in O(log n) intervals;
* a member whose heartbeat has not risen for ``member_timeout_s`` of *local*
  time is removed, and a tombstone keeps its last heartbeat so stale gossip
  cannot bring it back; a restarted node returns because its heartbeat is its
  clock in milliseconds, which only grows. Clocks are never compared across
  nodes: each heartbeat is only compared with earlier values of itself.

Rules that never bend: a node never lists itself as a peer; at most
``members_max`` members and as many tombstones are kept; every entry a peer
sends is type-checked before anything is merged; a heartbeat may not be later
than the receiver's clock plus ``clock_skew_max_s`` (it could otherwise pin a
member, or its tombstone, forever); only a member itself changes its address,
service or groups; a message is cut to fit ``message_bytes_max``; answers go
where a request came from.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import MalformedMessage
from gridmesh.protocols._host import Host, Peer, Scope, new_envelope
from gridmesh.protocols.membership._descriptors import (
    descriptor,
    fit,
    other_seeds,
    parse_descriptors,
)
from gridmesh.protocols.membership._directory import PeerDirectory
from gridmesh.wire import Envelope, Kind

__all__ = ["MEMBERS_PER_MESSAGE_LIMIT", "FullMembership", "FullMembershipConfig"]

#: Hard wire limit: a MEMBERS message listing more entries is refused.
MEMBERS_PER_MESSAGE_LIMIT = 4096


class FullMembershipConfig(BaseModel):
    """Limits and timing of full membership."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["full"] = "full"
    exchange_interval_s: float = Field(
        default=1.0, ge=0.0, le=3600.0, description="0 = static membership: no exchange, no expiry"
    )
    member_timeout_s: float = Field(default=10.0, gt=0.0, le=86_400.0)
    members_max: int = Field(default=100_000, ge=1, le=10_000_000)
    members_per_message_max: int = Field(default=256, ge=1, le=MEMBERS_PER_MESSAGE_LIMIT)
    clock_skew_max_s: float = Field(default=60.0, ge=0.0, le=86_400.0)


class FullMembership:
    """Peer sampling over a complete (static or gossiped) member list."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.JOIN, Kind.MEMBERS})

    __slots__ = ("_config", "_directory", "_heard", "_host", "_seeds", "_tombstones")

    def __init__(
        self,
        host: Host,
        config: FullMembershipConfig,
        *,
        directory: PeerDirectory | None = None,
        seeds: tuple[Peer, ...] = (),
    ) -> None:
        self._host = host
        self._config = config
        self._directory = PeerDirectory() if directory is None else directory
        self._seeds = seeds
        # node id -> (highest heartbeat seen, local time it last rose); gossiped mode only.
        self._heard: dict[int, tuple[int, float]] = {}
        self._tombstones: dict[int, int] = {}

    @property
    def gossiped(self) -> bool:
        return self._config.exchange_interval_s > 0

    # -- peer sampling -------------------------------------------------------

    def sample(self, count: int, exclude: int = 0, scope: Scope | None = None) -> list[Peer]:
        return self._directory.sample(self._host.rng, count, self._host.node_id, exclude, scope)

    def neighbors(self) -> list[Peer]:
        """Every known peer, this node excluded."""
        me = self._host.node_id
        return [peer for peer in self._directory if peer.node_id != me]

    def stats(self) -> dict[str, int]:
        directory = self._directory
        return {"view": len(directory) - (1 if self._host.node_id in directory else 0)}

    # -- life cycle ----------------------------------------------------------

    def start(self, now: float) -> None:
        if not self.gossiped:
            return
        for peer in self._directory:
            self._heard.setdefault(peer.node_id, (0, now))
        self._send_join(now)
        self._host.call_at(now + self._config.exchange_interval_s, self._on_exchange_timer)

    def _heartbeat(self, now: float) -> int:
        return max(0, int(now * 1000.0))

    def _send_join(self, now: float) -> None:
        host = self._host
        seeds = other_seeds(host, self._seeds)
        if seeds:
            me = descriptor(host.me, self._heartbeat(now))
            host.send(seeds, new_envelope(host, Kind.JOIN, [me], now))

    def _on_exchange_timer(self, now: float) -> None:
        config = self._config
        self._expire(now)
        peers = self.sample(1)
        if peers:
            self._send_members(peers[0], now, reply_wanted=True)
        else:
            self._send_join(now)
        self._host.call_at(now + config.exchange_interval_s, self._on_exchange_timer)

    def _expire(self, now: float) -> None:
        deadline = now - self._config.member_timeout_s
        dead = [node_id for node_id, (_, rose) in self._heard.items() if rose < deadline]
        for node_id in dead:
            heartbeat, _ = self._heard.pop(node_id)
            self._directory.remove(node_id)
            if len(self._tombstones) >= self._config.members_max:
                self._tombstones.pop(next(iter(self._tombstones)))
            self._tombstones[node_id] = heartbeat

    # -- messages ------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        if message.kind is Kind.JOIN:
            self._on_join(message, source, now)
        else:
            self._on_members(message, source, now)

    def _on_join(self, message: Envelope, source: str, now: float) -> None:
        body = message.body
        if type(body) is not list or len(body) != 1:
            raise MalformedMessage("JOIN body must be [descriptor]", field="body")
        ((joiner, heartbeat),) = parse_descriptors(self._host, body, entries_max=1)
        if joiner.node_id != message.origin:
            raise MalformedMessage("JOIN must describe its origin", field="body")
        if not joiner.address:  # no advertised address: the one it sent from
            joiner = self._host.peer(joiner.node_id, source, joiner.service, joiner.groups)
        rejoined = max(heartbeat, self._tombstones.get(joiner.node_id, 0) + 1)
        self._merge(joiner, rejoined, now, first_hand=True)
        self._send_members(Peer(joiner.node_id, source), now, reply_wanted=False)

    def _on_members(self, message: Envelope, source: str, now: float) -> None:
        body = message.body
        if type(body) is not list or len(body) != 2 or type(body[0]) is not bool:
            raise MalformedMessage("MEMBERS body must be [reply_wanted, entries]", field="body")
        entries = parse_descriptors(self._host, body[1], entries_max=MEMBERS_PER_MESSAGE_LIMIT)
        for peer, heartbeat in entries:
            self._merge(peer, heartbeat, now, first_hand=peer.node_id == message.origin)
        if body[0] and message.origin != 0:
            self._send_members(Peer(message.origin, source), now, reply_wanted=False)

    def _merge(self, peer: Peer, heartbeat: int, now: float, *, first_hand: bool) -> None:
        node_id = peer.node_id
        if node_id == self._host.node_id or not self.gossiped:
            return
        heartbeat = min(heartbeat, self._heartbeat(now + self._config.clock_skew_max_s))
        buried = self._tombstones.get(node_id)
        if buried is not None:
            if heartbeat <= buried:
                return
            del self._tombstones[node_id]
        known = self._heard.get(node_id)
        if known is None:
            if len(self._directory) >= self._config.members_max:
                return
            self._directory.add(peer)
            self._heard[node_id] = (heartbeat, now)
        elif heartbeat > known[0]:
            self._heard[node_id] = (heartbeat, now)
            if first_hand and self._directory.get(node_id) is not peer:
                self._directory.add(peer)  # it moved, or changed what it advertises

    def _send_members(self, peer: Peer, now: float, *, reply_wanted: bool) -> None:
        host = self._host
        others = self.sample(self._config.members_per_message_max - 1, exclude=peer.node_id)
        heard = self._heard
        entries = [descriptor(host.me, self._heartbeat(now))]
        entries += [descriptor(p, heard.get(p.node_id, (0, now))[0]) for p in others]
        entries = fit(entries, host.message_bytes_max // 2)
        host.send((peer,), new_envelope(host, Kind.MEMBERS, [reply_wanted, entries], now))
