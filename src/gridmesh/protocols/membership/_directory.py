"""A set of peers with O(1) add, remove, lookup and uniform sampling."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gridmesh.protocols._host import Peer, RandomSource, Scope

__all__ = ["PeerDirectory"]


class PeerDirectory:
    """Peers by node id. Sampling is uniform and never returns excluded ids.

    A directory may be shared by many nodes (the simulator's static full
    membership: every node knows every node, so one copy serves all of them).
    """

    __slots__ = ("_by_group", "_index", "_peers", "_scoped")

    #: Scoped lists kept at once; a directory rarely sees more distinct scopes.
    SCOPES_CACHED_MAX = 64

    def __init__(self, peers: Iterable[Peer] = ()) -> None:
        self._peers: list[Peer] = []
        self._index: dict[int, int] = {}
        # scope -> the peers it admits, built on first use, dropped on any change
        self._scoped: dict[Scope, list[Peer]] = {}
        # group -> its members, for every group at once (a tree of "parent:<id>"
        # groups has as many groups as inner nodes); built on first use
        self._by_group: dict[str, list[Peer]] | None = None
        for peer in peers:
            self.add(peer)

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __iter__(self) -> Iterator[Peer]:
        return iter(self._peers)

    def get(self, node_id: int) -> Peer | None:
        position = self._index.get(node_id)
        return None if position is None else self._peers[position]

    def add(self, peer: Peer) -> None:
        """Add ``peer``, or replace the entry with the same node id."""
        assert peer.node_id != 0, "a directory holds only peers with a known id"
        position = self._index.get(peer.node_id)
        if position is None:
            self._index[peer.node_id] = len(self._peers)
            self._peers.append(peer)
        elif self._peers[position] is peer:
            return
        else:
            self._peers[position] = peer
        self._forget_scopes()

    def remove(self, node_id: int) -> None:
        position = self._index.pop(node_id, None)
        if position is None:
            return
        self._forget_scopes()
        last = self._peers.pop()
        if position < len(self._peers):  # move the last peer into the hole
            self._peers[position] = last
            self._index[last.node_id] = position

    def scoped(self, scope: Scope) -> list[Peer]:
        """The peers ``scope`` admits (a cached list: do not modify it)."""
        if scope.service is None and scope.group is not None:
            by_group = self._by_group
            if by_group is None:
                by_group = self._by_group = {}
                for peer in self._peers:
                    for group in peer.groups:
                        by_group.setdefault(group, []).append(peer)
            return by_group.get(scope.group, [])
        cache = self._scoped
        found = cache.get(scope)
        if found is None:
            if len(cache) >= self.SCOPES_CACHED_MAX:
                cache.clear()
            found = cache[scope] = [p for p in self._peers if scope.admits(p)]
        return found

    def _forget_scopes(self) -> None:
        if self._scoped:
            self._scoped.clear()
        self._by_group = None

    def sample(
        self,
        rng: RandomSource,
        count: int,
        exclude_a: int,
        exclude_b: int,
        scope: Scope | None = None,
    ) -> list[Peer]:
        """Up to ``count`` distinct peers drawn uniformly, none excluded, all within ``scope``.

        A scoped draw filters the whole directory once per scope (O(size)),
        then reuses the filtered list until the directory changes.
        """
        peers = self._peers
        size = len(peers)
        if count <= 0 or size == 0:
            return []
        if scope is not None:
            peers = self.scoped(scope)
            size = len(peers)
        if count * 3 >= size:
            # Dense: filter, then draw without replacement.
            eligible = [p for p in peers if p.node_id not in (exclude_a, exclude_b)]
            if count >= len(eligible):
                rng.shuffle(eligible)
                return eligible
            return rng.sample(eligible, count)
        # Sparse (size > 3 * count, so at least count eligible peers exist):
        # rejection sampling costs O(count) draws instead of O(size). A drawn id
        # joins the excluded ones, so no peer is chosen twice.
        chosen: list[Peer] = []
        taken = [exclude_a, exclude_b]
        draw = rng.random
        while len(chosen) < count:
            peer = peers[int(draw() * size)]
            if peer.node_id not in taken:
                taken.append(peer.node_id)
                chosen.append(peer)
        return chosen
