"""Drop-in compatibility with Google's verification server: what apps and lab systems
written against it send, and what they expect back (issue 12; docs/api.md, "Compatibility
with Google's verification server").
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import select

from exposure.db.base import Base
from tests.functional.verification.conftest import Api

TODAY = "2026-11-25"
HMAC = bytes(range(200, 232))


def _issue(api: Api, **fields: object) -> dict[str, Any]:
    body: dict[str, object] = {"testType": "confirmed", "symptomDate": TODAY}
    body.update(fields)
    return api.admin("/api/issue", body)


def _token(api: Api) -> str:
    verified = api.device("/api/verify", {"code": _issue(api)["code"]})
    assert verified["status"] == 200
    return str(verified["token"])


@pytest.mark.parametrize(
    "ekeyhmac",
    [
        base64.urlsafe_b64encode(HMAC).decode().rstrip("="),
        base64.urlsafe_b64encode(HMAC).decode(),
        base64.b64encode(HMAC).decode().rstrip("="),
        base64.b64encode(HMAC).decode(),
    ],
    ids=["url-safe-unpadded", "url-safe-padded", "standard-unpadded", "standard-padded"],
)
def test_certificate_takes_any_base64_of_the_hmac_and_copies_it_verbatim(
    api: Api, ekeyhmac: str
) -> None:
    answer = api.device("/api/certificate", {"token": _token(api), "ekeyhmac": ekeyhmac})

    assert answer["status"] == 200
    claims = jwt.decode(str(answer["certificate"]), options={"verify_signature": False})
    assert claims["tekmac"] == ekeyhmac


@pytest.mark.parametrize(
    "ekeyhmac",
    [
        base64.urlsafe_b64encode(HMAC[:31]).decode().rstrip("="),  # 31 bytes
        base64.urlsafe_b64encode(HMAC + b"x").decode(),  # 33 bytes
        "A" * 42 + "*",
        "",
    ],
)
def test_certificate_still_refuses_what_is_not_base64_of_32_bytes(api: Api, ekeyhmac: str) -> None:
    answer = api.device("/api/certificate", {"token": _token(api), "ekeyhmac": ekeyhmac})

    assert (answer["status"], answer["errorCode"]) == (400, "hmac_invalid")


PHONE = "+15550173194628"


def _everything_stored(api: Api, database_url: str) -> str:
    """Every row of every table as text, and on SQLite the raw bytes of the database and
    its write-ahead log (where even a deleted row would linger)."""
    seen: list[str] = []
    with api.session() as session:
        for table in Base.metadata.sorted_tables:
            seen.extend(repr(tuple(row)) for row in session.execute(select(table)))
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for file in path.parent.glob(path.name + "*"):
            seen.append(file.read_bytes().decode("latin-1"))
    return "\n".join(seen)


def test_issue_takes_the_reference_sms_fields_and_keeps_no_phone_number(
    api: Api, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    issued = _issue(api, phone=PHONE, smsTemplateLabel="default", onlyGenerateSMS=False)
    batch = api.admin(
        "/api/batch-issue",
        {"codes": [{"testType": "likely", "testDate": TODAY, "phone": PHONE}]},
    )
    empty = _issue(api, phone="", smsTemplateLabel="", onlyGenerateSMS=False)

    assert issued["status"] == batch["status"] == empty["status"] == 200
    digits = PHONE.removeprefix("+")
    assert digits[1:] not in _everything_stored(api, database_url)
    assert digits[1:] not in caplog.text
    assert all(digits[1:] not in str(record.args) for record in caplog.records)
    assert digits[1:] not in str(issued) + str(batch)
    assert digits[1:] not in generate_latest(REGISTRY).decode()


def test_only_generate_sms_is_refused_as_on_a_realm_without_sms(api: Api) -> None:
    refused = _issue(api, phone=PHONE, onlyGenerateSMS=True)

    assert (refused["status"], refused["errorCode"]) == (400, "unparsable_request")
    assert PHONE.removeprefix("+") not in str(refused)


def test_field_names_match_in_any_case(api: Api) -> None:
    issued = api.admin(
        "/api/issue",
        {"TESTTYPE": "confirmed", "symptomdate": TODAY, "TzOffset": 60, "ExternalIssuerId": "x"},
    )
    assert issued["status"] == 200
    batch = api.admin("/api/batch-issue", {"CODES": [{"testtype": "likely", "TESTDATE": TODAY}]})
    assert batch["status"] == 200
    status = api.admin("/api/checkcodestatus", {"UUID": issued["uuid"]})
    assert status["status"] == 200

    verified = api.device("/api/verify", {"Code": issued["code"], "ACCEPT": ["confirmed"]})
    assert verified["status"] == 200
    certified = api.device(
        "/api/certificate",
        {"Token": verified["token"], "EKeyHMAC": base64.b64encode(HMAC).decode()},
    )
    assert certified["status"] == 200


def test_field_names_fold_ascii_letters_only(api: Api) -> None:
    # U+212A KELVIN SIGN folds to "k" in Go; here it names no field.
    answer = api.admin("/api/checkcodestatus", {"uuid": "x", "\u212a": "y"})

    assert (answer["status"], answer["errorCode"]) == (400, "unparsable_request")


def test_test_types_match_in_any_case(api: Api) -> None:
    issued = _issue(api, testType="LiKeLy")
    assert issued["status"] == 200

    refused = api.device("/api/verify", {"code": issued["code"], "accept": ["CONFIRMED"]})
    assert (refused["status"], refused["errorCode"]) == (412, "unsupported_test_type")
    verified = api.device("/api/verify", {"code": issued["code"], "accept": ["Likely"]})
    assert verified["status"] == 200
    assert verified["testtype"] == "likely"  # stored and answered in the canonical case


def test_an_unsupported_test_type_is_400_on_issue_and_412_on_verify(api: Api) -> None:
    issued = _issue(api, testType="user-report")
    assert (issued["status"], issued["errorCode"]) == (400, "unsupported_test_type")

    likely = _issue(api, testType="likely")
    refused = api.device("/api/verify", {"code": likely["code"], "accept": ["confirmed"]})
    assert (refused["status"], refused["errorCode"]) == (412, "unsupported_test_type")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"]
)
@pytest.mark.parametrize("path", ["/api/issue", "/api/verify", "/api/checkcodestatus"])
def test_a_body_that_is_not_json_by_its_content_type_is_400(
    api: Api, path: str, content_type: str
) -> None:
    key = api.device_key if path == "/api/verify" else api.admin_key
    response = api.client.post(
        path, content=b"{}", headers={"X-API-Key": key, "Content-Type": content_type}
    )

    assert response.status_code == 400
    assert response.json()["errorCode"] == "unparsable_request"


def test_an_empty_batch_is_200_with_no_codes(api: Api) -> None:
    answer = api.admin("/api/batch-issue", {"codes": []})

    assert answer["status"] == 200
    assert answer["codes"] == []
    assert "error" not in answer
    assert "errorCode" not in answer


def test_successes_leave_out_the_empty_error_fields(api: Api) -> None:
    issued = _issue(api)
    batch = api.admin("/api/batch-issue", {"codes": [{"testType": "confirmed", "testDate": TODAY}]})
    verified = api.device("/api/verify", {"code": issued["code"]})
    certified = api.device(
        "/api/certificate",
        {"token": verified["token"], "ekeyhmac": base64.b64encode(HMAC).decode()},
    )
    status = api.admin("/api/checkcodestatus", {"uuid": issued["uuid"]})

    for answer in (issued, batch, *batch["codes"], verified, certified, status):
        assert answer.get("status", 200) == 200
        assert "error" not in answer
        assert "errorCode" not in answer
        assert "error_code" not in answer
    # A test date alone: the reference leaves the empty symptom date out too.
    assert "symptomDate" not in api.device("/api/verify", {"code": batch["codes"][0]["code"]})


def test_a_failed_batch_item_still_carries_its_error(api: Api) -> None:
    answer = api.admin(
        "/api/batch-issue",
        {"codes": [{"testType": "confirmed", "testDate": TODAY}, {"testType": "bogus"}]},
    )

    assert (answer["status"], answer["errorCode"]) == (400, "invalid_test_type")
    ok, failed = answer["codes"]
    assert "error" not in ok
    assert failed["errorCode"] == "invalid_test_type"
    assert failed["error"]
