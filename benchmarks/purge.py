"""How long the key server's purge takes for a million expired keys, and what it costs publishing.

Issue 6 wants the purge of 1,000,000 expired keys done in under 10 seconds on PostgreSQL,
with the p99 latency of publishes made meanwhile less than twice what it is without it.

The benchmark starts ``exposure serve`` on a database of its own (as
:mod:`benchmarks.harness` does) after seeding it, untimed, with ``rows`` expired keys
(uploaded 20 days ago, as 14-key publishes spread over a day) and a tenth as many fresh ones
(uploaded within the last 12 days) that must survive. Seeding uses COPY on PostgreSQL and
executemany on SQLite; on PostgreSQL the table is then vacuumed and analyzed, as autovacuum
would have left a table that filled over weeks.

Then, with the publishes of :mod:`benchmarks.publish` (valid 14-key publishes with
certificates of the benchmark's own health authority, sent by
:mod:`benchmarks.loadgen` at a fixed ``concurrency``):

1. a warm-up (not measured) gives the publish rate, to sign enough publishes in advance;
2. the baseline phase publishes for ``baseline_seconds``;
3. the purge phase starts the same load, and after a second runs the key server's own
   ``purge-keyserver`` job once in this process (in a thread, against the same database,
   under the job's lease), then keeps the load going until the job returns. Only
   publishes sent while the job ran count as "during the purge".

The server schedules that job itself too (5 s after it starts, then hourly). The benchmark
takes the job's lease before the server starts and keeps it until the rows are counted,
running the job's pass under it rather than through :func:`exposure.jobs.run_job` (which
would take a lease of its own, so the benchmark would have to let go of its lease around
the run). The server's scheduler skips every run meanwhile: the seeded rows are the
benchmark's to purge, and a faulty run is not tidied up by the server's before they are
counted.

Nothing is taken on its word: afterwards no seeded expired key may be left, every fresh
key must still be there, and every key of every acknowledged publish must be stored (a
sample with the intervals sent). A publish counts only if the answer is 200 with 14 keys
inserted.

The purge thread shares this process with the load generator. It spends most of its time
waiting for the database (which releases the interpreter lock), but the Python it runs
between statements can delay the generator's reading of answers by a little, so latencies
during the purge are if anything overstated. CPU "of the load generator" during the purge
includes the job's own.

Example::

    result = run_purge_benchmark(1_000_000, database=Database.POSTGRESQL)
    print(f"{result.rows_deleted:,} rows in {result.purge_seconds:.1f} s; "
          f"publish p99 x{result.p99_ratio:.2f}")
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from benchmarks.harness import (
    DEFAULT_POSTGRES_URL,
    BenchmarkError,
    BenchServer,
    CpuSnapshot,
    CpuUsage,
    Database,
    ExposureCommands,
    LatencySummary,
    ServerSetup,
    check_server_workers,
    cpu_snapshot,
    log_tail,
    running_server,
    server_settings,
    summarize_latencies,
)
from benchmarks.loadgen import (
    Client,
    LoadGenerator,
    LoadRun,
    Response,
    UnitFailed,
    event_loop_name,
    run_event_loop,
)
from benchmarks.publish import (
    KEYS_PER_PUBLISH,
    BenchAuthority,
    PreparedPublish,
    PublishMismatchError,
    check_stored_keys,
    publish_requests,
)
from benchmarks.rpi import MachineInfo, machine_info
from crypto.randomness import random_bytes
from exposure.compose import open_deployment
from exposure.db import SessionFactory, create_database_engine, make_session_factory, unit_of_work
from exposure.db.lease import acquire_lease, new_holder_token, release_lease
from exposure.db.migrate import upgrade_service
from exposure.jobs import Job
from exposure.retention.core import purge_job_name
from exposure.retention.settings import RetentionSettings
from exposure.settings import ExposureSettings, Service
from exposure.tek import INTERVALS_PER_DAY, ReportType, interval_number, truncate, utc_midnight
from keyserver.models import Exposure

__all__ = [
    "DEFAULT_BASELINE_SECONDS",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_ROWS",
    "FRESH_SHARE",
    "PURGE_JOB",
    "TARGET_P99_RATIO",
    "TARGET_PURGE_SECONDS",
    "MeasuredPurge",
    "PhaseResult",
    "PublishSource",
    "PurgeBenchmarkResult",
    "PurgeJob",
    "PurgeRun",
    "SeededKeys",
    "TimedPublishes",
    "count_seeded",
    "measure_purge",
    "missing_keys",
    "purge_job",
    "rows_by_kind",
    "run_purge_benchmark",
    "seed_keys",
]

DEFAULT_ROWS = 1_000_000
DEFAULT_CONCURRENCY = 8
DEFAULT_BASELINE_SECONDS = 10.0
DEFAULT_SAMPLE_SIZE = 32
#: Fresh keys seeded beside the expired ones, as a share of them; the purge must keep them.
FRESH_SHARE = 0.10
#: The issue's targets.
TARGET_PURGE_SECONDS = 10.0
TARGET_P99_RATIO = 2.0
#: The key server's purge job (and the lease it runs under).
PURGE_JOB = purge_job_name(Service.KEYSERVER)

#: Expired keys were uploaded this long ago (keys are kept 14 days), over one day of hours.
EXPIRED_AGE = timedelta(days=20)
_EXPIRED_HOURS = 24
#: Fresh keys were uploaded between 1 and 12 days ago, well inside the 14 days.
_FRESH_NEWEST_AGE = timedelta(days=1)
_FRESH_HOURS = 11 * 24
#: Seeded expired keys are older than this before "now", fresh ones younger.
_SEED_BOUNDARY_AGE = timedelta(days=16)

_LABEL = "publish"
_KEY_BYTES = 16
_SEED_CHUNK = 50_000
#: Keys per ``IN (...)`` when looking published keys up.
_LOOKUP_CHUNK = 1_000
#: Load before the purge starts, so the purge meets a steady stream of publishes.
_RAMP_SECONDS = 1.0
#: Warm-up rounds of ``concurrency`` publishes, after the first one alone.
_WARMUP_ROUNDS = 3
#: Publishes signed in advance for a phase: its expected count times this.
_HEADROOM = 1.5
_PHASE_TIME_LIMIT = 120.0
#: The purge phase's load stops after this even if the job still runs (it is reported).
_PURGE_LOAD_TIME_LIMIT = 3_600.0
_UNLIMITED_UNITS = 2**62
_REQUEST_TIMEOUT = 30.0
#: The benchmark holds the job's lease at most this long (the run takes minutes).
_LEASE_TTL = timedelta(hours=6)
_SQLITE_BUSY_TIMEOUT_MS = 60_000
_SEED_COLUMNS = (
    "key",
    "transmission_risk",
    "regions",
    "traveler",
    "interval_number",
    "interval_count",
    "created_at",
    "origin",
    "report_type",
    "days_since_symptom_onset",
)


# ---- seeding -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeededKeys:
    """What was seeded before the server started, and how to tell the groups apart."""

    expired: int
    fresh: int
    #: Expired keys were created before this, fresh ones at or after it.
    boundary: datetime
    #: Fresh keys were created before this; the benchmark's own publishes at or after it.
    fresh_until: datetime
    seconds: float


SeedRow = tuple[bytes, int, str, bool, int, int, datetime, str, str, int]


def _seed_rows(count: int, *, newest: datetime, hours: int) -> Iterator[SeedRow]:
    """``count`` keys uploaded as 14-key publishes, one per hour back from ``newest``.

    Each publish holds one key for each of the 14 days before its upload day (a day's
    period), a confirmed diagnosis with onset two days before the upload, and random key
    bytes, as a phone uploads after a positive test.
    """
    made = 0
    while made < count:
        size = min(_SEED_CHUNK, count - made)
        entropy = random_bytes(_KEY_BYTES * size)
        for offset in range(size):
            publish, day = divmod(made + offset, KEYS_PER_PUBLISH)
            created = newest - timedelta(hours=publish % hours)
            days_before = day + 1
            yield (
                entropy[offset * _KEY_BYTES : (offset + 1) * _KEY_BYTES],
                2,
                ",VN,",
                False,
                interval_number(utc_midnight(created) - timedelta(days=days_before)),
                INTERVALS_PER_DAY,
                created,
                "publish",
                ReportType.CONFIRMED.value,
                2 - days_before,
            )
        made += size


def _insert(engine: Engine, rows: Iterator[SeedRow]) -> None:
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(
                f"COPY keyserver_exposures ({', '.join(_SEED_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    with engine.begin() as connection:
        batch: list[dict[str, object]] = []
        for row in rows:
            batch.append(dict(zip(_SEED_COLUMNS, row, strict=True)))
            if len(batch) == _SEED_CHUNK:
                connection.execute(insert(Exposure), batch)
                batch = []
        if batch:
            connection.execute(insert(Exposure), batch)


def _analyze(engine: Engine) -> None:
    """Leave the table as a long-running server would: vacuumed, with planner statistics."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # VACUUM cannot run inside a transaction block.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text("VACUUM ANALYZE keyserver_exposures"))
        else:
            connection.execute(text("ANALYZE keyserver_exposures"))
            connection.commit()


