"""The demo's plan and ground truth: pure, seeded, and right on cases worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exposure.demo.simulation import (
    SCAN_INTERVAL,
    Encounter,
    ExposureRule,
    Heard,
    World,
    expected_exposures,
    plan_world,
    scan_schedule,
)

TODAY = date(2026, 12, 7)
RULE = ExposureRule(
    thresholds_db=(55, 63, 73),
    bucket_weights=(1.5, 1.0, 0.5, 0.0),
    infectiousness_weight={day: 1.0 for day in range(-10, 11)},
    report_weight=1.0,
    notify_at=900.0,
)

worlds = st.builds(
    plan_world,
    phones=st.integers(min_value=2, max_value=40),
    days=st.integers(min_value=1, max_value=14),
    today=st.just(TODAY),
    seed=st.integers(min_value=0, max_value=2**32),
    positive_share=st.floats(min_value=0.0, max_value=0.5),
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def world_of(*encounters: Encounter, positives: dict[int, date] | None = None) -> World:
    return World(
        phones=3,
        first_day=date(2026, 12, 1),
        day_count=6,
        encounters=encounters,
        onsets=positives if positives is not None else {0: date(2026, 12, 5)},
    )


def test_the_same_seed_plans_the_same_world() -> None:
    first = plan_world(phones=50, days=5, today=TODAY, seed=7)
    assert first == plan_world(phones=50, days=5, today=TODAY, seed=7)
    assert first != plan_world(phones=50, days=5, today=TODAY, seed=8)


@pytest.mark.parametrize(
    ("phones", "days", "share"), [(1, 3, 0.1), (10, 0, 0.1), (10, 15, 0.1), (10, 3, 1.5)]
)
def test_impossible_worlds_are_refused(phones: int, days: int, share: float) -> None:
    with pytest.raises(ValueError, match=r"phones|days|share"):
        plan_world(phones=phones, days=days, today=TODAY, seed=1, positive_share=share)


@settings(max_examples=40, deadline=None)
@given(world=worlds)
def test_a_plan_stays_within_its_days_and_people(world: World) -> None:
    first = datetime.combine(world.first_day, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC)
    for encounter in world.encounters:
        assert encounter.first != encounter.second
        assert min(encounter.first, encounter.second) >= 0
        assert max(encounter.first, encounter.second) < world.phones
        assert first <= encounter.start
        assert encounter.scan_times()[-1] < end
        assert all(30 <= db <= 100 for db in encounter.attenuations)
    assert len(set(world.positives)) == len(world.positives)
    for onset in world.onsets.values():
        assert TODAY - timedelta(days=4) <= onset < TODAY


@settings(max_examples=40, deadline=None)
@given(world=worlds)
def test_phones_hear_each_other_both_ways_after_a_scan_of_nobody(world: World) -> None:
    schedule = scan_schedule(world)
    for phone, scans in schedule.items():
        moments = list(scans)
        assert moments == sorted(moments)
        for moment, readings in scans.items():
            if readings:
                # The scan before every scan that heard someone is in the schedule.
                assert moment - SCAN_INTERVAL in scans
            for reading in readings:
                back = schedule[reading.sender][moment]
                assert Heard(phone, reading.attenuation_db) in back


@settings(max_examples=40, deadline=None)
@given(world=worlds)
def test_only_phones_that_heard_a_published_phone_are_exposed(world: World) -> None:
    schedule = scan_schedule(world)
    truth = expected_exposures(world, schedule, RULE)
    heard_a_positive = {
        phone
        for phone, scans in schedule.items()
        for readings in scans.values()
        if any(reading.sender in world.onsets for reading in readings)
    }
    assert truth.met_a_positive == heard_a_positive
    assert set(truth.windows) <= heard_a_positive
    assert truth.notified <= set(truth.windows)
    nobody = expected_exposures(world, schedule, RULE, published=[])
    assert (nobody.window_count, nobody.notified) == (0, frozenset())


@settings(max_examples=30, deadline=None)
@given(world=worlds, data=st.data())
def test_publishing_more_keys_never_finds_less(world: World, data: st.DataObject) -> None:
    schedule = scan_schedule(world)
    some = (
        data.draw(st.lists(st.sampled_from(world.positives), unique=True))
        if world.positives
        else []
    )
    fewer = expected_exposures(world, schedule, RULE, published=some)
    more = expected_exposures(world, schedule, RULE)
    assert fewer.notified <= more.notified
    assert all(count <= more.windows.get(phone, 0) for phone, count in fewer.windows.items())


def test_a_40_minute_meeting_is_two_windows_and_a_notification() -> None:
    # Nine scans at 50 dB (immediate: 1.5): windows of six and three scans, every scan
    # five minutes since the previous one: 9 x 300 s x 1.5 = 4,050 weighted seconds.
    world = world_of(Encounter(0, 1, at(3, 10), (50,) * 9))

    truth = expected_exposures(world, scan_schedule(world), RULE)

    assert truth.windows == {1: 2}
    assert truth.notified == {1}
    assert truth.met_a_positive == {1}


def test_a_short_far_or_unweighted_contact_does_not_notify() -> None:
    world = world_of(
        Encounter(0, 1, at(3, 10), (60, 60)),  # near (1.0): 600 s < 900
        Encounter(0, 2, at(3, 12), (80,) * 12),  # other (0.0): an hour that counts nothing
    )

    truth = expected_exposures(world, scan_schedule(world), RULE)

    assert truth.windows == {1: 1, 2: 2}
    assert truth.notified == frozenset()


def test_keys_are_days_and_days_outside_the_infectious_range_give_no_window() -> None:
    world = world_of(
        Encounter(0, 1, at(3, 23, 50), (50,) * 4),  # 23:50 to 00:05: two keys, two windows
        Encounter(0, 2, at(1, 10), (50,) * 4),  # day -4 from onset
        positives={0: date(2026, 12, 5)},
    )
    narrow = ExposureRule(
        thresholds_db=RULE.thresholds_db,
        bucket_weights=RULE.bucket_weights,
        infectiousness_weight={-2: 1.0, -1: 1.0, 0: 1.0},
        report_weight=1.0,
        notify_at=900.0,
    )

    assert expected_exposures(world, scan_schedule(world), RULE).windows == {1: 2, 2: 1}
    # Days -2 and -1 are infectious in the narrow rule; day -4 is not.
    assert expected_exposures(world, scan_schedule(world), narrow).windows == {1: 2}
