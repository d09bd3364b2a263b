"""``exposure db ...``: the schema, changed only on purpose.

``upgrade`` is the one command that changes a schema (``serve`` does too when
``EXPOSURE_MIGRATE_ON_START`` is true, the embedded default); it also moves keys that
earlier versions kept in files into the database. ``status`` says where each schema stands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from exposure.cli.common import emit_rows, load_settings
from exposure.cli.progress import progress
from exposure.compose import upgrade_databases
from exposure.db import create_database_engine
from exposure.db.faults import ServiceDatabaseError
from exposure.db.migrate import applied_revisions, schema_state, service_heads
from exposure.settings import Service

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def _services(service: Service | None) -> list[Service] | None:
    return None if service is None else [service]


@db_app.command("upgrade")
def upgrade(
    service: Annotated[
        Service | None, typer.Option(help="Only this service's database (default: every one).")
    ] = None,
) -> None:
    """Create or upgrade each service's schema to this version; move earlier key files in."""
    settings = load_settings()
    wanted = _services(service) or settings.base.configured_services()
    with progress() as shown:
        upgrades = upgrade_databases(settings, wanted, on_step=shown.step)
    for done in upgrades:
        url = settings.base.database_url_for(done.service)
        shown_url = make_url(url).render_as_string(hide_password=True)
        typer.echo(f"{done.service.value}: {shown_url} at {', '.join(done.revisions)}")
        if done.legacy is not None:
            legacy = done.legacy
            typer.echo(
                f"{done.service.value}: moved {len(legacy.imported)} earlier key(s) into the "
                f"database and deleted {len(legacy.files)} file(s)"
            )
            if legacy.missing:
                typer.echo(
                    f"{done.service.value}: warning: {len(legacy.missing)} key(s) named by the "
                    "database were found neither in it nor in a file: " + ", ".join(legacy.missing),
                    err=True,
                )


@db_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where each configured service's schema stands; exit 4 unless every one is current."""
    settings = load_settings()
    rows = []
    for service in settings.base.configured_services():
        url = make_url(settings.base.database_url_for(service))
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
            recorded: set[str] = set()  # a status check must not create the file
        else:
            engine = create_database_engine(url.render_as_string(hide_password=False))
            try:
                recorded = applied_revisions(engine)
            except SQLAlchemyError as error:
                raise ServiceDatabaseError(service.value, error) from error
            finally:
                engine.dispose()
        rows.append(
            {
                "service": service.value,
                "state": schema_state(recorded, service).value,
                "recorded": sorted(recorded),
                "head": sorted(service_heads(service)),
            }
        )
    emit_rows(rows, ["service", "state", "recorded", "head"], as_json)
    if any(row["state"] != "current" for row in rows):
        raise typer.Exit(code=4)
