"""encode_json: orjson's compact JSON, and the standard library's for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exposure.json_codec import encode_json

JSON_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_DATA)
def test_it_writes_what_the_standard_library_reads_back(value: Any) -> None:
    assert json.loads(encode_json(value)) == value


def test_integers_past_64_bits_are_written() -> None:
    assert (
        encode_json({"rollingPeriod": 10**30})
        == b'{"rollingPeriod":1000000000000000000000000000000}'
    )


def test_nesting_past_orjsons_limit_is_written() -> None:
    deep: Any = []
    for _ in range(400):
        deep = [deep]
    assert json.loads(encode_json(deep)) == deep


def test_what_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_json({"key": b"bytes"})
    with pytest.raises(TypeError):
        encode_json({1: "a non-string key"} | {object(): 1})
