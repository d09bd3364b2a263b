"""`exposure serve` end to end: a real uvicorn process on a free port, real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

EXPOSURE = Path(sys.executable).parent / "exposure"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen[str]
    data_dir: Path

    def stop(self) -> str:
        self.process.terminate()
        output, _ = self.process.communicate(timeout=20)
        return output


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    port = _free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("EXPOSURE_")
    }
    environment["EXPOSURE_DATA_DIR"] = str(tmp_path / "var")
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningServer(f"http://127.0.0.1:{port}", process, tmp_path / "var")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{process.communicate()[0]}")
        try:
            httpx.get(f"{running.base_url}/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        running.stop()
        pytest.fail("server did not answer within 30 s")
    yield running
    if process.poll() is None:
        running.stop()


def test_serve_answers_health_and_metrics_on_embedded_sqlite(server: RunningServer) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=5)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=5)

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert metrics.status_code == 200
    assert "python_info" in metrics.text
    # Each service got its own migrated SQLite database under EXPOSURE_DATA_DIR.
    assert (server.data_dir / "keyserver.sqlite3").exists()
    assert (server.data_dir / "verification.sqlite3").exists()


def test_serve_logs_no_client_address_or_user_agent(server: RunningServer) -> None:
    with httpx.Client(
        headers={"User-Agent": "probe-agent/9.9", "X-Forwarded-For": "203.0.113.77"}
    ) as client:
        for _ in range(3):
            client.get(f"{server.base_url}/health", timeout=5)
            client.get(f"{server.base_url}/does-not-exist", timeout=5)

    output = server.stop()

    assert "Uvicorn running" in output or "Application startup complete" in output
    assert "203.0.113.77" not in output
    assert "probe-agent" not in output
    assert "GET /health" not in output
    assert "/does-not-exist" not in output
