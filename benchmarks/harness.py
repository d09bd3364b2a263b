"""What the HTTP benchmarks share: a server of their own, CPU accounting, the /health phase.

Each HTTP benchmark starts ``exposure serve`` as a subprocess on a free loopback port
(:mod:`exposure.launcher`, which the demo uses too), with a fresh data directory and either
a temporary SQLite database or a fresh PostgreSQL schema, and removes all of it however the
run ends. A ``prepare`` step runs after the data directory and database exist and before
the server starts; the benchmarks use it to start an :class:`ExposureCommands` interpreter,
whose slow import of the CLI then overlaps the server's start, and run their setup
(``exposure admin ...``, as an operator would) once the server answers.

The server limits requests per client address, and every client here is 127.0.0.1, so the
server runs with the largest per-minute limit its settings accept. Only loopback traffic
is ever sent.

CPU is read from ``/proc`` (Linux): the server process with its worker processes, every
PostgreSQL process on the machine, this process (the load generator) and the machine's
busy share, so a result shows where the cores went. Elsewhere those figures are ``None``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from benchmarks.loadgen import Client, LoadGenerator, build_request
from crypto.randomness import random_bytes
from exposure import launcher
from exposure.compose import DeploymentSettings
from exposure.db import create_database_engine
from exposure.launcher import REQUESTS_PER_MINUTE, log_tail
from exposure.settings import ExposureSettings, Service

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "HOST",
    "REQUESTS_PER_MINUTE",
    "BenchServer",
    "BenchmarkError",
    "CpuSnapshot",
    "CpuUsage",
    "Database",
    "ExposureCommands",
    "HealthResult",
    "LatencySummary",
    "ServerSetup",
    "check_server_workers",
    "cost_ratio",
    "cpu_snapshot",
    "json_objects",
    "log_tail",
    "measure_health",
    "postgres_schema",
    "run_exposure_commands",
    "running_server",
    "serve_supports_workers",
    "server_settings",
    "summarize_latencies",
    "with_search_path",
]

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Where the benchmark server listens (and the only address benchmarks send to).
HOST = launcher.LOOPBACK

_T = TypeVar("_T")
_STARTUP_TIMEOUT = 90.0
_COMMAND_TIMEOUT = 90.0
_HEALTH_LABEL = "health"


class Database(StrEnum):
    """Where the benchmark server keeps its state."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class BenchmarkError(RuntimeError):
    """The benchmark could not run (the server did not start, a setup command failed, ...)."""


# ---- statistics ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latencies of one kind of request, in milliseconds (nearest-rank percentiles)."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


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
class CpuSnapshot:
    """CPU seconds spent so far by the server, this process and PostgreSQL; machine jiffies."""

    server: dict[int, float]
    client: float
    database: dict[int, float]
    machine: tuple[int, int] | None


def cpu_snapshot(server_pid: int, database: Database) -> CpuSnapshot:
    """Read the CPU counters now.

    The client figure is :func:`time.process_time` (user + system CPU of this process, the
    same as ``utime + stime`` in ``/proc/self/stat`` but in nanoseconds, not ticks).
    """
    return CpuSnapshot(
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


def _others(after: CpuSnapshot, before: CpuSnapshot, accounted: list[float | None]) -> float | None:
    """Busy CPU seconds of the machine not spent by the processes accounted for."""
    if after.machine is None or before.machine is None or after.machine[1] <= before.machine[1]:
        return None
    busy = (after.machine[0] - before.machine[0]) / _clock_ticks()
    return round(max(0.0, busy - sum(seconds or 0.0 for seconds in accounted)), 3)


def _per_request_ms(seconds: float | None, requests: int) -> float | None:
    if seconds is None or requests == 0:
        return None
    return round(1000 * seconds / requests, 4)


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """Where the CPU went during one phase of ``requests`` HTTP requests.

    ``server_seconds`` covers the server and its worker processes, ``client_seconds`` this
    process (the load generator: nothing else runs in it meanwhile), ``database_seconds``
    every PostgreSQL process (``None`` on SQLite), ``other_seconds`` the rest of the
    machine's busy time, ``machine_utilization`` the busy share of all cores (1.0 = every
    core busy). The ``*_per_request_ms`` figures divide by the
    requests sent. ``None`` where ``/proc`` cannot be read.
    """

    requests: int
    server_seconds: float | None
    client_seconds: float
    database_seconds: float | None
    #: Busy CPU of everything else on the machine: a figure well above zero means the
    #: measurement shared the cores with something else (another benchmark, a build).
    other_seconds: float | None
    machine_utilization: float | None
    server_per_request_ms: float | None
    client_per_request_ms: float | None

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot, requests: int) -> CpuUsage:
        server = _cpu_spent(after.server, before.server)
        client = round(after.client - before.client, 4)
        database = _cpu_spent(after.database, before.database)
        return cls(
            requests=requests,
            server_seconds=server,
            client_seconds=client,
            database_seconds=database,
            other_seconds=_others(after, before, [server, client, database]),
            machine_utilization=_busy_share(after.machine, before.machine),
            server_per_request_ms=_per_request_ms(server, requests),
            client_per_request_ms=_per_request_ms(client, requests),
        )


