"""A migrated database with both services' contexts and retention, for purge tests.

Purges commit batch by batch, so these tests use real databases (``engine``), not the
rolled-back ``db_session``. Both services share the one test database, as a small install may.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exposure.compose import Deployment
from exposure.db import SessionFactory
from exposure.retention.purge import PurgeReport
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from keyserver.context import KeyserverContext
from tests.deployment import open_test_deployment
from verification.context import VerificationContext

T0 = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    deployment: Deployment
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

    def close(self) -> None:
        self.deployment.close()


def build_world(
    database_url: str, data_dir: Path, settings: RetentionSettings | None = None
) -> World:
    """Both services opened over the test database; the caller closes the world."""
    deployment = open_test_deployment(database_url, data_dir, retention=settings)
    return World(
        deployment=deployment,
        sessions=deployment.keyserver.session_factory,
        data_dir=data_dir,
        keyserver=deployment.keyserver.context,
        verification=deployment.verification.context,
        keyserver_retention=deployment.keyserver.retention,
        verification_retention=deployment.verification.retention,
    )


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    built = build_world(database_url, tmp_path / "data")
    yield built
    built.close()
