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
# `make fuzz`, before a release: new random examples, FUZZ_FACTOR times as many of them.
hypothesis_settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True)
#: Names the profile to load; wins over CI's, so `make fuzz` draws at random under CI too.
PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
#: How many times its own max_examples each property test runs under the fuzz profile.
FUZZ_FACTOR_VARIABLE = "HYPOTHESIS_FUZZ_FACTOR"
DEFAULT_FUZZ_FACTOR = 20
hypothesis_settings.load_profile(
    os.environ.get(PROFILE_VARIABLE) or ("ci" if running_in_ci() else "default")
)

POSTGRES_URL_VARIABLE = "EXPOSURE_TEST_DATABASE_URL"
ALL_TARGETS = ("heads",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the fuzz profile, multiply every property test's max_examples by the factor.

    A profile only sets what a test leaves unset, and most of ours set max_examples (cheap
    properties many, slow ones few), so scaling each keeps their proportions. Hypothesis has
    no public way to change a decorated test's settings: this writes the attribute its
    ``@settings`` writes, and stops the run if that attribute is gone.
    """
    if hypothesis_settings.get_current_profile_name() != "fuzz":
        return
    factor = int(os.environ.get(FUZZ_FACTOR_VARIABLE) or DEFAULT_FUZZ_FACTOR)
    scaled: set[int] = set()
    for item in items:
        test = getattr(item, "obj", None)
        if not hasattr(test, "hypothesis") or id(test) in scaled:
            continue  # not a property test, or one already scaled for another parameter
        scaled.add(id(test))
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if not isinstance(own, hypothesis_settings):
            raise pytest.UsageError(f"cannot read the hypothesis settings of {item.nodeid}")
        test._hypothesis_internal_use_settings = hypothesis_settings(
            own, max_examples=own.max_examples * factor
        )


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
