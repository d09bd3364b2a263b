"""Response padding: random content, random length within bounds, valid base64."""

from __future__ import annotations

import base64

import pytest

from exposure.http.padding import DEFAULT_MINIMUM, DEFAULT_SPREAD, random_padding


def _decoded_length(padding: str) -> int:
    return len(base64.b64decode(padding, validate=True))


def test_default_length_is_within_google_bounds() -> None:
    lengths = [_decoded_length(random_padding()) for _ in range(200)]

    assert min(lengths) >= DEFAULT_MINIMUM
    assert max(lengths) < DEFAULT_MINIMUM + DEFAULT_SPREAD


def test_length_is_random() -> None:
    lengths = {_decoded_length(random_padding()) for _ in range(200)}

    # 200 draws from 1024 values: all equal would be a constant, not padding.
    assert len(lengths) > 100


def test_custom_bounds_are_honoured() -> None:
    lengths = {_decoded_length(random_padding(minimum=10, spread=3)) for _ in range(200)}

    assert lengths == {10, 11, 12}


def test_spread_of_one_gives_a_fixed_length() -> None:
    assert _decoded_length(random_padding(minimum=0, spread=1)) == 0


def test_content_comes_from_the_given_source() -> None:
    requested: list[int] = []

    def zeros(n: int) -> bytes:
        requested.append(n)
        return bytes(n)

    padding = random_padding(zeros, minimum=6, spread=1)

    assert requested == [6]
    assert padding == "AAAAAAAA"


def test_is_standard_base64() -> None:
    padding = random_padding(lambda n: b"\xff" * n, minimum=30, spread=1)

    assert "+" in padding or "/" in padding  # the standard alphabet, not the URL-safe one
    assert base64.b64decode(padding, validate=True) == b"\xff" * 30


@pytest.mark.parametrize(("minimum", "spread"), [(-1, 10), (0, 0), (10, -5)])
def test_nonsense_bounds_are_refused(minimum: int, spread: int) -> None:
    with pytest.raises(ValueError, match="padding"):
        random_padding(minimum=minimum, spread=spread)
