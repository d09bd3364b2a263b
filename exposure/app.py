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

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from exposure.api.audit import create_router as create_audit_router
from exposure.bundle import OK
from exposure.compose import Deployment
from exposure.http.blocking import blocking_executor, run_blocking
from exposure.http.chaff import ChaffMiddleware
from exposure.http.errors import install_json_errors
from exposure.jobs import JobScheduler

__all__ = ["create_app"]

#: Paths that answer in the verification service's error shape.
VERIFICATION_PREFIXES = ("/api/", "/jwks/")


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
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.deployment = deployment
    install_json_errors(app, verification_prefixes=VERIFICATION_PREFIXES)
    bundles = list(deployment.bundles.values())
    if serve_api:
        for bundle in bundles:
            for router in bundle.routers(deployment.clock):
                app.include_router(router)
        app.include_router(
            create_audit_router(
                {bundle.service.value: bundle.retention for bundle in bundles},
                lambda api_key: any(bundle.authorize_auditor(api_key) for bundle in bundles),
                deployment.clock,
            )
        )
        # One middleware per service, so each imitates its own service's responses.
        for bundle in bundles:
            app.add_middleware(ChaffMiddleware, paths=bundle.chaff_paths)

    @app.get("/health/live", tags=["operations"])
    def live() -> JSONResponse:
        """200 while the process answers; says nothing of its dependencies."""
        return JSONResponse({"status": "live"})

    async def ready() -> JSONResponse:
        checks = await run_blocking(deployment.readiness)
        healthy = all(answer == OK for answers in checks.values() for answer in answers.values())
        status = "ok" if healthy else "unavailable"
        return JSONResponse(
            {"status": status, "checks": checks}, status_code=200 if healthy else 503
        )

    for path in ("/health/ready", "/health"):  # /health: the older name, kept for probes
        app.add_api_route(
            path,
            ready,
            methods=["GET"],
            tags=["operations"],
            summary="200 when every database, schema, key set and blob store is ready; else 503",
        )

    return app
