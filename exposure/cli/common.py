"""Helpers shared by CLI commands."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from exposure.settings import ExposureSettings


def load_settings(**overrides: Any) -> ExposureSettings:
    """Build settings from the environment (plus CLI overrides) or exit 2 with the reason."""
    try:
        return ExposureSettings(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            location = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.echo(f"invalid setting {location}: {problem['msg']}", err=True)
        raise typer.Exit(code=2) from None
