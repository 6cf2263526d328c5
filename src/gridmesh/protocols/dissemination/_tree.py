"""Tree-based epidemic broadcast (Plumtree).

Theory of operation
-------------------
Leitão, Pereira and Rodrigues, "Epidemic Broadcast Trees" (SRDS 2007). Each
node splits its membership's *active view* (``neighbors()``; HyParView keeps
it small, symmetric and repaired) into **eager** and **lazy** peers. All start
eager, so the first broadcast floods the overlay like push gossip; the tree
then emerges from the duplicates:

* a node that receives a message **for the first time** delivers it, pushes
  the payload to its eager peers and announces its id (``GOSSIP_IHAVE``) to its
  lazy peers, the sender excepted, and makes the sender eager (it is now its
  parent in the tree);
* a **duplicate** payload means the link closes a cycle: the receiver makes
  the sender lazy and tells it so (``GOSSIP_PRUNE``), and the sender does the
  same. Eager links stay symmetric, so they converge to a spanning tree that
  serves every origin with no duplicates at all;
* an **IHAVE** for a message not received starts a timer
  (``request_timeout_s``): if the payload has not come by then (a link or node
  of the tree failed, a copy was lost), the node asks the announcer for it with
  ``GOSSIP_GRAFT`` and makes it eager, repairing the tree; further announcers
  are tried every half timeout;
* a **GRAFT** makes the requester eager and sends it the stored message.

Neighbours come and go with the membership: every event (gossip, and every
membership message and timer, which the ``Node`` passes on as
``on_neighbors``) first reconciles the eager and lazy sets with
``neighbors()``: new neighbours start eager, gone ones are forgotten, and for
each gone *eager* one a random lazy peer becomes eager and is told so with a
keyless ``GOSSIP_GRAFT``. A dropped tree link may have cut the tree; waiting
for the next broadcast's IHAVE to time out left the eager graph of a 200-node
test split on 5 or 6 seeds in 12 (concurrent broadcasts, one a second);
bridging at once leaves 1 in 12 (a 3-node part cut by the crossing prunes of two
concurrent broadcasts, which the next IHAVE repairs). A bridge that crosses no
cut costs one duplicate and is pruned again. The tree mode ignores the fanout; by default a message
may travel ``hops_max`` hops, since a tree is deeper than a gossip's rounds.
"""

from __future__ import annotations

from typing import ClassVar

from gridmesh.protocols._host import Host, Peer, PeerSampling, new_envelope
from gridmesh.protocols.dissemination._config import GossipConfig
from gridmesh.protocols.dissemination._gossip import (
    Gossip,
    SizeEstimate,
    parse_gossip_body,
    parse_keys,
)
from gridmesh.protocols.dissemination._store import MessageKey
from gridmesh.wire import Envelope, Kind

__all__ = ["TreeGossip"]


