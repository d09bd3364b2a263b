"""How many complete verification flows an ``exposure serve`` sustains, over real HTTP.

A flow is what one positive test costs the verification service: the lab issues a code
(``POST /api/issue``), the phone trades it for a token (``POST /api/verify``) and the token
plus its TEK HMAC for a certificate (``POST /api/certificate``). This benchmark starts its
own server as a subprocess on a free loopback port, with a fresh data directory and either a
temporary SQLite database or a fresh PostgreSQL schema. It drives ``concurrency`` clients
over real HTTP (keep-alive connections), each doing complete flows one after the other, and
then sends the same number of ``GET /health`` requests with the same concurrency to measure
what the framework and this harness manage on this machine without the verification work.

Nothing is trusted on its word: a response counts only if it is a 200 with the expected
field, and a random sample of the certificates is verified against the keys the server
publishes at ``/jwks/{realm}`` (signature, audience, issuer, ``tekmac``, report type and
symptom onset), so a server that answers fast but wrongly makes the run fail.

The server limits requests per (realm, client address), and every client here is
127.0.0.1, so the benchmark sets ``EXPOSURE_VERIFICATION_REQUESTS_PER_MINUTE`` to the
largest value the settings accept. It also raises the realm's daily issue quota
(``daily_issue_limit``) in the verification database, before the server starts, to cover
every code the run issues. Only loopback traffic is sent, and each phase stops after its
requests or after ``time_limit`` seconds, whichever comes first. The server is stopped, and
the data directory and PostgreSQL schema removed, however the run ends.

Example::

    result = run_verification_benchmark(flows=2_000, concurrency=32)
    print(f"{result.flows_per_second:,.0f} flows/s, p99 {result.latency['flow'].p99_ms} ms")
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from crypto.encoding import b64url_decode
from crypto.errors import InvalidKey, InvalidToken
from crypto.randomness import random_below, random_bytes
from crypto.tokens import public_keys_from_jwk_set, verify_jwt
from exposure.bench.rpi import MachineInfo, machine_info
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.settings import ExposureSettings, Service
from verification.models import Realm
from verification.service.realms import DEFAULT_AUDIENCE

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_FLOWS",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_TIME_LIMIT",
    "BenchmarkError",
    "CertificateMismatchError",
    "Database",
    "HealthResult",
    "IssuedCertificate",
    "LatencySummary",
    "VerificationBenchmarkResult",
    "run_verification_benchmark",
    "serve_supports_workers",
    "summarize_latencies",
    "verify_certificates",
    "with_search_path",
]

DEFAULT_FLOWS = 2_000
DEFAULT_CONCURRENCY = 32
#: Each phase (flows, then /health) stops after this many seconds even if unfinished.
DEFAULT_TIME_LIMIT = 600.0
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The largest per-(realm, client) request limit the verification settings accept.
REQUESTS_PER_MINUTE = 100_000
#: How many certificates are checked against the published keys.
DEFAULT_SAMPLE_SIZE = 32
#: The audience of certificates: what the key server expects (the realm default).
CERTIFICATE_AUDIENCE = DEFAULT_AUDIENCE
#: The steps of one flow, in order, as they are named in the results.
STEPS = ("issue", "verify", "certificate")

_HOST = "127.0.0.1"
_STARTUP_TIMEOUT = 90.0
_STOP_TIMEOUT = 20.0
_REQUEST_TIMEOUT = 30.0
_TEK_HMAC_BYTES = 32
_INTERVAL_SECONDS = 600
#: How many days before today the symptoms began (any day of the last 28 is accepted).
_SYMPTOM_DAYS_AGO = 2
_LOG_TAIL_CHARACTERS = 4_000


class Database(StrEnum):
    """Where the benchmark server keeps its state."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class BenchmarkError(RuntimeError):
    """The benchmark could not run (the server did not start, bootstrap failed, ...)."""


class CertificateMismatchError(BenchmarkError):
    """A sampled certificate did not verify: the server is broken and the run is void."""


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latencies of one kind of request, in milliseconds (nearest-rank percentiles)."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class HealthResult:
    """``GET /health`` at the same concurrency: the ceiling without verification work."""

    requests: int
    ok: int
    failed: int
    seconds: float
    requests_per_second: float
    latency: LatencySummary


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
    when no response came back); a flow stops at its first failure. CPU figures cover the
    flow phase: the server process, this process (the clients), every ``postgres``
    process on this machine (``None`` on SQLite) and the whole machine's busy share
    (``None`` where ``/proc`` is missing).
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
    server_cpu_seconds: float | None
    client_cpu_seconds: float
    database_cpu_seconds: float | None
    machine_cpu_utilization: float | None
    machine: MachineInfo
    server_log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


