"""Engine set-up: SQLite pragmas, aware timestamps, the caller-owned transaction, and
PostgreSQL connections checked only when idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from exposure.db import UTCDateTime, create_database_engine, make_session_factory, unit_of_work
from exposure.db import engine as engine_module
from exposure.db.lease import LeaseRow, current_lease
from exposure.db.unit_of_work import autocommit


def test_sqlite_pragmas_are_applied(tmp_path: Path) -> None:
    engine = create_database_engine(
        f"sqlite:///{tmp_path / 'nested' / 'db.sqlite3'}", sqlite_busy_timeout_ms=2_500
    )
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 2_500
    engine.dispose()
    assert (tmp_path / "nested" / "db.sqlite3").exists()


def test_unit_of_work_commits_on_success(engine: Engine) -> None:
    factory = make_session_factory(engine)
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    with unit_of_work(factory) as session:
        session.add(LeaseRow(name="a", holder="h", expires_at=moment))

    with unit_of_work(factory) as session:
        assert current_lease(session, name="a", now=moment - timedelta(seconds=1)) is not None


def test_unit_of_work_rolls_back_on_error(engine: Engine) -> None:
    factory = make_session_factory(engine)
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    def failing_work() -> None:
        with unit_of_work(factory) as session:
            session.add(LeaseRow(name="a", holder="h", expires_at=moment))
            session.flush()  # the row reaches the database, then the block fails
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_work()

    with unit_of_work(factory) as session:
        assert session.execute(select(LeaseRow)).first() is None


@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=7)), timezone(-timedelta(hours=5))]
        ),
    )
)
def test_utc_datetime_round_trips_as_the_same_instant(moment: datetime) -> None:
    column = UTCDateTime()
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        stored = column.process_bind_param(moment, dialect)
        loaded = column.process_result_value(stored, dialect)
        assert loaded == moment
        assert loaded is not None
        assert loaded.tzinfo == UTC


def test_utc_datetime_refuses_naive_values() -> None:
    naive = datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(naive, sqlite.dialect())


def test_autocommit_commits_each_statement_on_both_engines(engine: Engine) -> None:
    factory = make_session_factory(engine)
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    def insert_then_fail() -> None:
        with autocommit(factory) as connection:
            connection.execute(insert(LeaseRow).values(name="kept", holder="h", expires_at=moment))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()

    with unit_of_work(factory) as session:
        assert current_lease(session, name="kept", now=moment - timedelta(seconds=1)) is not None


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_postgres_pings_only_idle_connections(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    for _ in range(5):
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    assert pings == []  # in steady use no checkout costs a round trip

    monkeypatch.setattr(engine_module, "IDLE_CHECK_SECONDS", 0.0)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert len(pings) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_postgres_replaces_an_idle_connection_that_died(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "IDLE_CHECK_SECONDS", 0.0)
    engine = create_database_engine(database_url, pool_size=1)
    other = create_database_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            victim = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
            connection.commit()

        # The pooled connection is dead; the checkout check notices and replaces it.
        with engine.connect() as connection:
            replacement = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert replacement != victim
    finally:
        engine.dispose()
        other.dispose()
