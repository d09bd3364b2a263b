"""Migrations create exactly the schema the models declare, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

import keyserver.models  # noqa: F401 - registers the key server tables on the metadata
import verification.console.models
import verification.models  # noqa: F401 - registers the verification tables on the metadata
from exposure.db.migrate import (
    SERVICE_TARGETS,
    applied_revisions,
    downgrade_to_base,
    upgrade,
    upgrade_service,
)
from exposure.db.models import metadata
from exposure.settings import Service
from keyserver.models import Exposure


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)

    assert differences == []


def test_every_model_table_exists(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())

    assert set(metadata.tables) <= tables


def test_upgrade_is_idempotent_and_downgrade_removes_everything(engine: Engine) -> None:
    before = applied_revisions(engine)
    upgrade(engine, ("heads",))
    assert applied_revisions(engine) == before

    downgrade_to_base(engine)

    assert applied_revisions(engine) == set()
    assert not set(metadata.tables) & set(inspect(engine).get_table_names())


def test_each_service_database_can_be_upgraded_on_its_own(engine: Engine) -> None:
    downgrade_to_base(engine)

    for service in Service:
        upgrade_service(engine, service)

    assert applied_revisions(engine)
    assert all(SERVICE_TARGETS[service] for service in Service)
    assert "leases" in inspect(engine).get_table_names()


def test_keys_imported_before_k0004_are_found_by_their_instant(engine: Engine) -> None:
    # Earlier versions stored an imported key's created_at on SQLite as text without its
    # microseconds, which sorts before the same instant written by every other statement.
    downgrade_to_base(engine)
    upgrade(engine, ("k0003_keyserver_imports",))
    key = bytes(range(16))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO keyserver_exposures (key, transmission_risk, regions, traveler, "
                "interval_number, interval_count, created_at, origin, report_type) VALUES "
                "(:key, 2, ',VN,', false, 2900000, 144, :created_at, 'import', 'confirmed')"
            ),
            {"key": key, "created_at": "2026-11-02 03:00:00"},
        )

    upgrade(engine, ("heads",))

    instant = datetime(2026, 11, 2, 3, tzinfo=UTC)
    with engine.connect() as connection:
        found = connection.scalars(
            select(Exposure.key).where(
                Exposure.created_at >= instant, Exposure.created_at < instant + timedelta(hours=1)
            )
        ).all()
    assert found == [key]
