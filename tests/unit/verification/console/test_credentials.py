"""Passwords and second factors of console staff."""

from __future__ import annotations

import base64

import pytest

from verification.console import credentials

#: RFC 6238 appendix B: the SHA-1 seed, and (time, 8-digit TOTP) pairs; a 6-digit code is
#: the last six digits of the same value.
RFC_6238_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_6238_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
]


@pytest.mark.parametrize(("at", "expected"), RFC_6238_VECTORS)
def test_totp_matches_the_rfc_6238_vectors(at: int, expected: str) -> None:
    assert credentials.totp_matches(RFC_6238_SECRET, expected[-6:], at=at)


def test_totp_accepts_one_step_of_drift_and_no_more() -> None:
    code = RFC_6238_VECTORS[3][1][-6:]
    at = RFC_6238_VECTORS[3][0]

    assert credentials.totp_matches(RFC_6238_SECRET, code, at=at + 30)
    assert not credentials.totp_matches(RFC_6238_SECRET, code, at=at + 90)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12 345", "abcdef", "٣٣٣٣٣٣"])
def test_totp_refuses_anything_but_six_ascii_digits(code: str) -> None:
    assert not credentials.totp_matches(RFC_6238_SECRET, code, at=59)


def test_a_password_is_stored_as_argon2id_and_checked() -> None:
    stored = credentials.hash_password("a long enough password")

    assert stored.startswith("$argon2id$")
    assert "a long enough password" not in stored
    assert credentials.password_matches(stored, "a long enough password")
    assert not credentials.password_matches(stored, "a long enough passworD")


def test_an_unknown_user_is_checked_against_a_hash_of_the_same_cost() -> None:
    real = credentials.hash_password("a long enough password")
    cost = real.split("$")[3]

    assert credentials.DUMMY_HASH.split("$")[3] == cost
    assert not credentials.password_matches(None, "not a password of anyone: spends the same time")


@pytest.mark.parametrize("password", ["short", "x" * 257])
def test_passwords_outside_the_length_limits_are_refused(password: str) -> None:
    with pytest.raises(credentials.WeakPassword):
        credentials.hash_password(password)
