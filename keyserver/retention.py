"""The key server's retention declarations and the purges that enforce them.

Keys are kept 14 days by default, the time a phone keeps its own keys and looks back for
exposures (google-keyserver.md §5; CWA keeps 14 days too): an older key can no longer tell
anyone anything. Each origin (published, revised, export padding, imported) is its own kind
with its own entry in the retention log, so an auditor sees each counted. Export files
follow their keys: index.txt stops listing them first, then their blobs are deleted, then
their rows, so no phone is ever sent to a file that is gone and no row outlives its blob
unnoticed. Revision keys are destroyed 15 days after a newer key took over (the longest a
revision token can still be used), revoked health-authority keys 30 days after their
validity ended. Configuration (authorities, apps, export configs, signing-key infos) holds
no personal data and stays until an operator removes it.

Example::

    policies = keyserver_policies(context, RetentionSettings())
    report = run_purge(service="keyserver", policies=policies, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise

from sqlalchemy import ColumnElement, delete, select

from exposure.clock import utc_now
from exposure.db import SessionFactory, unit_of_work
from exposure.db.lease import new_holder_token
from exposure.retention.core import purge_job_name
from exposure.retention.policy import Action, Deadline, PurgeResult, RetentionPolicy
from exposure.retention.settings import KEYS, REVOKED_AUTHORITY_KEYS, RetentionSettings
from exposure.retention.store import batched_delete, oldest_of, oldest_value
from exposure.settings import Service
from keyserver.context import KeyserverContext
from keyserver.export.batcher import STATUS_PENDING
from keyserver.export.worker import rewrite_index
from keyserver.models import (
    ExportBatch,
    ExportConfig,
    ExportFile,
    Exposure,
    HealthAuthorityKey,
    RevisionKey,
)

__all__ = ["EXPORT_FILES", "REVISION_KEYS", "keyserver_policies"]

#: Export files: ``EXPOSURE_KEYSERVER_EXPORT_RETENTION`` (also what index.txt lists).
EXPORT_FILES = Deadline(default=timedelta(days=14), floor=timedelta(days=10), ceiling=KEYS.ceiling)
#: Revision keys: ``EXPOSURE_KEYSERVER_REVISION_KEY_DESTROY_AFTER``.
REVISION_KEYS = Deadline(
    default=timedelta(days=15), floor=timedelta(days=15), ceiling=timedelta(days=60)
)

_TABLE = "keyserver_exposures"
# Conditions of each origin; together they cover every row exactly once.
_PUBLISHED = "origin = 'publish' AND revised_at IS NULL"
_REVISED = "revised_at IS NOT NULL"
_PADDING = "origin = 'padding' AND revised_at IS NULL"
_IMPORTED = "origin = 'import' AND revised_at IS NULL"


def _keys_policy(
    *,
    kind: str,
    condition: str,
    orm_conditions: Sequence[ColumnElement[bool]],
    purpose: str,
    deadline: timedelta,
    setting: str,
    batch_size: int,
) -> RetentionPolicy:
    return RetentionPolicy(
        kind=kind,
        service=Service.KEYSERVER,
        tables=(_TABLE,),
        purpose=purpose,
        measured_from="created_at (the hour the key was stored)",
        action=Action.DELETE,
        bounds=KEYS,
        deadline=deadline,
        setting=setting,
        enforced_by=purge_job_name(Service.KEYSERVER),
        purge=batched_delete(_TABLE, f"created_at < :cutoff AND {condition}", batch_size),
        oldest=oldest_of(Exposure.created_at, *orm_conditions),
    )


def _purge_export_files(
    context: KeyserverContext, sessions: SessionFactory, cutoff: datetime, now: datetime
) -> PurgeResult:
    """Unlist, then delete the blobs, then the rows of batches that started before cutoff.

    A batch a worker is still writing (pending under a live lease) is left for next time.
    """
    expired = (ExportBatch.start_at < cutoff) & (
        (ExportBatch.status != STATUS_PENDING)
        | ExportBatch.lease_expires_at.is_(None)
        | (ExportBatch.lease_expires_at < now)
    )
    with unit_of_work(sessions) as session:
        batch_ids = list(session.scalars(select(ExportBatch.id).where(expired)))
        configs = session.execute(
            select(ExportConfig.id, ExportConfig.filename_root)
            .where(ExportConfig.id.in_(select(ExportBatch.config_id).where(expired)))
            .order_by(ExportConfig.id)
        ).all()
    if not batch_ids:
        return PurgeResult(rows=0)
    holder = new_holder_token()
    for config_id, filename_root in configs:
        rewrite_index(
            sessions,
            context.export_store,
            config_id=config_id,
            filename_root=filename_root,
            since=cutoff,
            holder=holder,
            # The lease is timed by the real clock, like every job lease: a drill run "in
            # the future" must not hold the index for days of real time.
            clock=utc_now,
        )
    rows = blobs = 0
    for batch_id in batch_ids:
        with unit_of_work(sessions) as session:
            names = list(
                session.scalars(select(ExportFile.filename).where(ExportFile.batch_id == batch_id))
            )
        for name in names:
            context.export_store.delete(name)
            blobs += 1
        # Rows go only once every blob is gone: a failed delete is retried next run.
        with unit_of_work(sessions) as session:
            files = session.execute(delete(ExportFile).where(ExportFile.batch_id == batch_id))
            batches = session.execute(delete(ExportBatch).where(ExportBatch.id == batch_id))
            rows += int(getattr(files, "rowcount", 0)) + int(getattr(batches, "rowcount", 0))
    return PurgeResult(rows=rows, blobs=blobs)


def _oldest_revoked_key(sessions: SessionFactory, now: datetime) -> datetime | None:
    # Keys still valid are in use; only those past their validity are aging.
    return oldest_value(
        sessions, HealthAuthorityKey.valid_until, HealthAuthorityKey.valid_until < now
    )


def _superseded(sessions: SessionFactory) -> list[tuple[RevisionKey, datetime]]:
    """Every revision key that is not the newest, with when its successor took over."""
    with sessions() as session:
        rows = list(
            session.scalars(
                select(RevisionKey).order_by(RevisionKey.created_at.desc(), RevisionKey.id.desc())
            )
        )
    return [(older, newer.created_at) for newer, older in pairwise(rows)]


def _purge_revision_keys(sessions: SessionFactory, cutoff: datetime, _now: datetime) -> PurgeResult:
    """Delete keys superseded before ``cutoff``: their tokens can no longer be used.

    The rotation job erases the key material at the same deadline; deleting the row too
    leaves nothing of a key that can no longer revise anything.
    """
    expired = [key.id for key, took_over in _superseded(sessions) if took_over < cutoff]
    if not expired:
        return PurgeResult(rows=0)
    with unit_of_work(sessions) as session:
        result = session.execute(delete(RevisionKey).where(RevisionKey.id.in_(expired)))
    return PurgeResult(rows=int(getattr(result, "rowcount", 0)))


def _oldest_superseded(sessions: SessionFactory, _now: datetime) -> datetime | None:
    times = [took_over for _key, took_over in _superseded(sessions)]
    return min(times, default=None)


def keyserver_policies(
    context: KeyserverContext, settings: RetentionSettings
) -> list[RetentionPolicy]:
    """Every declaration of the key server's tables, with deadlines from settings."""
    batch = settings.batch_size
    job = purge_job_name(Service.KEYSERVER)

    def purge_exports(sessions: SessionFactory, cutoff: datetime, now: datetime) -> PurgeResult:
        return _purge_export_files(context, sessions, cutoff, now)

    return [
        _keys_policy(
            kind="exposure-keys",
            condition=_PUBLISHED,
            orm_conditions=(Exposure.origin == "publish", Exposure.revised_at.is_(None)),
            purpose=(
                "Published Temporary Exposure Keys of people verified positive, exported so "
                "phones can find exposures; useless once older than a phone's 14-day window."
            ),
            deadline=settings.exposure_keys,
            setting="EXPOSURE_RETENTION_EXPOSURE_KEYS",
            batch_size=batch,
        ),
        _keys_policy(
            kind="revised-keys",
            condition=_REVISED,
            orm_conditions=(Exposure.revised_at.is_not(None),),
            purpose="Keys whose report type was revised (e.g. likely to confirmed); as above.",
            deadline=settings.revised_keys,
            setting="EXPOSURE_RETENTION_REVISED_KEYS",
            batch_size=batch,
        ),
        _keys_policy(
            kind="padding-keys",
            condition=_PADDING,
            orm_conditions=(Exposure.origin == "padding", Exposure.revised_at.is_(None)),
            purpose=(
                "Random keys that pad small export batches so the number of positives per "
                "window is hidden; stored so a re-run writes the same file."
            ),
            deadline=settings.padding_keys,
            setting="EXPOSURE_RETENTION_PADDING_KEYS",
            batch_size=batch,
        ),
        _keys_policy(
            kind="imported-keys",
            condition=_IMPORTED,
            orm_conditions=(Exposure.origin == "import", Exposure.revised_at.is_(None)),
            purpose="Keys imported from the older systems' exports, published like our own.",
            deadline=settings.imported_keys,
            setting="EXPOSURE_RETENTION_IMPORTED_KEYS",
            batch_size=batch,
        ),
        RetentionPolicy(
            kind="export-files",
            service=Service.KEYSERVER,
            tables=("keyserver_export_batches", "keyserver_export_files"),
            purpose="Signed key batches phones download, and the record of what was written.",
            measured_from="the batch window's start_at",
            action=Action.DELETE,
            bounds=EXPORT_FILES,
            deadline=context.settings.export_retention,
            setting="EXPOSURE_KEYSERVER_EXPORT_RETENTION",
            enforced_by=f"{job} (index.txt rewritten first, then blobs, then rows)",
            purge=purge_exports,
            oldest=oldest_of(ExportBatch.start_at),
        ),
        RetentionPolicy(
            kind="revision-keys",
            service=Service.KEYSERVER,
            tables=("keyserver_revision_keys",),
            purpose=(
                "Seal revision tokens so a phone can later revise its own keys; no personal data."
            ),
            measured_from="when the next newer key took over",
            action=Action.DESTROY,
            bounds=REVISION_KEYS,
            deadline=context.settings.revision_key_destroy_after,
            setting="EXPOSURE_KEYSERVER_REVISION_KEY_DESTROY_AFTER",
            enforced_by=f"revision-key-rotation erases the key, {job} deletes the row",
            purge=_purge_revision_keys,
            oldest=_oldest_superseded,
        ),
        RetentionPolicy(
            kind="revoked-health-authority-keys",
            service=Service.KEYSERVER,
            tables=("keyserver_health_authority_keys",),
            purpose="Public keys that verify certificates of trusted health authorities.",
            measured_from="valid_until (revocation or end of validity)",
            action=Action.DELETE,
            bounds=REVOKED_AUTHORITY_KEYS,
            deadline=settings.revoked_authority_keys,
            setting="EXPOSURE_RETENTION_REVOKED_AUTHORITY_KEYS",
            enforced_by=job,
            purge=batched_delete(
                "keyserver_health_authority_keys",
                "valid_until IS NOT NULL AND valid_until < :cutoff",
                batch,
            ),
            oldest=_oldest_revoked_key,
        ),
        _configuration(
            "health-authorities",
            ("keyserver_health_authorities",),
            "Trusted certificate issuers (name, issuer, audience, JWKS URL).",
            "exposure admin health-authority",
        ),
        _configuration(
            "authorized-apps",
            ("keyserver_authorized_apps", "keyserver_authorized_app_health_authorities"),
            "GAEN apps allowed to publish, their regions and accepted authorities.",
            "exposure admin app",
        ),
        _configuration(
            "export-configs",
            ("keyserver_export_configs", "keyserver_signature_infos"),
            "What to export where, and the public facts of the export signing keys.",
            "exposure admin export-config / signing-key",
        ),
    ]


def _configuration(
    kind: str, tables: tuple[str, ...], purpose: str, command: str
) -> RetentionPolicy:
    return RetentionPolicy(
        kind=kind,
        service=Service.KEYSERVER,
        tables=tables,
        purpose=f"{purpose} Configuration; no personal data.",
        measured_from="-",
        action=Action.KEEP,
        bounds=None,
        deadline=None,
        setting=None,
        enforced_by=f"an operator ({command})",
    )
