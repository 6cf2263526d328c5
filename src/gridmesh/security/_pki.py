"""The grid PKI: one authority, node certificates that carry a role and permissions.

Theory of operation
-------------------
Seed 001's Trust Manager: "unauthorized peers can neither call services nor
receive data". A grid has one **authority** (CA) whose self-signed X.509 v3
certificate every node holds; every node holds an end-entity certificate the
authority issued for its Ed25519 key. Seed 004 asks for standard algorithms
and proven libraries, so certificates are plain RFC 5280 X.509 with Ed25519
signatures (RFC 8410), built and parsed by ``cryptography``; ``openssl x509``
reads them. Nothing here is new cryptography.

A node certificate carries, besides the usual profile (docs/PKI.md):

* a SAN URI ``gridmesh:node:<node_id>`` (decimal, 1..2**64-1);
* the **gridmesh identity extension**, OID ``GRIDMESH_IDENTITY_OID``,
  non-critical: an ASN.1 OCTET STRING holding canonical CBOR (RFC 8949,
  4.2.1) ``{"node_id": int, "role": str, "permissions": {"publish": [...],
  "subscribe": [...], "call": [...], "expose": [...]}}``. The permissions
  are stored expanded: the certificate names this node's own topics.

``verify_node_certificate`` is strict and refuses, with ``CertificateInvalid``
and a detail saying which rule broke: more than ``CERTIFICATE_BYTES_MAX``
bytes; not DER; not v3; a signature that is not Ed25519 or does not verify
with the authority's key; an issuer or authority key id other than the
authority's; outside its validity or the authority's; a CA certificate (or
one allowed to sign certificates); an unknown critical extension; a key that
is not Ed25519; no single ``gridmesh:node`` SAN; a missing or malformed
identity extension, or one whose node id differs from the SAN's. The
signature is checked before anything else inside the certificate is read.

Time is wall-clock Unix seconds (``now``: int or float; certificates hold
whole seconds), never the monotonic clock of a protocol core: a driver that
verifies passes ``time.time()``. Validity bounds are inclusive (RFC 5280,
4.1.2.5). Randomness is not needed: Ed25519 signatures are deterministic, a
node serial comes from the caller, the authority's serial from its key.

This module does no I/O; keys are objects and files are ``gridmesh.keystore``'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from gridmesh.errors import LocalProtocolError
from gridmesh.security._errors import CertificateInvalid, CertificateRevoked
from gridmesh.security._pki_revocation import RevocationSet
from gridmesh.security._roles import NODE_ID_MAX, Permissions, Role, default_permissions

__all__ = [
    "AUTHORITY_NAME_CHARS_MAX",
    "CERTIFICATE_BYTES_MAX",
    "GRIDMESH_IDENTITY_OID",
    "IDENTITY_BYTES_MAX",
    "KEY_ID_BYTES",
    "NODE_URI_PREFIX",
    "SERIAL_MAX",
    "VALID_DAYS_MAX",
    "Authority",
    "NodeIdentity",
    "create_authority",
    "inspect_node_certificate",
    "issue_node_certificate",
    "key_id_of",
    "load_authority",
    "verify_node_certificate",
]

#: 2.25.<UUID as an integer> (ITU-T X.667): no registration needed, no clash.
#: The UUID is fb448e44-2a78-4ffb-be86-c36a0d58a2c0, drawn once (uuid4) for
#: gridmesh's identity extension; a new format of the extension gets a new OID.
GRIDMESH_IDENTITY_OID = x509.ObjectIdentifier("2.25.333992188631216841106434835716242973376")
#: A certificate larger than this is refused unread (a node receives them from peers).
CERTIFICATE_BYTES_MAX = 8192
#: Most bytes of the identity extension's CBOR (permissions are the bulk).
IDENTITY_BYTES_MAX = 4096
#: Serials are positive and fit an unsigned 64-bit integer (CBOR, revocations).
SERIAL_MAX = 2**64 - 1
#: Longest validity the authority or a node certificate may be given.
VALID_DAYS_MAX = 36_525
#: X.509's upper bound on a common name (RFC 5280, ub-common-name).
AUTHORITY_NAME_CHARS_MAX = 64
#: ``NodeIdentity.key_id``: the first bytes of SHA-256 of the raw public key.
KEY_ID_BYTES = 16
NODE_URI_PREFIX = "gridmesh:node:"

_DAY_S = 86_400
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)
_Refuse = Callable[[str], CertificateInvalid]
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the last time X.509 can say
_IDENTITY_KEYS = frozenset({"node_id", "role", "permissions"})
_KNOWN_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        GRIDMESH_IDENTITY_OID,
    }
)
# What the parsers are known to raise on hostile input besides their own.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
    UnicodeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.InvalidVersion,
    CryptographyDeprecationWarning,  # raised, not printed: see _warnings_raised
    x509.UnsupportedGeneralNameType,
    cbor2.CBORDecodeError,
)


def key_id_of(public_key: Ed25519PublicKey) -> bytes:
    """A stable key id (COSE ``kid``): SHA-256 of the raw 32-byte key, first 16 bytes."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_BYTES]


