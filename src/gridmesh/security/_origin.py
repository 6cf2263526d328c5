"""End-to-end signatures on relayed messages: the origin signs, every receiver verifies.

Theory of operation
-------------------
A gossip message is relayed by nodes its origin never met, and every relay is
a potential attacker (seed 004: security must not trust the lower layers).
So the origin signs what a relay must not change, and every node verifies
before it delivers or forwards:

* **what is signed**: the envelope's end-to-end fields ``[version, kind,
  message_id, origin, topic, created_us, body]`` exactly as encoded (the codec
  keeps the received bytes, so the verifier signs nothing it re-encoded), plus,
  as COSE external data, ``[epoch, seq, hops]``: the origin's
  incarnation (``epoch``) and its sequence number for replay protection, and
  the hop count it gave the message;
* **what is not signed**: ``sender`` and ``hops_left``, which every relay
  rewrites. ``hops_left`` may never exceed the signed ``hops``: a relay cannot
  give a message a longer life than its origin did (and the freshness bound of
  the replay guard ends it in time whatever a relay does);
* ``auth`` is the CBOR array ``[cose_sign1, epoch, seq, hops, certificate]``:
  an untagged COSE_Sign1 (RFC 9052, EdDSA, detached payload, ``kid`` = the
  origin's key id), and the origin's certificate, so a node that never met the
  origin can check it. A certificate is verified once per key id and cached.

``OriginVerifier.verify`` checks, in this order, and raises the matching
``SecurityError``: the auth's shape; the certificate (the grid's authority,
validity, revocation) and that it names the envelope's origin; the signature;
``hops_left <= hops``; the role's right to publish on the topic (``AccessPolicy``);
then freshness and the replay window (``ReplayGuard``: only after the
signature, or a forger could move the origin's window). A message verified
once is remembered (a digest of its end-to-end bytes), so copies relayed by
gossip cost a hash, not a signature check.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import cbor2

from gridmesh.errors import MalformedMessage
from gridmesh.security._acl import AccessPolicy
from gridmesh.security._cose import sign1, verify1
from gridmesh.security._cose_cbor import CborSubsetError, read_one
from gridmesh.security._errors import BadSignature, CertificateInvalid
from gridmesh.security._link import LinkCredentials
from gridmesh.security._pki import NodeIdentity, verify_node_certificate
from gridmesh.security._replay import ReplayGuard
from gridmesh.wire import AUTH_BYTES_MAX, Envelope, encode, int_bytes

__all__ = ["IdentityCache", "OriginSigner", "OriginVerifier", "signed_fields"]

_IDENTITIES_MAX = 65_536


def signed_fields(message: Envelope) -> bytes:
    """The encoded end-to-end fields an origin signs: the prefix less its head and ``auth``."""
    prefix = message.wire_prefix
    if prefix is None:
        encode(message)
        prefix = message.wire_prefix
        assert prefix is not None
    auth = message.auth
    auth_bytes = 1 if auth is None else int_bytes(len(auth)) + len(auth)
    return prefix[1 : len(prefix) - auth_bytes]


class OriginSigner:
    """Signs the messages this node originates: ``sign(message) -> message with auth``."""

    __slots__ = ("_credentials", "_epoch", "_seq")

    def __init__(self, credentials: LinkCredentials, epoch: int) -> None:
        self._credentials = credentials
        self._epoch = epoch
        self._seq = 0

    def sign(self, message: Envelope) -> Envelope:
        self._seq += 1
        unsigned = replace(message, auth=None, wire_prefix=None)
        aad = cbor2.dumps([self._epoch, self._seq, message.hops_left])
        identity = self._credentials.identity
        signature = sign1(
            None,
            self._credentials.key,
            kid=identity.key_id,
            external_aad=aad,
            detached=signed_fields(unsigned),
        )
        auth = cbor2.dumps(
            [signature, self._epoch, self._seq, message.hops_left, identity.certificate]
        )
        return replace(message, auth=auth, wire_prefix=None)


class OriginVerifier:
    """Checks a relayed message's origin signature, rights, hops and freshness."""

    __slots__ = ("_acl", "_credentials", "_replay", "_verified", "counters", "identities")

    def __init__(
        self,
        credentials: LinkCredentials,
        acl: AccessPolicy,
        replay: ReplayGuard,
        *,
        verified_max: int = 65_536,
    ) -> None:
        self._credentials = credentials
        self._acl = acl
        self._replay = replay
        self.identities = IdentityCache(credentials)
        self._verified = _Remembered(verified_max)
        self.counters = {"origin_verified": 0, "origin_copies": 0}

    def verify(self, message: Envelope, now: float) -> NodeIdentity | None:
        """The origin's identity if ``message`` passes every check; a ``SecurityError`` if not.

        None for a copy of a message already verified (its first copy was checked).
        """
        if message.auth is None:
            raise BadSignature("an unsigned message from a relay", field="auth")
        fields = signed_fields(message)
        digest = hashlib.blake2b(fields + message.auth, digest_size=16).digest()
        signed_hops = self._verified.get(digest)
        if signed_hops is not None:  # a copy of a message already checked; only hops vary
            _check_hops(message, signed_hops)
            self.counters["origin_copies"] += 1
            return None
        signature, epoch, seq, hops, certificate = _auth_fields(message.auth)
        identity = self.identities.identity(certificate, now)
        if identity.node_id != message.origin:
            raise CertificateInvalid(
                f"node {identity.node_id}'s certificate on a message from node {message.origin}",
                field="auth",
            )
        verify1(
            signature,
            identity.public_key,
            external_aad=cbor2.dumps([epoch, seq, hops]),
            detached=fields,
            cose_bytes_max=AUTH_BYTES_MAX,
        )
        _check_hops(message, hops)
        self._acl.check_publish(
            identity.role, identity.node_id, message.topic, identity.permissions
        )
        self._replay.check(
            message.origin,
            epoch,
            seq,
            self._credentials.epoch_s + message.created_us / 1e6,
            self._credentials.epoch_s + now,
        )
        self._verified.put(digest, hops)
        self.counters["origin_verified"] += 1
        return identity


