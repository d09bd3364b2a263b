"""Scheduled jobs: plain functions behind one runner, serialized across replicas by leases.

A :class:`Job` names a function of ``now`` that does one pass of some periodic work (refresh
the trusted keys, rotate a key, purge old rows) and returns a JSON-able summary. The same
job runs from the CLI (``exposure jobs run NAME``) and, inside ``exposure serve``, on an
APScheduler interval. Every run holds a database lease named after the job, so when several
replicas schedule it, one runs and the others skip that round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from exposure.clock import utc_now
from exposure.db import SessionFactory
from exposure.db.faults import DatabaseFault, classify
from exposure.db.lease import LeaseUnavailable, held_lease

_logger = logging.getLogger(__name__)

JOB_RUNS = Counter(
    "exposure_job_runs",
    "Scheduled job runs by job and result (ok, failed, skipped).",
    ["job", "result"],
)
JOB_LAST_SUCCESS = Gauge(
    "exposure_job_last_success_timestamp_seconds",
    "When each job last finished successfully (Unix time), for forward-progress alerts.",
    ["job"],
)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Job:
    """One kind of periodic work."""

    name: str
    #: How often ``exposure serve`` runs it.
    interval: timedelta
    #: One pass, evaluated as of ``now``; returns a summary for logs and the CLI.
    run: Callable[[datetime], Mapping[str, Any]]
    #: The database whose lease serializes the job across replicas.
    session_factory: SessionFactory
    #: Longest a run may hold its lease; a crashed holder frees it after this.
    lease_ttl: timedelta = timedelta(minutes=5)
    #: False for jobs that coordinate finer-grained themselves (the export worker leases
    #: each batch), so every replica may run them at once.
    exclusive: bool = True


@dataclass(frozen=True)
class JobResult:
    job: str
    ran: bool
    summary: Mapping[str, Any]


def run_job(job: Job, *, now: datetime, clock: Clock | None = None) -> JobResult:
    """Run ``job`` once as of ``now`` if its lease is free; skip (ran=False) if it is held.

    ``now`` is the time the job's logic sees (the CLI may move it); the lease is timed by
    ``clock`` (the real clock), so a run "in the future" cannot hold a lease for days.
    Exceptions from the job propagate after being counted.
    """
    lease_clock = clock or utc_now
    if not job.exclusive:
        return _record(job, job.run, now, lease_clock)
    try:
        with held_lease(
            job.session_factory, name=f"job:{job.name}", ttl=job.lease_ttl, clock=lease_clock
        ):
            return _record(job, job.run, now, lease_clock)
    except LeaseUnavailable:
        JOB_RUNS.labels(job.name, "skipped").inc()
        return JobResult(job=job.name, ran=False, summary={"skipped": "lease held elsewhere"})


def _record(
    job: Job, run: Callable[[datetime], Mapping[str, Any]], now: datetime, clock: Clock
) -> JobResult:
    try:
        summary = run(now)
    except Exception:
        JOB_RUNS.labels(job.name, "failed").inc()
        raise
    JOB_RUNS.labels(job.name, "ok").inc()
    JOB_LAST_SUCCESS.labels(job.name).set(clock().timestamp())
    return JobResult(job=job.name, ran=True, summary=summary)


class JobScheduler:
    """Runs jobs on their intervals in a background thread (APScheduler) inside a server.

    A failing run is logged and retried at the next interval; one job's failure never stops
    another. ``clock`` supplies ``now`` for every run.
    """

    def __init__(self, jobs: Sequence[Job], clock: Clock) -> None:
        self._jobs = list(jobs)
        self._clock = clock
        self._scheduler = BackgroundScheduler(timezone=UTC)
        for job in self._jobs:
            self._scheduler.add_job(
                self._run_logged,
                IntervalTrigger(seconds=job.interval.total_seconds(), timezone=UTC),
                args=[job],
                id=job.name,
                # Run soon after start, then on the interval; never two runs at once.
                next_run_time=clock() + timedelta(seconds=5),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(job.interval.total_seconds()),
            )

    def _run_logged(self, job: Job) -> None:
        try:
            result = run_job(job, now=self._clock())
        except SQLAlchemyError as error:
            fault = classify(error)
            if fault is DatabaseFault.OTHER:
                _logger.exception("job %s failed", job.name)
            else:
                # An outage, not a bug: one line that says what to fix, every interval
                # until it is fixed, rather than a trace of the driver's internals.
                _logger.error("job %s failed: database %s", job.name, fault.value)
            return
        except Exception:
            _logger.exception("job %s failed", job.name)
            return
        if result.ran:
            _logger.info("job %s done: %s", job.name, dict(result.summary))

    def start(self) -> None:
        if self._jobs:
            self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
