"""Engine set-up: SQLite pragmas, aware timestamps, the caller-owned transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import postgresql, sqlite

from exposure.db import UTCDateTime, create_database_engine, make_session_factory, unit_of_work
from exposure.db.lease import LeaseRow, current_lease


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
