"""Leases: named, time-limited locks held in the database.

Scheduled jobs may run in every replica; a lease makes sure only one of them does a given
piece of work at a time. A lease is taken with a time-to-live, so a holder that crashes
cannot block the others for longer than that: once it has expired, anyone may take it over.
Only the holder can renew or release it.

Acquiring is one atomic statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``) that
both SQLite and PostgreSQL evaluate against the latest committed row, so two contenders can
never both win. The lease must be committed to count, which is why :func:`held_lease` takes
it in a transaction of its own rather than inside the caller's.

Time is a parameter (``now``): callers pass their clock, tests pass any instant.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from exposure.db.base import Base, UTCDateTime
from exposure.db.unit_of_work import SessionFactory, unit_of_work
from exposure.db.upsert import upsert_insert

#: A lease shorter than this would expire during an ordinary database round trip.
MINIMUM_TTL = timedelta(seconds=1)


class LeaseRow(Base):
    """One row per lease name; the row survives release so names stay cheap to reuse."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(
        String(64),
        comment="Random token of the current holder; carries no host or process identity.",
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Lease:
    """A lease that was granted: who holds it and until when."""

    name: str
    holder: str
    expires_at: datetime


class LeaseUnavailable(Exception):  # noqa: N818 - reads as a condition, like TimeoutError
    """Another holder has the lease and it has not expired."""

    def __init__(self, name: str) -> None:
        super().__init__(f"lease {name!r} is held by another worker")
        self.name = name


def new_holder_token() -> str:
    """A random holder identity: unique per acquisition, says nothing about the host."""
    return secrets.token_hex(16)


def acquire_lease(
    session: Session, *, name: str, holder: str, ttl: timedelta, now: datetime
) -> Lease | None:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl``.

    Returns the lease when granted (also when ``holder`` already held it: that renews it),
    or ``None`` when another holder's lease has not expired at ``now``.
    """
    if ttl < MINIMUM_TTL:
        raise ValueError(f"lease TTL must be at least {MINIMUM_TTL}")
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime, not a naive one")
    expires_at = now + ttl
    values = upsert_insert(session, LeaseRow).values(
        name=name, holder=holder, expires_at=expires_at
    )
    statement = values.on_conflict_do_update(
        index_elements=[LeaseRow.name],
        set_={"holder": values.excluded.holder, "expires_at": values.excluded.expires_at},
        where=(LeaseRow.expires_at <= now) | (LeaseRow.holder == holder),
    ).returning(LeaseRow.holder)
    granted = session.execute(statement).scalar_one_or_none()
    if granted is None:
        return None
    return Lease(name=name, holder=holder, expires_at=expires_at)


def release_lease(session: Session, *, name: str, holder: str) -> bool:
    """Release lease ``name`` if ``holder`` still holds it; return whether it did."""
    result = session.execute(
        delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder)
    )
    return bool(getattr(result, "rowcount", 0))


def current_lease(session: Session, *, name: str, now: datetime) -> Lease | None:
    """The unexpired lease called ``name`` at ``now``, if any."""
    row = session.execute(
        select(LeaseRow).where(LeaseRow.name == name, LeaseRow.expires_at > now)
    ).scalar_one_or_none()
    if row is None:
        return None
    return Lease(name=row.name, holder=row.holder, expires_at=row.expires_at)


@contextmanager
def held_lease(
    session_factory: SessionFactory,
    *,
    name: str,
    ttl: timedelta,
    clock: Callable[[], datetime],
) -> Iterator[Lease]:
    """Hold lease ``name`` for the duration of the block, or raise :class:`LeaseUnavailable`.

    The lease is committed before the block runs and released (by this holder only) after
    it, even when the block raises. Work inside the block must finish within ``ttl``; a job
    that may run longer should renew with :func:`acquire_lease` and the same holder.
    """
    holder = new_holder_token()
    with unit_of_work(session_factory) as session:
        lease = acquire_lease(session, name=name, holder=holder, ttl=ttl, now=clock())
    if lease is None:
        raise LeaseUnavailable(name)
    try:
        yield lease
    finally:
        with unit_of_work(session_factory) as session:
            release_lease(session, name=name, holder=holder)
