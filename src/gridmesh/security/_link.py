"""Mutually authenticated, encrypted links between two nodes (UDP's TLS, in three messages).

Theory of operation
-------------------
Seed 001's Trust Manager: a peer must prove it holds a certificate of the
grid's authority before any application message is accepted from or sent to
it; seed 004: message-level security that does not trust the lower layers.
On UDP there is no TLS, so two nodes run this handshake, SIGMA-style
(Krawczyk 2003, "SIGMA: the SIGn-and-MAc approach"; the same shape as TLS 1.3's
certificate-signed key exchange), carried in three messages:

1. initiator -> responder  ``HELLO  [1, certificate_i, ephemeral_i, nonce_i]``
2. responder -> initiator  ``REPLY  [certificate_r, ephemeral_r, nonce_r, signature_r]``
3. initiator -> responder  ``FINISH [signature_i]``

``ephemeral_*`` are fresh X25519 public keys (32 bytes), ``nonce_*`` 16 random
bytes. The transcript hash ``T = SHA-256(cbor(HELLO) || cbor(certificate_r,
ephemeral_r, nonce_r))``; the responder signs ``"gridmesh-link-v1 responder" ||
T`` and the initiator ``"gridmesh-link-v1 initiator" || T || signature_r``, each
with the Ed25519 key of its certificate. Each side checks the other's
certificate (the authority's signature, validity, revocation) and signature, so
each knows exactly which node (id, role, permissions) is at the other end, and
that the other end saw the same ephemerals: a man in the middle can neither
read nor splice. Keys come from HKDF-SHA256 (RFC 5869) over the X25519 secret,
salted with both nonces, bound to ``T``: a key for each direction (32 bytes
each) and an 8-byte link id. Fresh ephemerals give forward secrecy.

After the handshake, every datagram between the two is a **sealed frame**
``[link_id, counter, ciphertext]``: ChaCha20-Poly1305 (RFC 8439) with the
sender's direction key, the 96-bit nonce being the 64-bit counter (which only
grows; a link is worn out after ``FRAMES_MAX`` frames and must be
re-established), and ``link_id || counter`` as associated data. The receiver
refuses a frame whose counter it has seen or that is more than
``WINDOW_FRAMES`` behind the newest (a sliding bitmap, as DTLS does, RFC 6347
4.1.2.6), so a recorded frame cannot be played again.

Randomness (ephemeral keys, nonces) comes from a ``BitSource`` the driver
passes (``secrets.SystemRandom()`` on real nodes; the simulator's seeded
``Random``, so a run stays a function of its seed). No clock is read: ``now``
(wall-clock Unix seconds, for certificate validity) comes in.

Every failure on peer input raises a ``SecurityError`` subclass: ``Uncertified``
(a malformed handshake message), ``CertificateInvalid``/``CertificateRevoked``,
``BadSignature``, ``DecryptionFailed``, ``Replayed``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gridmesh.security._cose_cbor import CborSubsetError, read_one

if TYPE_CHECKING:
    from gridmesh.security._confidential import GroupKey
from gridmesh.security._ed25519 import ed25519_valid
from gridmesh.security._errors import BadSignature, DecryptionFailed, Replayed, Uncertified
from gridmesh.security._pki import Authority, NodeIdentity, verify_node_certificate
from gridmesh.security._pki_revocation import RevocationSet

__all__ = [
    "FRAMES_MAX",
    "LINK_VERSION",
    "WINDOW_FRAMES",
    "Initiator",
    "KeySource",
    "Link",
    "LinkCredentials",
    "Responder",
]

LINK_VERSION = 1
#: Frames one direction of a link may seal; then it must be established again.
FRAMES_MAX = 2**48
#: How far behind the newest counter a frame may arrive (reordering) and still count.
WINDOW_FRAMES = 1024
_NONCE_BYTES = 16
_KEY_BYTES = 32
_LINK_ID_BYTES = 8
_SIGNATURE_BYTES = 64
_CERTIFICATE_BYTES_MAX = 8192
_FRAME_OVERHEAD_BYTES = 1 + 9 + 9 + 5 + 16  # array, link id, counter, bstr head, tag
_RESPONDER = b"gridmesh-link-v1 responder"
_INITIATOR = b"gridmesh-link-v1 initiator"
_KDF_INFO = b"gridmesh-link-v1 keys"


class KeySource(Protocol):
    """Where ephemeral keys and nonces come from: ``secrets.SystemRandom()`` on real nodes."""

    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class LinkCredentials:
    """What a node proves itself with, and what it checks others against."""

    authority: Authority
    identity: NodeIdentity
    key: Ed25519PrivateKey = field(repr=False)
    revocations: RevocationSet | None = None
    clock_skew_s: float = 300.0
    #: Unix seconds at ``now == 0``: 0 on real nodes (``now`` is the wall clock); a
    #: simulation's start date, since the simulator's clock starts at 0.
    epoch_s: float = 0.0
    #: Keys of confidential topics this node may read and write (``_confidential``).
    group_keys: tuple[GroupKey, ...] = ()


def _random_bytes(source: KeySource, count: int) -> bytes:
    return source.getrandbits(8 * count).to_bytes(count, "big")


def _fields(body: object, count: int, what: str) -> list[object]:
    if type(body) is not list or len(body) != count:
        raise Uncertified(f"expected {what} of {count} fields", field="body")
    return body


def _bytes(value: object, what: str, *, size: int | None = None, size_max: int = 0) -> bytes:
    if type(value) is not bytes:
        raise Uncertified("expected bytes", field=what)
    if size is not None and len(value) != size:
        raise Uncertified(f"expected {size} bytes", field=what)
    if size_max and len(value) > size_max:
        raise Uncertified(f"more than {size_max} bytes", field=what)
    return value


def _verify_peer(credentials: LinkCredentials, certificate: bytes, now: float) -> NodeIdentity:
    return verify_node_certificate(
        certificate,
        credentials.authority,
        now=credentials.epoch_s + now,
        revocations=credentials.revocations,
        clock_skew_s=credentials.clock_skew_s,
    )


def _check_signature(identity: NodeIdentity, signature: bytes, signed: bytes) -> None:
    if not ed25519_valid(identity.public_key, signature, signed):
        raise BadSignature(
            f"the handshake signature of node {identity.node_id} does not verify",
            field="signature",
        )


def _derive(
    secret: bytes, nonce_i: bytes, nonce_r: bytes, transcript: bytes
) -> tuple[bytes, bytes, bytes]:
    material = HKDF(
        algorithm=hashes.SHA256(),
        length=2 * _KEY_BYTES + _LINK_ID_BYTES,
        salt=nonce_i + nonce_r,
        info=_KDF_INFO + transcript,
    ).derive(secret)
    return (
        material[:_KEY_BYTES],
        material[_KEY_BYTES : 2 * _KEY_BYTES],
        material[2 * _KEY_BYTES :],
    )


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise Uncertified("an unusable X25519 key", field="ephemeral") from None


class Initiator:
    """The side that starts a handshake: ``hello()``, then ``on_reply`` gives the ``Link``."""

    __slots__ = ("_credentials", "_ephemeral", "_hello", "_nonce")

    def __init__(self, credentials: LinkCredentials, source: KeySource) -> None:
        self._credentials = credentials
        self._ephemeral = X25519PrivateKey.from_private_bytes(_random_bytes(source, _KEY_BYTES))
        self._nonce = _random_bytes(source, _NONCE_BYTES)
        self._hello: list[object] = [
            LINK_VERSION,
            credentials.identity.certificate,
            self._ephemeral.public_key().public_bytes_raw(),
            self._nonce,
        ]

    def hello(self) -> list[object]:
        """The ``HELLO`` body (the same each time: send it again if no reply comes)."""
        return self._hello

    def on_reply(self, body: object, now: float) -> tuple[list[object], Link]:
        """Check the responder's ``REPLY``; returns the ``FINISH`` body and the link."""
        certificate, ephemeral, nonce, signature = _fields(body, 4, "a link REPLY")
        certificate = _bytes(certificate, "certificate", size_max=_CERTIFICATE_BYTES_MAX)
        ephemeral = _bytes(ephemeral, "ephemeral", size=_KEY_BYTES)
        nonce = _bytes(nonce, "nonce", size=_NONCE_BYTES)
        signature = _bytes(signature, "signature", size=_SIGNATURE_BYTES)
        peer = _verify_peer(self._credentials, certificate, now)
        transcript = _transcript(self._hello, certificate, ephemeral, nonce)
        _check_signature(peer, signature, _RESPONDER + transcript)
        mine = self._credentials.key.sign(_INITIATOR + transcript + signature)
        send, receive, link_id = _derive(
            _exchange(self._ephemeral, ephemeral), self._nonce, nonce, transcript
        )
        return [mine], Link(peer, link_id, send_key=send, receive_key=receive, established=now)


