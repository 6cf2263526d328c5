"""The push-gossip model against the real protocol (simulator) and an exact per-copy reference.

The model (``gridmesh.models.PushModel``) counts copies instead of running
nodes, and lets one relay's copies pick targets with replacement. These tests
show that neither shortcut is visible at 2,000 nodes:

* **model vs simulator** (infect-and-die and infect-forever, whole and
  fractional fanouts, loss, crashed nodes, a hop limit): the delivery ratios
  come from the same distribution (two-sample Kolmogorov-Smirnov, p > 0.001),
  the share of broadcasts that reach every live node agrees within 4 standard
  errors, and so do messages, duplicates, rounds and the reached-so-far
  curve, round by round;
* **reference vs both**: a pure-Python broadcast that sends every copy to
  distinct targets exactly as the rules say, written from the rules rather
  than from either implementation.

Seeds are fixed; a failure names them.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

import pytest
from scipy.stats import ks_2samp

from gridmesh.models import BroadcastRun, PushModel, crashed_count, run_broadcasts
from gridmesh.models._crossval import simulated_broadcasts
from gridmesh.protocols.dissemination import copies_for

NODES = 2_000
MODEL_RUNS = 2_000
P_VALUE_MIN = 0.001
SE_MAX = 4.0


def reference_broadcast(model: PushModel, rng: random.Random) -> BroadcastRun:
    """One broadcast, copy by copy, with the protocol's rules (node 0 is the origin)."""
    nodes = model.nodes
    down = set(rng.sample(range(1, nodes), crashed_count(nodes, model.crashed)))
    reached = {0}
    curve = [1]
    messages = duplicates = last_new = 0
    relays: list[tuple[int, int]] = [(0, -1)]  # (relay, the neighbour its copy came from)
    for round_index in range(1, model.hops + 1):
        if not relays:
            break
        arrivals: list[tuple[int, int]] = []
        for relay, sender in relays:
            excluded = {relay, sender}
            eligible = nodes - len(excluded - {-1})
            targets = distinct_targets(
                rng, nodes, min(copies_for(model.fanout, rng), eligible), excluded
            )
            messages += len(targets)
            arrivals += [
                (target, relay)
                for target in targets
                if rng.random() >= model.loss and target not in down
            ]
        relays = []
        for target, sender in arrivals:
            if target in reached:
                duplicates += 1
                if model.mode == "forever":
                    relays.append((target, sender))
                continue
            reached.add(target)
            last_new = round_index
            relays.append((target, sender))
        curve.append(len(reached))
        if round_index == model.hops:
            relays = []
    return BroadcastRun(
        nodes - len(down), len(reached), last_new, messages, duplicates, tuple(curve)
    )


def distinct_targets(rng: random.Random, nodes: int, count: int, excluded: set[int]) -> list[int]:
    """``count`` distinct nodes drawn uniformly, none of them ``excluded``."""
    chosen: list[int] = []
    taken = set(excluded)
    while len(chosen) < count:
        target = int(rng.random() * nodes)
        if target not in taken:
            taken.add(target)
            chosen.append(target)
    return chosen


def reference_broadcasts(model: PushModel, runs: int, seed: int) -> list[BroadcastRun]:
    rng = random.Random(f"reference:{seed}")
    return [reference_broadcast(model, rng) for _ in range(runs)]


def assert_same_distribution(
    label: str, measured: Sequence[BroadcastRun], modelled: Sequence[BroadcastRun]
) -> None:
    """KS on delivery ratios; all-reached share, messages, duplicates and curve within 4 SE."""
    ratios = [r.delivery_ratio for r in measured]
    predicted = [r.delivery_ratio for r in modelled]
    ks = ks_2samp(ratios, predicted, method="asymp")
    assert ks.pvalue > P_VALUE_MIN, f"{label}: delivery ratio KS p={ks.pvalue:.2g}"
    assert_close(
        f"{label}: all reached",
        [r.all_reached for r in measured],
        [r.all_reached for r in modelled],
    )
    assert_close(
        f"{label}: messages", [r.messages for r in measured], [r.messages for r in modelled]
    )
    assert_close(
        f"{label}: duplicates", [r.duplicates for r in measured], [r.duplicates for r in modelled]
    )
    assert_close(f"{label}: rounds", [r.rounds for r in measured], [r.rounds for r in modelled])
    longest = max(len(r.curve) for r in [*measured, *modelled])
    for t in range(1, longest):
        assert_close(
            f"{label}: reached by round {t}",
            [r.curve[min(t, len(r.curve) - 1)] for r in measured],
            [r.curve[min(t, len(r.curve) - 1)] for r in modelled],
        )


def assert_close(label: str, measured: Sequence[float], modelled: Sequence[float]) -> None:
    """The two means differ by at most ``SE_MAX`` standard errors of their difference."""
    difference = statistics.fmean(measured) - statistics.fmean(modelled)
    se = math.sqrt(
        statistics.pvariance(measured) / len(measured)
        + statistics.pvariance(modelled) / len(modelled)
    )
    if se == 0.0:
        assert difference == 0.0, f"{label}: {difference} with no spread at all"
        return
    assert abs(difference) <= SE_MAX * se, (
        f"{label}: measured {statistics.fmean(measured):.6g} vs model "
        f"{statistics.fmean(modelled):.6g} ({difference / se:+.1f} SE)"
    )


@pytest.mark.parametrize(
    ("model", "runs"),
    [
        # fanout round(ln 2000 + 1) = 9: about 30% of broadcasts reach every live node
        (PushModel(NODES, 9, 20, loss=0.1, crashed=0.1), 60),
        # hops=3: only the origin's copies and two rounds of relays
        (PushModel(NODES, 6, 3, loss=0.1), 60),
        # a mean fanout, ln 2000 + 1, by randomized rounding
        (PushModel(NODES, 8.6, 20, loss=0.1, crashed=0.1), 60),
        # infect-forever: every copy is relayed while hops remain
        (PushModel(NODES, 4.5, 6, loss=0.1, crashed=0.1, mode="forever"), 100),
        (PushModel(NODES, 2.3, 9, loss=0.05, mode="forever"), 100),
    ],
    ids=["die-loss-crashed", "die-hop-limited", "die-fractional", "forever", "forever-9-hops"],
)
def test_the_model_matches_the_protocol_on_the_simulator(model: PushModel, runs: int) -> None:
    measured = simulated_broadcasts(model, runs, seed=1)
    modelled = run_broadcasts(model, MODEL_RUNS, seed=1)
    assert_same_distribution(f"{model} (simulator seed 1, model seed 1)", measured, modelled)


@pytest.mark.parametrize(
    "model",
    [
        PushModel(NODES, 9, 20, loss=0.1, crashed=0.1),
        PushModel(NODES, 4.5, 6, loss=0.1, crashed=0.1, mode="forever"),
    ],
    ids=["die", "forever"],
)
def test_an_exact_per_copy_reference_agrees_with_both(model: PushModel) -> None:
    # A second, independent reading of the rules: if the simulator and the model
    # shared a misreading, the reference would disagree with both.
    reference = reference_broadcasts(model, 200, seed=2)
    assert_same_distribution(
        f"{model} (reference seed 2, model seed 2)", reference, run_broadcasts(model, 2_000, 2)
    )
    assert_same_distribution(
        f"{model} (simulator seed 2, reference seed 2)",
        simulated_broadcasts(model, 60, seed=2),
        reference,
    )