def seed_keys(engine: Engine, expired: int, fresh: int, *, now: datetime) -> SeededKeys:
    """Store ``expired`` keys uploaded 20 days before ``now`` and ``fresh`` recent ones."""
    started = time.perf_counter()
    hour = truncate(now, timedelta(hours=1))
    _insert(engine, _seed_rows(expired, newest=hour - EXPIRED_AGE, hours=_EXPIRED_HOURS))
    _insert(engine, _seed_rows(fresh, newest=hour - _FRESH_NEWEST_AGE, hours=_FRESH_HOURS))
    _analyze(engine)
    return SeededKeys(
        expired=expired,
        fresh=fresh,
        boundary=now - _SEED_BOUNDARY_AGE,
        fresh_until=hour,
        seconds=round(time.perf_counter() - started, 3),
    )


def count_seeded(engine: Engine, seeded: SeededKeys) -> tuple[int, int]:
    """(expired keys still stored, fresh keys still stored)."""
    created = Exposure.created_at
    with engine.connect() as connection:
        expired = connection.scalar(
            select(func.count()).select_from(Exposure).where(created < seeded.boundary)
        )
        fresh = connection.scalar(
            select(func.count())
            .select_from(Exposure)
            .where(created >= seeded.boundary, created < seeded.fresh_until)
        )
    return expired or 0, fresh or 0


