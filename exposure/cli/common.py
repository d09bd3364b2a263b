"""Helpers shared by CLI commands."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from pydantic_settings import BaseSettings

from exposure.db import SessionFactory, create_database_engine, make_session_factory
from exposure.db.migrate import upgrade_service
from exposure.settings import ExposureSettings, Service

AnySettings = TypeVar("AnySettings", bound=BaseSettings)


def load_settings(**overrides: Any) -> ExposureSettings:
    """Build the shared settings from the environment (plus CLI overrides), or exit 2."""
    return build_settings(ExposureSettings, **overrides)


def build_settings(settings_class: type[AnySettings], **overrides: Any) -> AnySettings:
    """Build any settings class from the environment, or exit 2 naming each bad value."""
    try:
        return settings_class(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            location = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.echo(f"invalid setting {location}: {problem['msg']}", err=True)
        raise typer.Exit(code=2) from None


@contextmanager
def migrated_database(settings: ExposureSettings, service: Service) -> Iterator[SessionFactory]:
    """Sessions on ``service``'s database, upgraded first; the engine is closed afterwards."""
    engine = create_database_engine(
        settings.database_url_for(service),
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.database_pool_size,
    )
    try:
        upgrade_service(engine, service)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def emit(data: Mapping[str, Any], as_json: bool) -> None:
    """Print a command's result as sorted JSON, or as ``name: value`` lines."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for key, value in data.items():
        typer.echo(f"{key}: {value}")


def parse_duration(text: str) -> timedelta:
    """``4h``, ``30m``, ``7d``, ``90s`` or ISO 8601 (``PT4H``); exit 2 on anything else."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        typer.echo(f"error: {text!r} is not a duration (e.g. 4h, 30m, 7d, PT4H)", err=True)
        raise typer.Exit(code=2) from None
