"""How many complete, valid v1 publishes an ``exposure serve`` accepts per second, over HTTP.

A publish is what one phone uploads after a positive test (google-keyserver.md §1.2):
fourteen Temporary Exposure Keys, one for each of the fourteen days before today, with a
verification certificate that binds them (its ``tekmac`` claim is the HMAC of the keys
under the secret sent as ``hmacKey``) and about a kilobyte of padding. The benchmark is its
own health authority: it makes a P-256 key, registers it and an app with the server through
``exposure admin health-authority add`` and ``exposure admin app add`` (as an operator
would), and signs every certificate itself. Every body is built and signed before the
timed phase, so the load generator (:mod:`benchmarks.loadgen`) only writes bytes.

Nothing is trusted on its word: a publish counts only if the answer is 200 with
``insertedExposures`` equal to the keys sent, and after the run the server's database must
hold every key of every acknowledged publish (and a sample of them must carry the intervals
sent and the certificate's report type), so a server that answers fast but stores nothing
makes the run fail. Then ``GET /health`` runs with the same generator and concurrency, as
many requests as the publishes: ``cost_ratio`` is a publish's server CPU over a
``/health``'s, both measured in this run (the limit is 2.5).

The server (``exposure serve keyserver``: the key server alone, as deployed), its data and
its PostgreSQL schema are the benchmark's own, as in :mod:`benchmarks.harness`.
Certificates live 15 minutes, so the timed phase may last at most :data:`MAX_TIME_LIMIT`
seconds.

Example::

    result = run_publish_benchmark(2_000, concurrency=32)
    print(f"{result.publishes_per_second:,.0f} publishes/s, "
          f"{result.cost_ratio}x the server CPU of /health")
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from benchmarks.harness import (
    DEFAULT_POSTGRES_URL,
    BenchmarkError,
    BenchServer,
    CpuUsage,
    Database,
    ExposureCommands,
    HealthResult,
    LatencySummary,
    ServerSetup,
    check_server_workers,
    cost_ratio,
    cpu_snapshot,
    log_tail,
    measure_health,
    running_server,
    summarize_latencies,
)
from benchmarks.loadgen import (
    Client,
    LoadGenerator,
    LoadRun,
    Request,
    event_loop_name,
    json_request,
    run_event_loop,
)
from benchmarks.rpi import MachineInfo, machine_info
from crypto.randomness import random_below, random_bytes
from crypto.tekmac import SignedKey, compute_tekmac
from crypto.tokens import sign_jwt
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.settings import Service
from exposure.tek import INTERVALS_PER_DAY, ReportType, interval_number, utc_midnight
from keyserver.models import Exposure

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_PUBLISHES",
    "DEFAULT_TIME_LIMIT",
    "KEYS_PER_PUBLISH",
    "MAX_TIME_LIMIT",
    "BenchAuthority",
    "MeasuredPublishes",
    "PreparedPublish",
    "PublishBenchmarkResult",
    "PublishMismatchError",
    "PublishTally",
    "check_stored_keys",
    "measure_publishes",
    "publish_payload",
    "publish_requests",
    "run_publish_benchmark",
]

DEFAULT_PUBLISHES = 2_000
DEFAULT_CONCURRENCY = 32
DEFAULT_TIME_LIMIT = 300.0
#: Certificates expire 15 minutes after they are signed; the timed phase must end before.
MAX_TIME_LIMIT = 600.0
#: One key for each of the 14 days before today, as a phone uploads after a positive test.
KEYS_PER_PUBLISH = 14
#: Random bytes of padding: 1,024 characters once in base64.
PADDING_BYTES = 768
CERTIFICATE_LIFETIME = timedelta(minutes=15)
#: Publishes whose stored keys are read back and compared after the run.
DEFAULT_SAMPLE_SIZE = 32

_LABEL = "publish"
_KEY_BYTES = 16
_HMAC_SECRET_BYTES = 32
#: Symptoms began this many days ago: every key is within 14 days of the onset.
_SYMPTOM_DAYS_AGO = 2
_REQUEST_TIMEOUT = 30.0


class PublishMismatchError(BenchmarkError):
    """The server acknowledged keys it did not store as sent: the run is void."""


# ---- the benchmark's health authority and its publishes ----------------------------------


@dataclass(frozen=True, slots=True)
class BenchAuthority:
    """The health authority the benchmark plays: its signing key, names and app."""

    private_key: ec.EllipticCurvePrivateKey
    issuer: str = "exposure-bench"
    audience: str = "exposure-bench-keyserver"
    kid: str = "bench-v1"
    app_id: str = "org.exposure.bench"
    region: str = "VN"

    @classmethod
    def generate(cls) -> BenchAuthority:
        """A new authority with a fresh P-256 key."""
        return cls(private_key=ec.generate_private_key(ec.SECP256R1()))

    def public_key_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )


def _base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def publish_payload(authority: BenchAuthority, *, now: datetime) -> dict[str, Any]:
    """One complete v1 publish body, with a certificate ``authority`` signed ``now``.

    14 random keys (16 bytes each) start at the UTC midnights of the 14 days before
    ``now``'s day and last a day (rolling period 144, transmission risk 0). The
    certificate (ES256, header ``kid``) claims a confirmed diagnosis, a symptom onset two
    days ago and the ``tekmac`` of exactly these keys under the random secret sent as
    ``hmacKey``; it is valid from ``now`` for 15 minutes.
    """
    midnight = utc_midnight(now)
    signed_keys = [
        SignedKey(
            key=_base64(random_bytes(_KEY_BYTES)),
            rolling_start_number=interval_number(midnight - timedelta(days=day)),
            rolling_period=INTERVALS_PER_DAY,
            transmission_risk=0,
        )
        for day in range(1, KEYS_PER_PUBLISH + 1)
    ]
    secret = random_bytes(_HMAC_SECRET_BYTES)
    tekmac = compute_tekmac(secret, signed_keys)
    issued_at = int(now.timestamp())
    claims = {
        "iss": authority.issuer,
        "aud": authority.audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(CERTIFICATE_LIFETIME.total_seconds()),
        "reportType": ReportType.CONFIRMED.value,
        "symptomOnsetInterval": interval_number(midnight - timedelta(days=_SYMPTOM_DAYS_AGO)),
        "tekmac": _base64(tekmac),
    }
    return {
        "temporaryExposureKeys": [
            {
                "key": key.key,
                "rollingStartNumber": key.rolling_start_number,
                "rollingPeriod": key.rolling_period,
                "transmissionRisk": key.transmission_risk,
            }
            for key in signed_keys
        ],
        "healthAuthorityID": authority.app_id,
        "verificationPayload": sign_jwt(authority.private_key, claims, kid=authority.kid),
        "hmacKey": _base64(secret),
        "padding": _base64(random_bytes(PADDING_BYTES)),
    }


@dataclass(frozen=True, slots=True)
class PreparedPublish:
    """A publish ready to send, with the keys it carries (for the check afterwards)."""

    request: Request
    #: (key bytes, rollingStartNumber) of each key.
    keys: tuple[tuple[bytes, int], ...]


def publish_requests(
    authority: BenchAuthority, count: int, *, host: str, now: datetime
) -> list[PreparedPublish]:
    """``count`` distinct publishes to ``POST /v1/publish`` on ``host``, signed ``now``."""
    prepared = []
    for _ in range(count):
        payload = publish_payload(authority, now=now)
        keys = tuple(
            (base64.b64decode(key["key"]), int(key["rollingStartNumber"]))
            for key in payload["temporaryExposureKeys"]
        )
        request = json_request("POST", "/v1/publish", payload, host=host, label=_LABEL)
        prepared.append(PreparedPublish(request, keys))
    return prepared


# ---- sending them ------------------------------------------------------------------------


def _rejection(status: int, body: object) -> str:
    if isinstance(body, dict):
        code = body.get("code")
        if isinstance(code, str) and code:
            return code
    return f"http_{status}"


@dataclass
class PublishTally:
    """The publish unit: sends ``publishes[offset + index]``, notes the acknowledged ones."""

    publishes: Sequence[PreparedPublish]
    #: Where the next run's unit 0 starts (each run numbers its units from 0).
    offset: int = 0
    accepted: list[PreparedPublish] = field(default_factory=list)

    async def __call__(self, client: Client, index: int) -> None:
        prepared = self.publishes[self.offset + index]
        response = await client.send(prepared.request)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status != 200:
            client.fail(_LABEL, _rejection(response.status, body))
        inserted = body.get("insertedExposures") if isinstance(body, dict) else None
        if inserted != KEYS_PER_PUBLISH:
            # A 200 that stored fewer keys (partial_failure) or did not say is no publish.
            client.fail(_LABEL, f"inserted_{inserted}")
        client.accept(_LABEL, response)
        self.accepted.append(prepared)


@dataclass(frozen=True, slots=True)
class MeasuredPublishes:
    """The raw outcome of :func:`measure_publishes`."""

    warmup_publishes: int
    warmup_errors: dict[str, int]
    run: LoadRun
    cpu: CpuUsage
    health: HealthResult
    #: Every publish the server acknowledged, warm-up included.
    acknowledged: list[PreparedPublish]


async def measure_publishes(
    server: BenchServer,
    warmup: Sequence[PreparedPublish],
    publishes: Sequence[PreparedPublish],
    *,
    concurrency: int,
    time_limit: float,
) -> MeasuredPublishes:
    """Send ``warmup`` (not measured; the first alone), then ``publishes``, then /health.

    Works against any server that answers ``POST /v1/publish`` and ``GET /health``.
    """
    async with LoadGenerator(
        server.host, server.port, connections=concurrency, request_timeout=_REQUEST_TIMEOUT
    ) as generator:
        warm = PublishTally(warmup)
        warmups: list[LoadRun] = []
        # The first publish alone: first uses (a revision key made on demand) may race.
        first = min(1, len(warmup))
        for units, connections in ((first, 1), (len(warmup) - first, concurrency)):
            if units > 0:
                warmups.append(
                    await generator.run(
                        warm, units=units, time_limit=time_limit, connections=connections
                    )
                )
                warm.offset += units
        timed = PublishTally(publishes)
        before = cpu_snapshot(server.pid, server.database)
        run = await generator.run(timed, units=len(publishes), time_limit=time_limit)
        after = cpu_snapshot(server.pid, server.database)
        health = await measure_health(
            generator, server, requests=max(run.requests, 1), time_limit=time_limit
        )
    warmup_errors: Counter[str] = Counter()
    for outcome in warmups:
        warmup_errors.update(outcome.errors)
    return MeasuredPublishes(
        warmup_publishes=sum(outcome.units_started for outcome in warmups),
        warmup_errors=dict(sorted(warmup_errors.items())),
        run=run,
        cpu=CpuUsage.between(before, after, run.requests),
        health=health,
        acknowledged=warm.accepted + timed.accepted,
    )


# ---- checking what the server stored ---------------------------------------------------


def _sample(items: Sequence[PreparedPublish], size: int) -> list[PreparedPublish]:
    picked: set[int] = set()
    while len(picked) < min(size, len(items)):
        picked.add(random_below(len(items)))
    return [items[index] for index in sorted(picked)]


def check_stored_keys(
    keyserver_url: str, acknowledged: Sequence[PreparedPublish], sample_size: int
) -> int:
    """Compare the key server's database with the acknowledged publishes; return the count.

    The database must hold at least every key acknowledged (a publish that failed on the
    wire may still have been stored), and every key of ``sample_size`` sampled publishes
    must be there with the interval sent, a day's period and a confirmed report type.
    Raises :class:`PublishMismatchError` otherwise.
    """
    engine = create_database_engine(keyserver_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            stored = session.scalar(select(func.count()).select_from(Exposure)) or 0
            expected = KEYS_PER_PUBLISH * len(acknowledged)
            if stored < expected:
                raise PublishMismatchError(
                    f"the server acknowledged {expected:,} keys but stores {stored:,}"
                )
            for prepared in _sample(acknowledged, sample_size):
                by_key = {key: start for key, start in prepared.keys}
                rows = session.scalars(select(Exposure).where(Exposure.key.in_(by_key))).all()
                if len(rows) != len(by_key):
                    raise PublishMismatchError("keys of an acknowledged publish are missing")
                for row in rows:
                    if (
                        row.interval_number != by_key[row.key]
                        or row.interval_count != INTERVALS_PER_DAY
                        or row.report_type != ReportType.CONFIRMED.value
                    ):
                        raise PublishMismatchError("a stored key differs from the key sent")
    finally:
        engine.dispose()
    return stored


# ---- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishBenchmarkResult:
    """One run: ``publishes_accepted`` of ``publishes_requested`` in ``seconds``.

    A publish is accepted only if the answer is 200 with ``insertedExposures`` equal to
    :data:`KEYS_PER_PUBLISH`. ``errors`` counts the others by ``"publish/<code>"`` (the
    answer's ``code``, ``http_<status>`` without one, ``inserted_<n>`` for a 200 that
    stored fewer keys, or the exception's name when no answer came back). ``health_share``
    is publishes per second over ``/health`` requests per second. ``stored_exposures`` is
    what the key server's database holds afterwards (warm-up included). ``cpu`` covers the
    publish phase; ``cpu.client_per_request_ms`` is what the load generator itself cost.
    """

    database: str
    publishes_requested: int
    publishes_attempted: int
    publishes_accepted: int
    publishes_failed: int
    keys_per_publish: int
    concurrency: int
    server_workers: int
    seconds: float
    publishes_per_second: float
    timed_out: bool
    latency: LatencySummary
    errors: dict[str, int]
    warmup_publishes: int
    warmup_errors: dict[str, int]
    health: HealthResult
    health_share: float
    #: Server CPU per publish over server CPU per ``/health`` (the issue's limit is 2.5).
    cost_ratio: float | None
    stored_exposures: int
    checked_publishes: int
    cpu: CpuUsage
    event_loop: str
    machine: MachineInfo
    server_log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _registration(authority: BenchAuthority, key_file: Path) -> list[list[str]]:
    """The operator's commands that trust ``authority`` and authorize its app."""
    return [
        [
            *("admin", "health-authority", "add"),
            *("--issuer", authority.issuer, "--audience", authority.audience),
            *("--name", "exposure bench", "--public-key", str(key_file)),
            *("--kid", authority.kid, "--json"),
        ],
        [
            *("admin", "app", "add", authority.app_id),
            *("--health-authority", authority.issuer, "--region", authority.region, "--json"),
        ],
    ]


def _check_registration(authority: BenchAuthority, printed: list[dict[str, Any]]) -> None:
    added, app = printed
    if added.get("issuer") != authority.issuer or added.get("kid") != authority.kid:
        raise BenchmarkError("exposure admin health-authority add printed another authority")
    if str(app.get("app_id", "")).lower() != authority.app_id.lower():
        raise BenchmarkError("exposure admin app add printed another app")


def run_publish_benchmark(
    publishes: int = DEFAULT_PUBLISHES,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    database: Database = Database.SQLITE,
    database_url: str | None = None,
    server_workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> PublishBenchmarkResult:
    """Start a server, send ``publishes`` valid publishes from ``concurrency`` connections.

    ``concurrency`` warm-up publishes run first and are not counted. The publish phase and
    the ``/health`` phase each stop after ``time_limit`` seconds (at most
    :data:`MAX_TIME_LIMIT`, as certificates expire).

    Raises :class:`ValueError` for meaningless arguments, :class:`BenchmarkError` if the
    server cannot be started or set up, and :class:`PublishMismatchError` if the server did
    not store what it acknowledged.
    """
    if publishes < 1 or concurrency < 1 or sample_size < 1:
        raise ValueError("publishes, concurrency and sample_size must be positive")
    if not 0 < time_limit <= MAX_TIME_LIMIT:
        raise ValueError(f"time_limit must be within (0, {MAX_TIME_LIMIT:.0f}] seconds")
    if database_url is not None and database is not Database.POSTGRESQL:
        raise ValueError("a database URL is only used with PostgreSQL")
    check_server_workers(server_workers)

    authority = BenchAuthority.generate()
    with ExitStack() as stack:

        def preload(setup: ServerSetup) -> ExposureCommands:
            # The CLI loads while the server starts; the commands run once it answers.
            return stack.enter_context(ExposureCommands(setup.environment))

        server, commands = stack.enter_context(
            running_server(database, database_url, server_workers, preload, target="keyserver")
        )
        key_file = server.scratch / "bench-authority.pem"
        key_file.write_text(authority.public_key_pem(), encoding="ascii")
        _check_registration(authority, commands.run(*_registration(authority, key_file)))
        prepared = publish_requests(
            authority, concurrency + publishes, host=server.host_header, now=datetime.now(UTC)
        )
        measured = run_event_loop(
            lambda: measure_publishes(
                server,
                prepared[:concurrency],
                prepared[concurrency:],
                concurrency=concurrency,
                time_limit=time_limit,
            )
        )
        stored = check_stored_keys(
            server.database_url_for(Service.KEYSERVER), measured.acknowledged, sample_size
        )
        run = measured.run
        tail = log_tail(server.log_path) if run.units_failed or measured.warmup_errors else ""

    seconds = run.seconds
    per_second = round(run.units_completed / seconds, 1) if seconds > 0 else 0.0
    health_rate = measured.health.requests_per_second
    return PublishBenchmarkResult(
        database=database.value,
        publishes_requested=publishes,
        publishes_attempted=run.units_started,
        publishes_accepted=run.units_completed,
        publishes_failed=run.units_failed,
        keys_per_publish=KEYS_PER_PUBLISH,
        concurrency=concurrency,
        server_workers=server_workers,
        seconds=round(seconds, 3),
        publishes_per_second=per_second,
        timed_out=run.timed_out,
        latency=summarize_latencies(run.latencies.get(_LABEL, [])),
        errors=run.errors,
        warmup_publishes=measured.warmup_publishes,
        warmup_errors=measured.warmup_errors,
        health=measured.health,
        health_share=round(per_second / health_rate, 3) if health_rate > 0 else 0.0,
        cost_ratio=cost_ratio(measured.cpu, measured.health),
        stored_exposures=stored,
        checked_publishes=min(sample_size, len(measured.acknowledged)),
        cpu=measured.cpu,
        event_loop=event_loop_name(),
        machine=machine_info(),
        server_log_tail=tail,
    )
