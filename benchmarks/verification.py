"""How many complete verification flows an ``exposure serve`` sustains, over real HTTP.

A flow is what one positive test costs the verification service: the lab issues a code
(``POST /api/issue``), the phone trades it for a token (``POST /api/verify``) and the token
plus its TEK HMAC for a certificate (``POST /api/certificate``); each request's body is
built from the previous answer. The benchmark starts its own server (``exposure serve
verification``, the service alone as deployed; see :mod:`benchmarks.harness`), makes a
realm with ``exposure admin realm create`` (its daily quota covering every code the run
issues) and drives ``concurrency`` keep-alive connections with the low-overhead generator
of :mod:`benchmarks.loadgen`. After a warm-up of whole flows, the timed run goes step by
step, one phase per step (every code issued, then every code verified, then every token
exchanged), so each kind of request is measured alone; then ``GET /health`` runs with the
same generator and concurrency, as many requests as the steps took. Each step's
``cost_ratio`` is its server CPU per request over ``/health``'s (the limit is 2.5).

Nothing is trusted on its word: a response counts only if it is a 200 with the expected
field, and a random sample of the certificates is verified against the keys the server
publishes at ``/jwks/{realm}`` (signature, audience, issuer, ``tekmac``, report type and
symptom onset), so a server that answers fast but wrongly makes the run fail. Each phase
stops after its requests or after ``time_limit`` seconds, whichever comes first.

Example::

    result = run_verification_benchmark(flows=2_000, concurrency=32)
    print(f"{result.flows_per_second:,.0f} flows/s, worst step {result.cost_ratio}x /health")
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
    MAX_CLIENT_ADDRESSES,
    Client,
    LoadGenerator,
    LoadRun,
    Request,
    Response,
    event_loop_name,
    json_request,
    loopback_addresses,
    run_event_loop,
)
from benchmarks.rpi import MachineInfo, machine_info
from crypto.encoding import b64url_decode
from crypto.errors import InvalidKey, InvalidToken
from crypto.randomness import random_below, random_bytes
from crypto.tokens import public_keys_from_jwk_set, verify_jwt
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
class StepCost:
    """One step's phase: ``requests`` of one kind alone, and their cost on the server.

    ``cost_ratio`` is the server CPU per request over the server CPU per ``/health`` of
    the same run (:func:`benchmarks.harness.cost_ratio`).
    """

    requests: int
    ok: int
    seconds: float
    requests_per_second: float
    cpu: CpuUsage
    cost_ratio: float | None


@dataclass(frozen=True, slots=True)
class VerificationBenchmarkResult:
    """One run: ``flows_completed`` of ``flows_requested`` flows in ``seconds``.

    The flows run step by step: every code is issued, then every code verified, then every
    token traded for a certificate, one phase per step, so ``steps`` shows each kind of
    request's cost alone. ``seconds`` adds up the three phases. ``latency`` holds one
    summary per step (successful requests only). ``errors`` counts failed requests by
    ``"step/errorCode"`` (``http_<status>`` when the body has no code, the exception's name
    when no answer came back); a flow stops at its first failure. ``cpu`` covers the three
    phases (``health.cpu`` the /health phase); ``cpu.client_per_request_ms`` is what the
    load generator itself cost. ``event_loop`` is the generator's (uvloop when installed).
    """

    database: str
    flows_requested: int
    flows_attempted: int
    flows_completed: int
    flows_failed: int
    concurrency: int
    #: How many loopback addresses the connections came from.
    client_addresses: int
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
    #: Each step's phase alone: its requests and their server CPU against /health's.
    steps: dict[str, StepCost]
    #: The highest step's ``cost_ratio`` (the issue's limit is 2.5 for each request).
    cost_ratio: float | None
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
    """The steps of a flow, as load-generator units, with what each hands to the next.

    Called as a unit, it runs whole flows (the warm-up). The timed run calls its steps as
    three units, one phase each, so each kind of request is measured alone: the codes the
    ``issue`` phase received feed the ``verify`` phase, whose tokens feed the ``certificate``
    phase. Requests are prebuilt where they do not depend on an answer.
    """

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
        self.codes: list[str] = []
        self.tokens: list[tuple[str, str]] = []
        self.certificates: list[IssuedCertificate] = []

    def prepare(self, flows: int) -> None:
        """Draw the TEK HMACs of the next run's ``flows`` flows before it is timed."""
        self._ekeyhmacs = [
            base64.b64encode(random_bytes(_TEK_HMAC_BYTES)).decode("ascii") for _ in range(flows)
        ]
        self.codes.clear()
        self.tokens.clear()
        self.certificates.clear()

    def _device_request(self, path: str, label: str, payload: dict[str, str]) -> Request:
        return json_request(
            "POST", path, payload, host=self._host, label=label, headers=self._device_headers
        )

    async def _issue_code(self, client: Client) -> str:
        return _answer_field(client, "issue", await client.send(self._issue), "code")

    async def _verify_code(self, client: Client, code: str) -> str:
        verify = self._device_request("/api/verify", "verify", {"code": code})
        return _answer_field(client, "verify", await client.send(verify), "token")

    async def _certify(self, client: Client, token: str, ekeyhmac: str) -> None:
        exchange = self._device_request(
            "/api/certificate", "certificate", {"token": token, "ekeyhmac": ekeyhmac}
        )
        certificate = _answer_field(
            client, "certificate", await client.send(exchange), "certificate"
        )
        self.certificates.append(
            IssuedCertificate(certificate, ekeyhmac, self._symptom_date, datetime.now(UTC))
        )

    async def __call__(self, client: Client, index: int) -> None:
        code = await self._issue_code(client)
        token = await self._verify_code(client, code)
        await self._certify(client, token, self._ekeyhmacs[index])

    async def issue(self, client: Client, _index: int) -> None:
        """The ``issue`` phase's unit: one code, kept for the ``verify`` phase."""
        self.codes.append(await self._issue_code(client))

    async def verify(self, client: Client, index: int) -> None:
        """The ``verify`` phase's unit: the ``index``-th code issued, traded for a token."""
        token = await self._verify_code(client, self.codes[index])
        self.tokens.append((token, self._ekeyhmacs[index]))

    async def certificate(self, client: Client, index: int) -> None:
        """The ``certificate`` phase's unit: the ``index``-th token, traded for a certificate."""
        token, ekeyhmac = self.tokens[index]
        await self._certify(client, token, ekeyhmac)


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
    phases: dict[str, LoadRun]
    steps: dict[str, StepCost]
    cpu: CpuUsage
    health: HealthResult


