"""COSE against the published examples (cose-wg/Examples): see tests/data/cose/README.md.

Ed25519 and AES-GCM / ChaCha20-Poly1305 are deterministic for a given key and
nonce, so besides verifying and decrypting the published messages we rebuild
them from their inputs and compare every byte.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from gridmesh.security._cose import (
    _encrypt0_assemble,
    _sign1_assemble,
    cose_kid,
    decrypt0,
    encrypt0_kid,
    verify1,
)
from gridmesh.security._errors import BadSignature, DecryptionFailed

VECTORS = Path(__file__).resolve().parent / "data" / "cose"


def load(kind: str, expect: str) -> list[Any]:
    found = []
    for path in sorted(VECTORS.glob("*.json")):
        vector = json.loads(path.read_text(encoding="utf-8"))
        if vector["kind"] == kind and vector["expect"] == expect:
            found.append(pytest.param(vector, id=path.stem))
    return found


def aead_key(vector: dict[str, Any]) -> bytes:
    encoded = vector["key_b64url"]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def test_every_vector_file_is_used() -> None:
    used = sum(
        len(load(kind, expect)) for kind in ("sign1", "encrypt0") for expect in ("pass", "refuse")
    )
    assert used == len(list(VECTORS.glob("*.json"))) == 9


@pytest.mark.parametrize("vector", load("sign1", "pass"))
def test_published_sign1_verifies_and_is_reproduced_exactly(vector: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["key"]["d_hex"]))
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(vector["key"]["x_hex"]))
    assert key.public_key() == public_key
    published = bytes.fromhex(vector["output_cbor_hex"])
    plaintext = vector["plaintext"].encode()
    aad = bytes.fromhex(vector["external_aad_hex"])

    assert verify1(published, public_key, external_aad=aad) == plaintext
    assert cose_kid(published) == bytes.fromhex(vector["unprotected_kid_hex"])
    rebuilt = _sign1_assemble(
        bytes.fromhex(vector["protected_hex"]),
        {4: bytes.fromhex(vector["unprotected_kid_hex"])},
        plaintext,
        key,
        external_aad=aad,
        detached=None,
        tagged=True,
    )
    assert rebuilt.hex().upper() == vector["output_cbor_hex"]
    with pytest.raises(BadSignature):  # and the signature binds the content
        verify1(published.replace(b"content", b"CONTENT"), public_key, external_aad=aad)


@pytest.mark.parametrize("vector", load("sign1", "refuse"))
def test_published_sign1_we_do_not_support_is_refused(vector: dict[str, Any]) -> None:
    """Ed448 (a 114-byte signature under alg EdDSA) and ES256 with alg unprotected."""
    published = bytes.fromhex(vector["output_cbor_hex"])
    public_key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    with pytest.raises(BadSignature) as refused:
        verify1(published, public_key)
    assert refused.value.field == vector["refuse_field"]


@pytest.mark.parametrize("vector", load("encrypt0", "pass"))
def test_published_encrypt0_decrypts_and_is_reproduced_exactly(vector: dict[str, Any]) -> None:
    key = aead_key(vector)
    published = bytes.fromhex(vector["output_cbor_hex"])
    plaintext = vector["plaintext"].encode()
    aad = bytes.fromhex(vector["external_aad_hex"])
    iv = bytes.fromhex(vector["iv_hex"])

    assert decrypt0(published, key, external_aad=aad) == plaintext
    assert decrypt0(published, key, external_aad=aad, alg=vector["alg"]) == plaintext
    rebuilt = _encrypt0_assemble(
        bytes.fromhex(vector["protected_hex"]),
        {5: iv},
        plaintext,
        key,
        iv=iv,
        alg=vector["alg"],
        external_aad=aad,
        tagged=True,
    )
    assert rebuilt.hex().upper() == vector["output_cbor_hex"]
    with pytest.raises(DecryptionFailed):  # the vectors name no key id
        encrypt0_kid(published)
    with pytest.raises(DecryptionFailed):
        decrypt0(published, key, external_aad=aad + b"x")


@pytest.mark.parametrize("vector", load("encrypt0", "refuse"))
def test_published_encrypt0_with_a_bad_tag_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(DecryptionFailed) as refused:
        decrypt0(bytes.fromhex(vector["output_cbor_hex"]), aead_key(vector))
    assert refused.value.field == vector["refuse_field"]


@pytest.mark.parametrize(
    "vector",
    [
        param
        for param in load("encrypt0", "pass") + load("encrypt0", "refuse")
        if "draft" in param.values[0]
    ],
)
def test_draft_era_outputs_prove_the_inputs_and_are_refused(vector: dict[str, Any]) -> None:
    """The stored (draft) files' own outputs: a raw AEAD with their AAD gives them back.

    That checks key, IV and plaintext against the primary source; gridmesh itself
    speaks RFC 9052 only, so it refuses the draft messages.
    """
    draft = vector["draft"]
    stored = cbor2.loads(bytes.fromhex(draft["output_cbor_hex"])).value
    key = aead_key(vector)
    aead = ChaCha20Poly1305(key) if vector["alg"] == 24 else AESGCM(key)
    iv = bytes.fromhex(vector["iv_hex"])
    plaintext = vector["plaintext"].encode()
    ciphertext = aead.encrypt(iv, plaintext, bytes.fromhex(draft["aad_hex"]))
    if vector["expect"] == "pass":
        assert ciphertext == stored[2]
    else:  # a "fail the tag" vector: only the last byte differs
        assert ciphertext[:-1] == stored[2][:-1] and ciphertext[-1] != stored[2][-1]
    with pytest.raises(DecryptionFailed):
        decrypt0(
            bytes.fromhex(draft["output_cbor_hex"]),
            key,
            external_aad=bytes.fromhex(vector["external_aad_hex"]),
        )
