"""The grid PKI: authority and node certificates, strict verification, revocations, roles."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from gridmesh.errors import InvalidTopic, LocalProtocolError, MalformedMessage, MessageTooLarge
from gridmesh.security._errors import BadSignature, CertificateInvalid, CertificateRevoked
from gridmesh.security._pki import (
    CERTIFICATE_BYTES_MAX,
    GRIDMESH_IDENTITY_OID,
    Authority,
    create_authority,
    inspect_node_certificate,
    issue_node_certificate,
    key_id_of,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._pki_revocation import (
    REVOCATION_BYTES_MAX,
    Revocation,
    RevocationReason,
    RevocationSet,
    make_revocation,
    verify_revocation,
)
from gridmesh.security._roles import (
    DEFAULT_PERMISSIONS,
    PERMISSION_FILTERS_MAX,
    Permissions,
    Role,
    default_permissions,
)
from gridmesh.topics import validate_topic_filter

NOW = 1_760_000_000  # 2025-10-09T08:53:20Z
DAY_S = 86_400
CA_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NODE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
CA_DER = create_authority("Test Grid", CA_KEY, now=NOW, valid_days=3650)
AUTHORITY = load_authority(CA_DER)


def issue(
    node_id: int = 101001,
    role: Role = Role.METER,
    permissions: Permissions | None = None,
    *,
    serial: int = 0x3039,
    now: float = NOW,
    valid_days: int = 365,
) -> bytes:
    return issue_node_certificate(
        CA_DER, CA_KEY, NODE_KEY.public_key(), node_id=node_id, role=role,
        permissions=permissions, serial=serial, now=now, valid_days=valid_days,
    )  # fmt: skip


def identity_extension(claims: object, *, raw: bytes | None = None) -> x509.UnrecognizedExtension:
    body = cbor2.dumps(claims, canonical=True) if raw is None else raw
    assert len(body) < 0x80
    return x509.UnrecognizedExtension(GRIDMESH_IDENTITY_OID, bytes([0x04, len(body)]) + body)


METER_CLAIMS = {
    "node_id": 42,
    "role": "meter",
    "permissions": {"publish": ["METER/42/#"], "subscribe": [], "call": [], "expose": []},
}


def forge(
    *,
    signer: ec.EllipticCurvePrivateKey | Ed25519PrivateKey = CA_KEY,
    issuer: str = "Test Grid",
    public_key: object = None,
    san: list[str] | None = None,
    identity: x509.ExtensionType | None = None,
    ca: bool = False,
    extra: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
    authority_key_id: bytes | None = None,
    serial: int = 7,
) -> bytes:
    """A certificate like a node's, with one thing changed, signed by ``signer``."""
    san = ["gridmesh:node:42"] if san is None else san
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meter 42")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(NODE_KEY.public_key() if public_key is None else public_key)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(datetime.fromtimestamp(NOW, UTC))
        .not_valid_after(datetime.fromtimestamp(NOW, UTC) + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ca, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier(
                AUTHORITY.key_identifier if authority_key_id is None else authority_key_id,
                None,
                None,
            ),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri) for uri in san]),
            critical=False,
        )
    extension = identity_extension(METER_CLAIMS) if identity is None else identity
    if not isinstance(extension, x509.UnrecognizedExtension) or extension.value != b"":
        builder = builder.add_extension(extension, critical=False)
    for value, critical in extra:
        builder = builder.add_extension(value, critical=critical)
    algorithm = None if isinstance(signer, Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm).public_bytes(Encoding.DER)


NO_EXTENSION = x509.UnrecognizedExtension(GRIDMESH_IDENTITY_OID, b"")


def refused(der: bytes, *, now: float = NOW + 1, ca: bytes | Authority = AUTHORITY) -> str:
    with pytest.raises(CertificateInvalid) as caught:
        verify_node_certificate(der, ca, now=now)
    return caught.value.detail


# -- issue and verify -----------------------------------------------------------


