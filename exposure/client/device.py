"""What a phone keeps and broadcasts: a Temporary Exposure Key a day, an RPI and AEM every
ten minutes, and what it heard from other phones.

A device rolls its TEK at every UTC midnight (rolling period 144 intervals). During each
ten-minute interval it broadcasts the Rolling Proximity Identifier of that interval and the
Associated Encrypted Metadata: four bytes (version, transmit power in dBm, two reserved)
encrypted under the key's AEMK with the RPI as the counter, which a receiver can read only
once the key is published. What it hears is kept in its :class:`SightingStore`.

Time and randomness are parameters: every method takes the moment it acts at, and the
device draws key material from the ``random_bytes`` function it was given, so a simulation
(or a test) is reproducible and runs as fast as the CPU allows.

Example::

    phone, other = Device(), Device()
    advertisement = phone.advertisement(now)            # what it broadcasts now
    other.record_scan(now, [advertisement.heard_at(-63)])  # heard at -63 dBm
    other.scan(later, [(phone, 55)])                    # simulated: 55 dB attenuation
    keys = phone.keys_for_upload(tomorrow)              # after a positive test
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crypto.gaen import (
    AEM_LENGTH,
    KEY_LENGTH,
    MAX_INTERVAL_COUNT,
    derive_aemk,
    derive_rpik,
    encrypt_metadata,
    interval_number,
    rolling_proximity_identifier,
    rolling_proximity_identifiers,
)
from crypto.randomness import random_bytes as system_random_bytes
from exposure.client.sightings import Reception, SightingStore

__all__ = [
    "DEFAULT_METADATA_VERSION",
    "DEFAULT_TX_POWER_DBM",
    "Advertisement",
    "BluetoothMetadata",
    "Device",
    "TemporaryExposureKey",
]

#: Version byte of the metadata: major version 1 (bits 7-6 = 01), minor 0.
DEFAULT_METADATA_VERSION = 0x40
#: Transmit power written into the metadata when the device is not told its own.
DEFAULT_TX_POWER_DBM = -8
#: How long a device keeps its keys (and the key server accepts them): 14 days.
KEY_RETENTION = timedelta(days=14)

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class TemporaryExposureKey:
    """A key as the device keeps it and uploads it.

    Valid from interval ``rolling_start_interval_number`` for ``rolling_period`` intervals.
    Raises :class:`ValueError` for a key that is not 16 bytes or a period outside 1..144.
    """

    key_data: bytes = field(repr=False)
    rolling_start_interval_number: int
    rolling_period: int = MAX_INTERVAL_COUNT
    transmission_risk_level: int = 0

    def __post_init__(self) -> None:
        if len(self.key_data) != KEY_LENGTH:
            raise ValueError(f"a TEK is {KEY_LENGTH} bytes")
        if not 1 <= self.rolling_period <= MAX_INTERVAL_COUNT:
            raise ValueError(f"rolling period must be 1..{MAX_INTERVAL_COUNT}")
        if self.rolling_start_interval_number < 0:
            raise ValueError("rolling start interval number must not be negative")

    @property
    def end_interval(self) -> int:
        """The first interval after the key's validity."""
        return self.rolling_start_interval_number + self.rolling_period

    def covers(self, interval: int) -> bool:
        """Whether the key is the one broadcast during ``interval``."""
        return self.rolling_start_interval_number <= interval < self.end_interval


@dataclass(frozen=True, slots=True)
class BluetoothMetadata:
    """The four plaintext bytes behind an AEM: version, transmit power, two reserved bytes.

    Raises :class:`ValueError` if a value does not fit its byte.
    """

    tx_power_dbm: int = DEFAULT_TX_POWER_DBM
    version: int = DEFAULT_METADATA_VERSION

    def __post_init__(self) -> None:
        if not -128 <= self.tx_power_dbm <= 127:
            raise ValueError("transmit power must fit a signed byte")
        if not 0 <= self.version <= 255:
            raise ValueError("the version must fit a byte")

    def encode(self) -> bytes:
        return bytes((self.version, self.tx_power_dbm & 0xFF, 0, 0))

    @classmethod
    def decode(cls, data: bytes) -> BluetoothMetadata:
        """Read decrypted metadata. Raises :class:`ValueError` unless it is 4 bytes.

        AES-CTR carries no authentication: a forged AEM decrypts to some other transmit
        power, never to an error, exactly as on a phone.
        """
        if len(data) != AEM_LENGTH:
            raise ValueError(f"metadata is {AEM_LENGTH} bytes")
        power = data[1] - 256 if data[1] >= 128 else data[1]
        return cls(tx_power_dbm=power, version=data[0])


@dataclass(frozen=True, slots=True)
class Advertisement:
    """What a device broadcasts during one interval."""

    rpi: bytes
    aem: bytes

    def heard_at(self, rssi: int) -> Reception:
        """This advertisement as a receiver measures it, at ``rssi`` dBm."""
        return Reception(rpi=self.rpi, aem=self.aem, rssi=rssi)


def advertisement_for(
    key: TemporaryExposureKey, interval: int, metadata: BluetoothMetadata
) -> Advertisement:
    """The advertisement of ``key`` in ``interval`` (a pure function, for simulations).

    Raises :class:`ValueError` if the key does not cover the interval.
    """
    if not key.covers(interval):
        raise ValueError("the key is not valid in that interval")
    rpi = rolling_proximity_identifier(derive_rpik(key.key_data), interval)
    return Advertisement(
        rpi=rpi, aem=encrypt_metadata(derive_aemk(key.key_data), rpi, metadata.encode())
    )


