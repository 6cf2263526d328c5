"""Flood resistance and peer scoring (gridmesh.security._score)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridmesh.errors import (
    MalformedMessage,
    MessageTooLarge,
    RemoteProtocolError,
    UnexpectedMessage,
    UnsupportedVersion,
)
from gridmesh.security._errors import (
    BadSignature,
    CertificateRevoked,
    DecryptionFailed,
    Replayed,
    Stale,
    Unauthorized,
)
from gridmesh.security._score import (
    EVICTION_SCAN_MAX,
    PeerEvent,
    PeerGuard,
    ScoreConfig,
    TokenBucket,
    Verdict,
    event_for,
)

PEER = 7
DEFAULTS = ScoreConfig()


# --- the token bucket ---------------------------------------------------------------------------


def test_a_bucket_starts_full_and_refuses_beyond_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5.0)
    for _ in range(5):
        bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert sum(bucket.take(1000.0) for _ in range(10)) == 5  # never more than the burst


def test_a_refused_take_takes_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3.0)
    assert not bucket.take(0.0, tokens=4.0)
    assert bucket.take(0.0, tokens=3.0)


def test_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=2.0)
    bucket.take(10.0)
    bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.0)
    assert bucket.take(10.2)  # 0.2 s: two tokens (0.1 s may come to 0.999... of one)


@pytest.mark.parametrize(
    ("rate_per_s", "burst"), [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (1.0, 0.5)]
)
def test_a_bucket_refuses_nonsense_limits(rate_per_s: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s, burst)


# --- what errors count as -----------------------------------------------------------------------

EVENT_TABLE = [
    (BadSignature("x"), PeerEvent.INVALID),
    (DecryptionFailed("x"), PeerEvent.INVALID),
    (CertificateRevoked("x"), PeerEvent.INVALID),
    (MalformedMessage("x"), PeerEvent.INVALID),
    (MessageTooLarge(10, 5), PeerEvent.INVALID),
    (Unauthorized("x"), PeerEvent.UNAUTHORIZED),
    (Replayed("x"), PeerEvent.REPLAYED),
    (Stale("x"), PeerEvent.REPLAYED),
    (UnexpectedMessage("a late result"), None),
    (UnsupportedVersion(9), None),
]


@pytest.mark.parametrize(("error", "event"), EVENT_TABLE)
def test_each_error_counts_as_an_event(error: RemoteProtocolError, event: PeerEvent | None) -> None:
    assert event_for(error) is event


# --- the score and its thresholds ---------------------------------------------------------------

# (events recorded at one instant, the standing after them) with the default weights
STANDING_TABLE = [
    ([], Verdict.OK),
    ([PeerEvent.INVALID] * 5, Verdict.OK),  # -50: an honest relay passing on a few bad ones
    ([PeerEvent.INVALID] * 7, Verdict.OK),  # -98
    ([PeerEvent.INVALID] * 8, Verdict.GRAYLISTED),  # -128
    ([PeerEvent.INVALID] * 14, Verdict.GRAYLISTED),  # -392
    ([PeerEvent.INVALID] * 15, Verdict.DISCONNECT),  # -450
    ([PeerEvent.UNAUTHORIZED] * 10, Verdict.OK),  # -100 is not below -100
    ([PeerEvent.UNAUTHORIZED] * 11, Verdict.GRAYLISTED),
    ([PeerEvent.UNAUTHORIZED] * 21, Verdict.DISCONNECT),
    ([PeerEvent.REPLAYED] * 400, Verdict.OK),  # late copies on slow paths: light
    ([PeerEvent.REPLAYED] * 401, Verdict.GRAYLISTED),
    ([PeerEvent.FIRST_DELIVERY] * 500 + [PeerEvent.INVALID] * 8, Verdict.OK),  # -128 + 50
    ([PeerEvent.FIRST_DELIVERY] * 10_000 + [PeerEvent.INVALID] * 9, Verdict.GRAYLISTED),  # capped
    ([PeerEvent.RATE_EXCESS] * 20_000, Verdict.OK),  # 10 bursts: -100
    ([PeerEvent.RATE_EXCESS] * 20_002, Verdict.GRAYLISTED),
    ([PeerEvent.RATE_EXCESS] * 40_002, Verdict.DISCONNECT),
]


@pytest.mark.parametrize(("events", "standing"), STANDING_TABLE)
def test_standing_after_events(events: list[PeerEvent], standing: Verdict) -> None:
    peers = PeerGuard()
    verdict = Verdict.OK
    for event in events:
        verdict = peers.record(PEER, event, 0.0)
    assert verdict is standing
    assert peers.verdict(PEER, 0.0) is standing


def test_the_score_is_the_weighted_sum_with_squared_penalties() -> None:
    peers = PeerGuard()
    for event, times in (
        (PeerEvent.FIRST_DELIVERY, 30),
        (PeerEvent.INVALID, 3),
        (PeerEvent.UNAUTHORIZED, 2),
        (PeerEvent.REPLAYED, 4),
        (PeerEvent.RATE_EXCESS, 1000),
    ):
        for _ in range(times):
            peers.record(PEER, event, 0.0)
    expected = 0.1 * 30 - 2.0 * 9 - 1.0 * 4 - 0.25 * 4 - 1.0 * 0.5**2
    assert peers.score(PEER, 0.0) == pytest.approx(expected)


def test_a_peer_never_seen_is_ok_and_not_tracked() -> None:
    peers = PeerGuard()
    assert peers.verdict(PEER, 0.0) is Verdict.OK
    assert peers.score(PEER, 0.0) == 0.0
    assert PEER not in peers and len(peers) == 0


# --- decay ---------------------------------------------------------------------------------------


def test_every_term_halves_every_half_life() -> None:
    peers = PeerGuard()
    for _ in range(10):
        peers.record(PEER, PeerEvent.INVALID, 0.0)
    assert peers.score(PEER, 0.0) == pytest.approx(-200.0)
    assert peers.score(PEER, 120.0) == pytest.approx(-100.0)
    assert peers.score(PEER, 240.0) == pytest.approx(-50.0)


def test_a_graylisted_peer_recovers_by_decay_and_is_then_forgotten() -> None:
    peers = PeerGuard()
    for _ in range(10):
        peers.record(PEER, PeerEvent.INVALID, 0.0)
    assert peers.verdict(PEER, 119.0) is Verdict.GRAYLISTED
    assert peers.verdict(PEER, 121.0) is Verdict.OK
    # Counters fall below decay_to_zero after about 2 x 240 s x log2(10 / 0.01).
    assert peers.score(PEER, 10_000.0) == 0.0
    assert not peers._peers[PEER].penalized


def test_a_disconnected_peer_that_reconnects_at_once_is_still_refused() -> None:
    peers = PeerGuard()
    for _ in range(15):
        peers.record(PEER, PeerEvent.INVALID, 0.0)
    assert peers.admit(PEER, 1.0) is Verdict.DISCONNECT  # the record outlives the link
    assert peers.admit(PEER, 60.0) is Verdict.GRAYLISTED


def test_a_clock_stepping_back_changes_no_score() -> None:
    peers = PeerGuard()
    peers.record(PEER, PeerEvent.INVALID, 100.0)
    assert peers.score(PEER, 50.0) == pytest.approx(-2.0)
    assert peers.score(PEER, 100.0) == pytest.approx(-2.0)


events = st.lists(
    st.tuples(st.sampled_from(list(PeerEvent)), st.floats(0.0, 600.0)), min_size=1, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(events, st.lists(st.floats(0.0, 20_000.0), min_size=2, max_size=20))
def test_with_no_events_the_score_moves_monotonically_toward_zero(
    history: list[tuple[PeerEvent, float]], later: list[float]
) -> None:
    peers = PeerGuard()
    history.sort(key=lambda item: item[1])
    for event, when in history:
        peers.record(PEER, event, when)
    last = history[-1][1]
    previous = peers.score(PEER, last)
    for when in sorted(last + offset for offset in later):
        score = peers.score(PEER, when)
        assert abs(score) <= abs(previous) * (1 + 1e-9) + 1e-12, (previous, score)
        assert score * previous >= 0.0, "the score changed sign without an event"
        previous = score
    assert peers.score(PEER, last + 1e6) == 0.0


# --- admission: the rate limit ------------------------------------------------------------------


def test_admit_throttles_beyond_the_burst_and_counts_the_excess() -> None:
    peers = PeerGuard(ScoreConfig(rate_per_s=10.0, burst=20.0))
    verdicts = [peers.admit(PEER, 0.0) for _ in range(25)]
    assert verdicts == [Verdict.OK] * 20 + [Verdict.THROTTLED] * 5
    assert peers.score(PEER, 0.0) == pytest.approx(-((5 / 20) ** 2))
    assert peers.verdict(PEER, 0.0) is Verdict.OK  # throttling is per message
    assert peers.admit(PEER, 0.1) is Verdict.OK  # one token came back


def test_a_graylisted_peer_is_ignored_and_a_flooder_keeps_falling() -> None:
    peers = PeerGuard(ScoreConfig(rate_per_s=10.0, burst=10.0))
    for _ in range(8):
        peers.record(PEER, PeerEvent.INVALID, 0.0)
    assert peers.admit(PEER, 0.0) is Verdict.GRAYLISTED
    verdicts = {peers.admit(PEER, 0.0) for _ in range(1000)}
    assert Verdict.DISCONNECT in verdicts  # its refused messages still count


def test_first_deliveries_of_a_clean_peer_take_the_fast_path() -> None:
    peers = PeerGuard()
    for step in range(1000):
        assert peers.admit(PEER, step * 0.01) is Verdict.OK
        assert peers.record(PEER, PeerEvent.FIRST_DELIVERY, step * 0.01) is Verdict.OK
    assert 0.0 < peers.score(PEER, 10.0) <= 0.1 * 500


# --- a small simulation --------------------------------------------------------------------------


def run(peers: PeerGuard, peer: int, rate_per_s: float, duration_s: float) -> dict[Verdict, float]:
    """Messages from ``peer`` at ``rate_per_s`` for ``duration_s`` of virtual time.

    Returns when each verdict was first given; stops at DISCONNECT.
    """
    first: dict[Verdict, float] = {}
    for step in range(int(rate_per_s * duration_s)):
        now = step / rate_per_s
        verdict = peers.admit(peer, now)
        first.setdefault(verdict, now)
        if verdict is Verdict.DISCONNECT:
            break
        if verdict is Verdict.OK:
            peers.record(peer, PeerEvent.FIRST_DELIVERY, now)
    return first


def test_an_honest_peer_at_its_fair_rate_stays_ok_for_a_minute() -> None:
    peers = PeerGuard()
    assert run(peers, 1, DEFAULTS.rate_per_s, 60.0) == {Verdict.OK: 0.0}
    assert peers.verdict(1, 60.0) is Verdict.OK


def test_a_flooder_at_100x_is_throttled_at_once_and_disconnected_within_a_second() -> None:
    peers = PeerGuard()
    first = run(peers, 2, 100 * DEFAULTS.rate_per_s, 5.0)
    assert first[Verdict.THROTTLED] <= 0.05  # its burst lasts 20 ms
    assert first[Verdict.GRAYLISTED] <= 0.5
    assert first[Verdict.DISCONNECT] <= 1.0
    assert peers.verdict(2, first[Verdict.DISCONNECT]) is Verdict.DISCONNECT


def test_honest_and_flooding_peers_side_by_side() -> None:
    peers = PeerGuard()
    rate = DEFAULTS.rate_per_s
    honest: set[Verdict] = set()
    flooder: dict[Verdict, float] = {}
    for step in range(int(rate * 2)):  # 2 s; the flooder sends 100 for each honest one
        now = step / rate
        honest.add(peers.admit(1, now))
        for burst in range(100):
            verdict = peers.admit(2, now + burst / (100 * rate))
            flooder.setdefault(verdict, now)
    assert honest == {Verdict.OK}
    assert flooder[Verdict.DISCONNECT] <= 1.0


def test_a_peer_at_twice_its_rate_is_disconnected_within_a_minute() -> None:
    peers = PeerGuard()
    first = run(peers, 3, 2 * DEFAULTS.rate_per_s, 120.0)
    assert 1.9 <= first[Verdict.THROTTLED] < 2.1  # when its burst runs out
    assert 30.0 < first[Verdict.DISCONNECT] < 60.0


def test_repeated_invalid_signatures_disconnect_within_seconds() -> None:
    peers = PeerGuard()
    standing = Verdict.OK
    sent = 0
    while standing is not Verdict.DISCONNECT:
        standing = peers.record(4, PeerEvent.INVALID, sent * 0.1)  # ten a second
        sent += 1
    assert sent == 15 and (sent - 1) * 0.1 < 2.0


def test_a_few_bad_messages_relayed_over_a_minute_leave_a_peer_ok() -> None:
    peers = PeerGuard()
    for step in range(6000):  # 100 messages a second, one in 1,000 bad
        now = step / 100
        assert peers.admit(5, now) is Verdict.OK
        event = PeerEvent.INVALID if step % 1000 == 999 else PeerEvent.FIRST_DELIVERY
        assert peers.record(5, event, now) is Verdict.OK


# --- the bounded table ----------------------------------------------------------------------------


def test_the_table_evicts_the_least_recently_seen_clean_peer() -> None:
    peers = PeerGuard(ScoreConfig(peers_max=3))
    for peer in (1, 2, 3):
        peers.admit(peer, 0.0)
    peers.admit(1, 1.0)  # 2 is now the least recently seen
    peers.admit(4, 2.0)
    assert 2 not in peers and {1, 3, 4} == set(peers._peers)
    assert (peers.peers_evicted, peers.peers_evicted_penalized) == (1, 0)


def test_penalized_peers_are_kept_while_a_clean_one_can_go() -> None:
    peers = PeerGuard(ScoreConfig(peers_max=3))
    for _ in range(5):
        peers.record(1, PeerEvent.INVALID, 0.0)
    peers.admit(2, 1.0)
    peers.admit(3, 2.0)
    peers.admit(4, 3.0)  # 1 is the least recently seen, but penalized
    assert 1 in peers and 2 not in peers
    assert peers.score(1, 3.0) < 0.0


def test_when_all_are_penalized_the_mildest_goes() -> None:
    peers = PeerGuard(ScoreConfig(peers_max=3))
    for peer, invalid in ((1, 6), (2, 2), (3, 4)):
        for _ in range(invalid):
            peers.record(peer, PeerEvent.INVALID, 0.0)
    peers.admit(4, 1.0)
    assert set(peers._peers) == {1, 3, 4}
    assert (peers.peers_evicted, peers.peers_evicted_penalized) == (1, 1)


def test_the_table_never_exceeds_peers_max() -> None:
    peers = PeerGuard(ScoreConfig(peers_max=EVICTION_SCAN_MAX * 2))
    for peer in range(1000):
        if peer % 3 == 0:
            peers.record(peer, PeerEvent.INVALID, peer * 0.01)
        else:
            peers.admit(peer, peer * 0.01)
        assert len(peers) <= EVICTION_SCAN_MAX * 2
    assert peers.peers_evicted == 1000 - len(peers)


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        {"graylist_threshold": -500.0, "disconnect_threshold": -400.0},
        {"graylist_threshold": 0.0},
        {"invalid_weight": 1.0},
        {"first_delivery_weight": -1.0},
        {"rate_per_s": 0.0},
        {"burst": 0.5},
        {"peers_max": 0},
        {"score_half_life_s": 0.0},
    ],
)
def test_nonsense_settings_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ScoreConfig(**limits)  # type: ignore[arg-type]
