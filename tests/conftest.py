"""Fixtures shared by the whole suite: databases on both engines, settings, clocks.

PostgreSQL tests run when ``EXPOSURE_TEST_DATABASE_URL`` is set (``.ci/run`` sets it) and
skip with a reason otherwise; under ``CI=true`` a missing URL is a failure, so CI can never
go green by skipping them.

Isolation:
- ``database_url``: a fresh, migrated database per test (a temporary SQLite file, or a new
  PostgreSQL schema that is dropped afterwards). For tests that need real commits seen
  across connections or processes.
- ``db_session``: a session inside an outer transaction that is rolled back after the test;
  the code under test may commit savepoints freely.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from exposure.db import create_database_engine
from exposure.db.migrate import upgrade
from tests.interop import running_in_ci

# CI explores the same examples on every run, so a landing never hinges on a lucky draw;
# local runs keep drawing new ones, which is how new counterexamples are found.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if running_in_ci():
    hypothesis_settings.load_profile("ci")

POSTGRES_URL_VARIABLE = "EXPOSURE_TEST_DATABASE_URL"
ALL_TARGETS = ("heads",)


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if not url:
        reason = f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (e.g. postgresql+psycopg://...)"
        if running_in_ci():
            pytest.fail(f"{reason}; CI must run them")
        pytest.skip(reason)
    return url


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database_url(engine_name: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, fully migrated database on each engine; removed after the test."""
    if engine_name == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        engine = create_database_engine(url)
        upgrade(engine, ALL_TARGETS)
        engine.dispose()
        yield url
        return
    base = postgres_base_url()
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_database_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = with_search_path(base, schema)
    engine = create_database_engine(url)
    try:
        upgrade(engine, ALL_TARGETS)
        engine.dispose()
        yield url
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = create_database_engine(database_url)
    yield created
    created.dispose()


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session whose every change is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()