class Responder:
    """The side that answers: ``Responder(hello)`` checks it, ``reply()``, ``on_finish``."""

    __slots__ = ("_keys", "_peer", "_reply", "_signature", "_transcript", "hello")

    def __init__(
        self, credentials: LinkCredentials, hello: object, source: KeySource, now: float
    ) -> None:
        version, certificate, ephemeral, nonce_i = _fields(hello, 4, "a link HELLO")
        self.hello = hello
        if version != LINK_VERSION or type(version) is not int:
            raise Uncertified(f"link version {version!r} is not spoken here", field="version")
        certificate = _bytes(certificate, "certificate", size_max=_CERTIFICATE_BYTES_MAX)
        ephemeral = _bytes(ephemeral, "ephemeral", size=_KEY_BYTES)
        nonce_i = _bytes(nonce_i, "nonce", size=_NONCE_BYTES)
        self._peer = _verify_peer(credentials, certificate, now)
        own = X25519PrivateKey.from_private_bytes(_random_bytes(source, _KEY_BYTES))
        own_public = own.public_key().public_bytes_raw()
        nonce_r = _random_bytes(source, _NONCE_BYTES)
        mine = credentials.identity.certificate
        self._transcript = _transcript(
            [version, certificate, ephemeral, nonce_i], mine, own_public, nonce_r
        )
        self._signature = credentials.key.sign(_RESPONDER + self._transcript)
        self._reply: list[object] = [mine, own_public, nonce_r, self._signature]
        # The initiator sends with the first key, so this side receives with it.
        receive, send, link_id = _derive(
            _exchange(own, ephemeral), nonce_i, nonce_r, self._transcript
        )
        self._keys = (send, receive, link_id)

    @property
    def peer(self) -> NodeIdentity:
        """Who claims to be at the other end: proven only once ``on_finish`` returns."""
        return self._peer

    @property
    def link_id(self) -> bytes:
        """The id the link will have: frames naming it may come before the FINISH."""
        return self._keys[2]

    def reply(self) -> list[object]:
        """The ``REPLY`` body (the same each time a copy of the HELLO comes)."""
        return self._reply

    def on_finish(self, body: object, now: float) -> Link:
        """Check the initiator's ``FINISH``: now both sides are proven. Returns the link."""
        (signature,) = _fields(body, 1, "a link FINISH")
        signature = _bytes(signature, "signature", size=_SIGNATURE_BYTES)
        _check_signature(self._peer, signature, _INITIATOR + self._transcript + self._signature)
        send, receive, link_id = self._keys
        return Link(self._peer, link_id, send_key=send, receive_key=receive, established=now)


