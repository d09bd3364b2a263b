"""The lenient base64 decoder of the key server, and unpadded base64url."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.encoding import b64url_decode, b64url_encode, decode_base64_lenient


@given(data=st.binary(max_size=64), extra_padding=st.integers(min_value=0, max_value=4))
def test_every_spelling_decodes_to_the_same_bytes(data: bytes, extra_padding: int) -> None:
    standard = base64.b64encode(data).decode()
    urlsafe = base64.urlsafe_b64encode(data).decode()
    for text in (standard, urlsafe, standard.rstrip("="), urlsafe.rstrip("=")):
        assert decode_base64_lenient(text) == data
        assert decode_base64_lenient(text + "=" * extra_padding) == data


@given(data=st.binary(max_size=64))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


def test_known_answers() -> None:
    assert decode_base64_lenient("AQIDBAUGBwgJCgsMDQ4PEA==") == bytes(range(1, 17))
    assert decode_base64_lenient("-_8") == decode_base64_lenient("+/8=") == b"\xfb\xff"
    assert decode_base64_lenient("") == b""
    assert decode_base64_lenient("====") == b""
    assert b64url_encode(b"\xfb\xff") == "-_8"


def test_newlines_are_ignored_like_go() -> None:
    assert decode_base64_lenient("AQID\r\nBAUG") == bytes(range(1, 7))


def test_nonzero_trailing_bits_are_accepted_like_go() -> None:
    # "AR" has bits left over after the single byte 0x01; Go's non-strict decoder keeps 0x01.
    assert decode_base64_lenient("AR") == b"\x01"


@pytest.mark.parametrize(
    "text",
    [
        "A",  # a length no encoding produces
        "AQIDB",
        "AQ=D",  # padding inside
        "AQ==\n",  # padding not trailing once the newline goes
        "AQ ID",
        "AQ.D",
        "AQ\x00D",
        "AQIé",
        "٣٣٣٣",  # non-ASCII digits
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid base64"):
        decode_base64_lenient(text)


@pytest.mark.parametrize("text", ["AQ==", "AQ+D", "AQ/D", "AQ\nD", "A"])
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="invalid base64"):
        b64url_decode(text)


@given(
    text=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_", max_size=40
    )
)
def test_the_shortcut_for_canonical_input_decodes_as_the_general_rule(text: str) -> None:
    def general(value: str) -> bytes | None:
        try:
            return b64url_decode(value.replace("+", "-").replace("/", "_").rstrip("="))
        except ValueError:
            return None

    try:
        decoded: bytes | None = decode_base64_lenient(text)
    except ValueError:
        decoded = None
    assert decoded == general(text)
