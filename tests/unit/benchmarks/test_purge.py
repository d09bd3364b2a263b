"""The purge benchmark (benchmarks.purge): its seed, its timing window, its honesty.

The seed and the checks run on both engines. The window accounting runs against a small
fake key server with a purge that only sleeps. End to end, the benchmark runs the real
purge job at a tiny size on SQLite and PostgreSQL, and a job that purges wrongly must make
the run fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from benchmarks import harness
from benchmarks import purge as bench
from benchmarks.loadgen import run_event_loop
from benchmarks.publish import BenchAuthority, publish_requests
from benchmarks.rpi import machine_info
from exposure.cli import app
from exposure.db import SessionFactory, create_database_engine, make_session_factory
from exposure.jobs import Job, run_job
from exposure.settings import Service
from keyserver.models import Exposure
from tests.conftest import postgres_base_url
from tests.unit.benchmarks.fake_http import answer, fake_server, target

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


# ---- the seed and the checks ------------------------------------------------------------------


def test_the_seed_is_realistic_and_its_groups_are_told_apart(database_url: str) -> None:
    engine = create_database_engine(database_url)
    try:
        seeded = bench.seed_keys(engine, 56, 28, now=NOW)
        assert (seeded.expired, seeded.fresh) == (56, 28)
        assert bench.count_seeded(engine, seeded) == (56, 28)
        with engine.connect() as connection:
            rows = connection.execute(select(Exposure.__table__)).all()
    finally:
        engine.dispose()

    assert len({row.key for row in rows}) == 84
    assert {len(row.key) for row in rows} == {16}
    assert {(row.origin, row.report_type, row.interval_count) for row in rows} == {
        ("publish", "confirmed", 144)
    }
    expired = [row for row in rows if row.created_at < seeded.boundary]
    fresh = [row for row in rows if row.created_at >= seeded.boundary]
    assert len(expired) == 56
    # Expired keys are past the 14 days by days; fresh ones are well inside them.
    assert max(row.created_at for row in expired) <= NOW - timedelta(days=20)
    assert min(row.created_at for row in fresh) >= NOW - timedelta(days=12)
    assert max(row.created_at for row in fresh) < seeded.fresh_until <= NOW
    # 14-key publishes: one key for each of the 14 days before the upload day.
    by_upload: Counter[datetime] = Counter(row.created_at for row in expired)
    assert set(by_upload.values()) == {14}
    for row in rows:
        upload_day = int(row.created_at.timestamp()) // 86_400 * 144
        assert 1 <= (upload_day - row.interval_number) // 144 <= 14


def test_missing_keys_are_counted(database_url: str) -> None:
    authority = BenchAuthority.generate()
    publishes = publish_requests(authority, 3, host="h", now=NOW)
    engine = create_database_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(Exposure),
                [
                    {
                        "key": key,
                        "transmission_risk": 0,
                        "regions": ",VN,",
                        "traveler": False,
                        "interval_number": start,
                        "interval_count": 144,
                        "created_at": NOW,
                        "origin": "publish",
                        "report_type": "confirmed",
                    }
                    for prepared in publishes[:2]
                    for key, start in prepared.keys
                ],
            )
        assert bench.missing_keys(engine, publishes[:2]) == 0
        assert bench.missing_keys(engine, publishes) == 14
    finally:
        engine.dispose()


def test_while_the_benchmark_holds_the_lease_the_job_does_not_run(database_url: str) -> None:
    engine = create_database_engine(database_url)
    sessions = make_session_factory(engine)
    runs: list[datetime] = []

    def run(now: datetime) -> Mapping[str, Any]:
        runs.append(now)
        return {}

    job = Job(name=bench.PURGE_JOB, interval=timedelta(hours=1), run=run, session_factory=sessions)
    try:
        holder = bench._hold_lease(sessions, bench.PURGE_JOB)
        assert run_job(job, now=NOW).ran is False
        bench._release_lease(sessions, bench.PURGE_JOB, holder)
        assert run_job(job, now=NOW).ran is True
        assert runs == [NOW]
    finally:
        engine.dispose()


# ---- the timing window --------------------------------------------------------------------------


def test_only_publishes_sent_while_the_purge_ran_count_as_during_it(tmp_path: Path) -> None:
    async def respond(_head: bytes, _body: bytes) -> bytes:
        await asyncio.sleep(0.002)
        return answer(200, b'{"insertedExposures":14,"revisionToken":"x"}')

    server_pid = os.getpid()

    def slow_purge() -> bench.PurgeRun:
        before = harness.cpu_snapshot(server_pid, harness.Database.SQLITE)
        started = time.perf_counter()
        time.sleep(0.4)
        finished = time.perf_counter()
        after = harness.cpu_snapshot(server_pid, harness.Database.SQLITE)
        return bench.PurgeRun(started, finished, {"exposure-keys": {"rows": 7}}, before, after)

    source = bench.PublishSource(BenchAuthority.generate(), "127.0.0.1")

    async def main() -> bench.MeasuredPurge:
        async with fake_server(respond) as port:
            return await bench.measure_purge(
                target(port, tmp_path),
                source,
                slow_purge,
                concurrency=3,
                baseline_seconds=0.3,
                ramp_seconds=0.2,
                expected_purge_seconds=0.1,
            )

    measured = run_event_loop(main)

    assert measured.load_covered_purge
    # The publishes signed in advance ran out during the purge; more were signed.
    assert source.signed_on_the_spot > 0
    assert measured.baseline_run.errors == measured.purge_phase_run.errors == {}
    assert 0.3 <= measured.baseline_run.seconds < 1.0
    assert measured.baseline.accepted
    assert measured.baseline_cpu.requests > 0
    purge = measured.purge
    sent = [at for at, _ in measured.purge_phase.accepted]
    # The load ran before the purge (the ramp), throughout it, and stopped right after.
    assert min(sent) < purge.started
    assert max(sent) < purge.finished + 0.2
    window = bench._window(measured.purge_phase, purge)
    inside = [at for at in sent if purge.started <= at < purge.finished]
    assert window.publishes == window.accepted == len(inside) > 10
    assert window.latency.count == len(inside)
    assert window.seconds == pytest.approx(0.4, abs=0.1)
    assert window.cpu.requests == len(inside)
    # Every publish is sent once, however many phases there were.
    acknowledged = measured.acknowledged
    assert len({prepared.request.data for prepared in acknowledged}) == len(acknowledged)


@pytest.mark.parametrize(
    "arguments",
    [
        {"rows": 0},
        {"concurrency": 0},
        {"baseline_seconds": 0},
        {"fresh_share": 2},
        {"server_workers": 0},
        {"database": harness.Database.SQLITE, "database_url": "postgresql://x/y"},
    ],
)
def test_meaningless_arguments_are_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per argument
        bench.run_purge_benchmark(**arguments)


# ---- end to end --------------------------------------------------------------------------------


def _assert_honest(result: bench.PurgeBenchmarkResult, rows: int) -> None:
    assert result.clean, result.to_dict()
    assert result.rows_deleted == result.job_rows == rows
    assert result.job_rows_by_kind["exposure-keys"] == rows
    assert result.job_summary["failed"] == []
    assert result.expired_rows_left == 0
    assert result.fresh_rows_kept == result.fresh_rows == rows // 10
    assert result.publishes_failed == 0
    assert result.errors == result.warmup_errors == {}
    baseline = result.baseline
    assert baseline.accepted == baseline.latency.count > 0
    assert baseline.latency.p99_ms > 0
    during = result.during_purge
    assert during.publishes == during.accepted + during.failed == during.latency.count
    assert result.purge_phase_publishes >= during.publishes
    assert result.load_covered_purge
    assert result.purge_seconds > 0
    assert result.rows_per_second > 0
    # Every acknowledged publish's keys were found in the database.
    accepted = result.warmup_publishes + baseline.accepted + result.purge_phase_publishes
    assert result.published_keys_checked == 14 * accepted


@pytest.mark.parametrize(
    "database",
    [
        harness.Database.SQLITE,
        pytest.param(harness.Database.POSTGRESQL, marks=pytest.mark.postgres),
    ],
)
def test_the_real_purge_job_under_publish_load(database: harness.Database) -> None:
    url = postgres_base_url() if database is harness.Database.POSTGRESQL else None
    result = bench.run_purge_benchmark(
        2_000, concurrency=2, database=database, database_url=url, baseline_seconds=1
    )
    _assert_honest(result, 2_000)
    assert result.database == database.value


def _wrong_job(kind: str) -> Any:
    """A purge_job stand-in that deletes nothing, or fresh keys too (not the new ones)."""

    def build(_server: harness.BenchServer, sessions: SessionFactory) -> bench.PurgeJob:
        def run(now: datetime) -> Mapping[str, Any]:
            if kind == "too-much":
                with sessions() as session, session.begin():
                    session.execute(
                        delete(Exposure).where(Exposure.created_at < now - timedelta(hours=12))
                    )
            return {}

        job = Job(
            name=bench.PURGE_JOB, interval=timedelta(hours=1), run=run, session_factory=sessions
        )
        return bench.PurgeJob(job, frozenset({"exposure-keys"}))

    return build


@pytest.mark.parametrize(("kind", "left", "kept"), [("nothing", 700, 70), ("too-much", 0, 0)])
def test_a_purge_that_is_wrong_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, kind: str, left: int, kept: int
) -> None:
    monkeypatch.setattr(bench, "purge_job", _wrong_job(kind))
    outcome = CliRunner().invoke(
        app,
        [
            *("bench", "purge", "--rows", "700", "--database", "sqlite"),
            *("--concurrency", "1", "--baseline-seconds", "1", "--json"),
        ],
    )
    assert outcome.exit_code == 1, outcome.output
    assert "benchmark failed" in outcome.output
    data = json.loads(outcome.output[: outcome.output.rindex("}") + 1])
    assert (data["expired_rows_left"], data["fresh_rows_kept"], data["clean"]) == (
        left,
        kept,
        False,
    )
    assert data["job_rows"] is None


class _Scheduler:
    """The server's scheduler at its most eager: it tries the purge job over and over."""

    def __init__(self, url: str) -> None:
        self.engine = create_database_engine(url, sqlite_busy_timeout_ms=60_000)
        self.job = Job(
            name=bench.PURGE_JOB,
            interval=timedelta(hours=1),
            run=self._run,
            session_factory=make_session_factory(self.engine),
        )
        self.tries = 0
        self.runs: list[datetime] = []
        self.errors: list[SQLAlchemyError] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _run(self, now: datetime) -> Mapping[str, Any]:
        self.runs.append(now)
        return {}

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                run_job(self.job, now=datetime.now(UTC))
            except SQLAlchemyError as error:  # the database went with a failed benchmark
                self.errors.append(error)
                return
            self.tries += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()


