"""ECDSA P-256 export signing: round trips, key loading, and a deployed system's signature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import InvalidKey, InvalidSignature
from crypto.signing import (
    ECDSA_SHA256_OID,
    FileSigner,
    Signer,
    load_public_key,
    public_key_pem,
    verify_signature,
)
from tests.interop import interop_path

SIGNER = FileSigner.generate()


def _pem_private(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@settings(max_examples=25)
@given(message=st.binary(max_size=512))
def test_sign_verify_round_trip(message: bytes) -> None:
    signature = SIGNER.sign(message)
    verify_signature(load_public_key(SIGNER.public_key_pem()), message, signature)


def test_signature_is_der_over_sha256() -> None:
    signature = SIGNER.sign(b"export.bin")
    r, s = decode_dss_signature(signature)  # raises unless DER SEQUENCE{r, s}
    assert r > 0
    assert s > 0
    SIGNER.public_key().verify(signature, b"export.bin", ec.ECDSA(hashes.SHA256()))
    assert ECDSA_SHA256_OID == "1.2.840.10045.4.3.2"


def test_file_signer_is_a_signer() -> None:
    assert isinstance(SIGNER, Signer)


def test_private_key_pem_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(SIGNER.private_key_pem())
    loaded = FileSigner.from_file(path)
    assert loaded.public_key_pem() == SIGNER.public_key_pem()
    verify_signature(SIGNER.public_key(), b"m", loaded.sign(b"m"))


def test_encrypted_private_key_pem() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    assert FileSigner.from_pem(pem, b"passphrase").public_key_pem() == public_key_pem(
        key.public_key()
    )
    with pytest.raises(InvalidKey):
        FileSigner.from_pem(pem, b"wrong")
    with pytest.raises(InvalidKey):
        FileSigner.from_pem(pem)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_garbage_private_keys_are_refused(pem: bytes) -> None:
    with pytest.raises(InvalidKey):
        FileSigner.from_pem(pem)


def test_other_key_types_are_refused() -> None:
    with pytest.raises(InvalidKey):
        FileSigner.from_pem(_pem_private(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(InvalidKey):
        FileSigner.from_pem(_pem_private(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(InvalidKey):
        FileSigner(ec.generate_private_key(ec.SECP384R1()))


def test_public_key_loading_refuses_other_keys() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    for key in (p384, ed):
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(InvalidKey):
            load_public_key(pem)
    with pytest.raises(InvalidKey):
        load_public_key(b"garbage")


def test_failures_are_indistinguishable() -> None:
    public_key = SIGNER.public_key()
    signature = SIGNER.sign(b"message")
    for message, candidate in [
        (b"Message", signature),  # modified message
        (b"message", FileSigner.generate().sign(b"message")),  # another key
        (b"message", b""),  # empty
        (b"message", b"\x30\x00"),  # malformed DER
        (b"message", signature[:-1]),  # truncated
        (b"message", bytes(64)),  # raw R||S of zeros
    ]:
        with pytest.raises(InvalidSignature) as info:
            verify_signature(public_key, message, candidate)
        assert str(info.value) == "signature verification failed"


@pytest.mark.interop
def test_a_corona_warn_app_signature_verifies() -> None:
    # A deployed system's DER signature over a protobuf blob, with its production key.
    vector = json.loads(interop_path("cwa_appconfig_signature_vector.json").read_text())
    public_key = load_public_key(interop_path(vector["public_key_pem_file"]).read_bytes())
    signed = bytes.fromhex(vector["signed_data_hex"])
    signature = bytes.fromhex(vector["decoded_signature"]["signature_der_hex"])

    verify_signature(public_key, signed, signature)
    with pytest.raises(InvalidSignature):
        verify_signature(public_key, bytes.fromhex("123ABC"), signature)
    with pytest.raises(InvalidSignature):
        verify_signature(public_key, signed[:-1], signature)
