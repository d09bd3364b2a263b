"""Process-wide settings, read from ``EXPOSURE_*`` environment variables.

Settings are built once at start-up (``ExposureSettings()`` in the CLI) and passed down to
whatever needs them; nothing reads the environment at import time. Validators refuse values
that would be unsafe or meaningless rather than silently clamping them.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Service(StrEnum):
    """The services that keep a database of their own."""

    KEYSERVER = "keyserver"
    VERIFICATION = "verification"


class ServiceNotConfigured(Exception):  # noqa: N818 - reads as a condition
    """A service was asked for whose database the settings name none."""

    def __init__(self, service: Service) -> None:
        variable = f"EXPOSURE_{service.value.upper()}_DATABASE_URL"
        super().__init__(
            f"the {service.value} service has no database: set {variable} (or "
            f"EXPOSURE_DATABASE_URL for both services), or run only the services that have one"
        )
        self.service = service


#: Drivers we test against. ``postgresql://`` is accepted and mapped to psycopg 3.
_SUPPORTED_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")

#: SQLite waits this long for a competing writer before failing; below the floor a busy
#: embedded server would answer 500s under ordinary load.
SQLITE_BUSY_TIMEOUT_FLOOR_MS = 1_000
SQLITE_BUSY_TIMEOUT_CEILING_MS = 60_000


def normalize_database_url(url: str) -> str:
    """Return ``url`` with a supported driver, or raise ``ValueError``."""
    scheme, separator, rest = url.partition("://")
    if not separator or not rest:
        raise ValueError("database URL must look like scheme://...")
    if scheme not in _SUPPORTED_SCHEMES:
        raise ValueError(
            f"unsupported database scheme {scheme!r}; use sqlite:/// or postgresql+psycopg://"
        )
    if scheme == "postgresql":
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def _optional_url(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return None
    return normalize_database_url(value.strip())


class ExposureSettings(BaseSettings):
    """Settings shared by every command and service of one deployment."""

    model_config = SettingsConfigDict(env_prefix="EXPOSURE_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("var"),
        description="Where embedded state lives: the SQLite databases, keys and exports.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "One database for every service (small installs). When no database URL is set at "
            "all, the embedded default: one SQLite file per service under data_dir."
        ),
    )
    keyserver_database_url: str | None = Field(
        default=None, description="The key server's own database; overrides database_url."
    )
    verification_database_url: str | None = Field(
        default=None,
        description="The verification service's own database; overrides database_url.",
    )
    host: str = Field(default="127.0.0.1", description="Address `exposure serve` binds to.")
    port: Annotated[int, Field(ge=1, le=65_535)] = Field(
        default=8080, description="Port `exposure serve` listens on."
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL clients use to reach this server (default http://host:port).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sqlite_busy_timeout_ms: Annotated[
        int, Field(ge=SQLITE_BUSY_TIMEOUT_FLOOR_MS, le=SQLITE_BUSY_TIMEOUT_CEILING_MS)
    ] = Field(default=5_000, description="How long SQLite waits for a competing writer.")
    database_pool_size: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="Connections kept open per PostgreSQL database and process."
    )
    migrate_on_start: bool = Field(
        default=True, description="`exposure serve` upgrades the schema before listening."
    )
    header_timeout: Annotated[float, Field(ge=1, le=120)] = Field(
        default=10,
        description="Seconds a client may take to send a request's headers; then closed.",
    )
    body_timeout: Annotated[float, Field(ge=1, le=300)] = Field(
        default=30,
        description="Seconds a client may take to send a request's body after its headers.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address of the metrics listener; never the public one (docs/privacy.md).",
    )
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = Field(
        default=9464, description="Port of the metrics listener; 0 serves no metrics."
    )
    metrics_release_interval: Annotated[
        timedelta, Field(ge=timedelta(minutes=10), le=timedelta(days=1))
    ] = Field(
        default=timedelta(hours=1),
        description="Per-request counters are shown as they stood at the last such boundary.",
    )
    max_connections: Annotated[int, Field(ge=10, le=100_000)] = Field(
        default=1_000,
        description="Connections one `exposure serve` process keeps open; more are refused.",
    )

    @field_validator(
        "database_url", "keyserver_database_url", "verification_database_url", mode="before"
    )
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return _optional_url(value)

    @model_validator(mode="after")
    def _check_data_dir(self) -> ExposureSettings:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"data_dir {self.data_dir} exists and is not a directory")
        return self

    @property
    def base_url(self) -> str:
        """Where clients reach the server; printed by bootstrap and used in links."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def embedded(self) -> bool:
        """No database URL is set: every service uses its SQLite file under data_dir."""
        return (
            self.database_url is None
            and self.keyserver_database_url is None
            and self.verification_database_url is None
        )

    def database_url_for(self, service: Service) -> str:
        """The database URL ``service`` uses: its own, the shared one, or its SQLite file.

        Once any URL is set, a service without one is not configured: a process must not
        quietly make an embedded database beside a production one. Raises
        :class:`ServiceNotConfigured` then.
        """
        own = {
            Service.KEYSERVER: self.keyserver_database_url,
            Service.VERIFICATION: self.verification_database_url,
        }[service]
        if own is not None:
            return own
        if self.database_url is not None:
            return self.database_url
        if not self.embedded:
            raise ServiceNotConfigured(service)
        return f"sqlite:///{(self.data_dir / f'{service.value}.sqlite3').resolve()}"

    def configured_services(self) -> list[Service]:
        """The services whose database the settings name (all of them when embedded)."""
        services = []
        for service in Service:
            try:
                self.database_url_for(service)
            except ServiceNotConfigured:
                continue
            services.append(service)
        return services
