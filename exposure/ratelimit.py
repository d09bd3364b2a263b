"""Fixed-window rate limits kept in the service's own database.

One mechanism serves three needs: per-(realm, client) request limits, per-realm daily
quotas of issued codes, and lockouts after repeated failed code lookups. Google's
verification server keeps these in Redis; keeping them in the database every replica
already shares means no extra moving part, and every replica sees the same counts.

Each subject is a *bucket*, named only by :func:`bucket_key`: an HMAC of its parts under a
server secret. Raw client addresses, API keys or codes therefore never reach storage (as
in Google's ``HMAC(RATE_LIMIT_HMAC_KEY, "<realmID>:<clientIP>")``), and a leaked table says
nothing about who was limited. Buckets count hits per window of fixed length aligned on
the Unix epoch (a one-day window runs from UTC midnight to UTC midnight), one row per
bucket and window.

Store-layer rules hold: the caller owns the transaction and the clock (``now``). Counting
is a single ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` that both databases apply
atomically against the latest committed row, so concurrent replicas never lose a hit.
Denied hits are counted too: hammering a closed limit keeps it closed instead of getting
through as soon as earlier hits age out.

Where the limit guards something scarcer than requests (guesses at a code), :func:`take`
counts a hit only if it fits, deciding in the same statement, so concurrent callers can
never together get past the limit; a slot that turns out unneeded is returned with
:func:`give_back`.

Example::

    bucket = bucket_key(secret, "verify", realm_id, client_address)
    decision = hit(session, bucket=bucket, limit=120, window=timedelta(minutes=1), now=now)
    headers = rate_limit_headers(decision)
    if not decision.allowed:
        ...  # 429 with these headers
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Dialect,
    Integer,
    String,
    Table,
    bindparam,
    case,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from exposure.db.base import Base, UTCDateTime

__all__ = [
    "BUCKET_PART_SEPARATOR",
    "MAX_COUNT",
    "MINIMUM_SECRET_BYTES",
    "BucketLimit",
    "RateDecision",
    "RateLimitWindow",
    "bucket_key",
    "give_back",
    "hit",
    "hit_decision",
    "peek",
    "peek_many",
    "rate_limit_headers",
    "take",
    "take_decision",
    "window_start",
]

#: Joins the parts of a bucket name before hashing (ASCII unit separator); a part that
#: contains it is refused, so ("a\x1fb",) and ("a", "b") can never share a bucket.
BUCKET_PART_SEPARATOR = "\x1f"
#: An HMAC key shorter than this is a placeholder, not a secret.
MINIMUM_SECRET_BYTES = 16
#: Counters saturate here instead of overflowing PostgreSQL's 32-bit ``integer``, which
#: would turn a hammered bucket into a stream of database errors.
MAX_COUNT = 2**31 - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
# Hex HMAC-SHA256 or -SHA512: anything else (an address, a key) is not a bucket name.
_BUCKET = re.compile(r"[0-9a-f]{64}|[0-9a-f]{128}")


class RateLimitWindow(Base):
    """How many hits one bucket took in one window; rows past their window are purged."""

    __tablename__ = "rate_limit_windows"
    __table_args__ = (CheckConstraint("count >= 0", name="count_not_negative"),)

    bucket: Mapped[str] = mapped_column(
        String(128),
        primary_key=True,
        comment=(
            "Hex HMAC-SHA256 of the limited subject's parts (realm, client, purpose) under a "
            "server secret; never a raw IP address, API key or code."
        ),
    )
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, index=True)
    count: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class RateDecision:
    """The outcome of a hit (or a peek), with what the rate-limit headers report.

    ``remaining`` is never negative; ``reset_at`` is when the current window ends;
    ``retry_after_seconds`` is 0 when allowed, otherwise the whole seconds (rounded up,
    at least 1) until ``reset_at``.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: datetime
    retry_after_seconds: int


