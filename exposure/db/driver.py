"""Statements a request runs on every call, handed to psycopg without SQLAlchemy's execution.

SQLAlchemy's execution layer (compiled-cache lookup, parameter processing, result
metadata) costs about as much server CPU as the database round trip of a small statement.
For the few statements on a request's hot path, :func:`driver_rows` compiles the statement
once per dialect and, on PostgreSQL with psycopg, runs the compiled text directly on the
connection the caller already holds (same transaction, or autocommit), so only the driver's
own work is left. Elsewhere (SQLite) it runs through SQLAlchemy as usual, with the same
parameters and the same rows back.

Statements given here are :func:`sqlalchemy.text` constructs written for both engines where
possible, with explicit ``CAST`` on parameters whose type PostgreSQL cannot infer. No type
of SQLAlchemy's processes the values on the fast path, so callers pass what psycopg adapts
natively (``str``, ``int``, ``bool``, ``bytes``, ``date``, timezone-aware ``datetime``,
lists of those); :func:`driver_rows` refuses a statement whose compiled form would need
bind processing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, TextClause
from sqlalchemy.orm import Session

__all__ = ["driver_rows", "uses_psycopg"]


def uses_psycopg(connection: Connection | Session) -> bool:
    """Whether ``connection`` talks to PostgreSQL through psycopg (the fast path)."""
    if isinstance(connection, Session):
        dialect = connection.get_bind().dialect
    else:
        dialect = connection.dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


@cache
def _compiled(statement: TextClause, dialect: Dialect) -> str:
    compiled = statement.compile(dialect=dialect)
    if compiled._bind_processors:
        raise ValueError("a driver statement must not need SQLAlchemy's bind processing")
    return compiled.string


def driver_rows(
    connection: Connection | Session, statement: TextClause, parameters: Mapping[str, Any]
) -> Sequence[tuple[Any, ...]]:
    """Run ``statement`` with ``parameters`` on ``connection``; every row it returns.

    ``connection`` may be a :class:`~sqlalchemy.orm.Session`: its connection (and so its
    transaction) is used. Rows are plain tuples in the statement's column order.
    """
    if isinstance(connection, Session):
        connection = connection.connection()
    if not uses_psycopg(connection):
        result = connection.execute(statement, dict(parameters))
        return [tuple(row) for row in result] if result.returns_rows else []
    sql = _compiled(statement, connection.dialect)
    driver: Any = connection.connection.driver_connection
    cursor = driver.execute(sql, parameters)
    return cursor.fetchall() if cursor.description is not None else []
