"""Start a real ``exposure serve`` as a separate process, wait until it answers, stop it.

The demo (:mod:`exposure.demo.run`) and the HTTP benchmarks (``benchmarks.harness``) each
run a server of their own, as an operator would: the ``exposure`` command of this very
interpreter, on a free loopback port, with a data directory and optionally a PostgreSQL
URL, in an environment of its own. This module is that launcher, once.

It knows the server only from outside: a command line, environment variables and
``GET /health``. It imports none of the server's code, so the demo, which may only speak
HTTP and the CLI, may use it (an import contract in pyproject.toml keeps it so).

Two steps, because a caller often has work to do between them: :func:`plan_server` picks
the port and writes the environment and the command (the benchmarks then run an operator's
setup against the same data directory), and :func:`start_server` starts the process, waits
for ``/health`` to answer 200 and stops the process however the block ends.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from crypto.randomness import random_bytes
from crypto.sealing import MINIMUM_SECRET_LENGTH

__all__ = [
    "LOOPBACK",
    "REQUESTS_PER_MINUTE",
    "THROWAWAY_DEMO_TIMING_SETTING",
    "ServerDidNotStart",
    "ServerPlan",
    "exposure_command",
    "free_loopback_port",
    "log_tail",
    "plan_server",
    "server_environment",
    "start_process",
    "start_server",
]

#: The only address a launched server listens on: it is for this machine's own clients.
LOOPBACK = "127.0.0.1"
#: The largest per-(realm, client) request limit the verification settings accept. Every
#: client of a launched server calls from 127.0.0.1, which the per-client limit would
#: otherwise take for one client calling thousands of times.
REQUESTS_PER_MINUTE = 100_000
#: The setting that makes the server a throwaway demo one (docs/privacy.md).
THROWAWAY_DEMO_TIMING_SETTING = "EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING"
#: How long a server may take to answer /health: migrations on a busy shared machine.
DEFAULT_START_TIMEOUT = 90.0
#: How long a server may take to shut down once asked before its process group is killed.
DEFAULT_STOP_TIMEOUT = 20.0

_LOG_TAIL_CHARACTERS = 4_000
_PROBE_TIMEOUT = 5.0
_PROBE_INTERVAL = 0.1
# Runs the CLI of whatever interpreter runs it: no dependence on a script in PATH, which
# could belong to another installation.
_CLI_SCRIPT = "from exposure.cli import main; main()"


class ServerDidNotStart(RuntimeError):  # noqa: N818 - names the event
    """The server exited, or did not answer ``/health``, before its start timeout.

    ``log_tail`` is the end of what it printed (the server's logs carry no secrets), for the
    caller to show as much of as suits it.
    """

    def __init__(self, reason: str, log_tail: str, exit_code: int | None) -> None:
        super().__init__(f"{reason}:\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail
        self.exit_code = exit_code

    @property
    def last_log_line(self) -> str:
        """The last line the server printed, usually why it refused to start."""
        lines = self.log_tail.strip().splitlines()
        return lines[-1] if lines else ""


def free_loopback_port() -> int:
    """A TCP port on :data:`LOOPBACK` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def exposure_command(*arguments: str) -> tuple[str, ...]:
    """The ``exposure`` command of this very interpreter and installation, with ``arguments``."""
    return (sys.executable, "-c", _CLI_SCRIPT, *arguments)


def _fresh_kek() -> str:
    # As ``exposure keys new-kek`` prints one; exposure.keys itself is out of this module's
    # reach (the demo's import contract).
    return base64.b64encode(random_bytes(MINIMUM_SECRET_LENGTH)).decode("ascii")


def server_environment(
    data_dir: Path,
    port: int,
    database_url: str | None = None,
    *,
    throwaway_demo_timing: bool = False,
    log_level: str | None = None,
) -> dict[str, str]:
    """The environment of a launched server and of the ``exposure`` commands run beside it.

    Nothing of the caller's own ``EXPOSURE_*`` configuration leaks in. On PostgreSQL each
    service needs its KEK (off the embedded shape none is made for it): a fresh one each.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("EXPOSURE_")
    }
    environment.update(
        {
            "EXPOSURE_DATA_DIR": str(data_dir),
            "EXPOSURE_HOST": LOOPBACK,
            "EXPOSURE_PORT": str(port),
            # A launched server may run beside another; nobody reads its metrics.
            "EXPOSURE_METRICS_PORT": "0",
            "EXPOSURE_VERIFICATION_REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
        }
    )
    if log_level is not None:
        environment["EXPOSURE_LOG_LEVEL"] = log_level
    if throwaway_demo_timing:
        environment[THROWAWAY_DEMO_TIMING_SETTING] = "true"
    if database_url is not None:
        environment["EXPOSURE_DATABASE_URL"] = database_url
        environment["EXPOSURE_KEYSERVER_KEK"] = _fresh_kek()
        environment["EXPOSURE_VERIFICATION_KEK"] = _fresh_kek()
    return environment


@dataclass(frozen=True, slots=True)
class ServerPlan:
    """A server about to start: where, with what environment, by what command."""

    data_dir: Path
    port: int
    #: The PostgreSQL URL, or ``None`` for SQLite under ``data_dir``.
    database_url: str | None
    #: The server's environment: ``exposure`` commands run with it reach the same state.
    environment: dict[str, str]
    #: The ``exposure`` command the server runs as, for the caller's own commands too.
    exposure: tuple[str, ...]
    #: The whole ``exposure serve ...`` command line.
    command: tuple[str, ...]
    #: Where the server's stdout and stderr go.
    log_path: Path

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def plan_server(
    data_dir: Path,
    *,
    log_path: Path,
    database_url: str | None = None,
    target: str = "all",
    workers: int = 1,
    scheduled_jobs: bool = True,
    throwaway_demo_timing: bool = False,
    log_level: str | None = None,
    exposure: Sequence[str] = (),
) -> ServerPlan:
    """Pick a free port and write down how ``exposure serve target`` will run there.

    ``exposure`` is the command to run (default: :func:`exposure_command`). Nothing is
    created yet: the data directory is the server's (or the caller's) to make.
    """
    if workers < 1:
        raise ValueError("workers must be positive")
    port = free_loopback_port()
    prefix = tuple(exposure) or exposure_command()
    command = [*prefix, "serve", target, "--host", LOOPBACK, "--port", str(port)]
    if workers != 1:
        # Only then: an older ``exposure serve`` has no --workers at all.
        command += ["--workers", str(workers)]
    if not scheduled_jobs:
        command.append("--no-jobs")
    environment = server_environment(
        data_dir,
        port,
        database_url,
        throwaway_demo_timing=throwaway_demo_timing,
        log_level=log_level,
    )
    return ServerPlan(
        data_dir=data_dir,
        port=port,
        database_url=database_url,
        environment=environment,
        exposure=prefix,
        command=tuple(command),
        log_path=log_path,
    )


def log_tail(path: Path) -> str:
    """The end of a server's log (empty if it cannot be read)."""
    try:
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return content[-_LOG_TAIL_CHARACTERS:]


