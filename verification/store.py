"""Every SQL query of the verification service. Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from verification.models import (
    ApiKey,
    AuditEntry,
    Realm,
    SigningKey,
    VerificationCode,
    VerificationToken,
)


def get_realm(session: Session, realm_id: int) -> Realm | None:
    return session.get(Realm, realm_id)


def get_realm_by_name(session: Session, name: str) -> Realm | None:
    return session.execute(select(Realm).where(Realm.name == name)).scalar_one_or_none()


def add_realm(session: Session, realm: Realm) -> Realm:
    session.add(realm)
    session.flush()  # the caller needs the generated id for keys and audit entries
    return realm


def add_api_key(session: Session, api_key: ApiKey) -> ApiKey:
    session.add(api_key)
    session.flush()  # the generated id goes into the audit entry
    return api_key


def get_api_key(session: Session, api_key_id: int) -> ApiKey | None:
    return session.get(ApiKey, api_key_id)


def find_api_key(session: Session, key_hmacs: Sequence[bytes]) -> ApiKey | None:
    """The API key whose stored HMAC is one of ``key_hmacs`` (one per live secret)."""
    return session.execute(
        select(ApiKey).where(ApiKey.key_hmac.in_(list(key_hmacs)))
    ).scalar_one_or_none()


def try_add_code(session: Session, code: VerificationCode) -> bool:
    """Insert ``code``; return False (and change nothing) if its code collides."""
    try:
        with session.begin_nested():
            session.add(code)
            session.flush()  # surfaces a unique-index collision here, inside the savepoint
    except IntegrityError:
        return False
    return True


def code_by_uuid(
    session: Session, realm_id: int, uuid: str, *, for_update: bool = False
) -> VerificationCode | None:
    query = select(VerificationCode).where(
        VerificationCode.realm_id == realm_id, VerificationCode.uuid == uuid
    )
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def code_for_claim(
    session: Session, realm_id: int, code_hmacs: Sequence[bytes]
) -> VerificationCode | None:
    """The code matching any candidate HMAC as short or long code, locked for update."""
    candidates = list(code_hmacs)
    return session.execute(
        select(VerificationCode)
        .where(
            VerificationCode.realm_id == realm_id,
            or_(
                VerificationCode.code_hmac.in_(candidates),
                VerificationCode.long_code_hmac.in_(candidates),
            ),
        )
        .with_for_update()
    ).scalar_one_or_none()


def add_token(session: Session, token: VerificationToken) -> None:
    session.add(token)


def claim_token(
    session: Session,
    *,
    realm_id: int,
    token_hmacs: Sequence[bytes],
    test_type: str,
    symptom_date: date | None,
    test_date: date | None,
    now: datetime,
) -> bool:
    """Mark the token used if it is unused, unexpired and matches; one atomic statement."""
    result = session.execute(
        update(VerificationToken)
        .where(
            VerificationToken.realm_id == realm_id,
            VerificationToken.token_hmac.in_(list(token_hmacs)),
            VerificationToken.used.is_(False),
            VerificationToken.expires_at > now,
            VerificationToken.test_type == test_type,
            VerificationToken.symptom_date.is_not_distinct_from(symptom_date),
            VerificationToken.test_date.is_not_distinct_from(test_date),
        )
        .values(used=True)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def add_signing_key(session: Session, key: SigningKey) -> SigningKey:
    session.add(key)
    session.flush()  # the id names the next key version
    return key


def signing_keys(
    session: Session, *, purpose: str, realm_id: int | None, now: datetime
) -> list[SigningKey]:
    """Keys of one purpose and realm that are not retired at ``now``, newest first."""
    return list(
        session.execute(
            select(SigningKey)
            .where(
                SigningKey.purpose == purpose,
                SigningKey.realm_id.is_(None)
                if realm_id is None
                else SigningKey.realm_id == realm_id,
                or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now),
            )
            .order_by(SigningKey.id.desc())
        ).scalars()
    )


def count_signing_keys(session: Session, *, purpose: str, realm_id: int | None) -> int:
    return session.execute(
        select(func.count(SigningKey.id)).where(
            SigningKey.purpose == purpose,
            SigningKey.realm_id.is_(None) if realm_id is None else SigningKey.realm_id == realm_id,
        )
    ).scalar_one()


def add_audit_entry(session: Session, entry: AuditEntry) -> None:
    session.add(entry)


def audit_entries(session: Session, *, realm_id: int | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if realm_id is not None:
        query = query.where(AuditEntry.realm_id == realm_id)
    return list(session.execute(query).scalars())
