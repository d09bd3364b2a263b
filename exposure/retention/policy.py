"""Retention declarations: one per stored kind of data, and the registry they form.

A :class:`RetentionPolicy` says why a kind of data is kept (its purpose), which tables hold
it, the field its age is measured from, how long it may live (:class:`Deadline`: a default,
and a floor and ceiling that settings cannot cross), what happens at the deadline (deleted,
blanked, destroyed) and which job does it. Policies that purge carry the two functions the
purge runner needs: ``purge`` (remove what is older than a cutoff, in batches) and
``oldest`` (when the oldest item still held was born, for compliance and alerting).

Configuration (realms, trusted authorities, export configs) is declared too, with no
deadline: it holds no personal data and lives until an operator removes it. Every table in
the schema must be covered by some declaration; ``tables_without_declaration`` finds the
ones that are not, and a test fails on any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from exposure.db import SessionFactory
from exposure.settings import Service

__all__ = [
    "Action",
    "Deadline",
    "OldestItem",
    "PurgeResult",
    "Purger",
    "RetentionPolicy",
    "tables_without_declaration",
]


class Action(StrEnum):
    """What happens to an item at its deadline."""

    DELETE = "delete"
    #: The row stays (its counts and dates serve a purpose) but its secret fields are erased.
    BLANK = "blank"
    #: Key material is erased; the row only says the key existed.
    DESTROY = "destroy"
    #: No deadline: configuration, removed by an operator.
    KEEP = "keep"


@dataclass(frozen=True)
class Deadline:
    """How long an item may live: ``default``, and the range settings may move it in."""

    default: timedelta
    floor: timedelta
    ceiling: timedelta

    def __post_init__(self) -> None:
        if not self.floor <= self.default <= self.ceiling:
            raise ValueError("a deadline's default must lie between its floor and ceiling")


@dataclass(frozen=True)
class PurgeResult:
    """What one purge of one kind did."""

    rows: int
    blobs: int = 0


#: Removes (or blanks) every item of one kind older than ``cutoff``; ``now`` is the run's time.
Purger = Callable[[SessionFactory, datetime, datetime], PurgeResult]
#: When the oldest item of one kind still held was born (by the policy's measure), or None.
OldestItem = Callable[[SessionFactory, datetime], datetime | None]


@dataclass(frozen=True)
class RetentionPolicy:
    """The declaration of one stored kind of data."""

    #: Stable identifier, e.g. ``exposure-keys``; it names metrics and log entries.
    kind: str
    service: Service
    #: The tables (or parts of tables) that hold this kind.
    tables: tuple[str, ...]
    #: Why the data exists at all; the only use it may be put to.
    purpose: str
    #: The field the age is measured from, in words a reader of the schema understands.
    measured_from: str
    action: Action
    #: The deadline's bounds; None for configuration kept until an operator removes it.
    bounds: Deadline | None
    #: The configured deadline (within ``bounds``); None when there is none.
    deadline: timedelta | None
    #: The environment variable that moves the deadline, if any.
    setting: str | None
    #: The job (or person) that enforces the deadline.
    enforced_by: str
    purge: Purger | None = None
    oldest: OldestItem | None = None

    def __post_init__(self) -> None:
        if (self.bounds is None) != (self.deadline is None):
            raise ValueError(f"{self.kind}: a deadline needs bounds and bounds need a deadline")
        if (
            self.bounds is not None
            and self.deadline is not None
            and not self.bounds.floor <= self.deadline <= self.bounds.ceiling
        ):
            raise ValueError(f"{self.kind}: deadline outside its floor and ceiling")
        if self.action is Action.KEEP and self.deadline is not None:
            raise ValueError(f"{self.kind}: kept data has no deadline")
        if self.purge is not None and self.deadline is None:
            raise ValueError(f"{self.kind}: a purge needs a deadline")

    @property
    def purged(self) -> bool:
        """Whether the purge job removes this kind (else another job or an operator does)."""
        return self.purge is not None

    def cutoff(self, now: datetime) -> datetime:
        """Items born before this are past their deadline at ``now``."""
        if self.deadline is None:
            raise ValueError(f"{self.kind} has no deadline")
        return now - self.deadline


def tables_without_declaration(
    tables: Iterable[str], policies: Sequence[RetentionPolicy]
) -> set[str]:
    """The tables in ``tables`` that no policy names."""
    declared = {table for policy in policies for table in policy.tables}
    return set(tables) - declared
