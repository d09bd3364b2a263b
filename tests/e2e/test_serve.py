"""`exposure serve` end to end: a real uvicorn process on a free port, real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.conftest import RunningServer, run_cli, start_server


def test_serve_answers_health_on_embedded_sqlite(server: RunningServer) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=5)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=5)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert metrics.status_code == 404  # metrics have a listener of their own
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


def test_serve_with_several_workers(tmp_path: Path) -> None:
    running = start_server(tmp_path / "var", "--workers", "2")
    try:
        answers = {httpx.get(f"{running.base_url}/health", timeout=5).status_code for _ in range(6)}
        assert answers == {200}
    finally:
        output = running.stop()
    assert "Started parent process" in output or "worker" in output.lower()
    # Two workers starting together on a fresh directory agree on every key made on first
    # start: none crashed and was respawned.
    assert "Traceback" not in output
    assert output.count("Started server process") == 2


def test_serve_one_service_as_a_job_runner_or_an_api_only_replica(tmp_path: Path) -> None:
    runner = start_server(tmp_path / "var", "keyserver", "--no-api")
    try:
        assert httpx.get(f"{runner.base_url}/health/ready", timeout=5).status_code == 200
        assert httpx.post(f"{runner.base_url}/v1/publish", json={}, timeout=5).status_code == 404
    finally:
        runner_output = runner.stop()
    replica = start_server(tmp_path / "var", "verification", "--no-jobs")
    try:
        ready = httpx.get(f"{replica.base_url}/health/ready", timeout=5).json()
        issue = httpx.post(f"{replica.base_url}/api/issue", json={}, timeout=5)
        publish = httpx.post(f"{replica.base_url}/v1/publish", json={}, timeout=5)
    finally:
        replica_output = replica.stop()

    assert list(ready["checks"]) == ["verification"]
    assert issue.status_code == 401  # the verification API answers: no API key
    assert publish.status_code == 404  # the key server's does not
    assert "Scheduler started" in runner_output
    assert "Scheduler started" not in replica_output


def test_throwaway_demo_timing_is_refused_off_loopback(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "serve",
        "keyserver",
        "--host",
        "0.0.0.0",  # noqa: S104 - the address a real deployment would bind, refused here
        environment={"EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING": "true"},
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING is for throwaway demos: "
        "serve on a loopback address, not 0.0.0.0"
    ]
