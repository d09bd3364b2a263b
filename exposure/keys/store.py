"""Queries on ``sealed_keys``: the only module that reads or writes that table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from exposure.db.upsert import upsert_insert
from exposure.keys.models import SealedKey

__all__ = [
    "delete_key",
    "insert_key",
    "kek_ids_in_use",
    "key_by_name",
    "keys_of_purpose",
    "keys_of_service",
    "reseal_key",
    "retire_keys",
]


def insert_key(session: Session, row: SealedKey) -> bool:
    """Insert ``row`` unless its service already has a key of that name; return whether it did.

    Two processes creating the same key at once (two replicas on their first start) both
    succeed: one row is written and both then read it.
    """
    values = {
        column.name: getattr(row, column.key)
        for column in SealedKey.__table__.columns
        if column.name != "id"
    }
    statement = (
        upsert_insert(session, SealedKey.__table__)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["service", "name"])
        .returning(SealedKey.__table__.c.id)
    )
    return session.execute(statement).first() is not None


def key_by_name(session: Session, service: str, name: str) -> SealedKey | None:
    return session.scalar(
        select(SealedKey).where(SealedKey.service == service, SealedKey.name == name)
    )


def keys_of_purpose(session: Session, service: str, purpose: str) -> list[SealedKey]:
    """The service's keys of one purpose: those still current first, newest (last
    inserted) first; clocks may disagree, insertion order does not."""
    statement = (
        select(SealedKey)
        .where(SealedKey.service == service, SealedKey.purpose == purpose)
        .order_by(SealedKey.retired_at.is_not(None), SealedKey.id.desc())
    )
    return list(session.scalars(statement))


def keys_of_service(session: Session, service: str) -> list[SealedKey]:
    """Every key of the service, oldest first."""
    statement = select(SealedKey).where(SealedKey.service == service).order_by(SealedKey.id)
    return list(session.scalars(statement))


def kek_ids_in_use(session: Session, service: str) -> set[str]:
    """The ids of the KEKs that sealed at least one of the service's keys."""
    statement = select(SealedKey.kek_id).where(SealedKey.service == service).distinct()
    return set(session.scalars(statement))


def reseal_key(session: Session, key_id: int, *, kek_id: str, sealed: bytes) -> None:
    session.execute(
        update(SealedKey).where(SealedKey.id == key_id).values(kek_id=kek_id, sealed=sealed)
    )


def retire_keys(session: Session, key_ids: Sequence[int], retired_at: datetime) -> None:
    if key_ids:
        session.execute(
            update(SealedKey)
            .where(SealedKey.id.in_(key_ids), SealedKey.retired_at.is_(None))
            .values(retired_at=retired_at)
        )


def delete_key(session: Session, service: str, name: str) -> bool:
    """Delete one key for good; return whether it existed."""
    result = session.execute(
        delete(SealedKey).where(SealedKey.service == service, SealedKey.name == name)
    )
    return int(getattr(result, "rowcount", 0)) > 0