def test_a_node_certificate_round_trips_to_its_identity() -> None:
    der = issue()
    identity = verify_node_certificate(der, CA_DER, now=NOW + 10)
    assert identity.node_id == 101001
    assert identity.role is Role.METER
    assert identity.permissions == default_permissions(Role.METER, 101001)
    assert identity.permissions.publish[0] == "MEASUREMENT/SENSOR/101001/#"
    assert identity.serial == 0x3039
    assert (identity.not_before, identity.not_after) == (NOW, NOW + 365 * DAY_S)
    assert identity.certificate == der
    raw = NODE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert identity.key_id == hashlib.sha256(raw).digest()[:16] == key_id_of(identity.public_key)
    assert identity == verify_node_certificate(der, AUTHORITY, now=NOW + 10)
    assert identity == verify_node_certificate(der, x509.load_der_x509_certificate(CA_DER), now=NOW)
    assert "certificate" not in repr(identity)


def test_issuing_and_creating_are_deterministic() -> None:
    assert create_authority("Test Grid", CA_KEY, now=NOW, valid_days=3650) == CA_DER
    assert issue() == issue()


def test_the_authority_certificate_follows_the_profile() -> None:
    certificate = x509.load_der_x509_certificate(CA_DER)
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    identifier = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert identifier.value.digest == AUTHORITY.key_identifier
    assert certificate.issuer == certificate.subject
    assert AUTHORITY.name == "Test Grid"
    assert AUTHORITY.der == CA_DER
    assert (AUTHORITY.not_before, AUTHORITY.not_after) == (NOW, NOW + 3650 * DAY_S)


def test_the_node_certificate_follows_the_profile() -> None:
    certificate = x509.load_der_x509_certificate(issue())
    extensions = certificate.extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ]
    san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["gridmesh:node:101001"]
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == AUTHORITY.key_identifier
    assert extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    ours = extensions.get_extension_for_oid(GRIDMESH_IDENTITY_OID)
    assert not ours.critical
    assert GRIDMESH_IDENTITY_OID.dotted_string.startswith("2.25.")
    value = ours.value
    assert isinstance(value, x509.UnrecognizedExtension)
    assert value.value[0] == 0x04  # a DER OCTET STRING holding the CBOR
    claims = cbor2.loads(value.value[3:] if value.value[1] == 0x81 else value.value[2:])
    assert claims == {
        "node_id": 101001,
        "role": "meter",
        "permissions": default_permissions(Role.METER, 101001).to_plain(),
    }


def test_explicit_permissions_are_expanded_into_the_certificate() -> None:
    granted = Permissions(publish=("SITE/{node_id}/+",), subscribe=("TARIFF/RTP/*",))
    identity = verify_node_certificate(issue(77, Role.DEVICE, granted), AUTHORITY, now=NOW)
    assert identity.permissions == Permissions(publish=("SITE/77/+",), subscribe=("TARIFF/RTP/#",))


# -- every rejection ----------------------------------------------------------------


def test_a_certificate_of_another_authority_is_refused() -> None:
    other_key = Ed25519PrivateKey.generate()
    same_name = create_authority("Test Grid", other_key, now=NOW, valid_days=10)
    assert "signature does not verify" in refused(issue(), ca=same_name)
    other_name = create_authority("Other Grid", other_key, now=NOW, valid_days=10)
    assert "not by this grid's authority 'Other Grid'" in refused(issue(), ca=other_name)


def test_validity_bounds_are_inclusive_and_enforced() -> None:
    der = issue(valid_days=1)
    assert verify_node_certificate(der, AUTHORITY, now=NOW).node_id == 101001
    assert verify_node_certificate(der, AUTHORITY, now=NOW + DAY_S + 0.9).node_id == 101001
    assert refused(der, now=NOW + DAY_S + 1).startswith("expired")
    later = issue(now=NOW + 100, valid_days=1)
    assert refused(later, now=NOW + 99).startswith("not yet valid")
    skewed = verify_node_certificate(der, AUTHORITY, now=NOW - 30, clock_skew_s=30)
    assert skewed.node_id == 101001


