"""Sealing: round trips, rotation, and every way a box can fail to open."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import InvalidKey, InvalidSealedData
from crypto.sealing import NONCE_LENGTH, TAG_LENGTH, Keyring, SealedBox, open_sealed, seal

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
AAD = b"server-wide aad"


@pytest.fixture
def ring() -> Keyring:
    return Keyring({"a": KEY_A}, current="a")


@given(plaintext=st.binary(max_size=512), aad=st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    ring = Keyring({"a": KEY_A}, current="a")
    box = seal(ring, plaintext, aad)
    assert len(box.data) == NONCE_LENGTH + len(plaintext) + TAG_LENGTH
    assert open_sealed(ring, box.key_id, box.data, aad) == plaintext


def test_fresh_nonce_each_time(ring: Keyring) -> None:
    first, second = seal(ring, b"same", AAD), seal(ring, b"same", AAD)
    assert first.data[:NONCE_LENGTH] != second.data[:NONCE_LENGTH]
    assert first.data != second.data


def test_rotation_keeps_old_boxes_open(ring: Keyring) -> None:
    old_box = seal(ring, b"sealed before", AAD)
    rotated = ring.rotate("b", KEY_B)
    new_box = seal(rotated, b"sealed after", AAD)

    assert rotated.current == "b"
    assert rotated.key_ids == {"a", "b"}
    assert new_box.key_id == "b"
    assert open_sealed(rotated, "a", old_box.data, AAD) == b"sealed before"
    assert open_sealed(rotated, "b", new_box.data, AAD) == b"sealed after"
    # The old ring does not know the new key.
    with pytest.raises(InvalidSealedData):
        open_sealed(ring, "b", new_box.data, AAD)


def test_retired_keys_no_longer_open(ring: Keyring) -> None:
    old_box = seal(ring, b"old", AAD)
    retired = ring.rotate("b", KEY_B).retire("a")
    assert retired.key_ids == {"b"}
    with pytest.raises(InvalidSealedData):
        open_sealed(retired, "a", old_box.data, AAD)
    with pytest.raises(InvalidKey):
        retired.retire("b")


def test_the_key_id_must_match_the_key(ring: Keyring) -> None:
    both = ring.rotate("b", KEY_B)
    box = seal(both, b"under b", AAD)
    with pytest.raises(InvalidSealedData):
        open_sealed(both, "a", box.data, AAD)


def test_every_flipped_bit_position_fails(ring: Keyring) -> None:
    box = seal(ring, b"seventeen bytes!!", AAD)
    for position in range(len(box.data)):
        for bit in (0x01, 0x80):
            tampered = bytearray(box.data)
            tampered[position] ^= bit
            with pytest.raises(InvalidSealedData):
                open_sealed(ring, box.key_id, bytes(tampered), AAD)


def test_every_truncation_fails(ring: Keyring) -> None:
    box = seal(ring, b"some plaintext", AAD)
    for length in range(len(box.data)):
        with pytest.raises(InvalidSealedData):
            open_sealed(ring, box.key_id, box.data[:length], AAD)
    with pytest.raises(InvalidSealedData):
        open_sealed(ring, box.key_id, box.data + b"\x00", AAD)


@settings(max_examples=50)
@given(aad=st.binary(max_size=32))
def test_another_aad_fails(aad: bytes) -> None:
    ring = Keyring({"a": KEY_A}, current="a")
    box = seal(ring, b"plaintext", AAD)
    if aad != AAD:
        with pytest.raises(InvalidSealedData):
            open_sealed(ring, "a", box.data, aad)


@pytest.mark.parametrize("key_id", ["", "b", "A", "a "])
def test_unknown_key_ids_fail(ring: Keyring, key_id: str) -> None:
    box = seal(ring, b"plaintext", AAD)
    with pytest.raises(InvalidSealedData):
        open_sealed(ring, key_id, box.data, AAD)


@pytest.mark.parametrize(
    ("keys", "current"),
    [
        ({"a": bytes(31)}, "a"),
        ({"a": bytes(16)}, "a"),
        ({"a": bytes(33)}, "a"),
        ({"": KEY_A}, ""),
        ({"a": KEY_A}, "b"),
        ({}, "a"),
    ],
)
def test_invalid_keyrings_are_refused(keys: dict[str, bytes], current: str) -> None:
    with pytest.raises(InvalidKey):
        Keyring(keys, current=current)


def test_rotating_onto_an_existing_id_is_refused(ring: Keyring) -> None:
    with pytest.raises(InvalidKey):
        ring.rotate("a", KEY_B)


@pytest.mark.parametrize("length", [0, 8, 11, 13, 16])
def test_explicit_nonce_must_be_twelve_bytes(ring: Keyring, length: int) -> None:
    with pytest.raises(ValueError, match="nonce"):
        seal(ring, b"x", AAD, nonce=bytes(length))


def test_repr_shows_no_key_material(ring: Keyring) -> None:
    text = repr(ring.rotate("b", KEY_B))
    assert text == "Keyring(key_ids=['a', 'b'], current='b')"
    assert KEY_A.hex() not in text


def test_sealed_box_is_a_value() -> None:
    assert SealedBox("a", b"x") == SealedBox("a", b"x")
