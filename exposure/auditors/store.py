"""Queries on ``auditor_keys``: the only module that reads or writes that table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from exposure.auditors.models import AuditorKey


def add_key(session: Session, key: AuditorKey) -> AuditorKey:
    session.add(key)
    # The caller prints the new key's id.
    session.flush()
    return key


def enabled_key_matching(
    session: Session, service: str, digests: Sequence[bytes]
) -> AuditorKey | None:
    return session.scalar(
        select(AuditorKey).where(
            AuditorKey.service == service,
            AuditorKey.key_hmac.in_(digests),
            AuditorKey.disabled_at.is_(None),
        )
    )


def keys_of_service(session: Session, service: str) -> list[AuditorKey]:
    statement = select(AuditorKey).where(AuditorKey.service == service).order_by(AuditorKey.id)
    return list(session.scalars(statement))


def disable_key(session: Session, service: str, key_id: int, now: datetime) -> bool:
    """Disable a key that is enabled; return whether one was."""
    result = session.execute(
        update(AuditorKey)
        .where(
            AuditorKey.service == service,
            AuditorKey.id == key_id,
            AuditorKey.disabled_at.is_(None),
        )
        .values(disabled_at=now)
    )
    return int(getattr(result, "rowcount", 0)) > 0
