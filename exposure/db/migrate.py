"""Schema migrations with Alembic, driven from code.

Migrations live in one history with a branch per owner: ``core`` (tables every service
database has, such as leases) and, as the services grow, ``keyserver`` and ``verification``
branches that depend on it. Each service database is upgraded to the heads it needs, so the
key server's database never holds verification tables and vice versa, while a small install
that points both services at one database still gets one coherent history.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


class SchemaState(StrEnum):
    """Where a service's schema stands against this version of the code."""

    CURRENT = "current"
    #: No schema at all (a new or emptied database).
    NOT_MIGRATED = "not_migrated"
    #: Older than this version: ``exposure db upgrade`` brings it up.
    BEHIND = "behind"
    #: Migrated by a newer version than this one (finish the roll-out, or roll back).
    AHEAD = "ahead"


class SchemaNotCurrent(Exception):  # noqa: N818 - reads as a condition
    """A command that does not migrate found the schema not at this version's head."""

    def __init__(self, service: Service, state: SchemaState) -> None:
        advice = {
            SchemaState.NOT_MIGRATED: "has no schema yet; run `exposure db upgrade`",
            SchemaState.BEHIND: "is older than this version; run `exposure db upgrade`",
            SchemaState.AHEAD: (
                "was migrated by a newer version of exposure; run that version (or finish "
                "rolling it out) instead"
            ),
        }[state]
        super().__init__(f"the {service.value} database {advice}")
        self.service = service
        self.state = state


@cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    return ScriptDirectory.from_config(config)


@cache
def service_heads(service: Service) -> frozenset[str]:
    """The revisions a current ``service`` database records (one per branch it needs)."""
    scripts = _scripts()
    heads = set()
    for target in SERVICE_TARGETS[service]:
        revision = scripts.get_revision(target)
        if revision is not None:
            heads.add(revision.revision)
    return frozenset(heads)


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_state(recorded: set[str], service: Service) -> SchemaState:
    """Compare the revisions a database records with what ``service`` needs.

    A database that two services share records the heads of both; only this service's
    branches count, and a revision this version does not know means a newer one migrated.
    """
    if not recorded:
        return SchemaState.NOT_MIGRATED
    if not recorded <= _known_revisions():
        return SchemaState.AHEAD
    if not service_heads(service) <= recorded:
        return SchemaState.BEHIND
    return SchemaState.CURRENT


def require_current_schema(engine: Engine, service: Service) -> None:
    """Raise :class:`SchemaNotCurrent` unless ``service``'s schema is at this version's head.

    Database errors (unreachable, missing, permission denied) propagate.
    """
    state = schema_state(applied_revisions(engine), service)
    if state is not SchemaState.CURRENT:
        raise SchemaNotCurrent(service, state)
