"""Key and certificate files: modes, atomic no-overwrite writes, passphrases, clear errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from gridmesh.keystore import (
    KEY_FILE_BYTES_MAX,
    PkiLayout,
    load_authority_file,
    load_node_credentials,
    load_revocations,
    read_certificate,
    read_private_key,
    write_certificate,
    write_file_atomically,
    write_private_key,
)
from gridmesh.security._errors import SecurityConfigError
from gridmesh.security._pki import create_authority, issue_node_certificate, load_authority
from gridmesh.security._pki_revocation import RevocationSet, make_revocation, verify_revocation
from gridmesh.security._roles import Role

NOW = 1_760_000_000
DAY_S = 86_400
CA_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CA_DER = create_authority("Test Grid", CA_KEY, now=NOW, valid_days=3650)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def problem(call: object) -> SecurityConfigError:
    assert callable(call)
    with pytest.raises(SecurityConfigError) as caught:
        call()
    return caught.value


def same_key(a: Ed25519PrivateKey, b: Ed25519PrivateKey) -> bool:
    return a.private_bytes_raw() == b.private_bytes_raw()


@pytest.fixture
def umask_open() -> Iterator[None]:
    """A permissive umask: the modes must come from the code, not from the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_private_key_is_written_0600_as_pkcs8_pem_and_read_back(
    tmp_path: Path, umask_open: None
) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "node.key"
    write_private_key(path, key)
    assert mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert same_key(read_private_key(path), key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]  # no temporary left


def test_a_certificate_is_written_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_certificate(tmp_path / "ca.crt", CA_DER)
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca.crt") == 0o644
    assert (tmp_path / "ca.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert read_certificate(tmp_path / "ca.crt") == CA_DER


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o602])
def test_a_private_key_open_to_group_or_others_is_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "node.key"
    write_private_key(path, Ed25519PrivateKey.generate())
    path.chmod(loose)
    error = problem(lambda: read_private_key(path))
    assert error.path == str(path)
    assert f"mode {loose:04o}" in error.problem and "chmod 600" in error.problem


def test_a_private_key_readable_by_its_owner_only_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key)
    path.chmod(0o400)
    assert same_key(read_private_key(path), key)


def test_existing_files_are_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    write_private_key(path, first)
    error = problem(lambda: write_private_key(path, second))
    assert error.problem == "already exists; not overwritten"
    assert same_key(read_private_key(path), first)
    write_private_key(path, second, overwrite=True)
    assert same_key(read_private_key(path), second) and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]
    write_certificate(tmp_path / "c.crt", CA_DER)
    assert (
        "already exists" in problem(lambda: write_certificate(tmp_path / "c.crt", CA_DER)).problem
    )


def test_an_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key, passphrase=b"correct horse")
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert mode(path) == 0o600
    assert same_key(read_private_key(path, passphrase=b"correct horse"), key)
    assert "encrypted; give its passphrase" in problem(lambda: read_private_key(path)).problem
    wrong = problem(lambda: read_private_key(path, passphrase=b"battery staple"))
    assert "wrong passphrase" in wrong.problem
    plain = tmp_path / "plain.key"
    write_private_key(plain, key)
    assert "not encrypted" in problem(lambda: read_private_key(plain, passphrase=b"x")).problem
    assert (
        "empty passphrase"
        in problem(lambda: write_private_key(tmp_path / "e.key", key, passphrase=b"")).problem
    )


def test_unusable_key_files_are_named_with_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    assert problem(lambda: read_private_key(missing)).problem == "no such file"
    assert problem(lambda: read_private_key(tmp_path)).problem == "not a regular file"
    garbled = tmp_path / "garbled.key"
    write_file_atomically(garbled, b"-----BEGIN PRIVATE KEY-----\nnope\n", mode=0o600)
    assert "not a PEM private key" in problem(lambda: read_private_key(garbled)).problem
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = tmp_path / "ec.key"
    pem = ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_file_atomically(other, pem, mode=0o600)
    error = problem(lambda: read_private_key(other))
    assert error.problem.endswith("gridmesh keys are Ed25519") and "of type EC" in error.problem
    huge = tmp_path / "huge.key"
    write_file_atomically(huge, b"x" * (KEY_FILE_BYTES_MAX + 1), mode=0o600)
    assert f"at most {KEY_FILE_BYTES_MAX}" in problem(lambda: read_private_key(huge)).problem
    assert (
        "cannot be written"
        in problem(
            lambda: write_private_key(tmp_path / "no" / "dir.key", Ed25519PrivateKey.generate())
        ).problem
    )
    assert str(missing) in str(problem(lambda: read_private_key(missing)))


