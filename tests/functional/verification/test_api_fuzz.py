"""Generated requests at the verification API, against the real app on both engines: never
a 5xx, always the JSON error shape, and nothing stored by a refusal.

Bodies are arbitrary JSON values, arbitrary bytes, and near-valid requests with one field
replaced by junk: strings with NUL, other control characters and lone surrogates, numbers
past every integer and float range, deep nesting. ``/jwks/{realm}`` gets arbitrary path
segments. Unlike the key server's fuzz tests, these run on PostgreSQL too: psycopg refuses
what SQLite stores (NUL, integers past int64, past int32 for int columns), which is where
these requests used to end in a 500 (issue 12).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from exposure.api.verification import ErrorCode
from exposure.db import create_database_engine
from exposure.db.migrate import upgrade
from tests.conftest import ALL_TARGETS, postgres_base_url, with_search_path
from tests.functional.verification.conftest import Api, make_api
from verification.models import AuditEntry, VerificationCode, VerificationToken

ERROR_CODES = {code.value for code in ErrorCode}
#: The clock stands still, so every limit would close for good within a few examples, and
#: every later request would be refused before its body is even looked at.
UNLIMITED: dict[str, Any] = {
    "requests_per_minute": 100_000,
    "invalid_codes_per_client_per_hour": 1_000,
    "invalid_codes_per_realm_per_window": 100_000,
}
ERROR_SHAPE = {"error", "errorCode", "error_code", "padding"}

# Text that databases and parsers disagree on.
hostile_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=30),
    st.sampled_from(["\u0000", "a\u0000b", "\ud800", "\udfff", "\u2028", "\ufeff", "²", "٣"]),
    st.builds(lambda n: "x" * n, st.integers(min_value=60, max_value=3000)),
)
huge_numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.none() | st.booleans() | huge_numbers | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=15,
)

#: (path, uses the device key, a valid-looking body whose fields get spoiled)
ENDPOINTS = [
    ("/api/checkcodestatus", False, {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    ("/api/expirecode", False, {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    (
        "/api/issue",
        False,
        {
            "testType": "confirmed",
            "symptomDate": "2026-11-25",
            "testDate": "2026-11-24",
            "tzOffset": 0,
            "uuid": "",
            "externalIssuerID": "lab",
            "phone": "",
            "smsTemplateLabel": "",
            "onlyGenerateSMS": False,
        },
    ),
    ("/api/verify", True, {"code": "12345678", "accept": ["confirmed"], "nonce": ""}),
    ("/api/certificate", True, {"token": "a.b.c", "ekeyhmac": "A" * 43}),
]


def _raw_json(value: Any) -> str:
    """JSON text of ``value``, keeping lone surrogates as escapes (what a client can send)."""
    return json.dumps(value, ensure_ascii=True)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzz_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One app per engine for the whole module: hypothesis sends hundreds of requests."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'fuzz.sqlite3'}"
        engine = create_database_engine(url)
        upgrade(engine, ALL_TARGETS)
        engine.dispose()
        yield from make_api(url, directory, **UNLIMITED)
        return
    base = postgres_base_url()
    schema = f"fuzz_{secrets.token_hex(6)}"
    admin = create_database_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = with_search_path(base, schema)
        engine = create_database_engine(url)
        upgrade(engine, ALL_TARGETS)
        engine.dispose()
        yield from make_api(url, directory, **UNLIMITED)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _stored(api: Api) -> tuple[int, int, int]:
    with api.session() as session:
        return (
            session.execute(select(func.count(VerificationCode.id))).scalar_one(),
            session.execute(select(func.count(VerificationToken.id))).scalar_one(),
            session.execute(select(func.count(AuditEntry.id))).scalar_one(),
        )


def _client(api: Api) -> TestClient:
    # A 500 must come back as a response to assert on, not as the server's exception.
    return TestClient(api.client.app, raise_server_exceptions=False)


def _check_refused_or_ok(api: Api, path: str, device: bool, content: bytes) -> None:
    before = _stored(api)
    response = _client(api).post(
        path,
        content=content,
        headers={
            "X-API-Key": api.device_key if device else api.admin_key,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code < 500, response.text[:300]
    answer = response.json()
    if response.status_code != 200:
        assert set(answer) == ERROR_SHAPE or "codes" in answer, answer
        assert answer["errorCode"] in ERROR_CODES
        assert answer["errorCode"] != "rate_limited"  # else the body was never read
        if "codes" not in answer:
            assert _stored(api) == before


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(endpoint=st.sampled_from(ENDPOINTS), value=json_values)
def test_random_json_bodies(
    fuzz_api: Api, endpoint: tuple[str, bool, dict[str, Any]], value: Any
) -> None:
    path, device, _ = endpoint
    _check_refused_or_ok(fuzz_api, path, device, _raw_json(value).encode())


@SETTINGS
@given(endpoint=st.sampled_from(ENDPOINTS), content=st.binary(max_size=200))
def test_random_bytes(
    fuzz_api: Api, endpoint: tuple[str, bool, dict[str, Any]], content: bytes
) -> None:
    path, device, _ = endpoint
    _check_refused_or_ok(fuzz_api, path, device, content)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data(), junk=json_values)
def test_near_valid_bodies_with_one_field_spoiled(
    fuzz_api: Api, endpoint: tuple[str, bool, dict[str, Any]], data: st.DataObject, junk: Any
) -> None:
    path, device, valid = endpoint
    field = data.draw(st.sampled_from(sorted(valid)))
    _check_refused_or_ok(fuzz_api, path, device, _raw_json({**valid, field: junk}).encode())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data(), junk=hostile_text)
def test_near_valid_bodies_with_one_string_made_hostile(
    fuzz_api: Api, endpoint: tuple[str, bool, dict[str, Any]], data: st.DataObject, junk: str
) -> None:
    path, device, valid = endpoint
    strings = sorted(name for name, value in valid.items() if isinstance(value, str))
    field = data.draw(st.sampled_from(strings))
    _check_refused_or_ok(fuzz_api, path, device, _raw_json({**valid, field: junk}).encode())


@SETTINGS
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    depth=st.integers(min_value=1, max_value=5000),
    opener=st.sampled_from(["[", '{"a":']),
)
def test_deeply_nested_bodies(
    fuzz_api: Api, endpoint: tuple[str, bool, dict[str, Any]], depth: int, opener: str
) -> None:
    path, device, valid = endpoint
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    field = sorted(valid)[0]
    content = f'{{"{field}": {nested}}}'.encode()
    _check_refused_or_ok(fuzz_api, path, device, content)


@SETTINGS
@given(realm=hostile_text | st.integers(min_value=-(2**70), max_value=2**70).map(str))
def test_jwks_of_any_realm(fuzz_api: Api, realm: str) -> None:
    segment = quote(realm.encode("utf-8", "surrogatepass"), safe="")
    response = _client(fuzz_api).get(f"/jwks/{segment}")

    assert response.status_code in (200, 404), response.text[:300]
    if response.status_code == 404:
        assert set(response.json()) == ERROR_SHAPE
