"""Retention metrics: bounded labels only (service and kind come from the registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PURGED_ROWS = Counter(
    "exposure_retention_purged_rows",
    "Rows deleted (or blanked) by retention purges, by service and kind.",
    ["service", "kind"],
)
PURGED_BLOBS = Counter(
    "exposure_retention_purged_blobs",
    "Stored files (export zips) deleted by retention purges.",
    ["service", "kind"],
)
PURGE_FAILURES = Counter(
    "exposure_retention_purge_failures",
    "Purges of one kind that failed (the other kinds still ran).",
    ["service", "kind"],
)
LAST_SUCCESS = Gauge(
    "exposure_retention_last_success_timestamp_seconds",
    "When each kind was last purged successfully (Unix time).",
    ["service", "kind"],
)
OLDEST_ITEM_AGE = Gauge(
    "exposure_retention_oldest_item_age_seconds",
    "Age of the oldest item of each kind still held, by the policy's measure (0: none held).",
    ["service", "kind"],
)
DEADLINE = Gauge(
    "exposure_retention_deadline_seconds",
    "Each kind's configured deadline; alert when the oldest item's age exceeds it.",
    ["service", "kind"],
)
