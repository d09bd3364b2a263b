"""Known answers: RFC 4231 HMAC-SHA-512 test cases 1 and 2 through the primitive."""

from __future__ import annotations

import pytest

from crypto.codes import KeyedHasher, hmac_sha512
from crypto.errors import InvalidKey

TEST_CASE_1 = (
    "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
    "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
)
TEST_CASE_2 = (
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
)


def test_rfc4231_case_1() -> None:
    assert hmac_sha512(b"\x0b" * 20, b"Hi There").hex() == TEST_CASE_1


def test_rfc4231_case_2() -> None:
    assert hmac_sha512(b"Jefe", b"what do ya want for nothing?").hex() == TEST_CASE_2


def test_the_class_refuses_the_short_rfc_key() -> None:
    # "Jefe" is fine for a test vector, far too short for storing codes.
    with pytest.raises(InvalidKey):
        KeyedHasher([b"Jefe"])
