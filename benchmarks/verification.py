"""How many complete verification flows an ``exposure serve`` sustains, over real HTTP.

A flow is what one positive test costs the verification service: the lab issues a code
(``POST /api/issue``), the phone trades it for a token (``POST /api/verify``) and the token
plus its TEK HMAC for a certificate (``POST /api/certificate``); each request's body is
built from the previous answer. The benchmark starts its own server (see
:mod:`benchmarks.harness`) and drives ``concurrency`` keep-alive connections with the
low-overhead generator of :mod:`benchmarks.loadgen`, each doing complete flows one
after the other; then it sends ``GET /health`` with the same generator and concurrency,
as many requests as the flows took, for the server's ceiling on this machine.

Nothing is trusted on its word: a response counts only if it is a 200 with the expected
field, and a random sample of the certificates is verified against the keys the server
publishes at ``/jwks/{realm}`` (signature, audience, issuer, ``tekmac``, report type and
symptom onset), so a server that answers fast but wrongly makes the run fail.

Once the server answers, and before the first flow, the benchmark bootstraps the default
realm (``exposure admin bootstrap``) and raises its daily issue quota
(``daily_issue_limit``) in the verification database to cover every code the run issues.
Each phase stops after its requests or after ``time_limit`` seconds, whichever comes first.

Example::

    result = run_verification_benchmark(flows=2_000, concurrency=32)
    print(f"{result.flows_per_second:,.0f} flows/s, p99 {result.latency['flow'].p99_ms} ms")
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

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
    Response,
    event_loop_name,
    json_request,
    run_event_loop,
)
from benchmarks.rpi import MachineInfo, machine_info
from crypto.encoding import b64url_decode
from crypto.errors import InvalidKey, InvalidToken
from crypto.randomness import random_below, random_bytes
from crypto.tokens import public_keys_from_jwk_set, verify_jwt
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.settings import Service
from verification.models import Realm
from verification.service.realms import DEFAULT_AUDIENCE

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_FLOWS",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_SAMPLE_SIZE",
    "DEFAULT_TIME_LIMIT",
    "STEPS",
    "BenchmarkError",
    "CertificateMismatchError",
    "Database",
    "HealthResult",
    "IssuedCertificate",
    "LatencySummary",
    "VerificationBenchmarkResult",
    "run_verification_benchmark",
    "verify_certificates",
]

DEFAULT_FLOWS = 2_000
DEFAULT_CONCURRENCY = 32
#: Each phase (flows, then /health) stops after this many seconds even if unfinished.
DEFAULT_TIME_LIMIT = 600.0
#: How many certificates are checked against the published keys.
DEFAULT_SAMPLE_SIZE = 32
#: The audience of certificates: what the key server expects (the realm default).
CERTIFICATE_AUDIENCE = DEFAULT_AUDIENCE
#: The steps of one flow, in order, as they are named in the results.
STEPS = ("issue", "verify", "certificate")

_REQUEST_TIMEOUT = 30.0
_TEK_HMAC_BYTES = 32
_INTERVAL_SECONDS = 600
#: How many days before today the symptoms began (any day of the last 28 is accepted).
_SYMPTOM_DAYS_AGO = 2


class CertificateMismatchError(BenchmarkError):
    """A sampled certificate did not verify: the server is broken and the run is void."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate as received, with what it must certify."""

    certificate: str
    ekeyhmac: str
    symptom_date: date
    received_at: datetime


@dataclass(frozen=True, slots=True)
class VerificationBenchmarkResult:
    """One run: ``flows_completed`` of ``flows_requested`` flows in ``seconds``.

    ``latency`` holds one summary per step (successful requests only) and one for whole
    flows (``"flow"``, completed flows only). ``errors`` counts failed requests by
    ``"step/errorCode"`` (``http_<status>`` when the body has no code, the exception's name
    when no answer came back); a flow stops at its first failure. ``cpu`` covers the flow
    phase (``health.cpu`` the /health phase); ``cpu.client_per_request_ms`` is what the load
    generator itself cost. ``event_loop`` is the generator's (uvloop when installed).
    """

    database: str
    flows_requested: int
    flows_attempted: int
    flows_completed: int
    flows_failed: int
    concurrency: int
    server_workers: int
    seconds: float
    flows_per_second: float
    requests_per_second: float
    timed_out: bool
    latency: dict[str, LatencySummary]
    errors: dict[str, int]
    warmup_flows: int
    warmup_errors: dict[str, int]
    health: HealthResult
    verified_certificates: int
    cpu: CpuUsage
    event_loop: str
    machine: MachineInfo
    server_log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


