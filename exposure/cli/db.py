"""``exposure db ...``: schema management."""

from __future__ import annotations

import typer

from exposure.app import Databases
from exposure.cli.common import load_settings
from exposure.db.migrate import applied_revisions, upgrade_service
from exposure.settings import Service

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Create or upgrade every service's database schema to the latest version."""
    settings = load_settings()
    databases = Databases.from_settings(settings)
    try:
        for service in Service:
            engine = databases.engines[service]
            upgrade_service(engine, service)
            revisions = ", ".join(sorted(applied_revisions(engine)))
            typer.echo(f"{service.value}: {engine.url.render_as_string()} at {revisions}")
    finally:
        databases.dispose()
