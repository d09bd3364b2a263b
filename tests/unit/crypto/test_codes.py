"""Verification codes (format, floors, uniformity) and keyed hashing under rotation."""

from __future__ import annotations

import string
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.codes import (
    ALPHANUMERIC_ALPHABET,
    KeyedHasher,
    generate_alphanumeric_code,
    generate_numeric_code,
    hmac_sha512,
)
from crypto.errors import InvalidKey

KEY_1 = b"\x01" * 32
KEY_2 = b"\x02" * 32
KEY_3 = b"\x03" * 48


def _chi_square(counts: Counter[str], alphabet: str) -> float:
    total = sum(counts.values())
    expected = total / len(alphabet)
    return sum((counts[symbol] - expected) ** 2 / expected for symbol in alphabet)


def test_numeric_code_format() -> None:
    code = generate_numeric_code()
    assert len(code) == 8
    assert set(code) <= set(string.digits)
    assert len(generate_numeric_code(6)) == 6
    assert len(generate_numeric_code(12)) == 12


def test_alphanumeric_code_format() -> None:
    code = generate_alphanumeric_code()
    assert len(code) == 16
    assert set(code) <= set(ALPHANUMERIC_ALPHABET)
    assert ALPHANUMERIC_ALPHABET == "abcdefghijklmnopqrstuvwxyz0123456789"
    assert len(generate_alphanumeric_code(12)) == 12


@pytest.mark.parametrize("length", [-1, 0, 1, 5])
def test_numeric_floor(length: int) -> None:
    with pytest.raises(ValueError, match="at least 6"):
        generate_numeric_code(length)


@pytest.mark.parametrize("length", [0, 8, 11])
def test_alphanumeric_floor(length: int) -> None:
    with pytest.raises(ValueError, match="at least 12"):
        generate_alphanumeric_code(length)


def test_digits_are_uniform_in_every_position() -> None:
    # 20,000 codes of 8 digits. The thresholds are chi-square quantiles with a false alarm
    # probability of about 1e-7 (9 degrees of freedom) for the whole sample, and of 1e-6
    # per position, so the test is stable without a seed; a modulo bias or a stuck digit
    # is far above them.
    codes = [generate_numeric_code(8) for _ in range(20_000)]
    overall = Counter("".join(codes))
    assert _chi_square(overall, string.digits) < 50.0
    for position in range(8):
        column = Counter(code[position] for code in codes)
        assert _chi_square(column, string.digits) < 46.0
    # Leading zeros are kept: about a tenth of the codes start with 0.
    assert 1_500 < sum(code.startswith("0") for code in codes) < 2_500


def test_alphanumeric_symbols_are_uniform() -> None:
    # 5,000 codes of 16 symbols; 35 degrees of freedom, false alarm about 1e-6.
    codes = [generate_alphanumeric_code() for _ in range(5_000)]
    assert _chi_square(Counter("".join(codes)), ALPHANUMERIC_ALPHABET) < 90.0


def test_codes_do_not_repeat() -> None:
    codes = {generate_alphanumeric_code() for _ in range(1_000)}
    assert len(codes) == 1_000


@given(value=st.text(max_size=40))
def test_digest_is_hmac_sha512_under_the_first_key(value: str) -> None:
    hasher = KeyedHasher([KEY_1, KEY_2])
    assert hasher.digest(value) == hmac_sha512(KEY_1, value.encode("utf-8"))
    assert len(hasher.digest(value)) == 64


@given(value=st.text(max_size=40))
def test_values_match_under_every_live_key(value: str) -> None:
    old = KeyedHasher([KEY_1])
    stored = old.digest(value)
    rotated = KeyedHasher([KEY_2, KEY_1])
    assert rotated.matches(value, stored)
    assert rotated.candidates(value) == [
        hmac_sha512(KEY_2, value.encode()),
        hmac_sha512(KEY_1, value.encode()),
    ]
    assert rotated.digest(value) != stored
    # Once the old key is dropped, the stored hash is no longer found.
    assert not KeyedHasher([KEY_2, KEY_3]).matches(value, stored)


@given(value=st.text(max_size=20), other=st.text(max_size=20))
def test_other_values_do_not_match(value: str, other: str) -> None:
    hasher = KeyedHasher([KEY_1, KEY_2])
    if value != other:
        assert not hasher.matches(other, hasher.digest(value))


@pytest.mark.parametrize("stored", [b"", b"\x00" * 63, b"\x00" * 64, b"\x00" * 65])
def test_malformed_stored_hashes_do_not_match(stored: bytes) -> None:
    assert not KeyedHasher([KEY_1]).matches("12345678", stored)


@pytest.mark.parametrize("keys", [[], [b""], [b"\x01" * 31], [KEY_1, b"\x02" * 31]])
def test_short_or_missing_keys_are_refused(keys: list[bytes]) -> None:
    with pytest.raises(InvalidKey):
        KeyedHasher(keys)


def test_repr_shows_no_key_material() -> None:
    assert repr(KeyedHasher([KEY_1, KEY_2])) == "KeyedHasher(<2 keys>)"
