"""Sub-commands loaded only when they run, so ``exposure --help`` stays fast.

The root group lists every sub-command by name and a one-line help written here; the module
behind a sub-command (and everything it imports: the web framework, the database layer, the
services) is imported only when that sub-command is invoked or its own help is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import typer
import typer.main

# Typer carries its own copy of click; its groups and commands are of that copy's types.
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a sub-command lives: ``module:attribute`` names a Typer app, and its help."""

    target: str
    help: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        loaded = getattr(importlib.import_module(module_name), attribute)
        if isinstance(loaded, typer.Typer):
            return typer.main.get_command(loaded)
        if isinstance(loaded, click.Command):
            return loaded
        raise TypeError(f"{self.target} is neither a Typer app nor a click command")


class LazyGroup(TyperGroup):
    """A group whose ``LAZY`` sub-commands are imported on first use."""

    LAZY: ClassVar[Mapping[str, LazyCommand]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [
            *super().list_commands(ctx),
            *(name for name in self.LAZY if name not in self.commands),
        ]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.LAZY:
            return command
        # Listing needs only the name and the help: a stand-in that never runs.
        return TyperCommand(cmd_name, help=self.LAZY[cmd_name].help)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in self.LAZY and args[0] not in self.commands:
            self.add_command(self.LAZY[args[0]].load(), args[0])
        return super().resolve_command(ctx, args)
