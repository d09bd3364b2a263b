"""POST /v1/publish over the whole app: success, every error row of the reference, revision."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from exposure.tek import interval_number, time_of_interval, truncate, utc_midnight
from tests.functional.keyserver.conftest import BYPASS_APP_ID, ISSUER, NO_REGION_APP_ID, Api


def _json(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


def test_a_valid_publish_stores_every_key_and_returns_a_revision_token(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(14)

    response = api.publish(phone.body(keys))

    body = _json(response)
    assert response.status_code == 200, body
    assert body["insertedExposures"] == 14
    assert body["revisionToken"]
    assert len(base64.b64decode(body["padding"])) >= 1024
    assert "code" not in body
    assert "error" not in body
    assert response.headers["x-api-version"] == "v1"
    stored = api.stored()
    assert set(stored) == {base64.b64decode(k["key"]) for k in keys}
    row = next(iter(stored.values()))
    assert row.report_type == "confirmed"
    assert row.transmission_risk == 2  # backfilled from "confirmed"
    assert row.regions == ",VN,"
    assert row.created_at == truncate(api.clock(), timedelta(hours=1))
    assert row.origin == "publish"


def test_a_key_still_valid_today_is_embargoed_until_after_it_expires(api: Api) -> None:
    phone = api.phone()
    today = interval_number(utc_midnight(api.clock()))
    keys = [
        *phone.keys(2),
        {
            "key": phone.keys(1)[0]["key"],
            "rollingStartNumber": today,
            "rollingPeriod": 144,
            "transmissionRisk": 0,
        },
    ]

    response = api.publish(phone.body(keys))

    assert response.status_code == 200, response.text
    todays = api.stored()[base64.b64decode(keys[-1]["key"])]
    assert todays.created_at == time_of_interval(today + 144) + timedelta(hours=1)


def test_field_names_match_case_insensitively(api: Api) -> None:
    phone = api.phone()
    body = phone.body(phone.keys(3))
    body["hmackey"] = body.pop("hmacKey")
    body["HEALTHAUTHORITYID"] = body.pop("healthAuthorityID")

    response = api.publish(body)

    assert response.status_code == 200, response.text
    assert _json(response)["insertedExposures"] == 3


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fragment"),
    [
        (b"{}", "text/plain", 415, "content-type"),
        (b"", "application/json", 400, "empty"),
        (b'{"padding": ""} {}', "application/json", 400, "one JSON object"),
        (b'{"nope": 1}', "application/json", 400, 'unknown field "nope"'),
        (b'{"temporaryExposureKeys": "x"}', "application/json", 400, "invalid value"),
        (b'{"symptomOnsetInterval": 2147483648}', "application/json", 400, "invalid value"),
        (b'{"padding": ', "application/json", 400, "malformed"),
        (b'{"padding": "' + b"a" * 64_000 + b'"}', "application/json", 413, ""),
    ],
)
def test_bodies_that_are_not_one_valid_object_are_refused_as_the_reference_does(
    api: Api, content: bytes, content_type: str, status: int, fragment: str
) -> None:
    response = api.client.post(
        "/v1/publish", content=content, headers={"Content-Type": content_type}
    )

    body = _json(response)
    assert response.status_code == status
    assert body["code"] == "bad_request"
    assert body["error"].startswith(f"error unmarshalling API call, code: {status}: ")
    assert fragment.lower() in body["error"].lower()
    assert body["padding"]
    assert api.stored() == {}


def test_an_unknown_app_is_unauthorized(api: Api) -> None:
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2), app_id="com.example.unknown"))

    assert response.status_code == 401
    assert _json(response)["code"] == "unknown_health_authority_id"
    assert "com.example.unknown" in _json(response)["error"]


@pytest.mark.parametrize("app_id", ["\x00", "com.example.exposure\x00", "\x00" * 300])
def test_an_app_id_with_a_nul_is_an_unknown_app_on_both_engines(api: Api, app_id: str) -> None:
    # PostgreSQL refuses NUL in text: the lookup failed there (500) and not on SQLite (401).
    response = api.publish({"healthAuthorityID": app_id})

    assert response.status_code == 401, response.text
    assert _json(response)["code"] == "unknown_health_authority_id"
    assert api.stored() == {}


@pytest.mark.parametrize("issuer", [f"{ISSUER}\x00", "\x00", "\ud800"])
def test_a_certificate_issuer_no_authority_could_have_is_refused_on_both_engines(
    api: Api, issuer: str
) -> None:
    phone = api.phone()
    keys = phone.keys(2)
    certificate = phone.certificate(keys, iss=issuer)

    response = api.publish(phone.body(keys, verificationPayload=certificate))

    assert response.status_code == 401, response.text
    assert _json(response)["code"] == "health_authority_verification_certificate_invalid"
    assert api.stored() == {}


def _echoed(body: dict[str, Any]) -> str:
    return "\n".join([body.get("error", ""), *body.get("warnings", [])])


@pytest.mark.parametrize(
    "app_id", ["x" * 60_000, f"com.example.{'y' * 60}", "com.example.app with spaces", "\x00"]
)
def test_an_unknown_app_id_is_quoted_back_only_when_short_and_well_formed(
    api: Api, app_id: str
) -> None:
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2), app_id=app_id))

    assert response.status_code == 401
    assert _json(response)["error"] == "unauthorized health authority"


@pytest.mark.parametrize(
    "spoil",
    [
        # Secrets pasted into the wrong field.
        lambda body: body.update(healthAuthorityID=body["hmacKey"]),
        lambda body: body.update(healthAuthorityID=body["verificationPayload"]),
        # Keys that are refused one by one (partial failure) or all (bad request).
        lambda body: body["temporaryExposureKeys"][0].update(key="A" * 40_000),
        lambda body: body["temporaryExposureKeys"][0].update(key=body["hmacKey"]),
        lambda body: body["temporaryExposureKeys"][1].update(transmissionRisk=2**63 - 1),
        lambda body: [key.update(key=key["key"] + "!") for key in body["temporaryExposureKeys"]],
        # Keys too far from the symptom onset (warnings).
        lambda body: body.update(symptomOnsetInterval=body["symptomOnsetInterval"] - 144 * 20),
    ],
    ids=[
        "secret-as-app-id",
        "certificate-as-app-id",
        "huge-key",
        "secret-as-key",
        "huge-risk",
        "no-valid-key",
        "onset",
    ],
)
def test_no_refusal_or_warning_quotes_a_long_or_secret_request_value(api: Api, spoil: Any) -> None:
    phone = api.phone()
    keys = phone.keys(3)
    body = phone.body(
        keys,
        symptomOnsetInterval=interval_number(utc_midnight(api.clock() - timedelta(days=2))),
        revisionToken=base64.b64encode(b"\x01" * 200).decode(),
    )
    spoil(body)
    sent = [
        body["healthAuthorityID"],
        body["hmacKey"],
        body["verificationPayload"],
        body["revisionToken"],
        body["padding"],
        *(key["key"] for key in body["temporaryExposureKeys"]),
    ]

    response = api.publish(body)

    echoed = _echoed(_json(response))
    assert echoed, "each case makes the server explain something"
    for value in sent:
        if len(value) > 64 or value in (body["hmacKey"], body["revisionToken"], body["padding"]):
            assert value not in echoed
    for key in body["temporaryExposureKeys"]:
        assert key["key"] not in echoed
    assert len(echoed) < 4_000


def test_the_app_id_is_matched_case_insensitively(api: Api) -> None:
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2), app_id="COM.Example.Exposure"))

    assert response.status_code == 200, response.text


def test_an_app_without_regions_is_a_server_configuration_error(api: Api) -> None:
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2), app_id=NO_REGION_APP_ID))

    assert response.status_code == 500
    assert _json(response)["code"] == "health_authority_missing_region_config"


def test_an_unreadable_app_table_is_unable_to_load(api: Api) -> None:
    with api.session() as session:
        session.execute(text("DROP TABLE keyserver_authorized_app_health_authorities"))
        session.execute(text("DROP TABLE keyserver_authorized_apps"))
        session.commit()
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2)))

    assert response.status_code == 500
    assert _json(response)["code"] == "unable_to_load_health_authority"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda body: body.update(verificationPayload="not-a-jwt"),
        lambda body: body.update(hmacKey=base64.b64encode(b"another secret").decode()),
        lambda body: body["temporaryExposureKeys"][0].update(transmissionRisk=5),
        lambda body: body.update(verificationPayload=""),
    ],
    ids=["garbage", "other-hmac-secret", "keys-changed-after-signing", "missing"],
)
def test_a_certificate_that_does_not_check_out_is_refused_without_saying_why(
    api: Api, spoil: Any
) -> None:
    phone = api.phone()
    body = phone.body(phone.keys(3))
    spoil(body)

    response = api.publish(body)

    assert response.status_code == 401
    assert _json(response)["code"] == "health_authority_verification_certificate_invalid"
    assert _json(response)["error"] == "unable to validate diagnosis verification"
    assert api.stored() == {}


def test_a_certificate_valid_for_an_absurd_lifetime_is_refused_and_counted(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(2)
    certificate = phone.certificate(keys, exp=1e308)
    counted = REGISTRY.get_sample_value(
        "exposure_keyserver_certificate_failures_total", {"reason": "lifetime"}
    )

    response = api.publish(phone.body(keys, verificationPayload=certificate))

    assert response.status_code == 401
    assert _json(response)["code"] == "health_authority_verification_certificate_invalid"
    assert _json(response)["error"] == "unable to validate diagnosis verification"
    assert api.stored() == {}
    assert (
        REGISTRY.get_sample_value(
            "exposure_keyserver_certificate_failures_total", {"reason": "lifetime"}
        )
        == (counted or 0) + 1
    )


def test_an_app_that_bypasses_verification_publishes_without_a_report_type(api: Api) -> None:
    phone = api.phone()
    body = phone.body(phone.keys(2), app_id=BYPASS_APP_ID, verificationPayload="")

    response = api.publish(body)

    assert response.status_code == 200, response.text
    assert {row.report_type for row in api.stored().values()} == {""}


def test_too_many_keys_and_no_keys_refuse_the_whole_request(api: Api) -> None:
    phone = api.phone()
    too_many = phone.keys(14) + phone.keys(14, days_back_from=1) + phone.keys(3, days_back_from=1)

    assert api.publish(phone.body(too_many)).status_code == 400
    response = api.publish(phone.body([]))

    assert response.status_code == 400
    assert _json(response)["code"] == "bad_request"
    assert _json(response)["error"].startswith("unable to read request data: ")
    assert api.stored() == {}


def test_some_invalid_keys_are_a_partial_failure_that_stores_the_rest(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(3)
    keys[1] = {**keys[1], "rollingPeriod": 0}

    response = api.publish(phone.body(keys))

    body = _json(response)
    assert response.status_code == 200
    assert body["code"] == "partial_failure"
    assert body["insertedExposures"] == 2
    assert body["error"].startswith("1 error occurred:\n\t* key 1 cannot be imported")
    assert len(api.stored()) == 2


def test_a_key_sent_twice_in_one_request_is_stored_once_with_a_plain_200(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(2)

    response = api.publish(phone.body([*keys, keys[0]]))

    body = _json(response)
    assert response.status_code == 200, body
    assert body["insertedExposures"] == 2
    assert "code" not in body
    assert "error" not in body
    assert set(api.stored()) == {base64.b64decode(k["key"]) for k in keys}


def _too_far_from_onset(api: Api) -> int:
    """A symptom onset 20 days ago: valid, but more than 14 days from every recent key."""
    return interval_number(utc_midnight(api.clock() - timedelta(days=20)))


def test_a_publish_whose_every_key_is_too_far_from_onset_answers_200_and_stores_nothing(
    api: Api,
) -> None:
    phone = api.phone()
    keys = phone.keys(2)

    response = api.publish(phone.body(keys, symptomOnsetInterval=_too_far_from_onset(api)))

    body = _json(response)
    assert response.status_code == 200, body
    # The reference's exact answer: warnings (and padding) only; iOS apps cannot handle a
    # partial failure here.
    assert set(body) == {"padding", "warnings"}
    assert body["warnings"] == [
        "key 0 symptom onset is too large, 19 > 14 - saving without this key",
        "key 1 symptom onset is too large, 18 > 14 - saving without this key",
    ]
    assert api.stored() == {}


def test_a_publish_with_nothing_to_store_hands_back_the_phones_revision_token(api: Api) -> None:
    phone = api.phone()
    token = _json(api.publish(phone.body(phone.keys(1), report_type="likely")))["revisionToken"]
    later = phone.keys(2, days_back_from=2)

    response = api.publish(
        phone.body(later, revisionToken=token, symptomOnsetInterval=_too_far_from_onset(api))
    )

    body = _json(response)
    assert response.status_code == 200, body
    assert body["revisionToken"]  # the keys of the first publish stay revisable
    assert "warnings" in body
    assert len(api.stored()) == 1


@pytest.mark.parametrize("token", ["!!not base64!!", "AAAA=A", "\x00"])
def test_a_revision_token_that_is_not_base64_counts_as_not_sent(api: Api, token: str) -> None:
    # As the reference: undecodable base64 is "proceeding without" a token.
    phone = api.phone()
    keys = phone.keys(3)
    assert api.publish(phone.body(keys)).status_code == 200

    response = api.publish(phone.body(keys, revisionToken=token))

    assert response.status_code == 400
    assert _json(response)["code"] == "missing_revision_token"


def test_re_sending_stored_keys_needs_the_revision_token(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(3)
    assert api.publish(phone.body(keys)).status_code == 200

    missing = api.publish(phone.body(keys))
    garbage = api.publish(phone.body(keys, revisionToken="AAAA"))

    assert missing.status_code == 400
    assert _json(missing)["code"] == "missing_revision_token"
    assert garbage.status_code == 400
    assert _json(garbage)["code"] == "invalid_revision_token"


def test_likely_keys_are_revised_to_confirmed_with_the_token(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(3)
    first = api.publish(phone.body(keys, report_type="likely"))
    token = _json(first)["revisionToken"]
    api.clock.advance(timedelta(hours=2))

    second = api.publish(phone.body(keys, report_type="confirmed", revisionToken=token))

    body = _json(second)
    assert second.status_code == 200, body
    assert "insertedExposures" not in body  # revisions are not counted as inserted
    assert body["revisionToken"]
    rows = api.stored().values()
    assert {row.report_type for row in rows} == {"likely"}
    assert {row.revised_report_type for row in rows} == {"confirmed"}
    assert {row.revised_at for row in rows} == {truncate(api.clock(), timedelta(hours=1))}


def test_a_token_from_another_phone_does_not_list_these_keys(api: Api) -> None:
    phone, other = api.phone(), api.phone()
    keys = phone.keys(2)
    api.publish(phone.body(keys, report_type="likely"))
    other_token = _json(api.publish(other.body(other.keys(2), report_type="likely")))[
        "revisionToken"
    ]

    response = api.publish(phone.body(keys, revisionToken=other_token))

    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_revision_token"


def test_confirmed_keys_cannot_become_likely(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(2)
    token = _json(api.publish(phone.body(keys)))["revisionToken"]

    response = api.publish(phone.body(keys, report_type="likely", revisionToken=token))

    assert response.status_code == 400
    assert _json(response)["code"] == "invalid_report_type_transition"


def test_a_revised_key_cannot_be_revised_again_to_something_else(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(2)
    token = _json(api.publish(phone.body(keys, report_type="likely")))["revisionToken"]
    token = _json(api.publish(phone.body(keys, report_type="confirmed", revisionToken=token)))[
        "revisionToken"
    ]

    response = api.publish(phone.body(keys, report_type="negative", revisionToken=token))

    assert response.status_code == 400
    assert _json(response)["code"] == "key_already_revised"


def test_a_stored_key_re_sent_with_another_interval_is_refused(api: Api) -> None:
    phone = api.phone()
    keys = phone.keys(1)
    token = _json(api.publish(phone.body(keys, report_type="likely")))["revisionToken"]
    moved = [{**keys[0], "rollingStartNumber": keys[0]["rollingStartNumber"] - 144}]

    response = api.publish(phone.body(moved, report_type="confirmed", revisionToken=token))

    assert response.status_code == 400
    assert _json(response)["code"] == "internal_error"


def test_maintenance_mode_answers_429_with_the_reference_body(
    database_url: str, tmp_path: Any
) -> None:
    from tests.functional.keyserver.conftest import make_api

    for api in make_api(database_url, tmp_path, maintenance_mode=True):
        phone = api.phone()
        response = api.publish(phone.body(phone.keys(1)))

        assert response.status_code == 429
        assert response.json() == {"error": "please try again later"}
        assert api.stored() == {}


def test_chaff_is_answered_like_a_publish_and_never_stored(api: Api) -> None:
    phone = api.phone()
    api.publish(phone.body(phone.keys(2)))

    response = api.publish(phone.body(phone.keys(2)), headers={"X-Chaff": "1"})

    assert response.status_code == 200
    assert set(_json(response)) == {"padding"}
    assert len(api.stored()) == 2


def test_negative_keys_are_not_published_on_their_own(api: Api) -> None:
    phone = api.phone()

    response = api.publish(phone.body(phone.keys(2), report_type="negative"))

    assert response.status_code == 200, response.text
    assert "insertedExposures" not in _json(response)
    assert _json(response)["revisionToken"]
    assert api.stored() == {}
