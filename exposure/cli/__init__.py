"""The ``exposure`` command line: serve, migrate, inspect exports, benchmark.

Sub-commands live in one module each and are mounted here; settings are built inside each
command (never at import), so ``exposure --help`` works with any environment.

``exposure bench`` lives outside the product, in the ``benchmarks`` package: it is mounted
lazily (:mod:`exposure.cli.lazy`), so nothing here imports it until it is called.
"""

from __future__ import annotations

import typer

from exposure.cli.admin import admin_app
from exposure.cli.audit import audit_app
from exposure.cli.db import db_app
from exposure.cli.export import export_app
from exposure.cli.jobs import jobs_app
from exposure.cli.keyserver_admin import app_app, export_config_app, health_authority_app
from exposure.cli.lazy import LazyCommand, LazyGroup
from exposure.cli.serve import serve


class ExposureGroup(LazyGroup):
    """The root group: the sub-commands below are imported only when they run."""

    lazy_commands = (
        LazyCommand(
            "bench",
            "benchmarks.cli:bench_app",
            "Measure the hot paths (RPI, verification flow, publish, export, purge) on this "
            "machine.",
        ),
    )


app = typer.Typer(
    name="exposure",
    cls=ExposureGroup,
    help="Privacy-preserving exposure-notification backend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve)
app.add_typer(db_app, name="db")
admin_app.add_typer(health_authority_app, name="health-authority")
admin_app.add_typer(app_app, name="app")
admin_app.add_typer(export_config_app, name="export-config")
app.add_typer(admin_app, name="admin")
app.add_typer(export_app, name="export")
app.add_typer(jobs_app, name="jobs")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """Console-script entry point."""
    app()
