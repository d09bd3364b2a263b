"""The HTTP application factory.

``create_app(deployment)`` builds one FastAPI app over the services a process opened
(:mod:`exposure.compose`): each service's routes and chaff handling from its bundle, the
audit routes over every opened service's retention log, the health probes, and JSON errors
everywhere. Which services a process serves is decided by what was opened: ``exposure serve
keyserver`` opens only the key server, and the app then has only its routes.

Probes (no authentication, no data):

- ``GET /health/live``: the process answers (200 always).
- ``GET /health/ready``: every database the process uses answers with its schema at this
  version's head, its keys open, its blob store takes writes; else 503 with one reason code
  per failing check. ``GET /health`` is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from exposure.api.audit import create_router as create_audit_router
from exposure.bundle import OK
from exposure.compose import Deployment
from exposure.http.blocking import blocking_executor, run_blocking
from exposure.http.chaff import ChaffMiddleware
from exposure.http.docs import add_docs_routes
from exposure.http.errors import install_json_errors
from exposure.http.openapi import Answer, DocumentedRouter, Operation, openapi_document
from exposure.jobs import JobScheduler

__all__ = ["OPENAPI_PATH", "create_app"]

#: Paths that answer in the verification service's error shape.
VERIFICATION_PREFIXES = ("/api/", "/jwks/")
#: Where a process that serves the API serves its OpenAPI document.
OPENAPI_PATH = "/openapi.json"

_DESCRIPTION = """\
The verification service (Google's verification-server API: labs issue codes, phones trade \
them for certificates), the key server (Google's key server v1 API: phones publish their \
keys), the export files phones download, the auditors' read-only routes and the health \
probes. A process serves the routes of the services it runs; docs/api.md has the details.

Every JSON answer of the verification and key server APIs carries `padding`, random base64 \
that hides the size of what it says; clients ignore it and may send their own."""


class Live(BaseModel):
    status: Literal["live"]


class Ready(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, dict[str, str]] = Field(
        description="Service → check → `ok` or a reason code (`unreachable`, "
        "`not_migrated`, `schema_behind`, `not_writable`, ...)."
    )


LIVE = Operation(
    method="GET",
    path="/health/live",
    operation_id="live",
    summary="The process answers",
    description="200 while the process answers; says nothing of its dependencies.",
    tag="operations",
    answers={200: Answer("Alive.", Live)},
)


def _ready(path: str, operation_id: str, older: str = "") -> Operation:
    return Operation(
        method="GET",
        path=path,
        operation_id=operation_id,
        summary="Whether every database, schema, key set and blob store is ready",
        description="For each service the process serves: its database answers with its "
        "schema at this version's head, its keys open, and (key server) the export store "
        f"takes writes. Only reason codes are returned; the cause is logged.{older}",
        tag="operations",
        answers={200: Answer("Ready.", Ready), 503: Answer("Not ready.", Ready)},
    )


READY = _ready("/health/ready", "ready")
HEALTH = _ready("/health", "health", " The older name of `/health/ready`, kept for probes.")


def create_app(
    deployment: Deployment,
    *,
    run_jobs: bool = False,
    serve_api: bool = True,
    owns_deployment: bool = False,
) -> FastAPI:
    """Build the application over ``deployment``'s services.

    ``run_jobs`` runs every opened service's scheduled jobs in this process (leases let one
    replica at a time run each); ``serve_api`` False serves only the probes (a
    job runner). With ``owns_deployment`` the app closes the deployment when it stops.
    """
    scheduler = JobScheduler(deployment.jobs() if run_jobs else [], deployment.clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Handlers run their database work here (exposure.http.blocking): as many threads
        # as the pool keeps connections for each database.
        executor = blocking_executor(deployment.settings.base.database_pool_size)
        asyncio.get_running_loop().set_default_executor(executor)
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown()
            executor.shutdown(wait=True)
            if owns_deployment:
                deployment.close()

    app = FastAPI(
        title="exposure",
        summary="Privacy-preserving exposure-notification backend",
        version=version("exposure"),
        lifespan=lifespan,
        # A job runner serves the probes only: no API, so nothing to describe.
        openapi_url=OPENAPI_PATH if serve_api else None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.deployment = deployment
    install_json_errors(app, verification_prefixes=VERIFICATION_PREFIXES)
    bundles = list(deployment.bundles.values())
    routers: list[APIRouter] = []
    if serve_api:
        for bundle in bundles:
            routers.extend(bundle.routers(deployment.clock))
        routers.append(
            create_audit_router(
                {bundle.service.value: bundle.retention for bundle in bundles},
                lambda api_key: any(bundle.authorize_auditor(api_key) for bundle in bundles),
                deployment.clock,
            )
        )
        # One middleware per service, so each imitates its own service's responses.
        for bundle in bundles:
            app.add_middleware(ChaffMiddleware, paths=bundle.chaff_paths)

    def live() -> JSONResponse:
        return JSONResponse({"status": "live"})

    async def ready() -> JSONResponse:
        checks = await run_blocking(deployment.readiness)
        healthy = all(answer == OK for answers in checks.values() for answer in answers.values())
        status = "ok" if healthy else "unavailable"
        return JSONResponse(
            {"status": status, "checks": checks}, status_code=200 if healthy else 503
        )

    probes = DocumentedRouter()
    probes.add_documented_api_route(LIVE, live)
    probes.add_documented_api_route(READY, ready)
    probes.add_documented_api_route(HEALTH, ready)
    routers.append(probes)
    for router in routers:
        app.include_router(router)

    if serve_api:
        operations = [
            operation
            for router in routers
            if isinstance(router, DocumentedRouter)
            for operation in router.operations
        ]

        def openapi() -> dict[str, Any]:
            # Built on first request, from the operations every route was registered with.
            if app.openapi_schema is None:
                app.openapi_schema = openapi_document(
                    title=app.title,
                    version=app.version,
                    summary=app.summary or "",
                    description=_DESCRIPTION,
                    operations=operations,
                )
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]
        add_docs_routes(app, OPENAPI_PATH)
    return app
