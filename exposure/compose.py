"""Opening the services one process runs: the one place that knows every service package.

A process (``exposure serve``, any CLI command, a benchmark, a test) says which services it
needs and gets a :class:`Deployment`: for each service its database, its keys and its
bundle (:mod:`exposure.bundle`), opened in this order, each step failing with an error that
names what to change:

1. the service's database URL (:class:`~exposure.settings.ServiceNotConfigured`);
2. an engine per distinct URL (services that share a URL share it);
3. only when asked (``exposure db upgrade``, ``serve`` with ``EXPOSURE_MIGRATE_ON_START``):
   migrate, and move keys that earlier versions kept in files into the database;
4. the schema is at this version's head (:class:`~exposure.db.migrate.SchemaNotCurrent`);
   no other command changes it;
5. the service's KEKs, and every stored key opens with them
   (:class:`~exposure.keys.KeysUnavailable`);
6. the bundle.

Example::

    settings = DeploymentSettings.from_environment()
    with open_deployment(settings, [Service.VERIFICATION]) as deployment:
        context = deployment.verification.context
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from exposure.bundle import Clock, ServiceBundle, ServiceResources
from exposure.clock import utc_now
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.faults import ServiceDatabaseError
from exposure.db.migrate import applied_revisions, require_current_schema, upgrade_service
from exposure.jobs import Job
from exposure.keys import ServiceKeyStore
from exposure.keys.kek import embedded_kek_path, kek_setting_name, load_keks
from exposure.keys.legacy import LegacyImport, LegacySources, legacy_log_key_variable
from exposure.readiness import service_state
from exposure.retention.settings import RetentionSettings
from exposure.settings import ExposureSettings, Service, ServiceNotConfigured
from keyserver.bundle import KeyserverBundle, build_keyserver_bundle
from keyserver.bundle import import_legacy_keys as import_keyserver_keys
from keyserver.settings import KeyserverSettings
from verification.bundle import VerificationBundle, build_verification_bundle
from verification.bundle import import_legacy_keys as import_verification_keys
from verification.settings import VerificationSettings

__all__ = [
    "Deployment",
    "DeploymentSettings",
    "ServiceUpgrade",
    "open_deployment",
    "upgrade_databases",
]


#: Settings that earlier versions read and this one moves into the database, by service.
_LEGACY_VARIABLES: dict[Service, tuple[str, ...]] = {
    Service.KEYSERVER: (
        "EXPOSURE_KEYSERVER_REVISION_TOKEN_AAD",
        "EXPOSURE_KEYSERVER_REVISION_SECRETS",
        legacy_log_key_variable(Service.KEYSERVER.value),
    ),
    Service.VERIFICATION: (
        "EXPOSURE_VERIFICATION_SECRET_KEYS",
        legacy_log_key_variable(Service.VERIFICATION.value),
    ),
}
#: Files under ``$EXPOSURE_DATA_DIR/secrets`` that earlier versions made, by service.
_LEGACY_FILES: dict[Service, tuple[str, ...]] = {
    Service.KEYSERVER: (
        "keyserver-revision-aad",
        "keyserver-revision.keys",
        "keyserver-retention-log.key",
    ),
    Service.VERIFICATION: ("verification.keys", "verification-retention-log.key"),
}


@dataclass(frozen=True)
class DeploymentSettings:
    """Every settings class a process reads, built once when it starts."""

    base: ExposureSettings
    keyserver: KeyserverSettings = field(default_factory=KeyserverSettings)
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)

    @classmethod
    def from_environment(cls, **base_overrides: Any) -> DeploymentSettings:
        """Read ``EXPOSURE_*``; raises pydantic's ``ValidationError`` naming bad values."""
        return cls(
            base=ExposureSettings(**base_overrides),
            keyserver=KeyserverSettings(),
            verification=VerificationSettings(),
            retention=RetentionSettings(),
        )

    def kek(self, service: Service) -> str | None:
        configured = {
            Service.KEYSERVER: self.keyserver.kek,
            Service.VERIFICATION: self.verification.kek,
        }[service]
        return configured.get_secret_value() if configured is not None else None


