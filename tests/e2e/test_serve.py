"""`exposure serve` end to end: a real uvicorn process on a free port, real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.conftest import RunningServer, start_server


def test_serve_answers_health_and_metrics_on_embedded_sqlite(server: RunningServer) -> None:
    health = httpx.get(f"{server.base_url}/health", timeout=5)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=5)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
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


def test_serve_with_several_workers(tmp_path: Path) -> None:
    running = start_server(tmp_path / "var", "--workers", "2")
    try:
        answers = {httpx.get(f"{running.base_url}/health", timeout=5).status_code for _ in range(6)}
        assert answers == {200}
    finally:
        output = running.stop()
    assert "Started parent process" in output or "worker" in output.lower()
