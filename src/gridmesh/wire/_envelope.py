"""The message envelope every gridmesh message travels in.

Theory of operation
-------------------
An envelope has two kinds of fields (on the wire, end-to-end fields come
first and per-hop fields last, so the end-to-end part is one contiguous byte
string: what a signature covers and what a relay forwards untouched):

* **end-to-end fields**, fixed by the origin and never changed by a relay:
  ``version``, ``kind``, ``message_id``, ``origin``, ``topic``, ``created_us``
  and ``body``. The signature (``auth``, filled by the security layer) will
  cover exactly these.
* **per-hop fields**, rewritten by every relay: ``sender`` (the node that sent
  this copy, so a receiver knows its neighbour) and ``hops_left`` (how many
  more times the message may be relayed). ``hops_left`` only ever decreases
  and is bounded by ``HOPS_MAX``, so a relay cannot extend a message's life.

``message_id`` is a 64-bit number the origin draws from its seeded random
source; together with ``origin`` it names the message for duplicate
suppression. ``created_us`` is the origin's clock in microseconds (the Unix
epoch on real nodes, virtual time in the simulator).

``body`` is protocol-specific and must be *plain data*: ``None``, ``bool``,
``int``, ``float``, ``str``, ``bytes``, lists, and maps with text keys, nested
at most ``BODY_DEPTH_MAX`` deep. Plain data is what CBOR carries without tags,
so no code, no object graph and no shared references travel on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "ADDRESS_BYTES_MAX",
    "AUTH_BYTES_MAX",
    "BODY_DEPTH_MAX",
    "HOPS_MAX",
    "MESSAGE_BYTES_MAX",
    "TOPIC_BYTES_MAX",
    "UINT64_MAX",
    "WIRE_VERSION",
    "Envelope",
    "Kind",
]

WIRE_VERSION = 1
#: Default upper bound on an encoded message; fits one IPv4 UDP datagram.
MESSAGE_BYTES_MAX = 65_000
TOPIC_BYTES_MAX = 1024
AUTH_BYTES_MAX = 4096
ADDRESS_BYTES_MAX = 255
BODY_DEPTH_MAX = 16
HOPS_MAX = 64
UINT64_MAX = 2**64 - 1


class Kind(IntEnum):
    """What an envelope carries; decides which protocol handles it."""

    GOSSIP = 1  # dissemination: [fanout, payload, group, forever]
    JOIN = 2  # full membership: [descriptor]
    MEMBERS = 3  # full membership: [reply_wanted, [descriptor, ...]]
    CYCLON_SHUFFLE = 4  # Cyclon: [[descriptor, ...]]
    CYCLON_REPLY = 5  # Cyclon: [request_id, [descriptor, ...]]
    NEWSCAST_EXCHANGE = 6  # Newscast: [[descriptor, ...], [[node_id, stamp], ...]]
    NEWSCAST_REPLY = 7  # Newscast: [[descriptor, ...], [[node_id, stamp], ...]]
    VIEW_JOIN = 8  # active view: [descriptor]
    VIEW_FORWARD_JOIN = 9  # active view: [descriptor]; the walk's ttl is hops_left
    VIEW_CONNECT = 10  # active view: [descriptor]
    VIEW_NEIGHBOR = 11  # active view: [descriptor, high_priority]
    VIEW_NEIGHBOR_REPLY = 12  # active view: [request_id, accepted]
    VIEW_DISCONNECT = 13  # active view: []
    VIEW_SHUFFLE = 14  # active view: [origin_descriptor, [descriptor, ...]]; ttl is hops_left
    VIEW_SHUFFLE_REPLY = 15  # active view: [[descriptor, ...]]
    PING = 16  # failure detection: [sender_descriptor, from_neighbor], or [] (indirect)
    PING_REQ = 17  # failure detection: [target_descriptor]
    ACK = 18  # failure detection: [about_node_id]
    GOSSIP_IHAVE = 19  # lazy push and tree: [[origin, message_id], ...]
    GOSSIP_IWANT = 20  # lazy push: [[origin, message_id], ...]
    GOSSIP_GRAFT = 21  # tree: [[origin, message_id], ...]; makes the link eager
    GOSSIP_PRUNE = 22  # tree: []; makes the link lazy
    GOSSIP_DIGEST = 23  # pull and anti-entropy: [since_us, [[origin, message_id], ...]]
    # tree aggregation: [function, params, reading, fanout, hop_timeout_ms, replies_min]
    AGG_QUERY = 24
    # tree aggregation: [query_origin, query_id, 0, partial, contributors, missing, declined]
    # (a value), [query_origin, query_id, 1] (not your child) or [..., 2] (declined)
    AGG_REPLY = 25
    # push-sum: [initiator, estimate_id, epoch, function, reading, rounds, variant, seq, s, w,
    # ack, request]; "flow": s and w are the cumulative mass the sender ever gave the
    # receiver on this link, seq numbers them, ack is the receiver's seq the sender absorbed
    # last; "push": s and w are the mass given, seq = ack = 0, request false
    PUSHSUM = 26
    # Event Manager (pub/sub), see protocols/pubsub; bodies documented there
    PS_SUBSCRIBE = 27
    PS_SUBACK = 28
    PS_UNSUBSCRIBE = 29
    PS_PUBLISH = 30
    PS_PUBACK = 31
    PS_DELIVER = 32
    PS_DELIVER_ACK = 33
    PS_REPLICATE = 34
    PS_REPLICATE_ACK = 35
    PS_PING = 36
    PS_PONG = 37
    # service calls, see protocols/rpc/_bodies.py; statuses: 0 ok, 1 unknown service,
    # 2 service failed, 3 handler crashed, 4 result too large, 5 busy
    RPC_CALL = 40  # [service, args]; the envelope's message_id is the call id
    RPC_RESULT = 41  # [call_id, status, value | [code, text] | [size_bytes, limit_bytes] | null]
    # link handshake (security/_link.py), plain envelopes between two nodes:
    SEC_HELLO = 44  # [1, certificate, ephemeral, nonce]
    SEC_REPLY = 45  # [certificate, ephemeral, nonce, signature]
    SEC_FINISH = 46  # [signature]
    CONTROL = 64  # operator request to a local runtime (loopback only): {"op": ...}
    CONTROL_REPLY = 65  # the runtime's answer: {"ok": bool, ...}


@dataclass(frozen=True, slots=True)
class Envelope:
    """One gridmesh message. The same type is sent and received.

    ``wire_prefix`` caches the encoded end-to-end part (see ``_codec``); only
    the codec sets it, and it takes no part in equality.
    """

    kind: Kind
    message_id: int
    origin: int
    sender: int
    topic: str
    created_us: int
    hops_left: int
    body: object
    auth: bytes | None = None
    version: int = WIRE_VERSION
    wire_prefix: bytes | None = field(default=None, compare=False, repr=False)

    def relayed(self, sender: int, hops_left: int) -> Envelope:
        """This message as a relay forwards it: new per-hop fields, the rest unchanged.

        The encoded end-to-end part travels along, so a relay forwards the
        origin's bytes verbatim instead of encoding them again.
        """
        assert 0 <= hops_left < self.hops_left or self.hops_left == 0
        return Envelope(
            self.kind,
            self.message_id,
            self.origin,
            sender,
            self.topic,
            self.created_us,
            hops_left,
            self.body,
            self.auth,
            self.version,
            self.wire_prefix,
        )
