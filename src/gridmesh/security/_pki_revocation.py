"""Revocations: small statements signed by the grid authority that spread by gossip.

Theory of operation
-------------------
A grid of millions of nodes cannot ask an OCSP responder before it trusts a
peer, and a CRL fetched from one server is one more thing to fail. gridmesh
revokes a certificate with a **revocation**: a statement "serial S is revoked
since T for reason R; the certificate ends at E", signed by the authority's
Ed25519 key. It is a fact that never changes and never expires before the
certificate does, so any node may relay it, store it, merge it with what it
has (a set union) and hand it on: dissemination spreads new ones, and
anti-entropy (two nodes compare ``RevocationSet.digest()`` and swap
``to_bytes()`` when they differ) heals what gossip missed. A relay cannot
forge one (it holds no authority key) and replaying one does no harm.

Encoding (canonical CBOR, RFC 8949 4.2.1)::

    revocation = [body: bstr, signature: bstr .size 64]
    body       = [serial: uint, revoked_at: uint, reason: tstr, expires_at: uint]

The signature is Ed25519 (RFC 8032) over ``REVOCATION_CONTEXT || body``: the
domain-separation prefix means no other signed gridmesh object can pass for a
revocation. Times are Unix seconds; ``expires_at`` is the revoked
certificate's ``not_after``, which lets every node drop the entry once the
certificate has expired by itself (``RevocationSet.prune``), so the set holds
only revocations of live certificates. ``reason`` is one of RFC 5280's
CRLReason names (``RevocationReason``).

A ``RevocationSet`` is bounded by ``entries_max``: when full, the entry whose
certificate expires first is dropped (it is the one closest to mattering no
more) and ``evicted`` counts it, so the operator learns the bound is too low.

This module does no I/O and keeps no clock.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gridmesh.errors import LocalProtocolError, MalformedMessage, MessageTooLarge
from gridmesh.security._errors import BadSignature

__all__ = [
    "REVOCATIONS_MAX",
    "REVOCATION_BYTES_MAX",
    "REVOCATION_CONTEXT",
    "Revocation",
    "RevocationReason",
    "RevocationSet",
    "make_revocation",
    "verify_revocation",
]

#: Prefixed to the body before signing: a revocation signature means nothing else.
REVOCATION_CONTEXT = b"gridmesh-revocation-v1\x00"
#: Most bytes of one encoded revocation (a full one takes about 130).
REVOCATION_BYTES_MAX = 256
#: Default bound of a ``RevocationSet``.
REVOCATIONS_MAX = 65_536

_SIGNATURE_BYTES = 64
_UINT64_MAX = 2**64 - 1
_LIST_HEAD_BYTES = 9  # a CBOR array head, at most


class RevocationReason(enum.StrEnum):
    """Why a certificate was revoked (RFC 5280, 5.3.1 CRLReason, the ones a grid uses)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    CA_COMPROMISE = "ca_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"


@dataclass(frozen=True, slots=True)
class Revocation:
    """A verified revocation. ``encoded`` is its signed form, to relay as it came."""

    serial: int
    revoked_at: int
    reason: RevocationReason
    expires_at: int
    encoded: bytes


def _uint(value: object, name: str) -> int:
    if type(value) is not int or not 0 <= value <= _UINT64_MAX:
        raise LocalProtocolError(f"{name} is an integer in 0..2**64-1; got {value!r}")
    return value


def make_revocation(
    ca_key: Ed25519PrivateKey,
    serial: int,
    *,
    now: float,
    reason: RevocationReason | str = RevocationReason.UNSPECIFIED,
    expires_at: int,
) -> bytes:
    """The signed revocation of certificate ``serial`` (which ends at ``expires_at``)."""
    if not isinstance(ca_key, Ed25519PrivateKey):
        raise LocalProtocolError("a revocation is signed with the authority's Ed25519 key")
    if _uint(serial, "serial") == 0:
        raise LocalProtocolError("serial 0 names no certificate")
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError(f"now is Unix seconds; got {now!r}")
    revoked_at = _uint(math.floor(now), "now")
    try:
        reason = RevocationReason(reason)
    except ValueError:
        raise LocalProtocolError(
            f"reason is one of {[str(r) for r in RevocationReason]}; got {reason!r}"
        ) from None
    body = cbor2.dumps(
        [serial, revoked_at, str(reason), _uint(expires_at, "expires_at")], canonical=True
    )
    signature = ca_key.sign(REVOCATION_CONTEXT + body)
    return cbor2.dumps([body, signature], canonical=True)


def _refuse_tag(decoder: object, tag: object) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed here")


def _decode(data: bytes, what: str) -> object:
    """One canonical, untagged CBOR item that is all of ``data``; else ``MalformedMessage``."""
    try:
        item = cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            max_depth=4,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        canonical = cbor2.dumps(item, canonical=True)
    except (
        cbor2.CBORDecodeError,
        cbor2.CBOREncodeError,
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        MemoryError,
        UnicodeError,
    ) as exc:
        raise MalformedMessage(f"{what} is not well-formed CBOR: {exc}", field=what) from None
    if canonical != data:
        # Also most tags cbor2 decodes itself; a tagged value that survives fails the type checks.
        raise MalformedMessage(f"{what} is not canonical, untagged CBOR", field=what)
    return item


