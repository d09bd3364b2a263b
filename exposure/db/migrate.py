"""Schema migrations with Alembic, driven from code.

Migrations live in one history with a branch per owner: ``core`` (tables every service
database has, such as leases) and, as the services grow, ``keyserver`` and ``verification``
branches that depend on it. Each service database is upgraded to the heads it needs, so the
key server's database never holds verification tables and vice versa, while a small install
that points both services at one database still gets one coherent history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine

from exposure.settings import Service

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"

#: The Alembic targets each service's database is upgraded to.
SERVICE_TARGETS: dict[Service, tuple[str, ...]] = {
    Service.KEYSERVER: ("core@head", "keyserver@head"),
    Service.VERIFICATION: ("core@head", "verification@head"),
}


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that runs on ``connection`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, targets: Sequence[str]) -> None:
    """Upgrade the database behind ``engine`` to every target, in one transaction."""
    with engine.begin() as connection:
        config = alembic_config(connection)
        for target in targets:
            command.upgrade(config, target)


def upgrade_service(engine: Engine, service: Service) -> None:
    """Upgrade ``service``'s database to the heads that service needs."""
    upgrade(engine, SERVICE_TARGETS[service])


def downgrade_to_base(engine: Engine) -> None:
    """Remove every migrated table (tests and disposable databases only)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")


def applied_revisions(engine: Engine) -> set[str]:
    """The revisions currently recorded in the database's version table."""
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())
