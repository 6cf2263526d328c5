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
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gridmesh.wire import Envelope

__all__ = ["Delivery", "Host", "Peer", "PeerSampling", "RandomSource"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Peer:
    """A node as its neighbours know it.

    ``node_id`` is the high-level address (0 while unknown, e.g. a seed we
    have only an address for); ``address`` is the transport address, opaque
    to protocols ("host:port" on UDP, the node id in the simulator).
    """

    node_id: int
    address: str


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

    def call_at(self, when: float, callback: Callable[[float], None]) -> None: ...

    def deliver(self, message: Envelope, payload: object, now: float) -> None: ...

    def new_message_id(self) -> int: ...


class PeerSampling(Protocol):
    """Uniform random peers for dissemination and aggregation to talk to."""

    def sample(self, count: int, exclude: int = 0) -> list[Peer]:
        """Up to ``count`` distinct live-looking peers, never this node nor ``exclude``."""
        ...

    def size_estimate(self) -> int:
        """This node's estimate of how many nodes the system has, itself included."""
        ...