@dataclass(frozen=True, slots=True, eq=False)
class Authority:
    """A grid authority's certificate, checked once by ``load_authority``."""

    certificate: x509.Certificate
    name: str
    public_key: Ed25519PublicKey
    key_identifier: bytes  # its SubjectKeyIdentifier; node certificates name it
    not_before: int
    not_after: int

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


@dataclass(frozen=True, slots=True, eq=False)
class NodeIdentity:
    """What a verified node certificate says: who the node is and what it may do.

    Two identities are equal when their certificates are the same bytes.
    ``not_before`` and ``not_after`` are Unix seconds, inclusive.
    """

    node_id: int
    role: Role
    permissions: Permissions
    public_key: Ed25519PublicKey = field(repr=False)
    serial: int
    not_before: int
    not_after: int
    certificate: bytes = field(repr=False)  # DER
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        assert 1 <= self.node_id <= NODE_ID_MAX
        assert isinstance(self.public_key, Ed25519PublicKey)
        object.__setattr__(self, "key_id", key_id_of(self.public_key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeIdentity):
            return NotImplemented
        return self.certificate == other.certificate

    def __hash__(self) -> int:
        return hash(self.certificate)


# -- time -------------------------------------------------------------------


def _unix_seconds(now: float, name: str = "now") -> int:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise LocalProtocolError(f"{name} is Unix seconds (a finite number); got {now!r}")
    seconds = math.floor(now)
    if not 0 <= seconds <= _LAST_SECOND:
        raise LocalProtocolError(f"{name} is outside 1970..9999 in Unix seconds: {now!r}")
    return seconds


def _datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _validity(now: float, valid_days: int) -> tuple[int, int]:
    if type(valid_days) is not int or not 1 <= valid_days <= VALID_DAYS_MAX:
        raise LocalProtocolError(
            f"valid_days is an integer in 1..{VALID_DAYS_MAX}; got {valid_days!r}"
        )
    start = _unix_seconds(now)
    end = start + valid_days * _DAY_S
    if end > _LAST_SECOND:
        raise LocalProtocolError("the validity would end after 9999-12-31")
    return start, end


def _seconds_of(moment: datetime) -> int:
    return int(moment.timestamp())


# -- the authority ----------------------------------------------------------


def create_authority(name: str, key: Ed25519PrivateKey, *, now: float, valid_days: int) -> bytes:
    """A self-signed X.509 v3 authority certificate (DER) for ``key``, valid from ``now``.

    Deterministic: the serial derives from the key and ``now``.
    """
    if not isinstance(key, Ed25519PrivateKey):
        raise LocalProtocolError(f"the authority's key must be Ed25519; got {type(key).__name__}")
    if (
        type(name) is not str
        or not name.strip()
        or len(name) > AUTHORITY_NAME_CHARS_MAX
        or not name.isprintable()
    ):
        raise LocalProtocolError(
            f"an authority name is 1..{AUTHORITY_NAME_CHARS_MAX} printable characters; got {name!r}"
        )
    start, end = _validity(now, valid_days)
    public_key = key.public_key()
    digest = hashlib.sha256(
        public_key.public_bytes(Encoding.Raw, PublicFormat.Raw) + start.to_bytes(8, "big")
    ).digest()
    serial = int.from_bytes(digest[:8], "big") >> 1 or 1  # positive, 63 bits
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(_datetime(start))
        .not_valid_after(_datetime(end))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, None)
    )
    return certificate.public_bytes(Encoding.DER)


