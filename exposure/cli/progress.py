"""Progress on standard error for commands that can take a while (rich).

Shown only when standard error is a terminal: piped output, CI logs and ``--json``
consumers see nothing of it. A step is a spinner with its elapsed time; a counted step is a
bar.

Example::

    with progress() as shown:
        shown.step("keyserver: migrating")
        for item in shown.track(items, "verifying", total=len(items)):
            ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

Item = TypeVar("Item")

__all__ = ["Progress", "progress"]


class Progress:
    """What a command reports while it works (nothing when not on a terminal)."""

    def __init__(self, live: RichProgress | None) -> None:
        self._live = live
        self._task: TaskID | None = None

    def step(self, description: str) -> None:
        """A new step of unknown length: a spinner with the description."""
        if self._live is None:
            return
        if self._task is not None:
            self._live.update(self._task, completed=1, total=1)
        self._task = self._live.add_task(description, total=None)

    def track(
        self, items: Iterable[Item], description: str, total: int | None = None
    ) -> Iterator[Item]:
        """Iterate ``items`` with a bar (or a spinner when there is no ``total``)."""
        if self._live is None:
            yield from items
            return
        yield from self._live.track(items, total=total, description=description)


@contextmanager
def progress() -> Iterator[Progress]:
    if not sys.stderr.isatty():
        yield Progress(None)
        return
    live = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with live:
        yield Progress(live)
