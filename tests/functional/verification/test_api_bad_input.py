"""Bad input at the verification API: always a 4xx in the JSON error shape, the same on
both engines, nothing stored, and no request value repeated back at length or at all when
it could be a secret (issue 12: what an outside review found).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from tests.functional.verification.conftest import Api
from verification.models import AuditEntry, VerificationCode, VerificationToken

TODAY = "2026-11-25"
ERROR_SHAPE = {"error", "errorCode", "error_code", "padding"}
#: Longer than any echo may be (exposure.text.MAX_ECHOED_CHARACTERS is 64).
LONG = "Q" * 1000


def _post(api: Api, path: str, body: object, *, key: str) -> tuple[int, dict[str, Any], str]:
    response = api.client.post(
        path,
        content=json.dumps(body),  # json= would refuse nothing, but be explicit: raw JSON
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    return response.status_code, response.json(), response.text


def _stored(api: Api) -> tuple[int, int, int]:
    with api.session() as session:
        return (
            session.execute(select(func.count(VerificationCode.id))).scalar_one(),
            session.execute(select(func.count(VerificationToken.id))).scalar_one(),
            session.execute(select(func.count(AuditEntry.id))).scalar_one(),
        )


@pytest.mark.parametrize(
    ("path", "device", "body"),
    [
        ("/api/verify", True, {"code": "12345678", "accept": [LONG]}),
        ("/api/issue", False, {"testType": LONG, "symptomDate": TODAY}),
        ("/api/issue", False, {"testType": "confirmed", "symptomDate": LONG}),
        ("/api/issue", False, {"testType": "confirmed", "symptomDate": TODAY, "uuid": LONG}),
        ("/api/issue", False, {"testType": "confirmed", "externalIssuerID": LONG}),
        ("/api/issue", False, {"testType": "confirmed", "tzOffset": LONG}),
        ("/api/issue", False, {LONG: "confirmed"}),
        ("/api/batch-issue", False, {"codes": [{"testType": LONG, "symptomDate": TODAY}]}),
        ("/api/checkcodestatus", False, {"uuid": LONG}),
        ("/api/expirecode", False, {"uuid": LONG}),
        ("/api/certificate", True, {"token": LONG, "ekeyhmac": LONG}),
    ],
)
def test_no_error_echoes_a_long_request_value(
    api: Api, path: str, device: bool, body: dict[str, Any]
) -> None:
    status, _, text = _post(api, path, body, key=api.device_key if device else api.admin_key)

    assert 400 <= status < 500
    assert "Q" * 65 not in text


@pytest.mark.parametrize(
    ("path", "device", "body"),
    [
        ("/api/verify", True, {"code": "SECRET-code-31337"}),
        ("/api/verify", True, {"code": "SECRET-code-31337", "accept": ["SECRET-type"]}),
        ("/api/verify", True, {"code": ["SECRET-code-31337"]}),
        ("/api/certificate", True, {"token": "SECRET.token.31337", "ekeyhmac": "SECRET+mac"}),
        ("/api/certificate", True, {"token": "a.b.c", "ekeyhmac": "SECRET-mac-31337"}),
        ("/api/issue", False, {"testType": "SECRET-type", "symptomDate": TODAY}),
        ("/api/issue", False, {"testType": "confirmed", "uuid": "SECRET-uuid"}),
        ("/api/issue", False, {"testType": "confirmed", "externalIssuerID": "SECRET" * 50}),
        ("/api/issue", False, {"testType": "confirmed", "phone": ["SECRET-phone"]}),
        ("/api/checkcodestatus", False, {"uuid": "SECRET-uuid"}),
        ("/api/expirecode", False, {"uuid": "SECRET-uuid"}),
    ],
)
def test_no_error_echoes_a_value_that_could_be_a_secret(
    api: Api, path: str, device: bool, body: dict[str, Any]
) -> None:
    status, _, text = _post(api, path, body, key=api.device_key if device else api.admin_key)

    assert 400 <= status < 500
    assert "SECRET" not in text


def test_no_error_echoes_the_api_key(api: Api) -> None:
    response = api.client.post(
        "/api/verify", json={"code": "1"}, headers={"X-API-Key": "SECRET-api-key-31337"}
    )

    assert response.status_code == 401
    assert "SECRET" not in response.text


def test_jwks_does_not_echo_the_realm_asked_for(api: Api) -> None:
    response = api.client.get(f"/jwks/{LONG}")

    assert response.status_code == 404
    assert "Q" * 65 not in response.text


@pytest.mark.parametrize(
    "realm",
    [
        "²",  # str.isdigit() says yes, int() says no
        "³",
        "٣",  # an Arabic-Indic digit: int() takes it, a realm id it is not
        "2147483648",  # past int32: PostgreSQL refuses the comparison
        "-2147483649",
        "99999999999999999999",
        "0",
        "%00",  # NUL: psycopg refuses it
        "lab%00",
        "%0A",
        "%1B%5B31m",
        "%C2%85",  # NEL, a C1 control character
        "%ED%A0%80",  # an encoded lone surrogate: not UTF-8
        "%FF",
        quote("x" * 5000),
    ],
)
def test_jwks_of_any_unknown_realm_is_a_json_404_on_both_engines(api: Api, realm: str) -> None:
    response = api.client.get(f"/jwks/{realm}")

    assert response.status_code == 404
    assert set(response.json()) == ERROR_SHAPE
    assert response.json()["errorCode"] == "not_found"


def test_jwks_finds_a_realm_by_id_and_by_name(api: Api) -> None:
    by_id = api.client.get(f"/jwks/{api.realm_id}")
    by_name = api.client.get("/jwks/lab")

    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json() == by_name.json()


CONTROL_CHARACTERS = ["\u0000", "\u0001", "\u001b", "\u007f", "\u0085", "\u009b"]


@pytest.mark.parametrize("control", CONTROL_CHARACTERS)
@pytest.mark.parametrize(
    ("path", "device", "body", "field"),
    [
        ("/api/checkcodestatus", False, {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e{}"}, "uuid"),
        ("/api/expirecode", False, {"uuid": "0f8fad5b-d9cb-469f-a165-70867728950e{}"}, "uuid"),
        ("/api/checkcodestatus", False, {"uuid": "{}"}, "uuid"),
        (
            "/api/issue",
            False,
            {"testType": "confirmed", "symptomDate": TODAY, "externalIssuerID": "lab{}"},
            "externalIssuerID",
        ),
        ("/api/issue", False, {"testType": "confirmed{}", "symptomDate": TODAY}, "testType"),
        (
            "/api/issue",
            False,
            {"testType": "confirmed", "symptomDate": TODAY + "{}"},
            "symptomDate",
        ),
        (
            "/api/issue",
            False,
            {"testType": "confirmed", "symptomDate": TODAY, "smsTemplateLabel": "{}"},
            "smsTemplateLabel",
        ),
        (
            "/api/issue",
            False,
            {"testType": "confirmed", "symptomDate": TODAY, "padding": "AAAA{}"},
            "padding",
        ),
        (
            "/api/batch-issue",
            False,
            {"codes": [{"testType": "confirmed", "symptomDate": TODAY, "externalIssuerID": "{}"}]},
            "codes.externalIssuerID",
        ),
        ("/api/verify", True, {"code": "12345678{}"}, "code"),
        ("/api/verify", True, {"code": "12345678", "accept": ["confirmed{}"]}, "accept"),
        ("/api/certificate", True, {"token": "a.b.c{}", "ekeyhmac": "AAAA"}, "token"),
    ],
)
def test_control_characters_are_refused_at_the_edge_alike_on_both_engines(
    api: Api, control: str, path: str, device: bool, body: dict[str, Any], field: str
) -> None:
    spoiled = json.loads(json.dumps(body).replace("{}", json.dumps(control)[1:-1]))
    before = _stored(api)

    status, answer, _ = _post(api, path, spoiled, key=api.device_key if device else api.admin_key)

    assert (status, answer["errorCode"]) == (400, "unparsable_request")
    assert set(answer) == ERROR_SHAPE
    assert answer["error"] == f'invalid value for "{field}"'
    assert _stored(api) == before


def test_a_key_with_a_control_character_is_refused(api: Api) -> None:
    status, answer, _ = _post(api, "/api/checkcodestatus", {"uu\u0000id": "x"}, key=api.admin_key)

    assert (status, answer["errorCode"], answer["error"]) == (
        400,
        "unparsable_request",
        "invalid value",
    )
