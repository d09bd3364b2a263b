"""Close export windows: one :class:`~keyserver.models.ExportBatch` per finished window.

A config's windows ``[start, end)`` tile time without gap or overlap:

- The first window starts at the period boundary at or before the config's ``valid_from``
  (boundaries are multiples of the period since the epoch, so with a period dividing 24 h
  they fall on UTC midnight every day). At or before, not after: keys are stored with
  ``created_at`` truncated to the hour, so a key published a minute after a config was
  created can carry an earlier time, and must still be exported. A config older than the export
  retention starts at the boundary at or before ``now - export_retention`` instead: older
  windows would never be listed in ``index.txt``. The reference makes only the most recent
  closed window for a config without batches, so keys published between the config's start
  and that window never leave under it; here the first run backfills them.
- Every later window starts exactly where the config's latest batch ends, and ends at the
  next period boundary. The reference walks back from ``now`` on the period grid instead
  (google-keyserver.md §4.7): after a batch that ended off the grid (a period edited by
  hand), its next window starts at the boundary before that end and exports the overlap a
  second time; here that window is shorter and nothing is exported twice. A batcher that
  did not run for a day creates every missed window on its next run.
- A window is closed once ``end <= truncate(now - export_min_window_age, truncate_window)``:
  keys are stored with ``created_at`` truncated to the hour (or later, for embargoed keys),
  so a window ends up with all its keys only once the last hour in it is over, and the
  minimum age leaves publishes in flight time to commit. A throwaway demo server
  (``throwaway_demo_timing``) truncates to the second and waits 2 seconds instead: the same
  rule at a scale a demo can wait for (docs/privacy.md says why production never does).
- Windows are created while ``start < valid_until``: the window that straddles the end of a
  config is still exported whole.

Concurrent batchers are safe: each window has one possible start (the grid is fixed by the
config), and ``(config_id, start_at)`` is unique, so a second batcher inserting the same
window does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from exposure.tek import truncate
from keyserver.models import STATUS_COMPLETE, STATUS_OPEN, STATUS_PENDING, ExportBatch
from keyserver.settings import KeyserverSettings
from keyserver.store import export_configs as export_config_store
from keyserver.store import exports as exports_store

__all__ = [
    "MAX_WINDOWS_PER_RUN",
    "STATUS_COMPLETE",
    "STATUS_OPEN",
    "STATUS_PENDING",
    "batch_windows",
    "closing_time",
    "create_batches",
]

_logger = logging.getLogger(__name__)

#: Windows one run creates per config at most; a later run continues where it stopped. A
#: 14-day backfill at a 15-minute period is 1,344 windows.
MAX_WINDOWS_PER_RUN = 2_000


def closing_time(now: datetime, settings: KeyserverSettings) -> datetime:
    """Windows ending at or before this instant may be batched at ``now``."""
    return truncate(now - settings.window_close_delay, settings.created_at_window)


def batch_windows(
    *,
    period: timedelta,
    latest_end: datetime | None,
    valid_from: datetime,
    valid_until: datetime | None,
    earliest_start: datetime,
    closed_by: datetime,
    limit: int = MAX_WINDOWS_PER_RUN,
) -> list[tuple[datetime, datetime]]:
    """The windows to create next for one config, oldest first (pure; see the module doc).

    ``latest_end``: where the config's latest batch ends (None: no batch yet).
    ``earliest_start``: a first window never starts before the boundary at or before it.
    ``closed_by``: windows must end at or before it.
    """
    if period <= timedelta(0):
        raise ValueError("period must be positive")
    if latest_end is None:
        start = max(truncate(valid_from, period), truncate(earliest_start, period))
    else:
        start = latest_end
    windows: list[tuple[datetime, datetime]] = []
    while len(windows) < limit:
        if valid_until is not None and start >= valid_until:
            break
        # The next boundary strictly after start; it is start + period except after a
        # latest batch that ended off the grid (a period changed in the database by hand).
        end = truncate(start, period) + period
        if end > closed_by:
            break
        windows.append((start, end))
        start = end
    return windows


def create_batches(
    session: Session, *, settings: KeyserverSettings, now: datetime
) -> list[ExportBatch]:
    """Create a batch for every window that has closed at ``now``, for every config.

    Returns the batches this call created (not those another batcher created first), ordered
    by config and start. The caller owns the transaction.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    closed_by = closing_time(now, settings)
    earliest_start = now - settings.export_retention
    configs = export_config_store.export_configs_valid_from(session, closed_by)
    if not configs:
        return []
    latest_ends = exports_store.latest_batch_ends(session)
    created_ids: list[int] = []
    for config in configs:
        windows = batch_windows(
            period=timedelta(seconds=config.period_seconds),
            latest_end=latest_ends.get(config.id),
            valid_from=config.valid_from,
            valid_until=config.valid_until,
            earliest_start=earliest_start,
            closed_by=closed_by,
        )
        created_ids.extend(exports_store.insert_batches(session, config.id, windows))
        if len(windows) == MAX_WINDOWS_PER_RUN:
            _logger.warning(
                "export config %s: created %d windows; the next run continues",
                config.id,
                len(windows),
            )
    batches = exports_store.batches_by_id(session, created_ids)
    batches.sort(key=lambda batch: (batch.config_id, batch.start_at))
    return batches
