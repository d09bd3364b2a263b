"""Settings: read from EXPOSURE_* at construction time, unsafe values refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from exposure.settings import ExposureSettings, Service, normalize_database_url


def test_defaults_are_embedded_sqlite_per_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EXPOSURE_DATABASE_URL", raising=False)
    monkeypatch.setenv("EXPOSURE_DATA_DIR", str(tmp_path))

    settings = ExposureSettings()

    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    keyserver = settings.database_url_for(Service.KEYSERVER)
    verification = settings.database_url_for(Service.VERIFICATION)
    assert keyserver == f"sqlite:///{tmp_path.resolve() / 'keyserver.sqlite3'}"
    assert verification == f"sqlite:///{tmp_path.resolve() / 'verification.sqlite3'}"


def test_shared_url_and_per_service_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPOSURE_DATABASE_URL", "postgresql://db/shared")
    monkeypatch.setenv("EXPOSURE_VERIFICATION_DATABASE_URL", "postgresql+psycopg://db/verif")

    settings = ExposureSettings()

    assert settings.database_url_for(Service.KEYSERVER) == "postgresql+psycopg://db/shared"
    assert settings.database_url_for(Service.VERIFICATION) == "postgresql+psycopg://db/verif"


def test_settings_are_not_read_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPOSURE_PORT", "9191")
    assert ExposureSettings().port == 9191
    monkeypatch.setenv("EXPOSURE_PORT", "9292")
    assert ExposureSettings().port == 9292


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXPOSURE_DATABASE_URL", "mysql://root@localhost/db"),
        ("EXPOSURE_DATABASE_URL", "not a url"),
        ("EXPOSURE_PORT", "0"),
        ("EXPOSURE_PORT", "70000"),
        ("EXPOSURE_SQLITE_BUSY_TIMEOUT_MS", "10"),
        ("EXPOSURE_DATABASE_POOL_SIZE", "0"),
        ("EXPOSURE_LOG_LEVEL", "verbose"),
    ],
)
def test_unsafe_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError):
        ExposureSettings()


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(ValidationError, match="not a directory"):
        ExposureSettings(data_dir=blocker)


def test_empty_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPOSURE_DATABASE_URL", "  ")
    assert ExposureSettings().database_url is None


def test_normalize_maps_plain_postgresql_to_psycopg() -> None:
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"