@dataclass
class Deployment:
    """The services of one process, opened; closing it disposes of their engines."""

    settings: DeploymentSettings
    bundles: dict[Service, ServiceBundle]
    clock: Clock
    engines: list[Engine]

    def bundle(self, service: Service) -> ServiceBundle:
        """The bundle of ``service``; raises :class:`ServiceNotConfigured` if not opened."""
        try:
            return self.bundles[service]
        except KeyError:
            raise ServiceNotConfigured(service) from None

    @property
    def keyserver(self) -> KeyserverBundle:
        bundle = self.bundle(Service.KEYSERVER)
        assert isinstance(bundle, KeyserverBundle)  # noqa: S101 - built for that service
        return bundle

    @property
    def verification(self) -> VerificationBundle:
        bundle = self.bundle(Service.VERIFICATION)
        assert isinstance(bundle, VerificationBundle)  # noqa: S101 - built for that service
        return bundle

    def per_request_metrics(self) -> tuple[str, ...]:
        """The metrics of the opened services that move with single requests."""
        return tuple(
            name for bundle in self.bundles.values() for name in bundle.per_request_metrics
        )

    def jobs(self) -> list[Job]:
        """Every scheduled job of the opened services."""
        return [job for bundle in self.bundles.values() for job in bundle.jobs]

    def readiness(self) -> dict[str, dict[str, str]]:
        """Per service: its database and schema, its keys, and its own checks, each
        ``ok`` or a reason code (see exposure.readiness)."""
        checks: dict[str, dict[str, str]] = {}
        for service, bundle in self.bundles.items():
            answers = service_state(service, bundle.resources.engine, bundle.keys)
            answers.update({check.name: check.probe() for check in bundle.readiness})
            checks[service.value] = answers
        return checks

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ServiceUpgrade:
    """What ``exposure db upgrade`` did to one service's database."""

    service: Service
    revisions: tuple[str, ...]
    legacy: LegacyImport | None


class _Engines:
    """One engine per distinct URL, disposed of together unless handed over."""

    def __init__(self, settings: ExposureSettings) -> None:
        self._settings = settings
        self._by_url: dict[str, Engine] = {}

    def for_service(self, service: Service) -> Engine:
        url = self._settings.database_url_for(service)
        if url not in self._by_url:
            self._by_url[url] = create_database_engine(
                url,
                sqlite_busy_timeout_ms=self._settings.sqlite_busy_timeout_ms,
                pool_size=self._settings.database_pool_size,
            )
        return self._by_url[url]

    def all(self) -> list[Engine]:
        return list(self._by_url.values())

    def dispose(self) -> None:
        for engine in self._by_url.values():
            engine.dispose()


def _services(settings: ExposureSettings, services: Sequence[Service] | None) -> list[Service]:
    wanted = list(Service) if services is None else list(dict.fromkeys(services))
    for service in wanted:
        settings.database_url_for(service)  # raises ServiceNotConfigured
    return wanted


def _is_sqlite(settings: ExposureSettings, service: Service) -> bool:
    return make_url(settings.database_url_for(service)).get_backend_name() == "sqlite"


def _keks(settings: DeploymentSettings, service: Service, *, embedded: bool) -> list[bytes]:
    return load_keks(
        service.value, settings.kek(service), embedded=embedded, data_dir=settings.base.data_dir
    )


def _key_store(settings: DeploymentSettings, service: Service, engine: Engine) -> ServiceKeyStore:
    configured = settings.kek(service)
    keks = _keks(settings, service, embedded=engine.dialect.name == "sqlite")
    setting = kek_setting_name(service.value)
    source = (
        setting
        if configured
        else f"the KEK file {embedded_kek_path(settings.base.data_dir, service.value)} "
        f"({setting} is unset)"
    )
    return ServiceKeyStore(service.value, keks, kek_source=source)