def missing_keys(engine: Engine, publishes: Sequence[PreparedPublish]) -> int:
    """How many keys of ``publishes`` the database does not hold."""
    keys = [key for prepared in publishes for key, _ in prepared.keys]
    found = 0
    with engine.connect() as connection:
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            found += (
                connection.scalar(
                    select(func.count()).select_from(Exposure).where(Exposure.key.in_(chunk))
                )
                or 0
            )
    return len(keys) - found


# ---- the job's lease -----------------------------------------------------------------------


def _lease_name(job_name: str) -> str:
    # exposure.jobs.run_job serializes a job under this lease.
    return f"job:{job_name}"


def _hold_lease(sessions: SessionFactory, job_name: str, holder: str | None = None) -> str:
    """Take the job's lease so the server's scheduler skips the job; return the holder.

    Given the ``holder`` that took it, renews the lease, which fails if it was lost.
    """
    holder = holder or new_holder_token()
    with unit_of_work(sessions) as session:
        lease = acquire_lease(
            session,
            name=_lease_name(job_name),
            holder=holder,
            ttl=_LEASE_TTL,
            now=datetime.now(UTC),
        )
    if lease is None:
        raise BenchmarkError(f"the lease of {job_name} is held by someone else")
    return holder


def _release_lease(sessions: SessionFactory, job_name: str, holder: str) -> None:
    with unit_of_work(sessions) as session:
        if not release_lease(session, name=_lease_name(job_name), holder=holder):
            raise BenchmarkError(f"the benchmark lost the lease of {job_name}")