@pytest.mark.parametrize(
    "database",
    [
        harness.Database.SQLITE,
        pytest.param(harness.Database.POSTGRESQL, marks=pytest.mark.postgres),
    ],
)
def test_the_servers_scheduler_never_gets_the_job_around_the_measured_purge(
    monkeypatch: pytest.MonkeyPatch, database: harness.Database
) -> None:
    """From the start of the server until the rows are counted, the job is the benchmark's.

    The server runs the same job on its own schedule (5 s after it starts, then hourly). A
    run of it just before or after the benchmark's would purge the rows in its place, so a
    purge that deleted nothing could pass; here a scheduler tries without pause throughout.
    """
    schedulers: list[_Scheduler] = []
    wrong = _wrong_job("nothing")

    def build(server: harness.BenchServer, sessions: SessionFactory) -> bench.PurgeJob:
        scheduler = _Scheduler(server.database_url_for(Service.KEYSERVER))
        schedulers.append(scheduler)
        scheduler.thread.start()
        return wrong(server, sessions)

    counted = bench.count_seeded
    counts: list[tuple[int, int]] = []

    def count_seeded(engine: Any, seeded: bench.SeededKeys) -> tuple[int, int]:
        counts.append(counted(engine, seeded))
        if len(counts) == 2:
            schedulers[0].close()  # the count after the purge: the benchmark is done
        return counts[-1]

    monkeypatch.setattr(bench, "purge_job", build)
    monkeypatch.setattr(bench, "count_seeded", count_seeded)
    url = postgres_base_url() if database is harness.Database.POSTGRESQL else None
    try:
        result = bench.run_purge_benchmark(
            700, concurrency=1, database=database, database_url=url, baseline_seconds=1
        )
    finally:
        for scheduler in schedulers:
            scheduler.close()

    (scheduler,) = schedulers
    assert len(counts) == 2
    assert scheduler.errors == []
    assert scheduler.tries > 100
    assert scheduler.runs == []
    # What the job left is what the benchmark counts: nothing was purged behind its back.
    assert (result.expired_rows_left, result.fresh_rows_kept) == (700, 70)
    assert not result.clean


