"""End-to-end signatures on pub/sub events: the publisher signs, every node that takes one checks.

Theory of operation
-------------------
An event (``protocols/pubsub``) travels publisher -> Event Manager -> its
replicas -> subscribers. Links authenticate each hop, but an Event Manager is
a relay like any gossip node: a compromised one could alter an event's value,
or make one up in another node's name. So the publisher signs each event and
every node that takes it checks before it stores, replicates or delivers it
(seed 004: security must not trust the lower layers):

* **what is signed**: the event's *content bytes*, the CBOR array ``[source,
  event_id, seq, topic, time_us, value, unit]`` as ``cbor2`` encodes it.
  Nothing on the path rewrites an event, so it has no unsigned part; a
  receiver encodes the content it parsed again (one encoding of plain data:
  floats as doubles, map keys in the received order) to check it;
* ``auth`` is the CBOR array ``[cose_sign1, certificate]``: an untagged
  COSE_Sign1 (RFC 9052, EdDSA, detached payload, ``kid`` = the publisher's key
  id) and the publisher's certificate, so a subscriber that never met the
  publisher can check it. Certificates are verified once and cached
  (``IdentityCache``, shared with the gossip signatures);
* the checks, in order (each a ``SecurityError``): auth's shape; the
  certificate (grid authority, validity, revocation) and that it names the
  event's ``source``; the signature; the publisher's role's right to publish on
  the topic (``AccessPolicy``).

Replay. Events are named by ``(source, event_id)`` and every Event Manager
and subscriber drops a name it has seen (bounded memories). An Event Manager
also refuses a published event older than the replay guard's freshness bound
(``check_fresh``), so an old event captured on the wire cannot be published
again once it is forgotten. Subscribers do not apply the bound: an event queued
for a subscriber that was away is legitimately old (docs/SECURITY.md).
"""

from __future__ import annotations

import cbor2

from gridmesh.security._acl import AccessPolicy
from gridmesh.security._cose import sign1, verify1
from gridmesh.security._cose_cbor import CborSubsetError, read_one
from gridmesh.security._errors import BadSignature, CertificateInvalid, Stale
from gridmesh.security._link import LinkCredentials
from gridmesh.security._origin import IdentityCache
from gridmesh.security._pki import NodeIdentity
from gridmesh.wire import AUTH_BYTES_MAX

__all__ = ["EventSigner", "EventVerifier"]


class EventSigner:
    """Signs the events this node publishes: ``sign(content) -> auth``."""

    __slots__ = ("_credentials",)

    def __init__(self, credentials: LinkCredentials) -> None:
        self._credentials = credentials

    def sign(self, content: bytes) -> bytes:
        identity = self._credentials.identity
        signature = sign1(None, self._credentials.key, kid=identity.key_id, detached=content)
        return cbor2.dumps([signature, identity.certificate])


class EventVerifier:
    """Checks an event's publisher signature and right to publish it."""

    __slots__ = ("_acl", "_freshness_s", "_identities", "counters")

    def __init__(self, acl: AccessPolicy, identities: IdentityCache, *, freshness_s: float) -> None:
        self._acl = acl
        self._identities = identities
        self._freshness_s = freshness_s
        self.counters = {"events_verified": 0}

    def verify(
        self, source: int, topic: str, content: bytes, auth: bytes | None, now: float
    ) -> NodeIdentity:
        """The publisher's identity if the event passes every check; a ``SecurityError`` if not."""
        if auth is None:
            raise BadSignature("an unsigned event", field="auth")
        signature, certificate = _auth_fields(auth)
        identity = self._identities.identity(certificate, now)
        if identity.node_id != source:
            raise CertificateInvalid(
                f"node {identity.node_id}'s certificate on an event from node {source}",
                field="auth",
            )
        verify1(signature, identity.public_key, detached=content, cose_bytes_max=AUTH_BYTES_MAX)
        self._acl.check_publish(identity.role, identity.node_id, topic, identity.permissions)
        self.counters["events_verified"] += 1
        return identity

    def check_fresh(self, time_us: int, now: float) -> None:
        """``Stale`` unless an event taken at ``time_us`` is within the freshness bound of now."""
        age_s = now - time_us / 1e6
        if age_s > self._freshness_s:
            raise Stale(
                f"event taken {age_s:.0f} s ago, more than the {self._freshness_s:.0f} s bound",
                field="time_us",
            )


def _auth_fields(auth: bytes) -> tuple[bytes, bytes]:
    if len(auth) > AUTH_BYTES_MAX:
        raise BadSignature(f"auth longer than {AUTH_BYTES_MAX} bytes", field="auth")
    try:
        fields = read_one(auth, depth_max=2)  # strict: no tags, floats or long forms
    except CborSubsetError:
        raise BadSignature("auth is not strict CBOR", field="auth") from None
    if type(fields) is not list or len(fields) != 2:
        raise BadSignature("expected [cose_sign1, certificate]", field="auth")
    signature, certificate = fields
    if type(signature) is not bytes or type(certificate) is not bytes:
        raise BadSignature("expected bytes", field="auth")
    return signature, certificate
