"""Time as a parameter: services take ``now`` from their caller and check it is usable."""

from __future__ import annotations

from datetime import UTC, datetime


def require_aware(value: datetime, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` carries a time zone (naive times are ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def utc_now() -> datetime:
    """The real clock, aware UTC: the default ``now`` of every edge (requests, jobs, CLI)."""
    return datetime.now(UTC)
