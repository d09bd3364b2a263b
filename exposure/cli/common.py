"""Helpers shared by CLI commands: settings, opening services, printing results."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError

from exposure.clock import utc_now
from exposure.compose import Deployment, DeploymentSettings, open_deployment
from exposure.settings import Service

__all__ = [
    "emit",
    "emit_rows",
    "load_settings",
    "open_services",
    "parse_duration",
    "utc_now",
]


def load_settings(**overrides: Any) -> DeploymentSettings:
    """Every setting from the environment (plus CLI overrides), or exit 2 naming each bad one."""
    try:
        return DeploymentSettings.from_environment(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            location = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.echo(f"invalid setting {location}: {problem['msg']}", err=True)
        raise typer.Exit(code=2) from None


@contextmanager
def open_services(
    services: Sequence[Service] | None = None,
    *,
    settings: DeploymentSettings | None = None,
    now: datetime | None = None,
) -> Iterator[Deployment]:
    """The given services (default: every service whose database is configured), opened
    from the environment; closed afterwards. Never changes a schema.

    ``now`` pins the clock the services see (a job run ``--now``).
    """
    resolved = settings or load_settings()
    wanted = services if services is not None else resolved.base.configured_services()
    clock = (lambda: now) if now is not None else utc_now
    with open_deployment(resolved, wanted, clock=clock) as deployment:
        yield deployment


def emit(data: Mapping[str, Any], as_json: bool) -> None:
    """Print a command's result as sorted JSON, or as ``name: value`` lines."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    for key, value in data.items():
        typer.echo(f"{key}: {value}")


def emit_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """Print a listing as JSON, or as aligned columns with a header."""
    if as_json:
        typer.echo(json.dumps(list(rows), indent=2, sort_keys=True, default=str))
        return
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[index]) for line in cells))
        for index, column in enumerate(columns)
    ]
    typer.echo(
        "  ".join(
            column.ljust(width) for column, width in zip(columns, widths, strict=True)
        ).rstrip()
    )
    for line in cells:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def parse_duration(text: str) -> timedelta:
    """``4h``, ``30m``, ``7d``, ``90s`` or ISO 8601 (``PT4H``); exit 2 on anything else."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isascii() and text[:-1].isdigit():
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        typer.echo(f"error: {text!r} is not a duration (e.g. 4h, 30m, 7d, PT4H)", err=True)
        raise typer.Exit(code=2) from None
