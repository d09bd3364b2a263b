"""The key server's queries on import sources, their keys and the records of imported files.

Nothing here commits. The record of a file is inserted in the transaction that stores its
keys, so a file is either imported with its record or not at all; ``(source, filename)`` is
unique, so two importers that raced on one file cannot both commit it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from keyserver.models import (
    IMPORT_IMPORTED,
    Exposure,
    ImportFile,
    ImportSource,
    ImportSourceKey,
    Mirror,
)


def import_sources(session: Session) -> list[ImportSource]:
    """Every source, by id."""
    return list(session.scalars(select(ImportSource).order_by(ImportSource.id)))


def active_import_sources(session: Session, now: datetime) -> list[ImportSource]:
    """The sources valid at ``now``, by id."""
    return list(
        session.scalars(
            select(ImportSource)
            .where(
                ImportSource.valid_from <= now,
                ImportSource.valid_until.is_(None) | (ImportSource.valid_until > now),
            )
            .order_by(ImportSource.id)
        )
    )


def import_source_by_id(session: Session, source_id: int) -> ImportSource | None:
    return session.get(ImportSource, source_id)


def import_source_by_name(session: Session, name: str) -> ImportSource | None:
    return session.scalars(select(ImportSource).where(ImportSource.name == name)).first()


def import_sources_by_name(session: Session, names: Sequence[str]) -> dict[str, ImportSource]:
    if not names:
        return {}
    rows = session.scalars(select(ImportSource).where(ImportSource.name.in_(names)))
    return {row.name: row for row in rows}


def import_sources_by_id(session: Session, ids: Sequence[int]) -> dict[int, ImportSource]:
    if not ids:
        return {}
    rows = session.scalars(select(ImportSource).where(ImportSource.id.in_(ids)))
    return {row.id: row for row in rows}


def add_import_source(
    session: Session, source: ImportSource, keys: Sequence[ImportSourceKey]
) -> ImportSource:
    session.add(source)
    session.flush()
    for key in keys:
        key.source_id = source.id
    session.add_all(keys)
    session.flush()
    return source


def import_source_keys(session: Session, source_id: int) -> list[ImportSourceKey]:
    """The source's public keys, by id."""
    return list(
        session.scalars(
            select(ImportSourceKey)
            .where(ImportSourceKey.source_id == source_id)
            .order_by(ImportSourceKey.id)
        )
    )


def handled_file_names(session: Session, source_id: int) -> set[str]:
    """The names of the source's files already imported or refused."""
    statement = select(ImportFile.filename).where(ImportFile.source_id == source_id)
    return set(session.scalars(statement))


def latest_imported_name(session: Session, source_id: int) -> str | None:
    """The greatest name of a file of the source that was imported (names sort by time)."""
    return session.scalar(
        select(func.max(ImportFile.filename)).where(
            ImportFile.source_id == source_id, ImportFile.status == IMPORT_IMPORTED
        )
    )


def add_import_file(session: Session, record: ImportFile) -> ImportFile:
    """Insert the record of a handled file (flushed, so the keys can name its id)."""
    session.add(record)
    session.flush()
    return record


def import_files(session: Session, source_id: int, limit: int) -> list[ImportFile]:
    """The source's most recent records, newest first."""
    return list(
        session.scalars(
            select(ImportFile)
            .where(ImportFile.source_id == source_id)
            .order_by(ImportFile.created_at.desc(), ImportFile.id.desc())
            .limit(limit)
        )
    )


def import_file_counts(session: Session, source_id: int) -> dict[tuple[str, str | None], int]:
    """(status, reason) → how many records of the source."""
    rows = session.execute(
        select(ImportFile.status, ImportFile.reason, func.count())
        .where(ImportFile.source_id == source_id)
        .group_by(ImportFile.status, ImportFile.reason)
    ).all()
    return {(status, reason): int(count) for status, reason, count in rows}


def imported_key_count(session: Session, source_id: int) -> int:
    """How many stored keys came from the source."""
    return int(
        session.scalar(
            select(func.count()).select_from(Exposure).where(Exposure.import_source_id == source_id)
        )
        or 0
    )


def delete_imported_keys(session: Session, source_id: int) -> int:
    """Delete every stored key that came from the source; return how many went."""
    result = session.execute(delete(Exposure).where(Exposure.import_source_id == source_id))
    return int(getattr(result, "rowcount", 0))


def delete_import_files(session: Session, source_id: int) -> int:
    """Delete the source's import records; return how many went."""
    result = session.execute(delete(ImportFile).where(ImportFile.source_id == source_id))
    return int(getattr(result, "rowcount", 0))


# ---- mirrors -----------------------------------------------------------------------------


def mirrors(session: Session) -> list[Mirror]:
    """Every mirror, by id."""
    return list(session.scalars(select(Mirror).order_by(Mirror.id)))


def active_mirrors(session: Session, now: datetime) -> list[Mirror]:
    return list(
        session.scalars(
            select(Mirror)
            .where(Mirror.valid_until.is_(None) | (Mirror.valid_until > now))
            .order_by(Mirror.id)
        )
    )


def mirror_by_id(session: Session, mirror_id: int) -> Mirror | None:
    return session.get(Mirror, mirror_id)


def mirror_by_name(session: Session, name: str) -> Mirror | None:
    return session.scalars(select(Mirror).where(Mirror.name == name)).first()


def mirror_by_root(session: Session, mirror_root: str) -> Mirror | None:
    return session.scalars(
        select(Mirror).where(func.lower(Mirror.mirror_root) == mirror_root.lower())
    ).first()


def add_mirror(session: Session, mirror: Mirror) -> Mirror:
    session.add(mirror)
    session.flush()
    return mirror
