"""A real `exposure serve` process on a free port, and the CLI as a subprocess."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exposure.db import create_database_engine
from exposure.launcher import free_loopback_port
from tests.conftest import postgres_base_url

EXPOSURE = Path(sys.executable).parent / "exposure"


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen[str]
    data_dir: Path

    def stop(self) -> str:
        self.process.terminate()
        output, _ = self.process.communicate(timeout=20)
        return output


def start_server(
    data_dir: Path, *arguments: str, environment: Mapping[str, str] | None = None
) -> RunningServer:
    """Start `exposure serve` on a free port and wait until /health answers.

    ``environment`` adds settings to the clean environment (a PostgreSQL URL, its KEKs).
    """
    port = free_loopback_port()
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", "--port", str(port), *arguments],
        env={**clean_environment(data_dir), **(environment or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningServer(f"http://127.0.0.1:{port}", process, data_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{process.communicate()[0]}")
        try:
            httpx.get(f"{running.base_url}/health", timeout=1)
            return running
        except httpx.TransportError:
            time.sleep(0.1)
    running.stop()
    pytest.fail("server did not answer within 30 s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "var")
    yield running
    if running.process.poll() is None:
        running.stop()


def clean_environment(data_dir: Path) -> dict[str, str]:
    """The test's environment without EXPOSURE_* settings, pointed at ``data_dir``."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("EXPOSURE_")
    }
    environment["EXPOSURE_DATA_DIR"] = str(data_dir)
    # Servers of several tests (and of one test) run side by side: no metrics listener,
    # unless a test asks for one on a port of its own.
    environment["EXPOSURE_METRICS_PORT"] = "0"
    return environment


def run_cli(
    data_dir: Path, *arguments: str, environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXPOSURE), *arguments],
        env={**clean_environment(data_dir), **(environment or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """An empty PostgreSQL database of its own, dropped afterwards."""
    base = make_url(postgres_base_url())
    name = f"cli_{secrets.token_hex(5)}"
    admin = create_database_engine(base.render_as_string(hide_password=False))
    with admin.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
