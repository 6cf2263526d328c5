"""Measuring an overlay: the graph the nodes' views form, at one instant.

A snapshot maps each live node to the ids in its view (``neighbors()``). The
directed graph has an edge u -> v for every v in u's view; metrics that treat
the overlay as a network of links (clustering, connectivity) use its
undirected version. Links to nodes that are down are *dead links*: counted
separately, and left out of the graph metrics, because a message sent along
them is lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components

from gridmesh.sim._engine import Simulator

__all__ = [
    "OverlaySnapshot",
    "UniformityTest",
    "snapshot",
    "uniformity_test",
]


@dataclass(frozen=True, slots=True)
class UniformityTest:
    """Pearson's chi-square test that peer samples hit every node equally often."""

    samples: int
    bins: int
    statistic: float
    p_value: float

    def rejects(self, level: float) -> bool:
        """True if uniformity is rejected at significance ``level`` (e.g. 0.01)."""
        return self.p_value < level


def uniformity_test(sampled_ids: Iterable[int], population: Sequence[int]) -> UniformityTest:
    """Test that ``sampled_ids`` are uniform over ``population`` (ids outside it are errors)."""
    index = {node_id: i for i, node_id in enumerate(population)}
    counts = np.zeros(len(population), dtype=np.int64)
    total = 0
    for node_id in sampled_ids:
        counts[index[node_id]] += 1
        total += 1
    if total == 0 or len(population) < 2:
        raise ValueError("a uniformity test needs samples and at least two nodes")
    result = stats.chisquare(counts)
    return UniformityTest(total, len(population), float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class OverlaySnapshot:
    """The views of the live nodes at one instant."""

    views: Mapping[int, Sequence[int]]

    @property
    def live(self) -> list[int]:
        return sorted(self.views)

    def dead_links(self) -> int:
        """View entries that point at nodes that are down."""
        live = self.views
        return sum(1 for targets in live.values() for t in targets if t not in live)

    def in_degrees(self) -> list[int]:
        """For each live node (sorted by id): how many live views list it."""
        degree = dict.fromkeys(self.views, 0)
        for targets in self.views.values():
            for target in targets:
                if target in degree:
                    degree[target] += 1
        return [degree[node_id] for node_id in self.live]

    def in_degree_std(self) -> float:
        return float(np.std(self.in_degrees()))

    def _undirected(self) -> tuple[sparse.csr_matrix, list[int]]:
        ids = self.live
        position = {node_id: i for i, node_id in enumerate(ids)}
        rows, cols = [], []
        for source, targets in self.views.items():
            for target in targets:
                if target in position and target != source:
                    rows.append(position[source])
                    cols.append(position[target])
        n = len(ids)
        ones = np.ones(len(rows), dtype=np.float64)
        directed = sparse.csr_matrix((ones, (rows, cols)), shape=(n, n))
        undirected = sparse.csr_matrix(directed + directed.T)
        undirected.data[:] = 1.0  # u -> v and v -> u make one undirected link
        return undirected, ids

    def clustering_coefficient(self) -> float:
        """Mean local clustering coefficient of the undirected overlay (Watts-Strogatz).

        Nodes with fewer than two neighbours count as 0, as networkx does.
        """
        graph, ids = self._undirected()
        if not ids:
            return 0.0
        triangles = np.asarray((graph @ graph).multiply(graph).sum(axis=1)).ravel() / 2.0
        degree = np.asarray(graph.sum(axis=1)).ravel()
        possible = degree * (degree - 1) / 2.0
        local = np.divide(triangles, possible, out=np.zeros_like(triangles), where=possible > 0)
        return float(local.mean())

    def component_sizes(self) -> list[int]:
        """Sizes of the connected components of the undirected live overlay, largest first."""
        graph, ids = self._undirected()
        if not ids:
            return []
        _, labels = connected_components(graph, directed=False)
        return sorted(np.bincount(labels).tolist(), reverse=True)

    def components(self) -> list[list[int]]:
        """The connected components' node ids (each sorted), largest first."""
        graph, ids = self._undirected()
        if not ids:
            return []
        count, labels = connected_components(graph, directed=False)
        members: list[list[int]] = [[] for _ in range(count)]
        for node_id, label in zip(ids, labels.tolist(), strict=True):
            members[label].append(node_id)
        return sorted(members, key=lambda m: (-len(m), m[0]))

    def largest_component_share(self) -> float:
        """The share of live nodes in the largest connected component."""
        sizes = self.component_sizes()
        return sizes[0] / len(self.views) if sizes else math.nan


def snapshot(sim: Simulator) -> OverlaySnapshot:
    """The views of every node that is up."""
    views: dict[int, list[int]] = {}
    for node_id in range(1, sim.node_count + 1):
        node = sim.node(node_id)
        if node is not None:
            views[node_id] = [peer.node_id for peer in node.membership.neighbors()]
    return OverlaySnapshot(views)
