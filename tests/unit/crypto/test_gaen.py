"""Properties of the GAEN key schedule: the fast paths equal the reference definitions."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import gaen
from crypto.gaen import _hkdf_sha256_16

keys = st.binary(min_size=16, max_size=16)
intervals = st.integers(min_value=0, max_value=gaen.MAX_INTERVAL_NUMBER)
counts = st.integers(min_value=1, max_value=gaen.MAX_INTERVAL_COUNT)
start_intervals = st.integers(
    min_value=0, max_value=gaen.MAX_INTERVAL_NUMBER - gaen.MAX_INTERVAL_COUNT + 1
)


def _cryptography_hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(ikm)


@given(ikm=st.binary(max_size=100), info=st.binary(max_size=80))
def test_fast_hkdf_equals_cryptography_hkdf(ikm: bytes, info: bytes) -> None:
    assert _hkdf_sha256_16(ikm, info) == _cryptography_hkdf(ikm, info)


@given(ikm=st.binary(max_size=100), info=st.binary(max_size=80))
def test_fast_hkdf_equals_two_hmacs(ikm: bytes, info: bytes) -> None:
    # RFC 5869 with an absent salt: HashLen zero bytes.
    prk = hmac.digest(bytes(32), ikm, hashlib.sha256)
    assert _hkdf_sha256_16(ikm, info) == hmac.digest(prk, info + b"\x01", hashlib.sha256)[:16]


@given(tek=keys)
def test_derived_keys_are_distinct_and_sixteen_bytes(tek: bytes) -> None:
    rpik, aemk = gaen.derive_rpik(tek), gaen.derive_aemk(tek)
    assert len(rpik) == len(aemk) == 16
    assert rpik != aemk


@given(rpik=keys, interval=intervals)
def test_rpi_is_aes_of_the_padded_data(rpik: bytes, interval: int) -> None:
    decryptor = Cipher(algorithms.AES(rpik), modes.ECB()).decryptor()  # noqa: S305
    rpi = gaen.rolling_proximity_identifier(rpik, interval)
    assert decryptor.update(rpi) == b"EN-RPI" + bytes(6) + interval.to_bytes(4, "little")


@settings(max_examples=50)
@given(tek=keys, start=start_intervals, count=counts)
def test_batch_equals_one_by_one(tek: bytes, start: int, count: int) -> None:
    rpik = gaen.derive_rpik(tek)
    expected = [gaen.rolling_proximity_identifier(rpik, start + i) for i in range(count)]
    assert gaen.rolling_proximity_identifiers(tek, start, count) == expected


@settings(max_examples=25)
@given(
    batch=st.lists(st.tuples(keys, start_intervals), max_size=20),
    count=counts,
)
def test_bulk_forms_equal_the_single_key_batch(batch: list[tuple[bytes, int]], count: int) -> None:
    nested = gaen.derive_rpis_for_keys(batch, count=count)
    flat = gaen.derive_rpi_blocks(batch, count=count)
    assert nested == [gaen.rolling_proximity_identifiers(t, s, count) for t, s in batch]
    assert flat == [b"".join(rpis) for rpis in nested]


@given(aemk=keys, rpi=keys, metadata=st.binary(min_size=4, max_size=4))
def test_metadata_round_trip(aemk: bytes, rpi: bytes, metadata: bytes) -> None:
    aem = gaen.encrypt_metadata(aemk, rpi, metadata)
    assert len(aem) == 4
    assert gaen.decrypt_metadata(aemk, rpi, aem) == metadata


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=45))]
        ),
    )
)
def test_interval_number_is_the_floor_of_ten_minute_steps(moment: datetime) -> None:
    number = gaen.interval_number(moment)
    start = datetime(1970, 1, 1, tzinfo=UTC) + number * gaen.INTERVAL_LENGTH
    assert start <= moment < start + gaen.INTERVAL_LENGTH


def test_interval_number_at_boundaries() -> None:
    assert gaen.interval_number(datetime(2020, 4, 2, tzinfo=UTC)) == 2642976
    just_before = datetime(2020, 4, 2, 0, 9, 59, 999999, tzinfo=UTC)
    assert gaen.interval_number(just_before) == 2642976
    assert gaen.interval_number(datetime(2020, 4, 2, 0, 10, tzinfo=UTC)) == 2642977
    # The same instant in another zone has the same interval.
    eastern = datetime(2020, 4, 1, 20, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert gaen.interval_number(eastern) == 2642976


def test_interval_number_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        gaen.interval_number(datetime(2020, 4, 2))  # noqa: DTZ001


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_wrong_key_lengths_are_refused(length: int) -> None:
    wrong = bytes(length)
    for call in (
        lambda: gaen.derive_rpik(wrong),
        lambda: gaen.derive_aemk(wrong),
        lambda: gaen.rolling_proximity_identifier(wrong, 1),
        lambda: gaen.rolling_proximity_identifiers(wrong, 1),
        lambda: gaen.derive_rpi_blocks([(bytes(16), 1), (wrong, 1)]),
        lambda: gaen.derive_rpis_for_keys([(wrong, 1)]),
        lambda: gaen.encrypt_metadata(wrong, bytes(16), bytes(4)),
        lambda: gaen.decrypt_metadata(bytes(16), wrong, bytes(4)),
    ):
        with pytest.raises(ValueError, match="bytes"):
            call()


@pytest.mark.parametrize("length", [0, 3, 5, 16])
def test_metadata_must_be_four_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="metadata"):
        gaen.encrypt_metadata(bytes(16), bytes(16), bytes(length))


@pytest.mark.parametrize(
    ("start", "count"),
    [
        (-1, 1),
        (gaen.MAX_INTERVAL_NUMBER + 1, 1),
        (gaen.MAX_INTERVAL_NUMBER, 2),
        (0, 0),
        (0, gaen.MAX_INTERVAL_COUNT + 1),
    ],
)
def test_interval_ranges_are_checked(start: int, count: int) -> None:
    with pytest.raises(ValueError, match="interval"):
        gaen.rolling_proximity_identifiers(bytes(16), start, count)
    with pytest.raises(ValueError, match="interval"):
        gaen.derive_rpi_blocks([(bytes(16), start)], count=count)


def test_the_last_interval_numbers_still_work() -> None:
    last = gaen.MAX_INTERVAL_NUMBER
    rpik = gaen.derive_rpik(bytes(16))
    batch = gaen.rolling_proximity_identifiers(bytes(16), last - 143)
    assert batch[-1] == gaen.rolling_proximity_identifier(rpik, last)
    with pytest.raises(ValueError, match="interval"):
        gaen.rolling_proximity_identifier(rpik, last + 1)


def test_empty_bulk_input() -> None:
    assert gaen.derive_rpi_blocks([]) == []
    assert gaen.derive_rpis_for_keys([]) == []