# ---- the purge job ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurgeJob:
    """The key server's purge job, and the kinds of its summary that count key rows."""

    job: Job
    key_kinds: frozenset[str]
    #: Closes what building the job opened (the key server's bundle).
    close: Callable[[], None] = lambda: None


def purge_job(server: BenchServer, sessions: SessionFactory) -> PurgeJob:
    """The key server's purge job, from the key server's bundle opened with the server's
    own settings, as ``exposure jobs run`` opens it; its lease is taken on ``sessions``.

    The server's environment decides everything but the retention settings, which come from
    this process's (``EXPOSURE_RETENTION_BATCH_SIZE`` and the like apply to the run).
    """
    settings = server_settings(server)
    deployment = open_deployment(
        replace(settings, retention=RetentionSettings()), [Service.KEYSERVER]
    )
    retention = deployment.keyserver.retention
    job = replace(retention.job(), session_factory=sessions)
    if job.name != PURGE_JOB:
        raise BenchmarkError(f"the key server's purge job is {job.name!r}, not {PURGE_JOB!r}")
    kinds = frozenset(
        policy.kind
        for policy in retention.policies
        if policy.purged and policy.tables == (Exposure.__tablename__,)
    )
    return PurgeJob(job, kinds, deployment.close)


def rows_by_kind(summary: Mapping[str, Any]) -> dict[str, int]:
    """Rows deleted per kind, from the job's summary."""
    rows: dict[str, int] = {}
    kinds = summary.get("kinds")
    if isinstance(kinds, list):
        for outcome in kinds:
            if isinstance(outcome, Mapping):
                kind, count = outcome.get("kind"), outcome.get("rows")
                if isinstance(kind, str) and isinstance(count, int):
                    rows[kind] = count
    return rows


# ---- publishing -------------------------------------------------------------------------------


@dataclass
class PublishSource:
    """Publishes to send, signed in advance; one is signed on the spot if they run out."""

    authority: BenchAuthority
    host: str
    ready: deque[PreparedPublish] = field(default_factory=deque)
    #: Publishes signed during a measured phase because the advance ones ran out.
    signed_on_the_spot: int = 0

    def prepare(self, count: int) -> None:
        """Sign ``count`` more publishes now (their certificates live 15 minutes)."""
        self.ready.extend(
            publish_requests(self.authority, count, host=self.host, now=datetime.now(UTC))
        )

    def take(self) -> PreparedPublish:
        if self.ready:
            return self.ready.popleft()
        # Signing one costs a fraction of a millisecond of this process's CPU.
        self.signed_on_the_spot += 1
        return publish_requests(self.authority, 1, host=self.host, now=datetime.now(UTC))[0]