def load_authority(certificate: bytes | x509.Certificate | Authority) -> Authority:
    """The grid authority in ``certificate`` (DER or parsed), checked.

    It must be a self-signed Ed25519 CA certificate with a subject key
    identifier, allowed to sign certificates. Raises ``CertificateInvalid``
    (field ``authority``) otherwise.
    """
    if isinstance(certificate, Authority):
        return certificate
    try:
        with _warnings_raised():
            return _load_authority(certificate)
    except _PARSE_ERRORS as exc:
        raise CertificateInvalid(
            f"not a usable authority certificate: {exc}", field="authority"
        ) from None


def _load_authority(certificate: bytes | x509.Certificate) -> Authority:
    def refuse(detail: str) -> CertificateInvalid:
        return CertificateInvalid(detail, field="authority")

    if not isinstance(certificate, x509.Certificate):
        certificate = _parse(certificate, refuse)
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise refuse("the authority's certificate is not signed with Ed25519")
    public_key = certificate.public_key()
    if not isinstance(public_key, Ed25519PublicKey):
        raise refuse("the authority's key is not Ed25519")
    if certificate.issuer != certificate.subject:
        raise refuse("the authority's certificate is not self-signed")
    try:
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except InvalidSignature:
        raise refuse("the authority's self-signature does not verify") from None
    extensions = certificate.extensions
    constraints = _extension(extensions, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise refuse("the authority's certificate is not a CA certificate (BasicConstraints)")
    usage = _extension(extensions, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise refuse("the authority's key may not sign certificates (KeyUsage)")
    identifier = _extension(extensions, x509.SubjectKeyIdentifier)
    if identifier is None:
        raise refuse("the authority's certificate has no SubjectKeyIdentifier")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else certificate.subject.rfc4514_string()
    return Authority(
        certificate=certificate,
        name=name,
        public_key=public_key,
        key_identifier=identifier.digest,
        not_before=_seconds_of(certificate.not_valid_before_utc),
        not_after=_seconds_of(certificate.not_valid_after_utc),
    )


# -- issuing ------------------------------------------------------------------


def _identity_extension(node_id: int, role: Role, permissions: Permissions) -> bytes:
    """The extension's value: DER OCTET STRING of canonical CBOR."""
    body = cbor2.dumps(
        {"node_id": node_id, "role": str(role), "permissions": permissions.to_plain()},
        canonical=True,
    )
    if len(body) > IDENTITY_BYTES_MAX:
        raise LocalProtocolError(
            f"the permissions take {len(body)} bytes of CBOR; at most "
            f"IDENTITY_BYTES_MAX ({IDENTITY_BYTES_MAX})"
        )
    return _der_octet_string(body)


def _der_octet_string(body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([0x04, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(length)]) + length + body


def _der_octet_string_content(value: bytes) -> bytes:
    """The content of one DER OCTET STRING that is all of ``value``; else ``ValueError``."""
    if len(value) < 2 or value[0] != 0x04:
        raise ValueError("not an OCTET STRING")
    first = value[1]
    if first < 0x80:
        size, start = first, 2
    else:
        count = first & 0x7F
        length = value[2 : 2 + count]
        if not 1 <= count <= 2 or len(length) != count or length[0] == 0:
            raise ValueError("not a DER length")
        size, start = int.from_bytes(length, "big"), 2 + count
        if size < 0x80:
            raise ValueError("not a DER length (not minimal)")
    if start + size != len(value):
        raise ValueError("the OCTET STRING's length does not match the extension")
    return value[start:]


def issue_node_certificate(
    ca_cert: bytes | x509.Certificate | Authority,
    ca_key: Ed25519PrivateKey,
    node_public_key: Ed25519PublicKey,
    *,
    node_id: int,
    role: Role,
    permissions: Permissions | None,
    serial: int,
    now: float,
    valid_days: int,
) -> bytes:
    """A node certificate (DER) for ``node_public_key``, valid from ``now`` for ``valid_days``.

    ``permissions`` ``None`` means the role's defaults; ``{node_id}`` is
    expanded. Raises ``LocalProtocolError`` for misuse (a key that is not the
    authority's, a validity beyond the authority's, a value out of range).
    """
    authority = _authority_for_issuing(ca_cert)
    if not isinstance(ca_key, Ed25519PrivateKey) or ca_key.public_key() != authority.public_key:
        raise LocalProtocolError("ca_key is not the private key of the authority's certificate")
    if not isinstance(node_public_key, Ed25519PublicKey):
        raise LocalProtocolError(
            f"a node key must be Ed25519; got {type(node_public_key).__name__}"
        )
    if type(node_id) is not int or not 1 <= node_id <= NODE_ID_MAX:
        raise LocalProtocolError(f"node_id is an integer in 1..2**64-1; got {node_id!r}")
    if type(serial) is not int or not 1 <= serial <= SERIAL_MAX:
        raise LocalProtocolError(f"serial is an integer in 1..2**64-1; got {serial!r}")
    role = Role(role)
    granted = (
        default_permissions(role, node_id) if permissions is None else permissions.expand(node_id)
    )
    start, end = _validity(now, valid_days)
    if not authority.not_before <= start <= authority.not_after:
        raise LocalProtocolError("the authority's certificate is not valid at 'now'")
    if end > authority.not_after:
        raise LocalProtocolError(
            f"the node certificate would outlive the authority's (which ends "
            f"{_datetime(authority.not_after).isoformat()}); give fewer valid_days"
        )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role} {node_id}")]))
        .issuer_name(authority.certificate.subject)
        .public_key(node_public_key)
        .serial_number(serial)
        .not_valid_before(_datetime(start))
        .not_valid_after(_datetime(end))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"{NODE_URI_PREFIX}{node_id}")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier(authority.key_identifier, None, None), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(node_public_key), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                GRIDMESH_IDENTITY_OID, _identity_extension(node_id, role, granted)
            ),
            critical=False,
        )
        .sign(ca_key, None)
    )
    der = certificate.public_bytes(Encoding.DER)
    if len(der) > CERTIFICATE_BYTES_MAX:
        raise LocalProtocolError(
            f"the certificate takes {len(der)} bytes; at most CERTIFICATE_BYTES_MAX "
            f"({CERTIFICATE_BYTES_MAX}): grant fewer or shorter filters"
        )
    return der