# ---- the server's realm -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Realm:
    admin_key: str
    device_key: str
    jwks_url: str


def _raise_issue_quota(verification_url: str, realm_id: int, limit: int) -> None:
    engine = create_database_engine(verification_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            session.execute(
                update(Realm).where(Realm.id == realm_id).values(daily_issue_limit=limit)
            )
    finally:
        engine.dispose()


def _bootstrap_realm(server: BenchServer, commands: ExposureCommands, issue_quota: int) -> _Realm:
    # Before the first request, so the server has cached nothing of the realm yet.
    [data] = commands.run(["admin", "bootstrap", "--json"])
    keys = ("realm_id", "jwks_url", "admin_api_key", "device_api_key")
    if not all(key in data for key in keys):
        raise BenchmarkError("exposure admin bootstrap --json printed something unexpected")
    jwks_url = str(data["jwks_url"])
    if not jwks_url.startswith(f"{server.base_url}/"):
        raise BenchmarkError(f"bootstrap printed a JWKS URL off this server: {jwks_url}")
    _raise_issue_quota(
        server.database_url_for(Service.VERIFICATION), int(data["realm_id"]), issue_quota
    )
    return _Realm(str(data["admin_api_key"]), str(data["device_api_key"]), jwks_url)


# ---- one flow -------------------------------------------------------------------------


def _error_code(status: int, body: object) -> str:
    if isinstance(body, dict):
        code = body.get("errorCode")
        if isinstance(code, str) and code:
            return code
    return f"http_{status}"


def _answer_field(client: Client, label: str, response: Response, wanted: str) -> str:
    """The ``wanted`` string of a 200 answer; anything else fails the flow."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status != 200:
        client.fail(label, _error_code(response.status, body))
    value = body.get(wanted) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        client.fail(label, "malformed_response")
    client.accept(label, response)
    return value


class _Flows:
    """The flow unit: requests prebuilt where they do not depend on an answer."""

    def __init__(self, server: BenchServer, realm: _Realm, symptom_date: date) -> None:
        self._host = server.host_header
        self._device_headers = {"X-API-Key": realm.device_key}
        self._symptom_date = symptom_date
        self._issue = json_request(
            "POST",
            "/api/issue",
            {"testType": "confirmed", "symptomDate": symptom_date.isoformat()},
            host=self._host,
            label="issue",
            headers={"X-API-Key": realm.admin_key},
        )
        self._ekeyhmacs: list[str] = []
        self.certificates: list[IssuedCertificate] = []

    def prepare(self, flows: int) -> None:
        """Draw the TEK HMACs of the next run's ``flows`` flows before it is timed."""
        self._ekeyhmacs = [
            base64.b64encode(random_bytes(_TEK_HMAC_BYTES)).decode("ascii") for _ in range(flows)
        ]

    def _device_request(self, path: str, label: str, payload: dict[str, str]) -> Request:
        return json_request(
            "POST", path, payload, host=self._host, label=label, headers=self._device_headers
        )

    async def __call__(self, client: Client, index: int) -> None:
        ekeyhmac = self._ekeyhmacs[index]
        code = _answer_field(client, "issue", await client.send(self._issue), "code")
        verify = self._device_request("/api/verify", "verify", {"code": code})
        token = _answer_field(client, "verify", await client.send(verify), "token")
        exchange = self._device_request(
            "/api/certificate", "certificate", {"token": token, "ekeyhmac": ekeyhmac}
        )
        certificate = _answer_field(
            client, "certificate", await client.send(exchange), "certificate"
        )
        self.certificates.append(
            IssuedCertificate(certificate, ekeyhmac, self._symptom_date, datetime.now(UTC))
        )


# ---- certificate check ----------------------------------------------------------------


def _unverified_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise CertificateMismatchError("a certificate is not a compact JWS")
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError:
        raise CertificateMismatchError("a certificate's claims are not JSON") from None
    if not isinstance(claims, dict):
        raise CertificateMismatchError("a certificate's claims are not an object")
    return claims


def verify_certificates(
    certificates: list[IssuedCertificate],
    jwks: object,
    *,
    audience: str = CERTIFICATE_AUDIENCE,
) -> int:
    """Verify each certificate against the JWK set ``jwks``; return how many were checked.

    The signature must verify with a published key for ``audience`` and the issuer the
    certificate names (taken from its unverified claims), as of when it was received, and
    the claims must certify what was asked: the same ``tekmac``, a confirmed diagnosis and
    the symptom onset interval of the requested date. Raises
    :class:`CertificateMismatchError` otherwise.
    """
    try:
        keys = public_keys_from_jwk_set(jwks)
    except InvalidKey:
        raise CertificateMismatchError("the server's JWKS holds an unusable key") from None
    for issued in certificates:
        issuer = _unverified_claims(issued.certificate).get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise CertificateMismatchError("a certificate names no issuer")
        try:
            claims = verify_jwt(
                issued.certificate,
                public_keys=keys,
                audience=audience,
                issuer=issuer,
                now=issued.received_at,
            )
        except InvalidToken:
            raise CertificateMismatchError(
                "a certificate does not verify against the published keys"
            ) from None
        midnight = datetime(
            issued.symptom_date.year, issued.symptom_date.month, issued.symptom_date.day, tzinfo=UTC
        )
        expected = {
            "tekmac": issued.ekeyhmac,
            "reportType": "confirmed",
            "symptomOnsetInterval": int(midnight.timestamp()) // _INTERVAL_SECONDS,
        }
        for name, value in expected.items():
            if claims.get(name) != value:
                raise CertificateMismatchError(f"a certificate's {name} is not what was asked")
    return len(certificates)


def _sample(items: list[IssuedCertificate], size: int) -> list[IssuedCertificate]:
    picked: set[int] = set()
    while len(picked) < min(size, len(items)):
        picked.add(random_below(len(items)))
    return [items[index] for index in sorted(picked)]


def _fetch_jwks(url: str) -> object:
    try:
        with httpx.Client(timeout=_REQUEST_TIMEOUT, trust_env=False) as client:
            response = client.get(url)
        keys: object = response.json()
    except (httpx.HTTPError, ValueError):
        raise CertificateMismatchError(f"GET {url} gave no JSON key set") from None
    if response.status_code != 200:
        raise CertificateMismatchError(f"GET {url} answered {response.status_code}")
    return keys


# ---- the benchmark --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Measured:
    warmup_flows: int
    warmup_errors: dict[str, int]
    run: LoadRun
    cpu: CpuUsage
    health: HealthResult


async def _measure(
    server: BenchServer,
    flows_unit: _Flows,
    *,
    flows: int,
    concurrency: int,
    time_limit: float,
) -> _Measured:
    async with LoadGenerator(
        server.host, server.port, connections=concurrency, request_timeout=_REQUEST_TIMEOUT
    ) as generator:
        # Warm-up, not measured. The first flow runs alone: its verify creates the token
        # signing key, which concurrent first uses would race to create. Then one flow per
        # connection opens the connections and warms the caches.
        warmups: list[LoadRun] = []
        for units, connections in ((1, 1), (concurrency, concurrency)):
            flows_unit.prepare(units)
            warmups.append(
                await generator.run(
                    flows_unit, units=units, time_limit=time_limit, connections=connections
                )
            )
        flows_unit.prepare(flows)
        flows_unit.certificates.clear()
        before = cpu_snapshot(server.pid, server.database)
        run = await generator.run(flows_unit, units=flows, time_limit=time_limit)
        after = cpu_snapshot(server.pid, server.database)
        health = await measure_health(
            generator, server, requests=max(run.requests, 1), time_limit=time_limit
        )
    warmup_errors: Counter[str] = Counter()
    for warmup in warmups:
        warmup_errors.update(warmup.errors)
    return _Measured(
        warmup_flows=sum(warmup.units_started for warmup in warmups),
        warmup_errors=dict(sorted(warmup_errors.items())),
        run=run,
        cpu=CpuUsage.between(before, after, run.requests),
        health=health,
    )


def run_verification_benchmark(
    flows: int = DEFAULT_FLOWS,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    database: Database = Database.SQLITE,
    database_url: str | None = None,
    server_workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> VerificationBenchmarkResult:
    """Start a server, run ``flows`` complete flows with ``concurrency`` clients, measure.

    ``database_url`` is the PostgreSQL database to create the schema in (default
    :data:`DEFAULT_POSTGRES_URL`); it is refused with SQLite. ``concurrency + 1`` warm-up
    flows run first and are not counted. The flow phase and the ``/health`` phase each stop
    after ``time_limit`` seconds.

    Raises :class:`ValueError` for meaningless arguments (and ``server_workers`` above 1
    when ``exposure serve`` cannot run several processes), :class:`BenchmarkError` if the
    server cannot be started, and :class:`CertificateMismatchError` if a sampled
    certificate does not verify.
    """
    if flows < 1 or concurrency < 1 or sample_size < 1:
        raise ValueError("flows, concurrency and sample_size must be positive")
    if not time_limit > 0:
        raise ValueError("time_limit must be positive")
    if database_url is not None and database is not Database.POSTGRESQL:
        raise ValueError("a database URL is only used with PostgreSQL")
    check_server_workers(server_workers)

    # Every code the run can issue, with room to spare; the server default is 20,000 a day.
    issue_quota = max(20_000, 2 * (flows + concurrency + 1))
    symptom_date = (datetime.now(UTC) - timedelta(days=_SYMPTOM_DAYS_AGO)).date()
    with ExitStack() as stack:

        def preload(setup: ServerSetup) -> ExposureCommands:
            # The CLI loads while the server starts; the bootstrap runs once it answers.
            return stack.enter_context(ExposureCommands(setup.environment))

        server, commands = stack.enter_context(
            running_server(database, database_url, server_workers, preload)
        )
        realm = _bootstrap_realm(server, commands, issue_quota)
        flows_unit = _Flows(server, realm, symptom_date)
        measured = run_event_loop(
            lambda: _measure(
                server,
                flows_unit,
                flows=flows,
                concurrency=concurrency,
                time_limit=time_limit,
            )
        )
        verified = verify_certificates(
            _sample(flows_unit.certificates, sample_size), _fetch_jwks(realm.jwks_url)
        )
        run = measured.run
        tail = log_tail(server.log_path) if run.units_failed or measured.warmup_errors else ""

    latency = {step: summarize_latencies(run.latencies.get(step, [])) for step in STEPS}
    latency["flow"] = summarize_latencies(run.unit_latencies)
    seconds = run.seconds
    return VerificationBenchmarkResult(
        database=database.value,
        flows_requested=flows,
        flows_attempted=run.units_started,
        flows_completed=run.units_completed,
        flows_failed=run.units_failed,
        concurrency=concurrency,
        server_workers=server_workers,
        seconds=round(seconds, 3),
        flows_per_second=round(run.units_completed / seconds, 1) if seconds > 0 else 0.0,
        requests_per_second=round(run.requests / seconds, 1) if seconds > 0 else 0.0,
        timed_out=run.timed_out,
        latency=latency,
        errors=run.errors,
        warmup_flows=measured.warmup_flows,
        warmup_errors=measured.warmup_errors,
        health=measured.health,
        verified_certificates=verified,
        cpu=measured.cpu,
        event_loop=event_loop_name(),
        machine=machine_info(),
        server_log_tail=tail,
    )