def _check_answer(client: Client, response: Response) -> None:
    """Fail the unit unless the answer is 200 with every key inserted (as bench publish)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status != 200:
        code = body.get("code") if isinstance(body, dict) else None
        client.fail(_LABEL, code if isinstance(code, str) and code else f"http_{response.status}")
    inserted = body.get("insertedExposures") if isinstance(body, dict) else None
    if inserted != KEYS_PER_PUBLISH:
        client.fail(_LABEL, f"inserted_{inserted}")


@dataclass
class TimedPublishes:
    """The publish unit: notes when each publish was sent and how it went."""

    source: PublishSource
    #: (sent at, latency) of each accepted publish, in ``time.perf_counter`` seconds.
    accepted: list[tuple[float, float]] = field(default_factory=list)
    #: When each publish that failed was sent.
    failed: list[float] = field(default_factory=list)
    acknowledged: list[PreparedPublish] = field(default_factory=list)

    async def __call__(self, client: Client, _index: int) -> None:
        prepared = self.source.take()
        sent_at = time.perf_counter()
        try:
            response = await client.send(prepared.request)
            _check_answer(client, response)
        except UnitFailed:
            self.failed.append(sent_at)
            raise
        client.accept(_LABEL, response)
        self.accepted.append((sent_at, response.latency))
        self.acknowledged.append(prepared)


@dataclass(frozen=True, slots=True)
class PurgeRun:
    """One run of the purge job: when it ran (``time.perf_counter``) and what it said."""

    started: float
    finished: float
    summary: Mapping[str, Any]
    cpu_before: CpuSnapshot
    cpu_after: CpuSnapshot

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True, slots=True)
class MeasuredPurge:
    """The raw outcome of :func:`measure_purge`."""

    warmup: TimedPublishes
    warmup_runs: list[LoadRun]
    baseline: TimedPublishes
    baseline_run: LoadRun
    baseline_cpu: CpuUsage
    purge_phase: TimedPublishes
    purge_phase_run: LoadRun
    purge: PurgeRun
    #: False if the load hit its time limit before the job returned.
    load_covered_purge: bool

    @property
    def acknowledged(self) -> list[PreparedPublish]:
        return [
            *self.warmup.acknowledged,
            *self.baseline.acknowledged,
            *self.purge_phase.acknowledged,
        ]


def _count(units: int, rate: float, seconds: float) -> int:
    return max(units, math.ceil(rate * seconds * _HEADROOM))


async def measure_purge(
    server: BenchServer,
    source: PublishSource,
    purge: Callable[[], PurgeRun],
    *,
    concurrency: int,
    baseline_seconds: float,
    ramp_seconds: float = _RAMP_SECONDS,
    expected_purge_seconds: float = TARGET_PURGE_SECONDS,
) -> MeasuredPurge:
    """Warm up, publish for ``baseline_seconds``, then publish while ``purge()`` runs.

    ``purge`` runs in a thread once the purge phase's load has run ``ramp_seconds``; the
    load stops (letting requests in flight finish) when it returns. Publishes for
    ``expected_purge_seconds`` are signed in advance; more are signed as they are needed.
    """
    async with LoadGenerator(
        server.host, server.port, connections=concurrency, request_timeout=_REQUEST_TIMEOUT
    ) as generator:
        warmup = TimedPublishes(source)
        # The first publish alone: first uses (a revision key made on demand) may race.
        warmup_runs = [
            await generator.run(warmup, units=1, time_limit=_PHASE_TIME_LIMIT, connections=1),
            await generator.run(
                warmup, units=concurrency * _WARMUP_ROUNDS, time_limit=_PHASE_TIME_LIMIT
            ),
        ]
        last = warmup_runs[-1]
        rate = last.units_completed / last.seconds if last.seconds > 0 else 0.0

        source.prepare(_count(concurrency, rate, baseline_seconds))
        baseline = TimedPublishes(source)
        before = cpu_snapshot(server.pid, server.database)
        baseline_run = await generator.run(
            baseline, units=_UNLIMITED_UNITS, time_limit=baseline_seconds
        )
        after = cpu_snapshot(server.pid, server.database)

        source.prepare(_count(concurrency, rate, ramp_seconds + expected_purge_seconds))
        purge_phase = TimedPublishes(source)
        stop = asyncio.Event()
        load = asyncio.ensure_future(
            generator.run(
                purge_phase, units=_UNLIMITED_UNITS, time_limit=_PURGE_LOAD_TIME_LIMIT, stop=stop
            )
        )
        try:
            await asyncio.sleep(ramp_seconds)
            purge_run = await asyncio.to_thread(purge)
            covered = not load.done()
        finally:
            stop.set()
            purge_phase_run = await load
    return MeasuredPurge(
        warmup=warmup,
        warmup_runs=warmup_runs,
        baseline=baseline,
        baseline_run=baseline_run,
        baseline_cpu=CpuUsage.between(before, after, baseline_run.requests),
        purge_phase=purge_phase,
        purge_phase_run=purge_phase_run,
        purge=purge_run,
        load_covered_purge=covered,
    )


# ---- the result ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """Publishes sent in one span of time, and how they went.

    For the purge, the span is the job's run: ``publishes`` counts those sent while it ran
    (whenever they were answered), ``seconds`` is the job's wall time.
    """

    publishes: int
    accepted: int
    failed: int
    seconds: float
    publishes_per_second: float
    latency: LatencySummary
    cpu: CpuUsage


def _window(timed: TimedPublishes, run: PurgeRun) -> PhaseResult:
    """The publishes of the purge phase that were sent while the job ran."""
    latencies = [latency for sent, latency in timed.accepted if run.started <= sent < run.finished]
    failed = sum(1 for sent in timed.failed if run.started <= sent < run.finished)
    seconds = run.seconds
    return PhaseResult(
        publishes=len(latencies) + failed,
        accepted=len(latencies),
        failed=failed,
        seconds=round(seconds, 3),
        publishes_per_second=round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        latency=summarize_latencies(latencies),
        cpu=CpuUsage.between(run.cpu_before, run.cpu_after, len(latencies) + failed),
    )


def _baseline(timed: TimedPublishes, run: LoadRun, cpu: CpuUsage) -> PhaseResult:
    return PhaseResult(
        publishes=run.units_started,
        accepted=run.units_completed,
        failed=run.units_failed,
        seconds=round(run.seconds, 3),
        publishes_per_second=(
            round(run.units_completed / run.seconds, 1) if run.seconds > 0 else 0.0
        ),
        latency=summarize_latencies([latency for _, latency in timed.accepted]),
        cpu=cpu,
    )


@dataclass(frozen=True, slots=True)
class PurgeBenchmarkResult:
    """One run: ``rows_deleted`` expired keys purged in ``purge_seconds`` under publish load.

    ``rows_deleted`` is counted in the database (expired keys before the purge minus those
    after); ``job_rows`` is what the job's summary says it deleted of the kinds stored as
    keys (``None`` if it names none of them), ``job_rows_by_kind`` every kind's rows, and
    ``job_summary`` the summary itself. ``p99_ratio`` is the
    publish p99 during the purge over the baseline's. ``purge_phase_*`` cover the whole
    purge phase's load (the ramp before the job and the requests still in flight after
    it); ``errors`` counts every failed publish of the baseline and purge phases by
    ``"<phase> publish/<code>"``. ``load_average`` is the machine's 1, 5 and 15 minute
    load average when the benchmark started: the machine may be shared.
    """

    database: str
    rows: int
    fresh_rows: int
    seed_seconds: float
    concurrency: int
    server_workers: int
    purge_seconds: float
    rows_deleted: int
    rows_per_second: float
    job_rows: int | None
    job_rows_by_kind: dict[str, int]
    job_summary: dict[str, Any]
    expired_rows_left: int
    fresh_rows_kept: int
    baseline: PhaseResult
    during_purge: PhaseResult
    p99_ratio: float
    purge_phase_publishes: int
    purge_phase_failed: int
    load_covered_purge: bool
    errors: dict[str, int]
    warmup_publishes: int
    warmup_errors: dict[str, int]
    published_keys_checked: int
    signed_on_the_spot: int
    target_purge_seconds: float
    target_p99_ratio: float
    purge_within_target: bool
    p99_within_target: bool
    load_average: tuple[float, float, float] | None
    event_loop: str
    machine: MachineInfo
    server_log_tail: str = ""

    @property
    def targets_met(self) -> bool:
        return self.purge_within_target and self.p99_within_target

    @property
    def publishes_failed(self) -> int:
        return sum(self.errors.values()) + sum(self.warmup_errors.values())

    @property
    def clean(self) -> bool:
        """No publish failed, every expired key went, no fresh one did, the job said so."""
        return (
            self.publishes_failed == 0
            and self.expired_rows_left == 0
            and self.fresh_rows_kept == self.fresh_rows
            and self.rows_deleted == self.rows == self.job_rows
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        data = asdict(self)
        data["targets_met"] = self.targets_met
        data["publishes_failed"] = self.publishes_failed
        data["clean"] = self.clean
        return data


# ---- the benchmark ----------------------------------------------------------------------------


def _keyserver_url(setup: ServerSetup) -> str:
    settings = ExposureSettings(data_dir=setup.data_dir, database_url=setup.database_url)
    return settings.database_url_for(Service.KEYSERVER)


def _engine(url: str) -> Engine:
    return create_database_engine(url, sqlite_busy_timeout_ms=_SQLITE_BUSY_TIMEOUT_MS)


def _registration(authority: BenchAuthority, key_file: str) -> list[list[str]]:
    return [
        [
            *("admin", "health-authority", "add"),
            *("--issuer", authority.issuer, "--audience", authority.audience),
            *("--name", "exposure bench", "--public-key", key_file),
            *("--kid", authority.kid, "--json"),
        ],
        [
            *("admin", "app", "add", authority.app_id),
            *("--health-authority", authority.issuer, "--region", authority.region, "--json"),
        ],
    ]


def _prefixed(prefix: str, errors: Mapping[str, int]) -> dict[str, int]:
    return {f"{prefix} {name}": count for name, count in errors.items()}


def _load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


def run_purge_benchmark(
    rows: int = DEFAULT_ROWS,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    database: Database = Database.POSTGRESQL,
    database_url: str | None = None,
    server_workers: int = 1,
    baseline_seconds: float = DEFAULT_BASELINE_SECONDS,
    fresh_share: float = FRESH_SHARE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> PurgeBenchmarkResult:
    """Seed ``rows`` expired keys, then time one purge against a baseline of publishes.

    Raises :class:`ValueError` for meaningless arguments, :class:`BenchmarkError` if the
    server cannot be started or set up or the job cannot run, and
    :class:`PublishMismatchError` if the server did not store what it acknowledged.
    """
    if rows < 1 or concurrency < 1 or sample_size < 1:
        raise ValueError("rows, concurrency and sample_size must be positive")
    if not 0 < baseline_seconds <= _PHASE_TIME_LIMIT:
        raise ValueError(f"baseline_seconds must be within (0, {_PHASE_TIME_LIMIT:.0f}]")
    if not 0 <= fresh_share <= 1:
        raise ValueError("fresh_share must be within [0, 1]")
    if database_url is not None and database is not Database.POSTGRESQL:
        raise ValueError("a database URL is only used with PostgreSQL")
    check_server_workers(server_workers)

    load_average = _load_average()
    authority = BenchAuthority.generate()
    fresh = math.ceil(rows * fresh_share)
    with ExitStack() as stack:

        def prepare(setup: ServerSetup) -> tuple[ExposureCommands, SeededKeys, str]:
            # The CLI loads while the keys are seeded; its commands run once the server is up.
            commands = stack.enter_context(ExposureCommands(setup.environment))
            setup.data_dir.mkdir(parents=True, exist_ok=True)
            engine = _engine(_keyserver_url(setup))
            try:
                upgrade_service(engine, Service.KEYSERVER)
                holder = _hold_lease(make_session_factory(engine), PURGE_JOB)
                seeded = seed_keys(engine, rows, fresh, now=datetime.now(UTC))
            finally:
                engine.dispose()
            return commands, seeded, holder

        server, (commands, seeded, holder) = stack.enter_context(
            running_server(database, database_url, server_workers, prepare)
        )
        keyserver_url = server.database_url_for(Service.KEYSERVER)
        engine = _engine(keyserver_url)
        stack.callback(engine.dispose)
        sessions = make_session_factory(engine)
        key_file = server.scratch / "bench-authority.pem"
        key_file.write_text(authority.public_key_pem(), encoding="ascii")
        commands.run(*_registration(authority, str(key_file)))
        purging = purge_job(server, sessions)
        stack.callback(purging.close)
        expired_before, fresh_before = count_seeded(engine, seeded)
        if (expired_before, fresh_before) != (seeded.expired, seeded.fresh):
            raise BenchmarkError(
                f"seeded {seeded.expired:,} expired and {seeded.fresh:,} fresh keys, "
                f"found {expired_before:,} and {fresh_before:,}"
            )

        def purge() -> PurgeRun:
            # The job's pass, under the lease held since before the server started: never
            # released around the run, so the server's scheduler cannot slip in before it
            # (and run instead) or after it (and purge what a faulty run left).
            _hold_lease(sessions, PURGE_JOB, holder)
            before = cpu_snapshot(server.pid, server.database)
            started = time.perf_counter()
            try:
                summary = purging.job.run(datetime.now(UTC))
            except Exception as error:  # the job's failure voids the run, with its reason
                reason = f"{type(error).__name__}: {error}"
                raise BenchmarkError(f"{PURGE_JOB} failed: {reason}") from error
            finished = time.perf_counter()
            after = cpu_snapshot(server.pid, server.database)
            return PurgeRun(started, finished, dict(summary), before, after)

        source = PublishSource(authority, server.host_header)
        source.prepare(concurrency * _WARMUP_ROUNDS + 1)
        measured = run_event_loop(
            lambda: measure_purge(
                server,
                source,
                purge,
                concurrency=concurrency,
                baseline_seconds=baseline_seconds,
            )
        )
        expired_left, fresh_kept = count_seeded(engine, seeded)
        # Still ours after the count, so no run of the server's came before it.
        _release_lease(sessions, PURGE_JOB, holder)
        acknowledged = measured.acknowledged
        missing = missing_keys(engine, acknowledged)
        if missing:
            raise PublishMismatchError(
                f"{missing:,} keys of {len(acknowledged):,} acknowledged publishes are missing"
            )
        check_stored_keys(keyserver_url, acknowledged, sample_size)
        warmup_errors: dict[str, int] = {}
        for outcome in measured.warmup_runs:
            for name, count in outcome.errors.items():
                warmup_errors[name] = warmup_errors.get(name, 0) + count
        errors = {
            **_prefixed("baseline", measured.baseline_run.errors),
            **_prefixed("purge", measured.purge_phase_run.errors),
        }
        tail = log_tail(server.log_path) if errors or warmup_errors else ""

    purge_run = measured.purge
    baseline = _baseline(measured.baseline, measured.baseline_run, measured.baseline_cpu)
    during = _window(measured.purge_phase, purge_run)
    purge_seconds = purge_run.seconds
    rows_deleted = expired_before - expired_left
    base_p99 = baseline.latency.p99_ms
    ratio = round(during.latency.p99_ms / base_p99, 3) if base_p99 > 0 else 0.0
    phase_run = measured.purge_phase_run
    by_kind = rows_by_kind(purge_run.summary)
    key_rows = [count for kind, count in by_kind.items() if kind in purging.key_kinds]
    return PurgeBenchmarkResult(
        database=database.value,
        rows=rows,
        fresh_rows=fresh,
        seed_seconds=seeded.seconds,
        concurrency=concurrency,
        server_workers=server_workers,
        purge_seconds=round(purge_seconds, 3),
        rows_deleted=rows_deleted,
        rows_per_second=round(rows_deleted / purge_seconds, 1) if purge_seconds > 0 else 0.0,
        job_rows=sum(key_rows) if key_rows else None,
        job_rows_by_kind=by_kind,
        job_summary=dict(purge_run.summary),
        expired_rows_left=expired_left,
        fresh_rows_kept=fresh_kept,
        baseline=baseline,
        during_purge=during,
        p99_ratio=ratio,
        purge_phase_publishes=phase_run.units_started,
        purge_phase_failed=phase_run.units_failed,
        load_covered_purge=measured.load_covered_purge,
        errors=errors,
        warmup_publishes=sum(outcome.units_started for outcome in measured.warmup_runs),
        warmup_errors=dict(sorted(warmup_errors.items())),
        published_keys_checked=KEYS_PER_PUBLISH * len(acknowledged),
        signed_on_the_spot=source.signed_on_the_spot,
        target_purge_seconds=TARGET_PURGE_SECONDS,
        target_p99_ratio=TARGET_P99_RATIO,
        purge_within_target=purge_seconds < TARGET_PURGE_SECONDS,
        p99_within_target=0 < ratio < TARGET_P99_RATIO,
        load_average=load_average,
        event_loop=event_loop_name(),
        machine=machine_info(),
        server_log_tail=tail,
    )
