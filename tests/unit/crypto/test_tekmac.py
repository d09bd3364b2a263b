"""Properties of the TEK HMAC: order independence, sensitivity to every field, raw strings."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import InvalidMac
from crypto.tekmac import (
    SignedKey,
    compute_tekmac,
    compute_tekmac_without_risk,
    verify_tekmac,
)

numbers = st.integers(min_value=0, max_value=2**31 - 1)
key_strings = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=",
    min_size=1,
    max_size=30,
)
signed_keys = st.builds(
    SignedKey,
    key=key_strings,
    rolling_start_number=numbers,
    rolling_period=st.integers(min_value=1, max_value=144),
    transmission_risk=st.integers(min_value=0, max_value=8),
)
key_lists = st.lists(signed_keys, min_size=1, max_size=14, unique_by=lambda k: k.key)
secrets_ = st.binary(min_size=16, max_size=64)


@given(secret=secrets_, keys=key_lists)
def test_round_trip(secret: bytes, keys: list[SignedKey]) -> None:
    verify_tekmac(secret, keys, compute_tekmac(secret, keys))


@given(secret=secrets_, keys=key_lists, data=st.data())
def test_order_of_the_request_does_not_matter(
    secret: bytes, keys: list[SignedKey], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(keys))
    assert compute_tekmac(secret, shuffled) == compute_tekmac(secret, keys)
    assert compute_tekmac_without_risk(secret, shuffled) == compute_tekmac_without_risk(
        secret, keys
    )


@given(secret=secrets_, keys=key_lists)
def test_matches_the_documented_cleartext(secret: bytes, keys: list[SignedKey]) -> None:
    ordered = sorted(keys, key=lambda k: k.key.encode())
    cleartext = ",".join(
        f"{k.key}.{k.rolling_start_number}.{k.rolling_period}.{k.transmission_risk}"
        for k in ordered
    )
    assert compute_tekmac(secret, keys) == hmac.digest(secret, cleartext.encode(), hashlib.sha256)


@given(secret=secrets_, keys=key_lists, index=st.integers(min_value=0), field=st.integers(0, 3))
def test_changing_any_field_breaks_the_mac(
    secret: bytes, keys: list[SignedKey], index: int, field: int
) -> None:
    mac = compute_tekmac(secret, keys)
    original = keys[index % len(keys)]
    changed = SignedKey(
        original.key + "A" if field == 0 else original.key,
        original.rolling_start_number + (field == 1),
        original.rolling_period + (field == 2),
        original.transmission_risk + (field == 3),
    )
    tampered = [changed if k is original else k for k in keys]
    with pytest.raises(InvalidMac):
        verify_tekmac(secret, tampered, mac)


@given(secret=secrets_, keys=key_lists)
def test_a_missing_or_extra_key_breaks_the_mac(secret: bytes, keys: list[SignedKey]) -> None:
    mac = compute_tekmac(secret, keys)
    with pytest.raises(InvalidMac):
        verify_tekmac(secret, keys[1:], mac)
    with pytest.raises(InvalidMac):
        verify_tekmac(secret, [*keys, SignedKey("extra key", 1, 144, 0)], mac)


@given(keys=key_lists)
def test_another_secret_breaks_the_mac(keys: list[SignedKey]) -> None:
    with pytest.raises(InvalidMac):
        verify_tekmac(b"\x02" * 16, keys, compute_tekmac(b"\x01" * 16, keys))


def test_keys_are_used_as_sent_not_re_encoded() -> None:
    # Same 16 bytes, two spellings: the MAC follows the string, as the reference does.
    padded = [SignedKey("AAAAAAAAAAAAAAAAAAAAAA==", 1, 144, 0)]
    unpadded = [SignedKey("AAAAAAAAAAAAAAAAAAAAAA", 1, 144, 0)]
    assert compute_tekmac(b"k" * 16, padded) != compute_tekmac(b"k" * 16, unpadded)


def test_sorting_is_byte_wise() -> None:
    # "+" (0x2b) < "/" (0x2f) < "0" < "A" < "_" < "a": plain byte order, not case-folded.
    keys = [SignedKey(k, 1, 1, 0) for k in ["a", "_", "A", "0", "/", "+"]]
    cleartext = "+.1.1.0,/.1.1.0,0.1.1.0,A.1.1.0,_.1.1.0,a.1.1.0"
    assert compute_tekmac(b"s", keys) == hmac.digest(b"s", cleartext.encode(), hashlib.sha256)


@pytest.mark.parametrize("mac", [b"", b"\x00" * 31, b"\x00" * 32, b"\x00" * 33])
def test_malformed_macs_are_refused(mac: bytes) -> None:
    with pytest.raises(InvalidMac):
        verify_tekmac(b"s" * 16, [SignedKey("k", 1, 144, 0)], mac)


def test_an_unencodable_key_fails_as_a_mismatch() -> None:
    keys = [SignedKey("\ud800", 1, 144, 0)]
    with pytest.raises(InvalidMac):
        verify_tekmac(b"s" * 16, keys, bytes(32))


@pytest.mark.parametrize(
    "fields",
    [
        (b"key", 1, 144, 0),
        ("key", True, 144, 0),
        ("key", 1, 144.0, 0),
        ("key", 1, 144, None),
    ],
)
def test_signed_key_refuses_other_types(fields: tuple[object, ...]) -> None:
    with pytest.raises(TypeError):
        SignedKey(*fields)  # type: ignore[arg-type]


def test_transmission_risk_defaults_to_zero() -> None:
    assert SignedKey("k", 1, 144).transmission_risk == 0
