"""Push-sum: continuous decentralized estimates of a sum, a mean or the network size.

Theory of operation
-------------------
Push-sum (Kempe, Dobra, Gehrke, "Gossip-based computation of aggregate
information", FOCS 2003, section 3) gives every node an estimate of an
aggregate over all nodes without a tree. Each node holds a pair ``(s, w)``,
its *mass*; every round it keeps half and gives half to one random peer; its
estimate is ``s / w``. Because mass only moves, ``sum(s)`` and ``sum(w)`` over
all nodes never change, and the random transfers mix every node's share
until each ``s_i / w_i`` is ``sum(s) / sum(w)``. The starting mass picks the
aggregate:

=========  ===================================  ===================================
function   ``s`` at a node                      ``w``
=========  ===================================  ===================================
mean       its reading (0 with none)            1 (0 with no reading)
sum        its reading (0 with none)            1 at the initiator, 0 elsewhere
size       1                                    1 at the initiator, 0 elsewhere
=========  ===================================  ===================================

An **estimate** is named by ``(initiator, estimate_id)`` and runs in
**epochs**. The initiator starts epoch 1 with ``start``; a node joins an
epoch, with its starting mass read at that moment, when the first message of
that epoch reaches it, then runs ``rounds`` rounds of its own: the first at
once, splitting its mass evenly among itself and ``join_fanout + 1`` peers,
so that an epoch, and the initiator's weight, reach every node within
milliseconds like infect-and-die gossip instead of trickling in one contact
per node and round (with one push per join, the last of 10^4 nodes joined
after 14 rounds, and a sum needed 25 rounds for 1%); the rest every
``round_s``, at a random phase drawn from ``host.rng`` so that nodes do not
push in lockstep. Only the initiator starts
a new epoch (``restart``, or by itself after its rounds when the estimate is
``continuous``): every node that hears of it drops its old state, keeps the
old value as ``previous`` and joins afresh, so readings that changed and nodes
that left are accounted for.
A message of an older epoch is **stale**: counted, dropped.

**Loss.** In Kempe's push-sum a lost message destroys the mass it carried,
and every estimate drifts for good (variant ``"push"``, kept to compare and
for lossless links). The default variant ``"flow"`` keeps mass exact under
loss, duplication and reordering, after push-flow (Gansterer, Niederbrucker,
Straková, Schulze Grotthoff, "Scalable and fault tolerant orthogonalization
based on randomized distributed data aggregation", 2013) and flow updating
(Jesus, Baquero, Almeida, "Fault-tolerant aggregation by flow updating",
DAIS 2009): a node never sends an amount, it sends the **cumulative** mass it
has ever given that peer, with a sequence number. Per link each side keeps
what it gave (``sent``, ``sent_seq``) and what it absorbed (``received``,
``received_seq``); a message with a higher sequence number adds
``cumulative - received`` and raises ``received``, anything else adds
nothing. So a message carries every earlier transfer on its link: a lost one
is made good by the next, a duplicate or a late one is harmless. Flow
updating corrects a loss by talking to the same neighbours every round; a
random peer, as push-sum needs, may never be picked again, so here the
receiver **replies**, and the requester sends its cumulative again once per
round until a reply acknowledges it (at most ``retries_max`` times). The reply
is not wasted: it carries half of the receiver's mass back (a push-pull
exchange), half of what the receiver held *before* it took the request in,
so both ends hold the pair's average afterwards, the exchange of Jelasity,
Montresor and Babaoglu ("Gossip-based aggregation in large dynamic
networks", ACM TOCS 2005), which cuts the variance the most. Halving after
taking the request in left the requester three quarters of its own mass and
half of the other's; at 10^4 nodes the worst node's sum then needed 22
rounds to come within 1% and 26 within 0.1%; with the averaging exchange, 13
and 16. A reply is never acknowledged itself: a lost reply leaves the
request unacknowledged, and the request's next copy fetches the replier's
cumulative again. Mass in flight on a link is
``sent - received`` of its sender; it is back in the sum as soon as one
message gets through.

**Leaving.** A node that crashes or leaves takes its mass with it, and the
mass in flight to it. Once the mass is mixed, a departure removes ``s`` and
``w`` in proportion, so the estimates barely move: the departed are still
counted (``size`` stays the old count, ``sum`` the old sum). A departure
before mixing skews them instead, and if the initiator's weight leaves
before it spread, ``sum`` and ``size`` have none left (``None``). A requester gives up on a silent
peer after ``retries_max`` copies (counted ``abandoned``) *without* taking
the mass back: the peer may have absorbed it and only the reply got lost, and
double mass is worse than lost mass. The remedy is a new epoch: continuous
estimates restart every ``rounds`` rounds by themselves.

State of one estimate at one node, and what changes it (anything else is
refused with ``MalformedMessage``):

===============  ==============================================  ========================
state            input                                           effect
===============  ==============================================  ========================
unknown          PUSHSUM of an estimate not ended here           join with the starting
                                                                 mass, then as *running*
unknown          PUSHSUM when ``estimates_max`` run              refused (``overloaded``)
running epoch e  PUSHSUM of epoch > e                            drop state, join anew
running epoch e  PUSHSUM of epoch < e, or of an ended estimate   ``stale``, dropped
running          request with a new sequence number              give half back in the
                                                                 reply, then absorb
running          request already absorbed (a copy)               reply with the same
                                                                 cumulative
running          reply                                           absorb if new; an ack
                                                                 settles the request
running          round timer                                     send unacknowledged
                                                                 requests again; push
                                                                 half to a random peer
                                                                 while rounds remain
                                                                 (the first, at joining:
                                                                 an equal share to each
                                                                 of join_fanout + 1)
===============  ==============================================  ========================

**Limits.** ``estimates_max`` estimates per node (a finished one, with no
request waiting, makes room for a new one and is remembered as ended, at most
``ended_max``); ``links_max`` links per estimate (a node at the limit pushes
only to peers it has a link with, and refuses new ones); ``rounds`` at most
``PUSHSUM_ROUNDS_MAX``; ``retries_max`` copies per request. Masses on the wire must be
finite, weights non-negative, a link's cumulative weight must never shrink.

Body of ``PUSHSUM`` (see docs/PROTOCOL.md, "PUSHSUM"): ``[initiator,
estimate_id, epoch, function, reading, rounds, variant, seq, s, w, ack,
request]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols._host import Host, Peer, PeerSampling, new_envelope
from gridmesh.protocols.aggregation._tree import READING_BYTES_MAX, ReadingProvider
from gridmesh.wire import UINT64_MAX, Envelope, Kind

__all__ = [
    "PUSHSUM_FUNCTIONS",
    "PUSHSUM_ROUNDS_MAX",
    "Estimate",
    "PushSum",
    "PushSumConfig",
    "ReadingLookup",
]

#: What an estimate may compute.
PUSHSUM_FUNCTIONS = ("mean", "sum", "size")
#: The most rounds one epoch may run at one node.
PUSHSUM_ROUNDS_MAX = 10_000
_VARIANTS = ("flow", "push")
_SEQ_MAX = 2**63 - 1

#: How the protocol finds the application's provider of a reading (``None``: none).
ReadingLookup = Callable[[str], ReadingProvider | None]


EstimateKey = tuple[int, int]


class PushSumConfig(BaseModel):
    """Defaults and limits of push-sum; see docs/PROTOCOL.md, section PUSHSUM."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    round_s: float = Field(default=1.0, gt=0.0, le=3600.0, description="one push per round")
    rounds: int = Field(
        default=40, ge=1, le=PUSHSUM_ROUNDS_MAX, description="rounds a node pushes per epoch"
    )
    variant: Literal["flow", "push"] = Field(
        default="flow",
        description="flow: cumulative flows, replies, exact mass under loss; push: Kempe's",
    )
    estimates_max: int = Field(default=16, ge=1, le=4096, description="estimates per node")
    links_max: int = Field(default=256, ge=1, le=65_536, description="peers per estimate")
    retries_max: int = Field(default=8, ge=0, le=1000, description="copies of one request")
    join_fanout: int = Field(
        default=6, ge=0, le=64, description="a joining node shares its mass with 1 + this"
    )
    ended_max: int = Field(default=1024, ge=1, le=1_000_000, description="ended estimates kept")


