from __future__ import annotations

from datetime import timedelta

import pytest

from crypto.gaen import (
    decrypt_metadata,
    derive_aemk,
    interval_number,
    rolling_proximity_identifiers,
)
from exposure.client import (
    BluetoothMetadata,
    Device,
    TemporaryExposureKey,
    advertisement_for,
)
from tests.unit.exposure.client.support import MORNING, seeded

MIDNIGHT = MORNING.replace(hour=0)
DAY = timedelta(days=1)


def test_a_key_lasts_from_midnight_to_midnight() -> None:
    phone = Device(random_bytes=seeded(1))

    key = phone.key_at(MORNING)

    assert key.rolling_start_interval_number == interval_number(MIDNIGHT)
    assert key.rolling_period == 144
    assert phone.key_at(MIDNIGHT + DAY - timedelta(seconds=1)) is key
    tomorrow = phone.key_at(MIDNIGHT + DAY)
    assert tomorrow.rolling_start_interval_number == key.end_interval
    assert tomorrow.key_data != key.key_data


def test_the_broadcast_is_the_key_schedule_of_its_interval() -> None:
    phone = Device(random_bytes=seeded(2), metadata=BluetoothMetadata(tx_power_dbm=-12))
    key = phone.key_at(MORNING)

    advertisement = phone.advertisement(MORNING)

    offset = interval_number(MORNING) - key.rolling_start_interval_number
    assert (
        advertisement.rpi
        == rolling_proximity_identifiers(key.key_data, key.rolling_start_interval_number)[offset]
    )
    metadata = decrypt_metadata(derive_aemk(key.key_data), advertisement.rpi, advertisement.aem)
    assert BluetoothMetadata.decode(metadata) == BluetoothMetadata(tx_power_dbm=-12)
    assert advertisement == advertisement_for(key, interval_number(MORNING), phone.metadata)


def test_every_broadcast_of_a_day_is_its_interval_s_even_when_the_power_changes() -> None:
    phone = Device(random_bytes=seeded(3))
    moments = [MORNING + timedelta(minutes=7 * n) for n in range(40)]
    for number, moment in enumerate(moments):
        if number == 20:  # the app announces another transmit power from now on
            phone.metadata = BluetoothMetadata(tx_power_dbm=-20)
        key = phone.key_at(moment)
        assert phone.advertisement(moment) == advertisement_for(
            key, interval_number(moment), phone.metadata
        )


def test_metadata_is_version_power_and_two_reserved_bytes() -> None:
    assert BluetoothMetadata(tx_power_dbm=8).encode() == bytes.fromhex("40080000")
    assert BluetoothMetadata(tx_power_dbm=-20).encode() == bytes.fromhex("40ec0000")
    assert BluetoothMetadata.decode(bytes.fromhex("40ec0000")).tx_power_dbm == -20
    with pytest.raises(ValueError, match="signed byte"):
        BluetoothMetadata(tx_power_dbm=128)
    with pytest.raises(ValueError, match="4 bytes"):
        BluetoothMetadata.decode(b"\x40\x08")


def test_time_never_goes_back() -> None:
    phone = Device(random_bytes=seeded(3))
    phone.key_at(MORNING)

    with pytest.raises(ValueError, match="backwards"):
        phone.key_at(MORNING - DAY)


def test_keys_for_upload_are_the_ended_keys_of_fourteen_days() -> None:
    phone = Device(random_bytes=seeded(4))
    for day in range(20):
        phone.key_at(MORNING + day * DAY)
    now = MORNING + 19 * DAY

    keys = phone.keys_for_upload(now)

    assert len(keys) == 14
    assert all(key.end_interval <= interval_number(now) for key in keys)
    assert keys[-1].end_interval == interval_number(MIDNIGHT + 19 * DAY)


def test_releasing_today_s_key_shortens_it_and_starts_a_new_one() -> None:
    phone = Device(random_bytes=seeded(5))
    phone.key_at(MORNING - DAY)
    phone.key_at(MORNING)

    keys = phone.keys_for_upload(MORNING, include_current=True)

    today = keys[-1]
    assert today.rolling_start_interval_number == interval_number(MIDNIGHT)
    assert today.rolling_period == interval_number(MORNING) - interval_number(MIDNIGHT) + 1
    assert len(keys) == 2
    # The next interval is broadcast under a new key that lives until midnight.
    after = phone.key_at(MORNING + timedelta(minutes=10))
    assert after.rolling_start_interval_number == today.end_interval
    assert after.end_interval == interval_number(MIDNIGHT + DAY)
    assert after.rolling_period < 144


def test_a_key_started_mid_day_spans_only_until_midnight() -> None:
    phone = Device(random_bytes=seeded(6))

    first = phone.key_at(MORNING)
    phone.release_current_key(MORNING)
    second = phone.key_at(MORNING + timedelta(hours=3))

    assert second.rolling_start_interval_number == first.rolling_start_interval_number + (
        interval_number(MORNING) - interval_number(MIDNIGHT) + 1
    )
    assert second.end_interval % 144 == 0


def test_a_scan_hears_at_transmit_power_minus_attenuation() -> None:
    sender = Device(random_bytes=seeded(7), metadata=BluetoothMetadata(tx_power_dbm=-4))
    listener = Device(random_bytes=seeded(8))

    listener.scan(MORNING, [(sender, 60)])

    [sighting] = listener.sightings.sightings
    assert sighting.rpi == sender.advertisement(MORNING).rpi
    assert sighting.rssi == (-64,)


def test_forgetting_drops_old_keys_and_sightings() -> None:
    phone, other = Device(random_bytes=seeded(9)), Device(random_bytes=seeded(10))
    phone.scan(MORNING, [(other, 50)])
    phone.scan(MORNING + 3 * DAY, [(other, 50)])

    phone.forget_before(MORNING + 2 * DAY)

    assert len(phone.sightings) == 1
    assert all(key.end_interval > interval_number(MORNING + 2 * DAY) for key in phone.keys)


@pytest.mark.parametrize(
    ("key_data", "start", "period"),
    [(bytes(15), 0, 144), (bytes(16), 0, 0), (bytes(16), 0, 145), (bytes(16), -1, 144)],
)
def test_a_key_refuses_what_gaen_cannot_carry(key_data: bytes, start: int, period: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        TemporaryExposureKey(key_data, start, period)


def test_a_key_never_shows_its_bytes() -> None:
    key = TemporaryExposureKey(bytes(range(16)), 100)

    assert "key_data" not in repr(key)
