"""Security errors: what a peer sent that fails authentication or authorization.

Each is a ``RemoteProtocolError`` with a stable ``reason`` (the metrics label a
node counts refusals under) and structured fields, never only a formatted
string. ``SecurityConfigError`` is the local side: a key or certificate file
this node was given is unusable.
"""

from __future__ import annotations

from gridmesh.errors import GridmeshError, RemoteProtocolError

__all__ = [
    "BadSignature",
    "CertificateInvalid",
    "CertificateRevoked",
    "DecryptionFailed",
    "Replayed",
    "SecurityConfigError",
    "SecurityError",
    "Stale",
    "Throttled",
    "Unauthorized",
    "Uncertified",
]


class SecurityError(RemoteProtocolError):
    """A message failed a security check; it is dropped and counted under ``reason``."""

    reason = "security"


class BadSignature(SecurityError):
    """A signature (COSE_Sign1) does not verify, or is malformed."""

    reason = "bad_signature"


class DecryptionFailed(SecurityError):
    """An encrypted payload (COSE_Encrypt0, a link AEAD) does not decrypt."""

    reason = "decryption_failed"


class Uncertified(SecurityError):
    """The sender has not proved possession of a certificate of this grid's CA."""

    reason = "uncertified"


class CertificateInvalid(SecurityError):
    """A certificate is malformed, expired, not yet valid, or not signed by the grid CA."""

    reason = "certificate_invalid"


class CertificateRevoked(SecurityError):
    """A certificate's serial number is on the grid's revocation list."""

    reason = "revoked"


class Unauthorized(SecurityError):
    """The sender's role and permissions do not allow this topic or service."""

    reason = "unauthorized"


class Replayed(SecurityError):
    """A message this node has accepted before, or one behind the origin's window."""

    reason = "replayed"


class Stale(SecurityError):
    """A message created too long ago, or too far in the future (``freshness_s``)."""

    reason = "stale"


class Throttled(SecurityError):
    """A peer sent more than its rate (per-peer token bucket), or is graylisted."""

    reason = "throttled"


class SecurityConfigError(GridmeshError):
    """A key, certificate or trust file given to this node is unusable: names the file."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
