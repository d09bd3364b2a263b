"""The verification API over HTTP: the reference's fields, statuses and error codes."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import func, select, update

from crypto.tokens import public_keys_from_jwk_set, verify_jwt
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from tests.functional.verification.conftest import Api, make_api
from tests.unit.verification.conftest import Clock, make_context
from verification.api import create_router
from verification.models import (
    ApiKey,
    AuditEntry,
    Realm,
    SigningKey,
    VerificationCode,
    VerificationToken,
)
from verification.service import realms
from verification.settings import VerificationSettings

EKEYHMAC = base64.b64encode(bytes(range(32))).decode()
TODAY = "2026-11-25"


def _issue(api: Api, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {"testType": "confirmed", "symptomDate": TODAY}
    body.update(fields)
    return api.admin("/api/issue", body)


def _counts(api: Api) -> tuple[int, int, int]:
    with api.session() as session:
        return (
            session.execute(select(func.count(VerificationCode.id))).scalar_one(),
            session.execute(select(func.count(VerificationToken.id))).scalar_one(),
            session.execute(select(func.count(AuditEntry.id))).scalar_one(),
        )


def test_full_flow_and_certificate_verifies_with_jwks(api: Api) -> None:
    issued = _issue(api, testDate="2026-11-24")
    assert issued["status"] == 200
    assert len(str(issued["code"])) == 8
    assert str(issued["expiresAt"]).endswith("GMT")

    verified = api.device("/api/verify", {"code": issued["code"], "accept": ["confirmed"]})
    assert verified["status"] == 200
    assert verified["testtype"] == "confirmed"
    assert verified["symptomDate"] == TODAY
    assert verified["testDate"] == "2026-11-24"

    certified = api.device("/api/certificate", {"token": verified["token"], "ekeyhmac": EKEYHMAC})
    assert certified["status"] == 200

    jwks = api.client.get(f"/jwks/{api.realm_id}")
    assert jwks.status_code == 200
    assert isinstance(jwks.json(), list)
    certificate = str(certified["certificate"])
    unverified = jwt.decode(certificate, options={"verify_signature": False})
    claims = verify_jwt(
        certificate,
        public_keys=public_keys_from_jwk_set(jwks.json()),
        audience="exposure-notifications-server",
        issuer=unverified["iss"],
        now=api.clock(),
    )
    assert claims["tekmac"] == EKEYHMAC
    assert claims["reportType"] == "confirmed"


def test_every_response_is_padded_and_rate_limit_headers_are_sent(api: Api) -> None:
    response = api.client.post(
        "/api/issue",
        json={"testType": "confirmed", "symptomDate": TODAY},
        headers={"X-API-Key": api.admin_key},
    )
    error = api.client.post(
        "/api/verify", json={"code": "1"}, headers={"X-API-Key": api.device_key}
    )

    for reply in (response, error):
        assert 1024 <= len(base64.b64decode(reply.json()["padding"])) < 2048
        assert int(reply.headers["X-RateLimit-Limit"]) == 120
        assert "X-RateLimit-Remaining" in reply.headers
        assert reply.headers["X-RateLimit-Reset"].endswith("GMT")


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"testType": "nope"}, 400, "invalid_test_type"),
        ({"testType": "user-report"}, 400, "unsupported_test_type"),
        ({"symptomDate": ""}, 400, "missing_date"),
        ({"symptomDate": "2026-10-01"}, 400, "invalid_date"),
        ({"symptomDate": "yesterday"}, 400, "invalid_date"),
        ({"uuid": "not-a-uuid"}, 400, "unparsable_request"),
        ({"tzOffset": "60"}, 400, "unparsable_request"),
        ({"onlyGenerateSMS": True}, 400, "unparsable_request"),
    ],
)
def test_issue_errors(api: Api, fields: dict[str, object], status: int, code: str) -> None:
    answer = _issue(api, **fields)

    assert answer["status"] == status
    assert answer["errorCode"] == code
    assert answer["error_code"] == code
    assert _counts(api)[0] == 0


def test_uuid_conflict_is_409(api: Api) -> None:
    handle = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert _issue(api, uuid=handle)["status"] == 200

    again = _issue(api, uuid=handle)

    assert (again["status"], again["errorCode"]) == (409, "uuid_already_exists")
    assert _counts(api)[0] == 1


def test_batch_issue_answers_per_index(api: Api) -> None:
    answer = api.admin(
        "/api/batch-issue",
        {
            "codes": [
                {"testType": "confirmed", "symptomDate": TODAY},
                {"testType": "bogus", "symptomDate": TODAY},
                {"testType": "likely", "testDate": TODAY},
            ]
        },
    )

    assert answer["status"] == 400
    assert answer["errorCode"] == "invalid_test_type"
    codes = answer["codes"]
    assert isinstance(codes, list)
    assert [bool(item["code"]) for item in codes] == [True, False, True]
    assert codes[1]["errorCode"] == "invalid_test_type"
    assert _counts(api)[0] == 2
    too_many = api.admin(
        "/api/batch-issue", {"codes": [{"testType": "confirmed", "symptomDate": TODAY}] * 11}
    )
    assert (too_many["status"], too_many["errorCode"]) == (400, "unparsable_request")


def test_check_status_and_expire(api: Api) -> None:
    issued = _issue(api)
    status = api.admin("/api/checkcodestatus", {"uuid": issued["uuid"]})
    assert status["status"] == 200
    assert status["claimed"] is False
    assert status["expiresAtTimestamp"] == issued["expiresAtTimestamp"]

    expired = api.admin("/api/expirecode", {"uuid": issued["uuid"]})
    assert expired["status"] == 200
    assert expired["expiresAtTimestamp"] == int(api.clock().timestamp())
    refused = api.device("/api/verify", {"code": issued["code"]})
    assert (refused["status"], refused["errorCode"]) == (400, "code_expired")
    missing = api.admin("/api/checkcodestatus", {"uuid": "0f8fad5b-d9cb-469f-a165-000000000000"})
    assert (missing["status"], missing["errorCode"]) == (404, "code_not_found")
    missing = api.admin("/api/expirecode", {"uuid": "0f8fad5b-d9cb-469f-a165-000000000000"})
    assert (missing["status"], missing["errorCode"]) == (404, "code_not_found")


def test_expire_of_a_claimed_code(api: Api) -> None:
    issued = _issue(api)
    assert api.device("/api/verify", {"code": issued["code"]})["status"] == 200

    refused = api.admin("/api/expirecode", {"uuid": issued["uuid"]})

    assert (refused["status"], refused["errorCode"]) == (400, "code_already_claimed")


def test_verify_errors(api: Api) -> None:
    issued = _issue(api, testType="likely")

    unknown = api.device("/api/verify", {"code": "12345678"})
    assert (unknown["status"], unknown["errorCode"]) == (400, "code_invalid")
    bad_accept = api.device("/api/verify", {"code": issued["code"], "accept": ["x"]})
    assert (bad_accept["status"], bad_accept["errorCode"]) == (400, "invalid_test_type")
    unsupported = api.device("/api/verify", {"code": issued["code"], "accept": ["confirmed"]})
    assert (unsupported["status"], unsupported["errorCode"]) == (412, "unsupported_test_type")
    assert api.device("/api/verify", {"code": issued["code"]})["status"] == 200
    reused = api.device("/api/verify", {"code": issued["code"]})
    assert (reused["status"], reused["errorCode"]) == (400, "code_invalid")
    assert reused["error"] == unknown["error"]


def test_certificate_errors(api: Api) -> None:
    issued = _issue(api)
    token = api.device("/api/verify", {"code": issued["code"]})["token"]

    bad_hmac = api.device("/api/certificate", {"token": token, "ekeyhmac": "AAAA"})
    assert (bad_hmac["status"], bad_hmac["errorCode"]) == (400, "hmac_invalid")
    forged = api.device("/api/certificate", {"token": "a.b.c", "ekeyhmac": EKEYHMAC})
    assert (forged["status"], forged["errorCode"]) == (400, "token_invalid")
    assert api.device("/api/certificate", {"token": token, "ekeyhmac": EKEYHMAC})["status"] == 200
    reused = api.device("/api/certificate", {"token": token, "ekeyhmac": EKEYHMAC})
    assert (reused["status"], reused["errorCode"]) == (400, "token_expired")


def test_expired_token(api: Api) -> None:
    token = api.device("/api/verify", {"code": _issue(api)["code"]})["token"]
    api.clock.advance(timedelta(hours=25))

    answer = api.device("/api/certificate", {"token": token, "ekeyhmac": EKEYHMAC})

    assert (answer["status"], answer["errorCode"]) == (400, "token_expired")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/issue", {}),
        ("/api/issue", {"X-API-Key": "nope"}),
        ("/api/verify", {"X-API-Key": "nope"}),
        ("/api/certificate", {}),
        ("/api/checkcodestatus", {}),
    ],
)
def test_missing_or_wrong_api_key_is_401(api: Api, path: str, headers: dict[str, str]) -> None:
    response = api.client.post(path, json={}, headers=headers)

    assert response.status_code == 401
    assert response.json()["errorCode"] == "unauthorized"


def test_key_types_do_not_cross(api: Api) -> None:
    device_on_lab = api.client.post(
        "/api/issue",
        json={"testType": "confirmed", "symptomDate": TODAY},
        headers={"X-API-Key": api.device_key},
    )
    lab_on_device = api.client.post(
        "/api/verify", json={"code": "12345678"}, headers={"X-API-Key": api.admin_key}
    )

    assert device_on_lab.status_code == lab_on_device.status_code == 401


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"code": "1"', "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"code": 12345678}', "application/json", 400),
        (b'{"code": "1", "extra": true}', "application/json", 400),
        (b'{"code": "1"} {"code": "2"}', "application/json", 400),
        (b"", "application/json", 400),
        (b'{"code": "1"}', "text/plain", 400),
        (b'{"padding": "' + b"A" * 70_000 + b'"}', "application/json", 413),
    ],
)
def test_bad_bodies_are_unparsable_and_change_nothing(
    api: Api, content: bytes, content_type: str, status: int
) -> None:
    issued = _issue(api)
    before = _counts(api)

    response = api.client.post(
        "/api/verify",
        content=content,
        headers={"X-API-Key": api.device_key, "Content-Type": content_type},
    )

    assert response.status_code == status
    assert response.json()["errorCode"] == "unparsable_request"
    assert "Traceback" not in response.text
    assert _counts(api) == before
    # The issued code is still usable: nothing was claimed.
    assert api.device("/api/verify", {"code": issued["code"]})["status"] == 200


def test_chaff_is_answered_like_a_real_response_and_stores_nothing(api: Api) -> None:
    issued = _issue(api)
    before = _counts(api)

    chaff = api.client.post(
        "/api/verify",
        json={"code": issued["code"]},
        headers={"X-API-Key": api.device_key, "X-Chaff": "1"},
    )

    assert chaff.status_code == 200
    assert set(chaff.json()) == {"padding"}
    assert _counts(api) == before
    assert api.device("/api/verify", {"code": issued["code"]})["status"] == 200


def test_jwks_unknown_realm(api: Api) -> None:
    response = api.client.get("/jwks/999")

    assert response.status_code == 404
    assert response.json()["errorCode"] == "not_found"


def test_brute_force_is_locked_out(database_url: str, tmp_path: Path) -> None:
    for api in make_api(database_url, tmp_path, invalid_codes_per_client_per_hour=3):
        issued = _issue(api)
        for guess in range(3):
            answer = api.device("/api/verify", {"code": f"{guess:08d}"})
            assert answer["errorCode"] == "code_invalid"

        locked = api.device("/api/verify", {"code": issued["code"]})

        assert (locked["status"], locked["errorCode"]) == (429, "quota_exceeded")
        api.clock.advance(timedelta(hours=1))
        # The short code has expired by now; the long one still works once unlocked.
        assert api.device("/api/verify", {"code": issued["longCode"]})["status"] == 200


def test_rate_limit_answers_429_with_retry_after(database_url: str, tmp_path: Path) -> None:
    for api in make_api(database_url, tmp_path, requests_per_minute=2):
        assert api.device("/api/verify", {"code": "1"})["status"] == 400
        assert api.device("/api/verify", {"code": "1"})["status"] == 400

        response = api.client.post(
            "/api/verify", json={"code": "1"}, headers={"X-API-Key": api.device_key}
        )

        assert response.status_code == 429
        assert response.json()["errorCode"] == "rate_limited"
        assert int(response.headers["Retry-After"]) > 0
        assert response.headers["X-RateLimit-Remaining"] == "0"


def test_maintenance_mode(database_url: str, tmp_path: Path) -> None:
    for api in make_api(database_url, tmp_path, maintenance_mode=True):
        answer = api.device("/api/verify", {"code": "1"})

        assert (answer["status"], answer["errorCode"]) == (429, "maintenance_mode")


def test_metrics_count_by_realm_and_result(api: Api) -> None:
    api.device("/api/verify", {"code": _issue(api)["code"]})
    api.device("/api/verify", {"code": "98765432"})

    text = generate_latest(REGISTRY).decode()

    assert "exposure_verification_codes_issued_total" in text
    assert (
        f'exposure_verification_codes_rejected_total{{realm="{api.realm_id}",reason="code_invalid"}}'
        in text
    )
    # Sample values are floats that may contain any digits; only names and labels matter.
    assert all("98765432" not in line.split(" ")[0] for line in text.splitlines())


def test_unexpected_failure_is_a_plain_500(api: Api) -> None:
    token = api.device("/api/verify", {"code": _issue(api)["code"]})["token"]
    with api.session() as session, session.begin():
        for key in session.execute(select(SigningKey)).scalars():
            if key.purpose == "certificate":
                key.retired_at = api.clock()

    answer = api.device("/api/certificate", {"token": token, "ekeyhmac": EKEYHMAC})

    assert (answer["status"], answer["errorCode"]) == (500, "internal_server_error")
    assert "Traceback" not in str(answer)


def test_disabled_device_key_is_refused(api: Api) -> None:
    with api.session() as session, session.begin():
        key = session.execute(select(ApiKey).where(ApiKey.kind == "device")).scalar_one()
        key.disabled_at = api.clock()

    answer = api.device("/api/verify", {"code": "12345678"})

    assert (answer["status"], answer["errorCode"]) == (401, "unauthorized")


def test_daily_issue_quota_is_429(api: Api) -> None:
    with api.session() as session, session.begin():
        session.execute(update(Realm).values(daily_issue_limit=1))
    assert _issue(api)["status"] == 200

    refused = _issue(api)

    assert (refused["status"], refused["errorCode"]) == (429, "quota_exceeded")
    assert _counts(api)[0] == 1


def test_a_disabled_key_stops_working_within_the_cache_ttl(
    database_url: str, tmp_path: Path
) -> None:
    ttl = timedelta(seconds=10)
    ticks = [100.0]
    context = make_context(VerificationSettings(cache_ttl=ttl), cache_clock=lambda: ticks[0])
    engine = create_database_engine(database_url)
    factory = make_session_factory(engine)
    clock = Clock()
    with unit_of_work(factory) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="test")
    app = FastAPI()
    app.include_router(create_router(context, factory, clock))
    headers = {"X-API-Key": created.device_key.plaintext}

    def verify() -> int:
        return client.post("/api/verify", json={"code": "12345678"}, headers=headers).status_code

    try:
        with TestClient(app) as client:
            assert verify() == 400  # authenticated (the code is wrong), and now cached
            with unit_of_work(factory) as session:
                realms.disable_api_key(
                    session, api_key_id=created.device_key.record.id, now=clock(), actor="test"
                )
            ticks[0] += ttl.total_seconds() - 1
            assert verify() == 400  # the documented revocation delay
            ticks[0] += 1
            assert verify() == 401
    finally:
        engine.dispose()