class IdentityCache:
    """Certificates verified once, by their bytes: a cached identity is rechecked only for
    validity period and revocation (cheap), a new certificate fully."""

    __slots__ = ("_credentials", "_identities")

    def __init__(self, credentials: LinkCredentials) -> None:
        self._credentials = credentials
        self._identities: dict[bytes, NodeIdentity] = {}

    def identity(self, certificate: bytes, now: float) -> NodeIdentity:
        """The identity ``certificate`` proves at ``now``; ``CertificateInvalid`` if none."""
        known = self._identities.get(certificate)  # bytes hash in C: cheaper than a digest
        credentials = self._credentials
        if known is not None:
            moment = credentials.epoch_s + now
            revocations = credentials.revocations
            if known.not_before - credentials.clock_skew_s <= moment <= known.not_after + (
                credentials.clock_skew_s
            ) and (revocations is None or not revocations.is_revoked(known.serial)):
                return known
        identity = verify_node_certificate(
            certificate,
            credentials.authority,
            now=credentials.epoch_s + now,
            revocations=credentials.revocations,
            clock_skew_s=credentials.clock_skew_s,
        )
        if len(self._identities) >= _IDENTITIES_MAX:
            self._identities.clear()
        self._identities[certificate] = identity
        return identity


def _check_hops(message: Envelope, signed: int) -> None:
    if message.hops_left > signed:
        raise BadSignature(
            f"hops_left {message.hops_left} exceeds the {signed} its origin signed",
            field="hops_left",
        )


class _Remembered:
    """Digest -> signed hop count of the newest verified messages, two generations."""

    __slots__ = ("_current", "_generation_max", "_previous")

    def __init__(self, capacity: int) -> None:
        self._generation_max = max(1, capacity // 2)
        self._current: dict[bytes, int] = {}
        self._previous: dict[bytes, int] = {}

    def get(self, digest: bytes) -> int | None:
        found = self._current.get(digest)
        return self._previous.get(digest) if found is None else found

    def put(self, digest: bytes, hops: int) -> None:
        if len(self._current) >= self._generation_max:
            self._previous, self._current = self._current, {}
        self._current[digest] = hops


def _auth_fields(auth: bytes) -> tuple[bytes, int, int, int, bytes]:
    try:
        fields = read_one(auth, depth_max=2)  # strict: no tags, floats or long forms
    except CborSubsetError:
        raise BadSignature("auth is not strict CBOR", field="auth") from None
    if type(fields) is not list or len(fields) != 5:
        raise BadSignature("expected [cose_sign1, epoch, seq, hops, certificate]", field="auth")
    signature, epoch, seq, hops, certificate = fields
    if type(signature) is not bytes or type(certificate) is not bytes:
        raise BadSignature("expected bytes", field="auth")
    for number in (epoch, seq, hops):
        if type(number) is not int or not 0 <= number < 2**64:
            raise MalformedMessage("expected an unsigned 64-bit integer", field="auth")
    return signature, epoch, seq, hops, certificate
