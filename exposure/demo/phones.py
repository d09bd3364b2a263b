"""The demo's phones: SDK devices that broadcast and record exactly what the plan says.

:func:`build_phones` plays a :class:`~exposure.demo.simulation.World`'s scan schedule on
:class:`~exposure.client.Device` objects, in time order across all phones: each phone
records every scan in which it heard someone, each reading at the RSSI its attenuation
gives (the sender's transmit power minus the attenuation). From then on the phones know only
what a phone knows: their own keys and the RPIs and AEMs they heard.

:class:`SharedDerivation` lets a thousand phones that download the same files share the
costly part of matching, deriving every key's RPIs, while each phone still matches its own
sightings (:meth:`~exposure.client.SightingIndex.match_in`) through its own
:class:`~exposure.client.ExportSync`.
"""

from __future__ import annotations

import hashlib
import random
import threading
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from exposure.client import Advertisement, DerivedRpis, Device, SightingIndex
from exposure.client.matching import KeyWindow
from exposure.demo.simulation import Heard

__all__ = ["PhoneMatcher", "SharedDerivation", "build_phones", "scan_moments", "seeded_bytes"]


def seeded_bytes(seed: int, phone: int) -> Callable[[int], bytes]:
    """The reproducible key material of phone ``phone`` in the world of ``seed``."""
    # A demo stand-in for the CSPRNG, so a seed replays the same keys.
    return random.Random(f"{seed}:{phone}").randbytes  # noqa: S311


def build_phones(
    count: int,
    schedule: dict[int, dict[datetime, list[Heard]]],
    *,
    seed: int,
    on_scan_moment: Callable[[], object] | None = None,
) -> list[Device]:
    """``count`` devices whose sighting stores hold the scans of ``schedule`` (empty ones too).

    ``on_scan_moment`` is called once per moment of the shared scan grid that anyone used
    (for a progress bar).
    """
    phones = [Device(random_bytes=seeded_bytes(seed, phone)) for phone in range(count)]
    by_moment: dict[datetime, list[tuple[int, list[Heard]]]] = {}
    for phone, scans in schedule.items():
        for moment, readings in scans.items():
            by_moment.setdefault(moment, []).append((phone, readings))
    for moment in sorted(by_moment):
        # A phone broadcasts one advertisement per interval; it is made once per moment and
        # heard by everyone near it.
        sent: dict[int, Advertisement] = {}
        for phone, readings in by_moment[moment]:
            receptions = []
            for reading in readings:
                sender = phones[reading.sender]
                advertisement = sent.get(reading.sender)
                if advertisement is None:
                    advertisement = sent[reading.sender] = sender.advertisement(moment)
                rssi = sender.metadata.tx_power_dbm - reading.attenuation_db
                receptions.append(advertisement.heard_at(rssi))
            phones[phone].record_scan(moment, receptions)
        if on_scan_moment is not None:
            on_scan_moment()
    return phones


def _fingerprint(keys: Sequence[KeyWindow]) -> bytes:
    digest = hashlib.blake2b(digest_size=32)
    for key in keys:
        digest.update(key[0])
    digest.update(array("q", [number for key in keys for number in (key[1], key[2])]).tobytes())
    return digest.digest()


class SharedDerivation:
    """The RPIs of each distinct key list the phones were handed, derived once (thread-safe).

    Keyed by a digest of the keys themselves (data, start, period), never by file name: a
    phone is only ever given the RPIs of exactly the keys it downloaded and verified.
    """

    def __init__(self) -> None:
        self._derived: dict[bytes, DerivedRpis] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._derived)

    def rpis_of(self, keys: Sequence[KeyWindow]) -> DerivedRpis:
        fingerprint = _fingerprint(keys)
        derived = self._derived.get(fingerprint)
        if derived is None:
            # Phones sync on several threads: the first to need a key list derives it.
            with self._lock:
                derived = self._derived.get(fingerprint)
                if derived is None:
                    derived = self._derived[fingerprint] = DerivedRpis(keys)
        return derived


@dataclass
class PhoneMatcher:
    """One phone's matcher (the SDK's ``KeyMatcher``): its own sightings, shared derivation."""

    index: SightingIndex
    shared: SharedDerivation

    def match(self, keys: Sequence[KeyWindow]) -> list[int]:
        return self.index.match_in(self.shared.rpis_of(keys))


def scan_moments(schedule: dict[int, dict[datetime, list[Heard]]]) -> int:
    """How many distinct moments of the scan grid ``schedule`` uses."""
    return len({moment for scans in schedule.values() for moment in scans})
