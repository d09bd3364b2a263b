"""The edge's rules for a request's text: control characters, echoes, case."""

from __future__ import annotations

import json

import pytest

from exposure.text import MAX_ECHOED_CHARACTERS, echo, fold_case, has_control_character


@pytest.mark.parametrize(
    "text", ["\u0000", "a\u0000", "\u0001", "\t", "\n", "\u001b[31m", "\u007f", "\u0085", "\u009f"]
)
def test_every_control_character_is_found(text: str) -> None:
    assert has_control_character(text)


@pytest.mark.parametrize(
    "text", ["", "confirmed", "²³", "\u00a0", "\u2028", "\ufeff", "\ud800", "日本", "+1 555"]
)
def test_other_characters_are_not_control_characters(text: str) -> None:
    assert not has_control_character(text)


def test_an_echo_is_quoted_and_escaped() -> None:
    assert echo("a\u0000b") == '"a\\u0000b"'
    assert json.loads(echo("testType")) == "testType"


def test_an_echo_is_never_longer_than_the_bound() -> None:
    echoed = json.loads(echo("Q" * 10_000))

    assert echoed == "Q" * MAX_ECHOED_CHARACTERS + "..."


def test_case_folds_in_ascii_only() -> None:
    assert fold_case("CoNfIrMeD-Ä") == "confirmed-Ä"
    assert fold_case("\u212a\u017f") == "\u212a\u017f"  # Kelvin sign, long s: kept as they are
