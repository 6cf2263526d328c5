"""Flood resistance and peer scoring: a token bucket and a decaying score per peer.

Theory of operation
-------------------
Signatures stop forgery, ACLs stop the wrong roles, the replay guard stops
copies; none of them stops a certified peer (a compromised meter, a buggy
relay) from sending so much, or so much garbage, that verifying it is the
attack. ``PeerGuard`` keeps, per directly connected peer, two things:

* **A token bucket** (``rate_per_s``, ``burst``): ``admit(peer, now)`` takes
  one token per message before anything costly (decoding, signature
  verification) happens; a message that finds the bucket empty is dropped
  (``Verdict.THROTTLED``) and counted as *rate excess*. A peer at or under
  its fair rate never sees it.
* **A score**, after GossipSub v1.1's peer scoring (libp2p specs,
  ``pubsub/gossipsub/gossipsub-v1.1.md``, section "Peer Scoring"). The node
  ``record``\\s what each of the peer's messages turned out to be, and the
  score is a weighted sum of decaying counters ("The Score Function")::

      score = w_first * first + w_invalid * invalid**2 + w_unauthorized * unauthorized**2
              + w_replayed * replayed + w_excess * (excess / burst)**2

  ``first`` counts valid first deliveries, capped at ``first_deliveries_cap``
  when it is incremented (like P2, "First Message Deliveries"): a bounded
  credit, so a long honest past cannot buy an attack. ``invalid`` counts
  messages that fail validation (bad signature, malformed, undecryptable,
  bad certificate) and enters squared, exactly P4 ("Invalid Messages"): a
  few are forgiven, a stream is not. ``unauthorized`` (ACL refusals) is
  squared too, lighter. ``replayed`` (``Replayed`` and ``Stale``) is linear
  and light: an honest relay forwards late copies when paths are slow.
  ``excess`` counts refused messages and enters in *bursts* (a full burst of
  refused messages is 1), squared, like P7 ("Behavioural Penalty").

**Decay** ("Parameter Decay") is computed lazily from ``now`` whenever a
peer is looked at; nothing runs on a timer. Every *term* halves every
``score_half_life_s``: linear counters decay with that half-life, squared
ones with twice it. So with no events the score is its old value times
``2 ** (-elapsed / score_half_life_s)``: it moves monotonically toward zero
and never changes sign (GossipSub decays each counter by its own factor,
which can swing a score across zero). When every counter is below
``decay_to_zero`` the peer is reset to zero at once (GossipSub's
``DecayToZero``, applied to all counters together to keep the monotony).

**Thresholds** ("Score Thresholds"): at a score below ``graylist_threshold``
the peer is *graylisted*: everything it sends is ignored (``admit`` says
``GRAYLISTED``; its rate excess is still counted, so a flooder keeps falling).
Below ``disconnect_threshold`` the node should drop the link
(``DISCONNECT``); GossipSub leaves this to the application. The record
outlives the link (GossipSub's ``RetainScore``): a peer that reconnects at
once is still graylisted until its score has decayed.

**Default weights and why** (see docs/ACCESS.md for the table):

* An honest peer that relays a few bad messages of others (a certificate it
  did not know revoked yet, a policy stricter than its own) stays OK: 7
  invalid messages give -98, above ``graylist_threshold = -100``, even with
  no credit; 8 graylist it for under a minute; disconnection needs 15
  (-450 < -400).
* A peer sending invalid signatures is disconnected at its 15th: within
  1.5 s at 10 per second, within about 15 s at one per second (the invalid
  counter's half-life is 240 s, so hardly any decays meanwhile).
* A flooder at 100x the fair rate empties its bucket (a burst of 2 s of
  fair traffic) in 20 ms, then 99 of every 100 messages are refused: 49.5
  bursts of excess a second. It is graylisted 0.2 s later (10 bursts, -100)
  and disconnected at 0.4 s (20 bursts, -400). A peer at twice its fair rate
  has half its messages refused, is graylisted after some 20 s and
  disconnected after some 45 s. At 1.1x it loses a tenth of its messages and
  is graylisted after about 5 minutes, but never disconnected: its excess
  levels off at 17 bursts (-300). At its fair rate nothing is ever refused.
* The credit for first deliveries is at most +50 (0.1 x 500): one more
  invalid message, not a licence to flood.

**Bounded peers.** At most ``peers_max`` peers are tracked, ordered by when
each was last seen. To make room the guard looks at the
``EVICTION_SCAN_MAX`` least recently seen and evicts the first whose score is
not negative; if all are penalized, the least penalized of them (a table full
of penalized peers is itself an attack, and forgetting the mildest one costs
least). ``peers_max`` should exceed the number of links a node keeps.

This module does no I/O and keeps no clock: ``now`` comes in.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import StrEnum
from itertools import islice

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmesh.errors import RemoteProtocolError

__all__ = [
    "EVICTION_SCAN_MAX",
    "PeerEvent",
    "PeerGuard",
    "ScoreConfig",
    "TokenBucket",
    "Verdict",
    "event_for",
]

#: How many of the least recently seen peers an eviction looks at.
EVICTION_SCAN_MAX = 16


class Verdict(StrEnum):
    """What to do with a peer (``verdict``) or with its message (``admit``)."""

    OK = "ok"
    THROTTLED = "throttled"  # admit only: over its rate; drop this message
    GRAYLISTED = "graylisted"  # ignore everything it sends
    DISCONNECT = "disconnect"  # drop the link


class PeerEvent(StrEnum):
    """What one message of a peer turned out to be."""

    FIRST_DELIVERY = "first_delivery"  # valid, and the first copy this node got
    INVALID = "invalid"  # bad signature, malformed, undecryptable, bad certificate
    UNAUTHORIZED = "unauthorized"  # refused by the access policy
    REPLAYED = "replayed"  # Replayed or Stale
    RATE_EXCESS = "rate_excess"  # refused by the token bucket (admit records it)


# RemoteProtocolError.reason -> event; a reason not listed is INVALID.
_EVENT_OF_REASON: dict[str, PeerEvent | None] = {
    "unauthorized": PeerEvent.UNAUTHORIZED,
    "replayed": PeerEvent.REPLAYED,
    "stale": PeerEvent.REPLAYED,
    # A late or repeated reply (a result after its call timed out) is what an
    # honest peer on a slow path sends: not scored.
    "unexpected": None,
    # A wire version this node does not speak: a rolling upgrade, not an attack.
    "version": None,
}


def event_for(error: RemoteProtocolError) -> PeerEvent | None:
    """The event a peer's message that raised ``error`` counts as (None: not scored)."""
    return _EVENT_OF_REASON.get(error.reason, PeerEvent.INVALID)


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved; full at the first take."""

    __slots__ = ("burst", "rate_per_s", "tokens", "updated_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not rate_per_s > 0.0 or rate_per_s == float("inf"):
            raise ValueError("rate_per_s must be a positive, finite number")
        if not burst >= 1.0 or burst == float("inf"):
            raise ValueError("burst must be at least 1 and finite")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.tokens = self.burst
        self.updated_s = float("-inf")

    def take(self, now: float, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if the bucket holds them at ``now``; False (and take none) if not."""
        elapsed = now - self.updated_s
        if elapsed > 0.0:  # a clock that steps back refills nothing
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
            self.updated_s = now
        if self.tokens >= tokens:
            self.tokens -= tokens
            return True
        return False


