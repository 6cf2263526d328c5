"""Security: grid PKI, COSE signatures and encryption, ACLs, replay and flood protection.

Sans-I/O like ``protocols/``: no clock (``now`` comes in), no files, no global
randomness. Key files are read and written by ``gridmesh.keystore``. The pieces:

* ``_roles``, ``_pki``, ``_pki_revocation``: roles and permissions, the grid CA,
  node certificates (X.509, Ed25519) and signed revocations (docs/PKI.md);
* ``_cose``: COSE_Sign1 (EdDSA) and COSE_Encrypt0 (AES-GCM, ChaCha20/Poly1305),
  RFC 9052, on cbor2 and cryptography (docs/COSE.md);
* ``_acl``, ``_replay``, ``_score``: role-based ACLs per topic filter and service,
  per-origin replay windows, per-peer rate limits and scores (docs/ACCESS.md);
* ``_link``: the mutually authenticated handshake (X25519, certificate-signed,
  SIGMA-style) and sealed frames (ChaCha20-Poly1305, anti-replay window) of a
  link between two nodes; not yet driven by ``Node``;
* ``_errors``: what a refused message is counted as.
"""

from __future__ import annotations

from gridmesh.security._acl import (
    DEFAULT_ACL_RULES,
    AccessDenied,
    AccessPolicy,
    AclConfig,
    AclRule,
    Action,
    Grant,
    covers,
)
from gridmesh.security._cose import (
    ALG_A128GCM,
    ALG_A192GCM,
    ALG_A256GCM,
    ALG_CHACHA20_POLY1305,
    ALG_EDDSA,
    COSE_BYTES_MAX,
    cose_kid,
    decrypt0,
    encrypt0,
    encrypt0_kid,
    iv_from_counter,
    random_iv,
    sign1,
    verify1,
)
from gridmesh.security._errors import (
    BadSignature,
    CertificateInvalid,
    CertificateRevoked,
    DecryptionFailed,
    Replayed,
    SecurityConfigError,
    SecurityError,
    Stale,
    Throttled,
    Unauthorized,
    Uncertified,
)
from gridmesh.security._pki import (
    GRIDMESH_IDENTITY_OID,
    Authority,
    NodeIdentity,
    create_authority,
    inspect_node_certificate,
    issue_node_certificate,
    key_id_of,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._pki_revocation import (
    Revocation,
    RevocationReason,
    RevocationSet,
    make_revocation,
    verify_revocation,
)
from gridmesh.security._replay import (
    ReplayConfig,
    ReplayedMessage,
    ReplayGuard,
    StaleMessage,
)
from gridmesh.security._roles import (
    DEFAULT_PERMISSIONS,
    Permissions,
    Role,
    default_permissions,
)
from gridmesh.security._score import (
    PeerEvent,
    PeerGuard,
    ScoreConfig,
    TokenBucket,
    Verdict,
    event_for,
)

__all__ = [
    "ALG_A128GCM",
    "ALG_A192GCM",
    "ALG_A256GCM",
    "ALG_CHACHA20_POLY1305",
    "ALG_EDDSA",
    "COSE_BYTES_MAX",
    "DEFAULT_ACL_RULES",
    "DEFAULT_PERMISSIONS",
    "GRIDMESH_IDENTITY_OID",
    "AccessDenied",
    "AccessPolicy",
    "AclConfig",
    "AclRule",
    "Action",
    "Authority",
    "BadSignature",
    "CertificateInvalid",
    "CertificateRevoked",
    "DecryptionFailed",
    "Grant",
    "NodeIdentity",
    "PeerEvent",
    "PeerGuard",
    "Permissions",
    "ReplayConfig",
    "ReplayGuard",
    "Replayed",
    "ReplayedMessage",
    "Revocation",
    "RevocationReason",
    "RevocationSet",
    "Role",
    "ScoreConfig",
    "SecurityConfigError",
    "SecurityError",
    "Stale",
    "StaleMessage",
    "Throttled",
    "TokenBucket",
    "Unauthorized",
    "Uncertified",
    "Verdict",
    "cose_kid",
    "covers",
    "create_authority",
    "decrypt0",
    "default_permissions",
    "encrypt0",
    "encrypt0_kid",
    "event_for",
    "inspect_node_certificate",
    "issue_node_certificate",
    "iv_from_counter",
    "key_id_of",
    "load_authority",
    "make_revocation",
    "random_iv",
    "sign1",
    "verify1",
    "verify_node_certificate",
    "verify_revocation",
]
