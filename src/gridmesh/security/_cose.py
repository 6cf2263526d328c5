"""COSE_Sign1 (EdDSA) and COSE_Encrypt0 (AES-GCM, ChaCha20/Poly1305): RFC 9052, RFC 9053.

Theory of operation
-------------------
A COSE message is a CBOR array. COSE_Sign1 (RFC 9052, section 4.2) is
``[protected, unprotected, payload, signature]`` and COSE_Encrypt0 (section
5.2) is ``[protected, unprotected, ciphertext]``. ``protected`` is a byte
string holding a CBOR map of header parameters; the signature or the AEAD tag
covers those exact bytes, so nothing in it can change in transit.
``unprotected`` is a plain map that anyone on the path can rewrite.

What we build:

* **Sign1**: protected ``{1: -8, 4: kid}`` (alg EdDSA with Ed25519, and the
  key id), unprotected ``{}``. The kid is *protected* so that a relay cannot
  swap it and make a receiver count a forged message against another sender's
  key, and so that one signed message has one byte form. The signature covers
  the ``Sig_structure`` ``["Signature1", protected, external_aad, payload]``
  (section 4.4). A **detached** payload (section 4.1) leaves ``nil`` in the
  payload field; the content travels beside the message (gridmesh signs an
  envelope's end-to-end bytes, which are already on the wire) and is given
  back to ``verify1``.
* **Encrypt0**: protected ``{1: alg, 4: kid}``, unprotected ``{5: iv}``; the
  AEAD's associated data is the ``Enc_structure`` ``["Encrypt0", protected,
  external_aad]`` (section 5.3). Algorithms A128GCM (1), A192GCM (2),
  A256GCM (3) and ChaCha20/Poly1305 (24), all with 12-byte IVs and 16-byte
  tags (RFC 9053, sections 4.1 and 4.3).
* Output is **untagged**: gridmesh carries a COSE message in a field that
  already says what it is. Input may be untagged or carry the one tag of its
  type at the top (18 for Sign1, 16 for Encrypt0), in its one-byte form.

What never bends, because every byte comes from a peer:

1. the size is checked against ``cose_bytes_max`` before anything is parsed;
2. the CBOR is read by ``_cose_cbor`` (tags, indefinite lengths, floats,
   non-shortest heads, non-int/text map keys and duplicate keys refused) and
   must fill the buffer exactly;
3. the structure is exact: an array of 4 (Sign1) or 3 (Encrypt0), a
   protected byte string holding a map (or empty), an unprotected map, no
   label in both; ``alg`` present and protected (EdDSA for Sign1, one of the
   four AEADs for Encrypt0); ``crit`` protected, non-empty, naming only
   protected labels this module understands; a 64-byte signature; a 12-byte
   IV; Partial IV (label 6) refused: the full IV always travels;
4. header parameters we do not know and that are not critical are ignored
   (RFC 9052, section 3), as are content type and counter signatures;
5. the only exceptions that leave ``verify1`` and ``cose_kid`` on peer input
   are ``BadSignature``, and from ``decrypt0`` and ``encrypt0_kid``
   ``DecryptionFailed``. Misuse of the API by the local caller (a key of the
   wrong type or length, an IV of the wrong size) is a ``LocalProtocolError``.

Randomness and nonces. This module draws no randomness: ``encrypt0`` takes its
IV as an argument. A (key, IV) pair must never be used twice: with AES-GCM or
ChaCha20/Poly1305 a repeated IV reveals the XOR of two plaintexts and lets an
attacker forge tags. Two safe ways to get IVs:

* ``iv_from_counter(base_iv, counter)``: a per-key random base IV XOR a
  message counter that never repeats for that key (RFC 9052, section 3.1,
  Partial IV construction). The counter must survive restarts.
* ``random_iv(source)``: 96 random bits from a caller-supplied source. In
  production pass ``secrets.SystemRandom()`` (or ``secrets.token_bytes(12)``
  as ``iv``); the simulator passes its seeded ``random.Random``. Random IVs
  are safe for up to 2**32 messages per key (NIST SP 800-38D, section 8.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple, Protocol

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from gridmesh.errors import LocalProtocolError
from gridmesh.security._cose_cbor import DEPTH_MAX, CborSubsetError, read_one
from gridmesh.security._ed25519 import ed25519_valid
from gridmesh.security._errors import BadSignature, DecryptionFailed
from gridmesh.wire import MESSAGE_BYTES_MAX

__all__ = [
    "ALG_A128GCM",
    "ALG_A192GCM",
    "ALG_A256GCM",
    "ALG_CHACHA20_POLY1305",
    "ALG_EDDSA",
    "COSE_BYTES_MAX",
    "COUNTER_MAX",
    "IV_BYTES",
    "KID_BYTES_MAX",
    "BitSource",
    "cose_kid",
    "decrypt0",
    "encrypt0",
    "encrypt0_kid",
    "iv_from_counter",
    "random_iv",
    "sign1",
    "verify1",
]

# A COSE message never exceeds the envelope that carries it.
COSE_BYTES_MAX: Final = MESSAGE_BYTES_MAX
KID_BYTES_MAX: Final = 64
IV_BYTES: Final = 12
COUNTER_MAX: Final = 2**64 - 1
SIGNATURE_BYTES: Final = 64  # Ed25519 (RFC 8032); an Ed448 signature is refused
TAG_BYTES: Final = 16

# Algorithms (RFC 9053, sections 2.2, 4.1, 4.3).
ALG_EDDSA: Final = -8
ALG_A128GCM: Final = 1
ALG_A192GCM: Final = 2
ALG_A256GCM: Final = 3
ALG_CHACHA20_POLY1305: Final = 24
_AEAD_KEY_BYTES: Final = {
    ALG_A128GCM: 16,
    ALG_A192GCM: 24,
    ALG_A256GCM: 32,
    ALG_CHACHA20_POLY1305: 32,
}

# Header labels (RFC 9052, section 3.1).
_ALG, _CRIT, _CONTENT_TYPE, _KID, _IV, _PARTIAL_IV = 1, 2, 3, 4, 5, 6
_FIELDS = {_ALG: "alg", _CRIT: "crit"}
# Labels a crit list may name: those this module reads and checks.
_SIGN1_UNDERSTOOD = frozenset({_ALG, _CRIT, _CONTENT_TYPE, _KID})
_ENCRYPT0_UNDERSTOOD = _SIGN1_UNDERSTOOD | {_IV}
_CONTENT_FORMAT_MAX = 0xFFFF

# The tags accepted at the top (RFC 9052, section 2), in their one-byte head form.
_SIGN1_TAG = 18
_ENCRYPT0_TAG = 16
_SIGN1_TAG_HEAD = 0xC0 | _SIGN1_TAG  # 0xd2
_ENCRYPT0_TAG_HEAD = 0xC0 | _ENCRYPT0_TAG  # 0xd0
_SIGN1_FIELDS = 4
_ENCRYPT0_FIELDS = 3

_dumps = cbor2.dumps
_SecurityErrorType = type[BadSignature] | type[DecryptionFailed]


class BitSource(Protocol):
    """Where random bits come from: ``random.Random``, ``secrets.SystemRandom``."""

    def getrandbits(self, k: int, /) -> int: ...


class _Sign1(NamedTuple):
    protected: bytes
    kid: bytes | None
    payload: bytes | None
    signature: bytes


class _Encrypt0(NamedTuple):
    protected: bytes
    kid: bytes | None
    alg: int
    iv: bytes
    ciphertext: bytes


# --- Sign1 -------------------------------------------------------------------


def sign1(
    payload: bytes | None,
    key: Ed25519PrivateKey,
    *,
    kid: bytes,
    external_aad: bytes = b"",
    detached: bytes | None = None,
) -> bytes:
    """An untagged COSE_Sign1 of ``payload``, or of ``detached`` content (payload ``None``).

    The protected header is ``{1: -8, 4: kid}``; ``external_aad`` is signed but not sent.
    """
    protected = _dumps({_ALG: ALG_EDDSA, _KID: _check_kid(kid)})
    return _sign1_assemble(
        protected, {}, payload, key, external_aad=external_aad, detached=detached
    )


def verify1(
    message: bytes,
    public_key: Ed25519PublicKey,
    *,
    external_aad: bytes = b"",
    detached: bytes | None = None,
    cose_bytes_max: int = COSE_BYTES_MAX,
) -> bytes:
    """The payload of a COSE_Sign1 (``detached`` if the payload travels beside it).

    Any problem with ``message``, including a signature that does not verify, raises
    ``BadSignature``.
    """
    if not isinstance(public_key, Ed25519PublicKey):
        raise LocalProtocolError(f"expected an Ed25519PublicKey, got {type(public_key).__name__}")
    aad = _local_bytes(external_aad, "external_aad")
    content = None if detached is None else _local_bytes(detached, "detached")
    signed = _decode_sign1(message, cose_bytes_max)
    if signed.payload is None:
        if content is None:
            raise BadSignature("the payload is detached and no content was given", field="payload")
    elif content is not None:
        raise BadSignature("attached payload where detached content was expected", field="payload")
    else:
        content = signed.payload
    if not ed25519_valid(
        public_key, signed.signature, _sig_structure(signed.protected, aad, content)
    ):
        raise BadSignature("the signature does not verify", field="signature")
    return content


def cose_kid(message: bytes, *, cose_bytes_max: int = COSE_BYTES_MAX) -> bytes:
    """The key id of a COSE_Sign1, to pick the key before ``verify1``; nothing is verified.

    A message that is malformed or names no key raises ``BadSignature``.
    """
    kid = _decode_sign1(message, cose_bytes_max).kid
    if kid is None:
        raise BadSignature("no key id in the message", field="kid")
    return kid


def _sign1_assemble(
    protected: bytes,
    unprotected: Mapping[int | str, object],
    payload: bytes | None,
    key: Ed25519PrivateKey,
    *,
    external_aad: bytes,
    detached: bytes | None,
    tagged: bool = False,
) -> bytes:
    """Sign with the given headers; ``sign1`` and the published test vectors use it."""
    if not isinstance(key, Ed25519PrivateKey):
        raise LocalProtocolError(f"expected an Ed25519PrivateKey, got {type(key).__name__}")
    aad = _local_bytes(external_aad, "external_aad")
    if detached is not None:
        if payload is not None:
            raise LocalProtocolError("give a payload or detached content, not both")
        content = _local_bytes(detached, "detached")
    elif payload is None:
        raise LocalProtocolError("nothing to sign: payload and detached are both None")
    else:
        content = payload = _local_bytes(payload, "payload")
    signature = key.sign(_sig_structure(protected, aad, content))
    fields = [protected, unprotected, payload, signature]
    return _dumps(cbor2.CBORTag(_SIGN1_TAG, fields) if tagged else fields)


def _sig_structure(protected: bytes, external_aad: bytes, payload: bytes) -> bytes:
    return _dumps(["Signature1", protected, external_aad, payload])


def _decode_sign1(message: object, cose_bytes_max: int) -> _Sign1:
    fields = _decode_top(
        message,
        cose_bytes_max,
        tag_head=_SIGN1_TAG_HEAD,
        field_count=_SIGN1_FIELDS,
        name="COSE_Sign1",
        error=BadSignature,
    )
    protected, headers, kid = _headers(fields[0], fields[1], _SIGN1_UNDERSTOOD, BadSignature)
    alg = headers[_ALG]
    if type(alg) is not int or alg != ALG_EDDSA:
        raise BadSignature(f"algorithm {alg!r} is not EdDSA ({ALG_EDDSA})", field="alg")
    payload = fields[2]
    if payload is not None and type(payload) is not bytes:
        raise BadSignature("expected a byte string or nil", field="payload")
    signature = fields[3]
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"expected {SIGNATURE_BYTES} bytes (Ed25519)", field="signature")
    return _Sign1(protected, kid, payload, signature)


# --- Encrypt0 ----------------------------------------------------------------


def encrypt0(
    plaintext: bytes,
    key: bytes,
    *,
    kid: bytes,
    iv: bytes,
    external_aad: bytes = b"",
    alg: int = ALG_A256GCM,
) -> bytes:
    """An untagged COSE_Encrypt0 of ``plaintext``: protected ``{1: alg, 4: kid}``, IV unprotected.

    ``iv`` (12 bytes) must never repeat under ``key``: see ``iv_from_counter``.
    """
    protected = _dumps({_ALG: alg, _KID: _check_kid(kid)})
    return _encrypt0_assemble(
        protected, {_IV: iv}, plaintext, key, iv=iv, alg=alg, external_aad=external_aad
    )


def decrypt0(
    message: bytes,
    key: bytes,
    *,
    external_aad: bytes = b"",
    alg: int | None = None,
    cose_bytes_max: int = COSE_BYTES_MAX,
) -> bytes:
    """The plaintext of a COSE_Encrypt0; any problem raises ``DecryptionFailed``.

    ``alg``, if given, pins the algorithm ``key`` is for (RFC 9052, section 3.1:
    a key is used with one algorithm); otherwise any of the four is accepted.
    """
    key = _local_bytes(key, "key")
    aad = _local_bytes(external_aad, "external_aad")
    sealed = _decode_encrypt0(message, cose_bytes_max)
    if alg is not None and sealed.alg != alg:
        raise DecryptionFailed(f"algorithm {sealed.alg} where {alg} was expected", field="alg")
    if len(key) != _AEAD_KEY_BYTES[sealed.alg]:
        raise DecryptionFailed(f"the key is not a key for algorithm {sealed.alg}", field="alg")
    aead = ChaCha20Poly1305(key) if sealed.alg == ALG_CHACHA20_POLY1305 else AESGCM(key)
    try:
        return aead.decrypt(sealed.iv, sealed.ciphertext, _enc_structure(sealed.protected, aad))
    except InvalidTag:
        raise DecryptionFailed("the tag does not verify", field="ciphertext") from None


def encrypt0_kid(message: bytes, *, cose_bytes_max: int = COSE_BYTES_MAX) -> bytes:
    """The key id of a COSE_Encrypt0, to pick the key before ``decrypt0``.

    A message that is malformed or names no key raises ``DecryptionFailed``.
    """
    kid = _decode_encrypt0(message, cose_bytes_max).kid
    if kid is None:
        raise DecryptionFailed("no key id in the message", field="kid")
    return kid


def iv_from_counter(base_iv: bytes, counter: int) -> bytes:
    """The IV of message number ``counter`` under one key: ``base_iv`` XOR the counter.

    RFC 9052, section 3.1: the counter, left-padded with zeros to 12 bytes, XOR the
    base IV. Distinct counters give distinct IVs; never reuse a counter with a key.
    """
    base = _local_bytes(base_iv, "base_iv")
    if len(base) != IV_BYTES:
        raise LocalProtocolError(f"base_iv must be {IV_BYTES} bytes, got {len(base)}")
    if type(counter) is not int or not 0 <= counter <= COUNTER_MAX:
        raise LocalProtocolError(f"counter must be an integer in 0..{COUNTER_MAX}")
    return (int.from_bytes(base, "big") ^ counter).to_bytes(IV_BYTES, "big")


def random_iv(source: BitSource) -> bytes:
    """A 12-byte IV of random bits from ``source`` (production: ``secrets.SystemRandom()``)."""
    return source.getrandbits(8 * IV_BYTES).to_bytes(IV_BYTES, "big")


def _encrypt0_assemble(
    protected: bytes,
    unprotected: Mapping[int | str, object],
    plaintext: bytes,
    key: bytes,
    *,
    iv: bytes,
    alg: int,
    external_aad: bytes,
    tagged: bool = False,
) -> bytes:
    """Encrypt with the given headers; ``encrypt0`` and the published test vectors use it."""
    if type(alg) is not int or alg not in _AEAD_KEY_BYTES:
        raise LocalProtocolError(f"unsupported algorithm {alg!r}, not one of {[*_AEAD_KEY_BYTES]}")
    key = _local_bytes(key, "key")
    if len(key) != _AEAD_KEY_BYTES[alg]:
        raise LocalProtocolError(f"algorithm {alg} needs a {_AEAD_KEY_BYTES[alg]}-byte key")
    iv = _local_bytes(iv, "iv")
    if len(iv) != IV_BYTES:
        raise LocalProtocolError(f"iv must be {IV_BYTES} bytes, got {len(iv)}")
    plaintext = _local_bytes(plaintext, "plaintext")
    aad = _enc_structure(protected, _local_bytes(external_aad, "external_aad"))
    aead = ChaCha20Poly1305(key) if alg == ALG_CHACHA20_POLY1305 else AESGCM(key)
    fields = [protected, unprotected, aead.encrypt(iv, plaintext, aad)]
    return _dumps(cbor2.CBORTag(_ENCRYPT0_TAG, fields) if tagged else fields)


def _enc_structure(protected: bytes, external_aad: bytes) -> bytes:
    return _dumps(["Encrypt0", protected, external_aad])


def _decode_encrypt0(message: object, cose_bytes_max: int) -> _Encrypt0:
    fields = _decode_top(
        message,
        cose_bytes_max,
        tag_head=_ENCRYPT0_TAG_HEAD,
        field_count=_ENCRYPT0_FIELDS,
        name="COSE_Encrypt0",
        error=DecryptionFailed,
    )
    protected, headers, kid = _headers(fields[0], fields[1], _ENCRYPT0_UNDERSTOOD, DecryptionFailed)
    alg = headers[_ALG]
    if type(alg) is not int or alg not in _AEAD_KEY_BYTES:
        raise DecryptionFailed(f"unsupported algorithm {alg!r}", field="alg")
    if _PARTIAL_IV in headers:
        raise DecryptionFailed("Partial IV is not supported: send the IV", field="partial_iv")
    iv = headers.get(_IV)
    if type(iv) is not bytes or len(iv) != IV_BYTES:
        raise DecryptionFailed(f"expected a {IV_BYTES}-byte IV", field="iv")
    ciphertext = fields[2]
    if type(ciphertext) is not bytes or len(ciphertext) < TAG_BYTES:
        raise DecryptionFailed(f"shorter than the {TAG_BYTES}-byte tag", field="ciphertext")
    return _Encrypt0(protected, kid, alg, iv, ciphertext)


# --- shared decoding -----------------------------------------------------------


def _decode_top(
    message: object,
    cose_bytes_max: int,
    *,
    tag_head: int,
    field_count: int,
    name: str,
    error: _SecurityErrorType,
) -> list[object]:
    """The fields of the top-level array, after the size check and the optional tag."""
    if isinstance(message, bytes):
        data = message
    elif isinstance(message, bytearray | memoryview):
        data = bytes(message)
    else:
        raise error(f"expected bytes, got {type(message).__name__}")
    size = len(data)
    if size > cose_bytes_max:
        raise error(f"{size} bytes exceeds cose_bytes_max={cose_bytes_max}")
    if size == 0:
        raise error("empty message")
    try:
        item = read_one(data, 1 if data[0] == tag_head else 0, DEPTH_MAX)
    except CborSubsetError as exc:
        raise error(f"not well-formed: {exc}") from None
    if type(item) is not list or len(item) != field_count:
        raise error(f"{name} must be an array of {field_count} items")
    return item


def _headers(
    protected: object,
    unprotected: object,
    understood: frozenset[int],
    error: _SecurityErrorType,
) -> tuple[bytes, dict[object, object], bytes | None]:
    """Check both header buckets; returns the protected bytes, all headers and the kid."""
    if type(protected) is not bytes:
        raise error("expected a byte string", field="protected")
    protected_map: object = {}
    if protected:
        try:
            protected_map = read_one(protected, 0, DEPTH_MAX - 1)
        except CborSubsetError as exc:
            raise error(f"not well-formed: {exc}", field="protected") from None
    if type(protected_map) is not dict:
        raise error("expected a map in the byte string", field="protected")
    if type(unprotected) is not dict:
        raise error("expected a map", field="unprotected")
    if shared := protected_map.keys() & unprotected.keys():
        raise error(f"labels {sorted(map(repr, shared))} in both buckets", field="unprotected")
    for label in (_ALG, _CRIT):
        if label in unprotected:
            raise error("must be in the protected header", field=_FIELDS[label])
    if _ALG not in protected_map:
        raise error("no algorithm in the protected header", field="alg")
    if _CRIT in protected_map:
        _check_crit(protected_map, understood, error)
    headers = {**protected_map, **unprotected}
    kid = headers.get(_KID)
    if kid is not None and (type(kid) is not bytes or len(kid) > KID_BYTES_MAX):
        raise error(f"expected at most {KID_BYTES_MAX} bytes", field="kid")
    if _CONTENT_TYPE in headers:
        content_type = headers[_CONTENT_TYPE]
        if type(content_type) is not str and not (
            type(content_type) is int and 0 <= content_type <= _CONTENT_FORMAT_MAX
        ):
            raise error("expected a content format number or text", field="content_type")
    return protected, headers, kid


def _check_crit(
    protected: dict[object, object], understood: frozenset[int], error: _SecurityErrorType
) -> None:
    crit = protected[_CRIT]
    if type(crit) is not list or not crit:
        raise error("expected a non-empty array of labels", field="crit")
    for label in crit:
        if type(label) not in (int, str):
            raise error(f"{label!r} is not a label", field="crit")
        if label not in protected:
            raise error(f"critical label {label!r} is not protected", field="crit")
        if label not in understood:
            raise error(f"critical header {label!r} is not understood", field="crit")


def _check_kid(kid: bytes) -> bytes:
    kid = _local_bytes(kid, "kid")
    if len(kid) > KID_BYTES_MAX:
        raise LocalProtocolError(f"kid is {len(kid)} bytes, more than {KID_BYTES_MAX}")
    return kid


def _local_bytes(value: object, name: str) -> bytes:
    """``value`` as bytes, or ``LocalProtocolError``: the local caller passed it."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise LocalProtocolError(f"{name} must be bytes, got {type(value).__name__}")
