"""Security: grid PKI, COSE signatures and encryption, ACLs, replay and flood protection.

Sans-I/O like ``protocols/``: no clock (``now`` comes in), no files, no global
randomness. Key files are read and written by ``gridmesh.keystore``.
"""

from __future__ import annotations

from gridmesh.security._errors import (
    BadSignature,
    CertificateInvalid,
    CertificateRevoked,
    DecryptionFailed,
    Replayed,
    SecurityConfigError,
    SecurityError,
    Stale,
    Unauthorized,
    Uncertified,
)

__all__ = [
    "BadSignature",
    "CertificateInvalid",
    "CertificateRevoked",
    "DecryptionFailed",
    "Replayed",
    "SecurityConfigError",
    "SecurityError",
    "Stale",
    "Unauthorized",
    "Uncertified",
]
