"""An underlying router topology, for link stress (seed 002, Fig. 2).

Theory of operation
-------------------
The simulator's network is a set of LAN domains (``domain_size`` nodes each)
joined by a WAN. Link stress asks what that WAN is made of, so this module
draws one, deterministically from a seed, in the transit-stub shape of
HAMcast's evaluation:

* every node has an **access link** to its domain's **access router**; a
  domain's nodes reach each other through it (a switched LAN);
* every access router has one **uplink** to a **core router**, chosen at
  random among ``core_routers``;
* the core routers form a random connected graph: a random tree (each router
  links to a random earlier one) plus ``core_extra_links`` random chords.

A copy from node ``a`` to node ``b`` follows ``a``'s access link, and, unless
both are in one domain, ``a``'s uplink, the shortest core path (BFS, ties to
the lower router id), ``b``'s uplink; then ``b``'s access link. A native
multicast into a domain crosses the sender's access link once and each
receiver's access link once. The **stress** of a link is the number of
copies of one message that cross it; a link no copy crosses is not counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from random import Random

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LinkStress", "RouterTopology", "RouterTopologyConfig", "TrafficTrace"]


class RouterTopologyConfig(BaseModel):
    """The shape of the drawn router network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    core_routers: int = Field(default=32, ge=1, le=100_000)
    core_extra_links: int = Field(default=16, ge=0, le=1_000_000)


class LinkStress(BaseModel):
    """How many copies of one message crossed each link, summarized."""

    model_config = ConfigDict(frozen=True)

    copies: int = Field(description="copies sent, multicast transmissions counting once")
    links_used: int
    mean: float = Field(description="mean stress over the links used")
    max: int
    router_links_used: int = Field(description="uplinks and core links used")
    router_mean: float = Field(description="mean stress over the router links used")
    router_max: int


class TrafficTrace:
    """The payload copies of the messages of chosen origins: who sent one to whom.

    Bounded: after ``copies_max`` copies it records nothing more and says so
    in ``truncated``.
    """

    __slots__ = ("_copies", "_multicasts", "_unicasts", "copies_max", "origins", "truncated")

    def __init__(self, origins: Sequence[int], *, copies_max: int = 20_000_000) -> None:
        #: node ids whose messages are traced
        self.origins: frozenset[int] = frozenset(origins)
        self.copies_max = copies_max
        self.truncated = False
        self._copies = 0
        self._unicasts: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._multicasts: dict[tuple[int, int], list[tuple[int, list[int]]]] = {}

    def unicast(self, key: tuple[int, int], source: int, destinations: Sequence[int]) -> None:
        """Record copies from node index ``source`` to node indexes ``destinations``."""
        if self._full(len(destinations)):
            return
        bucket = self._unicasts.setdefault(key, [])
        bucket.extend((source, d) for d in destinations)

    def multicast(self, key: tuple[int, int], source: int, receivers: list[int]) -> None:
        if self._full(1):
            return
        self._multicasts.setdefault(key, []).append((source, receivers))

    def _full(self, adding: int) -> bool:
        self._copies += adding
        if self._copies > self.copies_max:
            self.truncated = True
        return self.truncated

    def copies(
        self, key: tuple[int, int]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, list[int]]]]:
        return self._unicasts.get(key, []), self._multicasts.get(key, [])


class RouterTopology:
    """A drawn router network under ``nodes`` nodes in domains of ``domain_size``."""

    __slots__ = (
        "_core_first",
        "_core_next",
        "_core_of_domain",
        "_domain_size",
        "_edge_id",
        "nodes",
    )

    def __init__(
        self, nodes: int, domain_size: int, config: RouterTopologyConfig, *, seed: int
    ) -> None:
        self.nodes = nodes
        self._domain_size = domain_size
        domains = -(-nodes // domain_size)
        rng = Random(f"gridmesh-routers:{seed}")
        cores = config.core_routers
        edges: set[tuple[int, int]] = set()
        for router in range(1, cores):
            edges.add((rng.randrange(router), router))
        chords = min(config.core_extra_links, cores * (cores - 1) // 2 - len(edges))
        while chords > 0:
            a, b = sorted(rng.sample(range(cores), 2))
            if (a, b) not in edges:
                edges.add((a, b))
                chords -= 1
        self._core_of_domain = [rng.randrange(cores) for _ in range(domains)]
        # Link ids: access links 0..nodes-1, uplinks nodes..nodes+domains-1, core after.
        self._core_first = nodes + domains
        self._edge_id = {edge: self._core_first + i for i, edge in enumerate(sorted(edges))}
        neighbours: list[list[int]] = [[] for _ in range(cores)]
        for a, b in sorted(edges):
            neighbours[a].append(b)
            neighbours[b].append(a)
        # _core_next[t][u]: the next router from u towards t (BFS tree rooted at t).
        self._core_next: list[list[int]] = []
        for target in range(cores):
            step = [-1] * cores
            step[target] = target
            queue = deque([target])
            while queue:
                u = queue.popleft()
                for v in neighbours[u]:
                    if step[v] < 0:
                        step[v] = u
                        queue.append(v)
            self._core_next.append(step)

    @property
    def link_count(self) -> int:
        return self._core_first + len(self._edge_id)

    def path(self, source: int, destination: int) -> list[int]:
        """Link ids a copy from node index ``source`` to ``destination`` crosses."""
        ds, dt = source // self._domain_size, destination // self._domain_size
        if ds == dt:
            return [source, destination]
        links = [source, self.nodes + ds]
        u, target = self._core_of_domain[ds], self._core_of_domain[dt]
        step = self._core_next[target]
        while u != target:
            v = step[u]
            links.append(self._edge_id[(u, v) if u < v else (v, u)])
            u = v
        links.extend((self.nodes + dt, destination))
        return links

    def stress(self, trace: TrafficTrace, key: tuple[int, int]) -> LinkStress:
        """Link stress of message ``key`` as ``trace`` recorded it."""
        unicasts, multicasts = trace.copies(key)
        crossed: list[int] = []
        for source, destination in unicasts:
            crossed.extend(self.path(source, destination))
        for source, receivers in multicasts:
            crossed.append(source)
            crossed.extend(receivers)
        counts: NDArray[np.int64] = np.bincount(
            np.asarray(crossed, dtype=np.int64), minlength=self.link_count
        )
        used = counts[counts > 0]
        routers = counts[self.nodes :]
        routers_used = routers[routers > 0]
        return LinkStress(
            copies=len(unicasts) + len(multicasts),
            links_used=int(used.size),
            mean=round(float(used.mean()), 6) if used.size else 0.0,
            max=int(used.max()) if used.size else 0,
            router_links_used=int(routers_used.size),
            router_mean=round(float(routers_used.mean()), 6) if routers_used.size else 0.0,
            router_max=int(routers_used.max()) if routers_used.size else 0,
        )
