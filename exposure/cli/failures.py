"""Expected failures of the command line: one line naming the cause and what to change, and
a documented exit code; never a traceback.

===  =====================================================================================
 0   done
 1   the operation failed or found something (a job failed, compliance findings, a change
     refused: unknown name, duplicate, ...)
 2   a bad flag or setting (``invalid setting ...``), or a service with no database
 3   a database does not answer, does not exist, or refuses the role
 4   a schema is not at this version's head (run ``exposure db upgrade``)
 5   a service's keys cannot be used (its KEK is missing or does not open them)
 6   the address ``serve`` should listen on is taken or not allowed
===  =====================================================================================

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from exposure.db.faults import DatabaseFault, ServiceDatabaseError, classify
from exposure.db.migrate import SchemaNotCurrent
from exposure.keys import KeysUnavailable
from exposure.settings import ExposureSettings, Service, ServiceNotConfigured

__all__ = [
    "EXIT_DATABASE",
    "EXIT_FAILED",
    "EXIT_KEYS",
    "EXIT_LISTEN",
    "EXIT_SCHEMA",
    "EXIT_USAGE",
    "DatabaseUnavailable",
    "fail",
    "report_failure",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_SCHEMA = 4
EXIT_KEYS = 5
EXIT_LISTEN = 6


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` on standard error and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


class DatabaseUnavailable(Exception):  # noqa: N818 - reads as a condition
    """A service's database failed in a way an operator fixes; the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def of(
        cls, error: SQLAlchemyError, service: Service | None, settings: ExposureSettings | None
    ) -> DatabaseUnavailable | None:
        """The operator's view of ``error``, or None when it is not an operator's fault."""
        fault = classify(error)
        if fault is DatabaseFault.OTHER:
            return None
        where, setting = _where(service, settings)
        cause = _first_line(error)
        message = {
            DatabaseFault.UNREACHABLE: f"{where} does not answer ({cause}); check {setting}",
            DatabaseFault.DATABASE_MISSING: (
                f"{where} does not exist; create it (docs/operations.md) or fix {setting}"
            ),
            DatabaseFault.PERMISSION_DENIED: (
                f"{where} refused the operation (permission denied): the role in {setting} "
                "lacks the privilege; schema changes and admin commands need the schema "
                "owner's role"
            ),
            DatabaseFault.NOT_MIGRATED: f"{where} has no schema yet; run `exposure db upgrade`",
        }[fault]
        return cls(message)


def _first_line(error: SQLAlchemyError) -> str:
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    # The driver's own words, without any statement or parameters SQLAlchemy appends.
    text = lines[0] if lines else type(original).__name__
    return text[:200]


def _where(service: Service | None, settings: ExposureSettings | None) -> tuple[str, str]:
    if service is None or settings is None:
        return "the database", "the database URL settings"
    own = f"EXPOSURE_{service.value.upper()}_DATABASE_URL"
    url = settings.database_url_for(service)
    shown = make_url(url).render_as_string(hide_password=True)
    if settings.embedded:
        setting = "EXPOSURE_DATA_DIR"
    elif getattr(settings, f"{service.value}_database_url") is not None:
        setting = own
    else:
        setting = "EXPOSURE_DATABASE_URL"
    return f"the {service.value} database ({shown})", setting


def report_failure(error: BaseException) -> int | None:
    """Print the one line for an expected failure and return its exit code, else None."""
    if isinstance(error, ServiceDatabaseError):
        unavailable = DatabaseUnavailable.of(error.error, Service(error.service), _settings())
        if unavailable is not None:
            typer.echo(f"error: {unavailable.message}", err=True)
            return EXIT_DATABASE
        return None
    if isinstance(error, ServiceNotConfigured):
        typer.echo(f"error: {error}", err=True)
        return EXIT_USAGE
    if isinstance(error, DatabaseUnavailable):
        typer.echo(f"error: {error.message}", err=True)
        return EXIT_DATABASE
    if isinstance(error, SchemaNotCurrent):
        typer.echo(f"error: {error}", err=True)
        return EXIT_SCHEMA
    if isinstance(error, KeysUnavailable):
        typer.echo(f"error: {error.message}", err=True)
        return EXIT_KEYS
    if isinstance(error, SQLAlchemyError):
        unavailable = DatabaseUnavailable.of(error, None, None)
        if unavailable is not None:
            typer.echo(f"error: {unavailable.message}", err=True)
            return EXIT_DATABASE
    return None


def _settings() -> ExposureSettings | None:
    # Only to name the URL and setting in the message; they were valid when the command ran.
    try:
        return ExposureSettings()
    except ValueError:
        return None