@dataclass(frozen=True, slots=True)
class Estimate:
    """One node's view of one estimate: ``value = mass / weight`` (``None`` while weight is 0).

    ``rounds``: the rounds this node ran in this epoch; ``finished``: it will push
    no more in this epoch; ``unsettled``: its requests still waiting for a reply;
    ``previous``: its value at the end of the previous epoch.
    """

    estimate_id: int
    initiator: int
    function: str
    reading: str
    epoch: int
    value: float | None
    mass: float
    weight: float
    rounds: int
    finished: bool
    unsettled: int
    previous: float | None


class _Link:
    """The flows between this node and one peer, for one estimate and epoch."""

    __slots__ = (
        "awaiting",
        "peer",
        "received_s",
        "received_seq",
        "received_w",
        "sent_s",
        "sent_seq",
        "sent_w",
        "tries",
    )

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.sent_s = self.sent_w = 0.0  # all this node ever gave the peer
        self.sent_seq = 0
        self.received_s = self.received_w = 0.0  # all it absorbed from the peer
        self.received_seq = 0
        self.awaiting = 0  # the sequence number of our request no reply acknowledged yet
        self.tries = 0  # copies of that request sent again


class _State:
    """One estimate, in one epoch, at one node."""

    __slots__ = (
        "continuous",
        "epoch",
        "function",
        "links",
        "previous",
        "reading",
        "rounds",
        "rounds_max",
        "s",
        "variant",
        "w",
    )

    def __init__(
        self, function: str, reading: str, rounds_max: int, variant: str, epoch: int
    ) -> None:
        self.function = function
        self.reading = reading
        self.rounds_max = rounds_max
        self.variant = variant
        self.epoch = epoch
        self.s = self.w = 0.0
        self.rounds = 0
        self.links: dict[int, _Link] = {}
        self.previous: float | None = None
        self.continuous = False  # the initiator's only

    def value(self) -> float | None:
        return self.s / self.w if self.w > 0.0 else None

    def finished(self) -> bool:
        return self.rounds >= self.rounds_max

    def unsettled(self) -> int:
        return sum(1 for link in self.links.values() if link.awaiting)


