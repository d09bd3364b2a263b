"""What a log line may carry: tracebacks with exception types only, never a value from a
request or a row; and a failure that repeats is logged once per interval with a count."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Column, LargeBinary, MetaData, Table, insert
from sqlalchemy.exc import IntegrityError

from exposure.db import create_database_engine
from exposure.logs import LOG_FORMAT, PrivateFormatter, RepeatFilter

SECRET_VALUE = bytes.fromhex("5eC2e7" + "ab" * 13)


def _record(
    message: str, error: BaseException | None, level: int = logging.ERROR
) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error else None
    return logging.LogRecord("exposure.test", level, __file__, 1, message, None, exc_info)


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_a_database_error_is_logged_without_the_row_or_the_parameters(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    table = Table("secrets", MetaData(), Column("value", LargeBinary, primary_key=True))
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(table).values(value=SECRET_VALUE))
    with pytest.raises(IntegrityError) as refused, engine.begin() as connection:
        connection.execute(insert(table).values(value=SECRET_VALUE))
    engine.dispose()

    logged = PrivateFormatter(LOG_FORMAT).format(_record("publish failed", refused.value))

    assert "publish failed" in logged
    assert "Traceback (most recent call last):" in logged
    assert "sqlalchemy.exc.IntegrityError" in logged
    for form in (SECRET_VALUE.hex(), repr(SECRET_VALUE), "[parameters", "UNIQUE constraint"):
        assert form not in logged


def test_every_exception_of_a_chain_keeps_its_type_and_loses_its_message() -> None:
    code, token = "31415926", "abc.def.ghi"
    try:
        try:
            raise ValueError(f"the code was {code}")
        except ValueError as inner:
            raise RuntimeError(f"while checking token {token}") from inner
    except RuntimeError as outer:
        error = outer

    logged = PrivateFormatter(LOG_FORMAT).format(_record("issue failed", error))

    assert "builtins.ValueError" in logged
    assert "builtins.RuntimeError" in logged
    assert "The above led to:" in logged
    assert code not in logged
    assert token not in logged


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_failure_is_logged_once_per_interval_with_a_count() -> None:
    ticks = Ticks()
    repeats = RepeatFilter(interval=10, clock=ticks)
    error = _raised(ConnectionError())

    passed = [repeats.filter(_record("publish failed", error)) for _ in range(100)]
    ticks.now = 10.5
    later = _record("publish failed", error)

    assert passed.count(True) == 1
    assert repeats.filter(later)
    assert later.getMessage() == "publish failed (and 99 more like it in the last 10 s)"


def test_repeats_are_counted_per_message_and_exception_type_and_never_below_warning() -> None:
    repeats = RepeatFilter(interval=10, clock=Ticks())

    assert repeats.filter(_record("publish failed", _raised(ConnectionError())))
    assert repeats.filter(_record("publish failed", _raised(TimeoutError())))
    assert repeats.filter(_record("issue failed", _raised(ConnectionError())))
    assert all(repeats.filter(_record("job done", None, level=logging.INFO)) for _ in range(5))
