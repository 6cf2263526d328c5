"""COSE_Sign1 and COSE_Encrypt0 (gridmesh.security._cose): what is built, what is refused.

Published vectors are in test_cose_vectors.py; the long fuzz run is bench/fuzz_cose.py.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Callable

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridmesh.errors import LocalProtocolError, RemoteProtocolError
from gridmesh.security._cose import (
    ALG_A128GCM,
    ALG_A192GCM,
    ALG_A256GCM,
    ALG_CHACHA20_POLY1305,
    COSE_BYTES_MAX,
    KID_BYTES_MAX,
    _encrypt0_assemble,
    _sign1_assemble,
    cose_kid,
    decrypt0,
    encrypt0,
    encrypt0_kid,
    iv_from_counter,
    random_iv,
    sign1,
    verify1,
)
from gridmesh.security._errors import BadSignature, DecryptionFailed
from tests.test_fuzz_decoder import mutate

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
OTHER_PUBLIC = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key()
KID = b"meter-0042"
PAYLOAD = b'{"price_eur_kwh": 0.081}'
ENVELOPE = bytes(range(200))  # stands for an envelope's end-to-end bytes, sent beside
AEAD_KEYS = {ALG_A128GCM: bytes(16), ALG_A192GCM: bytes(24), ALG_A256GCM: bytes(32)}
AEAD_KEYS[ALG_CHACHA20_POLY1305] = bytes(range(32))
IV = bytes.fromhex("0102030405060708090a0b0c")
SIGNATURE = bytes(64)
Headers = dict[int | str, object]


def signed_with(protected: Headers, unprotected: Headers) -> bytes:
    """A Sign1 of PAYLOAD with these headers, correctly signed."""
    return _sign1_assemble(
        cbor2.dumps(protected), unprotected, PAYLOAD, KEY, external_aad=b"", detached=None
    )


def encrypted_with(protected: Headers, unprotected: Headers) -> bytes:
    """An Encrypt0 of PAYLOAD under bytes(16) (A128GCM) with these headers."""
    return _encrypt0_assemble(
        cbor2.dumps(protected),
        unprotected,
        PAYLOAD,
        bytes(16),
        iv=IV,
        alg=ALG_A128GCM,
        external_aad=b"",
    )


def bit_flips(message: bytes) -> list[bytes]:
    return [
        message[:i] + bytes([message[i] ^ (1 << bit)]) + message[i + 1 :]
        for i in range(len(message))
        for bit in range(8)
    ]


# --- Sign1: what we build ------------------------------------------------------


def test_sign1_is_untagged_with_alg_and_kid_protected() -> None:
    message = sign1(PAYLOAD, KEY, kid=KID)
    assert message[0] == 0x84  # an array of four, no tag
    protected, unprotected, payload, signature = cbor2.loads(message)
    assert cbor2.loads(protected) == {1: -8, 4: KID}
    assert unprotected == {}
    assert payload == PAYLOAD
    assert len(signature) == 64
    assert verify1(message, PUBLIC) == PAYLOAD
    assert cose_kid(message) == KID


def test_sign1_is_deterministic() -> None:
    assert sign1(PAYLOAD, KEY, kid=KID) == sign1(PAYLOAD, KEY, kid=KID)


def test_detached_payload_travels_beside_the_message() -> None:
    message = sign1(None, KEY, kid=KID, detached=ENVELOPE)
    assert cbor2.loads(message)[2] is None
    assert len(message) < 100  # a 200-byte envelope costs a signature of under 100 bytes
    assert verify1(message, PUBLIC, detached=ENVELOPE) == ENVELOPE
    with pytest.raises(BadSignature) as missing:
        verify1(message, PUBLIC)
    assert missing.value.field == "payload"
    with pytest.raises(BadSignature) as other:
        verify1(message, PUBLIC, detached=ENVELOPE[:-1] + b"\x00")
    assert other.value.field == "signature"
    attached = sign1(ENVELOPE, KEY, kid=KID)
    with pytest.raises(BadSignature) as unexpected:
        verify1(attached, PUBLIC, detached=ENVELOPE)
    assert unexpected.value.field == "payload"


def test_detached_and_attached_signatures_are_the_same_signature() -> None:
    """RFC 9052, section 4.4: the Sig_structure holds the content either way."""
    detached = cbor2.loads(sign1(None, KEY, kid=KID, detached=PAYLOAD))
    attached = cbor2.loads(sign1(PAYLOAD, KEY, kid=KID))
    assert detached[3] == attached[3]


def test_tagged_input_is_accepted_only_with_its_own_tag_once() -> None:
    message = sign1(PAYLOAD, KEY, kid=KID)
    assert verify1(b"\xd2" + message, PUBLIC) == PAYLOAD
    assert cose_kid(b"\xd2" + message) == KID
    for wrong in (b"\xd0" + message, b"\xd2\xd2" + message, b"\xd8\x12" + message):
        with pytest.raises(BadSignature):
            verify1(wrong, PUBLIC)


def test_external_aad_is_signed_but_not_sent() -> None:
    message = sign1(PAYLOAD, KEY, kid=KID, external_aad=b"grid-7|DR")
    assert b"grid-7" not in message
    assert verify1(message, PUBLIC, external_aad=b"grid-7|DR") == PAYLOAD
    for aad in (b"", b"grid-7|DR ", b"grid-8|DR"):
        with pytest.raises(BadSignature):
            verify1(message, PUBLIC, external_aad=aad)


def test_wrong_key_fails() -> None:
    with pytest.raises(BadSignature) as refused:
        verify1(sign1(PAYLOAD, KEY, kid=KID), OTHER_PUBLIC)
    assert refused.value.field == "signature"


def test_flipping_any_bit_of_a_signed_message_fails() -> None:
    for message, detached, aad in (
        (sign1(PAYLOAD, KEY, kid=KID), None, b""),
        (sign1(None, KEY, kid=KID, detached=ENVELOPE), ENVELOPE, b""),
        (sign1(PAYLOAD, KEY, kid=KID, external_aad=b"aad"), None, b"aad"),
    ):
        assert verify1(message, PUBLIC, detached=detached, external_aad=aad)
        for tampered in bit_flips(message):
            with pytest.raises(BadSignature):
                verify1(tampered, PUBLIC, detached=detached, external_aad=aad)


def test_flipping_any_bit_of_detached_content_fails() -> None:
    message = sign1(None, KEY, kid=KID, detached=ENVELOPE)
    for tampered in bit_flips(ENVELOPE):
        with pytest.raises(BadSignature):
            verify1(message, PUBLIC, detached=tampered)


def test_truncated_and_trailing_bytes_are_refused() -> None:
    message = sign1(PAYLOAD, KEY, kid=KID)
    for end in range(len(message)):
        with pytest.raises(BadSignature):
            verify1(message[:end], PUBLIC)
        with pytest.raises(BadSignature):
            cose_kid(message[:end])
    for trailing in (b"\x00", b"\xf6", message):
        with pytest.raises(BadSignature) as refused:
            verify1(message + trailing, PUBLIC)
        assert "trailing" in str(refused.value)


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(BadSignature) as refused:
        verify1(b"\xff" * (COSE_BYTES_MAX + 1), PUBLIC)
    assert "exceeds cose_bytes_max" in str(refused.value)
    big = sign1(bytes(COSE_BYTES_MAX), KEY, kid=KID)
    with pytest.raises(BadSignature):
        verify1(big, PUBLIC)
    assert verify1(big, PUBLIC, cose_bytes_max=len(big)) == bytes(COSE_BYTES_MAX)
    small = sign1(PAYLOAD, KEY, kid=KID)
    with pytest.raises(BadSignature):
        cose_kid(small, cose_bytes_max=len(small) - 1)


@pytest.mark.parametrize(
    ("protected", "unprotected"),
    [
        ({1: -7, 4: KID}, {}),  # ES256
        ({1: "EdDSA", 4: KID}, {}),  # a name, not the number
        ({1: True, 4: KID}, {}),
        ({4: KID}, {}),  # no alg
        ({4: KID}, {1: -8}),  # alg not protected
        ({1: -8, 4: KID}, {1: -8}),  # alg in both buckets
        ({}, {1: -8, 4: KID}),
    ],
)
def test_wrong_or_unprotected_alg_is_refused(protected: Headers, unprotected: Headers) -> None:
    message = signed_with(protected, unprotected)
    with pytest.raises(BadSignature) as refused:
        verify1(message, PUBLIC)
    assert refused.value.field in ("alg", "unprotected")


def test_critical_headers() -> None:
    understood = signed_with({1: -8, 2: [4], 4: KID}, {})
    assert verify1(understood, PUBLIC) == PAYLOAD
    for protected, unprotected in (
        ({1: -8, 2: [99], 4: KID, 99: 1}, {}),  # not understood
        ({1: -8, 2: ["x"], 4: KID, "x": 1}, {}),
        ({1: -8, 2: [99], 4: KID}, {99: 1}),  # critical but not protected
        ({1: -8, 2: [], 4: KID}, {}),  # empty
        ({1: -8, 2: 4, 4: KID}, {}),  # not an array
        ({1: -8, 2: [b"\x04"], 4: KID}, {}),  # not a label
        ({1: -8, 4: KID}, {2: [4]}),  # crit itself unprotected
    ):
        with pytest.raises(BadSignature) as refused:
            verify1(signed_with(protected, unprotected), PUBLIC)
        assert refused.value.field == "crit", (protected, unprotected)


def test_unknown_headers_that_are_not_critical_are_ignored() -> None:
    """RFC 9052, section 3; content type and a counter signature slot among them."""
    message = signed_with(
        {1: -8, 3: "application/cbor", 4: KID, 99: "x", "grid": [1, {2: None}]},
        {11: [b"\xa0", {}, bytes(64)], "relay": True, -65537: b""},
    )
    assert verify1(message, PUBLIC) == PAYLOAD


@pytest.mark.parametrize(
    ("protected", "unprotected", "field"),
    [
        ({1: -8, 4: KID}, {4: KID}, "unprotected"),  # a label in both buckets
        ({1: -8, 4: b"k" * (KID_BYTES_MAX + 1)}, {}, "kid"),
        ({1: -8, 4: "meter-0042"}, {}, "kid"),  # text, not bytes
        ({1: -8}, {4: 42}, "kid"),
        ({1: -8, 3: -1}, {}, "content_type"),
        ({1: -8, 3: b"cbor"}, {}, "content_type"),
    ],
)
def test_header_values_are_checked(protected: Headers, unprotected: Headers, field: str) -> None:
    with pytest.raises(BadSignature) as refused:
        verify1(signed_with(protected, unprotected), PUBLIC)
    assert refused.value.field == field


def test_kid_may_be_unprotected_but_must_exist_for_cose_kid() -> None:
    assert cose_kid(signed_with({1: -8}, {4: b"11"})) == b"11"
    with pytest.raises(BadSignature) as refused:
        cose_kid(signed_with({1: -8}, {}))
    assert refused.value.field == "kid"
    assert verify1(signed_with({1: -8}, {}), PUBLIC) == PAYLOAD  # verifying needs no kid


def test_malformed_structures_are_refused() -> None:
    good = cbor2.loads(sign1(PAYLOAD, KEY, kid=KID))
    protected = good[0]
    for fields, field in (
        ([protected, {}, PAYLOAD], None),  # three items
        ([*good, b""], None),  # five items
        ([cbor2.loads(protected), {}, PAYLOAD, good[3]], "protected"),  # a map, not bstr
        ([cbor2.dumps([1, -8]), {}, PAYLOAD, good[3]], "protected"),
        ([protected + b"\x00", {}, PAYLOAD, good[3]], "protected"),  # trailing inside
        ([b"", {}, PAYLOAD, good[3]], "alg"),  # empty protected: no alg
        ([protected, [], PAYLOAD, good[3]], "unprotected"),
        ([protected, {}, "text payload", good[3]], "payload"),
        ([protected, {}, PAYLOAD, good[3][:63]], "signature"),
        ([protected, {}, PAYLOAD, good[3] + b"\x00"], "signature"),
        ([protected, {}, PAYLOAD, None], "signature"),
    ):
        with pytest.raises(BadSignature) as refused:
            verify1(cbor2.dumps(fields), PUBLIC)
        assert refused.value.field == field, fields
    with pytest.raises(BadSignature):
        verify1(cbor2.dumps({"a": 1}), PUBLIC)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x9f\x40\xa0\xf6\x40\xff",  # indefinite-length array
        b"\x98\x04\x40\xa0\xf6\x40",  # array head not in shortest form
        b"\x84\x40\xa0\xd8\x18\x41\x00\x40",  # a tag inside
        b"\x84\x40\xa0\xf7\x40",  # undefined
        b"\x84\x40\xa0\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00\x40",  # a float
        b"\x84\x40\xa1\x41\x00\x01\xf6\x40",  # a byte-string map key
        b"\x84\x40\xa2\x01\x01\x01\x01\xf6\x40",  # a duplicate map key
        b"\x84\x40\xa1\x81\x01\x01\xf6\x40",  # an array as a map key
        b"\x84\x40\xa1\x61\xff\x01\xf6\x40",  # invalid UTF-8 in a text key
        b"\x84\x40\xa0\xf6\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a huge length
        b"\x84\x40\xbb\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x84" + b"\x81" * 20 + b"\x00",  # nested too deep
        b"\x84\x40\xa0\xf6\x5f\x40\xff",  # indefinite byte string
        b"\x84\x40\xa0\xf6\x58\x05\x00\x00\x00\x00\x00",  # bstr head not shortest
    ],
)
def test_cbor_outside_the_strict_subset_is_refused(data: bytes) -> None:
    with pytest.raises(BadSignature):
        verify1(data, PUBLIC)
    with pytest.raises(BadSignature):
        cose_kid(data)


def test_duplicate_label_inside_the_protected_bytes_is_refused() -> None:
    protected = b"\xa3\x01\x27\x04\x41k\x01\x27"  # {1: -8, 4: h'6b', 1: -8}
    message = cbor2.dumps([protected, {}, PAYLOAD, SIGNATURE])
    with pytest.raises(BadSignature) as refused:
        verify1(message, PUBLIC)
    assert refused.value.field == "protected"
    assert "duplicate" in str(refused.value)


@pytest.mark.parametrize("message", [None, "84", 84, [b"", {}, None, b""]])
def test_non_bytes_input_is_a_bad_signature(message: object) -> None:
    with pytest.raises(BadSignature):
        verify1(message, PUBLIC)  # type: ignore[arg-type]


def test_bytes_like_input_is_accepted() -> None:
    message = sign1(PAYLOAD, KEY, kid=KID)
    assert verify1(bytearray(message), PUBLIC) == PAYLOAD
    assert verify1(memoryview(message), PUBLIC) == PAYLOAD
    detached = sign1(None, KEY, kid=KID, detached=bytearray(ENVELOPE))
    assert verify1(detached, PUBLIC, detached=memoryview(ENVELOPE)) == ENVELOPE


def test_misuse_of_the_signing_api_is_a_local_error() -> None:
    for call in (
        lambda: sign1(PAYLOAD, KEY, kid=KID, detached=ENVELOPE),  # both
        lambda: sign1(None, KEY, kid=KID),  # neither
        lambda: sign1(PAYLOAD, KEY, kid=b"k" * (KID_BYTES_MAX + 1)),
        lambda: sign1(PAYLOAD, KEY, kid="meter"),  # type: ignore[arg-type]
        lambda: sign1("text", KEY, kid=KID),  # type: ignore[arg-type]
        lambda: sign1(PAYLOAD, PUBLIC, kid=KID),  # type: ignore[arg-type]
        lambda: sign1(PAYLOAD, KEY, kid=KID, external_aad="aad"),  # type: ignore[arg-type]
        lambda: verify1(sign1(PAYLOAD, KEY, kid=KID), KEY),  # type: ignore[arg-type]
        lambda: verify1(sign1(PAYLOAD, KEY, kid=KID), PUBLIC, detached="x"),  # type: ignore[arg-type]
    ):
        with pytest.raises(LocalProtocolError):
            call()


def test_errors_are_counted_remote_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError) as signature:
        verify1(b"\x00", PUBLIC)
    assert signature.value.reason == "bad_signature"
    with pytest.raises(RemoteProtocolError) as decryption:
        decrypt0(b"\x00", bytes(16))
    assert decryption.value.reason == "decryption_failed"


def test_sign1_and_encrypt0_are_not_confused() -> None:
    sealed = encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV)
    with pytest.raises(BadSignature):
        verify1(sealed, PUBLIC)
    with pytest.raises(BadSignature):
        cose_kid(sealed)
    with pytest.raises(DecryptionFailed):
        decrypt0(sign1(PAYLOAD, KEY, kid=KID), bytes(32))
    with pytest.raises(DecryptionFailed):
        encrypt0_kid(b"\xd2" + sign1(PAYLOAD, KEY, kid=KID))


# --- Encrypt0 ------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(AEAD_KEYS))
def test_encrypt0_round_trip(alg: int) -> None:
    key = AEAD_KEYS[alg]
    message = encrypt0(PAYLOAD, key, kid=KID, iv=IV, alg=alg, external_aad=b"hdr")
    assert message[0] == 0x83  # an array of three, no tag
    protected, unprotected, ciphertext = cbor2.loads(message)
    assert cbor2.loads(protected) == {1: alg, 4: KID}
    assert unprotected == {5: IV}
    assert len(ciphertext) == len(PAYLOAD) + 16
    assert PAYLOAD not in message
    assert decrypt0(message, key, external_aad=b"hdr") == PAYLOAD
    assert decrypt0(b"\xd0" + message, key, external_aad=b"hdr", alg=alg) == PAYLOAD
    assert encrypt0_kid(message) == KID
    with pytest.raises(DecryptionFailed):
        decrypt0(message, key)  # the external AAD is part of the tag
    assert decrypt0(encrypt0(b"", key, kid=b"", iv=IV, alg=alg), key) == b""


def test_encrypt0_defaults_to_a256gcm() -> None:
    protected = cbor2.loads(encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV))[0]
    assert cbor2.loads(protected)[1] == ALG_A256GCM


def test_flipping_any_bit_of_an_encrypted_message_fails() -> None:
    for alg in (ALG_A128GCM, ALG_CHACHA20_POLY1305):
        message = encrypt0(PAYLOAD, AEAD_KEYS[alg], kid=KID, iv=IV, alg=alg)
        for tampered in bit_flips(message):
            with pytest.raises(DecryptionFailed):
                decrypt0(tampered, AEAD_KEYS[alg])


def test_wrong_key_and_algorithm_pinning() -> None:
    message = encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV, alg=ALG_A256GCM)
    with pytest.raises(DecryptionFailed) as wrong:
        decrypt0(message, bytes(31) + b"\x01")
    assert wrong.value.field == "ciphertext"
    with pytest.raises(DecryptionFailed) as short:
        decrypt0(message, bytes(16))  # an A128GCM key
    assert short.value.field == "alg"
    with pytest.raises(DecryptionFailed) as pinned:
        decrypt0(message, bytes(32), alg=ALG_CHACHA20_POLY1305)
    assert pinned.value.field == "alg"


@pytest.mark.parametrize(
    ("protected", "unprotected", "field"),
    [
        ({1: 10, 4: KID}, {5: IV}, "alg"),  # AES-CCM-16-64-128: not supported
        ({1: -8, 4: KID}, {5: IV}, "alg"),
        ({4: KID}, {1: 1, 5: IV}, "alg"),  # alg unprotected (cose-wg enc-pass-01 does this)
        ({1: 1, 4: KID}, {}, "iv"),
        ({1: 1, 4: KID}, {5: IV[:8]}, "iv"),
        ({1: 1, 4: KID}, {5: list(IV)}, "iv"),
        ({1: 1, 4: KID}, {5: IV, 6: b"\x01"}, "partial_iv"),
        ({1: 1, 2: [6], 4: KID, 6: b"\x01"}, {5: IV}, "crit"),
        ({1: 1, 4: KID}, {4: KID, 5: IV}, "unprotected"),
    ],
)
def test_encrypt0_headers_are_checked(protected: Headers, unprotected: Headers, field: str) -> None:
    with pytest.raises(DecryptionFailed) as refused:
        decrypt0(encrypted_with(protected, unprotected), bytes(16))
    assert refused.value.field == field


def test_iv_may_be_protected() -> None:
    message = encrypted_with({1: 1, 4: KID, 5: IV}, {})
    assert decrypt0(message, bytes(16)) == PAYLOAD


def test_encrypt0_structure_truncation_trailing_and_size() -> None:
    message = encrypt0(PAYLOAD, bytes(16), kid=KID, iv=IV, alg=ALG_A128GCM)
    protected, unprotected, ciphertext = cbor2.loads(message)
    for fields, field in (
        ([protected, unprotected], None),
        ([protected, unprotected, ciphertext, b""], None),
        ([protected, unprotected, ciphertext[:15]], "ciphertext"),
        ([protected, unprotected, None], "ciphertext"),  # detached ciphertext: not supported
    ):
        with pytest.raises(DecryptionFailed) as refused:
            decrypt0(cbor2.dumps(fields), bytes(16))
        assert refused.value.field == field
    for end in range(len(message)):
        with pytest.raises(DecryptionFailed):
            decrypt0(message[:end], bytes(16))
        with pytest.raises(DecryptionFailed):
            encrypt0_kid(message[:end])
    with pytest.raises(DecryptionFailed):
        decrypt0(message + b"\x00", bytes(16))
    with pytest.raises(DecryptionFailed) as large:
        decrypt0(b"\x83" + bytes(COSE_BYTES_MAX), bytes(16))
    assert "exceeds cose_bytes_max" in str(large.value)
    with pytest.raises(DecryptionFailed):
        decrypt0(message, bytes(16), cose_bytes_max=len(message) - 1)
    with pytest.raises(DecryptionFailed):
        encrypt0_kid(encrypted_with({1: 1}, {5: IV}))


def test_misuse_of_the_encryption_api_is_a_local_error() -> None:
    for call in (
        lambda: encrypt0(PAYLOAD, bytes(16), kid=KID, iv=IV),  # A256GCM needs 32 bytes
        lambda: encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV[:8]),
        lambda: encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV, alg=10),
        lambda: encrypt0(PAYLOAD, bytes(32), kid=KID, iv=IV, alg=True),
        lambda: encrypt0("text", bytes(32), kid=KID, iv=IV),  # type: ignore[arg-type]
        lambda: encrypt0(PAYLOAD, bytes(32), kid=b"k" * 65, iv=IV),
        lambda: decrypt0(b"\x83", "key"),  # type: ignore[arg-type]
    ):
        with pytest.raises(LocalProtocolError):
            call()


# --- IVs -----------------------------------------------------------------------


def test_iv_from_counter_is_the_rfc_9052_partial_iv_construction() -> None:
    """Left-pad the counter to 12 bytes and XOR it with the base IV (section 3.1)."""
    base = bytes.fromhex("89f52f65a1c580933b5261a7")
    assert iv_from_counter(base, 0) == base
    assert iv_from_counter(base, 0x0102) == bytes.fromhex("89f52f65a1c580933b5260a5")
    assert iv_from_counter(base, 2**64 - 1) == bytes.fromhex("89f52f655e3a7f6cc4ad9e58")
    ivs = {iv_from_counter(base, counter) for counter in range(10_000)}
    assert len(ivs) == 10_000


@pytest.mark.parametrize(
    ("base", "counter"),
    [(bytes(12), -1), (bytes(12), 2**64), (bytes(12), True), (bytes(12), 1.0), (bytes(8), 1)],
)
def test_iv_from_counter_refuses_what_could_repeat(base: bytes, counter: int) -> None:
    with pytest.raises(LocalProtocolError):
        iv_from_counter(base, counter)


def test_random_iv_comes_from_the_callers_source() -> None:
    assert random_iv(random.Random(7)) == random_iv(random.Random(7))  # the simulator replays it
    assert len(random_iv(secrets.SystemRandom())) == 12  # production
    assert random_iv(random.Random(7)) != random_iv(random.Random(8))


# --- a quick fuzz (the long run is bench/fuzz_cose.py) ----------------------------

FUZZ_SEED = 20261122
FUZZ_INPUTS = 4_000


def test_only_typed_errors_escape_and_nothing_is_forged() -> None:
    """Mutated messages: only BadSignature / DecryptionFailed, and what passes is the original."""
    rng = random.Random(FUZZ_SEED)
    signed = [
        sign1(PAYLOAD, KEY, kid=KID),
        b"\xd2" + sign1(PAYLOAD, KEY, kid=KID),
        sign1(None, KEY, kid=KID, detached=ENVELOPE),
        signed_with({1: -8, 2: [4], 4: KID, 99: [1, "x"]}, {"relay": {1: b""}}),
    ]
    sealed = [
        encrypt0(PAYLOAD, bytes(16), kid=KID, iv=IV, alg=ALG_A128GCM),
        b"\xd0" + encrypt0(PAYLOAD, bytes(16), kid=KID, iv=IV, alg=ALG_A128GCM),
    ]
    pool = signed + sealed
    checks: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("verify1", lambda data: verify1(data, PUBLIC)),
        ("verify1-detached", lambda data: verify1(data, PUBLIC, detached=ENVELOPE)),
        ("cose_kid", cose_kid),
        ("decrypt0", lambda data: decrypt0(data, bytes(16))),
        ("encrypt0_kid", encrypt0_kid),
    ]
    outcomes: Counter[str] = Counter()
    for index in range(FUZZ_INPUTS):
        data = (
            mutate(rng, rng.choice(pool), pool) if index % 4 else rng.randbytes(rng.randint(0, 90))
        )
        for name, check in checks:
            try:
                result = check(data)
            except (BadSignature, DecryptionFailed) as error:
                outcomes[f"{name}:{error.reason}"] += 1
            except Exception as error:  # the bug this test exists to catch
                raise AssertionError(f"seed {FUZZ_SEED} input {index} {name} {data!r}") from error
            else:
                outcomes[f"{name}:ok"] += 1
                if name.startswith(("verify1", "decrypt0")):
                    assert result in (PAYLOAD, ENVELOPE), (FUZZ_SEED, index, data)
    assert outcomes["cose_kid:ok"] > 20, outcomes  # mutations reach past the parser
    assert outcomes["verify1:bad_signature"] > FUZZ_INPUTS // 2, outcomes
