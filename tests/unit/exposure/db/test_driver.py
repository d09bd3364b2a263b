"""Hot-path statements run on the driver (PostgreSQL) or through SQLAlchemy, alike."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.types import Enum

from exposure.db.driver import driver_rows, uses_psycopg
from exposure.db.unit_of_work import autocommit, make_session_factory

ECHO = text(
    "SELECT CAST(:word AS TEXT), CAST(:number AS INTEGER), CAST(:raw AS BYTEA), "
    "CAST(:day AS DATE), CAST(:moment AS TIMESTAMP WITH TIME ZONE)"
)


ON_POSTGRESQL = pytest.mark.parametrize(
    "engine_name", [pytest.param("postgresql", marks=pytest.mark.postgres)]
)


def test_rows_come_back_as_tuples_on_both_engines(engine: Engine) -> None:
    statement = text("SELECT :a + 1 AS one UNION ALL SELECT :a + 2")
    with Session(engine) as session:
        assert [tuple(row) for row in driver_rows(session, statement, {"a": 40})] == [(41,), (42,)]


def test_the_fast_path_is_taken_exactly_on_psycopg(engine: Engine) -> None:
    with engine.connect() as connection:
        assert uses_psycopg(connection) is (engine.dialect.name == "postgresql")


@ON_POSTGRESQL
def test_values_psycopg_adapts_natively_round_trip(engine: Engine) -> None:
    moment = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    parameters = {"word": "ok", "number": 7, "raw": b"\x00\x01", "day": date(2026, 1, 2)}
    with engine.connect() as connection:
        [row] = driver_rows(connection, ECHO, {**parameters, "moment": moment})
    assert row == ("ok", 7, b"\x00\x01", date(2026, 1, 2), moment)


def test_an_autocommit_statement_sticks_without_a_commit(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with autocommit(factory) as connection:
        driver_rows(connection, text("CREATE TABLE driver_probe (n INTEGER)"), {})
        driver_rows(connection, text("INSERT INTO driver_probe (n) VALUES (:n)"), {"n": 3})
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM driver_probe")).scalar_one() == 3
        connection.execute(text("DROP TABLE driver_probe"))
        connection.commit()


@ON_POSTGRESQL
def test_a_statement_needing_bind_processing_is_refused(engine: Engine) -> None:
    statement = text("SELECT :kind").bindparams(bindparam("kind", type_=Enum("a", "b")))
    with engine.connect() as connection, pytest.raises(ValueError, match="bind processing"):
        driver_rows(connection, statement, {"kind": "a"})
