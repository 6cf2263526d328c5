"""Confidential topics: payloads only the holders of a group key can read, end to end.

Theory of operation
-------------------
Seed 001's Crypto Manager keeps data confidential; a link key (``_link``) hides
it from the network, but every relay of a gossip message is a link's far end
and reads it. For topics that only some roles may read (a DR command for one
region's aggregators, a customer's readings), the authority hands a **group
key** to exactly the nodes allowed to read: a 256-bit AES-GCM key with a key id
and the topic filter it covers (``GroupKey``). The publisher encrypts the
payload under the key whose filter matches the topic (COSE_Encrypt0, RFC 9052;
A256GCM; a random 96-bit IV per message; the topic as external data, so a
ciphertext cannot be moved to another topic), and sends
``{"gridmesh.sealed": cose_encrypt0}`` in its place. Relays relay it (they
need not read it); a node that holds the key decrypts it before handing it to
the application; one that does not hands nothing over and counts it.

Who may read is decided by who gets the key: the authority's key files
(``gridmesh pki group-key``). The origin's signature (``_origin``) still covers
the sealed payload, so a relay can neither read nor alter it. Random IVs are
safe for far more than the 2**32 messages per key this design expects;
rotate keys before that (a new key id, then retire the old file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cbor2

from gridmesh.errors import MalformedMessage
from gridmesh.security._cose import ALG_A256GCM, decrypt0, encrypt0, encrypt0_kid, random_iv
from gridmesh.security._errors import DecryptionFailed
from gridmesh.security._link import KeySource
from gridmesh.topics import matches, validate_topic_filter
from gridmesh.wire import check_plain, decode_plain

__all__ = ["SEALED_KEY", "ConfidentialTopics", "GroupKey"]

#: The key of a payload map that carries a sealed payload instead of the payload.
SEALED_KEY = "gridmesh.sealed"
_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A group key: what it is called, which topics it seals, and the key."""

    kid: bytes
    topic_filter: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.kid) is not bytes or not 1 <= len(self.kid) <= 32:
            raise ValueError("a group key id is 1..32 bytes")
        if type(self.key) is not bytes or len(self.key) != _KEY_BYTES:
            raise ValueError(f"a group key is {_KEY_BYTES} bytes (AES-256-GCM)")
        object.__setattr__(self, "topic_filter", validate_topic_filter(self.topic_filter))


class ConfidentialTopics:
    """The group keys a node holds: seal what it publishes, open what it can read."""

    __slots__ = ("_by_kid", "_keys", "_source")

    def __init__(self, keys: Sequence[GroupKey], source: KeySource) -> None:
        self._keys = tuple(keys)
        self._by_kid = {key.kid: key for key in self._keys}
        self._source = source

    def key_for(self, topic: str) -> GroupKey | None:
        """The first held key whose filter matches ``topic``."""
        return next((key for key in self._keys if matches(key.topic_filter, topic)), None)

    def seal(self, topic: str, payload: object) -> dict[str, object] | None:
        """``{"gridmesh.sealed": ...}`` for a confidential topic this node holds a key for.

        None when no held key covers the topic (the payload goes as it is).
        """
        key = self.key_for(topic)
        if key is None:
            return None
        check_plain(payload)
        sealed = encrypt0(
            cbor2.dumps(payload),
            key.key,
            kid=key.kid,
            iv=random_iv(self._source),
            external_aad=topic.encode(),
            alg=ALG_A256GCM,
        )
        return {SEALED_KEY: sealed}

    def open(self, topic: str, payload: object) -> tuple[bool, object]:
        """``(True, plaintext payload)``, or ``(False, None)`` when no held key opens it.

        A sealed payload that does not decrypt under the key it names raises
        ``DecryptionFailed``.
        """
        assert is_sealed(payload)
        sealed = payload[SEALED_KEY]  # type: ignore[index]
        if type(sealed) is not bytes:
            raise DecryptionFailed("a sealed payload is bytes", field="payload")
        key = self._by_kid.get(encrypt0_kid(sealed))
        if key is None:
            return False, None
        plaintext = decrypt0(sealed, key.key, external_aad=topic.encode(), alg=ALG_A256GCM)
        try:
            return True, decode_plain(plaintext)
        except MalformedMessage:
            raise DecryptionFailed(
                "a sealed payload that is not plain data", field="payload"
            ) from None


def is_sealed(payload: object) -> bool:
    """Whether a gossip payload is a sealed one (``{"gridmesh.sealed": bytes}``)."""
    return type(payload) is dict and len(payload) == 1 and SEALED_KEY in payload