def _has_legacy_keys(sources: LegacySources, service: Service) -> bool:
    if any(sources.setting(variable) for variable in _LEGACY_VARIABLES[service]):
        return True
    if any(sources.secrets_file(name).exists() for name in _LEGACY_FILES[service]):
        return True
    directory = sources.key_directory(service.value)
    return directory.is_dir() and any(directory.glob("*.pem"))


_IMPORTERS: dict[Service, Callable[..., LegacyImport]] = {
    Service.KEYSERVER: import_keyserver_keys,
    Service.VERIFICATION: import_verification_keys,
}


def upgrade_databases(
    settings: DeploymentSettings,
    services: Sequence[Service] | None = None,
    *,
    clock: Clock = utc_now,
    environment: Mapping[str, str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[ServiceUpgrade]:
    """Migrate each service's database to this version's head, then move keys that earlier
    versions kept in files or settings into it (see :mod:`exposure.keys.legacy`).

    The only function besides tests that changes a schema. Files are deleted once the keys
    they held are committed.
    """
    wanted = _services(settings.base, services)
    sources = LegacySources(settings.base.data_dir, environment or os.environ)
    engines = _Engines(settings.base)
    upgrades = []
    try:
        for service in wanted:
            with _naming(service):
                upgrades.append(_upgrade(service, engines, settings, sources, clock, on_step))
    finally:
        engines.dispose()
    return upgrades


def _upgrade(
    service: Service,
    engines: _Engines,
    settings: DeploymentSettings,
    sources: LegacySources,
    clock: Clock,
    on_step: Callable[[str], None] | None,
) -> ServiceUpgrade:
    engine = engines.for_service(service)
    if on_step is not None:
        on_step(f"{service.value}: migrating")
    upgrade_service(engine, service)
    legacy = None
    if _has_legacy_keys(sources, service):
        if on_step is not None:
            on_step(f"{service.value}: moving earlier keys into the database")
        keys = _key_store(settings, service, engine)
        with unit_of_work(make_session_factory(engine)) as session:
            legacy = _IMPORTERS[service](session, keys, sources, now=clock())
        legacy.delete_files()
    return ServiceUpgrade(service, tuple(sorted(applied_revisions(engine))), legacy)


def open_deployment(
    settings: DeploymentSettings,
    services: Sequence[Service] | None = None,
    *,
    clock: Clock = utc_now,
    migrate: bool = False,
) -> Deployment:
    """Open ``services`` (default: every service) as the module documentation describes."""
    wanted = _services(settings.base, services)
    if migrate:
        # A missing KEK stops the process before it changes anything.
        for service in wanted:
            _keks(settings, service, embedded=_is_sqlite(settings.base, service))
        upgrade_databases(settings, wanted, clock=clock)
    engines = _Engines(settings.base)
    bundles: dict[Service, ServiceBundle] = {}
    try:
        for service in wanted:
            with _naming(service):
                bundles[service] = _open_service(service, engines, settings, clock)
    except BaseException:
        engines.dispose()
        raise
    return Deployment(settings=settings, bundles=bundles, clock=clock, engines=engines.all())


def _open_service(
    service: Service, engines: _Engines, settings: DeploymentSettings, clock: Clock
) -> ServiceBundle:
    engine = engines.for_service(service)
    require_current_schema(engine, service)
    keys = _key_store(settings, service, engine)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        keys.check(session)
    resources = ServiceResources(
        service=service,
        settings=settings.base,
        engine=engine,
        session_factory=sessions,
        keys=keys,
        clock=clock,
    )
    if service is Service.KEYSERVER:
        return build_keyserver_bundle(resources, settings.keyserver, settings.retention)
    return build_verification_bundle(resources, settings.verification, settings.retention)


@contextmanager
def _naming(service: Service) -> Iterator[None]:
    """Say which service's database failed: the error itself does not."""
    try:
        yield
    except SQLAlchemyError as error:
        raise ServiceDatabaseError(service.value, error) from error
