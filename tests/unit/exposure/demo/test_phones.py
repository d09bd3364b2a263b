"""The demo's phones, matched with the SDK, find exactly what the plan's ground truth says.

No server here: the positive phones' keys are handed to the others as an export would hand
them, so a disagreement points at the simulation, the phones or the SDK, not at HTTP.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from exposure.client import (
    Device,
    DiagnosisKey,
    ReportType,
    SightingIndex,
    daily_summaries,
    exposure_windows,
)
from exposure.client.risk import ExposureWindow, RiskModel
from exposure.demo.phones import PhoneMatcher, SharedDerivation, build_phones
from exposure.demo.run import demo_risk
from exposure.demo.simulation import expected_exposures, plan_world, scan_schedule
from exposure.tek import days_between_intervals, interval_number

TODAY = date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def published_keys(
    world_onsets: dict[int, date], phones: list[Device], now: datetime
) -> list[DiagnosisKey]:
    keys = []
    for phone, onset in world_onsets.items():
        onset_interval = interval_number(datetime.combine(onset, datetime.min.time(), tzinfo=UTC))
        for key in phones[phone].keys_for_upload(now):
            keys.append(
                DiagnosisKey(
                    key.key_data,
                    key.rolling_start_interval_number,
                    key.rolling_period,
                    ReportType.CONFIRMED_TEST,
                    days_between_intervals(onset_interval, key.rolling_start_interval_number),
                )
            )
    return keys


def notified(model: RiskModel, windows: list[ExposureWindow], threshold: float) -> bool:
    return any(day.summary.score_sum >= threshold for day in daily_summaries(windows, model))


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**16),
    phones=st.integers(min_value=2, max_value=30),
    days=st.integers(min_value=1, max_value=6),
)
def test_phones_find_what_the_ground_truth_says(seed: int, phones: int, days: int) -> None:
    model, rule = demo_risk()
    world = plan_world(phones=phones, days=days, today=TODAY, seed=seed, positive_share=0.2)
    schedule = scan_schedule(world)
    truth = expected_exposures(world, schedule, rule)
    devices = build_phones(phones, schedule, seed=seed)
    keys = published_keys(dict(world.onsets), devices, NOW)
    shared = SharedDerivation()

    found_windows: dict[int, int] = {}
    found_notified: set[int] = set()
    for number, device in enumerate(devices):
        index = SightingIndex(device.sightings.sightings)
        matched = [keys[position] for position in PhoneMatcher(index, shared).match(keys)]
        windows = exposure_windows(matched, index, model)
        if windows:
            found_windows[number] = len(windows)
        if notified(model, windows, rule.notify_at):
            found_notified.add(number)

    assert found_windows == dict(truth.windows)
    assert found_notified == truth.notified
    assert len(shared) == 1  # one derivation for every phone


def test_each_phone_hears_at_the_planned_attenuation() -> None:
    world = plan_world(phones=6, days=2, today=TODAY, seed=3)
    schedule = scan_schedule(world)
    devices = build_phones(6, schedule, seed=3)
    for phone, scans in schedule.items():
        recorded = {(s.time, len(s.rssi)) for s in devices[phone].sightings.sightings}
        planned = {(moment, 1) for moment, readings in scans.items() for _ in readings}
        assert recorded == planned
        readings = sorted(
            -8 - reading.attenuation_db for scan in scans.values() for reading in scan
        )
        assert sorted(s.rssi[0] for s in devices[phone].sightings.sightings) == readings
