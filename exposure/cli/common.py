"""Helpers shared by CLI commands."""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from exposure.settings import ExposureSettings

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