@dataclass(frozen=True)
class BucketLimit:
    """One limit to check: ``limit`` hits per ``window`` on ``bucket``."""

    bucket: str
    limit: int
    window: timedelta


def bucket_key(secret: bytes, *parts: str) -> str:
    """Name a bucket: hex HMAC-SHA256 under ``secret`` of ``parts`` joined by U+001F.

    Include a purpose among the parts (``"verify"``, ``"quota"``, ``"lockout"``) so that
    different limits on the same subject never share a counter. Rotating ``secret`` starts
    every bucket afresh, which at worst grants one extra window of hits.

    Raises :class:`ValueError` if ``secret`` is shorter than :data:`MINIMUM_SECRET_BYTES`,
    if no part is given, or if a part contains the separator.
    """
    if len(secret) < MINIMUM_SECRET_BYTES:
        raise ValueError(f"bucket secret must be at least {MINIMUM_SECRET_BYTES} bytes")
    if not parts:
        raise ValueError("a bucket needs at least one part")
    if any(BUCKET_PART_SEPARATOR in part for part in parts):
        raise ValueError("bucket parts must not contain the U+001F separator")
    message = BUCKET_PART_SEPARATOR.join(parts).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the window that contains ``now``: ``now`` floored to a multiple of
    ``window`` since the Unix epoch, in exact integer microseconds.

    Raises :class:`ValueError` for a naive ``now`` or a window that is not a positive
    whole number of seconds.
    """
    _check_time(now, window)
    elapsed = (now - _EPOCH) // _MICROSECOND
    length = window // _MICROSECOND
    return _EPOCH + (elapsed - elapsed % length) * _MICROSECOND


def hit(
    session: Session | Connection,
    *,
    bucket: str,
    limit: int,
    window: timedelta,
    now: datetime,
    cost: int = 1,
) -> RateDecision:
    """Count ``cost`` hits on ``bucket`` in the window containing ``now`` and decide.

    Allowed while the window's count, this hit included, is at most ``limit``. Denied hits
    still count. The increment is one atomic upsert, so concurrent callers never lose one;
    it becomes durable when the caller's transaction commits, and a caller that rolls back
    also takes its hit back (for rate limits, commit even when the request then fails). On
    an autocommit connection (:func:`exposure.db.unit_of_work.autocommit`) it is durable at
    once and holds the bucket's row lock only for the statement.

    Raises :class:`ValueError` for a bucket not named by :func:`bucket_key`, a negative
    ``limit``, a ``cost`` below 1, a naive ``now`` or an invalid ``window``.
    """
    _check_arguments(bucket, limit, cost)
    start = window_start(now, window)
    parameters = {"bucket": bucket, "window_start": start, "cost": cost}
    dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        count = _count_on_psycopg(session, parameters)
    else:
        count = session.execute(_hit_statement(dialect.name), parameters).scalar_one()
    return hit_decision(count, limit=limit, window=window, now=now)


def take(
    session: Session | Connection,
    *,
    bucket: str,
    limit: int,
    window: timedelta,
    now: datetime,
) -> RateDecision:
    """Count one hit on ``bucket`` in the window containing ``now`` only if it fits.

    One upsert increments the count only while it is below ``limit`` and returns the new
    count; when the count is already at the limit it changes nothing and returns no row.
    The comparison is part of the statement that counts, evaluated against the latest
    committed row (PostgreSQL locks the conflicting row first; SQLite writes one statement
    at a time), so however many callers race, at most ``limit`` hits are allowed per
    window. Unlike :func:`hit`, a refused hit is not counted. Durability and locking are
    :func:`hit`'s: run it on an autocommit connection to make it stick at once.

    Raises :class:`ValueError` like :func:`hit`.
    """
    _check_arguments(bucket, limit, 1)
    start = window_start(now, window)
    if limit == 0:
        return _decide(0, limit=0, start=start, window=window, now=now, allowed=False)
    dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
    # Counting stops at the limit, so capping it keeps the count inside an int32 column.
    parameters = {"bucket": bucket, "window_start": start, "limit": min(limit, MAX_COUNT)}
    count = session.execute(_take_statement(dialect.name), parameters).scalar_one_or_none()
    return take_decision(count, limit=limit, window=window, now=now)


def hit_decision(count: int, *, limit: int, window: timedelta, now: datetime) -> RateDecision:
    """What :func:`hit` decides when its upsert returned ``count`` (for a statement that
    counted the hit itself, as :func:`hit` does)."""
    start = window_start(now, window)
    return _decide(count, limit=limit, start=start, window=window, now=now, allowed=count <= limit)


def take_decision(
    count: int | None, *, limit: int, window: timedelta, now: datetime
) -> RateDecision:
    """What :func:`take` decides when its upsert returned ``count`` (None: no row, the
    slot did not fit), for a statement that took the slot itself, as :func:`take` does."""
    start = window_start(now, window)
    if count is None:
        return _decide(limit, limit=limit, start=start, window=window, now=now, allowed=False)
    return _decide(count, limit=limit, start=start, window=window, now=now, allowed=True)


def give_back(
    session: Session | Connection, *, bucket: str, window: timedelta, now: datetime
) -> None:
    """Return one hit that :func:`take` (or :func:`hit`) counted at ``now`` on ``bucket``.

    For a slot taken ahead of work that then did not need it. ``now`` must be the moment
    the hit was counted at, so the same window gets it back; a count never goes below 0.
    Raises :class:`ValueError` for a bucket not named by :func:`bucket_key` or an invalid
    ``now`` or ``window``.
    """
    _check_bucket(bucket, 0)
    parameters = {"given_bucket": bucket, "given_window": window_start(now, window)}
    session.execute(_GIVE_BACK, parameters)


def peek(
    session: Session,
    *,
    bucket: str,
    limit: int,
    window: timedelta,
    now: datetime,
    cost: int = 1,
) -> RateDecision:
    """What :func:`hit` would decide for ``cost`` more hits at ``now``, counting nothing.

    For checks such as "is this client locked out": ``allowed`` says whether ``cost`` more
    hits would fit, ``remaining`` how many single hits still fit. Raises like :func:`hit`.
    """
    return peek_many(session, [BucketLimit(bucket, limit, window)], now=now, cost=cost)[0]


def peek_many(
    session: Session, limits: Sequence[BucketLimit], *, now: datetime, cost: int = 1
) -> list[RateDecision]:
    """:func:`peek` at several limits with one query; the decisions follow ``limits``."""
    starts = []
    for item in limits:
        _check_arguments(item.bucket, item.limit, cost)
        starts.append(window_start(now, item.window))
    if not limits:
        return []
    rows = session.execute(
        _PEEK,
        {"buckets": [item.bucket for item in limits], "starts": sorted(set(starts))},
    )
    counts = {(bucket, start): count for bucket, start, count in rows}
    decisions = []
    for item, start in zip(limits, starts, strict=True):
        used = counts.get((item.bucket, start), 0)
        decisions.append(
            _decide(
                used,
                limit=item.limit,
                start=start,
                window=item.window,
                now=now,
                allowed=used + cost <= item.limit,
            )
        )
    return decisions


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """The headers Google's verification server sends with every rate-limited response.

    ``X-RateLimit-Reset`` is the window's end as an HTTP date (RFC 1123 layout with
    ``GMT``, which HTTP requires; Go's ``time.RFC1123`` writes ``UTC`` there, and parsers
    accept both). A denied decision adds ``Retry-After`` in seconds.
    """
    headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": format_datetime(decision.reset_at.astimezone(UTC), usegmt=True),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers


# Built once (per dialect) against the table, not the mapped class: Core statements with
# bound parameters skip the ORM's bulk-insert machinery, SQLAlchemy compiles each once and
# reuses it, and PostgreSQL runs it as a prepared statement.
_TABLE = cast(Table, RateLimitWindow.__table__)
_PEEK = select(_TABLE.c.bucket, _TABLE.c.window_start, _TABLE.c.count).where(
    _TABLE.c.bucket.in_(bindparam("buckets", expanding=True)),
    _TABLE.c.window_start.in_(bindparam("starts", expanding=True)),
)


@cache
def _hit_statement(dialect_name: str) -> Any:
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    cost = bindparam("cost", type_=Integer)
    values = insert(_TABLE).values(
        bucket=bindparam("bucket"), window_start=bindparam("window_start"), count=cost
    )
    return values.on_conflict_do_update(
        index_elements=[_TABLE.c.bucket, _TABLE.c.window_start],
        set_={
            "count": case(
                (_TABLE.c.count > MAX_COUNT - cost, MAX_COUNT),
                else_=_TABLE.c.count + cost,
            )
        },
    ).returning(_TABLE.c.count)


@cache
def _take_statement(dialect_name: str) -> Any:
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    values = insert(_TABLE).values(
        bucket=bindparam("bucket"), window_start=bindparam("window_start"), count=1
    )
    return values.on_conflict_do_update(
        index_elements=[_TABLE.c.bucket, _TABLE.c.window_start],
        set_={"count": _TABLE.c.count + 1},
        where=_TABLE.c.count < bindparam("limit", type_=Integer),
    ).returning(_TABLE.c.count)


_GIVE_BACK = (
    update(_TABLE)
    .where(
        # Not named after the columns: an UPDATE reserves those names for its SET values.
        _TABLE.c.bucket == bindparam("given_bucket"),
        _TABLE.c.window_start == bindparam("given_window"),
        _TABLE.c.count > 0,
    )
    .values(count=_TABLE.c.count - 1)
)


@cache
def _psycopg_hit(dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The upsert compiled once for psycopg, with its constant parameters (the cap)."""
    compiled = _hit_statement("postgresql").compile(dialect=dialect)
    constants = {name: value for name, value in compiled.params.items() if value is not None}
    return compiled.string, constants