def test_an_expired_authority_invalidates_every_node() -> None:
    short = create_authority("Test Grid", CA_KEY, now=NOW, valid_days=2)
    der = issue_node_certificate(
        short, CA_KEY, NODE_KEY.public_key(), node_id=5, role=Role.DTC, permissions=None,
        serial=9, now=NOW, valid_days=1,
    )  # fmt: skip
    assert verify_node_certificate(der, short, now=NOW + DAY_S).node_id == 5
    with pytest.raises(CertificateInvalid, match="authority's certificate is not valid"):
        verify_node_certificate(der, short, now=NOW + 3 * DAY_S)


def test_tampered_bytes_are_refused_and_only_certificate_invalid_escapes() -> None:
    der = issue()
    body = der.index(b"METER/101001")
    altered = der[:body] + b"METER/101002" + der[body + 12 :]
    assert "signature does not verify" in refused(altered)
    rng = random.Random(1)
    for _ in range(600):
        mutated = bytearray(der)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if bytes(mutated) != der:
            refused(bytes(mutated))
    for size in (0, 1, 10, len(der) // 2, len(der) - 1):
        refused(der[:size])
    refused(der + b"\x00")


def test_a_serial_that_is_not_positive_is_refused_not_warned_about() -> None:
    der = issue()
    negative = der.replace(b"\x02\x02\x30\x39", b"\x02\x02\xb0\x39", 1)  # serial -0x4fc7
    assert negative != der
    assert "positive" in refused(negative)  # under pytest -W error a warning would escape
    with pytest.raises(CertificateInvalid):
        inspect_node_certificate(negative)


def test_garbage_oversize_and_wrong_types_are_refused() -> None:
    assert "exceeds CERTIFICATE_BYTES_MAX" in refused(b"\x30" * (CERTIFICATE_BYTES_MAX + 1))
    assert "not a DER X.509 certificate" in refused(b"hello")
    assert "DER bytes" in refused("text")  # type: ignore[arg-type]


def test_the_authority_certificate_cannot_be_used_as_a_node_certificate() -> None:
    assert "CA certificate" in refused(CA_DER)
    assert "CA certificate" in refused(forge(ca=True))


def test_a_missing_identity_extension_is_refused() -> None:
    assert "identity extension: missing" in refused(forge(identity=NO_EXTENSION))


@pytest.mark.parametrize(
    ("extension", "problem"),
    [
        (x509.UnrecognizedExtension(GRIDMESH_IDENTITY_OID, b"\xa0\x00"), "not an OCTET STRING"),
        (x509.UnrecognizedExtension(GRIDMESH_IDENTITY_OID, b"\x04\x05\xa0"), "length does not"),
        (identity_extension(None, raw=b"\xff\xff"), "not well-formed CBOR"),
        (identity_extension(None, raw=b"\xa1\x61a\x01\x00"), "not canonical"),  # trailing
        (identity_extension(None, raw=b"\x18\x01"), "not canonical"),
        (identity_extension(None, raw=b"\xc1\x1a\x00\x00\x00\x01"), "not well-formed CBOR"),
        (identity_extension([1, 2]), "exactly the keys"),
        ({**METER_CLAIMS, "extra": 1}, "exactly the keys"),
        ({**METER_CLAIMS, "role": "king"}, "unknown role 'king'"),
        ({**METER_CLAIMS, "node_id": 0}, "node_id must be"),
        ({**METER_CLAIMS, "node_id": "42"}, "node_id must be"),
        ({**METER_CLAIMS, "permissions": {"publish": []}}, "permissions"),
        (
            {**METER_CLAIMS, "permissions": {**METER_CLAIMS["permissions"], "publish": ["a/#/b"]}},  # type: ignore[dict-item]
            "'#' must be the whole last level",
        ),
        (
            {**METER_CLAIMS, "permissions": {**METER_CLAIMS["permissions"], "call": ["{node_id}"]}},  # type: ignore[dict-item]
            "placeholder",
        ),
    ],
)
def test_a_garbled_identity_extension_is_refused(extension: object, problem: str) -> None:
    if isinstance(extension, dict):
        extension = identity_extension(extension)
    assert isinstance(extension, x509.UnrecognizedExtension)
    detail = refused(forge(identity=extension))
    assert detail.startswith("gridmesh identity extension") and problem in detail


@pytest.mark.parametrize(
    ("san", "problem"),
    [
        (["gridmesh:node:43"], "says node 42, the SAN says node 43"),
        ([], "found 0"),
        (["https://example.org/"], "found 0"),
        (["gridmesh:node:42", "gridmesh:node:42"], "found 2"),
        (["gridmesh:node:042"], "bad node id"),
        (["gridmesh:node:-1"], "bad node id"),
        (["gridmesh:node:18446744073709551616"], "exceeds"),
    ],
)
def test_the_san_must_name_the_same_node_as_the_extension(san: list[str], problem: str) -> None:
    assert problem in refused(forge(san=san))


def test_a_forged_certificate_with_the_right_san_verifies() -> None:
    # The control for the forgeries above: the helper builds a valid certificate.
    identity = verify_node_certificate(forge(), AUTHORITY, now=NOW)
    assert (identity.node_id, identity.role) == (42, Role.METER)
    assert identity == inspect_node_certificate(forge())


def test_a_node_key_that_is_not_ed25519_is_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert "not Ed25519" in refused(forge(public_key=ec_key.public_key()))


def test_a_certificate_not_signed_with_ed25519_is_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert "not signed with Ed25519" in refused(forge(signer=ec_key))


def test_an_unknown_critical_extension_is_refused() -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert "unknown critical extension" in refused(forge(extra=[(unknown, True)]))
    assert verify_node_certificate(forge(extra=[(unknown, False)]), AUTHORITY, now=NOW)


def test_an_authority_key_identifier_of_another_key_is_refused() -> None:
    assert "authority key identifier" in refused(forge(authority_key_id=b"\x01" * 20))


def test_a_serial_beyond_64_bits_is_refused() -> None:
    assert "serial" in refused(forge(serial=2**64))


def test_a_revoked_certificate_is_refused() -> None:
    der = issue()
    revocations = RevocationSet()
    data = make_revocation(CA_KEY, 0x3039, now=NOW, expires_at=NOW + 365 * DAY_S)
    revocations.add(verify_revocation(data, CA_KEY.public_key()))
    with pytest.raises(CertificateRevoked):
        verify_node_certificate(der, AUTHORITY, now=NOW, revocations=revocations)
    assert verify_node_certificate(issue(serial=1), AUTHORITY, now=NOW, revocations=revocations)


def test_a_bad_authority_is_refused_as_the_authority() -> None:
    with pytest.raises(CertificateInvalid) as caught:
        verify_node_certificate(issue(), issue(), now=NOW)
    assert caught.value.field == "authority"
    with pytest.raises(CertificateInvalid, match="authority"):
        load_authority(b"junk")


def self_signed(*, ca: bool, key_identifier: bool) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Grid")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(CA_KEY.public_key())
        .serial_number(1)
        .not_valid_before(datetime.fromtimestamp(NOW, UTC))
        .not_valid_after(datetime.fromtimestamp(NOW + DAY_S, UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), critical=False
        )
    return builder.sign(CA_KEY, None).public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("der", "problem"),
    [
        (self_signed(ca=False, key_identifier=True), "not a CA certificate"),
        (self_signed(ca=True, key_identifier=False), "no SubjectKeyIdentifier"),
        (self_signed(ca=True, key_identifier=True)[:-1] + b"\x00", "self-signature"),
    ],
)
def test_an_authority_must_be_a_self_signed_ed25519_ca(der: bytes, problem: str) -> None:
    with pytest.raises(CertificateInvalid, match=problem):
        load_authority(der)
    assert load_authority(self_signed(ca=True, key_identifier=True)).name == "Test Grid"


