"""Blocking work runs on a bounded executor, no wider than the connection pool."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from exposure.app import create_app
from exposure.compose import open_deployment
from exposure.http.blocking import blocking_executor, run_blocking
from exposure.settings import ExposureSettings
from tests.deployment import deployment_settings


class _Concurrency:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.threads: set[str] = set()

    def work(self, seconds: float) -> str:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.current_thread().name)
        time.sleep(seconds)
        with self._lock:
            self.now -= 1
        return threading.current_thread().name


def test_no_more_work_runs_at_once_than_the_executor_has_threads() -> None:
    seen = _Concurrency()

    async def burst() -> list[str]:
        asyncio.get_running_loop().set_default_executor(blocking_executor(2))
        return await asyncio.gather(*(run_blocking(seen.work, 0.02) for _ in range(8)))

    names = asyncio.run(burst())

    assert seen.most == 2
    assert len(seen.threads) == 2
    assert all(name.startswith("exposure-blocking") for name in names)


def test_an_executor_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="positive"):
        blocking_executor(0)


def test_the_app_sizes_its_executor_to_the_database_pool(tmp_path: Path) -> None:
    settings = replace(
        deployment_settings(tmp_path, None),
        base=ExposureSettings(data_dir=tmp_path, database_pool_size=3),
    )
    deployment = open_deployment(settings, None, migrate=True)
    app = create_app(deployment, owns_deployment=True)
    seen = _Concurrency()

    @app.get("/test/blocking")
    async def blocking() -> dict[str, str]:
        return {"thread": await run_blocking(seen.work, 0.05)}

    async def burst(client: TestClient) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(None, client.get, "/test/blocking") for _ in range(12))
        )

    with TestClient(app) as client:
        asyncio.run(burst(client))
        assert client.get("/health").status_code == 200

    assert seen.most == 3
    assert all(name.startswith("exposure-blocking") for name in seen.threads)
