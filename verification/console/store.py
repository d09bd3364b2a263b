"""Every SQL statement on the console's tables (staff accounts and sessions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from exposure.retention.policy import Purger
from exposure.retention.store import batched_delete, oldest_of
from verification.console.models import StaffAccount, StaffSession
from verification.models import VerificationCode


def add_staff(session: Session, account: StaffAccount) -> StaffAccount:
    session.add(account)
    session.flush()
    return account


def staff_by_username(session: Session, realm_id: int, username: str) -> StaffAccount | None:
    return session.scalars(
        select(StaffAccount).where(
            StaffAccount.realm_id == realm_id, StaffAccount.username == username
        )
    ).one_or_none()


def staff_by_id(session: Session, staff_id: int) -> StaffAccount | None:
    return session.get(StaffAccount, staff_id)


def staff_by_id_for_update(session: Session, staff_id: int) -> StaffAccount | None:
    """The account, locked until the transaction ends (two changes of it run one by one)."""
    return session.get(StaffAccount, staff_id, with_for_update=True)


def list_staff(session: Session, realm_id: int | None = None) -> list[StaffAccount]:
    query = select(StaffAccount).order_by(StaffAccount.realm_id, StaffAccount.username)
    if realm_id is not None:
        query = query.where(StaffAccount.realm_id == realm_id)
    return list(session.scalars(query))


def add_session(session: Session, record: StaffSession) -> None:
    session.add(record)
    session.flush()


def live_session(
    session: Session, token_hmac: bytes, now: datetime
) -> tuple[StaffSession, StaffAccount] | None:
    """The unexpired session with this token hash and its account, if still enabled."""
    row = session.execute(
        select(StaffSession, StaffAccount)
        .join(StaffAccount, StaffAccount.id == StaffSession.staff_id)
        .where(
            StaffSession.token_hmac == token_hmac,
            StaffSession.expires_at > now,
            StaffAccount.disabled_at.is_(None),
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def delete_session(session: Session, token_hmac: bytes) -> None:
    session.execute(delete(StaffSession).where(StaffSession.token_hmac == token_hmac))


def delete_sessions_of(session: Session, staff_id: int) -> int:
    result = session.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))
    return int(getattr(result, "rowcount", 0) or 0)


# ---- what the retention purge deletes ----------------------------------------------------


def purge_expired_sessions(batch_size: int) -> Purger:
    """Deletes the sessions that expired before the cutoff."""
    return batched_delete("verification_staff_sessions", "expires_at < :cutoff", batch_size)


#: The expiry of the oldest session.
oldest_session = oldest_of(StaffSession.expires_at)


def purge_disabled_staff(batch_size: int) -> Purger:
    """Deletes the staff accounts disabled before the cutoff (their sessions went when
    they were disabled)."""
    return batched_delete(
        "verification_staff", "disabled_at IS NOT NULL AND disabled_at < :cutoff", batch_size
    )


#: When the account disabled longest ago was disabled.
oldest_disabled_staff = oldest_of(StaffAccount.disabled_at, StaffAccount.disabled_at.is_not(None))


# ---- a realm's daily counts (read-only, for its admin) ----------------------------------


def hourly_code_counts(
    session: Session, realm_id: int, *, since: datetime, now: datetime
) -> list[tuple[datetime, int, int, int]]:
    """(hour issued, issued, claimed, expired unclaimed) of the realm's codes issued since
    ``since``; codes keep only their hour of issue, so an hour is the finest there is."""
    claimed = case((VerificationCode.claimed.is_(True), 1), else_=0)
    expired = case(
        ((VerificationCode.claimed.is_(False)) & (VerificationCode.long_expires_at <= now), 1),
        else_=0,
    )
    rows = session.execute(
        select(
            VerificationCode.created_at,
            func.count(),
            func.coalesce(func.sum(claimed), 0),
            func.coalesce(func.sum(expired), 0),
        )
        .where(VerificationCode.realm_id == realm_id, VerificationCode.created_at >= since)
        .group_by(VerificationCode.created_at)
        .order_by(VerificationCode.created_at)
    ).all()
    return [(hour, int(issued), int(used), int(lapsed)) for hour, issued, used, lapsed in rows]