def _wait_until_healthy(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    # trust_env off: a proxy from the environment must not stand between us and loopback.
    with httpx.Client(base_url=base_url, timeout=_PROBE_TIMEOUT, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerDidNotStart(
                    f"exposure serve exited with {process.returncode}",
                    log_tail(log_path),
                    process.returncode,
                )
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(_PROBE_INTERVAL)
    raise ServerDidNotStart(
        f"exposure serve did not answer /health within {timeout:.0f} s",
        log_tail(log_path),
        None,
    )


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask the server to shut down; kill its whole process group if it does not in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The server leads its own group (start_new_session): this reaches its workers.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def start_process(
    command: Sequence[str],
    environment: dict[str, str],
    base_url: str,
    log_path: Path,
    *,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
) -> Iterator[int]:
    """Start ``command``, wait until ``base_url``/health answers 200, yield its pid, stop it.

    Its output goes to ``log_path``. Raises :class:`ServerDidNotStart` (the process stopped)
    if it exits or does not answer within ``start_timeout`` seconds. The process runs in a
    session of its own: a Ctrl-C meant for the caller does not reach it, the caller stops it.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the caller's own command, no shell
            list(command),
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_healthy(process, base_url, log_path, start_timeout)
            yield process.pid
        finally:
            _stop(process, stop_timeout)


@contextmanager
def start_server(
    plan: ServerPlan,
    *,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
) -> Iterator[int]:
    """Run ``plan``'s server until the block ends; yields its pid. See :func:`start_process`."""
    with start_process(
        plan.command,
        plan.environment,
        plan.base_url,
        plan.log_path,
        start_timeout=start_timeout,
        stop_timeout=stop_timeout,
    ) as pid:
        yield pid
