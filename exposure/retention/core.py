"""The policies of the core tables every service database has.

Leases and rate-limit windows are purged by each service's purge job in its own database;
the retention log and its checkpoints are truncated by the same job (see
:mod:`exposure.retention.purge`); disabled auditor keys go like disabled API keys; sealed
keys are destroyed with the record that names them; ``alembic_version`` is the schema's
version, kept. In a database two services share, each purges only its own rows.
"""

from __future__ import annotations

from datetime import datetime

from exposure.auditors.models import AuditorKey
from exposure.db import SessionFactory
from exposure.db.lease import LeaseRow
from exposure.ratelimit import RateLimitWindow
from exposure.retention.models import RetentionLogEntry
from exposure.retention.policy import Action, RetentionPolicy
from exposure.retention.purge import LOG_KIND
from exposure.retention.settings import (
    DISABLED_API_KEYS,
    LEASES,
    RATE_LIMIT_WINDOWS,
    RETENTION_LOG,
    RetentionSettings,
)
from exposure.retention.store import batched_delete, oldest_of, oldest_value
from exposure.settings import Service

__all__ = ["core_policies", "purge_job_name"]


def purge_job_name(service: Service) -> str:
    """The name of ``service``'s purge job (and of the lease that serializes it)."""
    return f"purge-{service.value}"


def core_policies(service: Service, settings: RetentionSettings) -> list[RetentionPolicy]:
    """The core tables' declarations for ``service``'s database."""
    batch = settings.batch_size
    job = purge_job_name(service)

    def oldest_lease(sessions: SessionFactory, now: datetime) -> datetime | None:
        # Only leases that expired are aging; live ones are in use.
        return oldest_value(sessions, LeaseRow.expires_at, LeaseRow.expires_at < now)

    return [
        RetentionPolicy(
            kind="leases",
            service=service,
            tables=("leases",),
            purpose="Lets one replica at a time run a job or write an index; no personal data.",
            measured_from="expires_at",
            action=Action.DELETE,
            bounds=LEASES,
            deadline=settings.leases,
            setting="EXPOSURE_RETENTION_LEASES",
            enforced_by=job,
            purge=batched_delete("leases", "expires_at < :cutoff", batch),
            oldest=oldest_lease,
        ),
        RetentionPolicy(
            kind="rate-limit-state",
            service=service,
            tables=("rate_limit_windows",),
            purpose=(
                "Counts requests per HMAC-named bucket to stop abuse and code guessing; "
                "holds no address, key or code."
            ),
            measured_from="window_start",
            action=Action.DELETE,
            bounds=RATE_LIMIT_WINDOWS,
            deadline=settings.rate_limit_windows,
            setting="EXPOSURE_RETENTION_RATE_LIMIT_WINDOWS",
            enforced_by=job,
            purge=batched_delete("rate_limit_windows", "window_start < :cutoff", batch),
            oldest=oldest_of(RateLimitWindow.window_start),
        ),
        RetentionPolicy(
            kind=LOG_KIND,
            service=service,
            tables=("retention_log", "retention_checkpoints"),
            purpose="Proves to auditors that every purge ran, on time, and what it removed.",
            measured_from="recorded_at",
            action=Action.DELETE,
            bounds=RETENTION_LOG,
            deadline=settings.log,
            setting="EXPOSURE_RETENTION_LOG",
            enforced_by=f"{job} (truncates the log's front behind a signed checkpoint)",
            oldest=oldest_of(
                RetentionLogEntry.recorded_at, RetentionLogEntry.service == service.value
            ),
        ),
        RetentionPolicy(
            kind="auditor-keys",
            service=service,
            tables=("auditor_keys",),
            purpose=(
                "Keyed hashes of the API keys auditors read the retention log and compliance "
                "report with; no personal data."
            ),
            measured_from="disabled_at",
            action=Action.DELETE,
            bounds=DISABLED_API_KEYS,
            deadline=settings.disabled_api_keys,
            setting="EXPOSURE_RETENTION_DISABLED_API_KEYS",
            enforced_by=job,
            purge=batched_delete(
                "auditor_keys",
                # service.value is one of the Service constants, never input.
                f"service = '{service.value}' AND disabled_at IS NOT NULL "
                "AND disabled_at < :cutoff",
                batch,
            ),
            oldest=oldest_of(
                AuditorKey.disabled_at,
                AuditorKey.service == service.value,
                AuditorKey.disabled_at.is_not(None),
            ),
        ),
        RetentionPolicy(
            kind="sealed-keys",
            service=service,
            tables=("sealed_keys",),
            purpose=(
                "The service's private signing keys and secrets, sealed under its KEK; no "
                "personal data."
            ),
            measured_from="-",
            action=Action.KEEP,
            bounds=None,
            deadline=None,
            setting=None,
            enforced_by=(
                "destroyed with the record that names them (retired signing keys); the "
                "others live as long as what they sign or hash"
            ),
        ),
        RetentionPolicy(
            kind="schema-version",
            service=service,
            tables=("alembic_version",),
            purpose="Which migrations the database has; no personal data.",
            measured_from="-",
            action=Action.KEEP,
            bounds=None,
            deadline=None,
            setting=None,
            enforced_by="kept for the life of the database",
        ),
    ]
