"""A migrated database with both services' contexts and retention, for purge tests.

Purges commit batch by batch, so these tests use real databases (``engine``), not the
rolled-back ``db_session``. Both services share the one test database, as a small install may.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from exposure.db import SessionFactory, make_session_factory
from exposure.retention.purge import PurgeReport
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.services import keyserver_retention, verification_retention
from keyserver.context import KeyserverContext
from keyserver.settings import KeyserverSettings
from verification.context import VerificationContext
from verification.settings import VerificationSettings

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    sessions: SessionFactory
    data_dir: Path
    keyserver: KeyserverContext
    verification: VerificationContext
    keyserver_retention: ServiceRetention
    verification_retention: ServiceRetention

    def purge(self, now: datetime) -> dict[str, PurgeReport]:
        return {
            retention.service.value: retention.purge(now, clock=lambda: now)
            for retention in (self.keyserver_retention, self.verification_retention)
        }


def build_world(engine: Engine, data_dir: Path, settings: RetentionSettings | None = None) -> World:
    sessions = make_session_factory(engine)
    keyserver = KeyserverContext.from_settings(KeyserverSettings(), data_dir, sessions)
    verification = VerificationContext.from_settings(VerificationSettings(), data_dir)
    retention_settings = settings or RetentionSettings()
    return World(
        sessions=sessions,
        data_dir=data_dir,
        keyserver=keyserver,
        verification=verification,
        keyserver_retention=keyserver_retention(keyserver, retention_settings, data_dir),
        verification_retention=verification_retention(
            verification, sessions, retention_settings, data_dir
        ),
    )


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    return build_world(engine, tmp_path / "data")
