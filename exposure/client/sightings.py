"""What a phone heard: Bluetooth scans, each a handful of advertisements from nearby phones.

A phone does not listen all the time. It scans for a few seconds every few minutes; in one
scan it may hear the same advertisement several times (each with its own signal strength,
RSSI) and many different ones. The store keeps one :class:`Sighting` per RPI per scan: the
RPI, its AEM, when the scan happened, every RSSI measured, and how long since the previous
scan, which is the time that scan stands for (GAEN v2's ``secondsSinceLastScan``).

The attenuation of a sighting (transmit power minus RSSI) cannot be known when it is heard:
the transmit power is inside the AEM, which only the sender's key opens. It is computed at
matching time, once the key is published (:mod:`exposure.client.risk`).

Example::

    store = SightingStore()
    store.record_scan(at, [Reception(rpi=rpi, aem=aem, rssi=-71), ...])
    store.record_scan(at + timedelta(minutes=5), [])   # heard nothing, but did scan
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from crypto.gaen import AEM_LENGTH, RPI_LENGTH
from exposure.clock import require_aware

__all__ = [
    "DEFAULT_MAX_SCAN_GAP",
    "DEFAULT_SCAN_INTERVAL",
    "Reception",
    "Sighting",
    "SightingStore",
]

#: How often a phone scans (Android: a few seconds every five minutes).
DEFAULT_SCAN_INTERVAL = timedelta(minutes=5)
#: The longest time one scan stands for. After a longer gap (the phone was off or asleep),
#: a scan still counts as this long, so that it never claims hours of contact.
DEFAULT_MAX_SCAN_GAP = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Reception:
    """One advertisement heard in a scan, at ``rssi`` dBm.

    Raises :class:`ValueError` for an RPI that is not 16 bytes or an AEM that is not 4.
    """

    rpi: bytes
    aem: bytes
    rssi: int

    def __post_init__(self) -> None:
        if len(self.rpi) != RPI_LENGTH or len(self.aem) != AEM_LENGTH:
            raise ValueError(f"an RPI is {RPI_LENGTH} bytes and an AEM {AEM_LENGTH}")


@dataclass(frozen=True, slots=True)
class Sighting:
    """One RPI heard in one scan: the unit the matcher finds and a scan instance is made of.

    ``time`` is when the scan happened (aware, UTC); ``rssi`` holds every measurement of
    this RPI in the scan, in the order heard; ``seconds_since_last_scan`` is the time this
    scan stands for.
    """

    rpi: bytes
    aem: bytes
    time: datetime
    rssi: tuple[int, ...]
    seconds_since_last_scan: int


class SightingStore:
    """The sightings of one phone, in the order of its scans.

    ``scan_interval`` is what the first scan counts for (there is no previous one);
    ``max_scan_gap`` caps what any scan counts for.
    """

    def __init__(
        self,
        *,
        scan_interval: timedelta = DEFAULT_SCAN_INTERVAL,
        max_scan_gap: timedelta = DEFAULT_MAX_SCAN_GAP,
    ) -> None:
        if scan_interval <= timedelta(0) or max_scan_gap < scan_interval:
            raise ValueError("the scan interval must be positive and at most the maximum gap")
        self._scan_interval = scan_interval
        self._max_scan_gap = max_scan_gap
        self._sightings: list[Sighting] = []
        self._last_scan: datetime | None = None

    def __len__(self) -> int:
        return len(self._sightings)

    @property
    def sightings(self) -> Sequence[Sighting]:
        """Every sighting kept, oldest scan first (a read-only view)."""
        return tuple(self._sightings)

    def record_scan(self, at: datetime, receptions: Iterable[Reception]) -> None:
        """Record a scan made at ``at`` and everything heard in it (possibly nothing).

        A scan that heard nothing still matters: the next scan's time since the last one is
        measured from it. Raises :class:`ValueError` for a naive ``at`` or one before the
        previous scan.
        """
        require_aware(at, "at")
        if self._last_scan is not None and at < self._last_scan:
            raise ValueError("scans must be recorded in time order")
        gap = self._scan_interval if self._last_scan is None else at - self._last_scan
        seconds = int(min(gap, self._max_scan_gap).total_seconds())
        self._last_scan = at
        heard: dict[bytes, tuple[bytes, list[int]]] = {}
        for reception in receptions:
            # One RPI heard several times in a scan is one sighting with several RSSI values.
            # Its AEM cannot differ (same key, same interval); the first one heard is kept.
            entry = heard.setdefault(reception.rpi, (reception.aem, []))
            entry[1].append(reception.rssi)
        self._sightings.extend(
            Sighting(
                rpi=rpi,
                aem=aem,
                time=at,
                rssi=tuple(values),
                seconds_since_last_scan=seconds,
            )
            for rpi, (aem, values) in heard.items()
        )

    def forget_before(self, cutoff: datetime) -> None:
        """Drop the sightings of scans made before ``cutoff`` (GAEN keeps 14 days)."""
        require_aware(cutoff, "cutoff")
        self._sightings = [sighting for sighting in self._sightings if sighting.time >= cutoff]