# -- issuing misuse -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"node_id": 0}, "node_id"),
        ({"node_id": 2**64}, "node_id"),
        ({"serial": 0}, "serial"),
        ({"valid_days": 0}, "valid_days"),
        ({"valid_days": 3651}, "outlive the authority"),
        ({"now": NOW - 1}, "not valid at 'now'"),
        ({"now": float("nan")}, "finite"),
    ],
)
def test_issuing_refuses_misuse(change: dict[str, object], problem: str) -> None:
    with pytest.raises(LocalProtocolError, match=problem):
        issue(**change)  # type: ignore[arg-type]


def test_issuing_needs_the_authoritys_key_and_an_ed25519_node_key() -> None:
    with pytest.raises(LocalProtocolError, match="not the private key"):
        issue_node_certificate(
            CA_DER, NODE_KEY, NODE_KEY.public_key(), node_id=1, role=Role.DSO, permissions=None,
            serial=1, now=NOW, valid_days=1,
        )  # fmt: skip
    with pytest.raises(LocalProtocolError, match="Ed25519"):
        issue_node_certificate(
            CA_DER, CA_KEY, ec.generate_private_key(ec.SECP256R1()).public_key(),  # type: ignore[arg-type]
            node_id=1, role=Role.DSO, permissions=None, serial=1, now=NOW, valid_days=1,
        )  # fmt: skip


