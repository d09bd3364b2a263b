"""Store helpers of the purge jobs: deletes in batches, one transaction per batch.

A purge of millions of rows in one statement would hold its locks and its snapshot for the
whole run and grow one huge transaction; batches of ``batch_size`` rows, each committed on
its own, let publishing go on between them. Rows are picked by their physical id
(``ctid`` on PostgreSQL, ``rowid`` on SQLite), which deletes each batch with a direct
lookup instead of a second index search.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, TextClause, bindparam, func, select, text
from sqlalchemy.orm import QueryableAttribute

from exposure.db import SessionFactory, UTCDateTime
from exposure.retention.policy import OldestItem, Purger, PurgeResult

__all__ = [
    "batched_delete",
    "blank_in_batches",
    "delete_in_batches",
    "engine_of",
    "oldest_of",
    "oldest_value",
]


def engine_of(session_factory: SessionFactory) -> Engine:
    engine: Engine = session_factory.kw["bind"]
    return engine


def delete_in_batches(
    session_factory: SessionFactory,
    *,
    table: str,
    where: str,
    parameters: Mapping[str, Any],
    batch_size: int,
) -> int:
    """Delete every row of ``table`` matching the SQL condition ``where``; return the count.

    ``table`` and ``where`` are constants of the calling store module, never user input;
    values go in ``parameters`` (datetimes are bound as UTC timestamps on both engines).
    Raises :class:`ValueError` for a batch size below 1.
    """
    return _in_batches(
        session_factory,
        action=f"DELETE FROM {table}",  # noqa: S608 - constants only
        table=table,
        where=where,
        parameters=parameters,
        batch_size=batch_size,
    )


def blank_in_batches(
    session_factory: SessionFactory,
    *,
    table: str,
    assignments: str,
    where: str,
    parameters: Mapping[str, Any],
    batch_size: int,
) -> int:
    """``UPDATE table SET assignments`` on every row matching ``where``, in batches.

    ``where`` must stop matching a row once it is updated, or the loop would not end.
    """
    return _in_batches(
        session_factory,
        action=f"UPDATE {table} SET {assignments}",  # noqa: S608 - constants only
        table=table,
        where=where,
        parameters=parameters,
        batch_size=batch_size,
    )


def _in_batches(
    session_factory: SessionFactory,
    *,
    action: str,
    table: str,
    where: str,
    parameters: Mapping[str, Any],
    batch_size: int,
) -> int:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    engine = engine_of(session_factory)
    if engine.dialect.name == "postgresql":
        sql = (
            f"{action} WHERE ctid = ANY(ARRAY("  # noqa: S608 - constants only
            f"SELECT ctid FROM {table} WHERE {where} LIMIT :batch_size))"
        )
    else:
        sql = (
            f"{action} WHERE rowid IN ("  # noqa: S608 - constants only
            f"SELECT rowid FROM {table} WHERE {where} LIMIT :batch_size)"
        )
    statement = _typed(text(sql), parameters)
    total = 0
    while True:
        with engine.begin() as connection:
            result = connection.execute(statement, {**parameters, "batch_size": batch_size})
        changed = int(getattr(result, "rowcount", 0))
        total += changed
        if changed < batch_size:
            return total


def _typed(statement: TextClause, parameters: Mapping[str, Any]) -> TextClause:
    # SQLite keeps naive UTC text; binding through the column type compares like with like.
    typed = [
        bindparam(name, type_=UTCDateTime())
        for name, value in parameters.items()
        if isinstance(value, datetime)
    ]
    return statement.bindparams(*typed) if typed else statement


def oldest_value(
    session_factory: SessionFactory,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    *conditions: ColumnElement[bool],
) -> datetime | None:
    """The smallest value of a time ``column`` among rows matching ``conditions``."""
    with session_factory() as session:
        value: datetime | None = session.scalar(select(func.min(column)).where(*conditions))
        return value


def batched_delete(table: str, where: str, batch_size: int) -> Purger:
    """A purger deleting the rows of ``table`` where ``where`` holds for ``:cutoff``."""

    def purge(sessions: SessionFactory, cutoff: datetime, _now: datetime) -> PurgeResult:
        rows = delete_in_batches(
            sessions,
            table=table,
            where=where,
            parameters={"cutoff": cutoff},
            batch_size=batch_size,
        )
        return PurgeResult(rows=rows)

    return purge


def oldest_of(
    column: ColumnElement[Any] | QueryableAttribute[Any], *conditions: ColumnElement[bool]
) -> OldestItem:
    """An :data:`OldestItem` reading the smallest ``column`` among rows matching."""

    def oldest(sessions: SessionFactory, _now: datetime) -> datetime | None:
        return oldest_value(sessions, column, *conditions)

    return oldest
