"""A node's links: which peers are proven, what waits for a handshake, and the timers.

Theory of operation
-------------------
``_link`` is one handshake and one link; this module keeps them all for one
node, keyed by the peer's transport address, and decides what a datagram is:

* **to send** ``data`` (an encoded envelope) to a peer: with an established
  link, the link seals it and it leaves at once; otherwise it waits in the
  peer's queue (``pending_max`` datagrams, the oldest dropped first) while this
  node starts a handshake: ``HELLO``, sent again every ``retry_s`` up to
  ``tries_max`` times, after which the queue is dropped and counted;
* **received** bytes are either a sealed frame (a CBOR array of three: its
  link is found by link id and opens it, or the frame is refused) or a
  handshake message (``SEC_HELLO``, ``SEC_REPLY``, ``SEC_FINISH``, plain
  envelopes). Nothing else is accepted from anyone: an uncertified node's
  messages never reach a protocol.

**Both sides may start at once.** A node that gets a ``HELLO`` from a peer it
is itself greeting keeps its own handshake if its node id is the smaller, and
answers the peer's otherwise; so exactly one of the two handshakes completes.
A ``HELLO`` from a peer with an established link starts a new link (the peer
restarted, or lost its state): the old one is replaced once the new one is
proven, never before, so a forged ``HELLO`` cannot break a working link.
A frame naming a link this node does not have (it restarted) is answered,
at most once per ``retry_s`` per address, with a fresh ``HELLO``.

Everything is bounded: ``links_max`` links and handshakes (the least recently
used link goes first), ``pending_max`` queued datagrams per peer. Answering a
HELLO costs a certificate check and a signature, so each address may start at
most ``hello_rate_per_s`` handshakes a second (bursts of ``hello_burst``); more
are refused unread (``Throttled``, counted as ``hellos_throttled``).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gridmesh.security._errors import SecurityError, Throttled, Uncertified
from gridmesh.security._link import Initiator, KeySource, Link, LinkCredentials, Responder
from gridmesh.security._pki import NodeIdentity
from gridmesh.security._score import TokenBucket

__all__ = ["LinkTable", "Outcome"]

_FRAME_HEAD = 0x83  # a CBOR array of three items: a sealed frame


@dataclass(slots=True)
class _Peer:
    """What this node knows about one transport address."""

    link: Link | None = None
    initiator: Initiator | None = None
    responder: Responder | None = None
    pending: deque[bytes] = field(default_factory=deque)
    early: list[bytes] = field(default_factory=list)  # frames that overtook the FINISH
    hello_sent_at: float = float("-inf")
    tries: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a received datagram turned out to be.

    ``plaintext``: an envelope from a proven peer (``peer``), to be decoded;
    ``replies``: handshake messages to send back, as ``(kind, body)`` with
    kind 0 HELLO, 1 REPLY, 2 FINISH; ``flush``: sealed frames now due to the
    peer (what waited for the handshake).
    """

    plaintext: bytes | None = None
    peer: NodeIdentity | None = None
    opened: tuple[bytes, ...] = ()  # plaintexts of frames that waited for the FINISH
    replies: tuple[tuple[int, list[object]], ...] = ()
    flush: tuple[bytes, ...] = ()


HELLO, REPLY, FINISH = 0, 1, 2


