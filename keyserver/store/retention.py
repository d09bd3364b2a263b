"""The key server's retention queries: what each purge deletes, and the oldest item left.

:mod:`keyserver.retention` declares the kinds of data and their deadlines and orders the
steps of a purge; the statements are here. Stored keys are purged per origin in batches
(:func:`~exposure.retention.store.batched_delete`, one transaction per batch), with the
table and conditions below as constants and the cutoff as a bound value. The functions that
take a session leave the transaction to their caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from exposure.db import SessionFactory
from exposure.retention.policy import OldestItem, Purger
from exposure.retention.store import batched_delete, oldest_of, oldest_value
from keyserver.models import (
    STATUS_PENDING,
    ExportBatch,
    ExportConfig,
    ExportFile,
    Exposure,
    HealthAuthorityKey,
    ImportFile,
    RevisionKey,
)


class StoredKeys(Enum):
    """The stored keys of one origin; each is its own kind in the retention log."""

    PUBLISHED = "published"
    REVISED = "revised"
    PADDING = "padding"
    IMPORTED = "imported"


_EXPOSURES = "keyserver_exposures"
# Each set as a SQL condition (the batched delete) and as ORM conditions (its oldest key);
# together the sets cover every row exactly once.
_KEY_CONDITIONS: dict[StoredKeys, tuple[str, tuple[ColumnElement[bool], ...]]] = {
    StoredKeys.PUBLISHED: (
        "origin = 'publish' AND revised_at IS NULL",
        (Exposure.origin == "publish", Exposure.revised_at.is_(None)),
    ),
    StoredKeys.REVISED: ("revised_at IS NOT NULL", (Exposure.revised_at.is_not(None),)),
    StoredKeys.PADDING: (
        "origin = 'padding' AND revised_at IS NULL",
        (Exposure.origin == "padding", Exposure.revised_at.is_(None)),
    ),
    StoredKeys.IMPORTED: (
        "origin = 'import' AND revised_at IS NULL",
        (Exposure.origin == "import", Exposure.revised_at.is_(None)),
    ),
}


def purge_keys(keys: StoredKeys, batch_size: int) -> Purger:
    """Deletes the keys of the set whose ``created_at`` is before the cutoff."""
    condition, _ = _KEY_CONDITIONS[keys]
    return batched_delete(_EXPOSURES, f"created_at < :cutoff AND {condition}", batch_size)


def oldest_key(keys: StoredKeys) -> OldestItem:
    """The ``created_at`` of the set's oldest key."""
    _, conditions = _KEY_CONDITIONS[keys]
    return oldest_of(Exposure.created_at, *conditions)


# ---- export files ------------------------------------------------------------------------


def _expired_batches(cutoff: datetime, now: datetime) -> ColumnElement[bool]:
    # A batch a worker is still writing (pending under a live lease) is left for next time.
    return (ExportBatch.start_at < cutoff) & (
        (ExportBatch.status != STATUS_PENDING)
        | ExportBatch.lease_expires_at.is_(None)
        | (ExportBatch.lease_expires_at < now)
    )


def expired_batch_ids(session: Session, cutoff: datetime, now: datetime) -> list[int]:
    """The batches that started before ``cutoff`` and no worker is writing at ``now``."""
    return list(session.scalars(select(ExportBatch.id).where(_expired_batches(cutoff, now))))


def configs_of_expired_batches(
    session: Session, cutoff: datetime, now: datetime
) -> list[tuple[int, str]]:
    """(id, filename root) of the configs that have such a batch, by id."""
    rows = session.execute(
        select(ExportConfig.id, ExportConfig.filename_root)
        .where(
            ExportConfig.id.in_(select(ExportBatch.config_id).where(_expired_batches(cutoff, now)))
        )
        .order_by(ExportConfig.id)
    ).all()
    return [(config_id, filename_root) for config_id, filename_root in rows]


def batch_file_names(session: Session, batch_id: int) -> list[str]:
    return list(session.scalars(select(ExportFile.filename).where(ExportFile.batch_id == batch_id)))


def delete_batch(session: Session, batch_id: int) -> int:
    """Delete the batch and its file rows; return how many rows went."""
    files = session.execute(delete(ExportFile).where(ExportFile.batch_id == batch_id))
    batches = session.execute(delete(ExportBatch).where(ExportBatch.id == batch_id))
    return int(getattr(files, "rowcount", 0)) + int(getattr(batches, "rowcount", 0))


def oldest_export_batch(sessions: SessionFactory, _now: datetime) -> datetime | None:
    """The start of the oldest batch window."""
    return oldest_value(sessions, ExportBatch.start_at)


# ---- revision keys -----------------------------------------------------------------------


def revision_keys_newest_first(session: Session) -> list[RevisionKey]:
    """Every revision key, destroyed ones included, newest (``created_at``, then id) first."""
    return list(
        session.scalars(
            select(RevisionKey).order_by(RevisionKey.created_at.desc(), RevisionKey.id.desc())
        )
    )


def delete_revision_keys(session: Session, ids: Sequence[int]) -> int:
    """Delete the revision keys with these ids; return how many went."""
    result = session.execute(delete(RevisionKey).where(RevisionKey.id.in_(ids)))
    return int(getattr(result, "rowcount", 0))


# ---- health-authority keys ---------------------------------------------------------------


def purge_revoked_authority_keys(batch_size: int) -> Purger:
    """Deletes the health-authority keys whose validity ended before the cutoff."""
    return batched_delete(
        "keyserver_health_authority_keys",
        "valid_until IS NOT NULL AND valid_until < :cutoff",
        batch_size,
    )


def oldest_revoked_authority_key(sessions: SessionFactory, now: datetime) -> datetime | None:
    """The end of validity of the oldest key past it at ``now``."""
    # Keys still valid are in use; only those past their validity are aging.
    return oldest_value(
        sessions, HealthAuthorityKey.valid_until, HealthAuthorityKey.valid_until < now
    )


# ---- import records ----------------------------------------------------------------------


def purge_import_records(batch_size: int) -> Purger:
    """Deletes the records of peer files handled before the cutoff."""
    return batched_delete("keyserver_import_files", "created_at < :cutoff", batch_size)


def oldest_import_record(sessions: SessionFactory, _now: datetime) -> datetime | None:
    return oldest_value(sessions, ImportFile.created_at)
