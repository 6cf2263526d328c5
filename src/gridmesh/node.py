"""The ``Node``: the protocols of one gridmesh node, composed, without I/O.

Theory of operation
-------------------
A ``Node`` owns one instance of each protocol (one membership protocol, chosen
by its configuration, dissemination, tree aggregation, push-sum and service
calls, the last three built on first use so that a node that never aggregates
or calls pays nothing for them), routes each incoming message to the
protocol whose ``KINDS`` hold its ``kind``, keeps the node's timers, and counts
what it refused. It is itself sans-I/O: a *driver* feeds it and carries out
what it asks, through the ``Transport`` interface:

* the driver calls ``start(now)`` once, then ``receive(message, source, now)``
  or ``receive_datagram(data, source, now)`` for every arrival (or, when its
  transport authenticates peers itself, TLS, ``receive_authenticated``), and
  ``handle_timer(now)`` when a wake-up it was asked for comes due — late if it
  must, never early (``now >= when``);
* the node calls ``transport.send(node_id, peers, message)`` to send,
  ``transport.multicast(node_id, message)`` for one native multicast into the
  node's LAN domain (hybrid multicast only), ``transport.wake_at(node_id,
  when)`` to be woken (spurious or duplicate wake-ups are harmless),
  ``transport.deliver(node_id, delivery)`` to hand a message to the
  application, and ``transport.peer(...)`` to intern a
  descriptor (the simulator shares one object per node among all views).

The simulator (``gridmesh.sim``) and the asyncio runtime
(``gridmesh.runtime``) are the two drivers. One ``Transport`` may serve many
nodes, which is why every call names the node.

Peer input never raises out of ``receive*``: a ``RemoteProtocolError`` is
counted under its ``reason`` in ``rejected`` and the message is dropped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gridmesh.errors import LocalProtocolError, MalformedMessage, RemoteProtocolError
from gridmesh.protocols import Delivery, Membership, Peer, RandomSource, new_envelope
from gridmesh.protocols.aggregation import (
    COLLECT_LIMIT_DEFAULT,
    DEFAULT_REGISTRY,
    CollectCallback,
    Estimate,
    FunctionRegistry,
    PushSum,
    PushSumConfig,
    ReadingProvider,
    ResultCallback,
    Segment,
    TreeAggregation,
    TreeAggregationConfig,
)
from gridmesh.protocols.dissemination import Gossip, GossipConfig, TreeGossip, make_dissemination
from gridmesh.protocols.membership import (
    FullMembership,
    FullMembershipConfig,
    HyParViewConfig,
    MembershipConfig,
    PeerDirectory,
    check_profile,
    make_membership,
)
from gridmesh.protocols.pubsub import (
    GOSSIP_EVENT_KEY,
    Event,
    EventCallback,
    EventManager,
    EventStore,
    PubSubClient,
    PubSubConfig,
    SubscribeResult,
    parse_event,
)
from gridmesh.protocols.rpc import (
    CallResultCallback,
    ServiceCalls,
    ServiceCallsConfig,
    ServiceHandler,
)
from gridmesh.security import (
    AccessDenied,
    AccessPolicy,
    AclConfig,
    Action,
    CertificateRevoked,
    NodeIdentity,
    PeerGuard,
    ReplayConfig,
    ReplayGuard,
    RevocationSet,
    ScoreConfig,
    SecurityError,
    Throttled,
    Uncertified,
    Verdict,
    event_for,
    verify_revocation,
)
from gridmesh.security._confidential import ConfidentialTopics, is_sealed
from gridmesh.security._events import EventSigner, EventVerifier
from gridmesh.security._link import KeySource, Link, LinkCredentials
from gridmesh.security._links import LinkTable, Outcome
from gridmesh.security._origin import OriginSigner, OriginVerifier
from gridmesh.wire import MESSAGE_BYTES_MAX, UINT64_MAX, Envelope, Kind, decode, encode

__all__ = ["Node", "NodeConfig", "SecurityConfig", "Transport"]


class SecurityConfig(BaseModel):
    """What a node with credentials enforces on what it receives (docs/ACCESS.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    acl: AclConfig = AclConfig()
    replay: ReplayConfig = ReplayConfig()
    score: ScoreConfig = ScoreConfig()


class NodeConfig(BaseModel):
    """Everything that tunes one node; every field has a sane default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_bytes_max: int = Field(default=MESSAGE_BYTES_MAX, ge=512, le=MESSAGE_BYTES_MAX)
    service: str = Field(default="node", description="what this node is: meter, dtc, dso, ...")
    groups: tuple[str, ...] = Field(default=(), description="e.g. tariff:RTP, region:London")
    gossip: GossipConfig = GossipConfig()
    membership: MembershipConfig = FullMembershipConfig()
    aggregation: TreeAggregationConfig = TreeAggregationConfig()
    pushsum: PushSumConfig = PushSumConfig()
    services: ServiceCallsConfig = ServiceCallsConfig()
    pubsub: PubSubConfig = PubSubConfig()
    security: SecurityConfig = SecurityConfig()

    @model_validator(mode="after")
    def _tree_needs_an_active_view(self) -> NodeConfig:
        if self.gossip.mode == "tree" and not isinstance(self.membership, HyParViewConfig):
            raise ValueError(
                "gossip.mode = 'tree' needs membership.kind = 'hyparview': a tree is built "
                "over a small, symmetric active view"
            )
        return self

    @field_validator("groups")
    @classmethod
    def _profile_fits(cls, groups: tuple[str, ...], info: object) -> tuple[str, ...]:
        check_profile("", groups)
        return groups

    @field_validator("service")
    @classmethod
    def _service_fits(cls, service: str) -> str:
        check_profile(service, ())
        return service


class Transport(Protocol):
    """What a driver does for the nodes it runs."""

    def send(self, source: int, peers: Sequence[Peer], message: Envelope) -> None: ...

    def send_datagram(self, source: int, peer: Peer, data: bytes) -> None:
        """Bytes to one peer as they are (a secure node's sealed frames and handshakes)."""
        ...

    def multicast(self, source: int, message: Envelope) -> None:
        """Native multicast into ``source``'s LAN domain; LocalProtocolError if none."""
        ...

    def wake_at(self, node_id: int, when: float) -> None: ...

    def deliver(self, node_id: int, delivery: Delivery) -> None: ...

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer: ...


_Timer = tuple[float, int, Callable[[float], None]]
_AGGREGATION_KINDS = TreeAggregation.KINDS
_PUSHSUM_KINDS = PushSum.KINDS
_SERVICE_KINDS = ServiceCalls.KINDS
_EVENT_MANAGER_KINDS = EventManager.KINDS
_HANDSHAKE_STEPS = {Kind.SEC_HELLO: 0, Kind.SEC_REPLY: 1, Kind.SEC_FINISH: 2}
_HANDSHAKE_KINDS = {step: kind for kind, step in _HANDSHAKE_STEPS.items()}
_AUTHORIZERS = {
    "publish": AccessPolicy.may_publish,
    "subscribe": AccessPolicy.may_subscribe,
    "call": AccessPolicy.may_call,
}
#: Revocations travel as gossip on DSO/<node_id>/REVOCATION (a DSO publishes DSO/<own id>/#).
REVOCATION_TOPIC_PREFIX = "DSO/"


def _is_revocation(topic: str) -> bool:
    return topic.startswith(REVOCATION_TOPIC_PREFIX) and topic.endswith("/REVOCATION")


_PUBSUB_CLIENT_KINDS = PubSubClient.KINDS


class Node:
    """One gridmesh node: membership + dissemination, driven from outside."""

    __slots__ = (
        "_address",
        "_aggregation",
        "_confidential",
        "_credentials",
        "_event_manager",
        "_event_signer",
        "_event_verifier",
        "_functions",
        "_gossip_kinds",
        "_guard",
        "_handshake_timer",
        "_link_identity",
        "_links",
        "_me",
        "_membership_kinds",
        "_node_id",
        "_now",
        "_observe",
        "_policy",
        "_pubsub",
        "_pushsum",
        "_rng",
        "_sealed_unreadable",
        "_services",
        "_signer",
        "_timer_seq",
        "_timers",
        "_transport",
        "_transport_authenticates",
        "_tree",
        "_verifier",
        "_wake_at",
        "config",
        "gossip",
        "membership",
        "rejected",
    )

    def __init__(
        self,
        node_id: int,
        *,
        transport: Transport,
        rng: RandomSource,
        config: NodeConfig | None = None,
        address: str = "",
        directory: PeerDirectory | None = None,
        seeds: tuple[Peer, ...] = (),
        functions: FunctionRegistry | None = None,
        event_store: EventStore | None = None,
        credentials: LinkCredentials | None = None,
        key_source: KeySource | None = None,
        transport_authenticates: bool = False,
    ) -> None:
        """``transport_authenticates``: the transport proves and encrypts peers itself (TLS
        with client certificates), so a node with credentials sends plain envelopes through
        ``transport.send`` and takes messages through ``receive_authenticated``."""
        if not 0 < node_id <= UINT64_MAX:
            raise LocalProtocolError(f"node id must be in 1..2**64-1, got {node_id}")
        self._node_id = node_id
        self._transport_authenticates = transport_authenticates
        self._address = address
        self._rng = rng
        self._transport = transport
        self.config = NodeConfig() if config is None else config
        self._timers: list[_Timer] | None = None
        self._timer_seq = 0
        self._now = 0.0  # the latest time a driver told this node (for handshake timers)
        # A node with credentials talks only over links proven by a handshake (security/).
        self._links: LinkTable | None = None
        self._signer: OriginSigner | None = None
        self._verifier: OriginVerifier | None = None
        self._event_signer: EventSigner | None = None
        self._event_verifier: EventVerifier | None = None
        self._handshake_timer = False
        self._guard: PeerGuard | None = None
        # The proven peer whose message is being handled (None: none, or not secure).
        self._link_identity: NodeIdentity | None = None
        self._policy: AccessPolicy | None = None
        self._confidential: ConfidentialTopics | None = None
        self._sealed_unreadable = 0
        if credentials is not None:
            if credentials.revocations is None:  # revocations come by gossip: keep a set
                credentials = replace(credentials, revocations=RevocationSet())
            self._links = LinkTable(credentials, key_source if key_source is not None else rng)
            security = self.config.security
            self._guard = PeerGuard(security.score)
            self._policy = AccessPolicy(security.acl)
            self._verifier = OriginVerifier(
                credentials,
                self._policy,
                ReplayGuard.from_config(security.replay),
            )
            self._credentials = credentials
            self._event_signer = EventSigner(credentials)
            self._event_verifier = EventVerifier(
                self._policy,
                self._verifier.identities,
                freshness_s=security.replay.freshness_s,
            )
            if credentials.group_keys:
                self._confidential = ConfidentialTopics(
                    credentials.group_keys, key_source if key_source is not None else rng
                )
        self._wake_at = float("inf")
        self.rejected: dict[str, int] | None = None
        config = self.config
        self._me = transport.peer(node_id, address, config.service, config.groups)
        self.membership: Membership = make_membership(
            self, config.membership, seeds=seeds, directory=directory
        )
        self._membership_kinds = self.membership.KINDS
        # The active view learns liveness from every message; other memberships need not.
        self._observe = getattr(self.membership, "observe", None)
        self.gossip: Gossip = make_dissemination(
            self, config.gossip, self.membership, self._size_estimate
        )
        self._gossip_kinds = self.gossip.KINDS
        # A tree follows the active view as it changes, not only when gossip comes.
        self._tree = isinstance(self.gossip, TreeGossip)
        # The aggregation functions queries may name: the built-ins unless given others.
        self._functions = DEFAULT_REGISTRY if functions is None else functions
        self._aggregation: TreeAggregation | None = None
        self._pushsum: PushSum | None = None
        self._services: ServiceCalls | None = None
        # An Event Manager of its flow is one from the start; clients are built on first use.
        self._event_manager: EventManager | None = None
        if any(ref.node_id == node_id for ref in config.pubsub.event_managers):
            self._event_manager = EventManager(self, config.pubsub, store=event_store)
        self._pubsub: PubSubClient | None = None

    # -- the Host interface protocols use ------------------------------------

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def address(self) -> str:
        return self._address

    @property
    def rng(self) -> RandomSource:
        return self._rng

    @property
    def me(self) -> Peer:
        return self._me

    @property
    def message_bytes_max(self) -> int:
        if self._links is not None:  # a sealed frame adds its own bytes
            return self.config.message_bytes_max - Link.overhead_bytes()
        return self.config.message_bytes_max

    def peer(self, node_id: int, address: str, service: str, groups: tuple[str, ...]) -> Peer:
        return self._transport.peer(node_id, address, service, groups)

    def send(self, peers: Sequence[Peer], message: Envelope) -> None:
        links = self._links
        if links is None or self._transport_authenticates:
            self._transport.send(self._node_id, peers, message)
            return
        data = encode(message)
        transport = self._transport
        for peer in peers:
            frames, hello = links.send(peer.address, data, self._now)
            for frame in frames:
                transport.send_datagram(self._node_id, peer, frame)
            if hello is not None:
                self._send_handshake(peer, Kind.SEC_HELLO, hello)
                self._arm_handshake_timer()

    def multicast(self, message: Envelope) -> None:
        self._transport.multicast(self._node_id, message)

    def deliver(self, message: Envelope, payload: object, now: float) -> None:
        if self._links is not None and type(payload) is bytes and _is_revocation(message.topic):
            self._on_revocation(payload)
        if is_sealed(payload):
            readable, payload = self._open_sealed(message.topic, payload)
            if not readable:
                return
        if (
            type(payload) is dict
            and GOSSIP_EVENT_KEY in payload
            and self.config.pubsub.mode == "gossip"
        ):
            self._deliver_gossip_event(message, payload, now)
            return
        self._transport.deliver(
            self._node_id,
            Delivery(
                message.message_id,
                message.origin,
                message.topic,
                payload,
                message.created_us,
                now,
                message.hops_left,
            ),
        )

    def _deliver_gossip_event(
        self, message: Envelope, payload: dict[str, object], now: float
    ) -> None:
        """A pub/sub event that came by gossip: to the local subscriptions it matches."""
        try:
            event = parse_event(payload[GOSSIP_EVENT_KEY])
            if event.source != message.origin or event.topic != message.topic:
                raise MalformedMessage(
                    "the event's source or topic differs from the message's", field="body"
                )
        except RemoteProtocolError as error:
            self.note_rejected(error)
            return
        self.pubsub.on_gossip_event(event, now)

    def revoke(self, revocation: bytes, *, now: float) -> int:
        """Spread an authority-signed revocation by gossip; returns the message id.

        Every secure node that gets it checks the authority's signature, adds it
        to its revocation set and drops its links to the revoked node at once.
        """
        self._on_revocation(revocation)
        return self.broadcast(
            revocation, topic=f"{REVOCATION_TOPIC_PREFIX}{self.node_id}/REVOCATION", now=now
        )

    def _on_revocation(self, data: bytes) -> None:
        links = self._links
        if links is None:
            return
        credentials = links.credentials
        try:
            revocation = verify_revocation(data, credentials.authority.public_key)
        except RemoteProtocolError as error:
            self.note_rejected(error)
            return
        revocations = credentials.revocations
        assert revocations is not None
        if revocations.add(revocation):
            links.close(serial=revocation.serial)

    def authorize(self, action: str, subject: str) -> bool:
        policy = self._policy
        if policy is None:
            return True
        identity = self._link_identity
        if identity is None:  # nothing proven about who sent it
            return False
        check = _AUTHORIZERS.get(action)
        if check is None:
            raise LocalProtocolError(f"unknown action {action!r}")
        allowed = check(policy, identity.role, identity.node_id, subject, identity.permissions)
        if not allowed:
            self.note_rejected(
                AccessDenied(Action(action), identity.role, identity.node_id, subject)
            )
        return allowed

    def authenticate(self, message: Envelope) -> Envelope:
        signer = self._signer
        return message if signer is None else signer.sign(message)

    def _open_sealed(self, topic: str, payload: object) -> tuple[bool, object]:
        """A sealed payload opened with a held group key: ``(False, None)`` (counted) when
        this node holds none for it (relayed, not for it to read) or it does not decrypt."""
        confidential = self._confidential
        if confidential is not None:
            try:
                readable, opened = confidential.open(topic, payload)
            except RemoteProtocolError as error:
                self.note_rejected(error)
                return False, None
            if readable:
                return True, opened
        self._sealed_unreadable += 1
        return False, None

    def sign_event(self, event: Event) -> Event:
        signer = self._event_signer
        if signer is None:
            return event
        confidential = self._confidential
        if confidential is not None:
            sealed = confidential.seal(event.topic, event.value)
            if sealed is not None:
                event = replace(event, value=sealed)
        return replace(event, auth=signer.sign(event.content_bytes()))

    def open_event(self, event: Event) -> Event | None:
        if not is_sealed(event.value):
            return event
        readable, value = self._open_sealed(event.topic, event.value)
        return replace(event, value=value) if readable else None

    def check_event(self, event: Event, now: float, *, fresh: bool = False) -> None:
        verifier = self._event_verifier
        if verifier is None:
            return
        try:
            if fresh:
                verifier.check_fresh(event.time_us, now)
            verifier.verify(event.source, event.topic, event.content_bytes(), event.auth, now)
        except SecurityError as error:
            self.note_rejected(error)
            raise

    def new_message_id(self) -> int:
        return self._rng.getrandbits(64)

    def call_at(self, when: float, callback: Callable[[float], None]) -> None:
        timers = self._timers
        if timers is None:
            timers = self._timers = []
        self._timer_seq += 1
        heapq.heappush(timers, (when, self._timer_seq, callback))
        if when < self._wake_at:
            self._wake_at = when
            self._transport.wake_at(self._node_id, when)

    # -- driver entry points -------------------------------------------------

    def start(self, now: float) -> None:
        """Begin: join the membership and arm the periodic timers."""
        self._now = now
        if self._links is not None:
            # The epoch orders this node's incarnations for replay windows: milliseconds
            # of wall-clock time at start, so a restarted node's numbers count again.
            epoch = int((self._credentials.epoch_s + now) * 1000)
            self._signer = OriginSigner(self._credentials, epoch)
        self.membership.start(now)
        self.gossip.start(now)
        if self._event_manager is not None:
            self._event_manager.start(now)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``, then ask to be woken for the next."""
        self._now = now
        timers = self._timers
        if not timers:
            return
        if now >= self._wake_at:
            # The wake-up we asked for came. A spurious or superseded one must not
            # reset this, or every extra wake-up would ask for another, and the
            # duplicates would multiply (they did: 25 wake-ups a second per node).
            self._wake_at = float("inf")
        try:
            while timers and timers[0][0] <= now:
                _, _, callback = heapq.heappop(timers)
                callback(now)
            if self._tree:
                self.gossip.on_neighbors(now)
        finally:  # a failing callback is a bug, but must not stop every later timer
            if timers and timers[0][0] < self._wake_at:
                self._wake_at = timers[0][0]
                self._transport.wake_at(self._node_id, self._wake_at)

    def receive_datagram(self, data: bytes, source: str, now: float) -> None:
        """Decode and handle one datagram; malformed input is counted and dropped.

        A node with credentials accepts only sealed frames of its links and
        handshake messages; anything else is counted as ``uncertified``.
        """
        self._now = now
        links = self._links
        try:
            if links is not None and links.is_frame(data):
                outcome = links.open(source, data, now)
                self._carry_out(source, outcome)
                if outcome.plaintext is not None:
                    assert outcome.peer is not None
                    self._accept_opened(outcome.peer, outcome.plaintext, source, now)
                return
            message = decode(data, message_bytes_max=self.config.message_bytes_max)
        except RemoteProtocolError as error:
            self.note_rejected(error)
            return
        if links is not None:
            self.receive_plain(message, source, now)
        else:
            self._dispatch(message, source, now)

    def receive_authenticated(
        self, peer: NodeIdentity, data: bytes, source: str, now: float
    ) -> bool:
        """An encoded envelope from ``peer``, whom the transport proved (TLS client certificate).

        Admitted as a message opened from a link is: the peer's rate and score,
        ``sender`` must be ``peer``, then handled. Returns False when the transport
        should close its connection: the certificate is revoked, or the peer's score
        fell below the disconnect threshold.
        """
        guard = self._guard
        if guard is None:
            raise LocalProtocolError("receive_authenticated is for a node with credentials")
        self._now = now
        revocations = self._credentials.revocations
        assert revocations is not None
        if revocations.is_revoked(peer.serial):
            self.note_rejected(
                CertificateRevoked(f"serial {peer.serial:#x} is revoked", field="serial")
            )
            return False
        self._accept_opened(peer, data, source, now)
        return guard.verdict(peer.node_id, now) is not Verdict.DISCONNECT

    def _accept_opened(self, peer: NodeIdentity, plaintext: bytes, source: str, now: float) -> None:
        """A message a proven peer sent over its link: admitted, decoded, then handled."""
        peer_id = peer.node_id
        self._link_identity = peer
        try:
            try:
                self._admit(peer_id, now)
                message = decode(plaintext, message_bytes_max=self.config.message_bytes_max)
                if message.sender != peer_id:
                    raise Uncertified(
                        f"node {peer_id} sent a message as node {message.sender}", field="sender"
                    )
            except RemoteProtocolError as error:
                self.note_rejected(error)
                return
            self._dispatch(message, source, now)
        finally:
            self._link_identity = None

    def _admit(self, peer_id: int, now: float) -> None:
        """The peer's rate and standing (GossipSub v1.1-style scores, security/_score.py)."""
        guard = self._guard
        assert guard is not None
        verdict = guard.admit(peer_id, now)
        if verdict is Verdict.OK:
            return
        if verdict is Verdict.DISCONNECT:
            self._disconnect(peer_id)
        raise Throttled(f"node {peer_id} is {verdict.value}", field="rate")

    def _disconnect(self, peer_id: int) -> None:
        links = self._links
        assert links is not None
        links.close(peer_id)

    @property
    def secure(self) -> bool:
        """Whether this node talks only over authenticated links (it has credentials)."""
        return self._links is not None

    @staticmethod
    def is_frame(data: bytes) -> bool:
        """Whether ``data`` is a sealed link frame (not a plain envelope)."""
        return LinkTable.is_frame(data)

    def receive_plain(self, message: Envelope, source: str, now: float) -> None:
        """A secure node's decoded envelope that came outside a link: a handshake, or refused."""
        links = self._links
        assert links is not None
        self._now = now
        step = _HANDSHAKE_STEPS.get(message.kind)
        try:
            if step is None:
                raise Uncertified(
                    f"{message.kind.name} outside an authenticated link", field="kind"
                )
            outcome = links.on_handshake(source, step, message.body, now)
            self._carry_out(source, outcome)
        except RemoteProtocolError as error:
            self.note_rejected(error)
            return
        if outcome.opened:  # frames that overtook the handshake's last message
            assert outcome.peer is not None
            for plaintext in outcome.opened:
                self._accept_opened(outcome.peer, plaintext, source, now)

    def _carry_out(self, source: str, outcome: Outcome) -> None:
        """Send what a handshake step asks for: replies, then what waited for the link."""
        if not outcome.replies and not outcome.flush:
            return
        peer = self._transport.peer(0, source, "", ())
        for step, body in outcome.replies:
            self._send_handshake(peer, _HANDSHAKE_KINDS[step], body)
            if step == 0:
                self._arm_handshake_timer()
        for frame in outcome.flush:
            self._transport.send_datagram(self._node_id, peer, frame)

    def _send_handshake(self, peer: Peer, kind: Kind, body: list[object]) -> None:
        message = new_envelope(self, kind, body, self._now)
        self._transport.send_datagram(self._node_id, peer, encode(message))

    def _arm_handshake_timer(self) -> None:
        if not self._handshake_timer and self._links is not None:
            self._handshake_timer = True
            self.call_at(self._now + self._links.retry_s, self._retry_handshakes)

    def _retry_handshakes(self, now: float) -> None:
        links = self._links
        assert links is not None
        self._handshake_timer = False
        for address, hello in links.due(now):
            self._send_handshake(self._transport.peer(0, address, "", ()), Kind.SEC_HELLO, hello)
        if links.waiting():
            self._arm_handshake_timer()

    def receive(self, message: Envelope, source: str, now: float) -> None:
        """Handle one decoded message from transport address ``source``.

        A node with credentials takes nothing outside a link this way: a driver
        that hands it a decoded message gets the message refused unless it is
        a handshake step.
        """
        if self._links is not None:
            self.receive_plain(message, source, now)
        else:
            self._dispatch(message, source, now)

    def _dispatch(self, message: Envelope, source: str, now: float) -> None:
        """Route a message this node accepts to the protocol whose kinds hold it."""
        self._now = now  # handshake timers need the time
        kind = message.kind
        try:
            if kind is Kind.GOSSIP:
                if self._observe is not None:
                    self._observe(message.sender, now)
                verifier = self._verifier
                if verifier is not None:
                    verifier.verify(message, now)  # the origin signed it, may publish it, fresh
                self.gossip.on_gossip(message, now)
            elif kind in self._gossip_kinds:
                if self._observe is not None:
                    self._observe(message.sender, now)
                self.gossip.on_message(message, source, now)
            elif kind in self._membership_kinds:
                self.membership.on_message(message, source, now)
                if self._tree:
                    self.gossip.on_neighbors(now)
            elif kind in _AGGREGATION_KINDS:
                if self._observe is not None:
                    self._observe(message.sender, now)
                self.aggregation.on_message(message, source, now)
            elif kind in _PUSHSUM_KINDS:
                if self._observe is not None:
                    self._observe(message.sender, now)
                self.pushsum.on_message(message, source, now)
            elif kind is Kind.PS_PONG:  # answers a replica's ping, or a client's, or both
                if self._event_manager is not None:
                    self._event_manager.on_message(message, source, now)
                if self._pubsub is not None or self._event_manager is None:
                    self.pubsub.on_message(message, source, now)
            elif kind in _EVENT_MANAGER_KINDS and self._event_manager is not None:
                self._event_manager.on_message(message, source, now)
            elif kind in _PUBSUB_CLIENT_KINDS:
                self.pubsub.on_message(message, source, now)
            elif kind in _SERVICE_KINDS:
                if self._observe is not None:
                    self._observe(message.sender, now)
                self.services.on_message(message, source, now)
            else:
                raise MalformedMessage(f"this node does not handle {kind.name}", field="kind")
        except RemoteProtocolError as error:
            self.note_rejected(error)

    # -- application API -----------------------------------------------------

    def broadcast(
        self,
        payload: object,
        *,
        topic: str,
        now: float,
        fanout: float | None = None,
        hops: int | None = None,
        group: str = "",
        reliability: float | None = None,
    ) -> int:
        """Disseminate ``payload`` to every node, or to the nodes of ``group``.

        ``fanout`` (a mean) and ``hops`` override the configured defaults for
        this message; ``reliability`` asks for a delivery probability instead
        of a fanout. Returns the message id.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        confidential = self._confidential
        if confidential is not None:
            sealed = confidential.seal(topic, payload)
            if sealed is not None:
                payload = sealed
        return self.gossip.broadcast(
            payload,
            topic=topic,
            now=now,
            fanout=fanout,
            hops=hops,
            group=group,
            reliability=reliability,
        ).message_id

    @property
    def aggregation(self) -> TreeAggregation:
        """The tree aggregation protocol (seed 000's request-response gossip)."""
        aggregation = self._aggregation
        if aggregation is None:
            aggregation = self._aggregation = TreeAggregation(
                self,
                self.config.aggregation,
                self.membership,
                self._functions,
                size_estimate=self._size_estimate,
            )
        return aggregation

    def set_reading(self, name: str, provider: ReadingProvider | None) -> None:
        """Answer aggregation queries for reading ``name`` with ``provider(now)``.

        The provider returns this node's value (what the query's function lifts:
        a number, a vector ...) or ``None`` for none; ``provider=None`` removes
        the reading. A node without the reading still relays queries for it.
        """
        self.aggregation.set_reading(name, provider)

    def aggregate(
        self,
        function: str,
        reading: str,
        *,
        now: float,
        on_result: ResultCallback,
        params: Mapping[str, object] | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
        segment: Segment = None,
    ) -> int:
        """Aggregate ``reading`` over the nodes a query reaches, with ``function(params)``.

        ``on_result`` receives one ``AggregateResult`` (value and coverage) when
        every child answered or ``timeout_s`` passed, possibly before this returns.
        A ``segment`` (a group name like ``"feeder-7"``, or a ``Scope``) limits who
        contributes; others relay. Unset arguments take ``config.aggregation``'s
        defaults. Returns the query id.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        return self.aggregation.aggregate(
            function,
            reading,
            now=now,
            on_result=on_result,
            params=params,
            fanout=fanout,
            hops=hops,
            timeout_s=timeout_s,
            replies_min=replies_min,
            segment=segment,
        )

    def collect(
        self,
        reading: str,
        *,
        now: float,
        on_result: CollectCallback,
        segment: Segment = None,
        limit: int = COLLECT_LIMIT_DEFAULT,
        bytes_max: int | None = None,
        fanout: int | None = None,
        hops: int | None = None,
        timeout_s: float | None = None,
        replies_min: int | None = None,
    ) -> int:
        """Collect ``reading`` from every node of ``segment``, one value per node, not combined.

        ``on_result`` receives one ``CollectResult``: up to ``limit`` ``(node_id,
        value)`` pairs within ``bytes_max`` (default: what fits one message), the
        number cut to stay within them (``dropped``) and the coverage. Returns the query id.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        return self.aggregation.collect(
            reading,
            now=now,
            on_result=on_result,
            segment=segment,
            limit=limit,
            bytes_max=bytes_max,
            fanout=fanout,
            hops=hops,
            timeout_s=timeout_s,
            replies_min=replies_min,
        )

    @property
    def pushsum(self) -> PushSum:
        """The push-sum protocol: running estimates of a mean, a sum or the size."""
        pushsum = self._pushsum
        if pushsum is None:
            pushsum = self._pushsum = PushSum(
                self, self.config.pushsum, self.membership, self._reading_provider
            )
        return pushsum

    def start_estimate(
        self,
        function: str,
        reading: str = "",
        *,
        now: float,
        rounds: int | None = None,
        continuous: bool = False,
    ) -> int:
        """Start a push-sum estimate of ``function`` ("mean", "sum" of ``reading``, or "size").

        Every node it reaches joins and runs ``rounds`` rounds (``config.pushsum``'s
        default); a ``continuous`` estimate restarts in a new epoch after them.
        Returns the estimate id, which any node passes to ``estimate``.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        return self.pushsum.start(function, reading, now=now, rounds=rounds, continuous=continuous)

    def restart_estimate(self, estimate_id: int, *, now: float) -> None:
        """Start the next epoch of an estimate this node started: fresh readings, fresh mass."""
        self._now = max(self._now, now)  # handshake timers need the time
        self.pushsum.restart(estimate_id, now=now)

    def estimate(self, estimate_id: int) -> Estimate | None:
        """This node's current ``Estimate`` (value, weight, rounds, epoch), or ``None``."""
        pushsum = self._pushsum
        return None if pushsum is None else pushsum.estimate(estimate_id)

    def _reading_provider(self, name: str) -> ReadingProvider | None:
        aggregation = self._aggregation
        return None if aggregation is None else aggregation.provider(name)

    @property
    def event_manager(self) -> EventManager | None:
        """This node's Event Manager role, if ``pubsub.event_managers`` lists it."""
        return self._event_manager

    @property
    def pubsub(self) -> PubSubClient:
        """The publisher and subscriber side of this node."""
        pubsub = self._pubsub
        if pubsub is None:
            pubsub = self._pubsub = PubSubClient(self, self.config.pubsub)
        return pubsub

    def publish(
        self,
        topic: str,
        value: object,
        *,
        now: float,
        unit: str = "",
        time_us: int | None = None,
        group: str = "",
    ) -> Event:
        """Publish an event on ``topic``; returns it.

        With ``pubsub.mode = "event_manager"`` it goes through the flow's Event
        Managers, at least once (``pubsub.on_acked`` hears when the flow stored
        it); with ``"gossip"`` it is disseminated to every node (or the nodes of
        ``group``), and each delivers it if a local filter matches. Raises
        ``InvalidTopic`` for a bad topic, ``PublishQueueFull`` when too many wait.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        pubsub = self.pubsub
        if self.config.pubsub.mode == "gossip":
            # The gossip message is signed by its origin, the publisher: that covers the event.
            event = pubsub.new_event(topic, value, now=now, unit=unit, time_us=time_us, sign=False)
            self.broadcast({GOSSIP_EVENT_KEY: event.to_wire()}, topic=topic, now=now, group=group)
            pubsub.on_gossip_event(event, now)  # the publisher's own filters match too
            return event
        if group:
            raise LocalProtocolError(
                "group is for pubsub.mode = 'gossip'; an Event Manager delivers by filter"
            )
        return pubsub.publish(topic, value, now=now, unit=unit, time_us=time_us)

    def subscribe(
        self,
        filters: str | Sequence[str],
        *,
        now: float,
        on_event: EventCallback,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Receive every event whose topic matches one of ``filters`` (MQTT rules), once each.

        ``on_event(event, now)`` is called per event; ``on_done`` hears the Event
        Manager's answer. Returns the request id.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        texts = [filters] if isinstance(filters, str) else list(filters)
        return self.pubsub.subscribe(texts, now=now, on_event=on_event, on_done=on_done)

    def unsubscribe(
        self,
        filters: str | Sequence[str],
        *,
        now: float,
        on_done: Callable[[SubscribeResult], None] | None = None,
    ) -> int:
        """Stop receiving events for ``filters``."""
        self._now = max(self._now, now)  # handshake timers need the time
        texts = [filters] if isinstance(filters, str) else list(filters)
        return self.pubsub.unsubscribe(texts, now=now, on_done=on_done)

    @property
    def services(self) -> ServiceCalls:
        """Service calls (seed 001's SOA services): what this node exposes and calls."""
        services = self._services
        if services is None:
            services = self._services = ServiceCalls(self, self.config.services)
        return services

    def expose(self, name: str, handler: ServiceHandler) -> None:
        """Answer calls of service ``name`` with ``handler(args, now)``.

        The handler returns plain data, or raises ``ServiceFailed(code, detail)``
        to return an application error; it runs at most once per call.
        """
        self.services.expose(name, handler)

    def call(
        self,
        target: Peer | int,
        service: str,
        args: object = None,
        *,
        now: float,
        on_result: CallResultCallback,
        timeout_s: float | None = None,
    ) -> int:
        """Call ``service`` on ``target`` (a ``Peer``, or the id of a peer in this node's view).

        ``on_result`` gets one ``CallResult``: the value, or a typed ``CallError``
        (``CallTimeout`` after ``timeout_s``, default ``config.services``'s).
        Returns the call id.
        """
        self._now = max(self._now, now)  # handshake timers need the time
        if not isinstance(target, Peer):
            known = [p for p in self.membership.neighbors() if p.node_id == target]
            if not known:
                raise LocalProtocolError(
                    f"node {target!r} is not among this node's known peers; "
                    "pass a Peer(node_id, address) to call it"
                )
            target = known[0]
        return self.services.call(
            target, service, args, now=now, on_result=on_result, timeout_s=timeout_s
        )

    def stats(self) -> dict[str, int]:
        """Counters for monitoring: deliveries, duplicates, members, refusals by reason."""
        aggregation = self._aggregation
        pushsum = self._pushsum
        services = self._services
        counters = {
            **self.membership.stats(),
            **self.gossip.stats(),
            **(aggregation.stats() if aggregation is not None else TreeAggregation.idle_stats()),
            **(pushsum.stats() if pushsum is not None else PushSum.idle_stats()),
            **(services.stats() if services is not None else ServiceCalls.idle_stats()),
            **(self._pubsub.stats() if self._pubsub is not None else {}),
            **(self._event_manager.stats() if self._event_manager is not None else {}),
            **(self._links.stats() if self._links is not None else {}),
            **({"sec_sealed_unreadable": self._sealed_unreadable} if self._links else {}),
            **(
                {f"sec_{k}": v for k, v in self._verifier.counters.items()}
                if self._verifier is not None
                else {}
            ),
            **(
                {f"sec_{k}": v for k, v in self._event_verifier.counters.items()}
                if self._event_verifier is not None
                else {}
            ),
        }
        for reason, count in (self.rejected or {}).items():
            counters[f"rejected_{reason}"] = count
        return counters

    def _size_estimate(self) -> int | None:
        """How many nodes the network has, where the membership knows."""
        membership = self.membership
        if isinstance(membership, FullMembership):
            return len(membership.neighbors()) + 1
        return None

    def note_rejected(self, error: RemoteProtocolError) -> None:
        """Count a refused message under its reason (drivers call this for decode errors).

        On a secure node the refusal also counts against the link peer that sent it.
        """
        peer = self._link_identity
        guard = self._guard
        if peer is not None and guard is not None and not isinstance(error, Throttled):
            event = event_for(error)
            if event is not None and guard.record(peer.node_id, event, self._now) is (
                Verdict.DISCONNECT
            ):
                self._disconnect(peer.node_id)
        rejected = self.rejected
        if rejected is None:
            rejected = self.rejected = {}
        rejected[error.reason] = rejected.get(error.reason, 0) + 1
