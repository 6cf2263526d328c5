"""Key and certificate files of the grid PKI: written safely, read with clear errors.

``gridmesh.security`` does no I/O; this module is where its keys and
certificates meet the file system (docs/PKI.md, "Files").

* A private key is PKCS#8 PEM, encrypted when a passphrase is given
  (``BestAvailableEncryption``: AES-256-CBC under scrypt or PBKDF2, what
  ``cryptography`` judges best), mode 0600. A certificate is PEM, mode 0644.
* Every file is written to a temporary file in the same directory (created
  ``O_EXCL``, its mode set with ``fchmod`` so the umask cannot loosen or
  tighten it), flushed to disk, then put in place in one step: ``link``
  when the file must not exist yet (so two writers cannot both win), a
  ``rename`` when overwriting was asked for. A crash leaves either the old
  file or the new one, never a half-written key.
* A private key readable or writable by group or others is refused, as
  ssh refuses one. Every problem is a ``SecurityConfigError`` naming the file.

Layout of a PKI directory (``PkiLayout``)::

    DIR/ca.crt                 the authority's certificate (every node needs it)
    DIR/ca.key                 the authority's key (stays with the operator)
    DIR/nodes/<node_id>.crt    a node's certificate
    DIR/nodes/<node_id>.key    a node's key
    DIR/revocations/<serial>.rev   one signed revocation each
    DIR/revocations.cbor       every live revocation (``RevocationSet.to_bytes``)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gridmesh.errors import InvalidTopic, RemoteProtocolError
from gridmesh.security._confidential import GroupKey
from gridmesh.security._errors import CertificateInvalid, SecurityConfigError
from gridmesh.security._pki import (
    Authority,
    NodeIdentity,
    load_authority,
    verify_node_certificate,
)
from gridmesh.security._pki_revocation import RevocationSet

__all__ = [
    "CERTIFICATE_MODE",
    "KEY_FILE_BYTES_MAX",
    "PRIVATE_KEY_MODE",
    "NodeCredentials",
    "PkiLayout",
    "load_authority_file",
    "load_node_credentials",
    "load_revocations",
    "read_certificate",
    "read_group_keys",
    "read_private_key",
    "write_certificate",
    "write_file_atomically",
    "write_group_key",
    "write_private_key",
]

PRIVATE_KEY_MODE = 0o600
CERTIFICATE_MODE = 0o644
#: Larger key or certificate files are refused unread.
KEY_FILE_BYTES_MAX = 65_536
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class PkiLayout:
    """Where the files of a PKI directory live (see the module docstring)."""

    root: Path

    @property
    def ca_certificate(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    def node_certificate(self, node_id: int) -> Path:
        return self.nodes / f"{node_id}.crt"

    def node_key(self, node_id: int) -> Path:
        return self.nodes / f"{node_id}.key"

    @property
    def revocation_dir(self) -> Path:
        return self.root / "revocations"

    def revocation(self, serial: int) -> Path:
        return self.revocation_dir / f"{serial}.rev"

    @property
    def revocations(self) -> Path:
        return self.root / "revocations.cbor"

    @property
    def groups(self) -> Path:
        """Group keys of confidential topics: ``groups/<name>.key``, mode 0600."""
        return self.root / "groups"


# -- writing ------------------------------------------------------------------


def write_file_atomically(path: Path, data: bytes, *, mode: int, overwrite: bool = False) -> None:
    """Put ``data`` at ``path`` with exactly ``mode``, all or nothing.

    Without ``overwrite`` an existing file is left alone and ``SecurityConfigError``
    raised. The parent directory must exist.
    """
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
    except OSError as exc:
        raise SecurityConfigError(str(path), f"cannot be written: {exc.strerror}") from None
    try:
        try:
            os.fchmod(descriptor, mode)  # the umask may have changed what open() set
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if path exists: no overwrite, no race
    except FileExistsError:
        raise SecurityConfigError(str(path), "already exists; not overwritten") from None
    except OSError as exc:
        raise SecurityConfigError(str(path), f"cannot be written: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Make the new directory entry durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # pragma: no cover - not on Linux
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(descriptor)


def write_private_key(
    path: Path,
    key: Ed25519PrivateKey,
    *,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``key`` as PKCS#8 PEM, mode 0600, encrypted when ``passphrase`` is given."""
    if passphrase is not None and not passphrase:
        raise SecurityConfigError(str(path), "an empty passphrase encrypts nothing")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_file_atomically(Path(path), pem, mode=PRIVATE_KEY_MODE, overwrite=overwrite)


def write_certificate(path: Path, der: bytes, *, overwrite: bool = False) -> None:
    """Write the DER certificate ``der`` as PEM, mode 0644."""
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    write_file_atomically(Path(path), pem, mode=CERTIFICATE_MODE, overwrite=overwrite)


# -- reading ------------------------------------------------------------------


