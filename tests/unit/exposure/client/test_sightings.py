from __future__ import annotations

from datetime import timedelta

import pytest

from exposure.client import Reception, SightingStore
from tests.unit.exposure.client.support import MORNING

RPI_A, RPI_B = bytes(range(16)), bytes(range(1, 17))
AEM = bytes(4)


def test_one_rpi_heard_three_times_in_a_scan_is_one_sighting() -> None:
    store = SightingStore()

    store.record_scan(
        MORNING,
        [Reception(RPI_A, AEM, -60), Reception(RPI_B, AEM, -80), Reception(RPI_A, AEM, -64)],
    )

    first, second = store.sightings
    assert (first.rpi, first.rssi) == (RPI_A, (-60, -64))
    assert (second.rpi, second.rssi) == (RPI_B, (-80,))
    assert first.time == MORNING


def test_a_scan_counts_for_the_time_since_the_previous_scan() -> None:
    store = SightingStore(scan_interval=timedelta(minutes=4), max_scan_gap=timedelta(minutes=10))

    store.record_scan(MORNING, [Reception(RPI_A, AEM, -60)])
    store.record_scan(MORNING + timedelta(minutes=3), [])  # heard nothing, but scanned
    store.record_scan(MORNING + timedelta(minutes=8), [Reception(RPI_A, AEM, -60)])
    store.record_scan(MORNING + timedelta(hours=5), [Reception(RPI_A, AEM, -60)])

    assert [s.seconds_since_last_scan for s in store.sightings] == [240, 300, 600]


def test_scans_are_recorded_in_time_order() -> None:
    store = SightingStore()
    store.record_scan(MORNING, [])

    with pytest.raises(ValueError, match="time order"):
        store.record_scan(MORNING - timedelta(seconds=1), [])


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        SightingStore().record_scan(MORNING.replace(tzinfo=None), [])


def test_forgetting_keeps_scans_from_the_cutoff_on() -> None:
    store = SightingStore()
    for hour in range(3):
        store.record_scan(MORNING + timedelta(hours=hour), [Reception(RPI_A, AEM, -60)])

    store.forget_before(MORNING + timedelta(hours=1))

    assert [s.time for s in store.sightings] == [
        MORNING + timedelta(hours=1),
        MORNING + timedelta(hours=2),
    ]


def test_a_reception_is_an_rpi_and_an_aem() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Reception(bytes(15), AEM, -60)
    with pytest.raises(ValueError, match="16 bytes"):
        Reception(RPI_A, bytes(3), -60)


def test_the_scan_settings_must_make_sense() -> None:
    with pytest.raises(ValueError, match="scan interval"):
        SightingStore(scan_interval=timedelta(minutes=10), max_scan_gap=timedelta(minutes=5))
