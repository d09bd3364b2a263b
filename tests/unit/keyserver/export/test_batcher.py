"""The batcher: contiguous, aligned windows, closed only once old enough, per active config."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exposure.db import make_session_factory, unit_of_work
from exposure.tek import truncate
from keyserver.export.batcher import (
    MAX_WINDOWS_PER_RUN,
    STATUS_OPEN,
    batch_windows,
    closing_time,
    create_batches,
)
from keyserver.export.configs import create_export_config
from keyserver.models import ExportBatch, ExportConfig
from tests.unit.keyserver.export.support import HOUR, T0
from tests.unit.keyserver.export.support import settings as keyserver_settings

DAY = timedelta(days=1)
#: Every period that divides a day, from a minute up (seconds work the same way, slower).
PERIODS = [timedelta(seconds=s) for s in range(60, 86_401, 60) if 86_400 % s == 0]
SETTINGS = keyserver_settings()


def _config(
    session: Session,
    *,
    root: str = "vn",
    period: timedelta = timedelta(hours=4),
    valid_from: datetime = T0,
    valid_until: datetime | None = None,
) -> ExportConfig:
    return create_export_config(
        session,
        filename_root=root,
        period=period,
        output_region="VN",
        valid_from=valid_from,
        valid_until=valid_until,
        now=valid_from,
    )


def _windows(session: Session, config: ExportConfig) -> list[tuple[datetime, datetime]]:
    rows = session.execute(
        select(ExportBatch.start_at, ExportBatch.end_at)
        .where(ExportBatch.config_id == config.id)
        .order_by(ExportBatch.start_at)
    ).all()
    return [(row.start_at, row.end_at) for row in rows]


def _assert_tiling(windows: list[tuple[datetime, datetime]], period: timedelta) -> None:
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start == end, "gap or overlap between consecutive windows"
    for start, end in windows:
        assert end - start == period
        assert truncate(start, period) == start


# ---- the pure window walk ------------------------------------------------------------------


@given(
    period=st.sampled_from(PERIODS),
    valid_from_offset=st.integers(min_value=0, max_value=3 * 86_400),
    steps=st.lists(st.integers(min_value=0, max_value=20 * 3600), min_size=1, max_size=30),
)
def test_simulated_runs_tile_time_without_gap_or_overlap(
    period: timedelta, valid_from_offset: int, steps: list[int]
) -> None:
    valid_from = T0 + timedelta(seconds=valid_from_offset)
    now = valid_from
    windows: list[tuple[datetime, datetime]] = []
    for step in steps:
        now += timedelta(seconds=step)
        closed_by = closing_time(now, SETTINGS)
        new = batch_windows(
            period=period,
            latest_end=windows[-1][1] if windows else None,
            valid_from=valid_from,
            valid_until=None,
            earliest_start=now - SETTINGS.export_retention,
            closed_by=closed_by,
        )
        for _start, end in new:
            assert end <= closed_by <= now - SETTINGS.export_min_window_age
        windows.extend(new)
        if len(new) < MAX_WINDOWS_PER_RUN:
            # Caught up: asking again at the same instant finds no closed window left.
            again = batch_windows(
                period=period,
                latest_end=windows[-1][1] if windows else None,
                valid_from=valid_from,
                valid_until=None,
                earliest_start=now - SETTINGS.export_retention,
                closed_by=closed_by,
            )
            assert again == []
    _assert_tiling(windows, period)
    if windows:
        first_start = windows[0][0]
        assert first_start <= valid_from < first_start + period


def test_first_window_starts_at_the_boundary_at_or_before_valid_from() -> None:
    # At or before: keys carry created_at truncated to the hour, so a key published just
    # after the config was created may be stamped before valid_from and must be exported.
    common = {
        "period": timedelta(hours=4),
        "latest_end": None,
        "valid_until": None,
        "earliest_start": T0 - DAY,
        "closed_by": T0 + DAY,
    }
    on_boundary = batch_windows(valid_from=T0 + 8 * HOUR, **common)  # type: ignore[arg-type]
    assert on_boundary[0] == (T0 + 8 * HOUR, T0 + 12 * HOUR)
    after = batch_windows(valid_from=T0 + 8 * HOUR + timedelta(seconds=1), **common)  # type: ignore[arg-type]
    assert after[0] == (T0 + 8 * HOUR, T0 + 12 * HOUR)
    assert after[-1][1] == T0 + DAY


def test_old_configs_start_within_the_retention() -> None:
    windows = batch_windows(
        period=timedelta(hours=6),
        latest_end=None,
        valid_from=T0 - timedelta(days=365),
        valid_until=None,
        earliest_start=T0 - timedelta(days=14) + timedelta(hours=1),
        closed_by=T0,
    )
    assert windows[0][0] == T0 - timedelta(days=14)
    assert len(windows) == 14 * 4


def test_windows_stop_at_valid_until_but_the_last_one_is_whole() -> None:
    windows = batch_windows(
        period=timedelta(hours=4),
        latest_end=None,
        valid_from=T0,
        valid_until=T0 + 9 * HOUR,
        earliest_start=T0,
        closed_by=T0 + DAY,
    )
    assert windows == [
        (T0, T0 + 4 * HOUR),
        (T0 + 4 * HOUR, T0 + 8 * HOUR),
        (T0 + 8 * HOUR, T0 + 12 * HOUR),
    ]


def test_a_latest_end_off_the_grid_is_continued_without_gap() -> None:
    windows = batch_windows(
        period=timedelta(hours=4),
        latest_end=T0 + 5 * HOUR,
        valid_from=T0,
        valid_until=None,
        earliest_start=T0,
        closed_by=T0 + 12 * HOUR,
    )
    assert windows == [(T0 + 5 * HOUR, T0 + 8 * HOUR), (T0 + 8 * HOUR, T0 + 12 * HOUR)]


# ---- against the reference's batcher ----------------------------------------------------------
#
# Google's makeBatchRanges (google-keyserver.md §4.7), restated to compare outcomes: with no
# batch yet it makes only the most recent closed window; after one, it walks back from
# ``effective`` (now minus the minimum window age) on the period grid to the latest end,
# keeping windows that end by the hour-truncated ``effective``. We keep our walk on purpose
# (docs/operations.md, "Export files"); these tests pin down how the two differ.


def _reference_windows(
    period: timedelta, latest_end: datetime | None, effective: datetime
) -> list[tuple[datetime, datetime]]:
    publish_end = truncate(effective, SETTINGS.truncate_window)
    if latest_end is None:
        end = truncate(publish_end, period)
        return [(end - period, end)]
    windows: list[tuple[datetime, datetime]] = []
    end = truncate(effective, period)
    while end > latest_end:
        if end <= publish_end:
            windows.insert(0, (end - period, end))
        end -= period
    return windows


def test_after_an_off_grid_batch_the_next_window_starts_at_its_end_not_overlapping_it() -> None:
    # A batch ending at 10:30 (a period edited by hand from 30 min to 4 h): the reference's
    # next window starts at 08:00 and exports 08:00-10:30 a second time; ours starts at 10:30.
    period, latest_end, now = timedelta(hours=4), T0 + 10 * HOUR + HOUR / 2, T0 + 14 * HOUR
    effective = now - SETTINGS.export_min_window_age

    reference = _reference_windows(period, latest_end, effective)
    ours = batch_windows(
        period=period,
        latest_end=latest_end,
        valid_from=T0,
        valid_until=None,
        earliest_start=now - SETTINGS.export_retention,
        closed_by=closing_time(now, SETTINGS),
    )

    assert reference == [(T0 + 8 * HOUR, T0 + 12 * HOUR)]
    assert ours == [(latest_end, T0 + 12 * HOUR)]


def test_a_new_config_backfills_from_its_start_not_only_the_last_window() -> None:
    # Created at 01:10 with a 1 h period, first batched at 06:00: the reference exports
    # [03:00, 04:00) only, and keys published from 01:00 to 03:00 never leave in this config.
    period, valid_from, now = HOUR, T0 + HOUR + timedelta(minutes=10), T0 + 6 * HOUR
    effective = now - SETTINGS.export_min_window_age

    reference = _reference_windows(period, None, effective)
    ours = batch_windows(
        period=period,
        latest_end=None,
        valid_from=valid_from,
        valid_until=None,
        earliest_start=now - SETTINGS.export_retention,
        closed_by=closing_time(now, SETTINGS),
    )

    assert reference == [(T0 + 3 * HOUR, T0 + 4 * HOUR)]
    assert ours == [(T0 + hour * HOUR, T0 + (hour + 1) * HOUR) for hour in range(1, 4)]


@given(
    period=st.sampled_from(PERIODS),
    valid_from_offset=st.integers(min_value=0, max_value=3 * 86_400),
    off_grid=st.integers(min_value=0, max_value=86_399),
    later=st.integers(min_value=0, max_value=3 * 86_400),
)
def test_everything_the_reference_would_export_next_is_exported_here_exactly_once(
    period: timedelta, valid_from_offset: int, off_grid: int, later: int
) -> None:
    valid_from = T0 + timedelta(seconds=valid_from_offset)
    now = valid_from + SETTINGS.export_min_window_age + timedelta(seconds=later)
    effective = now - SETTINGS.export_min_window_age
    # Any latest end, on the grid or not, that the config could have reached by now.
    latest_end = min(truncate(valid_from, period) + timedelta(seconds=off_grid), effective)
    for previous in (None, latest_end):
        reference = _reference_windows(period, previous, effective)
        ours = batch_windows(
            period=period,
            latest_end=previous,
            valid_from=valid_from,
            valid_until=None,
            earliest_start=now - SETTINGS.export_retention,
            closed_by=closing_time(now, SETTINGS),
            limit=10**6,  # one run's cap is not the point here
        )
        # Ours tile time from where this config (or its last batch) starts: never a key
        # twice, never a gap. So they cover one span, which must hold what the reference
        # would export from that start on.
        start = truncate(valid_from, period) if previous is None else previous
        for (_, end), (next_start, _) in itertools.pairwise(ours):
            assert next_start == end
        wanted = [(max(s, start), e) for s, e in reference if e > start]
        if wanted:
            assert ours
            assert ours[0][0] == start
            assert all(w_end <= ours[-1][1] for _, w_end in wanted)


def test_one_run_creates_at_most_the_limit() -> None:
    windows = batch_windows(
        period=timedelta(minutes=1),
        latest_end=None,
        valid_from=T0,
        valid_until=None,
        earliest_start=T0,
        closed_by=T0 + 10 * DAY,
        limit=50,
    )
    assert len(windows) == 50


# ---- create_batches on the database ----------------------------------------------------------


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    period=st.sampled_from([p for p in PERIODS if p >= timedelta(minutes=15)]),
    steps=st.lists(st.integers(min_value=0, max_value=12 * 3600), min_size=1, max_size=12),
)
def test_batches_tile_time_across_runs_with_a_moving_clock(
    db_session: Session, period: timedelta, steps: list[int]
) -> None:
    savepoint = db_session.begin_nested()
    try:
        valid_from = T0 + timedelta(minutes=7)
        config = _config(db_session, period=period, valid_from=valid_from)
        now = valid_from
        created: list[tuple[datetime, datetime]] = []
        for step in steps:
            now += timedelta(seconds=step)
            batches = create_batches(db_session, settings=SETTINGS, now=now)
            assert all(batch.status == STATUS_OPEN for batch in batches)
            assert all(batch.end_at <= now - SETTINGS.export_min_window_age for batch in batches)
            created.extend((batch.start_at, batch.end_at) for batch in batches)
        stored = _windows(db_session, config)
        assert stored == created
        _assert_tiling(stored, period)
        if stored:
            assert stored[0][0] == truncate(valid_from, period)
            assert stored[-1][1] + period > closing_time(now, SETTINGS)
    finally:
        savepoint.rollback()


def test_nothing_is_closed_before_the_minimum_window_age(db_session: Session) -> None:
    config = _config(db_session, period=timedelta(hours=1))
    # 02:59: the window [00:00, 01:00) is not yet two hours old.
    early = T0 + 3 * HOUR - timedelta(minutes=1)
    assert create_batches(db_session, settings=SETTINGS, now=early) == []
    batches = create_batches(db_session, settings=SETTINGS, now=T0 + 3 * HOUR)
    assert [(b.start_at, b.end_at) for b in batches] == [(T0, T0 + HOUR)]
    # The same clock again creates nothing new.
    assert create_batches(db_session, settings=SETTINGS, now=T0 + 3 * HOUR) == []
    assert len(_windows(db_session, config)) == 1


def test_throwaway_demo_timing_closes_a_window_seconds_after_it_ends() -> None:
    demo = keyserver_settings(throwaway_demo_timing=True)
    ended = T0 + timedelta(seconds=10)

    assert closing_time(ended + timedelta(seconds=1, milliseconds=999), demo) < ended
    assert closing_time(ended + timedelta(seconds=2), demo) == ended
    # The same moment on a production server: that window is hours from closing.
    assert closing_time(ended + timedelta(seconds=2), SETTINGS) == T0 - 2 * HOUR


def test_configs_are_inactive_before_valid_from_and_after_valid_until(db_session: Session) -> None:
    future = _config(db_session, root="future", valid_from=T0 + 10 * DAY)
    ended = _config(db_session, root="ended", valid_from=T0, valid_until=T0 + DAY)
    now = T0 + 3 * DAY
    create_batches(db_session, settings=SETTINGS, now=now)
    assert _windows(db_session, future) == []
    ended_windows = _windows(db_session, ended)
    assert ended_windows[0] == (T0, T0 + 4 * HOUR)
    assert ended_windows[-1] == (T0 + 20 * HOUR, T0 + DAY)
    create_batches(db_session, settings=SETTINGS, now=now + 10 * DAY)
    assert _windows(db_session, ended) == ended_windows
    assert _windows(db_session, future)[0][0] == T0 + 10 * DAY


def test_each_config_has_its_own_windows(db_session: Session) -> None:
    four = _config(db_session, root="four", period=timedelta(hours=4))
    daily = _config(db_session, root="daily", period=DAY)
    create_batches(db_session, settings=SETTINGS, now=T0 + 2 * DAY + 2 * HOUR)
    assert len(_windows(db_session, four)) == 12
    assert _windows(db_session, daily) == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)]


def test_concurrent_batchers_create_each_window_once(engine: Engine, tmp_path: Path) -> None:
    del tmp_path
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        config_id = _config(session, period=timedelta(minutes=15)).id
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def batcher(offset_minutes: int) -> None:
        try:
            barrier.wait()
            with unit_of_work(factory) as session:
                now = T0 + DAY + timedelta(minutes=offset_minutes)
                results.append(len(create_batches(session, settings=SETTINGS, now=now)))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=batcher, args=(offset,)) for offset in (0, 0, 60, 120)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with unit_of_work(factory) as session:
        config = session.get(ExportConfig, config_id)
        assert config is not None
        windows = _windows(session, config)
    _assert_tiling(windows, timedelta(minutes=15))
    assert windows[0][0] == T0
    assert windows[-1][1] == closing_time(T0 + DAY + timedelta(minutes=120), SETTINGS)
    assert sum(results) == len(windows)


def test_naive_now_is_refused(db_session: Session) -> None:
    with pytest.raises(ValueError, match="aware"):
        create_batches(db_session, settings=SETTINGS, now=datetime(2026, 1, 1))  # noqa: DTZ001