def test_too_many_permissions_for_a_certificate_are_refused_when_issuing() -> None:
    long = tuple(f"{'X' * 60}/{index}/#" for index in range(PERMISSION_FILTERS_MAX))
    with pytest.raises(LocalProtocolError, match="IDENTITY_BYTES_MAX"):
        issue(permissions=Permissions(publish=long, subscribe=long))


def test_authority_names_are_checked() -> None:
    for name in ("", "   ", "x" * 65, "bad\nname"):
        with pytest.raises(LocalProtocolError, match="authority name"):
            create_authority(name, CA_KEY, now=NOW, valid_days=1)


# -- roles and permissions ----------------------------------------------------------


def test_every_role_has_defaults_that_expand_to_valid_filters() -> None:
    assert set(DEFAULT_PERMISSIONS) == set(Role)
    for role in Role:
        granted = default_permissions(role, 123)
        assert not granted.has_placeholder
        for kind in ("publish", "subscribe", "call", "expose"):
            for item in getattr(granted, kind):
                assert validate_topic_filter(item) == item


def test_only_the_dso_and_aggregators_publish_commandable_signals() -> None:
    for role in Role:
        granted = default_permissions(role, 7)
        commands = granted.allows_publish("DR/COMMAND/region-7/EV")
        tariffs = granted.allows_publish("TARIFF/RTP/price")
        assert commands == tariffs == (role in {Role.DSO, Role.AGGREGATOR}), role


def test_a_meter_publishes_only_under_its_own_id_and_listens_to_signals() -> None:
    meter = default_permissions(Role.METER, 1234)
    assert meter.allows_publish("MEASUREMENT/SENSOR/1234/PowerConsumption")
    assert meter.allows_publish("METER/1234/status")
    assert not meter.allows_publish("MEASUREMENT/SENSOR/1235/PowerConsumption")
    assert not meter.allows_publish("MEASUREMENT/SENSOR/12345/PowerConsumption")
    assert meter.allows_subscribe("TARIFF/#")
    assert meter.allows_subscribe("TARIFF/RTP/+")
    assert meter.allows_subscribe("DR/COMMAND/region-7/*")
    assert not meter.allows_subscribe("#")
    assert not meter.allows_subscribe("MEASUREMENT/SENSOR/+/PowerConsumption")
    assert meter.allows_expose("meter/last_voltage")
    assert not meter.allows_call("meter/last_voltage")


