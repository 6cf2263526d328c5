"""Replay protection (gridmesh.security._replay): sliding windows, epochs, freshness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridmesh.errors import MalformedMessage, RemoteProtocolError
from gridmesh.security._errors import Replayed, Stale
from gridmesh.security._replay import (
    WINDOW_MAX,
    WINDOW_MIN,
    ReplayConfig,
    ReplayedMessage,
    ReplayGuard,
    StaleMessage,
)

NOW = 1_000.0
ORIGIN = 42


def guard(**limits: int | float) -> ReplayGuard:
    return ReplayGuard(**{"window": 64, **limits})  # type: ignore[arg-type]


def accept(replay: ReplayGuard, seq: int, *, epoch: int = 1, origin: int = ORIGIN) -> None:
    replay.check(origin, epoch, seq, NOW, NOW)


def refusal(replay: ReplayGuard, seq: int, *, epoch: int = 1, origin: int = ORIGIN) -> str:
    with pytest.raises(ReplayedMessage) as caught:
        replay.check(origin, epoch, seq, NOW, NOW)
    return caught.value.why


# --- the window (RFC 4303 3.4.3) ---------------------------------------------------------------

# (sequence numbers accepted first, the one checked, None if accepted or why it is refused)
WINDOW_TABLE = [
    ([], 0, None),  # the first message of an origin
    ([5], 5, "duplicate"),
    ([5], 6, None),  # the next one
    ([5], 1_000_000, None),  # a jump forward (gossip lost the ones between)
    ([10], 3, None),  # an older one, inside the window, unseen (reordered)
    ([10, 3], 3, "duplicate"),
    ([100], 100 - 63, None),  # the oldest the 64-wide window still holds
    ([100], 100 - 64, "behind_window"),
    ([100, 37], 37, "duplicate"),
    ([10, 200], 150, None),  # the window slid to 200: 150 is inside and unseen
    ([10, 200], 10, "behind_window"),
    ([10, 11, 12, 74], 10, "behind_window"),  # 74 - 10 = 64: just outside
    ([10, 11, 12, 74], 11, "duplicate"),  # 74 - 11 = 63: the oldest inside, seen
    ([10, 11, 12, 73], 12, "duplicate"),
    ([1, 3, 5], 2, None),
    ([1, 3, 5], 4, None),
    ([2**64 - 2], 2**64 - 1, None),  # the largest sequence number
]


@pytest.mark.parametrize(("before", "seq", "refused"), WINDOW_TABLE)
def test_the_sliding_window(before: list[int], seq: int, refused: str | None) -> None:
    replay = guard()
    for earlier in before:
        accept(replay, earlier)
    if refused is None:
        accept(replay, seq)
        assert refusal(replay, seq) == "duplicate"  # and never again
    else:
        assert refusal(replay, seq) == refused


def test_a_jump_wider_than_the_window_forgets_everything_below_it() -> None:
    replay = guard()
    for seq in range(64):
        accept(replay, seq)
    accept(replay, 64 + 64 + 5)
    assert refusal(replay, 63) == "behind_window"
    accept(replay, 64 + 64 + 5 - 63)  # inside the new window and unseen


def test_origins_are_independent() -> None:
    replay = guard()
    accept(replay, 7, origin=1)
    accept(replay, 7, origin=2)
    assert refusal(replay, 7, origin=1) == "duplicate"
    assert len(replay) == 2


# --- epochs: a restarting origin -------------------------------------------------------------


def test_a_higher_epoch_resets_the_window() -> None:
    replay = guard()
    for seq in range(1, 200):
        accept(replay, seq, epoch=1)
    accept(replay, 1, epoch=2)  # the origin restarted and counts from 1 again
    accept(replay, 2, epoch=2)
    assert refusal(replay, 2, epoch=2) == "duplicate"
    assert refusal(replay, 500, epoch=1) == "old_epoch"  # even a new number of the old epoch


def test_a_lower_epoch_is_replayed_and_changes_nothing() -> None:
    replay = guard()
    accept(replay, 5, epoch=3)
    assert refusal(replay, 6, epoch=2) == "old_epoch"
    accept(replay, 6, epoch=3)


def test_an_epoch_may_jump() -> None:
    replay = guard()
    accept(replay, 5, epoch=1)
    accept(replay, 0, epoch=1_700_000_000)  # the start time in seconds as the epoch


# --- freshness --------------------------------------------------------------------------------

# (created_s relative to now, None if fresh or why it is stale) with freshness 30 s, skew 5 s
FRESHNESS_TABLE = [
    (0.0, None),
    (-30.0, None),  # exactly freshness_s old: still fresh
    (-30.000001, "too_old"),
    (-3600.0, "too_old"),
    (5.0, None),  # exactly future_skew_s ahead
    (5.000001, "from_future"),
    (1e9, "from_future"),
    (math.nan, "too_old"),
    (-math.inf, "too_old"),
    (math.inf, "from_future"),
]


@pytest.mark.parametrize(("offset_s", "stale"), FRESHNESS_TABLE)
def test_freshness(offset_s: float, stale: str | None) -> None:
    replay = ReplayGuard(freshness_s=30.0, future_skew_s=5.0)
    if stale is None:
        replay.check(ORIGIN, 1, 1, NOW + offset_s, NOW)
        return
    with pytest.raises(StaleMessage) as caught:
        replay.check(ORIGIN, 1, 1, NOW + offset_s, NOW)
    assert caught.value.why == stale
    assert caught.value.field == "created_s"
    assert len(replay) == 0  # a stale message leaves no trace


def test_a_stale_message_does_not_move_the_window() -> None:
    replay = guard()
    accept(replay, 10)
    with pytest.raises(Stale):
        replay.check(ORIGIN, 1, 1_000, NOW - 3600.0, NOW)
    with pytest.raises(Stale):
        replay.check(ORIGIN, 9, 1, NOW - 3600.0, NOW)  # nor the epoch
    accept(replay, 11)
    accept(replay, 9)


def test_integer_times_are_numbers_too() -> None:
    ReplayGuard().check(ORIGIN, 1, 1, 1000, 1000.0)


# --- errors are typed and structured -----------------------------------------------------------


def test_refusals_are_security_errors_with_fields() -> None:
    replay = guard()
    accept(replay, 3, epoch=4)
    with pytest.raises(Replayed) as caught:
        accept(replay, 3, epoch=4)
    error = caught.value
    assert isinstance(error, ReplayedMessage) and isinstance(error, RemoteProtocolError)
    assert (error.origin, error.epoch, error.seq, error.why) == (ORIGIN, 4, 3, "duplicate")
    assert error.reason == "replayed" and error.field == "seq"
    with pytest.raises(Stale) as stale:
        replay.check(ORIGIN, 4, 4, NOW - 31, NOW)
    assert stale.value.reason == "stale"
    assert (stale.value.origin, stale.value.created_s, stale.value.now) == (ORIGIN, NOW - 31, NOW)


@pytest.mark.parametrize(
    ("origin", "epoch", "seq", "created_s"),
    [
        (-1, 1, 1, NOW),
        (1, -1, 1, NOW),
        (1, 1, -1, NOW),
        (1, 1, 2**64, NOW),
        (2**64, 1, 1, NOW),
        (True, 1, 1, NOW),
        (1, 1.0, 1, NOW),
        (1, 1, "1", NOW),
        (1, 1, 1, "1000"),
        (1, 1, 1, None),
    ],
)
def test_malformed_numbers_are_malformed_messages(
    origin: object, epoch: object, seq: object, created_s: object
) -> None:
    replay = guard()
    with pytest.raises(MalformedMessage):
        replay.check(origin, epoch, seq, created_s, NOW)  # type: ignore[arg-type]
    assert len(replay) == 0


# --- bounded origins ---------------------------------------------------------------------------


def test_the_table_holds_at_most_origins_max_and_counts_evictions() -> None:
    replay = guard(origins_max=8)
    for origin in range(1, 101):
        replay.check(origin, 1, 1, NOW, NOW)
        assert len(replay) <= 8
    assert replay.origins_evicted == 100 - len(replay)
    assert replay.origins_evicted_fresh == replay.origins_evicted  # all were active just now


def test_recently_active_origins_survive_eviction() -> None:
    replay = guard(origins_max=8)
    for step in range(100):
        accept(replay, step, origin=1)  # origin 1 stays active
        replay.check(1000 + step, 1, 1, NOW, NOW)  # while strangers come and go
    assert refusal(replay, 99, origin=1) == "duplicate"


def test_an_evicted_origin_can_be_replayed_only_while_fresh_which_is_counted() -> None:
    replay = ReplayGuard(window=64, origins_max=4, freshness_s=30.0, future_skew_s=5.0)
    replay.check(1, 1, 1, 0.0, 0.0)
    for stranger in range(2, 8):  # two generations of 2 push origin 1 out
        replay.check(stranger, 1, 1, 1.0, 1.0)
    assert replay.origins_evicted_fresh >= 1
    replay.check(1, 1, 1, 0.0, 2.0)  # the documented limit: a fresh copy gets in again
    with pytest.raises(Stale):
        replay.check(1, 1, 1, 0.0, 36.0)  # but only within freshness_s


def test_evictions_of_long_silent_origins_are_not_counted_as_fresh() -> None:
    replay = ReplayGuard(window=64, origins_max=4, freshness_s=30.0, future_skew_s=5.0)
    replay.check(1, 1, 1, 0.0, 0.0)
    for stranger in range(2, 8):
        replay.check(stranger, 1, 1, 100.0, 100.0)
    assert replay.origins_evicted >= 1
    assert replay.origins_evicted_fresh == replay.origins_evicted - 1  # all but origin 1


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        {"window": WINDOW_MIN - 1},
        {"window": WINDOW_MAX + 1},
        {"freshness_s": 0.0},
        {"future_skew_s": -1.0},
        {"origins_max": 1},
    ],
)
def test_limits_out_of_range_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ReplayGuard(**limits)  # type: ignore[arg-type]


def test_a_guard_from_its_config() -> None:
    config = ReplayConfig(window=128, freshness_s=10.0, future_skew_s=1.0, origins_max=16)
    assert ReplayGuard.from_config(config).config == config
    assert ReplayGuard().config == ReplayConfig()


# --- properties -------------------------------------------------------------------------------

WINDOW = 64


class ReferenceGuard:
    """The rules, written plainly: per origin an epoch, the highest seq and the seen set."""

    def __init__(self) -> None:
        self.origins: dict[int, tuple[int, int, set[int]]] = {}

    def accepts(self, origin: int, epoch: int, seq: int) -> bool:
        state = self.origins.get(origin)
        if state is None or epoch > state[0]:
            self.origins[origin] = (epoch, seq, {seq})
            return True
        current_epoch, highest, seen = state
        if epoch < current_epoch:
            return False
        if seq > highest:
            self.origins[origin] = (epoch, seq, seen | {seq})
            return True
        if highest - seq >= WINDOW or seq in seen:
            return False
        seen.add(seq)
        return True


messages = st.lists(
    st.tuples(
        st.integers(1, 3),  # origin
        st.integers(0, 2),  # epoch
        st.one_of(st.integers(0, 300), st.integers(2**64 - 200, 2**64 - 1)),  # seq
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_the_guard_follows_the_rules_and_never_accepts_a_message_twice(
    sequence: list[tuple[int, int, int]],
) -> None:
    replay = ReplayGuard(window=WINDOW)
    reference = ReferenceGuard()
    accepted: set[tuple[int, int, int]] = set()
    for origin, epoch, seq in sequence:
        try:
            replay.check(origin, epoch, seq, NOW, NOW)
        except Replayed:
            ok = False
        else:
            ok = True
            assert (origin, epoch, seq) not in accepted, "accepted twice"
            accepted.add((origin, epoch, seq))
        assert ok is reference.accepts(origin, epoch, seq), (origin, epoch, seq)


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(WINDOW)), st.integers(0, 2**40))
def test_every_unseen_number_inside_the_window_is_accepted_in_any_order(
    order: list[int], base: int
) -> None:
    replay = ReplayGuard(window=WINDOW)
    accept(replay, base + WINDOW - 1)
    for offset in order:
        if offset == WINDOW - 1:
            continue
        accept(replay, base + offset)
    for offset in order:
        assert refusal(replay, base + offset) == "duplicate"


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e12, 1e12))
def test_freshness_is_exactly_the_interval(created_s: float, now: float) -> None:
    replay = ReplayGuard(freshness_s=30.0, future_skew_s=5.0)
    fresh = now - 30.0 <= created_s <= now + 5.0
    try:
        replay.check(ORIGIN, 1, 1, created_s, now)
    except Stale:
        assert not fresh
    else:
        assert fresh
