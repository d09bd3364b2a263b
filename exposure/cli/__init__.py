"""The ``exposure`` command line: serve, migrate, administer, run jobs, audit, benchmark.

Sub-commands live in one module each and are imported only when they run
(:mod:`exposure.cli.lazy`); settings are built inside each command, never at import, so
``exposure --help`` works with any environment and answers at once. Expected failures
print one line and exit with a documented code (:mod:`exposure.cli.failures`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, ClassVar

import typer

from exposure.cli.lazy import LazyCommand, LazyGroup

__all__ = ["app", "main"]


class ExposureGroup(LazyGroup):
    LAZY: ClassVar[Mapping[str, LazyCommand]] = {
        "serve": LazyCommand(
            "exposure.cli.serve:serve_app",
            "Serve one service or both (keyserver, verification, all).",
        ),
        "db": LazyCommand("exposure.cli.db:db_app", "Database schemas: upgrade, status."),
        "admin": LazyCommand(
            "exposure.cli.admin_tree:admin_app",
            "Administration: realms, API keys, authorities, apps, exports, keys, auditors.",
        ),
        "jobs": LazyCommand("exposure.cli.jobs:jobs_app", "Run a scheduled job once, now."),
        "audit": LazyCommand(
            "exposure.cli.audit:audit_app",
            "Retention-log export and verification, compliance (for auditors).",
        ),
        "export": LazyCommand(
            "exposure.cli.export:export_app", "GAEN export files: inspect and verify."
        ),
        "bench": LazyCommand("exposure.cli.bench:bench_app", "Benchmarks (exposure bench ...)."),
    }


def _version() -> str:
    try:
        return version("exposure")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


app = typer.Typer(
    name="exposure",
    help="Privacy-preserving exposure-notification backend.",
    cls=ExposureGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"exposure {_version()}")
        raise typer.Exit


@app.callback()
def root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Privacy-preserving exposure-notification backend."""


def main() -> None:
    """Console-script entry point: expected failures end in one line and their exit code."""
    try:
        app()
    except Exception as error:
        # Imported only now: it loads the database layer, which `exposure --help` never needs.
        from exposure.cli.failures import report_failure

        code = report_failure(error)
        if code is None:
            raise
        sys.exit(code)
