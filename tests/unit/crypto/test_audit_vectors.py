"""Known answers: RFC 8032 section 7.1, Ed25519 tests 1 (empty message) and 2 (one byte)."""

from __future__ import annotations

import pytest

from crypto.audit import AuditSigner, verify_ed25519
from crypto.errors import InvalidSignature

RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public_key", "message", "signature"), RFC8032)
def test_rfc8032(seed: str, public_key: str, message: str, signature: str) -> None:
    signer = AuditSigner.from_seed(bytes.fromhex(seed))
    assert signer.public_key.hex() == public_key
    assert signer.seed.hex() == seed
    assert signer.sign(bytes.fromhex(message)).hex() == signature
    verify_ed25519(bytes.fromhex(public_key), bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.parametrize(("seed", "public_key", "message", "signature"), RFC8032)
def test_rfc8032_signature_on_another_message_fails(
    seed: str, public_key: str, message: str, signature: str
) -> None:
    with pytest.raises(InvalidSignature):
        verify_ed25519(
            bytes.fromhex(public_key), bytes.fromhex(message) + b"!", bytes.fromhex(signature)
        )
