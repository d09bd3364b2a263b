"""The OpenAPI document: every route is in it, as the handler behind it really behaves, and
it is valid OpenAPI 3.1. (``tests/e2e/test_openapi_conformance.py`` holds real answers to it.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
import starlette.routing
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from exposure.api.v1 import PublishRequest
from exposure.api.verification import IssueCodeRequest
from exposure.app import create_app
from exposure.compose import Deployment
from exposure.http.openapi import Answer, DocumentedRouter, Operation
from exposure.settings import Service
from tests.deployment import open_test_deployment

#: Routes served but not operations of the API: the description itself and a catch-all.
UNDOCUMENTED = {
    ("GET", "/openapi.json"),
    ("HEAD", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/swagger-ui-bundle.js"),
    ("GET", "/docs/swagger-ui.css"),
    ("GET", "/docs/favicon.png"),
    ("GET", "/exports/{rest:path}"),  # any other name under /exports/: the same 404
    ("HEAD", "/exports/{rest:path}"),
}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    opened = open_test_deployment(None, tmp_path, migrate=True)
    yield opened
    opened.close()


def _served(app: FastAPI) -> set[tuple[str, str]]:
    routes = fastapi.routing.iter_route_contexts(app.routes)
    return {(method, route.path) for route in routes for method in route.methods or ()}


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def _document(app: FastAPI) -> dict[str, Any]:
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_every_route_is_an_operation_and_every_operation_a_route(
    deployment: Deployment,
) -> None:
    app = create_app(deployment)
    document = _document(app)

    # The console's pages are HTML for people, not API operations (docs/console.md).
    api_routes = {route for route in _served(app) if not route[1].startswith("/console")}
    assert _documented(document) == api_routes - UNDOCUMENTED
    assert "/api/issue" in document["paths"]
    assert "/v1/publish" in document["paths"]


def test_the_document_is_valid_openapi_3_1(deployment: Deployment) -> None:
    document = _document(create_app(deployment))

    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_request_bodies_are_the_models_the_handlers_parse(deployment: Deployment) -> None:
    document = _document(create_app(deployment))
    schemas = document["components"]["schemas"]

    def body(path: str) -> dict[str, Any]:
        schema: dict[str, Any] = document["paths"][path]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        return schema

    assert body("/v1/publish") == {"$ref": "#/components/schemas/PublishRequest"}
    assert body("/api/issue") == {"$ref": "#/components/schemas/IssueCodeRequest"}
    # Wire names, as the handlers accept them; unknown fields are refused.
    assert list(schemas["PublishRequest"]["properties"]) == list(PublishRequest.model_fields)
    assert schemas["PublishRequest"]["additionalProperties"] is False
    assert "temporaryExposureKeys" in schemas["PublishRequest"]["properties"]
    assert list(schemas["IssueCodeRequest"]["properties"]) == list(IssueCodeRequest.model_fields)


def test_each_operation_names_the_kind_of_api_key_it_needs(deployment: Deployment) -> None:
    document = _document(create_app(deployment))
    schemes = document["components"]["securitySchemes"]

    def security(method: str, path: str) -> list[dict[str, list[str]]] | None:
        found: list[dict[str, list[str]]] | None = document["paths"][path][method].get("security")
        return found

    assert {scheme["name"] for scheme in schemes.values()} == {"X-API-Key"}
    assert {scheme["type"] for scheme in schemes.values()} == {"apiKey"}
    for path in ("/api/issue", "/api/batch-issue", "/api/checkcodestatus", "/api/expirecode"):
        assert security("post", path) == [{"adminKey": []}]
        assert "an admin API key" in document["paths"][path]["post"]["description"]
    for path in ("/api/verify", "/api/certificate"):
        assert security("post", path) == [{"deviceKey": []}]
    for path in ("/audit/log", "/audit/compliance"):
        assert security("get", path) == [{"auditorKey": []}]
    for method, path in (("post", "/v1/publish"), ("get", "/jwks/{realm}"), ("get", "/health")):
        assert security(method, path) is None


def test_errors_are_documented_in_each_service_s_shape(deployment: Deployment) -> None:
    document = _document(create_app(deployment))
    paths = document["paths"]

    def schema(method: str, path: str, status: str) -> dict[str, Any]:
        found: dict[str, Any] = paths[path][method]["responses"][status]["content"][
            "application/json"
        ]["schema"]
        return found

    verification_error = {"$ref": "#/components/schemas/ErrorResponse"}
    assert schema("post", "/api/issue", "401") == verification_error
    assert schema("post", "/api/checkcodestatus", "404") == verification_error
    assert schema("get", "/jwks/{realm}", "404") == verification_error
    assert set(paths["/api/verify"]["post"]["responses"]) >= {"200", "400", "401", "412", "429"}
    assert schema("post", "/v1/publish", "401") == {"$ref": "#/components/schemas/PublishResponse"}
    assert set(paths["/v1/publish"]["post"]["responses"]) == {
        "200",
        "400",
        "401",
        "413",
        "415",
        "429",
        "500",
    }
    assert "422" not in {
        status for item in paths.values() for operation in item.values() for status in operation
    }
    parameters = {parameter["name"] for parameter in paths["/audit/log"]["get"]["parameters"]}
    assert parameters == {"service", "after", "limit"}


def test_a_process_serves_the_operations_of_the_services_it_opened(tmp_path: Path) -> None:
    opened = open_test_deployment(None, tmp_path, services=[Service.KEYSERVER], migrate=True)
    try:
        paths = set(_document(create_app(opened))["paths"])
    finally:
        opened.close()

    assert "/v1/publish" in paths
    assert not any(path.startswith(("/api/", "/jwks/")) for path in paths)


def test_a_job_runner_serves_no_document_and_no_docs(deployment: Deployment) -> None:
    with TestClient(create_app(deployment, serve_api=False)) as client:
        answers = {
            path: client.get(path).status_code
            for path in ("/openapi.json", "/docs", "/docs/swagger-ui-bundle.js")
        }

    assert answers == {"/openapi.json": 404, "/docs": 404, "/docs/swagger-ui-bundle.js": 404}


def test_docs_is_served_from_local_assets_only(deployment: Deployment) -> None:
    with TestClient(create_app(deployment)) as client:
        page = client.get("/docs")
        script = client.get("/docs/swagger-ui-bundle.js")

    assert page.status_code == 200
    assert "/docs/swagger-ui-bundle.js" in page.text
    assert "/openapi.json" in page.text
    assert "https://" not in page.text
    assert "http://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in script.content


def test_a_get_route_must_be_registered_as_an_api_route() -> None:
    async def endpoint(_request: object) -> None: ...

    operation = Operation("GET", "/x", "x", "x", "x", "x", {200: Answer("x")})

    with pytest.raises(ValueError, match="add_documented_api_route"):
        DocumentedRouter().add_documented_route(operation, endpoint)  # type: ignore[arg-type]


def test_documenting_leaves_the_hot_routes_plain_starlette_routes(deployment: Deployment) -> None:
    """Publish and the verification calls skip FastAPI's per-request machinery (for speed);
    being documented must not turn them into FastAPI routes."""
    app = create_app(deployment)
    hot = {"/v1/publish", "/api/issue", "/api/verify", "/api/certificate"}
    kinds = {
        route.path: type(route.original_route)
        for route in fastapi.routing.iter_route_contexts(app.routes)
        if route.path in hot
    }

    assert kinds == dict.fromkeys(hot, starlette.routing.Route)
