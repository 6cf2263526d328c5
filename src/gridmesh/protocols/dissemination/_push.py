"""Eager push gossip, infect-and-die.

Theory of operation
-------------------
Seed 000 (WS-Gossip, II.2-3 and IV.A): a node that learns a message forwards
it at once to ``f`` peers drawn at random (the *fanout*), and to nobody ever
again (*infect-and-die*). Each copy carries ``hops_left``; a receiver takes one
off and relays only while some remain, so a message travels at most ``r``
hops. Fanout and hops have node-wide defaults, and the origin may override
both per message: hops in the envelope, fanout in the body, so every relay
uses the origin's choice (seed 000 IV.A: "a gossip-aware client may override
them in the message header").

State per node is one bounded ``SeenCache`` of ``(origin, message_id)``: a
message is delivered and relayed the first time only; later copies are
counted as duplicates and dropped. Relays never send back to the neighbour a
copy came from.

Body on the wire: ``[fanout, payload]``. A peer cannot make relays amplify a
message beyond ``FANOUT_MAX`` or keep it alive beyond the receiver's
``hops_max``: larger values are refused or clamped.

Reliability: with fanout ``f = ln n + c`` every node is reached with
probability about ``exp(-exp(-c))`` (Kermarrec, Massoulié, Ganesh 2003);
loss and crashed peers lower the effective fanout to ``f * (1 - loss) *
(1 - crashed)``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gridmesh.errors import LocalProtocolError, MalformedMessage
from gridmesh.protocols._host import Host, PeerSampling, new_envelope
from gridmesh.protocols._seen import SeenCache
from gridmesh.wire import HOPS_MAX, Envelope, Kind, check_plain

__all__ = ["FANOUT_MAX", "PushGossip", "PushGossipConfig"]

#: Hard limit on the fanout a message may ask relays for.
FANOUT_MAX = 64


class PushGossipConfig(BaseModel):
    """Defaults and limits of push gossip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fanout: int = Field(default=6, ge=1, le=FANOUT_MAX)
    hops: int = Field(default=10, ge=1, le=HOPS_MAX)
    hops_max: int = Field(
        default=HOPS_MAX, ge=1, le=HOPS_MAX, description="receivers clamp hops_left to this"
    )
    seen_cache_max: int = Field(default=4096, ge=16, le=10_000_000)


class PushGossip:
    """One node's push-gossip state machine."""

    __slots__ = ("_config", "_host", "_peers", "_seen", "delivered", "duplicates", "relayed")

    def __init__(self, host: Host, config: PushGossipConfig, peers: PeerSampling) -> None:
        self._host = host
        self._config = config
        self._peers = peers
        self._seen = SeenCache(config.seen_cache_max)
        self.delivered = 0
        self.duplicates = 0
        self.relayed = 0

    def broadcast(
        self,
        payload: object,
        *,
        topic: str,
        now: float,
        fanout: int | None = None,
        hops: int | None = None,
    ) -> Envelope:
        """Start disseminating ``payload``; returns the message as sent."""
        config = self._config
        fanout = config.fanout if fanout is None else fanout
        hops = config.hops if hops is None else hops
        if not 1 <= fanout <= FANOUT_MAX:
            raise LocalProtocolError(f"fanout must be in 1..{FANOUT_MAX}, got {fanout}")
        if not 1 <= hops <= config.hops_max:
            raise LocalProtocolError(f"hops must be in 1..{config.hops_max}, got {hops}")
        check_plain(payload)
        host = self._host
        message = new_envelope(
            host, Kind.GOSSIP, [fanout, payload], now, topic=topic, hops_left=hops
        )
        self._seen.add((message.origin, message.message_id))
        host.send(self._peers.sample(fanout), message)
        return message

    def on_gossip(self, message: Envelope, now: float) -> None:
        key = (message.origin, message.message_id)
        seen = self._seen
        if key in seen:  # most copies are duplicates: drop them before parsing
            self.duplicates += 1
            return
        body = message.body
        if type(body) is not list or len(body) != 2:
            raise MalformedMessage("GOSSIP body must be [fanout, payload]", field="body")
        fanout = body[0]
        if type(fanout) is not int or not 1 <= fanout <= FANOUT_MAX:
            raise MalformedMessage(f"fanout must be an integer in 1..{FANOUT_MAX}", field="body")
        seen.add(key)  # only now: a malformed copy must not hide a genuine one
        host = self._host
        self.delivered += 1
        host.deliver(message, body[1], now)
        hops_left = min(message.hops_left, self._config.hops_max) - 1
        if hops_left <= 0:
            return
        self.relayed += 1
        host.send(
            self._peers.sample(fanout, message.sender), message.relayed(host.node_id, hops_left)
        )
