"""What went wrong with a database, in words an operator can act on.

Drivers report the same few operator problems in many shapes; :func:`classify` reduces a
SQLAlchemy error to one :class:`DatabaseFault`, using PostgreSQL's SQLSTATE where there is
one and SQLite's messages otherwise. The CLI prints one line per fault, readiness probes
answer its code, and neither ever shows the statement or its parameters.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

__all__ = ["DatabaseFault", "ServiceDatabaseError", "classify"]


class DatabaseFault(StrEnum):
    #: No answer: down, refused, wrong host or port, wrong password, connection lost.
    UNREACHABLE = "unreachable"
    #: The server answered, but the database named in the URL does not exist.
    DATABASE_MISSING = "database_missing"
    #: The role may not do what was asked (e.g. a service role running a migration).
    PERMISSION_DENIED = "permission_denied"
    #: A table the version needs does not exist: the schema was never migrated.
    NOT_MIGRATED = "not_migrated"
    #: Anything else (a bug, a constraint); not an operator's fault to fix.
    OTHER = "other"


_SQLSTATE_FAULTS = {
    "3D000": DatabaseFault.DATABASE_MISSING,  # invalid_catalog_name
    "42501": DatabaseFault.PERMISSION_DENIED,  # insufficient_privilege
    "42P01": DatabaseFault.NOT_MIGRATED,  # undefined_table
    "28P01": DatabaseFault.UNREACHABLE,  # invalid_password
    "28000": DatabaseFault.UNREACHABLE,  # invalid_authorization_specification
}


def classify(error: SQLAlchemyError) -> DatabaseFault:
    """The operator-level fault behind ``error``."""
    if not isinstance(error, DBAPIError):
        return (
            DatabaseFault.UNREACHABLE
            if "connect" in type(error).__name__.lower()
            else (DatabaseFault.OTHER)
        )
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate in _SQLSTATE_FAULTS:
            return _SQLSTATE_FAULTS[sqlstate]
        if sqlstate.startswith(("08", "57P")):  # connection exception, operator intervention
            return DatabaseFault.UNREACHABLE
        return DatabaseFault.OTHER
    message = str(original).lower()
    if "database" in message and "does not exist" in message:
        # PostgreSQL refuses the connection itself, before a session has a SQLSTATE.
        return DatabaseFault.DATABASE_MISSING
    if "no such table" in message:
        return DatabaseFault.NOT_MIGRATED
    if "readonly database" in message or "permission denied" in message:
        return DatabaseFault.PERMISSION_DENIED
    if "unable to open database" in message:
        return DatabaseFault.DATABASE_MISSING
    if error.connection_invalidated or type(error).__name__ == "OperationalError":
        # PostgreSQL refusals before a session exists carry no SQLSTATE.
        return DatabaseFault.UNREACHABLE
    return DatabaseFault.OTHER


class ServiceDatabaseError(Exception):
    """A database error while opening one service: which service, and the error."""

    def __init__(self, service: str, error: SQLAlchemyError) -> None:
        super().__init__(f"the {service} database failed: {classify(error).value}")
        self.service = service
        self.error = error
