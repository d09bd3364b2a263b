"""The benchmark harness (benchmarks.harness): statistics, CPU, the server's life, /health."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote

import pytest
from sqlalchemy import text

from benchmarks import harness
from benchmarks.loadgen import LoadGenerator, run_event_loop
from exposure import launcher
from exposure.db import create_database_engine
from exposure.settings import Service
from tests.conftest import postgres_base_url
from tests.unit.benchmarks.fake_http import answer, fake_server, target


def test_percentiles_are_nearest_rank() -> None:
    summary = harness.summarize_latencies([index / 1000 for index in range(1, 101)])
    assert (summary.count, summary.p50_ms, summary.p95_ms, summary.p99_ms) == (100, 50, 95, 99)
    assert summary.max_ms == 100
    assert summary.mean_ms == pytest.approx(50.5)
    assert harness.summarize_latencies([]).count == 0
    assert harness.summarize_latencies([0.002]).p99_ms == 2


def test_cpu_usage_divides_by_requests() -> None:
    before = harness.CpuSnapshot(
        server={1: 10.0, 2: 5.0}, client=3.0, database={}, machine=(100, 400)
    )
    # Worker 2 ended (its CPU went to its parent); worker 3 started.
    after = harness.CpuSnapshot(
        server={1: 16.0, 3: 1.0}, client=3.5, database={}, machine=(300, 600)
    )
    usage = harness.CpuUsage.between(before, after, requests=1_000)
    assert usage.server_seconds == pytest.approx(2.0)
    assert usage.client_seconds == pytest.approx(0.5)
    assert usage.server_per_request_ms == pytest.approx(2.0)
    assert usage.client_per_request_ms == pytest.approx(0.5)
    assert usage.database_seconds is None
    assert usage.machine_utilization == pytest.approx(1.0)
    # 200 busy jiffies are 2 s at 100 Hz; the server and the client took 2.5 of them.
    ticks = harness._clock_ticks()
    assert usage.other_seconds == pytest.approx(max(0.0, 200 / ticks - 2.5))
    idle = harness.CpuUsage.between(before, before, requests=0)
    assert idle.client_per_request_ms is None


def test_this_process_cpu_is_read() -> None:
    snapshot = harness.cpu_snapshot(os.getpid(), harness.Database.SQLITE)
    assert snapshot.client > 0
    if Path("/proc/self/stat").exists():
        assert os.getpid() in snapshot.server


def test_search_path_is_added_to_the_url() -> None:
    url = harness.with_search_path("postgresql+psycopg://u@h/db", "bench_1")
    assert url == "postgresql+psycopg://u@h/db?options=-csearch_path%3Dbench_1"
    assert harness.with_search_path("postgresql+psycopg://u@h/db?a=b", "s").endswith(
        "?a=b&options=-csearch_path%3Ds"
    )


def test_commands_must_print_one_json_object_each() -> None:
    printed = '{\n  "a": 1\n}\n{"b": {"c": [2]}}\n'
    assert harness.json_objects(printed) == [{"a": 1}, {"b": {"c": [2]}}]
    assert harness.json_objects("") == []
    assert harness.json_objects('{"a": 1}\nerror: no database') is None
    assert harness.json_objects("[1, 2]") is None


def test_several_server_processes_need_serve_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    harness.check_server_workers(1)
    monkeypatch.setattr(harness, "serve_supports_workers", lambda: False)
    with pytest.raises(ValueError, match="--workers"):
        harness.check_server_workers(2)
    with pytest.raises(ValueError, match="positive"):
        harness.check_server_workers(0)


def test_a_server_that_does_not_start_is_a_benchmark_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(_plan: launcher.ServerPlan, **_timeouts: float) -> NoReturn:
        raise launcher.ServerDidNotStart("exposure serve exited with 3", "no database", 3)

    monkeypatch.setattr(launcher, "start_server", refuse)
    with (
        pytest.raises(harness.BenchmarkError, match="exited with 3:\nno database"),
        harness.running_server(harness.Database.SQLITE, None, 1, lambda _setup: None),
    ):
        pytest.fail("the server must not be yielded")


def test_server_workers_reach_the_serve_command(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, ...]] = []

    @contextmanager
    def pretend_to_start(plan: launcher.ServerPlan, **_timeouts: float) -> Iterator[int]:
        started.append(plan.command)
        yield 4242

    monkeypatch.setattr(launcher, "start_server", pretend_to_start)
    with harness.running_server(harness.Database.SQLITE, None, 2, lambda _setup: "ready") as (
        server,
        prepared,
    ):
        assert (server.pid, prepared) == (4242, "ready")
        assert server.scratch.is_dir()
        assert server.database_url_for(Service.KEYSERVER).startswith("sqlite:///")
    [command] = started
    assert command[-6:] == ("--host", "127.0.0.1", "--port", str(server.port), "--workers", "2")
    assert not server.scratch.exists()


def test_worker_processes_are_counted_with_the_server() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in harness._server_pids(os.getpid())
        assert child.pid in harness.cpu_snapshot(os.getpid(), harness.Database.SQLITE).server
    finally:
        child.kill()
        child.wait()


def _fail_in_prepare(
    database: harness.Database, url: str | None, seen: list[harness.ServerSetup]
) -> None:
    def prepare(setup: harness.ServerSetup) -> None:
        seen.append(setup)
        setup.data_dir.mkdir(parents=True)
        raise RuntimeError("bootstrap fails")

    with harness.running_server(database, url, 1, prepare):
        pytest.fail("the server must not start")


def test_files_go_when_setup_fails() -> None:
    seen: list[harness.ServerSetup] = []
    with pytest.raises(RuntimeError, match="bootstrap fails"):
        _fail_in_prepare(harness.Database.SQLITE, None, seen)
    [setup] = seen
    assert not setup.data_dir.parent.exists()
    assert setup.database_url is None
    # The caller's EXPOSURE_* settings never reach the benchmark server.
    assert setup.environment["EXPOSURE_DATA_DIR"] == str(setup.data_dir)
    assert setup.environment["EXPOSURE_HOST"] == "127.0.0.1"


def _schema_exists(base_url: str, schema: str) -> bool:
    engine = create_database_engine(base_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
                {"name": schema},
            ).first()
    finally:
        engine.dispose()
    return found is not None


@pytest.mark.postgres
def test_postgresql_schema_is_dropped_when_setup_fails() -> None:
    base = postgres_base_url()
    seen: list[harness.ServerSetup] = []
    with pytest.raises(RuntimeError, match="bootstrap fails"):
        _fail_in_prepare(harness.Database.POSTGRESQL, base, seen)
    [setup] = seen
    assert setup.database_url is not None
    schema = unquote(setup.database_url).rpartition("search_path=")[2]
    assert schema.startswith("bench_")
    assert setup.environment["EXPOSURE_DATABASE_URL"] == setup.database_url
    assert not _schema_exists(base, schema)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"status":"ok"}', True),
        (b'{"status":"unavailable"}', False),
        (b"ok", False),
    ],
)
def test_health_counts_only_exact_answers(body: bytes, ok: bool, tmp_path: Path) -> None:
    async def respond(_head: bytes, _body: bytes) -> bytes:
        return answer(200, body)

    async def main() -> harness.HealthResult:
        async with (
            fake_server(respond) as port,
            LoadGenerator("127.0.0.1", port, connections=3) as generator,
        ):
            return await harness.measure_health(
                generator, target(port, tmp_path), requests=40, time_limit=10
            )

    result = run_event_loop(main)
    assert result.requests == 40
    assert result.ok == (40 if ok else 0)
    assert result.failed == 40 - result.ok
    assert result.latency.count == result.ok
    assert result.errors == ({} if ok else {"health/unexpected_body": 40})
    assert result.cpu.requests == 40
    assert result.cpu.client_per_request_ms is not None
