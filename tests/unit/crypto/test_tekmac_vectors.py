"""Known answers: the TEK HMAC vectors of Google's key server (pkg/verification/utils_test.go)."""

from __future__ import annotations

import base64

import pytest

from crypto.errors import InvalidMac
from crypto.tekmac import (
    SignedKey,
    compute_tekmac,
    compute_tekmac_without_risk,
    decode_base64_lenient,
    verify_tekmac,
)

SECRET = decode_base64_lenient("AQIDBAUGBwgJCgsMDQ4PEA==")


def _keys(first_risk: int, second_risk: int) -> list[SignedKey]:
    # Deliberately in the opposite of the sorted order: the MAC sorts them.
    return [
        SignedKey("z2Cx9hdz2SlxZ8GEgqTYpA==", 1, 144, first_risk),
        SignedKey("dPCphLzfG4uzXneNimkPRQ==", 144, 144, second_risk),
    ]


def test_the_secret_is_bytes_one_to_sixteen() -> None:
    assert bytes(range(1, 17)) == SECRET


def test_four_field_mac_with_risks() -> None:
    mac = compute_tekmac(SECRET, _keys(3, 5))
    assert base64.b64encode(mac).decode() == "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY="
    verify_tekmac(SECRET, _keys(3, 5), mac)


def test_four_field_mac_with_zero_risks() -> None:
    mac = compute_tekmac(SECRET, _keys(0, 0))
    assert base64.b64encode(mac).decode() == "mFNI9zhTA17n4ndd1Vu5tsn4XQX0gPrIKyjeh/9noUE="
    verify_tekmac(SECRET, _keys(0, 0), mac)


def test_three_field_mac_is_accepted_when_every_risk_is_zero() -> None:
    mac = compute_tekmac_without_risk(SECRET, _keys(0, 0))
    assert base64.b64encode(mac).decode() == "J9S7xVebH/66dm14wGsIcAnSUR3PHD4NtDQEOGZbDUo="
    verify_tekmac(SECRET, _keys(0, 0), mac)


def test_three_field_mac_is_refused_when_a_risk_is_set() -> None:
    mac = compute_tekmac_without_risk(SECRET, _keys(3, 5))
    # The three-field form does not depend on the risks.
    assert mac == compute_tekmac_without_risk(SECRET, _keys(0, 0))
    with pytest.raises(InvalidMac):
        verify_tekmac(SECRET, _keys(3, 5), mac)
    with pytest.raises(InvalidMac):
        verify_tekmac(SECRET, _keys(0, 5), mac)


def test_the_claim_is_decoded_leniently() -> None:
    # The certificate carries the MAC as base64 text; any accepted spelling must verify.
    for spelling in (
        "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY=",
        "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY",
        "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY===",
    ):
        verify_tekmac(SECRET, _keys(3, 5), decode_base64_lenient(spelling))
