"""``exposure serve``: migrate, then serve HTTP with uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from exposure.app import Databases, create_app
from exposure.cli.common import load_settings
from exposure.db.migrate import upgrade_service
from exposure.logs import configure_logging
from exposure.settings import ExposureSettings, Service

#: Worker processes read their host and port from the parent's resolved values.
_HOST_VARIABLE = "EXPOSURE_HOST"
_PORT_VARIABLE = "EXPOSURE_PORT"


def app_from_environment() -> FastAPI:
    """Application factory for worker processes (``uvicorn --factory``).

    Each worker builds its settings from the environment when it starts, exactly as the
    single-process path does; the parent has already migrated the databases.
    """
    settings = ExposureSettings()
    configure_logging(settings.log_level)
    return create_app(settings, run_jobs=True)


def _migrate(settings: ExposureSettings) -> None:
    databases = Databases.from_settings(settings)
    try:
        for service in Service:
            upgrade_service(databases.engines[service], service)
    finally:
        databases.dispose()


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default EXPOSURE_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default EXPOSURE_PORT or 8080).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per core is typical).")
    ] = 1,
) -> None:
    """Serve the API; state lives under EXPOSURE_DATA_DIR (SQLite unless a URL is set)."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    if settings.migrate_on_start:
        _migrate(settings)
    if workers > 1:
        # Workers import the factory and rebuild settings; pin what the CLI resolved.
        os.environ[_HOST_VARIABLE] = settings.host
        os.environ[_PORT_VARIABLE] = str(settings.port)
    target: FastAPI | str = (
        create_app(settings, run_jobs=True)
        if workers == 1
        else "exposure.cli.serve:app_from_environment"
    )
    uvicorn.run(
        target,
        factory=workers > 1,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The access log records client addresses; we never keep those.
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
