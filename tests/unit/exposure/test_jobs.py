"""The job runner: leases serialize exclusive jobs, others run freely, the scheduler runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from exposure.db import make_session_factory, unit_of_work
from exposure.db.lease import acquire_lease
from exposure.jobs import JOB_RUNS, Job, JobScheduler, run_job

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _job(engine: Engine, calls: list[datetime], **options: Any) -> Job:
    def run(now: datetime) -> Mapping[str, Any]:
        calls.append(now)
        return {"seen": now.isoformat()}

    return Job(
        name="probe",
        interval=timedelta(minutes=1),
        run=run,
        session_factory=make_session_factory(engine),
        **options,
    )


def _count(job: str, result: str) -> float:
    value = JOB_RUNS.labels(job, result)._value.get()
    return float(value)


def test_a_job_runs_as_of_the_given_time_and_reports_its_summary(engine: Engine) -> None:
    calls: list[datetime] = []
    before = _count("probe", "ok")

    result = run_job(_job(engine, calls), now=NOW - timedelta(days=3))

    assert result.ran
    assert calls == [NOW - timedelta(days=3)]
    assert result.summary == {"seen": (NOW - timedelta(days=3)).isoformat()}
    assert _count("probe", "ok") == before + 1


def test_an_exclusive_job_skips_while_another_replica_holds_its_lease(engine: Engine) -> None:
    calls: list[datetime] = []
    with unit_of_work(make_session_factory(engine)) as session:
        acquire_lease(
            session,
            name="job:probe",
            holder="other-replica",
            ttl=timedelta(minutes=5),
            now=datetime.now(UTC),
        )

    skipped = run_job(_job(engine, calls), now=NOW)
    free = run_job(_job(engine, calls, exclusive=False), now=NOW)

    assert not skipped.ran
    assert free.ran
    assert calls == [NOW]


def test_a_failing_job_is_counted_and_raises(engine: Engine) -> None:
    def explode(_now: datetime) -> Mapping[str, Any]:
        raise RuntimeError("boom")

    job = Job("exploding", timedelta(minutes=1), explode, make_session_factory(engine))
    before = _count("exploding", "failed")

    with pytest.raises(RuntimeError, match="boom"):
        run_job(job, now=NOW)

    assert _count("exploding", "failed") == before + 1
    # The lease was released: the next run is not skipped.
    with pytest.raises(RuntimeError):
        run_job(job, now=NOW)


def test_the_scheduler_runs_jobs_in_the_background_and_stops(engine: Engine) -> None:
    ran = threading.Event()

    def run(now: datetime) -> Mapping[str, Any]:
        ran.set()
        return {}

    job = Job("background", timedelta(minutes=10), run, make_session_factory(engine))
    # The first run is due 5 s after the clock's time; a clock in the past makes it due now.
    scheduler = JobScheduler([job], clock=lambda: datetime.now(UTC) - timedelta(seconds=10))
    scheduler.start()
    try:
        assert ran.wait(timeout=10)
    finally:
        scheduler.shutdown()


def _run_in_background(engine: Engine, failure: Exception) -> None:
    failed = threading.Event()

    def run(_now: datetime) -> Mapping[str, Any]:
        failed.set()
        raise failure

    job = Job("failing", timedelta(minutes=10), run, make_session_factory(engine))
    scheduler = JobScheduler([job], clock=lambda: datetime.now(UTC) - timedelta(seconds=10))
    scheduler.start()
    try:
        assert failed.wait(timeout=10)
    finally:
        scheduler.shutdown()


def test_a_job_failing_on_a_database_outage_logs_one_line_without_a_trace(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    lost = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
    with caplog.at_level(logging.ERROR, logger="exposure.jobs"):
        _run_in_background(engine, lost)

    [record] = [record for record in caplog.records if record.name == "exposure.jobs"]
    assert record.getMessage() == "job failing failed: database unreachable"
    assert record.exc_info is None


def test_a_job_failing_on_a_bug_logs_its_trace(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="exposure.jobs"):
        _run_in_background(engine, RuntimeError("a bug"))

    [record] = [record for record in caplog.records if record.name == "exposure.jobs"]
    assert record.getMessage() == "job failing failed"
    assert record.exc_info is not None
