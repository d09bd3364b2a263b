"""The launcher (exposure.launcher): a real ``exposure serve`` started, seen, stopped."""

from __future__ import annotations

import base64
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from exposure import launcher

# A stand-in server: answers /health like exposure serve, starts in a blink.
TINY_SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
# Listens on nothing and ignores the polite request to stop.
DEAF_AND_STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((launcher.LOOPBACK, port))
        except OSError:
            return False
    return True


@pytest.fixture
def server_database_url(engine_name: str, request: pytest.FixtureRequest) -> str | None:
    """``None`` for the launcher's SQLite default, else a fresh migrated PostgreSQL schema."""
    if engine_name == "sqlite":
        return None
    url: str = request.getfixturevalue("database_url")
    return url


def test_a_real_server_answers_and_is_gone_afterwards(
    tmp_path: Path, server_database_url: str | None
) -> None:
    plan = launcher.plan_server(
        tmp_path / "data",
        log_path=tmp_path / "server.log",
        database_url=server_database_url,
        scheduled_jobs=False,
        log_level="info",
    )
    with launcher.start_server(plan, start_timeout=60) as pid:
        assert _is_running(pid)
        health = httpx.get(f"{plan.base_url}/health", timeout=10, trust_env=False)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert not _port_is_free(plan.port)
    assert not _is_running(pid)
    assert _port_is_free(plan.port)
    # It ran where it was told: its state went under the data directory (SQLite) or into
    # the database given, and its output into the log.
    on_sqlite = server_database_url is None
    assert any((tmp_path / "data").glob("*.sqlite3")) is on_sqlite
    assert plan.log_path.stat().st_size > 0


def test_a_server_that_refuses_to_start_is_reported_at_once(tmp_path: Path) -> None:
    plan = launcher.plan_server(tmp_path / "data", log_path=tmp_path / "server.log")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((launcher.LOOPBACK, plan.port))
        squatter.listen()
        started = time.monotonic()
        with (
            pytest.raises(launcher.ServerDidNotStart, match="exited with 6") as refused,
            launcher.start_server(plan, start_timeout=60),
        ):
            pytest.fail("a server whose port is taken must not start")
    # Told as soon as it exits, not when the start timeout runs out.
    assert time.monotonic() - started < 45
    assert refused.value.exit_code == 6
    assert "in use" in refused.value.last_log_line
    assert "in use" in str(refused.value)


def test_a_server_that_never_answers_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    port = launcher.free_loopback_port()
    with (
        pytest.raises(
            launcher.ServerDidNotStart, match="did not answer /health within 1 s"
        ) as late,
        launcher.start_process(
            [sys.executable, "-c", DEAF_AND_STUBBORN],
            dict(os.environ),
            f"http://{launcher.LOOPBACK}:{port}",
            tmp_path / "log",
            start_timeout=1,
            stop_timeout=0.5,
        ),
    ):
        pytest.fail("nothing answered")
    assert late.value.exit_code is None
    # It ignored SIGTERM: the launcher killed it rather than wait for it.
    assert time.monotonic() - started < 20


def _fail_while_serving(tmp_path: Path, port: int, seen: list[int]) -> None:
    with launcher.start_process(
        [sys.executable, "-c", TINY_SERVER, str(port)],
        dict(os.environ),
        f"http://{launcher.LOOPBACK}:{port}",
        tmp_path / "log",
    ) as pid:
        seen.append(pid)
        assert _is_running(pid)
        raise RuntimeError("the run fails midway")


def test_the_server_is_stopped_when_the_block_fails(tmp_path: Path) -> None:
    port = launcher.free_loopback_port()
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="fails midway"):
        _fail_while_serving(tmp_path, port, seen)
    assert not _is_running(seen[0])
    assert _port_is_free(port)


def test_the_environment_is_the_servers_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPOSURE_DATABASE_URL", "postgresql+psycopg://someone@elsewhere/prod")
    monkeypatch.setenv("EXPOSURE_HOST", "192.0.2.1")
    monkeypatch.setenv("LAUNCHER_TEST_UNRELATED", "kept")

    plain = launcher.server_environment(tmp_path, 8123)
    assert plain["EXPOSURE_DATA_DIR"] == str(tmp_path)
    assert plain["EXPOSURE_HOST"] == "127.0.0.1"
    assert plain["EXPOSURE_PORT"] == "8123"
    assert plain["EXPOSURE_METRICS_PORT"] == "0"
    assert plain["EXPOSURE_VERIFICATION_REQUESTS_PER_MINUTE"] == "100000"
    assert plain["LAUNCHER_TEST_UNRELATED"] == "kept"
    for absent in (
        "EXPOSURE_DATABASE_URL",
        "EXPOSURE_KEYSERVER_KEK",
        "EXPOSURE_LOG_LEVEL",
        launcher.THROWAWAY_DEMO_TIMING_SETTING,
    ):
        assert absent not in plain

    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    demo = launcher.server_environment(
        tmp_path, 8123, url, throwaway_demo_timing=True, log_level="warning"
    )
    assert demo["EXPOSURE_DATABASE_URL"] == url
    assert demo[launcher.THROWAWAY_DEMO_TIMING_SETTING] == "true"
    assert demo["EXPOSURE_LOG_LEVEL"] == "warning"
    keks = [demo["EXPOSURE_KEYSERVER_KEK"], demo["EXPOSURE_VERIFICATION_KEK"]]
    assert keks[0] != keks[1]
    assert all(len(base64.b64decode(kek, validate=True)) == 32 for kek in keks)


def test_the_command_carries_target_workers_and_jobs(tmp_path: Path) -> None:
    default = launcher.plan_server(tmp_path, log_path=tmp_path / "log")
    assert default.command[:3] == (sys.executable, "-c", "from exposure.cli import main; main()")
    assert default.command[3:] == (
        "serve",
        "all",
        "--host",
        "127.0.0.1",
        "--port",
        str(default.port),
    )
    assert default.exposure == default.command[:3]
    assert default.base_url == f"http://127.0.0.1:{default.port}"
    assert default.environment["EXPOSURE_PORT"] == str(default.port)
    assert not tmp_path.joinpath("log").exists()  # planned, not started

    tuned = launcher.plan_server(
        tmp_path,
        log_path=tmp_path / "log",
        target="keyserver",
        workers=3,
        scheduled_jobs=False,
        exposure=("/opt/exposure/bin/exposure",),
    )
    assert tuned.command == (
        "/opt/exposure/bin/exposure", "serve", "keyserver",
        "--host", "127.0.0.1", "--port", str(tuned.port),
        "--workers", "3", "--no-jobs",
    )  # fmt: skip
    with pytest.raises(ValueError, match="positive"):
        launcher.plan_server(tmp_path, log_path=tmp_path / "log", workers=0)