# ---- the server under test ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSetup:
    """What exists before the server starts: its environment, data directory and database."""

    environment: dict[str, str]
    data_dir: Path
    #: The PostgreSQL URL with the fresh schema, or ``None`` for SQLite under ``data_dir``.
    database_url: str | None
    base_url: str
    #: A directory the benchmark may write to; it goes with the server.
    scratch: Path


@dataclass(frozen=True, slots=True)
class BenchServer:
    """A running ``exposure serve`` of a benchmark."""

    host: str
    port: int
    base_url: str
    pid: int
    log_path: Path
    #: The server's environment: admin commands run with it reach the same state.
    environment: dict[str, str]
    database: Database
    data_dir: Path
    #: The PostgreSQL URL with the fresh schema, or ``None`` for SQLite under ``data_dir``.
    database_url: str | None
    #: A directory the benchmark may write to; it goes with the server.
    scratch: Path

    def database_url_for(self, service: Service) -> str:
        """The URL of ``service``'s database, as the server resolves it."""
        settings = ExposureSettings(data_dir=self.data_dir, database_url=self.database_url)
        return settings.database_url_for(service)

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def serve_supports_workers() -> bool:
    """Whether ``exposure serve`` takes ``--workers`` (several processes on one port)."""
    from exposure.cli.serve import serve

    return "workers" in inspect.signature(serve).parameters


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's ``search_path`` set to ``schema``."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def server_settings(server: BenchServer) -> DeploymentSettings:
    """The settings ``server`` runs with, read from its environment as it reads them."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(server.environment)
        return DeploymentSettings.from_environment()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
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


# Imports the CLI first, then runs the commands it reads from stdin, each exactly as from
# the shell (its own argument parsing, output and exit status); the first failure stops.
_COMMANDS_SCRIPT = """
import json, sys
from exposure.cli import app
for arguments in json.loads(sys.stdin.read()):
    try:
        app(arguments, prog_name="exposure")
    except SystemExit as outcome:
        if outcome.code:
            raise
"""


class ExposureCommands:
    """An interpreter with the ``exposure`` CLI imported, waiting for commands to run.

    Importing the CLI takes seconds. Started before the server, that time overlaps the
    server's own start, and several commands pay it once. Use it as a context manager: an
    interpreter left waiting is killed.
    """

    def __init__(self, environment: dict[str, str]) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own command, no shell
            [sys.executable, "-c", _COMMANDS_SCRIPT],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> ExposureCommands:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()

    def run(self, *commands: Sequence[str]) -> list[dict[str, Any]]:
        """Run ``commands`` (each prints one JSON object) in order; return their objects.

        Raises :class:`BenchmarkError` when a command fails, hangs or prints anything else.
        Only one call per interpreter.
        """
        shown = "; ".join(" ".join(command[:3]) for command in commands)
        try:
            stdout, stderr = self._process.communicate(
                json.dumps([list(command) for command in commands]), timeout=_COMMAND_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            self.close()
            raise BenchmarkError(f"exposure {shown} did not finish") from None
        if self._process.returncode != 0:
            detail = (stderr or stdout).strip()
            raise BenchmarkError(f"exposure {shown} failed: {detail[-2_000:]}")
        objects = json_objects(stdout)
        if objects is None or len(objects) != len(commands):
            raise BenchmarkError(f"exposure {shown} did not print one JSON object each")
        return objects


def run_exposure_commands(
    environment: dict[str, str], *commands: Sequence[str]
) -> list[dict[str, Any]]:
    """Run ``exposure`` ``commands`` with ``environment`` now; see :class:`ExposureCommands`."""
    with ExposureCommands(environment) as interpreter:
        return interpreter.run(*commands)


def json_objects(output: str) -> list[dict[str, Any]] | None:
    """The JSON objects printed one after another in ``output``; ``None`` for anything else."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(output) and output[position].isspace():
            position += 1
        if position == len(output):
            return objects
        try:
            data, position = decoder.raw_decode(output, position)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        objects.append(data)