def _count_on_psycopg(session: Session | Connection, parameters: dict[str, Any]) -> int:
    # Counting runs on every request, so on PostgreSQL it skips SQLAlchemy's execution
    # layer (about half the CPU of a statement this small) and hands the statement, compiled
    # once from the same construct, to the driver on the same connection and transaction.
    # Nothing needs converting: psycopg takes the aware UTC window start as it is, and a
    # broken connection is replaced by the engine's checkout check (exposure.db.engine).
    connection = session if isinstance(session, Connection) else session.connection()
    sql, constants = _psycopg_hit(connection.dialect)
    driver: Any = connection.connection.driver_connection
    row = driver.execute(sql, constants | parameters).fetchone()
    return int(row[0])


def _decide(
    count: int, *, limit: int, start: datetime, window: timedelta, now: datetime, allowed: bool
) -> RateDecision:
    reset_at = start + window
    retry_after = 0
    if not allowed:
        left = (reset_at - now) // _MICROSECOND
        retry_after = max(1, -(-left // 1_000_000))
    return RateDecision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - count),
        reset_at=reset_at,
        retry_after_seconds=retry_after,
    )


def _check_arguments(bucket: str, limit: int, cost: int) -> None:
    _check_bucket(bucket, limit)
    if cost < 1:
        raise ValueError("a hit must cost at least 1")


def _check_bucket(bucket: str, limit: int) -> None:
    if not _BUCKET.fullmatch(bucket):
        raise ValueError("bucket must be a hex HMAC from bucket_key()")
    if limit < 0:
        raise ValueError("limit must not be negative")


def _check_time(now: datetime, window: timedelta) -> None:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime, not a naive one")
    if window < _SECOND or window % _SECOND:
        raise ValueError("window must be a positive whole number of seconds")
