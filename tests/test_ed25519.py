"""The libsodium Ed25519 check (security/_ed25519.py) against RFC 8032 and OpenSSL."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gridmesh.security._ed25519 import ed25519_valid

# RFC 8032, section 7.1: (secret key, public key, message, signature), hex.
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
        "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
        "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290"
        "ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

#: The order of the Ed25519 base point (RFC 8032, section 5.1).
L = 2**252 + 27742317777372353535851937790883648493


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_the_rfc_8032_vectors_verify_and_any_flipped_bit_does_not(
    secret: str, public: str, message: str, signature: str
) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    public_key = key.public_key()
    assert public_key.public_bytes_raw().hex() == public
    data, sig = bytes.fromhex(message), bytes.fromhex(signature)
    assert key.sign(data) == sig  # Ed25519 is deterministic: the vector is what we sign
    assert ed25519_valid(public_key, sig, data)
    for bit in (0, 77, 255, 256, 300, 511):
        flipped = bytearray(sig)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not ed25519_valid(public_key, bytes(flipped), data)
    assert not ed25519_valid(public_key, sig, data + b"\x00")
    assert not ed25519_valid(public_key, sig[:63], data)
    assert not ed25519_valid(public_key, sig + b"\x00", data)


def test_a_non_canonical_s_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    data = b"tariff 0.081"
    sig = key.sign(data)
    s = int.from_bytes(sig[32:], "little") + L  # the same scalar mod L, not canonical
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert not ed25519_valid(key.public_key(), malleated, data)
    with pytest.raises(InvalidSignature):  # OpenSSL refuses it too
        key.public_key().verify(malleated, data)


def test_a_small_order_public_key_is_refused() -> None:
    # The identity point: with R = identity and S = 0 it "verifies" every message
    # under a cofactorless check that does not refuse small-order keys.
    identity = Ed25519PublicKey.from_public_bytes(b"\x01" + bytes(31))
    forged = b"\x01" + bytes(31) + bytes(32)
    assert not ed25519_valid(identity, forged, b"any message")


@settings(max_examples=300, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    data=st.binary(max_size=2048),
    flip=st.integers(0, 511),
)
def test_libsodium_and_openssl_agree(seed: bytes, data: bytes, flip: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public_key = key.public_key()
    sig = key.sign(data)
    assert ed25519_valid(public_key, sig, data)
    bad = bytearray(sig)
    bad[flip // 8] ^= 1 << (flip % 8)
    try:
        public_key.verify(bytes(bad), data)
        openssl = True
    except InvalidSignature:
        openssl = False
    assert ed25519_valid(public_key, bytes(bad), data) is openssl is False