class TreeGossip(Gossip):
    """One node's Plumtree broadcast, over the membership's active view."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset(
        {Kind.GOSSIP, Kind.GOSSIP_IHAVE, Kind.GOSSIP_GRAFT, Kind.GOSSIP_PRUNE, Kind.GOSSIP_DIGEST}
    )

    __slots__ = ("_eager", "_lazy", "_neighbors", "grafts", "prunes")

    def __init__(
        self,
        host: Host,
        config: GossipConfig,
        peers: PeerSampling,
        size_estimate: SizeEstimate = lambda: None,
    ) -> None:
        super().__init__(host, config, peers, size_estimate)
        self._neighbors: dict[int, Peer] = {}
        self._eager: set[int] = set()
        self._lazy: set[int] = set()
        self.grafts = 0  # GRAFTs sent: tree repairs
        self.prunes = 0  # PRUNEs sent: cycles cut

    #: Grafts to further announcers follow at half the timeout (Plumtree's timer 2).
    _RETRY_SHARE = 0.5

    def _default_hops(self) -> int:
        return self._config.hops_max  # a tree is deeper than a gossip's rounds

    def stats(self) -> dict[str, int]:
        return {
            **super().stats(),
            "eager": len(self._eager),
            "lazy": len(self._lazy),
            "grafts": self.grafts,
            "prunes": self.prunes,
        }

    def eager_peers(self) -> list[int]:
        """Ids of the peers this node pushes payloads to (its tree links).

        As the next event will see them: current neighbours that are eager, or
        new (new neighbours start eager). Reading does not change the sets.
        """
        known = self._neighbors
        return sorted(
            peer.node_id
            for peer in self._peers.neighbors()
            if peer.node_id in self._eager or peer.node_id not in known
        )

    # -- input ---------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        kind = message.kind
        if kind is Kind.GOSSIP:
            self.on_gossip(message, now)
        elif kind is Kind.GOSSIP_IHAVE:
            self._on_announce(message, source, now)
        elif kind is Kind.GOSSIP_GRAFT:
            self._on_graft(message, source, now)
        elif kind is Kind.GOSSIP_PRUNE:
            self._sync(now)
            self._make_lazy(message.sender)
        elif kind is Kind.GOSSIP_DIGEST:
            self._on_digest(message, source, now)

    def on_gossip(self, message: Envelope, now: float) -> None:
        key = (message.origin, message.message_id)
        sender = message.sender
        self._sync(now)
        if key in self._seen:
            self.duplicates += 1
            if sender in self._neighbors and message.hops_left > 0:
                # A second payload closes a cycle: cut the link it came over. Even if
                # the sender is lazy here already: it still thinks we are eager (a
                # PRUNE crossed its first copy to us), and only a PRUNE tells it.
                # (A digest answer, with no hops left, is a repair, not a tree link.)
                self._make_lazy(sender)
                self.prunes += 1
                self._host.send(
                    [self._neighbors[sender]], new_envelope(self._host, Kind.GOSSIP_PRUNE, [], now)
                )
            return
        _, payload, group, _ = parse_gossip_body(message.body)
        self._seen.add(key)
        self._pending.pop(key, None)
        if message.hops_left == 0:
            self.repaired += 1
        elif sender in self._neighbors:
            self._make_eager(sender)
        hops_left = min(message.hops_left, self._config.hops_max) - 1
        store = self._store
        assert store is not None  # the tree mode always keeps messages, for grafts
        store.add(key, message, max(hops_left, 0), now)
        self._take(message, payload, group, now)
        self._push(message, key, hops_left, sender, now)  # synced above

    # -- the tree ------------------------------------------------------------

    def _spread(
        self,
        message: Envelope,
        key: MessageKey,
        *,
        fanout: float,
        group: str,
        hops_left: int,
        came_from: int,
        now: float,
    ) -> None:
        self._sync(now)
        self._push(message, key, hops_left, came_from, now)

    def _push(
        self, message: Envelope, key: MessageKey, hops_left: int, came_from: int, now: float
    ) -> None:
        """Payload to the eager peers, ids to the lazy ones (the sets already synced)."""
        if hops_left <= 0:
            return
        neighbors = self._neighbors
        eager = [neighbors[i] for i in self._eager if i != came_from]
        lazy = [neighbors[i] for i in self._lazy if i != came_from]
        host = self._host
        if came_from and (eager or lazy):
            self.relayed += 1
        if eager:
            eager.sort(key=_by_id)  # set order must not leak into a deterministic run
            host.send(eager, message.relayed(host.node_id, hops_left) if came_from else message)
        if lazy:
            lazy.sort(key=_by_id)
            host.send(lazy, new_envelope(host, Kind.GOSSIP_IHAVE, [list(key)], now))

    def _on_announce(self, message: Envelope, source: str, now: float) -> None:
        # Wait first: the payload is most likely on its way along the tree.
        self._announced(parse_keys(message.body, "GOSSIP_IHAVE"), Peer(message.sender, source), now)

    def _request(self, key: MessageKey, announcer: Peer, now: float) -> None:
        """Graft: make the announcer a tree link and ask it for the payload."""
        self._sync(now)
        if announcer.node_id in self._neighbors:
            self._make_eager(announcer.node_id)
        self.grafts += 1
        self.requested += 1
        self._host.send([announcer], new_envelope(self._host, Kind.GOSSIP_GRAFT, [list(key)], now))

    def _on_graft(self, message: Envelope, source: str, now: float) -> None:
        keys = parse_keys(message.body, "GOSSIP_GRAFT")
        self._sync(now)
        if message.sender in self._neighbors:
            self._make_eager(message.sender)
        self._answer(keys, Peer(message.sender, source), now)

    def on_neighbors(self, now: float) -> None:
        self._sync(now)

    def _sync(self, now: float) -> None:
        """Make the eager and lazy sets match the membership's current neighbours."""
        current = self._peers.neighbors()
        neighbors = self._neighbors
        if len(current) == len(neighbors) and all(
            neighbors.get(peer.node_id) is peer for peer in current
        ):
            return
        fresh = {peer.node_id: peer for peer in current}
        cut = 0
        for gone in neighbors.keys() - fresh.keys():
            cut += gone in self._eager
            self._eager.discard(gone)
            self._lazy.discard(gone)
        for new in fresh.keys() - neighbors.keys():
            self._eager.add(new)
        self._neighbors = fresh
        if cut:
            self._bridge(cut, now)

    def _bridge(self, cut: int, now: float) -> None:
        """Make ``cut`` random lazy links tree links, on both sides.

        A tree link went with the membership, so the tree may be cut here; it
        used to stay cut until a broadcast's IHAVE timed out, and the eager graph
        of a 200-node test ended split on 5 or 6 seeds in 12. A keyless
        ``GOSSIP_GRAFT`` makes the other side eager too; if the link leads
        across no cut, the next broadcast's duplicate prunes it again.
        """
        host, lazy = self._host, sorted(self._lazy)
        for _ in range(min(cut, len(lazy))):
            promoted = lazy.pop(int(host.rng.random() * len(lazy)))
            self._make_eager(promoted)
            self.grafts += 1
            host.send([self._neighbors[promoted]], new_envelope(host, Kind.GOSSIP_GRAFT, [], now))

    def _make_eager(self, node_id: int) -> None:
        if node_id in self._neighbors:
            self._lazy.discard(node_id)
            self._eager.add(node_id)

    def _make_lazy(self, node_id: int) -> None:
        if node_id in self._neighbors:
            self._eager.discard(node_id)
            self._lazy.add(node_id)


def _by_id(peer: Peer) -> int:
    return peer.node_id
