"""Time as a parameter: services take ``now`` from their caller and check it is usable.

The edges (the app factory, the CLI, the job runner's leases) read the real clock with
:func:`utc_now` and pass the result down; nothing below them reads the clock itself.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, aware and in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` carries a time zone (naive times are ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