class LinkTable:
    """Every link and handshake of one node."""

    def __init__(
        self,
        credentials: LinkCredentials,
        source: KeySource,
        *,
        links_max: int = 4096,
        pending_max: int = 64,
        retry_s: float = 0.5,
        tries_max: int = 6,
        hello_rate_per_s: float = 2.0,
        hello_burst: float = 4.0,
        hellos_total_per_s: float = 200.0,
        hellos_total_burst: float = 400.0,
    ) -> None:
        self.credentials = credentials
        self._source = source
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self._by_link_id: dict[bytes, str] = {}
        self._responding: dict[bytes, str] = {}  # link ids of handshakes we answered
        self._nudged: dict[str, float] = {}
        self.links_max = links_max
        self.pending_max = pending_max
        self.retry_s = retry_s
        self.tries_max = tries_max
        # Answering a HELLO costs a certificate check and a signature: per address, a bucket.
        self.hello_rate_per_s = hello_rate_per_s
        self.hello_burst = hello_burst
        self._hello_buckets: dict[str, TokenBucket] = {}
        # ... and for all addresses together: a flood from many (spoofed) addresses costs
        # at most this many certificate checks and signatures a second (~15% of a core).
        self.hellos_total_per_s = hellos_total_per_s
        self._hellos_total = TokenBucket(hellos_total_per_s, hellos_total_burst)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "links_established",
                "handshakes_failed",
                "pending_dropped",
                "frames_unknown_link",
                "handshake_copies",
                "links_closed",
                "frames_refused",
                "hellos_throttled",
                "hellos_shed",
            ),
            0,
        )

    @property
    def node_id(self) -> int:
        return self.credentials.identity.node_id

    # -- sending ---------------------------------------------------------------

    def send(
        self, address: str, data: bytes, now: float
    ) -> tuple[list[bytes], list[object] | None]:
        """Frames to send to ``address`` now, and a HELLO body to send if a handshake starts."""
        peer = self._peer(address)
        if peer.link is not None:
            return [peer.link.seal(data)], None
        if len(peer.pending) >= self.pending_max:
            peer.pending.popleft()
            self.counters["pending_dropped"] += 1
        peer.pending.append(data)
        if peer.initiator is None and peer.responder is None:
            peer.initiator = Initiator(self.credentials, self._source)
            peer.tries = 1
            peer.hello_sent_at = now
            return [], peer.initiator.hello()
        return [], None

    def due(self, now: float) -> list[tuple[str, list[object]]]:
        """HELLOs to send again (``retry_s`` passed); handshakes out of tries are dropped."""
        again: list[tuple[str, list[object]]] = []
        for address, peer in list(self._peers.items()):
            initiator = peer.initiator
            if initiator is None or now - peer.hello_sent_at < self.retry_s:
                continue
            if peer.tries >= self.tries_max:
                self.counters["handshakes_failed"] += 1
                self.counters["pending_dropped"] += len(peer.pending)
                peer.pending.clear()
                peer.initiator = None
                if peer.link is None:
                    del self._peers[address]
                continue
            peer.tries += 1
            peer.hello_sent_at = now
            again.append((address, initiator.hello()))
        return again

    def waiting(self) -> bool:
        """Whether a handshake this node started is unanswered (``due`` has work)."""
        return any(peer.initiator is not None for peer in self._peers.values())

    # -- receiving ---------------------------------------------------------------

    @staticmethod
    def is_frame(data: bytes) -> bool:
        return bool(data) and data[0] == _FRAME_HEAD

    def open(self, address: str, data: bytes, now: float) -> Outcome:
        """A sealed frame from ``address``: its plaintext, or a typed refusal."""
        link_id = Link.frame_link_id(data)
        known = self._by_link_id.get(link_id)
        if known is None:
            waiting = self._responding.get(link_id)
            if waiting is not None:
                peer = self._peers.get(waiting)
                if peer is not None and peer.responder is not None:
                    if len(peer.early) < self.pending_max:
                        peer.early.append(data)  # opened once the FINISH proves the peer
                    return Outcome()
            self.counters["frames_unknown_link"] += 1
            replies: tuple[tuple[int, list[object]], ...] = ()
            if now - self._nudged.get(address, float("-inf")) >= self.retry_s:
                # It holds a link this node lost (a restart): offer a new one.
                if len(self._nudged) >= self.links_max:
                    self._nudged.clear()
                self._nudged[address] = now
                peer = self._peer(address)
                if peer.initiator is None:
                    peer.initiator = Initiator(self.credentials, self._source)
                    peer.tries = 1
                    peer.hello_sent_at = now
                replies = ((HELLO, peer.initiator.hello()),)
            return Outcome(replies=replies)
        link = self._peers[known].link
        assert link is not None
        plaintext = link.open(data)
        self._peers.move_to_end(known)
        return Outcome(plaintext=plaintext, peer=link.peer)

    def on_handshake(self, address: str, step: int, body: object, now: float) -> Outcome:
        """A HELLO, REPLY or FINISH from ``address``; raises a ``SecurityError`` to refuse."""
        if step == HELLO:
            return self._on_hello(address, body, now)
        peer = self._peers.get(address)
        if step == REPLY:
            if peer is not None and peer.initiator is None and peer.link is not None:
                self.counters["handshake_copies"] += 1  # a copy of a REPLY we used
                return Outcome()
            if peer is None or peer.initiator is None:
                raise Uncertified("a link REPLY to no HELLO of ours", field="kind")
            finish, link = peer.initiator.on_reply(body, now)
            peer.initiator = None
            flush = self._establish(address, peer, link)
            return Outcome(replies=((FINISH, finish),), flush=flush)
        if step == FINISH:
            if peer is not None and peer.responder is None and peer.link is not None:
                self.counters["handshake_copies"] += 1  # a copy of a FINISH we used
                return Outcome()
            if peer is None or peer.responder is None:
                raise Uncertified("a link FINISH to no REPLY of ours", field="kind")
            link = peer.responder.on_finish(body, now)
            self._responding.pop(peer.responder.link_id, None)
            peer.responder = None
            flush = self._establish(address, peer, link)
            opened = []
            for frame in peer.early:  # frames that came before the FINISH
                try:
                    opened.append(link.open(frame))
                except SecurityError:
                    self.counters["frames_refused"] += 1
            peer.early.clear()
            return Outcome(flush=flush, peer=link.peer, opened=tuple(opened))
        raise Uncertified(f"unknown handshake step {step}", field="kind")

    def _on_hello(self, address: str, body: object, now: float) -> Outcome:
        peer = self._peers.get(address)
        if peer is not None and peer.responder is not None and peer.responder.hello == body:
            # A copy (the initiator sent it again): the same answer, or the two
            # sides would end up with different keys.
            self.counters["handshake_copies"] += 1
            return Outcome(replies=((REPLY, peer.responder.reply()),))
        bucket = self._hello_buckets.get(address)
        if bucket is None:
            if len(self._hello_buckets) >= self.links_max:
                self._hello_buckets.clear()  # bounded; a flood from many addresses resets it
            bucket = self._hello_buckets[address] = TokenBucket(
                self.hello_rate_per_s, self.hello_burst
            )
        if not bucket.take(now):  # refused before any certificate check or signature
            self.counters["hellos_throttled"] += 1
            raise Throttled(f"more than {self.hello_rate_per_s} HELLOs/s from {address}")
        if not self._hellos_total.take(now):
            self.counters["hellos_shed"] += 1
            raise Throttled(f"more than {self.hellos_total_per_s} HELLOs/s from all addresses")
        responder = Responder(self.credentials, body, self._source, now)
        peer = self._peer(address)
        if peer.initiator is not None and self.node_id < responder.peer.node_id:
            return Outcome()  # both started: the smaller id's handshake goes on
        peer.initiator = None
        if peer.responder is not None:
            self._responding.pop(peer.responder.link_id, None)
        peer.responder = responder
        peer.early.clear()
        if len(self._responding) >= self.links_max:
            self._responding.clear()
        self._responding[responder.link_id] = address
        return Outcome(replies=((REPLY, responder.reply()),))

    def _establish(self, address: str, peer: _Peer, link: Link) -> tuple[bytes, ...]:
        if peer.link is not None:
            self._by_link_id.pop(peer.link.link_id, None)
        peer.link = link
        self._by_link_id[link.link_id] = address
        self.counters["links_established"] += 1
        frames = tuple(link.seal(data) for data in peer.pending)
        peer.pending.clear()
        return frames

    def _peer(self, address: str) -> _Peer:
        peer = self._peers.get(address)
        if peer is None:
            if len(self._peers) >= self.links_max:
                _, gone = self._peers.popitem(last=False)
                if gone.link is not None:
                    self._by_link_id.pop(gone.link.link_id, None)
            peer = self._peers[address] = _Peer()
        else:
            self._peers.move_to_end(address)
        return peer

    def close(self, node_id: int | None = None, *, serial: int | None = None) -> int:
        """Drop the links to ``node_id`` (or to the certificate ``serial``); how many went."""
        closed = 0
        for address, peer in list(self._peers.items()):
            link = peer.link
            if link is None:
                continue
            if (node_id is not None and link.peer.node_id == node_id) or (
                serial is not None and link.peer.serial == serial
            ):
                self._by_link_id.pop(link.link_id, None)
                del self._peers[address]
                closed += 1
        self.counters["links_closed"] += closed
        return closed

    def identity_at(self, address: str) -> NodeIdentity | None:
        """The proven node at ``address``, if a link to it is established."""
        peer = self._peers.get(address)
        return None if peer is None or peer.link is None else peer.link.peer

    def stats(self) -> dict[str, int]:
        links = sum(1 for peer in self._peers.values() if peer.link is not None)
        return {**{f"sec_{k}": v for k, v in self.counters.items()}, "sec_links": links}


#: What the node calls to refuse (count) a security failure.
Refuse = Callable[[SecurityError], None]
