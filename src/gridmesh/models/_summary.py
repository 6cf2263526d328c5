"""Many modelled broadcasts, summarized: what ``gridmesh model broadcast`` prints."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gridmesh.models._push import BroadcastRun, PushModel

__all__ = ["BroadcastSummary", "run_broadcasts", "run_generator", "summarize"]


def run_generator(seed: int, run: int) -> np.random.Generator:
    """The generator of run ``run`` under ``seed``: PCG64, one independent stream per run."""
    return np.random.Generator(np.random.PCG64([seed, run]))


def run_broadcasts(
    model: PushModel,
    runs: int,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[BroadcastRun]:
    """``runs`` independent broadcasts; run ``i`` draws from ``run_generator(seed, i)``."""
    results = []
    for run in range(runs):
        results.append(model.run(run_generator(seed, run)))
        if progress is not None:
            progress(run + 1)
    return results


@dataclass(frozen=True, slots=True)
class BroadcastSummary:
    """Statistics over runs; ``reached_by_round_mean[t]`` is a share of the live nodes."""

    runs: int
    all_reached_fraction: float
    all_reached_se: float
    delivery_ratio_mean: float
    delivery_ratio_min: float
    delivery_ratio_max: float
    rounds_mean: float
    rounds_max: int
    messages_mean: float
    messages_per_node_mean: float
    duplicates_mean: float
    reached_by_round_mean: tuple[float, ...]


def summarize(model: PushModel, results: list[BroadcastRun]) -> BroadcastSummary:
    """Means, extremes and the standard error of the all-reached share."""
    if not results:
        raise ValueError("no runs to summarize")
    runs = len(results)
    share = sum(r.all_reached for r in results) / runs
    ratios = [r.delivery_ratio for r in results]
    messages = statistics.fmean(r.messages for r in results)
    longest = max(len(r.curve) for r in results)
    live = results[0].live
    curve = tuple(
        statistics.fmean(r.curve[min(t, len(r.curve) - 1)] for r in results) / live
        for t in range(longest)
    )
    return BroadcastSummary(
        runs=runs,
        all_reached_fraction=share,
        all_reached_se=math.sqrt(share * (1.0 - share) / runs),
        delivery_ratio_mean=statistics.fmean(ratios),
        delivery_ratio_min=min(ratios),
        delivery_ratio_max=max(ratios),
        rounds_mean=statistics.fmean(r.rounds for r in results),
        rounds_max=max(r.rounds for r in results),
        messages_mean=messages,
        messages_per_node_mean=messages / model.nodes,
        duplicates_mean=statistics.fmean(r.duplicates for r in results),
        reached_by_round_mean=curve,
    )
