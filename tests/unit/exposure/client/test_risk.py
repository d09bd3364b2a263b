from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest

from crypto.gaen import derive_aemk, encrypt_metadata, interval_number
from exposure.client import (
    BluetoothMetadata,
    DailySummary,
    DiagnosisKey,
    ExposureSummaryData,
    ExposureWindow,
    Infectiousness,
    ReportType,
    RiskModel,
    ScanInstance,
    Sighting,
    SightingIndex,
    daily_summaries,
    exposure_windows,
)
from tests.interop import interop_path
from tests.unit.exposure.client.support import MORNING, SCAN, seeded
from tests.unit.exposure.client.test_matching import at_interval, rpi_of

TX_POWER = -10


def scans_of(
    key: DiagnosisKey,
    start: datetime,
    count: int,
    rssi: tuple[int, ...] = (-60,),
    tx_power: int = TX_POWER,
) -> list[Sighting]:
    """``count`` scans five minutes apart, each hearing ``key``'s broadcast of that moment."""
    aemk = derive_aemk(key.key_data)
    metadata = BluetoothMetadata(tx_power_dbm=tx_power).encode()
    heard = []
    for number in range(count):
        moment = start + number * SCAN
        rpi = rpi_of(key, interval_number(moment) - key.rolling_start_interval_number)
        aem = encrypt_metadata(aemk, rpi, metadata)
        heard.append(Sighting(rpi, aem, moment, rssi, 300))
    return heard


def key_of_day(
    day: datetime,
    seed: int = 1,
    report_type: ReportType = ReportType.CONFIRMED_TEST,
    onset: int | None = 0,
) -> DiagnosisKey:
    midnight = interval_number(day.replace(hour=0, minute=0))
    return DiagnosisKey(seeded(seed)(16), midnight, 144, report_type, onset)


def windows_for(
    keys: list[DiagnosisKey], heard: list[Sighting], model: RiskModel
) -> list[ExposureWindow]:
    return exposure_windows(keys, SightingIndex(heard), model)


def test_attenuation_is_the_decrypted_transmit_power_minus_the_rssi() -> None:
    key = key_of_day(MORNING)
    heard = scans_of(key, MORNING, 1, rssi=(-61, -55, -70), tx_power=-5)

    [window] = windows_for([key], heard, RiskModel())

    # Attenuations 56, 50 and 65: typical is their mean, minimum their least.
    assert window.scan_instances == (ScanInstance(57, 50, 300),)


@pytest.mark.interop
def test_the_test_vector_metadata_carries_eight_dbm() -> None:
    vectors = json.loads(interop_path("gaen_crypto_vectors.json").read_text())
    entry = vectors["intervals"][30]
    key = DiagnosisKey(bytes.fromhex(vectors["tek_hex"]), vectors["rolling_start_interval_number"])
    heard = Sighting(
        bytes.fromhex(entry["rpi_hex"]),
        bytes.fromhex(entry["aem_hex"]),
        at_interval(entry["enin"]),
        (-42,),
        300,
    )

    [window] = windows_for([key], [heard], RiskModel())

    assert window.scan_instances[0].typical_attenuation_db == 8 - (-42)


def test_windows_last_at_most_thirty_minutes() -> None:
    key = key_of_day(MORNING)

    windows = windows_for([key], scans_of(key, MORNING, 13), RiskModel())

    assert [w.started_at for w in windows] == [
        MORNING,
        MORNING + timedelta(minutes=30),
        MORNING + timedelta(minutes=60),
    ]
    assert [len(w.scan_instances) for w in windows] == [6, 6, 1]


def test_a_key_spanning_midnight_gives_windows_on_both_days() -> None:
    evening = MORNING.replace(hour=23, minute=45)
    key = DiagnosisKey(seeded(2)(16), interval_number(MORNING.replace(hour=18)))

    windows = windows_for([key], scans_of(key, evening, 6), RiskModel())

    assert [(w.day, len(w.scan_instances)) for w in windows] == [
        (MORNING.date(), 3),
        (MORNING.date() + timedelta(days=1), 3),
    ]


def test_attenuation_buckets_include_their_upper_threshold() -> None:
    model = RiskModel(attenuation_thresholds_db=(30, 50, 60), attenuation_weights=(2, 1, 0.5, 0))

    weights = [model.attenuation_weight(db) for db in (0, 30, 31, 50, 51, 60, 61, 255)]

    assert weights == [2, 2, 1, 1, 0.5, 0.5, 0, 0]


def test_the_score_weighs_duration_by_attenuation_report_type_and_infectiousness() -> None:
    model = RiskModel(
        attenuation_thresholds_db=(40, 55, 70),
        attenuation_weights=(2.0, 1.0, 0.5, 0.0),
        infectiousness_for_days_since_onset={0: Infectiousness.HIGH},
        infectiousness_weights={Infectiousness.STANDARD: 1.0, Infectiousness.HIGH: 1.5},
        report_type_weights={ReportType.CONFIRMED_TEST: 0.8},
    )
    key = key_of_day(MORNING, onset=0)
    # Attenuations 30 (immediate) then 60 (medium): 300 s x 2.0 + 300 s x 0.5.
    heard = scans_of(key, MORNING, 1, rssi=(-40,)) + scans_of(key, MORNING + SCAN, 1, rssi=(-70,))

    [window] = windows_for([key], heard, model)

    assert window.infectiousness is Infectiousness.HIGH
    assert window.weighted_duration(model) == 750
    assert window.score(model) == pytest.approx(750 * 0.8 * 1.5)