# ---- statistics ---------------------------------------------------------------------


def _nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def summarize_latencies(seconds: Sequence[float]) -> LatencySummary:
    """Summarize latencies given in seconds; all zeros for no samples."""
    if not seconds:
        return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ordered = sorted(seconds)

    def milliseconds(value: float) -> float:
        return round(value * 1000, 3)

    return LatencySummary(
        count=len(ordered),
        mean_ms=milliseconds(sum(ordered) / len(ordered)),
        p50_ms=milliseconds(_nearest_rank(ordered, 0.50)),
        p95_ms=milliseconds(_nearest_rank(ordered, 0.95)),
        p99_ms=milliseconds(_nearest_rank(ordered, 0.99)),
        max_ms=milliseconds(ordered[-1]),
    )


# ---- CPU accounting (Linux /proc; None elsewhere) -----------------------------------


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields follow the last ")".
    name_end = raw.rfind(")")
    return [raw[raw.find("(") + 1 : name_end], *raw[name_end + 2 :].split()]


def _cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` that can be read, with its children that ended.

    Counting ended children keeps the CPU of processes that exit during a phase (a
    PostgreSQL backend whose connection the pool closed, a restarted worker): their parent
    inherits it when it reaps them.
    """
    seconds: dict[int, float] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # Index 0 is the name (stat field 2), so stat fields 14-17 (utime, stime,
            # cutime, cstime) are at 12-15.
            seconds[pid] = sum(int(value) for value in fields[12:16]) / _clock_ticks()
    return seconds


def _all_pids() -> list[int]:
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _server_pids(root: int) -> list[int]:
    """``root`` and its direct children (uvicorn's worker processes, if any)."""
    children = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[2] == str(root):
            children.append(pid)
    return [root, *children]


def _postgres_pids() -> list[int]:
    """Every PostgreSQL process on this machine (backends come and go with connections)."""
    pids = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] in {"postgres", "postmaster"}:
            pids.append(pid)
    return pids


def _machine_cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except (OSError, IndexError):
        return None
    values = [int(value) for value in first.split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


@dataclass(frozen=True, slots=True)
class _CpuSnapshot:
    server: dict[int, float]
    client: float
    database: dict[int, float]
    machine: tuple[int, int] | None


def _cpu_snapshot(server_pid: int, database: Database) -> _CpuSnapshot:
    return _CpuSnapshot(
        server=_cpu_by_pid(_server_pids(server_pid)),
        client=time.process_time(),
        database=_cpu_by_pid(_postgres_pids()) if database is Database.POSTGRESQL else {},
        machine=_machine_cpu_jiffies(),
    )


def _cpu_spent(after: dict[int, float], before: dict[int, float]) -> float | None:
    # Processes that started in between count from zero; those that ended are in their
    # parent's total (see _cpu_by_pid), so the totals are compared, not pid by pid.
    if not after:
        return None
    return round(sum(after.values()) - sum(before.values()), 3)


def _busy_share(after: tuple[int, int] | None, before: tuple[int, int] | None) -> float | None:
    if after is None or before is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


# ---- the server under test ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Server:
    base_url: str
    admin_key: str
    device_key: str
    jwks_url: str
    pid: int
    log_path: Path


def serve_supports_workers() -> bool:
    """Whether ``exposure serve`` takes ``--workers`` (several processes on one port)."""
    from exposure.cli.serve import serve

    return "workers" in inspect.signature(serve).parameters


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's ``search_path`` set to ``schema``."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _exposure_command(*arguments: str) -> list[str]:
    # The ``exposure`` command of this very interpreter and installation.
    return [sys.executable, "-c", "from exposure.cli import main; main()", *arguments]


def _server_environment(data_dir: Path, port: int, database_url: str | None) -> dict[str, str]:
    # Nothing of the caller's EXPOSURE_* configuration leaks into the benchmark server.
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("EXPOSURE_")
    }
    environment.update(
        {
            "EXPOSURE_DATA_DIR": str(data_dir),
            "EXPOSURE_HOST": _HOST,
            "EXPOSURE_PORT": str(port),
            "EXPOSURE_LOG_LEVEL": "warning",
            "EXPOSURE_VERIFICATION_REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
        }
    )
    if database_url is not None:
        environment["EXPOSURE_DATABASE_URL"] = database_url
    return environment


@contextmanager
def _postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema in ``base_url``'s database, dropped afterwards; yields its URL."""
    schema = f"bench_{random_bytes(6).hex()}"
    admin = create_database_engine(base_url)
    try:
        try:
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        except SQLAlchemyError as error:
            shown = make_url(base_url).render_as_string(hide_password=True)
            raise BenchmarkError(f"cannot create a schema in {shown}: {error}") from None
        try:
            yield with_search_path(base_url, schema)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def _bootstrap(environment: dict[str, str]) -> dict[str, Any]:
    try:
        completed = subprocess.run(  # noqa: S603 - our own command, no shell
            _exposure_command("admin", "bootstrap", "--json"),
            env=environment,
            capture_output=True,
            text=True,
            timeout=_STARTUP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError("exposure admin bootstrap did not finish") from None
    if completed.returncode != 0:
        raise BenchmarkError(f"exposure admin bootstrap failed: {completed.stderr.strip()}")
    try:
        data = json.loads(completed.stdout)
    except ValueError:
        data = None
    keys = ("realm_id", "jwks_url", "admin_api_key", "device_api_key")
    if not isinstance(data, dict) or not all(key in data for key in keys):
        raise BenchmarkError("exposure admin bootstrap --json printed something unexpected")
    return data


def _raise_issue_quota(verification_url: str, realm_id: int, limit: int) -> None:
    engine = create_database_engine(verification_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            session.execute(
                update(Realm).where(Realm.id == realm_id).values(daily_issue_limit=limit)
            )
    finally:
        engine.dispose()


def _log_tail(path: Path) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return content[-_LOG_TAIL_CHARACTERS:]


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchmarkError(
                    f"exposure serve exited with {process.returncode}:\n{_log_tail(log)}"
                )
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise BenchmarkError(f"exposure serve did not become healthy:\n{_log_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the server to shut down; kill its process group if it does not in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The server leads its own group (start_new_session): this reaches its workers.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def _running_server(
    database: Database, database_url: str | None, server_workers: int, issue_quota: int
) -> Iterator[_Server]:
    # Unwound in reverse: the server stops, then the schema is dropped, then the files go.
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="exposure-bench-")))
        url: str | None = None
        if database is Database.POSTGRESQL:
            url = stack.enter_context(_postgres_schema(database_url or DEFAULT_POSTGRES_URL))
        yield stack.enter_context(_serve(scratch, url, server_workers, issue_quota))


@contextmanager
def _serve(
    scratch: Path, database_url: str | None, server_workers: int, issue_quota: int
) -> Iterator[_Server]:
    data_dir = scratch / "data"
    log_path = scratch / "server.log"
    port = _free_port()
    base_url = f"http://{_HOST}:{port}"
    environment = _server_environment(data_dir, port, database_url)
    bootstrap = _bootstrap(environment)
    jwks_url = str(bootstrap["jwks_url"])
    if not jwks_url.startswith(f"{base_url}/"):
        raise BenchmarkError(f"bootstrap printed a JWKS URL off this server: {jwks_url}")
    settings = ExposureSettings(data_dir=data_dir, database_url=database_url)
    _raise_issue_quota(
        settings.database_url_for(Service.VERIFICATION), int(bootstrap["realm_id"]), issue_quota
    )
    command = _exposure_command("serve", "--host", _HOST, "--port", str(port))
    if server_workers != 1:
        command += ["--workers", str(server_workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own command, no shell
            command,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_healthy(process, base_url, log_path)
            yield _Server(
                base_url=base_url,
                admin_key=str(bootstrap["admin_api_key"]),
                device_key=str(bootstrap["device_api_key"]),
                jwks_url=jwks_url,
                pid=process.pid,
                log_path=log_path,
            )
        finally:
            _stop(process)


# ---- the clients --------------------------------------------------------------------


@dataclass
class _FlowStats:
    attempted: int = 0
    completed: int = 0
    requests: int = 0
    steps: dict[str, list[float]] = field(default_factory=lambda: {step: [] for step in STEPS})
    flows: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    certificates: list[IssuedCertificate] = field(default_factory=list)


class _StepFailed(Exception):  # noqa: N818 - control flow inside one flow
    pass


def _error_code(status: int, body: object) -> str:
    if isinstance(body, dict):
        code = body.get("errorCode")
        if isinstance(code, str) and code:
            return code
    return f"http_{status}"


async def _step(
    client: httpx.AsyncClient,
    stats: _FlowStats,
    step: str,
    path: str,
    api_key: str,
    body: dict[str, str],
    wanted: str,
) -> str:
    """POST one step of a flow; return the ``wanted`` field of a 200 answer or fail."""
    stats.requests += 1
    started = time.perf_counter()
    try:
        response = await client.post(path, json=body, headers={"X-API-Key": api_key})
    except httpx.HTTPError as error:
        stats.errors[f"{step}/{type(error).__name__}"] += 1
        raise _StepFailed from None
    elapsed = time.perf_counter() - started
    answer: object
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        stats.errors[f"{step}/{_error_code(response.status_code, answer)}"] += 1
        raise _StepFailed
    value = answer.get(wanted) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        stats.errors[f"{step}/malformed_response"] += 1
        raise _StepFailed
    stats.steps[step].append(elapsed)
    return value


async def _one_flow(
    client: httpx.AsyncClient, server: _Server, stats: _FlowStats, symptom_date: date
) -> None:
    started = time.perf_counter()
    ekeyhmac = _standard_base64(random_bytes(_TEK_HMAC_BYTES))
    try:
        code = await _step(
            client,
            stats,
            "issue",
            "/api/issue",
            server.admin_key,
            {"testType": "confirmed", "symptomDate": symptom_date.isoformat()},
            "code",
        )
        token = await _step(
            client, stats, "verify", "/api/verify", server.device_key, {"code": code}, "token"
        )
        certificate = await _step(
            client,
            stats,
            "certificate",
            "/api/certificate",
            server.device_key,
            {"token": token, "ekeyhmac": ekeyhmac},
            "certificate",
        )
    except _StepFailed:
        return
    stats.flows.append(time.perf_counter() - started)
    stats.completed += 1
    stats.certificates.append(
        IssuedCertificate(certificate, ekeyhmac, symptom_date, datetime.now(UTC))
    )


def _standard_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


async def _drive_flows(
    clients: Sequence[httpx.AsyncClient],
    server: _Server,
    *,
    flows: int,
    deadline: float,
) -> tuple[_FlowStats, float]:
    stats = _FlowStats()
    symptom_date = (datetime.now(UTC) - timedelta(days=_SYMPTOM_DAYS_AGO)).date()

    async def client_loop(client: httpx.AsyncClient) -> None:
        # One task is one phone-and-lab pair doing flows back to back; the event loop is
        # single-threaded, so the shared counter needs no lock.
        while stats.attempted < flows and time.monotonic() < deadline:
            stats.attempted += 1
            await _one_flow(client, server, stats, symptom_date)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(client) for client in clients))
    return stats, time.perf_counter() - started


async def _drive_health(
    clients: Sequence[httpx.AsyncClient], *, requests: int, deadline: float
) -> HealthResult:
    sent = 0
    ok = 0
    latencies: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent, ok
        while sent < requests and time.monotonic() < deadline:
            sent += 1
            started = time.perf_counter()
            try:
                response = await client.get("/health")
                healthy = response.status_code == 200 and response.json() == {"status": "ok"}
            except (httpx.HTTPError, ValueError):
                healthy = False
            if healthy:
                latencies.append(time.perf_counter() - started)
                ok += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(client) for client in clients))
    seconds = time.perf_counter() - started
    return HealthResult(
        requests=sent,
        ok=ok,
        failed=sent - ok,
        seconds=round(seconds, 3),
        requests_per_second=round(ok / seconds, 1) if seconds > 0 else 0.0,
        latency=summarize_latencies(latencies),
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
    certificates: Sequence[IssuedCertificate],
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


def _sample(items: Sequence[IssuedCertificate], size: int) -> list[IssuedCertificate]:
    picked: set[int] = set()
    while len(picked) < min(size, len(items)):
        picked.add(random_below(len(items)))
    return [items[index] for index in sorted(picked)]


# ---- the benchmark --------------------------------------------------------------------


async def _measure(
    server: _Server,
    *,
    flows: int,
    concurrency: int,
    warmup_flows: int,
    time_limit: float,
    database: Database,
) -> tuple[_FlowStats, _FlowStats, float, HealthResult, _CpuSnapshot, _CpuSnapshot]:
    # One client with one keep-alive connection per simulated client, as phones and labs
    # have: a single shared pool of C connections costs the client several times more
    # CPU per request at C = 32 (httpcore scans its pool on every request).
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.base_url,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    timeout=_REQUEST_TIMEOUT,
                    trust_env=False,
                )
            )
            for _ in range(concurrency)
        ]
        # Warm-up, not measured. The first flow runs alone: its verify creates the token
        # signing key, which concurrent first uses would race to create. Then as many flows
        # as there are clients open the connections and warm the caches.
        warmup, _ = await _drive_flows(clients[:1], server, flows=1, deadline=_deadline(time_limit))
        if warmup_flows > 1:
            more, _ = await _drive_flows(
                clients, server, flows=warmup_flows - 1, deadline=_deadline(time_limit)
            )
            warmup.attempted += more.attempted
            warmup.errors.update(more.errors)
        before = _cpu_snapshot(server.pid, database)
        stats, seconds = await _drive_flows(
            clients, server, flows=flows, deadline=_deadline(time_limit)
        )
        after = _cpu_snapshot(server.pid, database)
        health = await _drive_health(clients, requests=flows, deadline=_deadline(time_limit))
    return warmup, stats, seconds, health, before, after


def _deadline(time_limit: float) -> float:
    return time.monotonic() + time_limit


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
    warmup = concurrency + 1
    if flows < 1 or concurrency < 1 or server_workers < 1 or sample_size < 1:
        raise ValueError("flows, concurrency, server_workers and sample_size must be positive")
    if not time_limit > 0:
        raise ValueError("time_limit must be positive")
    if database_url is not None and database is not Database.POSTGRESQL:
        raise ValueError("a database URL is only used with PostgreSQL")
    if server_workers > 1 and not serve_supports_workers():
        raise ValueError("exposure serve has no --workers option: only one server process")

    # Every code the run can issue, with room to spare; the server default is 20,000 a day.
    issue_quota = max(20_000, 2 * (flows + warmup))
    with _running_server(database, database_url, server_workers, issue_quota) as server:
        warmup_stats, stats, seconds, health, before, after = asyncio.run(
            _measure(
                server,
                flows=flows,
                concurrency=concurrency,
                warmup_flows=warmup,
                time_limit=time_limit,
                database=database,
            )
        )
        verified = verify_certificates(
            _sample(stats.certificates, sample_size), _fetch_jwks(server.jwks_url)
        )
        failed = stats.attempted - stats.completed
        log_tail = _log_tail(server.log_path) if failed or warmup_stats.errors else ""

    latency = {step: summarize_latencies(stats.steps[step]) for step in STEPS}
    latency["flow"] = summarize_latencies(stats.flows)
    return VerificationBenchmarkResult(
        database=database.value,
        flows_requested=flows,
        flows_attempted=stats.attempted,
        flows_completed=stats.completed,
        flows_failed=failed,
        concurrency=concurrency,
        server_workers=server_workers,
        seconds=round(seconds, 3),
        flows_per_second=round(stats.completed / seconds, 1) if seconds > 0 else 0.0,
        requests_per_second=round(stats.requests / seconds, 1) if seconds > 0 else 0.0,
        timed_out=stats.attempted < flows,
        latency=latency,
        errors=dict(sorted(stats.errors.items())),
        warmup_flows=warmup_stats.attempted,
        warmup_errors=dict(sorted(warmup_stats.errors.items())),
        health=health,
        verified_certificates=verified,
        server_cpu_seconds=_cpu_spent(after.server, before.server),
        client_cpu_seconds=round(after.client - before.client, 3),
        database_cpu_seconds=_cpu_spent(after.database, before.database),
        machine_cpu_utilization=_busy_share(after.machine, before.machine),
        machine=machine_info(),
        server_log_tail=log_tail,
    )
