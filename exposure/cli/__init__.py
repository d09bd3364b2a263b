"""The ``exposure`` command line: serve, migrate, administer, run jobs, audit, benchmark.

Every sub-command lives in a module of its own and is imported only when it runs
(:mod:`exposure.cli.lazy`), so ``exposure --help`` loads neither the web framework nor the
database layer and answers at once. ``exposure bench`` lives outside the product, in the
``benchmarks`` package: the product holds only its name. Settings are built inside each
command, never at import. Expected failures print one line and exit with a documented code
(:mod:`exposure.cli.failures`).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from exposure.cli.lazy import LazyCommand, LazyGroup

__all__ = ["ExposureGroup", "app", "main"]


class ExposureGroup(LazyGroup):
    """The root group: every sub-command below is imported only when it runs."""

    lazy_commands = (
        LazyCommand(
            "serve",
            "exposure.cli.serve:serve_app",
            "Serve one service or both (keyserver, verification, all).",
            single=True,
        ),
        LazyCommand("db", "exposure.cli.db:db_app", "Database schemas: upgrade, status."),
        LazyCommand(
            "admin",
            "exposure.cli.admin_tree:admin_app",
            "Administration: realms, API keys, authorities, apps, exports, keys, auditors.",
        ),
        LazyCommand("jobs", "exposure.cli.jobs:jobs_app", "Run a scheduled job once, now."),
        LazyCommand(
            "audit",
            "exposure.cli.audit:audit_app",
            "Retention-log export and verification, compliance (for auditors).",
        ),
        LazyCommand("export", "exposure.cli.export:export_app", "GAEN export files: inspect."),
        LazyCommand(
            "phone",
            "exposure.cli.phone:phone_app",
            "One phone over HTTP: upload with a code, download and verify exports.",
        ),
        LazyCommand(
            "demo",
            "exposure.cli.demo:demo_app",
            "Simulate phones against a real server; check what they find.",
            single=True,
        ),
        LazyCommand(
            "bench",
            "benchmarks.cli:bench_app",
            "Measure the hot paths (RPI, matching, verification flow, publish, export, purge) "
            "on this machine.",
        ),
    )


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
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
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