def _authority_for_issuing(ca_cert: bytes | x509.Certificate | Authority) -> Authority:
    try:
        return load_authority(ca_cert)
    except CertificateInvalid as exc:
        raise LocalProtocolError(f"ca_cert: {exc.detail}") from None


# -- verifying ----------------------------------------------------------------


def verify_node_certificate(
    der: bytes,
    ca_cert: bytes | x509.Certificate | Authority,
    *,
    now: float,
    revocations: RevocationSet | None = None,
    clock_skew_s: float = 0.0,
) -> NodeIdentity:
    """The identity in node certificate ``der`` if the authority issued it and it is valid now.

    ``clock_skew_s`` widens the validity window on both sides (clocks of a
    grid disagree a little). A bad certificate raises ``CertificateInvalid``
    saying why, or ``CertificateRevoked`` when ``revocations`` holds its
    serial, and nothing else; a bad ``now`` is a ``LocalProtocolError``.
    """
    authority = load_authority(ca_cert)
    when = _unix_seconds(now)
    if isinstance(clock_skew_s, bool) or not isinstance(clock_skew_s, int | float):
        raise LocalProtocolError(f"clock_skew_s is a number of seconds; got {clock_skew_s!r}")
    if not 0.0 <= clock_skew_s <= _DAY_S:
        raise LocalProtocolError(f"clock_skew_s is in 0..{_DAY_S} seconds; got {clock_skew_s!r}")
    skew = math.ceil(clock_skew_s)
    if not authority.not_before - skew <= when <= authority.not_after + skew:
        raise CertificateInvalid(
            "the authority's certificate is not valid now", field="authority.validity"
        )
    try:
        with _warnings_raised():
            certificate = _parse(der)
            _check_issued_by(certificate, authority)
            identity = _identity(certificate, der)
            _check_authority_key_id(certificate, authority)
    except _PARSE_ERRORS as exc:
        raise CertificateInvalid(f"malformed certificate: {exc}") from None
    if when + skew < identity.not_before:
        raise CertificateInvalid(
            f"not yet valid (from {_datetime(identity.not_before).isoformat()})",
            field="validity",
        )
    if when - skew > identity.not_after:
        raise CertificateInvalid(
            f"expired (at {_datetime(identity.not_after).isoformat()})", field="validity"
        )
    if revocations is not None and revocations.is_revoked(identity.serial):
        raise CertificateRevoked(f"serial {identity.serial:#x} is revoked", field="serial")
    return identity