def test_certificate_files_are_pem_or_der_and_exactly_one(tmp_path: Path) -> None:
    der_path = tmp_path / "ca.der"
    der_path.write_bytes(CA_DER)
    assert read_certificate(der_path) == CA_DER
    pem = tmp_path / "ca.crt"
    write_certificate(pem, CA_DER)
    two = tmp_path / "two.crt"
    two.write_bytes(pem.read_bytes() * 2)
    assert "holds 2 certificates" in problem(lambda: read_certificate(two)).problem
    junk = tmp_path / "junk.crt"
    junk.write_bytes(b"hello")
    assert "not an X.509 certificate" in problem(lambda: read_certificate(junk)).problem
    assert problem(lambda: read_certificate(tmp_path / "none.crt")).problem == "no such file"


def test_a_node_certificate_is_not_an_authority(tmp_path: Path) -> None:
    node = issue_node_certificate(
        CA_DER, CA_KEY, Ed25519PrivateKey.generate().public_key(), node_id=3, role=Role.DSO,
        permissions=None, serial=3, now=NOW, valid_days=1,
    )  # fmt: skip
    path = tmp_path / "ca.crt"
    write_certificate(path, node)
    assert "not self-signed" in problem(lambda: load_authority_file(path)).problem


def make_node(layout: PkiLayout, node_id: int, *, serial: int = 11) -> Ed25519PrivateKey:
    layout.nodes.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    der = issue_node_certificate(
        CA_DER, CA_KEY, key.public_key(), node_id=node_id, role=Role.METER, permissions=None,
        serial=serial, now=NOW, valid_days=30,
    )  # fmt: skip
    write_private_key(layout.node_key(node_id), key)
    write_certificate(layout.node_certificate(node_id), der)
    return key


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    layout = PkiLayout(tmp_path / "pki")
    layout.root.mkdir()
    write_certificate(layout.ca_certificate, CA_DER)
    return layout


def test_node_credentials_load_verified(layout: PkiLayout) -> None:
    key = make_node(layout, 101001)
    credentials = load_node_credentials(layout.root, 101001, now=NOW + 5)
    assert credentials.identity.node_id == 101001
    assert credentials.identity.role is Role.METER
    assert same_key(credentials.private_key, key)
    assert credentials.authority.name == "Test Grid"
    assert len(credentials.revocations) == 0


def test_node_credentials_refuse_a_key_that_is_not_the_certified_one(layout: PkiLayout) -> None:
    make_node(layout, 5)
    write_private_key(layout.node_key(5), Ed25519PrivateKey.generate(), overwrite=True)
    error = problem(lambda: load_node_credentials(layout.root, 5, now=NOW))
    assert error.path == str(layout.node_key(5)) and "does not hold the key" in error.problem


def test_node_credentials_refuse_another_nodes_certificate(layout: PkiLayout) -> None:
    make_node(layout, 5)
    make_node(layout, 6)
    layout.node_certificate(6).write_bytes(layout.node_certificate(5).read_bytes())
    error = problem(lambda: load_node_credentials(layout.root, 6, now=NOW))
    assert "node 5's certificate, not node 6's" in error.problem


def test_node_credentials_refuse_an_expired_or_revoked_certificate(layout: PkiLayout) -> None:
    make_node(layout, 5, serial=77)
    expired = problem(lambda: load_node_credentials(layout.root, 5, now=NOW + 31 * DAY_S))
    assert expired.path == str(layout.node_certificate(5)) and "expired" in expired.problem
    revocations = RevocationSet()
    data = make_revocation(CA_KEY, 77, now=NOW, expires_at=NOW + 30 * DAY_S)
    revocations.add(verify_revocation(data, CA_KEY.public_key()))
    layout.revocations.write_bytes(revocations.to_bytes())
    revoked = problem(lambda: load_node_credentials(layout.root, 5, now=NOW))
    assert "revoked" in revoked.problem


def test_a_revocation_list_of_another_authority_is_refused(layout: PkiLayout) -> None:
    revocations = RevocationSet()
    other = Ed25519PrivateKey.generate()
    revocations.add(
        verify_revocation(make_revocation(other, 1, now=NOW, expires_at=NOW), other.public_key())
    )
    layout.revocations.write_bytes(revocations.to_bytes())
    error = problem(lambda: load_revocations(layout.revocations, load_authority(CA_DER)))
    assert "not a revocation list of this grid" in error.problem


def test_node_credentials_name_a_missing_file(layout: PkiLayout) -> None:
    error = problem(lambda: load_node_credentials(layout.root, 9, now=NOW))
    assert (error.path, error.problem) == (str(layout.node_certificate(9)), "no such file")
    layout.ca_certificate.unlink()
    error = problem(lambda: load_node_credentials(layout.root, 9, now=NOW))
    assert error.path == str(layout.ca_certificate)
