"""Ed25519 signature checks through libsodium (PyNaCl): the hot path of every secure node.

Every signed gossip message is checked once by every node it reaches, so the
check's cost bounds a node's rate of new messages. OpenSSL's Ed25519 verify
(through ``cryptography``) takes ~85 us a signature on our reference machine;
libsodium's takes ~42 us (``bench/security.py`` prints both). Keys, signing
and certificates stay with ``cryptography``; only the check of a signature
against a known public key comes here.

libsodium's check is the strict one (RFC 8032, section 5.1.7, with the
additional refusals libsodium documents): it refuses non-canonical ``S``,
small-order public keys and small-order ``R``, which OpenSSL may accept.
Honest signers (``cryptography``'s, libsodium's, any RFC 8032 signer) never
produce those, so the two agree on every honest signature; the published
vectors in ``tests/test_cose.py`` and ``tests/test_ed25519.py`` check it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.exceptions import ValueError as NaclValueError

__all__ = ["SIGNATURE_BYTES", "ed25519_valid"]

SIGNATURE_BYTES = 64


def ed25519_valid(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + data, public_key.public_bytes_raw())
    except (BadSignatureError, NaclValueError):
        return False
    return True