@contextmanager
def running_server(
    database: Database,
    database_url: str | None,
    server_workers: int,
    prepare: Callable[[ServerSetup], _T],
    *,
    target: str = "all",
) -> Iterator[tuple[BenchServer, _T]]:
    """A fresh ``exposure serve <target>`` and what ``prepare`` returned before it started.

    ``database_url`` is the PostgreSQL database to make a schema in (default
    :data:`DEFAULT_POSTGRES_URL`). ``target`` is what the server serves (``all``,
    ``keyserver`` or ``verification``): a benchmark of one service serves only it, as a
    production process does, so ``/health`` checks only that service's database. Unwound in
    reverse however the block ends: the server stops, the schema is dropped, the files go.
    """
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="exposure-bench-")))
        url: str | None = None
        if database is Database.POSTGRESQL:
            url = stack.enter_context(postgres_schema(database_url or DEFAULT_POSTGRES_URL))
        plan = launcher.plan_server(
            scratch / "data",
            log_path=scratch / "server.log",
            database_url=url,
            target=target,
            workers=server_workers,
            log_level="warning",
        )
        prepared = prepare(
            ServerSetup(plan.environment, plan.data_dir, url, plan.base_url, scratch)
        )
        try:
            pid = stack.enter_context(launcher.start_server(plan, start_timeout=_STARTUP_TIMEOUT))
        except launcher.ServerDidNotStart as error:
            raise BenchmarkError(str(error)) from None
        server = BenchServer(
            host=plan.host,
            port=plan.port,
            base_url=plan.base_url,
            pid=pid,
            log_path=plan.log_path,
            environment=plan.environment,
            database=database,
            data_dir=plan.data_dir,
            database_url=url,
            scratch=scratch,
        )
        yield server, prepared


def check_server_workers(server_workers: int) -> None:
    """Refuse ``server_workers`` above 1 when ``exposure serve`` has no ``--workers``."""
    if server_workers < 1:
        raise ValueError("server_workers must be positive")
    if server_workers > 1 and not serve_supports_workers():
        raise ValueError("exposure serve has no --workers option: only one server process")


# ---- the /health phase ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthResult:
    """``GET /health`` with the same generator and concurrency: the server's ceiling.

    ``/health`` answers after one small readiness query per database the server uses (the
    schema version and the KEK ids in use, in one statement), so it shows what the server
    manages on this machine without the work of the benchmarked endpoint: the baseline
    each request's cost is compared with (:func:`cost_ratio`). ``cpu`` covers this phase
    alone.
    """

    requests: int
    ok: int
    failed: int
    seconds: float
    requests_per_second: float
    latency: LatencySummary
    errors: dict[str, int]
    cpu: CpuUsage


def cost_ratio(request: CpuUsage, health: HealthResult) -> float | None:
    """Server CPU per request of ``request`` over server CPU per ``/health``, same run.

    A ratio, not milliseconds, because the machine is shared: both phases run under the
    same conditions, so the ratio moves far less than either figure. ``None`` where CPU
    cannot be read.
    """
    baseline = health.cpu.server_per_request_ms
    spent = request.server_per_request_ms
    if baseline is None or spent is None or baseline <= 0:
        return None
    return round(spent / baseline, 2)


async def measure_health(
    generator: LoadGenerator, server: BenchServer, *, requests: int, time_limit: float
) -> HealthResult:
    """Send ``requests`` ``GET /health`` over every connection of ``generator``.

    An answer counts only if it is 200 with ``"status": "ok"`` (every check ready).
    """
    health = build_request("GET", "/health", host=server.host_header, label=_HEALTH_LABEL)

    async def one_check(client: Client, _index: int) -> None:
        response = await client.send(health)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status != 200:
            client.fail(_HEALTH_LABEL, f"http_{response.status}")
        if not isinstance(body, dict) or body.get("status") != "ok":
            client.fail(_HEALTH_LABEL, "unexpected_body")
        client.accept(_HEALTH_LABEL, response)

    before = cpu_snapshot(server.pid, server.database)
    run = await generator.run(one_check, units=requests, time_limit=time_limit)
    after = cpu_snapshot(server.pid, server.database)
    seconds = run.seconds
    return HealthResult(
        requests=run.units_started,
        ok=run.units_completed,
        failed=run.units_failed,
        seconds=round(seconds, 3),
        requests_per_second=round(run.units_completed / seconds, 1) if seconds > 0 else 0.0,
        latency=summarize_latencies(run.latencies.get(_HEALTH_LABEL, [])),
        errors=run.errors,
        cpu=CpuUsage.between(before, after, run.requests),
    )
