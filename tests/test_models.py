"""The push-gossip model: the protocol's rules, edge cases, determinism and the KMG theorem."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from gridmesh.errors import LocalProtocolError
from gridmesh.models import (
    COPIES_MAX,
    CopiesLimitExceeded,
    PushModel,
    crashed_count,
    occupied_bins,
    run_broadcasts,
    run_generator,
    summarize,
)


def runs_of(model: PushModel, runs: int, seed: int = 1) -> list[tuple[int, int, int]]:
    return [(r.reached, r.messages, r.duplicates) for r in run_broadcasts(model, runs, seed)]


# -- occupancy ----------------------------------------------------------------


@pytest.mark.parametrize(("balls", "bins"), [(5, 10), (30, 10), (1_000, 700), (40, 400)])
def test_occupied_bins_has_the_distribution_of_direct_throws(balls: int, bins: int) -> None:
    rng = np.random.default_rng(3)
    counted = [occupied_bins(rng, balls, bins) for _ in range(4_000)]
    thrown = [len(np.unique(rng.integers(0, bins, balls))) for _ in range(4_000)]
    expected = bins * -math.expm1(balls * math.log1p(-1 / bins))
    se = math.sqrt(statistics.pvariance(thrown) / 4_000)
    assert abs(statistics.fmean(counted) - expected) <= 4 * se, "seed 3"
    assert abs(statistics.fmean(thrown) - expected) <= 4 * se, "seed 3"
    assert statistics.pvariance(counted) == pytest.approx(statistics.pvariance(thrown), rel=0.15)


def test_occupied_bins_edge_cases() -> None:
    rng = np.random.default_rng(1)
    assert occupied_bins(rng, 0, 10) == 0
    assert occupied_bins(rng, 10, 0) == 0
    assert occupied_bins(rng, 1, 10**9) == 1
    assert occupied_bins(rng, 10**9, 1) == 1
    assert occupied_bins(rng, 10**18, 100_000) == 100_000  # 10^18 balls cost 10^5 draws


# -- the protocol's rules ------------------------------------------------------


def test_one_hop_is_only_the_origins_copies() -> None:
    for reached, messages, duplicates in runs_of(PushModel(1_000, 5, 1), 200):
        assert messages == 5
        assert 2 <= reached <= 6
        assert duplicates == messages - (reached - 1)


def test_a_fractional_fanout_is_rounded_at_random_with_the_right_mean() -> None:
    sent = [messages for _, messages, _ in runs_of(PushModel(10_000, 4.3, 1), 5_000)]
    assert set(sent) == {4, 5}
    assert statistics.fmean(sent) == pytest.approx(4.3, abs=4 * math.sqrt(0.21 / 5_000))


def test_infect_and_die_relays_once_per_node_reached() -> None:
    # No loss, no crash, whole fanout: every node reached before the last hop sends f copies.
    model = PushModel(50_000, 7, 4)
    for run in run_broadcasts(model, 50, seed=2):
        relayed = run.curve[model.hops - 1]  # reached before the last round, origin included
        assert run.messages == 7 * relayed
        assert run.duplicates == run.messages - (run.reached - 1)


def test_infect_forever_relays_every_copy_duplicates_included() -> None:
    # No loss, no crash: every copy arrives and is relayed while hops remain: 3 + 9 + 27.
    for run in run_broadcasts(PushModel(1_000_000, 3, 3, mode="forever"), 20, seed=4):
        assert run.messages == 3 + 9 + 27
        assert run.duplicates == run.messages - (run.reached - 1)


def test_loss_thins_the_copies_that_arrive() -> None:
    model = PushModel(10_000, 10, 1, loss=0.3)
    reached = [r.reached - 1 for r in run_broadcasts(model, 4_000, seed=5)]
    assert statistics.fmean(reached) == pytest.approx(7.0, abs=0.1)


def test_crashed_nodes_are_never_reached_and_never_relay() -> None:
    model = PushModel(1_000, 12, 30, crashed=0.5)
    assert model.crashed_nodes == crashed_count(1_000, 0.5) == 500
    assert model.live_nodes == 500
    for run in run_broadcasts(model, 100, seed=6):
        assert run.live == 500
        assert run.reached <= 500
        assert run.messages <= 12 * run.reached  # only reached (live) nodes relay


def test_a_message_travels_at_most_hops_rounds() -> None:
    for run in run_broadcasts(PushModel(10**6, 3, 5), 20, seed=7):
        assert len(run.curve) <= 6
        assert run.rounds <= 5
        assert run.curve == tuple(sorted(run.curve))


def test_with_a_generous_fanout_every_node_is_reached() -> None:
    model = PushModel(100_000, math.log(100_000) + 10, 64)
    assert all(run.all_reached for run in run_broadcasts(model, 20, seed=8))


def test_the_smallest_networks() -> None:
    # Two nodes: the origin's one copy reaches the other, which has nobody left to send to.
    run = PushModel(2, 3, 10).run(run_generator(1, 0))
    assert (run.reached, run.messages, run.duplicates, run.rounds) == (2, 1, 0, 1)
    assert run.all_reached and run.delivery_ratio == 1.0
    # The other node down: nobody to reach, which counts as everyone reached.
    lonely = PushModel(2, 3, 10, crashed=0.6).run(run_generator(1, 0))
    assert (lonely.live, lonely.reached, lonely.messages) == (1, 1, 1)
    assert lonely.all_reached and lonely.delivery_ratio == 1.0


def test_the_same_seed_gives_the_same_broadcasts() -> None:
    model = PushModel(100_000, 9.5, 10, loss=0.05, crashed=0.02)
    assert run_broadcasts(model, 5, seed=11) == run_broadcasts(model, 5, seed=11)
    assert run_broadcasts(model, 5, seed=11) != run_broadcasts(model, 5, seed=12)


def test_infect_forever_beyond_the_copies_limit_is_refused() -> None:
    model = PushModel(10**6, 64, 64, mode="forever")
    with pytest.raises(CopiesLimitExceeded) as caught:
        model.run(run_generator(1, 0))
    assert caught.value.copies > COPIES_MAX
    assert caught.value.round_index <= 11  # 64^10 ~ 1.2e18


@pytest.mark.parametrize(
    "options",
    [
        {"nodes": 1},
        {"fanout": 0.0},
        {"fanout": 64.5},
        {"hops": 0},
        {"hops": 65},
        {"loss": 1.0},
        {"loss": -0.1},
        {"crashed": 1.0},
        {"mode": "sometimes"},
    ],
)
def test_parameters_out_of_range_are_refused(options: dict[str, object]) -> None:
    parameters: dict[str, object] = {"nodes": 100, "fanout": 3.0, "hops": 5, **options}
    with pytest.raises(LocalProtocolError):
        PushModel(**parameters)  # type: ignore[arg-type]


def test_a_summary_pads_shorter_curves_with_their_final_value() -> None:
    model = PushModel(1_000, 4, 10)
    runs = run_broadcasts(model, 30, seed=3)
    summary = summarize(model, runs)
    assert len(summary.reached_by_round_mean) == max(len(r.curve) for r in runs)
    assert summary.reached_by_round_mean[-1] == pytest.approx(
        statistics.fmean(r.reached for r in runs) / model.live_nodes
    )
    share = summary.all_reached_fraction
    assert summary.all_reached_se == pytest.approx(math.sqrt(share * (1 - share) / 30))


# -- the theorem ---------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_every_node_is_reached_with_the_kmg_probability(c: int) -> None:
    # Kermarrec, Massoulie, Ganesh 2003: mean fanout ln n + c reaches all n nodes
    # with probability -> exp(-exp(-c)). At n = 2,000 the finite-size terms are
    # far below the tolerance (docs/MODELS.md).
    nodes, runs, seed = 2_000, 1_000, 2026
    model = PushModel(nodes, math.log(nodes) + c, 64)
    measured = summarize(model, run_broadcasts(model, runs, seed)).all_reached_fraction
    expected = math.exp(-math.exp(-c))
    assert model.expected_all_reached() == pytest.approx(expected)
    se = math.sqrt(expected * (1 - expected) / runs)
    assert abs(measured - expected) <= 4 * se, f"c={c}, seed {seed}: {measured} vs {expected}"


def test_the_theory_counts_only_live_nodes_and_surviving_copies() -> None:
    model = PushModel(10_000, 20.0, 64, loss=0.1, crashed=0.1)
    live = model.live_nodes
    assert model.expected_all_reached() == pytest.approx(math.exp(-live * math.exp(-20 * 0.81)))
