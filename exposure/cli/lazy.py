"""Sub-commands whose code is imported only when they run.

A group lists a lazy sub-command from what :class:`LazyCommand` says (its name and one line
of help), so ``exposure --help`` imports nothing of it; ``exposure NAME ...`` imports the
module and runs the Typer app it names. The module may live outside the product (the
benchmarks do): the product then holds only its name, as a string.

Example::

    class ExposureGroup(LazyGroup):
        lazy_commands = (
            LazyCommand("bench", "benchmarks.cli:bench_app", "Measure the hot paths."),
        )

    app = typer.Typer(cls=ExposureGroup)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    # Typer ships its own copy of click; these are the types its groups are written in.
    from typer._click import Command, Context

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """A sub-command known by name until it runs."""

    name: str
    #: ``"module:attribute"``, the attribute a :class:`typer.Typer` app.
    target: str
    #: The line the parent's help shows; the command's own ``--help`` shows its full help.
    help: str
    #: Mount the app's one command as the command itself (``exposure serve``), not as a
    #: group holding it (``exposure serve serve``).
    single: bool = False

    def load(self) -> Command:
        """Import the target and build its command, named :attr:`name`.

        Raises :class:`ImportError` or :class:`AttributeError` if the target is missing, and
        :class:`TypeError` if it is not a Typer app.
        """
        module, _, attribute = self.target.partition(":")
        loaded = getattr(importlib.import_module(module), attribute)
        if not isinstance(loaded, typer.Typer):
            raise TypeError(f"{self.target} is not a Typer app")
        # A group even with a single command, as add_typer would mount it, unless asked.
        command = typer.main.get_command(loaded) if self.single else typer.main.get_group(loaded)
        command.name = self.name
        return command


class _Placeholder(TyperCommand):
    """Stands for a lazy command in listings (help, typo suggestions) until it is loaded."""

    def __init__(self, lazy: LazyCommand) -> None:
        super().__init__(lazy.name, help=lazy.help, short_help=lazy.help)
        self.lazy = lazy


class LazyGroup(TyperGroup):
    """A Typer group that also mounts :attr:`lazy_commands`, importing each when it runs.

    Subclass it with the commands and pass the subclass as ``typer.Typer(cls=...)``. The
    lazy commands are listed after the eagerly added ones, in the order given.
    """

    lazy_commands: ClassVar[Sequence[LazyCommand]] = ()

    def __init__(self, **attributes: Any) -> None:
        super().__init__(**attributes)
        for lazy in self.lazy_commands:
            if lazy.name in self.commands:
                raise ValueError(f"command {lazy.name!r} is registered twice")
            self.add_command(_Placeholder(lazy))

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        # Every invocation (and shell completion) resolves through here; listings only
        # call get_command, which keeps answering with the placeholder.
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, _Placeholder):
            command = command.lazy.load()
            self.commands[name] = command
        return name, command, rest