def verify_revocation(data: bytes, ca_public_key: Ed25519PublicKey) -> Revocation:
    """The revocation in ``data`` if the authority with ``ca_public_key`` signed it.

    Raises ``MessageTooLarge`` or ``MalformedMessage`` for bad bytes,
    ``BadSignature`` when the signature is not the authority's.
    """
    if not isinstance(data, bytes):
        raise MalformedMessage(f"a revocation is bytes; got {type(data).__name__}")
    if len(data) > REVOCATION_BYTES_MAX:
        raise MessageTooLarge(len(data), REVOCATION_BYTES_MAX)
    outer = _decode(data, "revocation")
    if (
        type(outer) is not list
        or len(outer) != 2
        or type(outer[0]) is not bytes
        or type(outer[1]) is not bytes
    ):
        raise MalformedMessage(
            "a revocation is [body: bytes, signature: bytes]", field="revocation"
        )
    body, signature = outer
    if len(signature) != _SIGNATURE_BYTES:
        raise BadSignature(f"an Ed25519 signature is 64 bytes; got {len(signature)}")
    try:
        ca_public_key.verify(signature, REVOCATION_CONTEXT + body)
    except InvalidSignature:
        raise BadSignature("the revocation is not signed by the grid authority") from None
    fields = _decode(body, "revocation.body")
    if type(fields) is not list or len(fields) != 4:
        raise MalformedMessage(
            "a revocation body is [serial, revoked_at, reason, expires_at]", field="revocation.body"
        )
    serial, revoked_at, reason, expires_at = fields
    for name, value in (("serial", serial), ("revoked_at", revoked_at), ("expires_at", expires_at)):
        if type(value) is not int or not 0 <= value <= _UINT64_MAX:
            raise MalformedMessage(
                f"{name} must be an unsigned integer", field=f"revocation.{name}"
            )
    if serial == 0:
        raise MalformedMessage("serial 0 names no certificate", field="revocation.serial")
    if type(reason) is not str or reason not in RevocationReason.__members__.values():
        raise MalformedMessage(f"unknown revocation reason {reason!r}", field="revocation.reason")
    return Revocation(serial, revoked_at, RevocationReason(reason), expires_at, data)


class RevocationSet:
    """The revocations a node knows of, for certificates not yet expired; bounded.

    Only add what ``verify_revocation`` returned. ``evicted`` counts entries
    dropped because the set was full.
    """

    __slots__ = ("_entries", "entries_max", "evicted")

    def __init__(self, *, entries_max: int = REVOCATIONS_MAX) -> None:
        if type(entries_max) is not int or entries_max < 1:
            raise LocalProtocolError(f"entries_max is a positive integer; got {entries_max!r}")
        self.entries_max = entries_max
        self.evicted = 0
        self._entries: dict[int, Revocation] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, serial: object) -> bool:
        return serial in self._entries

    def __iter__(self) -> Iterator[Revocation]:
        """The entries in serial order."""
        return iter([self._entries[serial] for serial in sorted(self._entries)])

    def is_revoked(self, serial: int) -> bool:
        return serial in self._entries

    def get(self, serial: int) -> Revocation | None:
        return self._entries.get(serial)

    def add(self, revocation: Revocation) -> bool:
        """Whether ``revocation`` is new to the set (and kept); a known serial changes nothing."""
        if not isinstance(revocation, Revocation):
            raise LocalProtocolError(f"expected a Revocation; got {type(revocation).__name__}")
        if revocation.serial in self._entries:
            return False
        if len(self._entries) >= self.entries_max:
            soonest = min(self._entries.values(), key=lambda entry: entry.expires_at)
            self.evicted += 1
            if soonest.expires_at <= revocation.expires_at:
                del self._entries[soonest.serial]
            else:
                return False  # the newcomer is the one that matters least
        self._entries[revocation.serial] = revocation
        return True

    def prune(self, now: float) -> int:
        """Drop the revocations of certificates expired at ``now`` (Unix seconds); how many."""
        expired = [serial for serial, entry in self._entries.items() if entry.expires_at < now]
        for serial in expired:
            del self._entries[serial]
        return len(expired)

    def digest(self) -> bytes:
        """SHA-256 over the sorted serials: equal digests, equal sets (for anti-entropy)."""
        hasher = hashlib.sha256()
        for serial in sorted(self._entries):
            hasher.update(serial.to_bytes(8, "big"))
        return hasher.digest()

    def to_bytes(self) -> bytes:
        """Every entry's signed form, in serial order, as one CBOR array."""
        return cbor2.dumps([entry.encoded for entry in self], canonical=True)

    @classmethod
    def from_bytes(
        cls, data: bytes, ca_public_key: Ed25519PublicKey, *, entries_max: int = REVOCATIONS_MAX
    ) -> RevocationSet:
        """The set ``to_bytes`` wrote, each entry verified again with ``ca_public_key``.

        Raises ``MessageTooLarge``, ``MalformedMessage`` or ``BadSignature``.
        """
        revocations = cls(entries_max=entries_max)
        if not isinstance(data, bytes):
            raise MalformedMessage(f"a revocation list is bytes; got {type(data).__name__}")
        size_max = _LIST_HEAD_BYTES + entries_max * (REVOCATION_BYTES_MAX + 3)
        if len(data) > size_max:
            raise MessageTooLarge(len(data), size_max)
        items = _decode(data, "revocations")
        if type(items) is not list or any(type(item) is not bytes for item in items):
            raise MalformedMessage(
                "a revocation list is an array of revocations", field="revocations"
            )
        if len(items) > entries_max:
            raise MalformedMessage(
                f"{len(items)} revocations; at most entries_max={entries_max}", field="revocations"
            )
        for item in items:
            revocations.add(verify_revocation(item, ca_public_key))
        return revocations