def _transcript(hello: list[object], certificate: bytes, ephemeral: bytes, nonce: bytes) -> bytes:
    digest = hashlib.sha256(cbor2.dumps(hello))
    digest.update(cbor2.dumps([certificate, ephemeral, nonce]))
    return digest.digest()


class Link:
    """An established link: seal what goes to ``peer``, open what comes from it."""

    __slots__ = (
        "_highest",
        "_open_aead",
        "_seal_aead",
        "_seen",
        "established",
        "frames_opened",
        "frames_sealed",
        "link_id",
        "peer",
    )

    def __init__(
        self,
        peer: NodeIdentity,
        link_id: bytes,
        *,
        send_key: bytes,
        receive_key: bytes,
        established: float,
    ) -> None:
        self.peer = peer
        self.link_id = link_id
        self.established = established
        self._seal_aead = ChaCha20Poly1305(send_key)
        self._open_aead = ChaCha20Poly1305(receive_key)
        self.frames_sealed = 0
        self.frames_opened = 0
        self._highest = 0  # the newest counter opened (counters start at 1)
        self._seen = 0  # bit k: counter highest - k was opened

    @property
    def worn_out(self) -> bool:
        """True once this side has sealed ``FRAMES_MAX`` frames: establish a new link."""
        return self.frames_sealed >= FRAMES_MAX

    def seal(self, plaintext: bytes) -> bytes:
        """One frame carrying ``plaintext`` to the peer."""
        if self.worn_out:
            raise Replayed("this link sealed FRAMES_MAX frames; establish a new one")
        self.frames_sealed += 1
        counter = self.frames_sealed
        nonce = counter.to_bytes(12, "big")
        sealed = self._seal_aead.encrypt(nonce, plaintext, self.link_id + nonce)
        return cbor2.dumps([self.link_id, counter, sealed])

    def open(self, frame: object) -> bytes:
        """The plaintext of a frame from the peer: authentic, and not seen before."""
        link_id, counter, sealed = _frame_fields(frame)
        if link_id != self.link_id:
            raise DecryptionFailed("a frame of another link", field="link_id")
        if counter <= self._highest - WINDOW_FRAMES or (
            counter <= self._highest and self._seen >> (self._highest - counter) & 1
        ):
            raise Replayed(f"frame {counter} was seen or is too old", field="counter")
        nonce = counter.to_bytes(12, "big")
        try:
            plaintext = self._open_aead.decrypt(nonce, sealed, link_id + nonce)
        except InvalidTag:
            raise DecryptionFailed(
                "a frame that does not authenticate", field="ciphertext"
            ) from None
        if counter > self._highest:  # only an authentic frame moves the window
            shift = counter - self._highest
            self._seen = ((self._seen << shift) | 1) & ((1 << WINDOW_FRAMES) - 1)
            self._highest = counter
        else:
            self._seen |= 1 << (self._highest - counter)
        self.frames_opened += 1
        return plaintext

    @staticmethod
    def frame_link_id(frame: bytes) -> bytes:
        """The link id a frame names, to find its link before opening it."""
        return _frame_fields(frame)[0]

    @staticmethod
    def overhead_bytes() -> int:
        """Bytes a frame adds to its plaintext, at most."""
        return _FRAME_OVERHEAD_BYTES


def _frame_fields(frame: object) -> tuple[bytes, int, bytes]:
    if type(frame) is bytes:
        try:
            frame = read_one(frame, depth_max=2)  # strict: no tags, no floats, shortest form
        except CborSubsetError:
            raise DecryptionFailed("a frame that is not strict CBOR", field="frame") from None
    if type(frame) is not list or len(frame) != 3:
        raise DecryptionFailed("expected [link_id, counter, ciphertext]", field="frame")
    link_id, counter, sealed = frame
    if type(link_id) is not bytes or len(link_id) != _LINK_ID_BYTES:
        raise DecryptionFailed(f"expected {_LINK_ID_BYTES} bytes", field="link_id")
    if type(counter) is not int or not 1 <= counter <= FRAMES_MAX:
        raise DecryptionFailed("expected a counter in 1..FRAMES_MAX", field="counter")
    if type(sealed) is not bytes:
        raise DecryptionFailed("expected bytes", field="ciphertext")
    return link_id, counter, sealed