class ScoreConfig(BaseModel):
    """Rate limits, score weights and thresholds (``[security.score]``); see docs/ACCESS.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_per_s: float = Field(
        default=1000.0, gt=0.0, le=10_000_000.0, description="messages/s a peer may sustain"
    )
    burst: float = Field(
        default=2000.0, ge=1.0, le=100_000_000.0, description="messages a peer may send at once"
    )
    score_half_life_s: float = Field(
        default=120.0, gt=0.0, le=86_400.0, description="every term of the score halves this often"
    )
    first_delivery_weight: float = Field(default=0.1, ge=0.0, le=1000.0)
    first_deliveries_cap: float = Field(default=500.0, ge=0.0, le=1e9)
    invalid_weight: float = Field(default=-2.0, le=0.0, description="x invalid**2")
    unauthorized_weight: float = Field(default=-1.0, le=0.0, description="x unauthorized**2")
    replayed_weight: float = Field(default=-0.25, le=0.0, description="x replayed")
    rate_excess_weight: float = Field(
        default=-1.0, le=0.0, description="x excess**2, excess counted in bursts"
    )
    graylist_threshold: float = Field(default=-100.0, lt=0.0)
    disconnect_threshold: float = Field(default=-400.0, lt=0.0)
    decay_to_zero: float = Field(
        default=0.01, ge=0.0, le=1.0, description="counters all below this reset to zero"
    )
    peers_max: int = Field(default=4096, ge=1, le=10_000_000, description="peers tracked")

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> ScoreConfig:
        if not self.disconnect_threshold <= self.graylist_threshold:
            raise ValueError("disconnect_threshold must not exceed graylist_threshold")
        return self


class _Peer:
    """One peer: its bucket, its counters as of ``updated_s``."""

    __slots__ = (
        "bucket",
        "excess",
        "first",
        "invalid",
        "penalized",
        "replayed",
        "unauthorized",
        "updated_s",
    )

    def __init__(self, config: ScoreConfig) -> None:
        self.bucket = TokenBucket(config.rate_per_s, config.burst)
        self.first = 0.0
        self.invalid = 0.0
        self.unauthorized = 0.0
        self.replayed = 0.0
        self.excess = 0.0  # refused messages (the score counts them in bursts)
        self.updated_s = float("-inf")
        self.penalized = False  # a penalty counter is not zero


class PeerGuard:
    """Per-peer rate limits and scores: ``admit``, ``record``, ``verdict``."""

    __slots__ = ("_peers", "config", "peers_evicted", "peers_evicted_penalized")

    def __init__(self, config: ScoreConfig | None = None) -> None:
        self.config = ScoreConfig() if config is None else config
        self._peers: OrderedDict[int, _Peer] = OrderedDict()
        #: Peers forgotten to make room, and those of them with a negative score.
        self.peers_evicted = 0
        self.peers_evicted_penalized = 0

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def admit(self, peer_id: int, now: float) -> Verdict:
        """May this message of ``peer_id`` be processed? Call before decoding it.

        ``OK``; ``THROTTLED`` (over its rate: drop it, counted as rate excess);
        ``GRAYLISTED`` (ignore it); ``DISCONNECT`` (drop the link).
        """
        peer = self._touch(peer_id)
        if peer.bucket.take(now):
            if not peer.penalized:
                return Verdict.OK
            return self._standing(peer, now)
        self._decay(peer, now)
        peer.excess += 1.0
        peer.penalized = True
        standing = self._standing(peer, now)
        return Verdict.THROTTLED if standing is Verdict.OK else standing

    def record(self, peer_id: int, event: PeerEvent, now: float) -> Verdict:
        """Count what a message of ``peer_id`` turned out to be; returns the peer's standing."""
        peer = self._touch(peer_id)
        self._decay(peer, now)
        config = self.config
        if event is PeerEvent.FIRST_DELIVERY:
            peer.first = min(config.first_deliveries_cap, peer.first + 1.0)
            if not peer.penalized:
                return Verdict.OK
        elif event is PeerEvent.INVALID:
            peer.invalid += 1.0
        elif event is PeerEvent.UNAUTHORIZED:
            peer.unauthorized += 1.0
        elif event is PeerEvent.REPLAYED:
            peer.replayed += 1.0
        else:
            assert event is PeerEvent.RATE_EXCESS, event
            peer.excess += 1.0
        if event is not PeerEvent.FIRST_DELIVERY:
            peer.penalized = True
        return self._standing(peer, now)

    def verdict(self, peer_id: int, now: float) -> Verdict:
        """``OK``, ``GRAYLISTED`` or ``DISCONNECT`` for ``peer_id`` at ``now``."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.penalized:
            return Verdict.OK
        return self._standing(peer, now)

    def score(self, peer_id: int, now: float) -> float:
        """The peer's score at ``now`` (0.0 for a peer not tracked)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return 0.0
        self._decay(peer, now)
        return self._score(peer)

    # -- internals ----------------------------------------------------------------

    def _touch(self, peer_id: int) -> _Peer:
        """The peer's record, created if new, moved to the most recently seen end."""
        peers = self._peers
        peer = peers.get(peer_id)
        if peer is not None:
            peers.move_to_end(peer_id)
            return peer
        if len(peers) >= self.config.peers_max:
            self._evict()
        peer = peers[peer_id] = _Peer(self.config)
        return peer

    def _evict(self) -> None:
        victim: int | None = None
        victim_score = float("-inf")
        for peer_id, peer in islice(self._peers.items(), EVICTION_SCAN_MAX):
            # Scores are compared as of each peer's last update: decay keeps signs,
            # and which of the penalized is mildest matters little.
            score = self._score(peer)
            if score >= 0.0:
                victim, victim_score = peer_id, score
                break
            if score > victim_score:
                victim, victim_score = peer_id, score
        assert victim is not None
        del self._peers[victim]
        self.peers_evicted += 1
        if victim_score < 0.0:
            self.peers_evicted_penalized += 1

    def _decay(self, peer: _Peer, now: float) -> None:
        elapsed = now - peer.updated_s
        if not elapsed > 0.0:  # the same instant, or a clock that stepped back
            return
        peer.updated_s = now
        if peer.first == 0.0 and not peer.penalized:
            return
        linear = 2.0 ** (-elapsed / self.config.score_half_life_s)
        squared = linear**0.5  # its square decays like a linear counter
        peer.first *= linear
        peer.replayed *= linear
        peer.invalid *= squared
        peer.unauthorized *= squared
        peer.excess *= squared
        floor = self.config.decay_to_zero
        if (
            peer.first < floor
            and peer.replayed < floor
            and peer.invalid < floor
            and peer.unauthorized < floor
            and peer.excess < floor
        ):
            peer.first = peer.replayed = peer.invalid = peer.unauthorized = peer.excess = 0.0
            peer.penalized = False

    def _score(self, peer: _Peer) -> float:
        config = self.config
        bursts = peer.excess / config.burst
        return (
            config.first_delivery_weight * peer.first
            + config.invalid_weight * peer.invalid * peer.invalid
            + config.unauthorized_weight * peer.unauthorized * peer.unauthorized
            + config.replayed_weight * peer.replayed
            + config.rate_excess_weight * bursts * bursts
        )

    def _standing(self, peer: _Peer, now: float) -> Verdict:
        self._decay(peer, now)
        score = self._score(peer)
        if score < self.config.disconnect_threshold:
            return Verdict.DISCONNECT
        if score < self.config.graylist_threshold:
            return Verdict.GRAYLISTED
        return Verdict.OK
