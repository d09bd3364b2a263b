"""Realms and API keys: keys shown once, stored hashed, checked by kind, audited."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.unit.verification.conftest import Clock
from verification import store
from verification.context import VerificationContext
from verification.errors import ApiKeyNotFound, InvalidRealmPolicy, RealmNotFound, Unauthorized
from verification.models import ApiKey
from verification.service import realms
from verification.service.realms import ApiKeyKind, NewRealm, RealmExists


def test_new_realm_has_defaults_and_two_keys(realm: NewRealm) -> None:
    assert realm.realm.short_code_length == 8
    assert realm.realm.short_code_minutes == 15
    assert realm.realm.long_code_length == 16
    assert realm.realm.long_code_minutes == 24 * 60
    assert realm.realm.certificate_audience == "exposure-notifications-server"
    assert realm.realm.certificate_lifetime_seconds == 900
    assert realm.admin_key.plaintext != realm.device_key.plaintext


def test_api_keys_are_stored_only_as_hashes(db_session: Session, realm: NewRealm) -> None:
    rows = db_session.execute(select(ApiKey)).scalars().all()

    for row in rows:
        stored = bytes(row.key_hmac)
        assert realm.admin_key.plaintext.encode() not in stored
        assert len(stored) == 64
        assert len(row.preview) == 6
    assert {row.preview for row in rows} == {
        realm.admin_key.plaintext[:6],
        realm.device_key.plaintext[:6],
    }


def test_authenticate_checks_kind(
    db_session: Session, context: VerificationContext, realm: NewRealm
) -> None:
    record, found = realms.authenticate(
        db_session, context, api_key=realm.admin_key.plaintext, kind=ApiKeyKind.ADMIN
    )
    assert found.id == realm.realm.id
    assert record.kind == "admin"

    with pytest.raises(Unauthorized):
        realms.authenticate(
            db_session, context, api_key=realm.admin_key.plaintext, kind=ApiKeyKind.DEVICE
        )
    for wrong in ("", "x" * 300, realm.admin_key.plaintext + "x"):
        with pytest.raises(Unauthorized):
            realms.authenticate(db_session, context, api_key=wrong, kind=ApiKeyKind.ADMIN)


def test_duplicate_realm_is_refused(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    with pytest.raises(RealmExists):
        realms.create_realm(db_session, context, name=realm.realm.name, now=clock(), actor="test")


def test_find_realm_by_id_or_name(db_session: Session, realm: NewRealm) -> None:
    assert realms.find_realm(db_session, str(realm.realm.id)).name == "lab"
    assert realms.find_realm(db_session, "lab").id == realm.realm.id
    with pytest.raises(RealmNotFound):
        realms.find_realm(db_session, "nope")


@pytest.mark.parametrize(
    "asked",
    ["²", "2147483648", "99999999999999999999", "\u0000", "lab\u0000", "lab\n", "\u009b"],
)
def test_find_realm_sends_sql_nothing_it_would_refuse(
    db_session: Session, realm: NewRealm, asked: str
) -> None:
    with pytest.raises(RealmNotFound) as caught:
        realms.find_realm(db_session, asked)

    assert caught.value.message == "no such realm"  # what was asked for is never repeated


def test_realm_and_key_creation_is_audited(db_session: Session, realm: NewRealm) -> None:
    actions = [entry.action for entry in store.audit_entries(db_session, realm_id=realm.realm.id)]

    assert actions == ["created realm", "created admin API key", "created device API key"]
    for entry in store.audit_entries(db_session):
        assert realm.admin_key.plaintext not in entry.diff
        assert realm.device_key.plaintext not in entry.diff


@pytest.mark.parametrize(
    "policy",
    [
        realms.RealmPolicy(short_code_length=5),
        realms.RealmPolicy(long_code_length=11),
        realms.RealmPolicy(short_code_minutes=121),
        realms.RealmPolicy(long_code_minutes=10, short_code_minutes=15),
        realms.RealmPolicy(certificate_lifetime_seconds=7200),
        realms.RealmPolicy(daily_issue_limit=0),
        realms.RealmPolicy(certificate_audience=""),
    ],
)
def test_unsafe_realm_policies_are_refused(
    db_session: Session, context: VerificationContext, clock: Clock, policy: realms.RealmPolicy
) -> None:
    with pytest.raises(InvalidRealmPolicy):
        realms.create_realm(db_session, context, name="x", now=clock(), actor="t", policy=policy)

    assert store.get_realm_by_name(db_session, "x") is None


def test_custom_policy_is_kept(
    db_session: Session, context: VerificationContext, clock: Clock
) -> None:
    policy = realms.RealmPolicy(short_code_length=10, allow_user_report=True, daily_issue_limit=5)

    created = realms.create_realm(
        db_session, context, name="custom", now=clock(), actor="t", policy=policy
    )

    assert created.realm.short_code_length == 10
    assert "user-report" in created.realm.allowed_test_types
    assert created.realm.daily_issue_limit == 5


def test_disabled_key_no_longer_authenticates(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    realms.disable_api_key(
        db_session, api_key_id=realm.device_key.record.id, now=clock(), actor="test"
    )

    with pytest.raises(Unauthorized):
        realms.authenticate(
            db_session, context, api_key=realm.device_key.plaintext, kind=ApiKeyKind.DEVICE
        )
    actions = [entry.action for entry in store.audit_entries(db_session)]
    assert actions[-1] == "disabled device API key"
    with pytest.raises(ApiKeyNotFound):
        realms.disable_api_key(db_session, api_key_id=9999, now=clock(), actor="test")


def test_first_realm_creates_the_token_key_once(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    from verification.service import signing_keys

    realms.create_realm(db_session, context, name="second", now=clock(), actor="t")

    keys = store.signing_keys(db_session, purpose=signing_keys.TOKEN, realm_id=None, now=clock())
    assert [key.kid for key in keys] == ["t1"]


def test_policy_of_a_realm_is_the_policy_it_was_created_with(
    db_session: Session, context: VerificationContext, clock: Clock
) -> None:
    policy = realms.RealmPolicy(
        short_code_length=10, allow_user_report=True, daily_issue_limit=5, require_date=False
    )
    created = realms.create_realm(
        db_session, context, name="custom", now=clock(), actor="t", policy=policy
    )

    assert realms.policy_of(created.realm) == dataclasses.replace(
        policy, certificate_issuer="exposure-verification/custom"
    )


def test_code_limits_change_within_bounds_and_are_audited(
    db_session: Session, realm: NewRealm, clock: Clock
) -> None:
    changed = realms.change_code_limits(
        db_session,
        realm.realm,
        short_code_minutes=30,
        long_code_minutes=24 * 60,
        daily_issue_limit=100,
        now=clock(),
        actor="staff:1",
    )
    again = realms.change_code_limits(
        db_session,
        realm.realm,
        short_code_minutes=30,
        long_code_minutes=24 * 60,
        daily_issue_limit=100,
        now=clock(),
        actor="staff:1",
    )

    assert (changed, again) == (True, False)
    entries = [
        entry
        for entry in store.audit_entries(db_session, realm_id=realm.realm.id)
        if entry.action == "changed realm code limits"
    ]
    assert [(entry.actor, entry.diff) for entry in entries] == [
        ("staff:1", "short_code_minutes=15->30 daily_issue_limit=20000->100")
    ]


@pytest.mark.parametrize(
    ("short", "long", "daily"),
    [(0, 60, 10), (121, 24 * 60, 10), (30, 20, 10), (15, 24 * 60 + 1, 10), (15, 60, 0)],
)
def test_code_limits_out_of_bounds_change_nothing(
    db_session: Session, realm: NewRealm, clock: Clock, short: int, long: int, daily: int
) -> None:
    with pytest.raises(InvalidRealmPolicy):
        realms.change_code_limits(
            db_session,
            realm.realm,
            short_code_minutes=short,
            long_code_minutes=long,
            daily_issue_limit=daily,
            now=clock(),
            actor="t",
        )

    stored = (realm.realm.short_code_minutes, realm.realm.long_code_minutes)
    assert stored == (15, 24 * 60)
    assert realm.realm.daily_issue_limit == 20_000