@pytest.mark.parametrize(
    ("granted", "requested", "covered"),
    [
        ("a/#", "a", True),
        ("a/#", "a/b/+", True),
        ("a/+", "a", False),
        ("a/+", "a/b", True),
        ("a/+", "a/#", False),
        ("a", "a/#", False),
        ("+/b", "x/b", True),
        ("+/b", "$SYS/b", False),
        ("#", "$SYS/#", False),
        ("$SYS/#", "$SYS/x", True),
        ("#", "#", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_a_subscription_must_be_covered_by_one_grant(
    granted: str, requested: str, covered: bool
) -> None:
    assert Permissions(subscribe=(granted,)).allows_subscribe(requested) is covered


def test_filters_are_validated_normalized_and_deduplicated() -> None:
    granted = Permissions(publish=["a/*", "a/#", "b/{node_id}/x"])  # type: ignore[arg-type]
    assert granted.publish == ("a/#", "b/{node_id}/x")
    assert granted.has_placeholder
    assert granted.expand(9).publish == ("a/#", "b/9/x")
    with pytest.raises(InvalidTopic):
        Permissions(publish=("a/#/b",))
    with pytest.raises(InvalidTopic):
        Permissions(subscribe=("",))
    for typo in ("a/{nodeid}", "a/meter-{node_id}", "a/{node_id}x", "{"):
        with pytest.raises(InvalidTopic, match="placeholder"):
            Permissions(publish=(typo,))
    with pytest.raises(LocalProtocolError, match="list of topic filters"):
        Permissions(publish="a/#")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="PERMISSION_FILTERS_MAX"):
        Permissions(call=tuple(f"s{index}" for index in range(PERMISSION_FILTERS_MAX + 1)))
    with pytest.raises(LocalProtocolError, match="node id"):
        granted.expand(0)


def test_permissions_round_trip_through_plain_data() -> None:
    granted = default_permissions(Role.AGGREGATOR, 2)
    assert Permissions.from_plain(granted.to_plain()) == granted
    bad: object
    for bad in (
        None,
        {},
        {"publish": [], "subscribe": [], "call": []},
        {**granted.to_plain(), "x": []},
    ):
        with pytest.raises(LocalProtocolError):
            Permissions.from_plain(bad)
    with pytest.raises(LocalProtocolError):
        Permissions.from_plain({"publish": "a", "subscribe": [], "call": [], "expose": []})
    replaced = granted.replaced(publish=["X/#"])
    assert replaced.publish == ("X/#",) and replaced.subscribe == granted.subscribe
    with pytest.raises(LocalProtocolError):
        granted.replaced(publsh=["X"])


# -- revocations --------------------------------------------------------------------


def revocation(serial: int = 5, expires_at: int = NOW + 10, **kwargs: object) -> Revocation:
    data = make_revocation(CA_KEY, serial, now=NOW, expires_at=expires_at, **kwargs)  # type: ignore[arg-type]
    return verify_revocation(data, CA_KEY.public_key())


def test_a_revocation_round_trips() -> None:
    data = make_revocation(
        CA_KEY, 0x3039, now=NOW + 0.5, reason=RevocationReason.KEY_COMPROMISE, expires_at=NOW + 99
    )
    assert len(data) <= REVOCATION_BYTES_MAX
    parsed = verify_revocation(data, CA_KEY.public_key())
    assert parsed == Revocation(0x3039, NOW, RevocationReason.KEY_COMPROMISE, NOW + 99, data)
    body, signature = cbor2.loads(data)
    assert cbor2.loads(body) == [0x3039, NOW, "key_compromise", NOW + 99]
    CA_KEY.public_key().verify(signature, b"gridmesh-revocation-v1\x00" + body)


def test_a_revocation_signed_by_another_key_is_refused() -> None:
    data = make_revocation(Ed25519PrivateKey.generate(), 5, now=NOW, expires_at=NOW)
    with pytest.raises(BadSignature):
        verify_revocation(data, CA_KEY.public_key())


def test_a_revocation_signature_means_nothing_else() -> None:
    body = cbor2.dumps([5, NOW, "unspecified", NOW])
    plain = cbor2.dumps([body, CA_KEY.sign(body)])  # signed without the context
    with pytest.raises(BadSignature):
        verify_revocation(plain, CA_KEY.public_key())


def encoded(body: object, signer: Ed25519PrivateKey = CA_KEY) -> bytes:
    raw = cbor2.dumps(body, canonical=True)
    return cbor2.dumps([raw, signer.sign(b"gridmesh-revocation-v1\x00" + raw)], canonical=True)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedMessage),
        (b"\x82\x40", MalformedMessage),
        (cbor2.dumps([b"x", b"y", b"z"]), MalformedMessage),
        (cbor2.dumps([b"x", b"short"]), BadSignature),
        (b"\x9f\x40\x40\xff", MalformedMessage),  # indefinite length
        (b"\x00" * (REVOCATION_BYTES_MAX + 1), MessageTooLarge),
        (encoded([5, NOW, "because", NOW]), MalformedMessage),
        (encoded([0, NOW, "unspecified", NOW]), MalformedMessage),
        (encoded([-5, NOW, "unspecified", NOW]), MalformedMessage),
        (encoded([5, NOW, "unspecified"]), MalformedMessage),
        (encoded({"serial": 5}), MalformedMessage),
        (encoded([5, 1.5, "unspecified", NOW]), MalformedMessage),
    ],
)
def test_malformed_revocations_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_revocation(data, CA_KEY.public_key())


