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
no personal data and stays until an operator removes it. The statements behind each purge
are in :mod:`keyserver.store.retention`.

Example::

    policies = keyserver_policies(context, RetentionSettings())
    report = run_purge(service="keyserver", policies=policies, ...)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from exposure.clock import utc_now
from exposure.db import SessionFactory, unit_of_work
from exposure.db.lease import new_holder_token
from exposure.retention.core import purge_job_name
from exposure.retention.policy import Action, Deadline, PurgeResult, RetentionPolicy
from exposure.retention.settings import (
    IMPORT_RECORDS,
    KEYS,
    REVOKED_AUTHORITY_KEYS,
    RetentionSettings,
)
from exposure.settings import Service
from keyserver.context import KeyserverContext
from keyserver.export.worker import rewrite_index
from keyserver.models import RevisionKey
from keyserver.store import retention as retention_store
from keyserver.store.retention import StoredKeys

__all__ = ["EXPORT_FILES", "REVISION_KEYS", "keyserver_policies"]

#: Export files: ``EXPOSURE_KEYSERVER_EXPORT_RETENTION`` (also what index.txt lists).
EXPORT_FILES = Deadline(default=timedelta(days=14), floor=timedelta(days=10), ceiling=KEYS.ceiling)
#: Revision keys: ``EXPOSURE_KEYSERVER_REVISION_KEY_DESTROY_AFTER``.
REVISION_KEYS = Deadline(
    default=timedelta(days=15), floor=timedelta(days=15), ceiling=timedelta(days=60)
)

_TABLE = "keyserver_exposures"


def _keys_policy(
    *,
    kind: str,
    keys: StoredKeys,
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
        purge=retention_store.purge_keys(keys, batch_size),
        oldest=retention_store.oldest_key(keys),
    )


def _purge_export_files(
    context: KeyserverContext, sessions: SessionFactory, cutoff: datetime, now: datetime
) -> PurgeResult:
    """Unlist, then delete the blobs, then the rows of batches that started before cutoff.

    A batch a worker is still writing (pending under a live lease) is left for next time.
    """
    with unit_of_work(sessions) as session:
        batch_ids = retention_store.expired_batch_ids(session, cutoff, now)
        configs = retention_store.configs_of_expired_batches(session, cutoff, now)
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
            names = retention_store.batch_file_names(session, batch_id)
        for name in names:
            context.export_store.delete(name)
            blobs += 1
        # Rows go only once every blob is gone: a failed delete is retried next run.
        with unit_of_work(sessions) as session:
            rows += retention_store.delete_batch(session, batch_id)
    return PurgeResult(rows=rows, blobs=blobs)


def _superseded(sessions: SessionFactory) -> list[tuple[RevisionKey, datetime]]:
    """Every revision key that is not the newest, with when its successor took over."""
    with sessions() as session:
        rows = retention_store.revision_keys_newest_first(session)
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
        return PurgeResult(rows=retention_store.delete_revision_keys(session, expired))


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
            keys=StoredKeys.PUBLISHED,
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
            keys=StoredKeys.REVISED,
            purpose="Keys whose report type was revised (e.g. likely to confirmed); as above.",
            deadline=settings.revised_keys,
            setting="EXPOSURE_RETENTION_REVISED_KEYS",
            batch_size=batch,
        ),
        _keys_policy(
            kind="padding-keys",
            keys=StoredKeys.PADDING,
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
            keys=StoredKeys.IMPORTED,
            purpose=(
                "Keys imported from peers' and older systems' signed exports, with their "
                "source and file, re-exported like our own so one download serves them all."
            ),
            deadline=settings.imported_keys,
            setting="EXPOSURE_RETENTION_IMPORTED_KEYS",
            batch_size=batch,
        ),
        RetentionPolicy(
            kind="import-records",
            service=Service.KEYSERVER,
            tables=("keyserver_import_files",),
            purpose=(
                "Which peer files were imported or refused and why, so each is imported once "
                "and refusals can be audited; names and counts, no keys."
            ),
            measured_from="created_at (when the file was handled)",
            action=Action.DELETE,
            bounds=IMPORT_RECORDS,
            deadline=settings.import_records,
            setting="EXPOSURE_RETENTION_IMPORT_RECORDS",
            enforced_by=job,
            purge=retention_store.purge_import_records(batch),
            oldest=retention_store.oldest_import_record,
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
            oldest=retention_store.oldest_export_batch,
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
            purge=retention_store.purge_revoked_authority_keys(batch),
            oldest=retention_store.oldest_revoked_authority_key,
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
            "import-sources",
            ("keyserver_import_sources", "keyserver_import_source_keys"),
            "Peers whose signed exports are imported: index, root, their public keys.",
            "exposure admin import-source",
        ),
        _configuration(
            "mirrors",
            ("keyserver_mirrors",),
            (
                "Peers whose index and files are copied as they are for a CDN; the copies "
                "follow the peer's index (a file it stops listing is deleted)."
            ),
            "exposure admin mirror",
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
