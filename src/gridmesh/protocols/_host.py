"""The sans-I/O contract between a protocol core and whatever drives it.

Theory of operation
-------------------
A protocol object (membership, dissemination, ...) never touches the outside
world. Everything it may do goes through the small ``Host`` interface that the
``Node`` implements, and everything it learns arrives as a method call:

* **input**: a decoded ``Envelope`` plus the transport ``source`` it came from
  and the current time ``now`` (seconds, float) — ``on_<kind>(message, ..., now)``;
* **time**: only ever the ``now`` argument. A protocol never reads a clock;
* **timers**: ``host.call_at(when, callback)``; the callback later receives
  ``now``. Timers may fire late, never early;
* **output**: ``host.send(peers, envelope)``: the same message to each peer
  (gossip sends one message to ``f`` peers, so a batch is the natural unit);
  fire and forget, no return value, each copy may be lost;
* **randomness**: ``host.rng``, a ``RandomSource`` the *driver* created and
  seeded. In the simulator that makes a run a pure function of its seed;
* **delivery** to the application: ``host.deliver(message, payload, now)``.

The driver side of the contract is ``gridmesh.node.Transport``. Because the
contract is this narrow, the asyncio runtime and the simulator are two thin
drivers of the same ``Node``, and a test forbids ``asyncio``, ``socket``,
``time``, ``random``, ``os``, ``threading`` and ``selectors`` imports under
``wire/``, ``topics.py``, ``protocols/`` and ``security/``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from gridmesh.wire import Envelope, Kind

if TYPE_CHECKING:
    from gridmesh.protocols.pubsub import Event

__all__ = [
    "Delivery",
    "Host",
    "Membership",
    "Peer",
    "PeerSampling",
    "RandomSource",
    "Scope",
    "new_envelope",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Peer:
    """A node as its neighbours know it: its descriptor.

    ``node_id`` is the high-level address (0 while unknown, e.g. a seed we
    have only an address for); ``address`` is the transport address, opaque
    to protocols ("host:port" on UDP, the node id in the simulator).
    ``service`` (e.g. "meter", "dtc") and ``groups`` (e.g. "tariff:RTP",
    "region:London") are what the node advertises about itself (seed 000's
    "peer scope or type", seed 002's groups); they take no part in equality.
    """

    node_id: int
    address: str
    service: str = field(default="", compare=False)
    groups: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which peers a caller wants: of one service type, in one group, or both."""

    service: str | None = None
    group: str | None = None

    def admits(self, peer: Peer) -> bool:
        return (self.service is None or peer.service == self.service) and (
            self.group is None or self.group in peer.groups
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to the local application."""

    message_id: int
    origin: int
    topic: str
    payload: object
    created_us: int
    received_at: float
    hops_left: int


class RandomSource(Protocol):
    """The part of ``random.Random`` a protocol may use; the driver seeds it."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...

    def shuffle(self, x: MutableSequence[Any], /) -> None: ...

    def sample(self, population: Sequence[_T], k: int) -> list[_T]: ...


class Host(Protocol):
    """What a protocol core may ask of the node it runs in."""

    @property
    def node_id(self) -> int: ...

    @property
    def address(self) -> str: ...

    @property
    def rng(self) -> RandomSource: ...

    def send(self, peers: Sequence[Peer], message: Envelope) -> None: ...

    def multicast(self, message: Envelope) -> None:
        """One native multicast transmission to every node of this node's LAN domain.

        Raises ``LocalProtocolError`` where the driver has no native multicast.
        """
        ...

    def call_at(self, when: float, callback: Callable[[float], None]) -> None: ...

    def deliver(self, message: Envelope, payload: object, now: float) -> None: ...

    def new_message_id(self) -> int: ...

    def authorize(self, action: str, subject: str) -> bool:
        """Whether the proven sender of the message being handled may ``action``
        ("publish", "subscribe", "call") on ``subject`` (a topic, filter or service).

        Always True where the node has no credentials (nothing is proven).
        """
        ...

    def authenticate(self, message: Envelope) -> Envelope:
        """``message`` (which this node originates, to be relayed) as its origin signs it.

        The same message where the node has no credentials.
        """
        ...

    def sign_event(self, event: Event) -> Event:
        """``event`` (which this node publishes) with its publisher signature (``auth``),
        its value sealed first if the topic is confidential and the node holds its key.

        The same event where the node has no credentials.
        """
        ...

    def open_event(self, event: Event) -> Event | None:
        """``event`` as the application reads it: a sealed value (a confidential topic)
        opened with the node's group key; None (counted) if the node holds no key for it.
        """
        ...

    def check_event(self, event: Event, now: float, *, fresh: bool = False) -> None:
        """Raise a ``SecurityError`` unless ``event`` carries its publisher's valid signature
        and the publisher may publish on its topic (with ``fresh``: and it is recent).

        Nothing is checked where the node has no credentials.
        """
        ...

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        """The descriptor for these values, shared where the driver can share it."""
        ...

    @property
    def me(self) -> Peer:
        """This node's own descriptor."""
        ...

    @property
    def message_bytes_max(self) -> int:
        """The largest message this node sends or accepts."""
        ...


class PeerSampling(Protocol):
    """Random peers for dissemination and aggregation to talk to."""

    def sample(self, count: int, exclude: int = 0, scope: Scope | None = None) -> list[Peer]:
        """Up to ``count`` distinct peers, never this node nor ``exclude``, all within ``scope``."""
        ...

    def neighbors(self) -> list[Peer]:
        """The peers this node currently links to (its view), itself excluded."""
        ...


class Membership(PeerSampling, Protocol):
    """A membership protocol as a ``Node`` runs it."""

    KINDS: ClassVar[frozenset[Kind]]

    def start(self, now: float) -> None: ...

    def on_message(self, message: Envelope, source: str, now: float) -> None: ...

    def stats(self) -> dict[str, int]: ...


def new_envelope(
    host: Host, kind: Kind, body: object, now: float, *, topic: str = "", hops_left: int = 0
) -> Envelope:
    """A new message from ``host``: a fresh id, this node as origin and sender."""
    return Envelope(
        kind=kind,
        message_id=host.new_message_id(),
        origin=host.node_id,
        sender=host.node_id,
        topic=topic,
        created_us=max(0, int(now * 1e6)),
        hops_left=hops_left,
        body=body,
    )