class PushSum:
    """One node's push-sum estimates (Kempe et al. 2003; loss-tolerant flows by default)."""

    KINDS: ClassVar[frozenset[Kind]] = frozenset({Kind.PUSHSUM})

    #: The counters ``stats`` reports, each as ``pushsum_<name>``.
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "started",
        "running",
        "joined",
        "pushes",
        "replies",
        "resent",
        "abandoned",
        "stale",
        "overloaded",
        "reading_errors",
    )

    __slots__ = (
        "_config",
        "_ended",
        "_estimates",
        "_host",
        "_peers",
        "_readings",
        "abandoned",
        "joined",
        "overloaded",
        "pushes",
        "reading_errors",
        "replies",
        "resent",
        "stale",
        "started",
    )

    def __init__(
        self,
        host: Host,
        config: PushSumConfig,
        peers: PeerSampling,
        readings: ReadingLookup,
    ) -> None:
        self._host = host
        self._config = config
        self._peers = peers
        self._readings = readings
        self._estimates: dict[EstimateKey, _State] = {}
        self._ended: dict[EstimateKey, int] = {}  # estimate -> the last epoch it ran here
        self.started = 0  # estimates this node initiated
        self.joined = 0  # epochs this node joined on a peer's message
        self.pushes = 0  # transfers this node started (requests, in the flow variant)
        self.replies = 0  # replies sent
        self.resent = 0  # copies of unacknowledged requests
        self.abandoned = 0  # requests given up after retries_max copies
        self.stale = 0  # messages of an older epoch or an ended estimate
        self.overloaded = 0  # estimates refused: estimates_max running
        self.reading_errors = 0  # readings that failed or were not finite numbers

    # -- API -----------------------------------------------------------------

    def start(
        self,
        function: str,
        reading: str = "",
        *,
        now: float,
        rounds: int | None = None,
        continuous: bool = False,
    ) -> int:
        """Start an estimate of ``function`` over ``reading``; returns its id.

        ``rounds`` per epoch default to the configuration's; a ``continuous``
        estimate starts its next epoch by itself after them.
        """
        config = self._config
        rounds = config.rounds if rounds is None else rounds
        if function not in PUSHSUM_FUNCTIONS:
            raise LocalProtocolError(f"push-sum computes {PUSHSUM_FUNCTIONS}, not {function!r}")
        _check_reading(function, reading, LocalProtocolError)
        if type(rounds) is not int or not 1 <= rounds <= PUSHSUM_ROUNDS_MAX:
            raise LocalProtocolError(f"rounds must be in 1..{PUSHSUM_ROUNDS_MAX}, got {rounds}")
        if len(self._estimates) >= config.estimates_max and not self._make_room():
            raise LocalProtocolError(f"{config.estimates_max} estimates are running already")
        key = (self._host.node_id, self._host.new_message_id())
        state = _State(function, reading, rounds, config.variant, 1)
        state.continuous = continuous
        self.started += 1
        self._begin(key, state, now)
        self._first_round(key, state, now)
        return key[1]

    def restart(self, estimate_id: int, *, now: float) -> None:
        """Start the next epoch of an estimate this node initiated."""
        key = (self._host.node_id, estimate_id)
        state = self._estimates.get(key)
        if state is None:
            raise LocalProtocolError(f"this node runs no estimate {estimate_id} of its own")
        self._next_epoch(key, state, now)

    def estimate(self, estimate_id: int) -> Estimate | None:
        """This node's view of estimate ``estimate_id``, or ``None`` if it does not run it."""
        for key, state in self._estimates.items():
            if key[1] == estimate_id:
                return _view(key, state)
        return None

    def estimates(self) -> list[Estimate]:
        """Every estimate this node runs."""
        return [_view(key, state) for key, state in self._estimates.items()]

    def stats(self) -> dict[str, int]:
        return {
            f"pushsum_{name}": len(self._estimates) if name == "running" else getattr(self, name)
            for name in self.COUNTERS
        }

    @classmethod
    def idle_stats(cls) -> dict[str, int]:
        """What ``stats`` says of a node that never took part in an estimate."""
        return {f"pushsum_{name}": 0 for name in cls.COUNTERS}

    # -- input ---------------------------------------------------------------

    def on_message(self, message: Envelope, source: str, now: float) -> None:
        body = parse_pushsum_body(message.body)
        initiator, estimate_id, epoch, function, reading, rounds, variant = body[:7]
        key = (initiator, estimate_id)
        state = self._estimates.get(key)
        if state is not None and epoch == state.epoch:
            if (function, reading, rounds, variant) != (
                state.function,
                state.reading,
                state.rounds_max,
                state.variant,
            ):
                raise MalformedMessage("the estimate's definition changed mid-epoch", field="body")
            self._on_flow(key, state, message, body, source=source, now=now)
            return
        if state is not None and epoch < state.epoch:
            self.stale += 1
            return
        if initiator == self._host.node_id or self._ended.get(key, 0) >= epoch:
            self.stale += 1  # our own estimate we no longer run, or one that ended here
            return
        full = state is None and len(self._estimates) >= self._config.estimates_max
        if full and not self._make_room():
            self.overloaded += 1
            raise MalformedMessage(
                f"{self._config.estimates_max} estimates run here already", field="body"
            )
        joining = _State(function, reading, rounds, variant, epoch)
        if state is not None:
            joining.previous = state.value()
        self.joined += 1
        self._begin(key, joining, now)
        try:
            self._on_flow(key, joining, message, body, source=source, now=now)
        finally:  # a refused message must not keep a node it made join from its rounds
            self._first_round(key, joining, now)

    def _on_flow(
        self,
        key: EstimateKey,
        state: _State,
        message: Envelope,
        body: tuple[int, int, int, str, str, int, str, int, float, float, int, bool],
        *,
        source: str,
        now: float,
    ) -> None:
        """Absorb what a message carries, settle our request, answer a request."""
        variant = body[6]
        seq, flow_s, flow_w, ack, request = body[7:]
        if variant == "push":
            if seq or ack or request:
                raise MalformedMessage("a push-variant message has seq = ack = request = 0")
            _absorb(state, flow_s, flow_w)
            return
        sender = message.sender
        link = state.links.get(sender)
        if link is None:
            if len(state.links) >= self._config.links_max:
                raise MalformedMessage("links_max peers already", field="sender")
            if sender == self._host.node_id or not 0 < sender <= UINT64_MAX:
                raise MalformedMessage("a flow from no peer", field="sender")
            link = _Link(Peer(sender, source))
            state.links[sender] = link
        if ack > link.sent_seq:
            raise MalformedMessage("an acknowledgement of a flow never sent", field="body")
        fresh = seq > link.received_seq
        if fresh:
            if flow_w < link.received_w:
                raise MalformedMessage("a cumulative weight shrank", field="body")
            delta_s, delta_w = flow_s - link.received_s, flow_w - link.received_w
            _absorbed(state, delta_s, delta_w)  # refuse bad mass before anything moves
            if request:  # a new request: give half back (the pull of push-pull) ...
                _transfer(state, link)  # ... of the mass we had: both end with the average
            _absorb(state, delta_s, delta_w)
            link.received_s, link.received_w, link.received_seq = flow_s, flow_w, seq
        if link.awaiting and ack >= link.awaiting:
            link.awaiting = 0
            link.tries = 0
        if request:
            self.replies += 1
            self._send(key, state, link, request=False, now=now)

    # -- the steps -----------------------------------------------------------

    def _begin(self, key: EstimateKey, state: _State, now: float) -> None:
        """Take this node's starting mass for this epoch."""
        state.s, state.w = self._starting_mass(key, state, now)
        self._estimates[key] = state

    def _first_round(self, key: EstimateKey, state: _State, now: float) -> None:
        """Split the mass evenly among this node and ``join_fanout + 1`` peers at once.

        So an epoch, and the initiator's weight, spread at the network's speed
        like infect-and-die gossip, not one contact per node and round; the
        next round comes at a random phase.
        """
        config = self._config
        links = state.links
        state.rounds += 1
        peers = []
        room = config.links_max - len(links) if state.variant == "flow" else config.join_fanout + 1
        for peer in self._peers.sample(config.join_fanout + 1):
            if peer.node_id in links:
                peers.append(peer)
            elif peer.node_id and room > 0:
                peers.append(peer)
                room -= 1
        share = 1.0 / (len(peers) + 1)  # 1/8 by default: exact in binary
        part_s, part_w = state.s * share, state.w * share
        for peer in peers:
            state.s -= part_s
            state.w -= part_w
            self.pushes += 1
            if state.variant == "push":
                self._host.send([peer], self._push_message(key, state, part_s, part_w, now))
                continue
            link = links.get(peer.node_id)
            if link is None:
                link = links[peer.node_id] = _Link(peer)
            link.sent_s += part_s
            link.sent_w += part_w
            link.sent_seq += 1
            link.awaiting = link.sent_seq
            link.tries = 0
            self._send(key, state, link, request=True, now=now)
        phase = self._host.rng.random() * config.round_s
        self._host.call_at(now + phase, partial(self._on_round, key, state))

    def _starting_mass(self, key: EstimateKey, state: _State, now: float) -> tuple[float, float]:
        initiator = float(key[0] == self._host.node_id)
        if state.function == "size":
            return 1.0, initiator
        value = self._read(state.reading, now)
        if state.function == "mean":
            return (0.0, 0.0) if value is None else (value, 1.0)
        return 0.0 if value is None else value, initiator

    def _read(self, reading: str, now: float) -> float | None:
        provider: ReadingProvider | None = self._readings(reading)
        if provider is None:
            return None
        try:
            value = provider(now)
        except Exception:  # the application's reading failed: this node adds nothing
            self.reading_errors += 1
            return None
        if value is None:
            return None
        if type(value) not in (int, float):
            self.reading_errors += 1
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.reading_errors += 1
            return None
        return number

    def _on_round(self, key: EstimateKey, state: _State, now: float) -> None:
        if self._estimates.get(key) is not state:  # a newer epoch replaced it, or it ended
            return
        config = self._config
        for link in state.links.values():  # requests with no reply: their cumulative again
            if not link.awaiting:
                continue
            if link.tries >= config.retries_max:
                link.awaiting = link.tries = 0
                self.abandoned += 1
                continue
            link.tries += 1
            self.resent += 1
            self._send(key, state, link, request=True, now=now)
        if not state.finished():
            state.rounds += 1
            self._push(key, state, now)
        elif key[0] == self._host.node_id and state.continuous:
            self._next_epoch(key, state, now)
            return
        if not state.finished() or state.unsettled():
            self._host.call_at(now + config.round_s, partial(self._on_round, key, state))

    def _push(self, key: EstimateKey, state: _State, now: float) -> None:
        """Give half of this node's mass to one random peer."""
        config = self._config
        links = state.links
        peer: Peer | None = None
        if len(links) < config.links_max:
            found = [p for p in self._peers.sample(1) if p.node_id]
            peer = found[0] if found else None
        if peer is None or (peer.node_id not in links and len(links) >= config.links_max):
            if not links:
                return
            peer = self._host.rng.sample(list(links.values()), 1)[0].peer
        self.pushes += 1
        if state.variant == "push":
            half_s, half_w = state.s / 2, state.w / 2
            state.s -= half_s
            state.w -= half_w
            self._host.send([peer], self._push_message(key, state, half_s, half_w, now))
            return
        link = links.get(peer.node_id)
        if link is None:
            link = links[peer.node_id] = _Link(peer)
        _transfer(state, link)
        link.awaiting = link.sent_seq
        link.tries = 0
        self._send(key, state, link, request=True, now=now)

    def _push_message(
        self, key: EstimateKey, state: _State, s: float, w: float, now: float
    ) -> Envelope:
        body = [*key, state.epoch, state.function, state.reading, state.rounds_max, state.variant]
        body += [0, s, w, 0, False]
        return new_envelope(self._host, Kind.PUSHSUM, body, now)

    def _send(
        self, key: EstimateKey, state: _State, link: _Link, *, request: bool, now: float
    ) -> None:
        body = [*key, state.epoch, state.function, state.reading, state.rounds_max, state.variant]
        body += [link.sent_seq, link.sent_s, link.sent_w, link.received_seq, request]
        self._host.send([link.peer], new_envelope(self._host, Kind.PUSHSUM, body, now))

    def _next_epoch(self, key: EstimateKey, state: _State, now: float) -> None:
        fresh = _State(state.function, state.reading, state.rounds_max, state.variant, 0)
        fresh.epoch = state.epoch + 1
        fresh.continuous = state.continuous
        fresh.previous = state.value()
        self._begin(key, fresh, now)
        self._first_round(key, fresh, now)

    def _make_room(self) -> bool:
        """Forget the first estimate that is finished with nothing in flight."""
        for key, state in self._estimates.items():
            if state.finished() and not state.unsettled() and not state.continuous:
                del self._estimates[key]
                ended = self._ended
                ended[key] = state.epoch
                if len(ended) > self._config.ended_max:
                    del ended[next(iter(ended))]
                return True
        return False