def test_results_print_as_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = harness.summarize_latencies([0.01, 0.03])
    cpu = harness.CpuUsage(
        requests=100,
        server_seconds=1.0,
        client_seconds=0.03,
        database_seconds=0.5,
        other_seconds=0.1,
        machine_utilization=0.9,
        server_per_request_ms=10.0,
        client_per_request_ms=0.3,
    )
    phase = bench.PhaseResult(100, 100, 0, 1.0, 100.0, summary, cpu)
    result = bench.PurgeBenchmarkResult(
        database="postgresql",
        rows=1_000_000,
        fresh_rows=100_000,
        seed_seconds=30.0,
        concurrency=8,
        server_workers=1,
        purge_seconds=12.5,
        rows_deleted=1_000_000,
        rows_per_second=80_000.0,
        job_rows=1_000_000,
        job_rows_by_kind={"exposure-keys": 1_000_000, "leases": 0},
        job_summary={},
        expired_rows_left=0,
        fresh_rows_kept=100_000,
        baseline=phase,
        during_purge=phase,
        p99_ratio=1.5,
        purge_phase_publishes=120,
        purge_phase_failed=0,
        load_covered_purge=True,
        errors={},
        warmup_publishes=25,
        warmup_errors={},
        published_keys_checked=14 * 245,
        signed_on_the_spot=0,
        target_purge_seconds=10.0,
        target_p99_ratio=2.0,
        purge_within_target=False,
        p99_within_target=True,
        load_average=(1.5, 1.0, 0.5),
        event_loop="uvloop",
        machine=machine_info(),
    )
    monkeypatch.setattr(bench, "run_purge_benchmark", lambda *_a, **_k: result)
    outcome = CliRunner().invoke(app, ["bench", "purge"], env={"COLUMNS": "200"})
    assert outcome.exit_code == 0, outcome.output
    for text in ("Purge benchmark", "1,000,000 / 1,000,000", "12.50", "1.50x", "NO", "80,000"):
        assert text in outcome.output
    assert "Failed publishes" not in outcome.output
