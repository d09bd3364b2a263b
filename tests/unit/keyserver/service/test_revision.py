"""Revision tokens (wire form, padding, every failure opaque) and report-type transitions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.encoding import decode_base64_lenient
from crypto.sealing import Keyring, open_sealed
from exposure.tek import interval_number
from keyserver.errors import InvalidRevisionToken
from keyserver.proto import gaen_revision_pb2 as pb
from keyserver.service.revision import (
    RevisableKey,
    allowed_transition,
    decode_token,
    encode_token,
    next_token_keys,
)

DEK = bytes(range(32))
RING = Keyring({"1": DEK}, current="1")
AAD = b"exposure-revision-aad"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TODAY = interval_number(NOW) // 144 * 144


def _key(n: int, *, start: int = TODAY - 144, count: int = 144) -> RevisableKey:
    return RevisableKey(bytes([n]) * 16, start, count)


def _entries(token: str, ring: Keyring = RING) -> list[pb.RevisableKey]:
    """Every entry of the sealed payload, padding included."""
    envelope = pb.RevisionToken.FromString(base64.b64decode(token, validate=True))
    plaintext = open_sealed(ring, envelope.kid, envelope.data, AAD)
    return list(pb.RevisionTokenData.FromString(plaintext).revisableKeys)


# --- encoding and decoding ------------------------------------------------------------------


def test_round_trip_keeps_order() -> None:
    keys = [_key(3), _key(1, start=TODAY), _key(2, start=TODAY - 288, count=1)]

    token = encode_token(RING, AAD, keys, min_length=28)

    assert decode_token(RING, AAD, token) == keys


def test_token_is_standard_base64_of_the_envelope() -> None:
    token = encode_token(RING, AAD, [_key(1)], min_length=28)

    envelope = pb.RevisionToken.FromString(base64.b64decode(token, validate=True))
    assert envelope.kid == "1"
    # nonce, one framed 26-byte entry, 27 framed 18-byte padding entries, tag
    assert len(envelope.data) == 12 + (2 + 26) + 27 * (2 + 18) + 16


@pytest.mark.parametrize("real_keys", [0, 1, 27, 28, 30])
def test_padded_to_at_least_min_length(real_keys: int) -> None:
    keys = [_key(n) for n in range(1, real_keys + 1)]

    entries = _entries(encode_token(RING, AAD, keys, min_length=28))

    assert len(entries) == max(28, real_keys)
    padding = entries[real_keys:]
    assert all(
        (entry.temporaryExposureKey, entry.intervalNumber, entry.intervalCount) == (bytes(16), 0, 0)
        for entry in padding
    )
    # A padding entry carries only its zero key: proto3 leaves the zero intervals out.
    assert all(entry.ByteSize() == 18 for entry in padding)


def test_padding_entries_are_dropped_on_decode() -> None:
    keys = [_key(1), _key(2)]
    token = encode_token(RING, AAD, keys, min_length=28)

    assert len(_entries(token)) == 28
    assert decode_token(RING, AAD, token) == keys


def test_entries_with_a_repeated_key_are_left_out() -> None:
    first, second = _key(1), _key(2)
    repeat = RevisableKey(first.key, first.interval_number + 144, 10)

    token = encode_token(RING, AAD, [first, second, repeat, first], min_length=0)

    assert decode_token(RING, AAD, token) == [first, second]


def test_token_known_answer() -> None:
    """Pinned against a payload and envelope written out byte by byte from the proto schema."""
    nonce = bytes(range(100, 112))
    key = RevisableKey(bytes(range(16)), 2_654_208, 144)  # 2020-06-18T00:00Z, a whole day

    token = encode_token(RING, AAD, [key], min_length=2, nonce=nonce)

    plaintext = bytes.fromhex(
        "0a1a"  # revisableKeys (field 1, length-delimited), 26 bytes:
        "0a10"
        + bytes(range(16)).hex()  # temporaryExposureKey, 16 bytes
        + "10"
        + "8080a201"  # intervalNumber: varint of 2_654_208 = 0x288000
        + "18"
        + "9001"  # intervalCount: varint of 144
        + "0a12"  # the padding entry, 18 bytes:
        "0a10" + "00" * 16  # the zero key; intervals 0/0 are not serialized
    )
    assert len(plaintext) == 48
    sealed = nonce + AESGCM(DEK).encrypt(nonce, plaintext, AAD)
    envelope = bytes.fromhex("0a0131") + bytes([0x12, len(sealed)]) + sealed  # kid "1", data
    assert len(sealed) == 12 + 48 + 16 == 0x4C
    assert base64.b64decode(token) == envelope
    assert token == (
        "CgExEkxkZWZnaGlqa2xtbm9CAdR2eehUnTpnWe/SbGD2Ts8IBZvsc9CmyTxJ8bGvWJTpQMBMEpsE/fN4P/1Cys/P"
        "Tu0lVT2PwLCieW+d+Syl"
    )
    assert decode_token(RING, AAD, token) == [key]


def test_lenient_base64_is_accepted() -> None:
    keys = [_key(1)]
    token = encode_token(RING, AAD, keys, min_length=28)
    raw = base64.b64decode(token)

    for variant in (
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        token.rstrip("=") + "===",
        token[:40] + "\r\n" + token[40:],  # Go's decoder skips line breaks
    ):
        assert decode_token(RING, AAD, variant) == keys


def test_tampered_byte_is_invalid() -> None:
    raw = bytearray(base64.b64decode(encode_token(RING, AAD, [_key(1)], min_length=28)))
    raw[40] ^= 0x01  # inside the ciphertext

    with pytest.raises(InvalidRevisionToken) as caught:
        decode_token(RING, AAD, base64.b64encode(bytes(raw)).decode())

    assert caught.value.code == "invalid_revision_token"
    assert caught.value.status == 400
    assert caught.value.message == "revision token is invalid"


def test_unknown_kid_is_invalid() -> None:
    other = Keyring({"2": bytes(32)}, current="2")
    token = encode_token(other, AAD, [_key(1)], min_length=28)

    with pytest.raises(InvalidRevisionToken):
        decode_token(RING, AAD, token)


def test_token_of_a_retired_key_is_invalid_and_an_older_key_still_opens() -> None:
    old_token = encode_token(RING, AAD, [_key(1)], min_length=28)
    rotated = RING.rotate("2", bytes(32))
    new_token = encode_token(rotated, AAD, [_key(2)], min_length=28)

    assert decode_token(rotated, AAD, old_token) == [_key(1)]
    assert decode_token(rotated, AAD, new_token) == [_key(2)]
    with pytest.raises(InvalidRevisionToken):
        decode_token(rotated.retire("1"), AAD, old_token)


def test_another_aad_is_invalid() -> None:
    token = encode_token(RING, AAD, [_key(1)], min_length=28)

    with pytest.raises(InvalidRevisionToken):
        decode_token(RING, b"another deployment", token)


def _envelope(kid: str, data: bytes) -> str:
    return base64.b64encode(pb.RevisionToken(kid=kid, data=data).SerializeToString()).decode()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64!", id="bad-alphabet"),
        pytest.param("QUJD=QUJD", id="inner-padding"),
        pytest.param("A", id="impossible-length"),
        pytest.param("ZmFrZSB0b2tlbg==", id="not-a-proto"),
        pytest.param(base64.b64encode(b"\x0a\x02\xff\xfe").decode(), id="kid-not-utf8"),
        pytest.param(_envelope("1", b""), id="no-data"),
        pytest.param(_envelope("1", bytes(27)), id="shorter-than-nonce-and-tag"),
        pytest.param(_envelope("", bytes(64)), id="no-kid"),
        pytest.param("✓✓✓✓", id="non-ascii"),
    ],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidRevisionToken):
        decode_token(RING, AAD, token)


def test_sealed_payload_that_is_not_a_proto_is_invalid() -> None:
    nonce = bytes(12)
    sealed = nonce + AESGCM(DEK).encrypt(nonce, b"\xff\xff\xff", AAD)

    with pytest.raises(InvalidRevisionToken):
        decode_token(RING, AAD, _envelope("1", sealed))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (RevisableKey(bytes(15), 1, 144), "16 bytes"),
        (RevisableKey(bytes(17), 1, 144), "16 bytes"),
        (RevisableKey(bytes(16), 2**31, 144), "int32"),
        (RevisableKey(bytes(16), 1, -(2**31) - 1), "int32"),
        (RevisableKey(bytes(16), 0, 0), "padding"),
    ],
)
def test_unencodable_entries_are_refused(entry: RevisableKey, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode_token(RING, AAD, [entry], min_length=28)


def test_negative_min_length_is_refused() -> None:
    with pytest.raises(ValueError, match="min_length"):
        encode_token(RING, AAD, [_key(1)], min_length=-1)


# --- properties ------------------------------------------------------------------------------

_INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_POOL = st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=4)


@st.composite
def _revisable_keys(draw: st.DrawFn) -> list[RevisableKey]:
    # Keys come partly from a small pool so repeated TEKs actually occur.
    pool = draw(_POOL)
    entries = st.builds(
        RevisableKey,
        st.one_of(st.sampled_from(pool), st.binary(min_size=16, max_size=16)),
        _INT32,
        _INT32,
    ).filter(lambda entry: (entry.interval_number, entry.interval_count) != (0, 0))
    return draw(st.lists(entries, max_size=40))


def _first_per_key(keys: list[RevisableKey]) -> list[RevisableKey]:
    firsts: dict[bytes, RevisableKey] = {}
    for entry in keys:
        firsts.setdefault(entry.key, entry)
    return list(firsts.values())


@given(keys=_revisable_keys(), min_length=st.integers(min_value=0, max_value=40))
def test_decode_inverts_encode(keys: list[RevisableKey], min_length: int) -> None:
    token = encode_token(RING, AAD, keys, min_length=min_length)

    assert decode_token(RING, AAD, token) == _first_per_key(keys)
    assert len(_entries(token)) == max(min_length, len(_first_per_key(keys)))


@settings(max_examples=300)
@given(keys=_revisable_keys(), data=st.data())
def test_no_single_byte_change_decodes(keys: list[RevisableKey], data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode(encode_token(RING, AAD, keys, min_length=28)))
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="position")
    raw[position] ^= data.draw(st.integers(min_value=1, max_value=255), label="xor")

    with pytest.raises(InvalidRevisionToken):
        decode_token(RING, AAD, base64.b64encode(bytes(raw)).decode())


@settings(max_examples=300)
@given(data=st.data())
def test_a_changed_character_decodes_only_to_the_same_bytes(data: st.DataObject) -> None:
    # Base64 has slack the lenient decoder forgives (URL-safe letters, unused low bits in the
    # last character); such a change is the same token. Every other change must fail.
    token = encode_token(RING, AAD, [_key(1)], min_length=28)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
    replacement = data.draw(st.sampled_from(alphabet.replace(token[position], "")))
    changed = token[:position] + replacement + token[position + 1 :]

    try:
        keys = decode_token(RING, AAD, changed)
    except InvalidRevisionToken:
        return
    assert keys == [_key(1)]
    assert decode_base64_lenient(changed) == base64.b64decode(token)


# --- report-type transitions -----------------------------------------------------------------

_TYPES = ["", "confirmed", "likely", "negative", "user-report", "clinical"]
_ALLOWED = {
    ("", "confirmed"),
    ("", "negative"),
    ("likely", "confirmed"),
    ("likely", "negative"),
    ("user-report", "confirmed"),
    ("user-report", "likely"),
    ("user-report", "negative"),
}


@pytest.mark.parametrize("stored", _TYPES)
@pytest.mark.parametrize("incoming", _TYPES)
def test_transition_table(stored: str, incoming: str) -> None:
    assert allowed_transition(stored, incoming) is ((stored, incoming) in _ALLOWED)


def test_transition_table_spot_checks() -> None:
    # The rows that matter most, spelled out: "" is likely, and final types stay final.
    assert allowed_transition("", "confirmed")
    assert not allowed_transition("", "likely")  # likely -> likely is no transition
    assert not allowed_transition("", "user-report")
    assert not any(allowed_transition("confirmed", other) for other in _TYPES)
    assert not any(allowed_transition("negative", other) for other in _TYPES)
    assert not allowed_transition("likely", "user-report")


# --- the next token's keys -------------------------------------------------------------------

MAX_AGE = timedelta(days=15)
OLDEST_END = interval_number(NOW - MAX_AGE)


def test_next_token_keys_keeps_previous_first_then_new() -> None:
    previous = [_key(5), _key(1)]
    processed = [_key(9), _key(1), _key(2), _key(9)]

    result = next_token_keys(previous, processed, now=NOW, max_interval_age=MAX_AGE)

    assert result == [_key(5), _key(1), _key(9), _key(2)]


def test_next_token_keys_drops_entries_too_old_to_revise() -> None:
    on_the_edge = RevisableKey(bytes([1]) * 16, OLDEST_END - 144, 144)  # ends exactly there
    just_too_old = RevisableKey(bytes([2]) * 16, OLDEST_END - 144, 143)
    long_gone = RevisableKey(bytes([3]) * 16, OLDEST_END - 30 * 144, 144)
    fresh = _key(4)

    result = next_token_keys(
        [just_too_old, on_the_edge, long_gone, fresh], [], now=NOW, max_interval_age=MAX_AGE
    )

    assert result == [on_the_edge, fresh]


def test_next_token_keys_is_empty_without_anything_to_list() -> None:
    stale = RevisableKey(bytes([3]) * 16, OLDEST_END - 30 * 144, 144)

    assert next_token_keys([stale], [], now=NOW, max_interval_age=MAX_AGE) == []
    assert next_token_keys([], [], now=NOW, max_interval_age=MAX_AGE) == []


def test_next_token_keys_relists_a_processed_key_whose_old_entry_aged_out() -> None:
    old_entry = RevisableKey(bytes([7]) * 16, OLDEST_END - 30 * 144, 144)
    processed = RevisableKey(bytes([7]) * 16, TODAY, 144)

    result = next_token_keys([old_entry], [processed], now=NOW, max_interval_age=MAX_AGE)

    assert result == [processed]