def _transfer(state: _State, link: _Link) -> None:
    """Move half of this node's mass onto ``link``'s cumulative flow (halving is exact)."""
    half_s, half_w = state.s / 2, state.w / 2
    state.s -= half_s
    state.w -= half_w
    link.sent_s += half_s
    link.sent_w += half_w
    link.sent_seq += 1


def _absorb(state: _State, delta_s: float, delta_w: float) -> None:
    state.s, state.w = _absorbed(state, delta_s, delta_w)


def _absorbed(state: _State, delta_s: float, delta_w: float) -> tuple[float, float]:
    """The mass after taking in a delta; ``MalformedMessage`` if it cannot be taken."""
    s, w = state.s + delta_s, state.w + delta_w
    if not (math.isfinite(s) and math.isfinite(w)) or delta_w < 0:
        raise MalformedMessage("the mass would not be finite and non-negative", field="body")
    return s, w


def _view(key: EstimateKey, state: _State) -> Estimate:
    return Estimate(
        estimate_id=key[1],
        initiator=key[0],
        function=state.function,
        reading=state.reading,
        epoch=state.epoch,
        value=state.value(),
        mass=state.s,
        weight=state.w,
        rounds=state.rounds,
        finished=state.finished(),
        unsettled=state.unsettled(),
        previous=state.previous,
    )


