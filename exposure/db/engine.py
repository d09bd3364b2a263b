"""SQLAlchemy engines for the two supported databases.

SQLite (the embedded default) gets WAL journaling so readers never block the writer,
enforced foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` transactions: pysqlite's
own deferred transactions can deadlock when two connections read and then both try to
write, and a busy timeout cannot resolve that case.

PostgreSQL connections are not pinged on every checkout (``pool_pre_ping`` costs one
round trip per transaction, a sizeable share of a short request). Instead a connection is
checked before use only when the driver already knows it is broken or when it has sat idle
for :data:`IDLE_CHECK_SECONDS`, the time in which a server restart or a dropped idle
connection could have gone unnoticed; a failed check makes the pool replace it. Busy
connections are also replaced after :data:`RECYCLE_SECONDS`. A connection that dies while
in steady use fails the one transaction using it, and SQLAlchemy then invalidates every
older connection of the pool, so the next transactions get fresh ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
IDLE_CHECK_SECONDS = 10.0
#: PostgreSQL connections older than this are closed and replaced when next checked out.
RECYCLE_SECONDS = 30 * 60
_IDLE_SINCE = "exposure_idle_since"


def create_database_engine(
    url: str, *, sqlite_busy_timeout_ms: int = 5_000, pool_size: int = 5
) -> Engine:
    """Create an engine for ``url`` (``sqlite:///...`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, sqlite_busy_timeout_ms)
    return _postgres_engine(url, pool_size)


def _postgres_engine(url: str, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=RECYCLE_SECONDS,
        # An error's text must never carry a key, a code's hash or any other bound value.
        hide_parameters=True,
    )
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _stamp_idle(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check_before_use(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        if dbapi_connection.closed or dbapi_connection.broken:
            raise DisconnectionError("the connection was closed")
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < IDLE_CHECK_SECONDS:
            return  # new, or in steady use: a dead connection is caught on first use
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool discards this connection and checks out another (up to 3 times).
                raise DisconnectionError("the idle connection was dropped") from error
            raise

    return engine


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout_ms / 1000}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Hand transaction control to SQLAlchemy (see the begin hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # An AUTOCOMMIT connection (exposure.db.unit_of_work.autocommit) wants no
        # transaction: each statement then commits on its own, as pysqlite runs it.
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
