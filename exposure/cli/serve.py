"""``exposure serve``: migrate, then serve HTTP with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from exposure.app import Databases, create_app
from exposure.cli.common import load_settings
from exposure.db.migrate import upgrade_service
from exposure.logs import configure_logging
from exposure.settings import Service


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default EXPOSURE_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default EXPOSURE_PORT or 8080).")
    ] = None,
) -> None:
    """Serve the API; state lives under EXPOSURE_DATA_DIR (SQLite unless a URL is set)."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    databases = Databases.from_settings(settings)
    if settings.migrate_on_start:
        for service in Service:
            upgrade_service(databases.engines[service], service)
    app = create_app(settings, databases)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The access log records client addresses; we never keep those.
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
