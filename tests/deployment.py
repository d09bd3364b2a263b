"""Open services for tests the way a process does (exposure.compose), over a test database.

Both services share the test's one migrated database, as a small install may, each with
its own test KEK.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from exposure.clock import utc_now
from exposure.compose import Deployment, DeploymentSettings, open_deployment
from exposure.retention.settings import RetentionSettings
from exposure.settings import ExposureSettings, Service
from keyserver.settings import KeyserverSettings
from tests.keys import kek_setting
from verification.settings import VerificationSettings


def deployment_settings(
    data_dir: Path,
    database_url: str | None,
    *,
    keyserver: KeyserverSettings | None = None,
    verification: VerificationSettings | None = None,
    retention: RetentionSettings | None = None,
) -> DeploymentSettings:
    """Settings of a deployment on ``database_url`` (None: the embedded SQLite files)."""
    return DeploymentSettings(
        base=ExposureSettings(data_dir=data_dir, database_url=database_url),
        keyserver=keyserver or KeyserverSettings(kek=kek_setting("keyserver")),
        verification=verification or VerificationSettings(kek=kek_setting("verification")),
        retention=retention or RetentionSettings(),
    )


def open_test_deployment(
    database_url: str | None,
    data_dir: Path,
    *,
    services: Sequence[Service] | None = None,
    clock: Callable[[], datetime] = utc_now,
    keyserver: KeyserverSettings | None = None,
    verification: VerificationSettings | None = None,
    retention: RetentionSettings | None = None,
    migrate: bool = False,
) -> Deployment:
    """Open ``services`` (default: both), migrating first if asked (a fresh embedded data
    directory); the caller closes the deployment."""
    settings = deployment_settings(
        data_dir,
        database_url,
        keyserver=keyserver,
        verification=verification,
        retention=retention,
    )
    return open_deployment(settings, services, clock=clock, migrate=migrate)
