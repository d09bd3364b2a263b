"""The application factory: /health reflects the databases, /metrics speaks Prometheus."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from exposure.app import Databases, create_app
from exposure.settings import ExposureSettings, Service


def _settings(tmp_path: Path) -> ExposureSettings:
    return ExposureSettings(data_dir=tmp_path, database_url=None)


def test_health_is_ok_when_databases_answer(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_each_service_has_its_own_database_by_default(tmp_path: Path) -> None:
    databases = Databases.from_settings(_settings(tmp_path))
    try:
        assert len(databases.distinct_engines()) == 2
        assert databases.engines[Service.KEYSERVER] is not databases.engines[Service.VERIFICATION]
    finally:
        databases.dispose()


def test_a_shared_url_shares_one_engine(tmp_path: Path) -> None:
    settings = ExposureSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/one.db")
    databases = Databases.from_settings(settings)
    try:
        assert len(databases.distinct_engines()) == 1
    finally:
        databases.dispose()


def test_health_is_503_when_a_database_is_gone(tmp_path: Path) -> None:
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    settings = ExposureSettings(data_dir=tmp_path, keyserver_database_url=unreachable)
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "127.0.0.1" not in response.text


def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "python_info" in response.text