def test_mutated_revocations_only_raise_remote_protocol_errors() -> None:
    data = make_revocation(CA_KEY, 5, now=NOW, expires_at=NOW)
    rng = random.Random(2)
    for _ in range(500):
        mutated = bytearray(data)
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if bytes(mutated) == data:
            continue
        with pytest.raises((MalformedMessage, BadSignature)):
            verify_revocation(bytes(mutated), CA_KEY.public_key())


def test_making_a_revocation_checks_its_arguments() -> None:
    calls: tuple[Callable[[], bytes], ...] = (
        lambda: make_revocation(CA_KEY, 0, now=NOW, expires_at=NOW),
        lambda: make_revocation(CA_KEY, 5, now=NOW, expires_at=-1),
        lambda: make_revocation(CA_KEY, 5, now=float("inf"), expires_at=NOW),
        lambda: make_revocation(CA_KEY, 5, now=NOW, reason="because", expires_at=NOW),
    )
    for call in calls:
        with pytest.raises(LocalProtocolError):
            call()


def test_a_revocation_set_adds_each_serial_once_and_answers() -> None:
    revocations = RevocationSet()
    assert revocations.add(revocation(5)) is True
    assert revocations.add(revocation(5, reason="superseded")) is False
    assert revocations.get(5).reason is RevocationReason.UNSPECIFIED  # type: ignore[union-attr]
    assert revocations.is_revoked(5) and 5 in revocations and not revocations.is_revoked(6)
    assert len(revocations) == 1


def test_a_full_revocation_set_drops_the_entry_that_expires_first() -> None:
    revocations = RevocationSet(entries_max=3)
    for serial, expires_at in ((1, NOW + 30), (2, NOW + 10), (3, NOW + 20)):
        assert revocations.add(revocation(serial, expires_at))
    assert revocations.add(revocation(4, NOW + 40))
    assert [entry.serial for entry in revocations] == [1, 3, 4]
    assert revocations.add(revocation(5, NOW + 5)) is False  # it would be the first to go
    assert len(revocations) == 3 and revocations.evicted == 2


def test_prune_drops_the_revocations_of_expired_certificates() -> None:
    revocations = RevocationSet()
    for serial, expires_at in ((1, NOW + 10), (2, NOW + 20), (3, NOW + 30)):
        revocations.add(revocation(serial, expires_at))
    assert revocations.prune(NOW + 20) == 1  # a certificate is valid through not_after
    assert [entry.serial for entry in revocations] == [2, 3]
    assert revocations.prune(NOW + 1000) == 2 and len(revocations) == 0


def test_a_revocation_set_ships_whole_and_is_verified_on_arrival() -> None:
    revocations = RevocationSet()
    for serial in (9, 3, 7):
        revocations.add(revocation(serial))
    data = revocations.to_bytes()
    copy = RevocationSet.from_bytes(data, CA_KEY.public_key())
    assert [entry.serial for entry in copy] == [3, 7, 9]
    assert copy.digest() == revocations.digest() != RevocationSet().digest()
    assert copy.to_bytes() == data
    with pytest.raises(BadSignature):
        RevocationSet.from_bytes(data, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(MalformedMessage):
        RevocationSet.from_bytes(data, CA_KEY.public_key(), entries_max=2)
    with pytest.raises(MessageTooLarge):
        RevocationSet.from_bytes(b"\x80" + b"\x00" * 400, CA_KEY.public_key(), entries_max=1)
    with pytest.raises(MalformedMessage):
        RevocationSet.from_bytes(cbor2.dumps([1, 2]), CA_KEY.public_key())


def test_the_sans_io_rule_holds_for_the_pki_modules() -> None:
    from tests.test_sans_io_rule import SOURCE, forbidden_imports

    for name in ("_pki.py", "_pki_revocation.py", "_roles.py"):
        path = SOURCE / "security" / name
        assert forbidden_imports(path.read_text(encoding="utf-8")) == [], name
