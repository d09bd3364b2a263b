"""The HTTP application factory.

``create_app(settings)`` builds one FastAPI app from injected settings. In the embedded
shape it serves every service from one process while each keeps its own database; the
services mount their routers here as they are built.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from exposure.api.audit import create_router as create_audit_router
from exposure.clock import utc_now
from exposure.db import SessionFactory, create_database_engine, make_session_factory
from exposure.http.chaff import ChaffMiddleware
from exposure.jobs import Job, JobScheduler
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.services import keyserver_retention, verification_retention
from exposure.settings import ExposureSettings, Service
from keyserver.api import CHAFF_PATHS as KEYSERVER_CHAFF_PATHS
from keyserver.api import create_router as create_keyserver_router
from keyserver.context import KeyserverContext
from keyserver.export.api import create_router as create_export_router
from keyserver.schedule import scheduled_jobs as keyserver_jobs
from keyserver.settings import KeyserverSettings
from verification.api import CHAFF_PATHS as VERIFICATION_CHAFF_PATHS
from verification.api import create_router as create_verification_router
from verification.context import VerificationContext
from verification.errors import VerificationError
from verification.service import realms
from verification.settings import VerificationSettings

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Databases:
    """One engine per service; services that share a URL share the engine."""

    engines: Mapping[Service, Engine]

    @classmethod
    def from_settings(cls, settings: ExposureSettings) -> Databases:
        by_url: dict[str, Engine] = {}
        engines: dict[Service, Engine] = {}
        for service in Service:
            url = settings.database_url_for(service)
            if url not in by_url:
                by_url[url] = create_database_engine(
                    url,
                    sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                    pool_size=settings.database_pool_size,
                )
            engines[service] = by_url[url]
        return cls(engines=engines)

    def distinct_engines(self) -> list[Engine]:
        unique: dict[int, Engine] = {id(engine): engine for engine in self.engines.values()}
        return list(unique.values())

    def dispose(self) -> None:
        for engine in self.distinct_engines():
            engine.dispose()


def database_answers(engine: Engine) -> bool:
    """Whether a trivial query succeeds; the reason is logged, never returned."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        _logger.warning("health check: database %s does not answer", engine.url.get_backend_name())
        return False
    return True


def scheduled_jobs(
    keyserver: KeyserverContext, retentions: Mapping[str, ServiceRetention]
) -> list[Job]:
    """Every periodic job of the services this process serves."""
    return [*keyserver_jobs(keyserver), *(retention.job() for retention in retentions.values())]


def auditor_check(
    context: VerificationContext, session_factory: SessionFactory
) -> Callable[[str], bool]:
    """Whether an API key is an enabled ``auditor`` key of some realm."""

    def check(api_key: str) -> bool:
        try:
            with session_factory() as session:
                realms.authenticate(
                    session, context, api_key=api_key, kind=realms.ApiKeyKind.AUDITOR
                )
        except VerificationError:
            return False
        return True

    return check


def create_app(
    settings: ExposureSettings,
    databases: Databases | None = None,
    *,
    verification_settings: VerificationSettings | None = None,
    keyserver_settings: KeyserverSettings | None = None,
    retention_settings: RetentionSettings | None = None,
    clock: Callable[[], datetime] = utc_now,
    run_jobs: bool = False,
) -> FastAPI:
    """Build the application; it owns (and disposes) the engines unless they are given.

    ``clock`` is the time every service sees; tests pass a controllable one. With
    ``run_jobs`` the scheduled jobs run in this process (``exposure serve`` sets it; every
    replica may, since leases let one run at a time).
    """
    owns_databases = databases is None
    active = databases if databases is not None else Databases.from_settings(settings)
    verification_context = VerificationContext.from_settings(
        verification_settings or VerificationSettings(), settings.data_dir
    )

    verification_sessions = make_session_factory(active.engines[Service.VERIFICATION])
    keyserver_sessions = make_session_factory(active.engines[Service.KEYSERVER])
    keyserver_context = KeyserverContext.from_settings(
        keyserver_settings or KeyserverSettings(), settings.data_dir, keyserver_sessions
    )
    retention = retention_settings or RetentionSettings()
    retentions = {
        Service.KEYSERVER.value: keyserver_retention(
            keyserver_context, retention, settings.data_dir
        ),
        Service.VERIFICATION.value: verification_retention(
            verification_context, verification_sessions, retention, settings.data_dir
        ),
    }
    scheduler = JobScheduler(
        scheduled_jobs(keyserver_context, retentions) if run_jobs else [], clock
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown()
            if owns_databases:
                active.dispose()

    app = FastAPI(
        title="exposure",
        summary="Privacy-preserving exposure-notification backend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.databases = active
    app.include_router(
        create_verification_router(verification_context, verification_sessions, clock)
    )
    app.include_router(create_keyserver_router(keyserver_context, keyserver_sessions, clock))
    app.include_router(create_export_router(keyserver_context.export_store))
    app.include_router(
        create_audit_router(
            retentions, auditor_check(verification_context, verification_sessions), clock
        )
    )
    # One middleware per service, so each imitates its own service's responses.
    app.add_middleware(ChaffMiddleware, paths=VERIFICATION_CHAFF_PATHS)
    app.add_middleware(ChaffMiddleware, paths=KEYSERVER_CHAFF_PATHS)

    @app.get("/health", tags=["operations"])
    def health() -> JSONResponse:
        """200 ``{"status": "ok"}`` when every database answers, 503 otherwise."""
        healthy = all(database_answers(engine) for engine in active.distinct_engines())
        if healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