def test_revoked_keys_and_keys_of_no_infectiousness_give_no_window() -> None:
    model = RiskModel(infectiousness_for_days_since_onset={0: Infectiousness.STANDARD})
    revoked = key_of_day(MORNING, 1, ReportType.REVOKED)
    long_before_onset = key_of_day(MORNING, 2, onset=-9)
    counted = key_of_day(MORNING, 3, onset=0)
    heard = [
        *scans_of(revoked, MORNING, 2),
        *scans_of(long_before_onset, MORNING, 2),
        *scans_of(counted, MORNING, 2),
    ]

    windows = windows_for(
        [revoked, long_before_onset, counted], sorted(heard, key=lambda s: s.time), model
    )

    assert len(windows) == 1


def test_missing_metadata_takes_the_model_s_defaults() -> None:
    model = RiskModel(
        report_type_when_missing=ReportType.SELF_REPORT,
        infectiousness_when_onset_missing=Infectiousness.HIGH,
    )
    key = key_of_day(MORNING, report_type=ReportType.UNKNOWN, onset=None)

    [window] = windows_for([key], scans_of(key, MORNING, 1), model)

    assert window.report_type is ReportType.SELF_REPORT
    assert window.infectiousness is Infectiousness.HIGH


def test_daily_summaries_sum_and_max_the_windows_that_reach_the_minimum() -> None:
    model = RiskModel(
        attenuation_weights=(1.0, 1.0, 1.0, 1.0),
        report_type_weights={ReportType.CONFIRMED_TEST: 1.0, ReportType.SELF_REPORT: 0.5},
        minimum_window_score=400,
    )
    confirmed = key_of_day(MORNING, 1)
    self_reported = key_of_day(MORNING, 2, ReportType.SELF_REPORT)
    tomorrow = key_of_day(MORNING + timedelta(days=1), 3)
    heard = [
        *scans_of(confirmed, MORNING, 8),  # windows of 6 and 2 scans: 1800 and 600
        *scans_of(self_reported, MORNING + timedelta(hours=2), 2),  # 600 x 0.5 = 300: too low
        *scans_of(self_reported, MORNING + timedelta(hours=3), 4),  # 1200 x 0.5 = 600
        *scans_of(tomorrow, MORNING + timedelta(days=1), 1),  # 300: too low
    ]

    summaries = daily_summaries(
        windows_for([confirmed, self_reported, tomorrow], heard, model), model
    )

    assert summaries == [
        DailySummary(
            day=MORNING.date(),
            summary=ExposureSummaryData(1800, 3000, 3600),
            by_report_type={
                ReportType.CONFIRMED_TEST: ExposureSummaryData(1800, 2400, 2400),
                ReportType.SELF_REPORT: ExposureSummaryData(600, 600, 1200),
            },
        )
    ]


def test_days_before_the_exposure_threshold_are_left_out() -> None:
    model = RiskModel(days_since_exposure_threshold=3)
    old, recent = key_of_day(MORNING, 1), key_of_day(MORNING + timedelta(days=2), 2)
    heard = [*scans_of(old, MORNING, 1), *scans_of(recent, MORNING + timedelta(days=2), 1)]
    windows = windows_for([old, recent], heard, model)
    today = MORNING.date() + timedelta(days=4)

    assert [s.day for s in daily_summaries(windows, model, today=today)] == [
        MORNING.date() + timedelta(days=2)
    ]
    assert len(daily_summaries(windows, model)) == 2


def test_a_key_nobody_heard_gives_no_window() -> None:
    assert windows_for([key_of_day(MORNING)], [], RiskModel()) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"attenuation_thresholds_db": (50, 40, 60)},
        {"attenuation_thresholds_db": (30, 50, 256)},
        {"attenuation_weights": (1.0, 1.0, 1.0, 2.6)},
        {"report_type_weights": {ReportType.CONFIRMED_TEST: -0.1}},
        {"infectiousness_for_days_since_onset": {15: Infectiousness.HIGH}},
        {"report_type_when_missing": ReportType.REVOKED},
        {"minimum_window_score": -1},
        {"days_since_exposure_threshold": -1},
    ],
)
def test_a_model_refuses_what_gaen_would(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        RiskModel(**settings)  # type: ignore[arg-type]


def test_a_model_cannot_change_once_made() -> None:
    weights = {ReportType.CONFIRMED_TEST: 1.0}
    model = RiskModel(report_type_weights=weights)

    weights[ReportType.CONFIRMED_TEST] = 2.0

    assert model.report_type_weights[ReportType.CONFIRMED_TEST] == 1.0
    with pytest.raises(TypeError):
        model.report_type_weights[ReportType.SELF_REPORT] = 1.0  # type: ignore[index]


def test_window_days_are_utc_days() -> None:
    key = key_of_day(MORNING)

    [window] = windows_for([key], scans_of(key, MORNING, 1), RiskModel())

    assert window.day == date(2026, 11, 24)