def inspect_node_certificate(der: bytes) -> NodeIdentity:
    """What a node certificate *claims*, WITHOUT checking who signed it or when.

    For display (``gridmesh pki show``) only: trust comes from
    ``verify_node_certificate``. Raises ``CertificateInvalid`` when malformed.
    """
    try:
        with _warnings_raised():
            return _identity(_parse(der), der)
    except _PARSE_ERRORS as exc:
        raise CertificateInvalid(f"malformed certificate: {exc}") from None


@contextlib.contextmanager
def _warnings_raised() -> Iterator[None]:
    """A context where ``cryptography`` refuses what it would only warn about.

    It warns, for example, on a serial that is not positive (RFC 5280
    forbids one); a peer's bytes must neither pass that way nor fill a log
    with warnings, so the warning is raised and refused like any error.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        yield


def _parse(der: object, refuse: _Refuse = CertificateInvalid) -> x509.Certificate:
    if not isinstance(der, bytes):
        raise refuse(f"a certificate is DER bytes; got {type(der).__name__}")
    if len(der) > CERTIFICATE_BYTES_MAX:
        raise refuse(f"{len(der)} bytes exceeds CERTIFICATE_BYTES_MAX={CERTIFICATE_BYTES_MAX}")
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise refuse(f"not a DER X.509 certificate ({exc})") from None
    if certificate.version != x509.Version.v3:
        raise refuse("not an X.509 v3 certificate")
    return certificate


def _check_issued_by(certificate: x509.Certificate, authority: Authority) -> None:
    """The signature algorithm, issuer and signature, before anything else is read."""
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise CertificateInvalid("not signed with Ed25519", field="signature")
    if certificate.issuer != authority.certificate.subject:
        raise CertificateInvalid(
            f"issued by {certificate.issuer.rfc4514_string()!r}, not by this grid's "
            f"authority {authority.name!r}",
            field="issuer",
        )
    try:
        authority.public_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except InvalidSignature:
        raise CertificateInvalid(
            "the signature does not verify with the grid authority's key", field="signature"
        ) from None


def _check_authority_key_id(certificate: x509.Certificate, authority: Authority) -> None:
    identifier = _extension(certificate.extensions, x509.AuthorityKeyIdentifier)
    if identifier is None or identifier.key_identifier != authority.key_identifier:
        raise CertificateInvalid(
            "the authority key identifier does not name this grid's authority",
            field="authority_key_identifier",
        )


def _identity(certificate: x509.Certificate, der: bytes) -> NodeIdentity:
    """Every node-profile check that does not need the authority."""
    extensions = certificate.extensions
    for extension in extensions:
        if extension.critical and extension.oid not in _KNOWN_CRITICAL:
            raise CertificateInvalid(
                f"unknown critical extension {extension.oid.dotted_string}", field="extensions"
            )
    constraints = _extension(extensions, x509.BasicConstraints)
    usage = _extension(extensions, x509.KeyUsage)
    if (constraints is not None and constraints.ca) or (usage is not None and usage.key_cert_sign):
        raise CertificateInvalid("a CA certificate cannot be a node's", field="basic_constraints")
    if usage is None or not usage.digital_signature:
        raise CertificateInvalid("KeyUsage must allow digitalSignature", field="key_usage")
    public_key = certificate.public_key()
    if not isinstance(public_key, Ed25519PublicKey):
        raise CertificateInvalid(
            f"the node key is {type(public_key).__name__}, not Ed25519", field="public_key"
        )
    serial = certificate.serial_number
    if not 1 <= serial <= SERIAL_MAX:
        raise CertificateInvalid(f"serial {serial} is outside 1..2**64-1", field="serial")
    san_node_id = _san_node_id(extensions)
    node_id, role, permissions = _identity_claims(extensions)
    if node_id != san_node_id:
        raise CertificateInvalid(
            f"the identity extension says node {node_id}, the SAN says node {san_node_id}",
            field="node_id",
        )
    return NodeIdentity(
        node_id=node_id,
        role=role,
        permissions=permissions,
        public_key=public_key,
        serial=serial,
        not_before=_seconds_of(certificate.not_valid_before_utc),
        not_after=_seconds_of(certificate.not_valid_after_utc),
        certificate=der,
    )


def _san_node_id(extensions: x509.Extensions) -> int:
    names = _extension(extensions, x509.SubjectAlternativeName)
    uris = [] if names is None else names.get_values_for_type(x509.UniformResourceIdentifier)
    ours = [uri for uri in uris if uri.startswith(NODE_URI_PREFIX)]
    if len(ours) != 1:
        raise CertificateInvalid(
            f"expected one SAN URI {NODE_URI_PREFIX}<node_id>; found {len(ours)}",
            field="subject_alt_name",
        )
    text = ours[0].removeprefix(NODE_URI_PREFIX)
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        raise CertificateInvalid(f"bad node id in SAN URI {ours[0]!r}", field="subject_alt_name")
    node_id = int(text)
    if node_id > NODE_ID_MAX:
        raise CertificateInvalid(f"SAN node id {node_id} exceeds 2**64-1", field="subject_alt_name")
    return node_id


def _identity_claims(extensions: x509.Extensions) -> tuple[int, Role, Permissions]:
    def refuse(detail: str) -> CertificateInvalid:
        return CertificateInvalid(f"gridmesh identity extension: {detail}", field="identity")

    try:
        extension = extensions.get_extension_for_oid(GRIDMESH_IDENTITY_OID)
    except x509.ExtensionNotFound:
        raise refuse(f"missing (OID {GRIDMESH_IDENTITY_OID.dotted_string})") from None
    value = extension.value
    assert isinstance(value, x509.UnrecognizedExtension)
    try:
        body = _der_octet_string_content(value.value)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    if len(body) > IDENTITY_BYTES_MAX:
        raise refuse(f"{len(body)} bytes exceeds IDENTITY_BYTES_MAX={IDENTITY_BYTES_MAX}")
    claims = _strict_cbor(body, refuse)
    if type(claims) is not dict or set(claims) != _IDENTITY_KEYS:
        raise refuse(f"expected a map with exactly the keys {sorted(_IDENTITY_KEYS)}")
    node_id, role_text = claims["node_id"], claims["role"]
    if type(node_id) is not int or not 1 <= node_id <= NODE_ID_MAX:
        raise refuse(f"node_id must be an integer in 1..2**64-1; got {node_id!r}")
    if type(role_text) is not str or role_text not in Role.__members__.values():
        raise refuse(f"unknown role {role_text!r}")
    try:
        permissions = Permissions.from_plain(claims["permissions"])
    except LocalProtocolError as exc:
        raise refuse(f"permissions: {exc}") from None
    if permissions.has_placeholder:
        raise refuse("permissions still hold the {node_id} placeholder")
    return node_id, Role(role_text), permissions


def _refuse_tag(decoder: object, tag: object) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed here")


def _refuse_semantic_tag(value: object, immutable: bool) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed here")


# The tags cbor2 decodes itself (the list in gridmesh.wire._codec); the rest
# reach the tag hook.
_REFUSE_SEMANTIC = dict.fromkeys(
    (
        *(0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261),
        *(262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 1004, 1040, 43000, 55799),
    ),
    _refuse_semantic_tag,
)


def _strict_cbor(data: bytes, refuse: _Refuse) -> object:
    """One canonical CBOR item, no tags; anything else is refused through ``refuse``."""
    try:
        item = cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            semantic_decoders=_REFUSE_SEMANTIC,
            max_depth=8,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
        canonical = cbor2.dumps(item, canonical=True)
    except (*_PARSE_ERRORS, MemoryError, cbor2.CBOREncodeError) as exc:
        raise refuse(f"not well-formed CBOR: {exc}") from None
    if canonical != data:
        raise refuse("not canonical CBOR (RFC 8949, 4.2.1)")
    return item


def _extension(extensions: x509.Extensions, kind: type[_Extension]) -> _Extension | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