async def _measure(
    server: BenchServer,
    flows_unit: _Flows,
    *,
    flows: int,
    concurrency: int,
    client_addresses: int,
    time_limit: float,
) -> _Measured:
    async with LoadGenerator(
        server.host,
        server.port,
        connections=concurrency,
        request_timeout=_REQUEST_TIMEOUT,
        source_addresses=loopback_addresses(client_addresses),
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
        phases: dict[str, LoadRun] = {}
        snapshots = [cpu_snapshot(server.pid, server.database)]
        # Each phase takes what the previous one produced: codes, then tokens.
        phases["issue"] = await generator.run(flows_unit.issue, units=flows, time_limit=time_limit)
        snapshots.append(cpu_snapshot(server.pid, server.database))
        phases["verify"] = await generator.run(
            flows_unit.verify, units=len(flows_unit.codes), time_limit=time_limit
        )
        snapshots.append(cpu_snapshot(server.pid, server.database))
        phases["certificate"] = await generator.run(
            flows_unit.certificate, units=len(flows_unit.tokens), time_limit=time_limit
        )
        snapshots.append(cpu_snapshot(server.pid, server.database))
        requests = sum(run.requests for run in phases.values())
        health = await measure_health(
            generator, server, requests=max(requests, 1), time_limit=time_limit
        )
    warmup_errors: Counter[str] = Counter()
    for warmup in warmups:
        warmup_errors.update(warmup.errors)
    steps: dict[str, StepCost] = {}
    for position, (step, run) in enumerate(phases.items()):
        cpu = CpuUsage.between(snapshots[position], snapshots[position + 1], run.requests)
        steps[step] = StepCost(
            requests=run.requests,
            ok=run.units_completed,
            seconds=round(run.seconds, 3),
            requests_per_second=round(run.units_completed / run.seconds, 1)
            if run.seconds > 0
            else 0.0,
            cpu=cpu,
            cost_ratio=cost_ratio(cpu, health),
        )
    return _Measured(
        warmup_flows=sum(warmup.units_started for warmup in warmups),
        warmup_errors=dict(sorted(warmup_errors.items())),
        phases=phases,
        steps=steps,
        cpu=CpuUsage.between(snapshots[0], snapshots[-1], requests),
        health=health,
    )


def _realm_setup(issue_quota: int) -> list[str]:
    """The operator's command that makes the benchmark's realm, quota included."""
    return [
        *("admin", "realm", "create", "bench"),
        *("--daily-issue-limit", str(issue_quota), "--json"),
    ]


def _check_realm(server: BenchServer, printed: dict[str, Any]) -> _Realm:
    keys = ("jwks_url", "admin_api_key", "device_api_key")
    if not all(isinstance(printed.get(key), str) for key in keys):
        raise BenchmarkError("exposure admin realm create --json printed something unexpected")
    jwks_url = str(printed["jwks_url"])
    if not jwks_url.startswith(f"{server.base_url}/"):
        raise BenchmarkError(f"realm create printed a JWKS URL off this server: {jwks_url}")
    return _Realm(str(printed["admin_api_key"]), str(printed["device_api_key"]), jwks_url)


def run_verification_benchmark(
    flows: int = DEFAULT_FLOWS,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    database: Database = Database.SQLITE,
    database_url: str | None = None,
    server_workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    client_addresses: int | None = None,
) -> VerificationBenchmarkResult:
    """Start a server, run ``flows`` flows step by step with ``concurrency`` clients, measure.

    ``database_url`` is the PostgreSQL database to create the schema in (default
    :data:`DEFAULT_POSTGRES_URL`); it is refused with SQLite. ``concurrency + 1`` warm-up
    flows run first and are not counted. Each step's phase and the ``/health`` phase stop
    after ``time_limit`` seconds.

    The connections come from ``client_addresses`` loopback addresses in turn (default: one
    per connection). The service counts requests and wrong codes per client address, as
    it must; phones reach it from many addresses, and 32 connections from one address
    would instead queue every verify on one address's counter rows (a single NAT under
    attack, which ``client_addresses=1`` measures).

    Raises :class:`ValueError` for meaningless arguments (and ``server_workers`` above 1
    when ``exposure serve`` cannot run several processes), :class:`BenchmarkError` if the
    server cannot be started, and :class:`CertificateMismatchError` if a sampled
    certificate does not verify.
    """
    if flows < 1 or concurrency < 1 or sample_size < 1:
        raise ValueError("flows, concurrency and sample_size must be positive")
    addresses = concurrency if client_addresses is None else client_addresses
    if not 1 <= addresses <= MAX_CLIENT_ADDRESSES:
        raise ValueError(f"client_addresses must be within 1..{MAX_CLIENT_ADDRESSES}")
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
            # The CLI loads while the server starts; the realm is made once it answers.
            return stack.enter_context(ExposureCommands(setup.environment))

        server, commands = stack.enter_context(
            running_server(database, database_url, server_workers, preload, target="verification")
        )
        [printed] = commands.run(_realm_setup(issue_quota))
        realm = _check_realm(server, printed)
        flows_unit = _Flows(server, realm, symptom_date)
        measured = run_event_loop(
            lambda: _measure(
                server,
                flows_unit,
                flows=flows,
                concurrency=concurrency,
                client_addresses=addresses,
                time_limit=time_limit,
            )
        )
        verified = verify_certificates(
            _sample(flows_unit.certificates, sample_size), _fetch_jwks(realm.jwks_url)
        )
        phases = measured.phases
        failed_requests = sum(run.units_failed for run in phases.values())
        tail = log_tail(server.log_path) if failed_requests or measured.warmup_errors else ""

    errors: Counter[str] = Counter()
    for run in phases.values():
        errors.update(run.errors)
    latency = {
        step: summarize_latencies(run.latencies.get(step, [])) for step, run in phases.items()
    }
    seconds = sum(run.seconds for run in phases.values())
    requests = sum(run.requests for run in phases.values())
    attempted = phases["issue"].units_started
    completed = len(flows_unit.certificates)
    ratios = [step.cost_ratio for step in measured.steps.values() if step.cost_ratio is not None]
    return VerificationBenchmarkResult(
        database=database.value,
        flows_requested=flows,
        flows_attempted=attempted,
        flows_completed=completed,
        flows_failed=attempted - completed,
        concurrency=concurrency,
        client_addresses=addresses,
        server_workers=server_workers,
        seconds=round(seconds, 3),
        flows_per_second=round(completed / seconds, 1) if seconds > 0 else 0.0,
        requests_per_second=round(requests / seconds, 1) if seconds > 0 else 0.0,
        timed_out=any(run.timed_out for run in phases.values()),
        latency=latency,
        errors=dict(sorted(errors.items())),
        warmup_flows=measured.warmup_flows,
        warmup_errors=measured.warmup_errors,
        health=measured.health,
        steps=measured.steps,
        cost_ratio=max(ratios) if len(ratios) == len(measured.steps) else None,
        verified_certificates=verified,
        cpu=measured.cpu,
        event_loop=event_loop_name(),
        machine=machine_info(),
        server_log_tail=tail,
    )
