"""Issuing codes and trading them for tokens, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from exposure.api.verification import TestType
from exposure.db import make_session_factory, unit_of_work
from tests.unit.verification.conftest import Clock
from verification import store
from verification.context import VerificationContext
from verification.errors import (
    CodeAlreadyClaimed,
    CodeExpired,
    CodeInvalid,
    CodeNotFound,
    InvalidDate,
    InvalidTestType,
    MissingDate,
    QuotaExceeded,
    TestTypeNotAccepted,
    UnsupportedTestType,
    UuidAlreadyExists,
)
from verification.models import VerificationCode, VerificationToken
from verification.service import codes, realms
from verification.service.codes import IssueRequest, accepted_test_types
from verification.service.realms import NewRealm


def _request(**changes: object) -> IssueRequest:
    values: dict[str, object] = {
        "test_type": "confirmed",
        "symptom_date": "2026-11-20",
        "test_date": "",
        "tz_offset_minutes": 0.0,
        "uuid": "",
        "external_issuer_id": "",
    }
    values.update(changes)
    return IssueRequest(**values)  # type: ignore[arg-type]


def _issue(
    session: Session, context: VerificationContext, realm: NewRealm, clock: Clock, **changes: object
) -> codes.IssuedCode:
    return codes.issue_code(
        session,
        context,
        realm=realm.realm,
        api_key=realm.admin_key.record,
        request=_request(**changes),
        now=clock(),
    )


def test_issue_returns_codes_of_the_realm_policy(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock)

    assert issued.code.isdigit()
    assert len(issued.code) == 8
    assert len(issued.long_code) == 16
    assert issued.long_code.isalnum()
    assert issued.long_code == issued.long_code.lower()
    assert issued.expires_at == clock() + timedelta(minutes=15)
    assert issued.long_expires_at == clock() + timedelta(hours=24)


def test_codes_are_stored_only_as_hmacs(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock)

    row = db_session.execute(select(VerificationCode)).scalar_one()
    assert row.code_hmac == context.hasher.digest(issued.code)
    assert row.long_code_hmac == context.hasher.digest(issued.long_code)
    assert issued.code.encode() not in bytes(row.code_hmac or b"")
    assert row.created_at == clock().replace(minute=0)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"test_type": "positive"}, InvalidTestType),
        ({"test_type": "user-report"}, UnsupportedTestType),
        ({"symptom_date": "", "test_date": ""}, MissingDate),
        ({"symptom_date": "2026-13-01"}, InvalidDate),
        ({"symptom_date": "20261120"}, InvalidDate),
        ({"symptom_date": "2026-11-26"}, InvalidDate),  # tomorrow
        ({"symptom_date": "2026-10-27"}, InvalidDate),  # 29 days ago
        ({"test_date": "2026-11-26", "symptom_date": ""}, InvalidDate),
    ],
)
def test_bad_issue_requests_are_refused_and_store_nothing(
    db_session: Session,
    context: VerificationContext,
    realm: NewRealm,
    clock: Clock,
    changes: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        _issue(db_session, context, realm, clock, **changes)

    assert db_session.execute(select(VerificationCode)).first() is None


def test_date_window_follows_the_persons_time_zone(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    clock.now = clock.now.replace(hour=23)
    # 23:00 UTC is already tomorrow at UTC+2.
    _issue(db_session, context, realm, clock, symptom_date="2026-11-26", tz_offset_minutes=120)
    oldest = (clock().date() - timedelta(days=28)).isoformat()
    _issue(db_session, context, realm, clock, symptom_date=oldest)


def test_uuid_is_an_idempotency_handle(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    handle = "4cdeb4a5-6a8e-4f3f-9b5e-7f3c0f1a2b3c"
    issued = _issue(db_session, context, realm, clock, uuid=handle)

    assert issued.uuid == handle
    with pytest.raises(UuidAlreadyExists):
        _issue(db_session, context, realm, clock, uuid=handle.upper())


def test_daily_quota(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    realm.realm.daily_issue_limit = 2
    _issue(db_session, context, realm, clock)
    _issue(db_session, context, realm, clock)

    with pytest.raises(QuotaExceeded):
        _issue(db_session, context, realm, clock)
    clock.advance(timedelta(days=1))
    _issue(db_session, context, realm, clock)


def test_verify_claims_once_and_signs_a_token(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock, test_date="2026-11-24")

    verified = codes.verify_code(
        db_session, context, realm=realm.realm, code=issued.code, accept=[], now=clock()
    )

    assert verified.test_type == "confirmed"
    assert verified.symptom_date == date(2026, 11, 20)
    claims = jwt.decode(verified.token, options={"verify_signature": False})
    assert claims["sub"] == "confirmed.2026-11-20.2026-11-24"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert len(claims["jti"]) == 128
    token_row = db_session.execute(select(VerificationToken)).scalar_one()
    assert token_row.token_hmac == context.hasher.digest(claims["jti"])
    with pytest.raises(CodeInvalid):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=issued.code, accept=[], now=clock()
        )
    with pytest.raises(CodeInvalid):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=issued.long_code, accept=[], now=clock()
        )


def test_unknown_and_used_codes_answer_alike(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    for code in ("00000000", "", "not a code", "x" * 500):
        with pytest.raises(CodeInvalid) as unknown:
            codes.verify_code(
                db_session, context, realm=realm.realm, code=code, accept=[], now=clock()
            )
        assert unknown.value.message == "the code is invalid or was already used"


def test_short_and_long_codes_expire_separately(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    first = _issue(db_session, context, realm, clock)
    second = _issue(db_session, context, realm, clock)
    clock.advance(timedelta(minutes=15))

    with pytest.raises(CodeExpired):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=first.code, accept=[], now=clock()
        )
    verified = codes.verify_code(
        db_session, context, realm=realm.realm, code=second.long_code, accept=[], now=clock()
    )
    assert verified.test_type == "confirmed"
    clock.advance(timedelta(hours=24))
    with pytest.raises(CodeExpired):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=first.long_code, accept=[], now=clock()
        )


def test_codes_do_not_cross_realms(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    from verification.service import realms

    other = realms.create_realm(db_session, context, name="other", now=clock(), actor="test")
    issued = _issue(db_session, context, realm, clock)

    with pytest.raises(CodeInvalid):
        codes.verify_code(
            db_session, context, realm=other.realm, code=issued.code, accept=[], now=clock()
        )


def test_test_types_match_in_any_case_and_are_stored_in_lower_case(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock, test_type="LIKELY")

    verified = codes.verify_code(
        db_session, context, realm=realm.realm, code=issued.code, accept=["Likely"], now=clock()
    )

    assert verified.test_type == "likely"
    assert codes.accepted_test_types(["NEGATIVE", "User-Report"]) == {
        "confirmed",
        "likely",
        "negative",
        "user-report",
    }


def test_accept_list_is_honoured(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock, test_type="likely")

    with pytest.raises(TestTypeNotAccepted):
        codes.verify_code(
            db_session,
            context,
            realm=realm.realm,
            code=issued.code,
            accept=["confirmed"],
            now=clock(),
        )
    with pytest.raises(InvalidTestType):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=issued.code, accept=["bogus"], now=clock()
        )
    verified = codes.verify_code(
        db_session, context, realm=realm.realm, code=issued.code, accept=["likely"], now=clock()
    )
    assert verified.test_type == "likely"


@given(accept=st.lists(st.sampled_from([t.value for t in TestType]), max_size=4))
def test_accept_hierarchy_property(accept: list[str]) -> None:
    expanded = accepted_test_types(accept)

    if not accept:
        assert expanded == {t.value for t in TestType}
        return
    assert set(accept) <= expanded
    if "negative" in accept:
        assert {"confirmed", "likely"} <= expanded
    if "likely" in accept:
        assert "confirmed" in expanded
    assert ("user-report" in expanded) == ("user-report" in accept)


def test_status_and_expire(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock)
    status = codes.code_status(db_session, realm=realm.realm, uuid=issued.uuid)
    assert status.claimed is False
    assert status.expires_at == issued.expires_at

    expired = codes.expire_code(
        db_session, realm=realm.realm, uuid=issued.uuid, now=clock(), actor="api_key:1"
    )

    assert expired.expires_at == clock()
    assert expired.long_expires_at == clock()
    with pytest.raises(CodeExpired):
        codes.verify_code(
            db_session, context, realm=realm.realm, code=issued.long_code, accept=[], now=clock()
        )
    entries = store.audit_entries(db_session, realm_id=realm.realm.id)
    assert entries[-1].action == "expired verification code"
    assert issued.code not in entries[-1].diff
    with pytest.raises(CodeNotFound):
        codes.code_status(db_session, realm=realm.realm, uuid="missing")


def test_expire_refuses_a_claimed_code(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    issued = _issue(db_session, context, realm, clock)
    codes.verify_code(
        db_session, context, realm=realm.realm, code=issued.code, accept=[], now=clock()
    )

    with pytest.raises(CodeAlreadyClaimed):
        codes.expire_code(
            db_session, realm=realm.realm, uuid=issued.uuid, now=clock(), actor="api_key:1"
        )


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_concurrent_claims_of_one_code_make_exactly_one_token(
    engine: Engine, context: VerificationContext, clock: Clock
) -> None:
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="t")
        issued = _issue(session, context, created, clock)
    threads = 6
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def claim(code: str) -> None:
        barrier.wait(timeout=10)
        try:
            with unit_of_work(factory) as session:
                codes.verify_code(
                    session, context, realm=created.realm, code=code, accept=[], now=clock()
                )
            outcomes.append("token")
        except CodeInvalid:
            outcomes.append("code_invalid")
        except BaseException as error:  # reported below, a thread cannot fail the test
            outcomes.append(repr(error))

    # Short and long code race too: they name the same code, which is claimed once.
    workers = [
        threading.Thread(target=claim, args=(issued.code if n % 2 else issued.long_code,))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert sorted(outcomes) == ["code_invalid"] * (threads - 1) + ["token"]
    with unit_of_work(factory) as session:
        assert session.execute(select(func.count(VerificationToken.id))).scalar_one() == 1
