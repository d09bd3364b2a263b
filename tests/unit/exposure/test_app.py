"""The application factory: probes that tell live from ready, JSON errors everywhere, and
only the routes of the services a process opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from exposure.app import create_app
from exposure.clock import utc_now
from exposure.compose import Deployment
from exposure.db import unit_of_work
from exposure.keys import ServiceKeyStore
from exposure.settings import Service
from keyserver.settings import KeyserverSettings
from tests.deployment import open_test_deployment
from tests.keys import kek_setting


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    opened = open_test_deployment(None, tmp_path, migrate=True)
    yield opened
    opened.close()


def _client(deployment: Deployment) -> TestClient:
    return TestClient(create_app(deployment))


def test_ready_when_every_database_schema_key_set_and_store_is(deployment: Deployment) -> None:
    with _client(deployment) as client:
        ready = client.get("/health/ready")
        legacy = client.get("/health")
        live = client.get("/health/live")

    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {
            "keyserver": {"database": "ok", "keys": "ok", "blob_store": "ok"},
            "verification": {"database": "ok", "keys": "ok"},
        },
    }
    assert legacy.json() == ready.json()
    assert (live.status_code, live.json()) == (200, {"status": "live"})


def test_not_ready_names_the_failing_check_with_a_stable_code(deployment: Deployment) -> None:
    keyserver = deployment.keyserver.resources.engine
    with keyserver.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
    with _client(deployment) as client:
        response = client.get("/health/ready")
        live = client.get("/health/live")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["keyserver"]["database"] == "not_migrated"
    assert body["checks"]["verification"]["database"] == "ok"
    assert live.status_code == 200


def test_a_key_sealed_under_a_kek_this_process_lacks_is_not_ready(
    deployment: Deployment,
) -> None:
    stranger = ServiceKeyStore("keyserver", [bytes(range(1, 33))], kek_source="another KEK")
    with unit_of_work(deployment.keyserver.session_factory) as session:
        stranger.create(session, "made-elsewhere", now=utc_now())
    with _client(deployment) as client:
        response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["keyserver"] == {
        "database": "ok",
        "keys": "keys_sealed_under_unknown_kek",
        "blob_store": "ok",
    }


def test_a_schema_migrated_by_a_newer_version_is_not_ready(deployment: Deployment) -> None:
    verification = deployment.verification.resources.engine
    with verification.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('v9999_from_the_future')"))
    with _client(deployment) as client:
        checks = client.get("/health/ready").json()["checks"]

    assert checks["verification"]["database"] == "schema_ahead"


def test_a_blob_store_that_takes_no_writes_is_not_ready(tmp_path: Path) -> None:
    blocked = tmp_path / "exports-blocked"
    blocked.write_text("a file where the export directory should be")
    settings = KeyserverSettings(kek=kek_setting("keyserver"), export_directory=blocked)
    opened = open_test_deployment(None, tmp_path, migrate=True, keyserver=settings)
    try:
        with _client(opened) as client:
            response = client.get("/health/ready")
    finally:
        opened.close()

    assert response.status_code == 503
    assert response.json()["checks"]["keyserver"]["blob_store"] == "not_writable"


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/no/such/route", 404, {"error": "no such resource", "code": "not_found"}),
        (
            "DELETE",
            "/health/ready",
            405,
            {"error": "method not allowed on this resource", "code": "method_not_allowed"},
        ),
        (
            "GET",
            "/api/no-such-call",
            404,
            {"error": "no such resource", "errorCode": "not_found", "error_code": "not_found"},
        ),
    ],
)
def test_framework_errors_answer_in_the_services_json_shape(
    deployment: Deployment, method: str, path: str, status: int, body: dict[str, str]
) -> None:
    with _client(deployment) as client:
        response = client.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    padding = answer.pop("padding", None)
    # The verification API pads every answer, its errors too; the others pad none.
    assert (padding is not None) == ("errorCode" in body)
    assert answer == body


def test_a_process_serves_only_the_routes_of_the_services_it_opened(tmp_path: Path) -> None:
    opened = open_test_deployment(None, tmp_path, services=[Service.KEYSERVER], migrate=True)
    try:
        with _client(opened) as client:
            publish = client.post("/v1/publish", json={})
            issue = client.post("/api/issue", json={})
            jwks = client.get("/jwks/1")
            ready = client.get("/health/ready").json()
            log = client.get("/audit/log?service=verification", headers={"X-API-Key": "x"})
    finally:
        opened.close()

    assert publish.status_code == 401  # the key server's own answer: no such app
    assert (issue.status_code, jwks.status_code) == (404, 404)
    assert list(ready["checks"]) == ["keyserver"]
    assert log.status_code == 401


def test_a_job_runner_serves_the_probes_but_no_api(deployment: Deployment) -> None:
    with TestClient(create_app(deployment, serve_api=False)) as client:
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/publish", json={}).status_code == 404
        assert client.get("/audit/public-keys").status_code == 404


def test_the_public_app_serves_no_metrics(deployment: Deployment) -> None:
    with _client(deployment) as client:
        response = client.get("/metrics")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
