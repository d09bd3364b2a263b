"""Which periodic jobs the key server runs, and how often (see exposure.jobs for the runner).

- ``jwks-refresh`` (every ``jwks_refresh_interval``, reference 2 min): mirror the key sets of
  health authorities that publish one.
- ``revision-key-rotation`` (hourly; the reference checks every 4 h): make a new revision
  key every ``revision_key_period`` and destroy old ones after ``revision_key_destroy_after``.
- ``export-batches`` (every 5 min): close the export windows that are old enough.
- ``export-worker`` (every minute, on every replica at once: it leases batch by batch):
  write the files of open batches and rewrite index.txt.
- ``import`` (every ``import_interval``, 5 min; one replica at a time under its lease):
  import the new signed export files of every import source.
- ``mirror`` (as often as ``import``; under its lease): copy mirrored peers' index and files
  into the blob store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from exposure.db import unit_of_work
from exposure.db.lease import new_holder_token
from exposure.jobs import Job
from keyserver.context import KeyserverContext
from keyserver.export.batcher import create_batches
from keyserver.export.worker import WorkerReport, run_worker
from keyserver.importer.fetch import Fetcher
from keyserver.importer.mirror import MirrorReport, run_mirrors
from keyserver.importer.run import ImportReport, run_import
from keyserver.jobs import http_fetcher, refresh_jwks
from keyserver.metrics import (
    BATCHES_COMPLETED,
    BATCHES_CREATED,
    EXPORT_FILES,
    EXPORTED_KEYS,
    IMPORT_FAILURES,
    IMPORT_FILES,
    IMPORT_KEYS,
    IMPORT_LAST_SUCCESS,
    IMPORT_REFUSED,
    LAST_COMPLETE_BATCH,
    LEASE_CONTENTION,
    MIRROR_FAILURES,
    MIRROR_FILES,
    MIRROR_LAST_SUCCESS,
)
from keyserver.service.revision_keys import rotate_revision_keys
from keyserver.store.exports import last_batch_completion

ROTATION_CHECK_INTERVAL = timedelta(hours=1)


def jwks_refresh_job(context: KeyserverContext, fetch: Callable[[str], bytes] | None = None) -> Job:
    fetcher = fetch or http_fetcher(context.settings.jwks_request_timeout)

    def run(now: datetime) -> Mapping[str, Any]:
        return refresh_jwks(context.session_factory, fetch=fetcher, now=now).as_dict()

    return Job(
        name="jwks-refresh",
        interval=context.settings.jwks_refresh_interval,
        run=run,
        session_factory=context.session_factory,
    )


def revision_key_rotation_job(context: KeyserverContext) -> Job:
    settings = context.settings

    def run(now: datetime) -> Mapping[str, Any]:
        with unit_of_work(context.session_factory) as session:
            report = rotate_revision_keys(
                session,
                context.revision_wrapping,
                now,
                new_key_period=settings.revision_key_period,
                destroy_after=settings.revision_key_destroy_after,
            )
        context.revision_keys.invalidate()
        return asdict(report)

    return Job(
        name="revision-key-rotation",
        interval=ROTATION_CHECK_INTERVAL,
        run=run,
        session_factory=context.session_factory,
    )


def export_batches_job(context: KeyserverContext) -> Job:
    def run(now: datetime) -> Mapping[str, Any]:
        with unit_of_work(context.session_factory) as session:
            created = create_batches(session, settings=context.settings, now=now)
            summary = {
                "created": len(created),
                "windows": [
                    f"{batch.config_id}:{batch.start_at.isoformat()}/{batch.end_at.isoformat()}"
                    for batch in created
                ],
            }
        BATCHES_CREATED.inc(len(created))
        return summary

    return Job(
        name="export-batches",
        interval=context.settings.export_batch_interval,
        run=run,
        session_factory=context.session_factory,
    )


def _record_worker_metrics(report: WorkerReport) -> None:
    BATCHES_COMPLETED.inc(report.batches_completed)
    EXPORT_FILES.inc(report.files_written)
    EXPORTED_KEYS.labels("key").inc(report.keys_exported)
    EXPORTED_KEYS.labels("revised").inc(report.revised_keys_exported)
    EXPORTED_KEYS.labels("padding").inc(report.padding_keys)
    LEASE_CONTENTION.inc(report.lease_contention)


def export_worker_job(context: KeyserverContext) -> Job:
    def run(now: datetime) -> Mapping[str, Any]:
        report = run_worker(
            context.session_factory,
            store=context.export_store,
            key_store=context.key_store,
            settings=context.settings,
            now=now,
            holder=new_holder_token(),
        )
        _record_worker_metrics(report)
        with unit_of_work(context.session_factory) as session:
            completed = last_batch_completion(session)
        if completed is not None:
            LAST_COMPLETE_BATCH.set(completed.timestamp())
        return report.as_dict()

    return Job(
        name="export-worker",
        interval=context.settings.export_worker_interval,
        run=run,
        session_factory=context.session_factory,
        exclusive=False,
    )


def record_import_metrics(report: ImportReport) -> None:
    """Per source: files by result, refusals by reason, keys by outcome, last success."""
    for run in report.sources:
        IMPORT_FILES.labels(run.source, "imported").inc(run.files_imported)
        IMPORT_FILES.labels(run.source, "refused").inc(sum(run.files_refused.values()))
        for reason, count in run.files_refused.items():
            IMPORT_REFUSED.labels(run.source, reason).inc(count)
        IMPORT_KEYS.labels(run.source, "inserted").inc(run.keys_inserted)
        IMPORT_KEYS.labels(run.source, "revised").inc(run.keys_revised)
        IMPORT_KEYS.labels(run.source, "duplicate").inc(run.keys_duplicate)
        IMPORT_KEYS.labels(run.source, "dropped").inc(run.keys_dropped)
        if run.error is not None:
            IMPORT_FAILURES.labels(run.source, run.error).inc()
        if run.last_success_at is not None:
            IMPORT_LAST_SUCCESS.labels(run.source).set(run.last_success_at.timestamp())


def _fetcher(context: KeyserverContext) -> Fetcher:
    settings = context.settings
    return Fetcher(
        timeout=settings.import_request_timeout,
        retries=settings.import_retries,
        backoff=settings.import_retry_backoff,
    )


def record_mirror_metrics(report: MirrorReport) -> None:
    for run in report.mirrors:
        MIRROR_FILES.labels(run.mirror, "copied").inc(run.files_copied)
        MIRROR_FILES.labels(run.mirror, "removed").inc(run.files_removed)
        if run.error is not None:
            MIRROR_FAILURES.labels(run.mirror, run.error).inc()
        if run.last_success_at is not None:
            MIRROR_LAST_SUCCESS.labels(run.mirror).set(run.last_success_at.timestamp())


def mirror_job(context: KeyserverContext) -> Job:
    def run(now: datetime) -> Mapping[str, Any]:
        fetcher = _fetcher(context)
        try:
            report = run_mirrors(
                context.session_factory,
                store=context.export_store,
                settings=context.settings,
                fetcher=fetcher,
                now=now,
            )
        finally:
            fetcher.close()
        record_mirror_metrics(report)
        return report.as_dict()

    return Job(
        name="mirror",
        interval=context.settings.import_interval,
        run=run,
        session_factory=context.session_factory,
        lease_ttl=context.settings.import_lease,
    )


def import_job(context: KeyserverContext, fetcher: Fetcher | None = None) -> Job:
    settings = context.settings

    def run(now: datetime) -> Mapping[str, Any]:
        own = fetcher or _fetcher(context)
        try:
            report = run_import(context.session_factory, settings=settings, fetcher=own, now=now)
        finally:
            if fetcher is None:
                own.close()
        record_import_metrics(report)
        return report.as_dict()

    return Job(
        name="import",
        interval=settings.import_interval,
        run=run,
        session_factory=context.session_factory,
        lease_ttl=settings.import_lease,
    )


def scheduled_jobs(context: KeyserverContext) -> list[Job]:
    """Every periodic job of the key server."""
    return [
        jwks_refresh_job(context),
        revision_key_rotation_job(context),
        export_batches_job(context),
        export_worker_job(context),
        import_job(context),
        mirror_job(context),
    ]
