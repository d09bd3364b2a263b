"""Known answers for AES-256-GCM sealing.

NIST's GCM specification test cases 13 and 14 (AES-256, zero key, zero 96-bit IV) pin the
primitive; the last vector pins our framing (nonce || ciphertext || tag) and was computed once
with ``cryptography``'s AESGCM.
"""

from __future__ import annotations

import pytest

from crypto.sealing import Keyring, open_sealed, seal

ZERO_KEY_RING = Keyring({"nist": bytes(32)}, current="nist")


@pytest.mark.parametrize(
    ("plaintext", "expected_hex"),
    [
        # Test case 13: empty plaintext, only the tag.
        (b"", "530f8afbc74536b9a963b4f1c4cb738b"),
        # Test case 14: one zero block.
        (
            bytes(16),
            "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919",
        ),
    ],
)
def test_nist_gcm_test_cases(plaintext: bytes, expected_hex: str) -> None:
    box = seal(ZERO_KEY_RING, plaintext, b"", nonce=bytes(12))
    assert box.key_id == "nist"
    assert box.data == bytes(12) + bytes.fromhex(expected_hex)
    assert open_sealed(ZERO_KEY_RING, "nist", box.data, b"") == plaintext


def test_framing_known_answer() -> None:
    ring = Keyring({"7": bytes(range(32))}, current="7")
    nonce = bytes(range(100, 112))
    box = seal(ring, b"revisable keys", b"exposure-revision-aad", nonce=nonce)
    assert box.data.hex() == (
        "6465666768696a6b6c6d6e6f"  # the nonce, first
        "3a7ea80f0a8834f25b42348da316"  # 14 bytes of ciphertext
        "7b332f15d71f776972acb13e864453c6"  # the tag
    )
    assert open_sealed(ring, "7", box.data, b"exposure-revision-aad") == b"revisable keys"
