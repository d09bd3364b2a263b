"""Strict JSON bodies: every refusal reason, Go's case folding, and hostile input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Message

from exposure.http.body import (
    BodyError,
    decode_json_object,
    json_body,
    parse_model,
    read_json_object,
)

LIMIT = 1_000


class ReportType(StrEnum):
    CONFIRMED = "confirmed"
    LIKELY = "likely"


class Key(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    rolling_start_number: int = Field(alias="rollingStartNumber")
    transmission_risk: int = Field(default=0, alias="transmissionRisk", ge=0, le=8)


class Publish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[Key] = Field(alias="temporaryExposureKeys")
    hmac_key: str = Field(default="", alias="hmacKey")
    traveler: bool = False
    report_type: ReportType = Field(default=ReportType.CONFIRMED, alias="reportType")
    padding: str = ""


class Lax(BaseModel):
    name: str


class HoldsLax(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inner: Lax | None = None


def _request(
    chunks: Sequence[bytes],
    *,
    content_type: str | None = "application/json",
    content_length: str | None = None,
) -> tuple[Request, list[int]]:
    """A request whose body arrives in ``chunks``; the list counts the reads."""
    reads = [0]
    headers: list[tuple[bytes, bytes]] = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if content_length is not None:
        headers.append((b"content-length", content_length.encode("latin-1")))

    async def receive() -> Message:
        index = reads[0]
        reads[0] += 1
        body = chunks[index] if index < len(chunks) else b""
        return {"type": "http.request", "body": body, "more_body": index + 1 < len(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive), reads


def _read(
    body: bytes | Sequence[bytes],
    *,
    max_bytes: int = LIMIT,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    chunks = [body] if isinstance(body, bytes) else body
    request, _ = _request(chunks, content_type=content_type)
    return asyncio.run(read_json_object(request, max_bytes=max_bytes))


def _refusal(body: bytes, *, content_type: str | None = "application/json") -> BodyError:
    with pytest.raises(BodyError) as caught:
        _read(body, content_type=content_type)
    return caught.value


def _invalid(data: dict[str, Any], *, case_insensitive: bool = False) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_model(Publish, data, case_insensitive=case_insensitive)
    return caught.value


VALID = {"temporaryExposureKeys": [{"key": "AAAA", "rollingStartNumber": 2_700_000}]}


def test_a_valid_object_is_returned() -> None:
    assert _read(json.dumps(VALID).encode()) == VALID


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/jsonx"]
)
def test_content_type_only_needs_the_prefix(content_type: str) -> None:
    assert _read(b"{}", content_type=content_type) == {}


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/jso", "Application/JSON", " application/json"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    error = _refusal(b"{}", content_type=content_type)

    assert (error.status, error.reason) == (415, "content_type")
    assert error.message == "content-type is not application/json"


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    request, reads = _request([b"{}"], content_length=str(LIMIT + 1))

    with pytest.raises(BodyError) as caught:
        asyncio.run(read_json_object(request, max_bytes=LIMIT))

    assert (caught.value.status, caught.value.reason) == (413, "too_large")
    assert reads == [0]


@pytest.mark.parametrize(
    ("declared", "refused"),
    [
        (str(LIMIT), False),
        (f"00{LIMIT}", False),
        (str(LIMIT + 1), True),
        ("9" * 5_000, True),  # past int()'s digit limit, still just "too large"
        ("000", False),
        ("-1", False),  # not a length: left to the incremental read
        ("1e9", False),
    ],
)
def test_declared_length_is_compared_without_trusting_its_form(
    declared: str, refused: bool
) -> None:
    request, reads = _request([b"{}"], content_length=declared)

    outcome = _outcome(lambda: asyncio.run(read_json_object(request, max_bytes=LIMIT)))

    if refused:
        assert isinstance(outcome, BodyError)
        assert outcome.reason == "too_large"
        assert reads == [0]
    else:
        assert outcome == {}


def test_reading_stops_as_soon_as_the_limit_is_crossed() -> None:
    request, reads = _request([b" " * 10] * 1_000)

    with pytest.raises(BodyError) as caught:
        asyncio.run(read_json_object(request, max_bytes=95))

    assert (caught.value.status, caught.value.reason) == (413, "too_large")
    assert reads == [10]


def test_a_body_of_exactly_the_limit_is_accepted() -> None:
    body = b'{"padding":"' + b"a" * (LIMIT - 14) + b'"}'
    assert len(body) == LIMIT

    assert _read(body)["padding"] == "a" * (LIMIT - 14)
    assert _refusal(body + b" ").reason == "too_large"


def test_a_body_in_many_chunks_is_joined() -> None:
    assert _read([b'{"pad', b'ding"', b':"x"}']) == {"padding": "x"}


@pytest.mark.parametrize("body", [b"", b" \n\t\r "])
def test_empty_bodies_are_refused(body: bytes) -> None:
    error = _refusal(body)

    assert (error.status, error.reason, error.message) == (400, "empty", "body must not be empty")


@pytest.mark.parametrize(
    ("body", "position"),
    [
        (b'{"a":}', 5),
        (b'  {"a" 1}', 7),
        (b'{"\xc3\xa9":x}', 6),  # a byte offset: the é before it is two bytes
        (b'{"a":"\xff"}', 6),  # invalid UTF-8
        (b"\xef\xbb\xbf{}", 0),  # a byte-order mark is not JSON whitespace
        (b'{"a":1', 6),
    ],
)
def test_syntax_errors_give_the_byte_position(body: bytes, position: int) -> None:
    error = _refusal(body)

    assert (error.status, error.reason) == (400, "malformed")
    assert error.message == f"malformed json at position {position}"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b'{"a":[-Infinity]}', "Infinity"),
        (b'{"a":1e400}', "out of range"),
        (b'{"a":1,"a":2}', 'duplicate key "a"'),
        (b'{"a":[{"b":1,"b":1}]}', 'duplicate key "b"'),
        (b'{"a":"\\ud800"}', "unicode"),
        (b'{"\\udfff":1}', "unicode"),
        (b'{"a":' + b"9" * 5_000 + b"}", "too large"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too large"),
    ],
)
def test_json_that_python_would_accept_but_we_do_not(body: bytes, detail: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode_json_object(body)
    error = caught.value

    assert (error.status, error.reason) == (400, "malformed")
    assert detail in error.message


def test_a_huge_duplicate_key_is_not_echoed_in_full() -> None:
    key = "k" * 10_000
    error = _refusal(json.dumps({key: 1}).encode()[:-1] + b', "' + key.encode() + b'": 2}')

    assert len(error.message) < 120


@pytest.mark.parametrize("body", [b"[1]", b'"{}"', b"1", b"null", b"true", b"[]"])
def test_top_level_must_be_an_object(body: bytes) -> None:
    error = _refusal(body)

    assert (error.status, error.reason) == (400, "not_object")


@pytest.mark.parametrize("body", [b"{} {}", b"{}x", b"{}]", b"{}\n}", b'{} "'])
def test_trailing_data_is_refused(body: bytes) -> None:
    error = _refusal(body)

    assert (error.status, error.reason) == (400, "trailing_data")
    assert error.message == "body must contain only one JSON object"


def test_surrounding_whitespace_is_fine() -> None:
    assert _read(b' \r\n\t{"a": [1, 2.5, "x", null, true]} \n') == {"a": [1, 2.5, "x", None, True]}


def test_a_valid_model_is_returned() -> None:
    parsed = parse_model(Publish, {**VALID, "reportType": "likely", "traveler": True})

    assert parsed.keys[0].rolling_start_number == 2_700_000
    assert parsed.report_type is ReportType.LIKELY  # enums by value, even in strict mode
    assert parsed.traveler is True


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ({**VALID, "hmackey": "x"}, "hmackey"),  # exact case unless asked otherwise
        ({**VALID, "regions": ["DE"]}, "regions"),
        (
            {"temporaryExposureKeys": [{"key": "A", "rollingStartNumber": 1, "tr": 1}]},
            "tr",
        ),
    ],
)
def test_unknown_fields_are_named(data: dict[str, Any], name: str) -> None:
    error = _invalid(data)

    assert (error.status, error.reason) == (400, "unknown_field")
    assert error.message == f'unknown field "{name}"'


RSN = "temporaryExposureKeys.rollingStartNumber"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"temporaryExposureKeys": [{"key": "A", "rollingStartNumber": 1.0}]}, RSN),
        ({"temporaryExposureKeys": [{"key": "A", "rollingStartNumber": "1"}]}, RSN),
        ({"temporaryExposureKeys": [{"key": "A", "rollingStartNumber": True}]}, RSN),
        ({"temporaryExposureKeys": [{"key": "A"}]}, RSN),
        (
            {"temporaryExposureKeys": [{"key": 5, "rollingStartNumber": 1}]},
            "temporaryExposureKeys.key",
        ),
        (
            {
                "temporaryExposureKeys": [
                    {"key": "A", "rollingStartNumber": 1, "transmissionRisk": 9}
                ]
            },
            "temporaryExposureKeys.transmissionRisk",
        ),
        ({"temporaryExposureKeys": {}}, "temporaryExposureKeys"),
        ({**VALID, "traveler": "true"}, "traveler"),
        ({**VALID, "reportType": "positive"}, "reportType"),
    ],
)
def test_invalid_values_name_the_field_path(data: dict[str, Any], path: str) -> None:
    error = _invalid(data)

    assert (error.status, error.reason) == (400, "invalid_value")
    assert error.message == f'invalid value for "{path}"'


def test_invalid_values_are_never_echoed_nor_chained() -> None:
    secret = "c2VjcmV0LWhtYWMta2V5"
    error = _invalid({**VALID, "traveler": secret})

    assert secret not in error.message
    assert error.__cause__ is None
    assert error.__suppress_context__


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**VALID, "hmacKey": "a\u0000b"}, 'invalid value for "hmacKey"'),
        ({**VALID, "padding": "\u001b[2J"}, 'invalid value for "padding"'),
        (
            {"temporaryExposureKeys": [{"key": "AA\u0085", "rollingStartNumber": 1}]},
            'invalid value for "temporaryExposureKeys.key"',
        ),
        ({**VALID, "extra": ["ok", {"deep": "\u007f"}]}, 'invalid value for "extra.deep"'),
        ({**VALID, "a\u0000": 1}, "invalid value"),
    ],
)
def test_control_characters_are_refused_when_asked_for(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_model(Publish, data, refuse_control_characters=True)

    assert (caught.value.status, caught.value.reason) == (400, "invalid_value")
    assert caught.value.message == message


def test_control_characters_pass_when_not_asked_for() -> None:
    parsed = parse_model(Publish, {**VALID, "hmacKey": "a\u0000b"})

    assert parsed.hmac_key == "a\u0000b"


def test_refusing_control_characters_survives_any_nesting() -> None:
    # Deeper than the interpreter's recursion limit: the walk must not recurse.
    nested: Any = "\u0000"
    for _ in range(10_000):
        nested = [nested]

    with pytest.raises(BodyError) as caught:
        parse_model(Publish, {**VALID, "extra": nested}, refuse_control_characters=True)

    assert caught.value.message == 'invalid value for "extra"'


def test_case_insensitive_keys_match_aliases_at_every_depth() -> None:
    data = {
        "TEMPORARYEXPOSUREKEYS": [{"KEY": "A", "rollingstartnumber": 7, "TransmissionRisk": 2}],
        "hmackey": "h",
    }

    parsed = parse_model(Publish, data, case_insensitive=True)

    assert parsed.hmac_key == "h"
    assert parsed.keys[0].rolling_start_number == 7
    assert parsed.keys[0].transmission_risk == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"hmacKey": "exact", "HMACKEY": "folded"}, "folded"),
        ({"HMACKEY": "folded", "hmacKey": "exact"}, "exact"),
    ],
)
def test_when_keys_fold_together_the_last_one_wins(data: dict[str, str], expected: str) -> None:
    parsed = parse_model(Publish, {**VALID, **data}, case_insensitive=True)

    assert parsed.hmac_key == expected


def test_only_ascii_letters_fold() -> None:
    kelvin = "\u212a"  # folds to k in Go, deliberately not here
    error = _invalid({**VALID, f"hmac{kelvin}ey": "x"}, case_insensitive=True)

    assert error.reason == "unknown_field"


def test_unknown_fields_stay_unknown_when_folding() -> None:
    error = _invalid({**VALID, "Regions": []}, case_insensitive=True)

    assert error.message == 'unknown field "Regions"'


def test_models_must_forbid_extra_fields() -> None:
    with pytest.raises(TypeError, match="Lax"):
        parse_model(Lax, {"name": "x"})
    with pytest.raises(TypeError, match="Lax"):
        parse_model(HoldsLax, {})
    with pytest.raises(TypeError, match="Lax"):
        json_body(HoldsLax, max_bytes=LIMIT)


def test_max_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        json_body(Publish, max_bytes=0)
    with pytest.raises(ValueError, match="max_bytes"):
        _read(b"{}", max_bytes=0)


def test_json_body_works_as_a_fastapi_dependency() -> None:
    app = FastAPI()

    @app.exception_handler(BodyError)
    async def refuse(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, BodyError)
        return JSONResponse({"error": error.message, "reason": error.reason}, error.status)

    @app.post("/v1/publish")
    async def publish(
        body: Annotated[
            Publish, Depends(json_body(Publish, max_bytes=LIMIT, case_insensitive=True))
        ],
    ) -> dict[str, str]:
        return {"hmacKey": body.hmac_key}

    with TestClient(app) as client:
        accepted = client.post("/v1/publish", json={**VALID, "hmackey": "k"})
        too_large = client.post("/v1/publish", json={**VALID, "padding": "p" * LIMIT})
        wrong_type = client.post(
            "/v1/publish", content=b"{}", headers={"content-type": "text/plain"}
        )

    assert (accepted.status_code, accepted.json()) == (200, {"hmacKey": "k"})
    assert (too_large.status_code, too_large.json()["reason"]) == (413, "too_large")
    assert (wrong_type.status_code, wrong_type.json()["reason"]) == (415, "content_type")


def _outcome(function: Callable[[], object]) -> object:
    """What ``function`` returns, or the :class:`BodyError` it raises (anything else fails)."""
    try:
        return function()
    except BodyError as error:
        return error


def _decoded_or_refused(body: bytes) -> None:
    outcome = _outcome(lambda: decode_json_object(body))

    if isinstance(outcome, BodyError):
        assert outcome.status == 400
        assert outcome.reason in {"empty", "malformed", "not_object", "trailing_data"}
    else:
        assert isinstance(outcome, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_dict_or_a_body_error(body: bytes) -> None:
    _decoded_or_refused(body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def near_json(draw: st.DrawFn) -> bytes:
    """Real JSON text, then cut, spliced or extended: reaches deeper parser states."""
    text = json.dumps(draw(JSON_VALUES)).encode()
    cut = draw(st.integers(min_value=0, max_value=len(text)))
    insert = draw(
        st.sampled_from([b"", b"}", b"]", b",", b'"', b"\\u", b"NaN", b"{", b"\xff", b" {}"])
    )
    return draw(st.sampled_from([text, text[:cut] + insert + text[cut:], text + insert]))


@settings(max_examples=300, deadline=None)
@given(near_json())
def test_near_json_decodes_to_a_dict_or_a_body_error(body: bytes) -> None:
    _decoded_or_refused(body)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_read_json_object_on_any_chunks_gives_a_dict_or_a_body_error(chunks: list[bytes]) -> None:
    outcome = _outcome(lambda: _read(chunks, max_bytes=100))

    if isinstance(outcome, BodyError):
        assert outcome.reason in {"too_large", "empty", "malformed", "not_object", "trailing_data"}
    else:
        assert isinstance(outcome, dict)


FIELD_NAMES = st.sampled_from(
    [
        "temporaryExposureKeys",
        "TEMPORARYexposurekeys",
        "hmacKey",
        "hmackey",
        "traveler",
        "reportType",
        "padding",
        "key",
        "rollingStartNumber",
        "transmissionRisk",
        "x",
    ]
)
MODEL_INPUT = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(FIELD_NAMES, children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(FIELD_NAMES, MODEL_INPUT, max_size=5), st.booleans())
def test_any_object_parses_to_the_model_or_a_body_error(
    data: dict[str, Any], case_insensitive: bool
) -> None:
    outcome = _outcome(lambda: parse_model(Publish, data, case_insensitive=case_insensitive))

    if isinstance(outcome, BodyError):
        assert outcome.status == 400
        assert outcome.reason in {"unknown_field", "invalid_value"}
    else:
        assert isinstance(outcome, Publish)
