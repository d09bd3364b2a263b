"""Random and malformed bodies at /v1/publish, on both engines: never a 5xx, nothing stored.

Bodies are built four ways: arbitrary bytes, arbitrary JSON values, near-valid publish objects
with one field replaced by junk of every JSON type, and valid publishes whose certificate,
signed with the trusted key, carries one junk claim (so the junk gets past the signature, as
far as a real authority's mistake would). Junk includes NUL, lone surrogates and numbers far
beyond int64 and double range. Whatever arrives, the answer is a 4xx with a stable ``code`` or
a 200, and a refused request stores nothing.

Every property runs on SQLite and on PostgreSQL: the engines differ on exactly this kind of
input (PostgreSQL refuses a NUL in text, SQLite stores it), so a property that holds on one
says nothing about the other. And no request value longer than
:data:`~keyserver.errors.MAX_QUOTED_REQUEST_VALUE` ever comes back in an error or warning.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crypto.encoding import b64url_decode, b64url_encode
from exposure.api.v1 import PublishErrorCode
from exposure.db import create_database_engine
from exposure.db.migrate import upgrade
from keyserver.errors import MAX_QUOTED_REQUEST_VALUE
from tests.conftest import ALL_TARGETS, postgres_base_url, with_search_path
from tests.functional.keyserver.conftest import KID, Api, Phone, make_api

#: Strings that the engines or the JSON layer treat specially.
AWKWARD_TEXT = st.sampled_from(
    ["\x00", "com.example.exposure\x00", "\ud800", "a\udfff", "\x00" * 3, "x" * 60_000, ""]
)
#: Numbers at and beyond the edges of int32, int64, uint32 and double.
AWKWARD_NUMBERS = st.sampled_from(
    [2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
    | AWKWARD_TEXT
    | AWKWARD_NUMBERS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)

FIELDS = [
    "temporaryExposureKeys",
    "healthAuthorityID",
    "verificationPayload",
    "hmacKey",
    "symptomOnsetInterval",
    "traveler",
    "revisionToken",
    "padding",
]
KEY_FIELDS = ["key", "rollingStartNumber", "rollingPeriod", "transmissionRisk"]
CLAIMS = ["iss", "aud", "exp", "iat", "nbf", "reportType", "symptomOnsetInterval", "tekmac"]

#: Junk for one field or claim: awkward values a third of the time each, else any JSON.
junk_values = st.one_of(AWKWARD_TEXT, AWKWARD_NUMBERS, json_values)

CODES = {code.value for code in PublishErrorCode}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def fuzz_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    # One database per engine for the whole module: hypothesis sends hundreds of requests.
    directory: Path = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'fuzz.sqlite3'}"
        engine = create_database_engine(url)
        upgrade(engine, ALL_TARGETS)
        engine.dispose()
        yield from make_api(url, directory)
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
        yield from make_api(url, directory)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield name
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _check(api: Api, content: bytes, sent: Any = None) -> None:
    """Never a 5xx; a refusal has a known code and stores nothing; no long value comes back."""
    before = len(api.stored())
    response = api.client.post(
        "/v1/publish", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code != 200:
        assert body["code"] in CODES
        assert len(api.stored()) == before
    echoed = "\n".join([body.get("error", ""), *body.get("warnings", [])])
    for value in _strings(sent):
        if len(value) > MAX_QUOTED_REQUEST_VALUE:
            assert value not in echoed


def _signed_with_junk_claim(
    api: Api, phone: Phone, keys: list[dict[str, Any]], claim: str, junk: Any
) -> str:
    """The phone's certificate with ``claim`` replaced, correctly signed by the trusted key.

    Signed by hand: PyJWT refuses to write some claims (a non-string ``iss``, say) that a
    faulty authority could still send.
    """
    claims = json.loads(_payload(phone.certificate(keys)))
    claims[claim] = junk
    header = {"alg": "ES256", "kid": KID, "typ": "JWT"}
    signing_input = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
    der = api.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _payload(token: str) -> bytes:
    return b64url_decode(token.split(".")[1])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=300))
def test_random_bytes(fuzz_api: Api, content: bytes) -> None:
    _check(fuzz_api, content)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_random_json(fuzz_api: Api, value: Any) -> None:
    _check(fuzz_api, json.dumps(value).encode(), value)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(FIELDS),
    key_field=st.sampled_from(KEY_FIELDS),
    junk=junk_values,
    spoil_key=st.booleans(),
)
# Found by this property: PostgreSQL refused the NUL in the app lookup (500).
@example(field="healthAuthorityID", key_field="key", junk="\x00", spoil_key=False)
def test_near_valid_publishes_with_one_field_spoiled(
    fuzz_api: Api, field: str, key_field: str, junk: Any, spoil_key: bool
) -> None:
    phone = fuzz_api.phone()
    body = phone.body(phone.keys(3))
    if spoil_key:
        body["temporaryExposureKeys"][1][key_field] = junk
    else:
        body[field] = junk
    _check(fuzz_api, json.dumps(body).encode(), body)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(claim=st.sampled_from(CLAIMS), junk=junk_values)
# Found by this property: PostgreSQL refused the NUL in the issuer lookup (500).
@example(claim="iss", junk="gov.example.lab\x00")
def test_valid_publishes_whose_signed_certificate_carries_one_junk_claim(
    fuzz_api: Api, claim: str, junk: Any
) -> None:
    phone = fuzz_api.phone()
    keys = phone.keys(3)
    certificate = _signed_with_junk_claim(fuzz_api, phone, keys, claim, junk)
    body = phone.body(keys, verificationPayload=certificate)
    _check(fuzz_api, json.dumps(body).encode(), body)
