"""Both services' databases and contexts for CLI commands that span them (jobs, audit)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from exposure.cli.common import build_settings, load_settings, migrated_database
from exposure.db import SessionFactory
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.services import keyserver_retention, verification_retention
from exposure.settings import ExposureSettings, Service
from keyserver.context import KeyserverContext
from keyserver.settings import KeyserverSettings
from verification.context import VerificationContext
from verification.settings import VerificationSettings


@dataclass(frozen=True)
class ServicesRuntime:
    settings: ExposureSettings
    keyserver: KeyserverContext
    verification: VerificationContext
    verification_sessions: SessionFactory
    #: By service name, in the order the services are listed.
    retentions: dict[str, ServiceRetention]


@contextmanager
def services_runtime() -> Iterator[ServicesRuntime]:
    """Both databases (migrated) with every context built from the environment."""
    settings = load_settings()
    keyserver_settings = build_settings(KeyserverSettings)
    verification_settings = build_settings(VerificationSettings)
    retention_settings = build_settings(RetentionSettings)
    with (
        migrated_database(settings, Service.KEYSERVER) as keyserver_sessions,
        migrated_database(settings, Service.VERIFICATION) as verification_sessions,
    ):
        keyserver = KeyserverContext.from_settings(
            keyserver_settings, settings.data_dir, keyserver_sessions
        )
        verification = VerificationContext.from_settings(verification_settings, settings.data_dir)
        yield ServicesRuntime(
            settings=settings,
            keyserver=keyserver,
            verification=verification,
            verification_sessions=verification_sessions,
            retentions={
                Service.KEYSERVER.value: keyserver_retention(
                    keyserver, retention_settings, settings.data_dir
                ),
                Service.VERIFICATION.value: verification_retention(
                    verification, verification_sessions, retention_settings, settings.data_dir
                ),
            },
        )