# -- bodies ------------------------------------------------------------------------------


def _check_reading(function: str, reading: object, error: type[Exception]) -> None:
    if type(reading) is not str or len(reading.encode()) > READING_BYTES_MAX:
        raise error(f"a reading name is text of at most {READING_BYTES_MAX} bytes")
    if (reading == "") != (function == "size"):
        raise error("size takes no reading; mean and sum take one")


def _number(value: object, field: str) -> float:
    if type(value) not in (int, float):
        raise MalformedMessage("expected a number", field=field)
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise MalformedMessage("expected a finite number", field=field)
    return number


def _integer(value: object, low: int, high: int, field: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MalformedMessage(f"expected an integer in {low}..{high}", field=field)
    return value


def parse_pushsum_body(
    body: object,
) -> tuple[int, int, int, str, str, int, str, int, float, float, int, bool]:
    """``[initiator, estimate_id, epoch, function, reading, rounds, variant, seq, s, w, ack,
    request]``, checked; ``MalformedMessage`` otherwise."""
    if type(body) is not list or len(body) != 12:
        raise MalformedMessage(
            "PUSHSUM body must be [initiator, estimate_id, epoch, function, reading, rounds, "
            "variant, seq, s, w, ack, request]",
            field="body",
        )
    initiator = _integer(body[0], 1, UINT64_MAX, "initiator")
    estimate_id = _integer(body[1], 0, UINT64_MAX, "estimate_id")
    epoch = _integer(body[2], 1, _SEQ_MAX, "epoch")
    function, reading = body[3], body[4]
    if function not in PUSHSUM_FUNCTIONS or type(function) is not str:
        raise MalformedMessage(f"function must be one of {PUSHSUM_FUNCTIONS}", field="function")
    _check_reading(function, reading, MalformedMessage)
    assert isinstance(reading, str)
    rounds = _integer(body[5], 1, PUSHSUM_ROUNDS_MAX, "rounds")
    variant = body[6]
    if variant not in _VARIANTS or type(variant) is not str:
        raise MalformedMessage(f"variant must be one of {_VARIANTS}", field="variant")
    seq = _integer(body[7], 0, _SEQ_MAX, "seq")
    flow_s = _number(body[8], "s")
    flow_w = _number(body[9], "w")
    if flow_w < 0:
        raise MalformedMessage("a weight is never negative", field="w")
    ack = _integer(body[10], 0, _SEQ_MAX, "ack")
    request = body[11]
    if type(request) is not bool:
        raise MalformedMessage("request must be a boolean", field="request")
    if variant == "flow" and seq == 0:
        raise MalformedMessage("a flow carries a sequence number from 1", field="seq")
    return (
        initiator,
        estimate_id,
        epoch,
        function,
        reading,
        rounds,
        variant,
        seq,
        flow_s,
        flow_w,
        ack,
        request,
    )
