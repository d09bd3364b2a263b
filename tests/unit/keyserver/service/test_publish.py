"""The two ways a publish is stored: one statement for the common case, else the transaction.

The one-statement way (PostgreSQL) must store exactly what the transaction would, decline
(writing nothing) whenever the transaction has a decision to make, and never differ in
the answer a phone gets.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from crypto.sealing import Keyring
from exposure.db import make_session_factory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.tek import ReportType, interval_number, utc_midnight
from keyserver.models import Exposure
from keyserver.service.publish import (
    RevisionSecrets,
    StoreOutcome,
    store_new_publish,
    store_publish,
)
from keyserver.service.revision import decode_token
from keyserver.service.transform import ValidatedKey
from keyserver.settings import KeyserverSettings

NOW = datetime(2026, 11, 30, 10, 17, tzinfo=UTC)
SECRETS = RevisionSecrets(Keyring({"1": bytes(range(32))}, current="1"), b"aad")
SETTINGS = KeyserverSettings()
ON_POSTGRESQL = pytest.mark.parametrize(
    "engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)]
)


def _keys(count: int, *, report_type: str = ReportType.CONFIRMED) -> list[ValidatedKey]:
    midnight = interval_number(utc_midnight(NOW))
    return [
        ValidatedKey(
            key=secrets.token_bytes(16),
            interval_number=midnight - 144 * (day + 1),
            interval_count=144,
            transmission_risk=2,
            created_at=NOW.replace(minute=0),
            report_type=report_type,
            days_since_symptom_onset=day - 3,
            traveler=day % 2 == 0,
            regions=("VN",),
        )
        for day in range(count)
    ]


def _fast(engine: Engine, keys: Sequence[ValidatedKey], token: str = "") -> StoreOutcome | None:
    with autocommit(make_session_factory(engine)) as connection:
        return store_new_publish(
            connection,
            keys,
            revision_token=token,
            health_authority_id=None,
            secrets=SECRETS,
            settings=SETTINGS,
            now=NOW,
        )


def _slow(engine: Engine, keys: Sequence[ValidatedKey], token: str = "") -> StoreOutcome:
    with unit_of_work(make_session_factory(engine)) as session:
        return store_publish(
            session,
            keys,
            revision_token=token,
            health_authority_id=None,
            secrets=SECRETS,
            settings=SETTINGS,
            now=NOW,
        )


def _stored(engine: Engine) -> dict[bytes, tuple[object, ...]]:
    with Session(engine) as session:
        return {
            row.key: (
                row.transmission_risk,
                row.regions,
                row.traveler,
                row.interval_number,
                row.interval_count,
                row.created_at,
                row.origin,
                row.health_authority_id,
                row.report_type,
                row.days_since_symptom_onset,
                row.revised_report_type,
            )
            for row in session.scalars(select(Exposure))
        }


def _delete_all(engine: Engine) -> None:
    with unit_of_work(make_session_factory(engine)) as session:
        session.query(Exposure).delete()


@ON_POSTGRESQL
def test_new_keys_are_stored_in_one_statement_as_the_transaction_stores_them(
    engine: Engine,
) -> None:
    keys = _keys(14)
    fast = _fast(engine, keys)
    fast_rows = _stored(engine)
    _delete_all(engine)
    slow = _slow(engine, keys)

    assert fast is not None
    assert (
        (fast.inserted, fast.revised, fast.skipped)
        == (slow.inserted, slow.revised, 0)
        == (
            14,
            0,
            0,
        )
    )
    assert fast_rows == _stored(engine)
    listed = decode_token(SECRETS.keyring, SECRETS.aad, fast.revision_token)
    assert sorted(entry.key for entry in listed) == sorted(key.key for key in keys)


@ON_POSTGRESQL
def test_a_negative_test_is_checked_but_never_stored_on_its_own(engine: Engine) -> None:
    keys = _keys(3) + _keys(2, report_type=ReportType.NEGATIVE)
    outcome = _fast(engine, keys)

    assert outcome is not None
    assert outcome.inserted == 3
    assert set(_stored(engine)) == {key.key for key in keys[:3]}
    # The token still lists the negative keys, so a later revision can name them.
    listed = decode_token(SECRETS.keyring, SECRETS.aad, outcome.revision_token)
    assert {entry.key for entry in listed} == {key.key for key in keys}


@ON_POSTGRESQL
def test_a_stored_key_hands_the_publish_to_the_transaction_writing_nothing(
    engine: Engine,
) -> None:
    stored = _keys(1)
    assert _fast(engine, stored) is not None
    before = _stored(engine)

    assert _fast(engine, [*_keys(5), *stored]) is None
    assert _stored(engine) == before


@ON_POSTGRESQL
def test_a_stored_negative_key_hands_the_publish_to_the_transaction(engine: Engine) -> None:
    stored = _keys(1)
    _fast(engine, stored)
    negative = [ValidatedKey(**{**_as_dict(stored[0]), "report_type": ReportType.NEGATIVE})]

    assert _fast(engine, negative) is None


def _as_dict(key: ValidatedKey) -> dict[str, object]:
    return {name: getattr(key, name) for name in ValidatedKey.__slots__}


def test_a_phone_holding_a_token_is_always_the_transactions(engine: Engine) -> None:
    assert _fast(engine, _keys(2), token="anything") is None
    assert _stored(engine) == {}


def test_other_engines_always_use_the_transaction(engine: Engine) -> None:
    outcome = _fast(engine, _keys(2))
    if engine.dialect.name == "postgresql":
        assert outcome is not None
    else:
        assert outcome is None
        assert _stored(engine) == {}


@ON_POSTGRESQL
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    stored_count=st.integers(min_value=0, max_value=3),
    new_count=st.integers(min_value=0, max_value=5),
    negatives=st.integers(min_value=0, max_value=2),
)
def test_the_statement_declines_exactly_when_a_key_is_stored(
    engine: Engine, stored_count: int, new_count: int, negatives: int
) -> None:
    _delete_all(engine)
    stored = _keys(stored_count)
    if stored:
        _slow(engine, stored)
    before = _stored(engine)
    sent = [*_keys(new_count), *_keys(negatives, report_type=ReportType.NEGATIVE), *stored]

    outcome = _fast(engine, sent)

    if stored or not sent:
        assert outcome is None
        assert _stored(engine) == before
    else:
        assert outcome is not None
        assert outcome.inserted == new_count
        assert set(_stored(engine)) == {key.key for key in sent[:new_count]}


@ON_POSTGRESQL
def test_created_at_must_be_aware(engine: Engine) -> None:
    naive = [ValidatedKey(**{**_as_dict(_keys(1)[0]), "created_at": NOW.replace(tzinfo=None)})]
    with pytest.raises(ValueError, match="naive"):
        _fast(engine, naive)
    assert _stored(engine) == {}
