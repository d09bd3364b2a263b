"""Random and malformed bodies at /v1/publish: never a 5xx, never a key from a refusal.

Bodies are built three ways: arbitrary bytes, arbitrary JSON values, and near-valid publish
objects with fields replaced by junk of every JSON type. Whatever arrives, the answer is a
4xx with a stable ``code`` or a 200, and a refused request stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exposure.api.v1 import PublishErrorCode
from exposure.db import create_database_engine
from exposure.db.migrate import upgrade
from tests.functional.keyserver.conftest import Api, make_api

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
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

CODES = {code.value for code in PublishErrorCode}


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # SQLite only: the property is about parsing and validation, which are the same on both
    # engines, and hypothesis needs hundreds of requests.
    directory: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{directory / 'fuzz.sqlite3'}"
    engine = create_database_engine(url)
    upgrade(engine, ("heads",))
    engine.dispose()
    yield from make_api(url, directory)


def _check(api: Api, content: bytes) -> None:
    before = len(api.stored())
    response = api.client.post(
        "/v1/publish", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code != 200:
        assert body["code"] in CODES
        assert len(api.stored()) == before


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
    _check(fuzz_api, json.dumps(value).encode())


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(FIELDS),
    key_field=st.sampled_from(KEY_FIELDS),
    junk=json_values,
    spoil_key=st.booleans(),
)
def test_near_valid_publishes_with_one_field_spoiled(
    fuzz_api: Api, field: str, key_field: str, junk: Any, spoil_key: bool
) -> None:
    phone = fuzz_api.phone()
    body = phone.body(phone.keys(3))
    if spoil_key:
        body["temporaryExposureKeys"][1][key_field] = junk
    else:
        body[field] = junk
    _check(fuzz_api, json.dumps(body).encode())