def _read(path: Path, *, private: bool) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecurityConfigError(str(path), "no such file") from None
    except OSError as exc:
        raise SecurityConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    try:
        status = os.fstat(descriptor)  # of what was opened: no swap after the check
        if not stat.S_ISREG(status.st_mode):
            raise SecurityConfigError(str(path), "not a regular file")
        if private and status.st_mode & 0o077:
            raise SecurityConfigError(
                str(path),
                f"private key is accessible by group or others (mode "
                f"{stat.S_IMODE(status.st_mode):04o}); it must be 0600 or stricter: "
                f"chmod 600 {path}",
            )
        if status.st_size > KEY_FILE_BYTES_MAX:
            raise SecurityConfigError(
                str(path), f"{status.st_size} bytes; at most {KEY_FILE_BYTES_MAX}"
            )
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            return stream.read(KEY_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise SecurityConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(descriptor)


def write_group_key(path: Path, key: GroupKey, *, overwrite: bool = False) -> None:
    """A group key file (CBOR ``{"kid", "filter", "key"}``), mode 0600, written atomically."""
    data = cbor2.dumps({"kid": key.kid, "filter": key.topic_filter, "key": key.key})
    write_file_atomically(path, data, mode=0o600, overwrite=overwrite)


def read_group_keys(directory: Path) -> tuple[GroupKey, ...]:
    """Every ``*.key`` group key in ``directory`` (none if it does not exist), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return ()
    keys = []
    for path in sorted(directory.glob("*.key")):
        data = _read(path, private=True)
        try:
            fields = cbor2.loads(data)
            keys.append(GroupKey(fields["kid"], fields["filter"], fields["key"]))
        except (cbor2.CBORDecodeError, KeyError, TypeError, ValueError, InvalidTopic) as exc:
            raise SecurityConfigError(str(path), f"not a gridmesh group key file: {exc}") from None
    return tuple(keys)


def read_private_key(path: Path, *, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PKCS#8 PEM file ``path`` (mode 0600 or stricter)."""
    pem = _read(Path(path), private=True)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem
    if encrypted and not passphrase:
        raise SecurityConfigError(str(path), "the private key is encrypted; give its passphrase")
    if not encrypted and passphrase:
        raise SecurityConfigError(
            str(path), "the private key is not encrypted, but a passphrase was given"
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except (ValueError, TypeError) as exc:
        problem = (
            "wrong passphrase, or the encrypted key is corrupted"
            if encrypted
            else f"not a PEM private key (PKCS#8 'BEGIN PRIVATE KEY'): {exc}"
        )
        raise SecurityConfigError(str(path), problem) from None
    except UnsupportedAlgorithm:
        raise SecurityConfigError(str(path), "a private key of an unsupported type") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SecurityConfigError(
            str(path), f"a private key of type {type(key).__name__}; gridmesh keys are Ed25519"
        )
    return key


def read_certificate(path: Path) -> bytes:
    """The certificate in ``path`` (one PEM block, or DER) as DER bytes; parsed, not verified."""
    data = _read(Path(path), private=False)
    try:
        if _PEM_CERTIFICATE in data:
            certificates = x509.load_pem_x509_certificates(data)
            if len(certificates) != 1:
                raise SecurityConfigError(
                    str(path), f"holds {len(certificates)} certificates; expected one"
                )
            return certificates[0].public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        raise SecurityConfigError(
            str(path), "not an X.509 certificate (PEM 'BEGIN CERTIFICATE', or DER)"
        ) from None


def load_authority_file(path: Path) -> Authority:
    """The grid authority certificate in ``path``, checked (``load_authority``)."""
    der = read_certificate(path)
    try:
        return load_authority(der)
    except CertificateInvalid as exc:
        raise SecurityConfigError(str(path), exc.detail) from None


def load_revocations(path: Path, authority: Authority) -> RevocationSet:
    """The revocation list in ``path``, every entry verified; empty when there is no file."""
    if not Path(path).exists():
        return RevocationSet()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    try:
        return RevocationSet.from_bytes(data, authority.public_key)
    except RemoteProtocolError as exc:
        raise SecurityConfigError(str(path), f"not a revocation list of this grid: {exc}") from None


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What a node needs to take part: the authority, its verified identity, its key."""

    authority: Authority
    identity: NodeIdentity
    private_key: Ed25519PrivateKey
    revocations: RevocationSet
    group_keys: tuple[GroupKey, ...] = ()


def load_node_credentials(
    directory: Path,
    node_id: int,
    *,
    passphrase: bytes | None = None,
    now: float | None = None,
) -> NodeCredentials:
    """Node ``node_id``'s credentials from a PKI directory, all checked.

    The certificate must verify against ``ca.crt`` at ``now`` (default: the
    wall clock), not be revoked (``revocations.cbor``, when present), name
    ``node_id`` and hold the public half of the key file.
    """
    layout = PkiLayout(Path(directory))
    when = time.time() if now is None else now
    authority = load_authority_file(layout.ca_certificate)
    revocations = load_revocations(layout.revocations, authority)
    certificate_path = layout.node_certificate(node_id)
    der = read_certificate(certificate_path)
    try:
        identity = verify_node_certificate(der, authority, now=when, revocations=revocations)
    except RemoteProtocolError as exc:
        raise SecurityConfigError(str(certificate_path), exc.detail) from None
    if identity.node_id != node_id:
        raise SecurityConfigError(
            str(certificate_path), f"is node {identity.node_id}'s certificate, not node {node_id}'s"
        )
    key_path = layout.node_key(node_id)
    private_key = read_private_key(key_path, passphrase=passphrase)
    if private_key.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    ) != identity.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw):
        raise SecurityConfigError(
            str(key_path), f"does not hold the key certified in {certificate_path}"
        )
    group_keys = read_group_keys(PkiLayout(Path(directory)).groups)
    return NodeCredentials(authority, identity, private_key, revocations, group_keys)