def _next_midnight_interval(interval: int) -> int:
    return (interval // MAX_INTERVAL_COUNT + 1) * MAX_INTERVAL_COUNT


class Device:
    """A simulated phone: its keys, its broadcasts and its store of sightings.

    ``random_bytes`` supplies key material (the system CSPRNG by default; a seeded function
    in tests and demos). ``metadata`` is what it writes into every AEM. Methods take the
    moment they act at and must be called with moments that never go back in time.
    """

    def __init__(
        self,
        *,
        random_bytes: RandomBytes = system_random_bytes,
        metadata: BluetoothMetadata | None = None,
        sightings: SightingStore | None = None,
    ) -> None:
        self._random_bytes = random_bytes
        self.metadata = metadata or BluetoothMetadata()
        self.sightings = sightings if sightings is not None else SightingStore()
        self._keys: list[TemporaryExposureKey] = []
        # The newest TEK's broadcasts: its key data, its RPIs (all of them, derived at once
        # on its first broadcast, far cheaper than one by one) and the AEMs made so far.
        self._derived: (
            tuple[TemporaryExposureKey, list[bytes], bytes, dict[tuple[int, bytes], bytes]] | None
        )
        self._derived = None

    @property
    def keys(self) -> tuple[TemporaryExposureKey, ...]:
        """Every key the device still holds, oldest first."""
        return tuple(self._keys)

    def key_at(self, at: datetime) -> TemporaryExposureKey:
        """The key broadcast at ``at``, made when its interval is reached for the first time.

        A new key starts where the previous one ended (or at the UTC midnight of ``at`` if
        later) and ends at the next UTC midnight. Raises :class:`ValueError` for a moment
        before the newest key started, or a naive datetime.
        """
        interval = interval_number(at)
        if self._keys:
            newest = self._keys[-1]
            if newest.covers(interval):
                return newest
            if interval < newest.rolling_start_interval_number:
                raise ValueError("time went backwards: the device has a newer key")
            start = max(newest.end_interval, interval - interval % MAX_INTERVAL_COUNT)
        else:
            start = interval - interval % MAX_INTERVAL_COUNT
        key = TemporaryExposureKey(
            key_data=self._random_bytes(KEY_LENGTH),
            rolling_start_interval_number=start,
            rolling_period=_next_midnight_interval(start) - start,
        )
        self._keys.append(key)
        return key

    def advertisement(self, at: datetime) -> Advertisement:
        """What the device broadcasts at ``at``: the RPI and AEM of that interval."""
        key = self.key_at(at)
        if self._derived is None or self._derived[0].key_data != key.key_data:
            rpis = rolling_proximity_identifiers(key.key_data, key.rolling_start_interval_number)
            self._derived = (key, rpis, derive_aemk(key.key_data), {})
        _, rpis, aemk, aems = self._derived
        offset = interval_number(at) - key.rolling_start_interval_number
        rpi = rpis[offset]
        # By metadata too: an app may change the transmit power it announces at any time.
        metadata = self.metadata.encode()
        aem = aems.get((offset, metadata))
        if aem is None:
            aem = aems[offset, metadata] = encrypt_metadata(aemk, rpi, metadata)
        return Advertisement(rpi=rpi, aem=aem)

    def record_scan(self, at: datetime, receptions: Iterable[Reception]) -> None:
        """Record one Bluetooth scan (see :meth:`SightingStore.record_scan`)."""
        self.sightings.record_scan(at, receptions)

    def scan(self, at: datetime, nearby: Iterable[tuple[Device, int]]) -> None:
        """Simulate a scan at ``at`` that hears each ``(device, attenuation_db)`` once.

        Each device is heard broadcasting its advertisement of that moment, at an RSSI of
        its transmit power minus the attenuation, which is what matching recovers.
        """
        self.sightings.record_scan(
            at,
            [
                device.advertisement(at).heard_at(device.metadata.tx_power_dbm - attenuation)
                for device, attenuation in nearby
            ],
        )

    def release_current_key(self, at: datetime) -> TemporaryExposureKey:
        """End the key of ``at`` with the current interval, so it can be shared today.

        This is the "same-day release" of GAEN v1.5: the shared key's rolling period shrinks
        to the intervals it was used, and the next broadcast starts a new key, valid until
        midnight. Returns the shortened key.
        """
        current = self.key_at(at)
        interval = interval_number(at)
        shortened = TemporaryExposureKey(
            key_data=current.key_data,
            rolling_start_interval_number=current.rolling_start_interval_number,
            rolling_period=interval - current.rolling_start_interval_number + 1,
            transmission_risk_level=current.transmission_risk_level,
        )
        self._keys[-1] = shortened
        return shortened

    def keys_for_upload(
        self, now: datetime, *, include_current: bool = False
    ) -> list[TemporaryExposureKey]:
        """The keys to share after a positive test: those of the last 14 days.

        Keys still valid at ``now`` are left out unless ``include_current``, which first
        releases the current key (:meth:`release_current_key`); the key server holds such a
        key back until it has expired anyway.
        """
        if include_current:
            self.release_current_key(now)
        interval = interval_number(now)
        oldest = interval_number(now - KEY_RETENTION)
        return [
            key
            for key in self._keys
            if key.end_interval > oldest
            and (key.end_interval <= interval or (include_current and key.covers(interval)))
        ]

    def forget_before(self, cutoff: datetime) -> None:
        """Drop keys that ended and sightings made before ``cutoff`` (the 14-day horizon)."""
        limit = interval_number(cutoff)
        self._keys = [key for key in self._keys if key.end_interval > limit]
        self.sightings.forget_before(cutoff)
