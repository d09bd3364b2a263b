"""From matched keys to GAEN v2 exposure windows, window scores and daily summaries.

The shapes and the arithmetic are those of the Exposure Notifications API v2 (Android's
``ExposureWindow`` and ``DailySummariesConfig``, iOS's ``ENExposureWindow`` and
``ENExposureConfiguration``), so a health authority's configuration carries over:

- An :class:`ExposureWindow` holds the sightings of one key within at most 30 minutes of one
  UTC day, each as a :class:`ScanInstance` (typical and minimum attenuation of the scan, and
  the seconds since the previous scan). Its report type and infectiousness come from the
  key: the report type as published (or :attr:`RiskModel.report_type_when_missing`), the
  infectiousness from the key's days since symptom onset through
  :attr:`RiskModel.infectiousness_for_days_since_onset`.
- Attenuation is the sender's transmit power, read from the AEM once the key opens it,
  minus the RSSI measured: ``attenuation = tx_power - rssi`` (clamped to 0..255 dB).
- A scan's weight comes from its typical attenuation: at most the first threshold is
  *immediate*, then *near*, *medium*, and above the third threshold *other*.
- ``weighted duration`` of a window = sum over its scans of seconds x attenuation weight;
  ``score`` = weighted duration x report type weight x infectiousness weight.
- A window whose score is below :attr:`RiskModel.minimum_window_score` counts for nothing.
  Each day's :class:`DailySummary` holds the maximum score, the sum of scores and the sum of
  weighted durations of its counted windows, overall and per report type.

Keys that never produce a window: revoked keys (report type ``REVOKED``), keys whose
infectiousness is ``NONE``, and keys that nobody heard (random padding keys among them).

Example::

    windows = exposure_windows(matched_keys, index, RiskModel())
    for summary in daily_summaries(windows, RiskModel()):
        print(summary.day, summary.summary.score_sum)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from types import MappingProxyType

from crypto.gaen import decrypt_metadata, derive_aemk
from exposure.client.device import BluetoothMetadata
from exposure.client.matching import DiagnosisKey, SightingIndex
from exposure.export.model import ReportType

__all__ = [
    "MAX_WEIGHT",
    "MAX_WINDOW_LENGTH",
    "DailySummary",
    "ExposureSummaryData",
    "ExposureWindow",
    "Infectiousness",
    "RiskModel",
    "ScanInstance",
    "daily_summaries",
    "exposure_windows",
]

#: An exposure window never spans more than this (GAEN v2).
MAX_WINDOW_LENGTH = timedelta(minutes=30)
#: The largest weight GAEN accepts for any factor: 250 %.
MAX_WEIGHT = 2.5
#: Days since onset the infectiousness map may name (GAEN v2: -14..14).
DAYS_SINCE_ONSET_RANGE = range(-14, 15)
#: Report types a health authority weighs; UNKNOWN is replaced first, REVOKED never counts.
WEIGHED_REPORT_TYPES = (
    ReportType.CONFIRMED_TEST,
    ReportType.CONFIRMED_CLINICAL_DIAGNOSIS,
    ReportType.SELF_REPORT,
    ReportType.RECURSIVE,
)


class Infectiousness(IntEnum):
    """How infectious the sender was on the key's day (GAEN ``Infectiousness``)."""

    NONE = 0
    STANDARD = 1
    HIGH = 2


def _frozen(mapping: Mapping[int, object]) -> MappingProxyType[int, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class RiskModel:
    """A health authority's risk configuration, in the shape of GAEN v2.

    The defaults weigh every report type and infectiousness equally, treat every day of
    the key as infectious, and count every window: set them from the authority's
    configuration. Raises :class:`ValueError` for thresholds that are not ascending within
    0..255, a weight outside 0..2.5, or an infectiousness day outside -14..14.
    """

    #: Upper bounds (dB, inclusive) of the immediate, near and medium buckets.
    attenuation_thresholds_db: tuple[int, int, int] = (30, 50, 60)
    #: Weights of the immediate, near, medium and other buckets.
    attenuation_weights: tuple[float, float, float, float] = (1.5, 1.0, 0.5, 0.0)
    #: Infectiousness by the key's days since symptom onset; a day not listed is NONE.
    infectiousness_for_days_since_onset: Mapping[int, Infectiousness] = field(
        default_factory=lambda: dict.fromkeys(DAYS_SINCE_ONSET_RANGE, Infectiousness.STANDARD)
    )
    #: Infectiousness of a key published without days since onset.
    infectiousness_when_onset_missing: Infectiousness = Infectiousness.STANDARD
    #: Weights of the STANDARD and HIGH infectiousness.
    infectiousness_weights: Mapping[Infectiousness, float] = field(
        default_factory=lambda: {Infectiousness.STANDARD: 1.0, Infectiousness.HIGH: 1.0}
    )
    #: Report type of a key published without one (export ``UNKNOWN``).
    report_type_when_missing: ReportType = ReportType.CONFIRMED_TEST
    #: Weights of confirmed test, confirmed clinical diagnosis, self report and recursive.
    report_type_weights: Mapping[ReportType, float] = field(
        default_factory=lambda: dict.fromkeys(WEIGHED_REPORT_TYPES, 1.0)
    )
    #: Windows scoring below this count for nothing in the daily summaries.
    minimum_window_score: float = 0.0
    #: Days before ``today`` that daily summaries still cover (None: every day).
    days_since_exposure_threshold: int | None = None

    def __post_init__(self) -> None:
        low, middle, high = self.attenuation_thresholds_db
        if not 0 <= low <= middle <= high <= 255:
            raise ValueError("attenuation thresholds must be ascending within 0..255 dB")
        weights = [
            *self.attenuation_weights,
            *self.infectiousness_weights.values(),
            *self.report_type_weights.values(),
        ]
        if not all(0 <= weight <= MAX_WEIGHT for weight in weights):
            raise ValueError(f"every weight must lie within 0..{MAX_WEIGHT}")
        if not set(self.infectiousness_for_days_since_onset) <= set(DAYS_SINCE_ONSET_RANGE):
            raise ValueError("days since onset must lie within -14..14")
        if self.report_type_when_missing not in WEIGHED_REPORT_TYPES:
            raise ValueError("the report type when missing must be one that is weighed")
        if self.minimum_window_score < 0:
            raise ValueError("the minimum window score must not be negative")
        if (
            self.days_since_exposure_threshold is not None
            and self.days_since_exposure_threshold < 0
        ):
            raise ValueError("the days since exposure threshold must not be negative")
        # Mappings are copied and frozen, so a model cannot change after it was validated.
        for name in (
            "infectiousness_for_days_since_onset",
            "infectiousness_weights",
            "report_type_weights",
        ):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def attenuation_weight(self, attenuation_db: int) -> float:
        """The weight of a scan whose typical attenuation is ``attenuation_db``."""
        for threshold, weight in zip(
            self.attenuation_thresholds_db, self.attenuation_weights, strict=False
        ):
            if attenuation_db <= threshold:
                return weight
        return self.attenuation_weights[3]

    def infectiousness(self, days_since_onset: int | None) -> Infectiousness:
        """The infectiousness of a key published with ``days_since_onset`` (None: absent)."""
        if days_since_onset is None:
            return self.infectiousness_when_onset_missing
        return self.infectiousness_for_days_since_onset.get(days_since_onset, Infectiousness.NONE)

    def report_type(self, published: ReportType) -> ReportType:
        """The report type a window carries for a key published with ``published``."""
        return self.report_type_when_missing if published is ReportType.UNKNOWN else published


@dataclass(frozen=True, slots=True)
class ScanInstance:
    """One scan's sightings of a key: GAEN v2 ``ScanInstance``."""

    typical_attenuation_db: int
    min_attenuation_db: int
    seconds_since_last_scan: int


@dataclass(frozen=True, slots=True)
class ExposureWindow:
    """Sightings of one key within at most 30 minutes of one UTC day: GAEN v2 ``ExposureWindow``.

    ``started_at`` is the time of its first scan (the GAEN shape has only the day; the
    moment helps apps and tests explain a window and is never uploaded anywhere).
    """

    day: date
    started_at: datetime
    report_type: ReportType
    infectiousness: Infectiousness
    scan_instances: tuple[ScanInstance, ...]

    def weighted_duration(self, model: RiskModel) -> float:
        """Seconds of contact weighted by attenuation bucket."""
        return sum(
            scan.seconds_since_last_scan * model.attenuation_weight(scan.typical_attenuation_db)
            for scan in self.scan_instances
        )

    def score(self, model: RiskModel) -> float:
        """The weighted duration times the report type and infectiousness weights."""
        return (
            self.weighted_duration(model)
            * model.report_type_weights.get(self.report_type, 0.0)
            * model.infectiousness_weights.get(self.infectiousness, 0.0)
        )


@dataclass(frozen=True, slots=True)
class ExposureSummaryData:
    """GAEN v2 ``ExposureSummaryData`` over the counted windows of a day."""

    maximum_score: float = 0.0
    score_sum: float = 0.0
    weighted_duration_sum: float = 0.0

    def add(self, score: float, weighted_duration: float) -> ExposureSummaryData:
        return ExposureSummaryData(
            maximum_score=max(self.maximum_score, score),
            score_sum=self.score_sum + score,
            weighted_duration_sum=self.weighted_duration_sum + weighted_duration,
        )


@dataclass(frozen=True, slots=True)
class DailySummary:
    """One UTC day's exposure: GAEN v2 ``DailySummary``, overall and per report type."""

    day: date
    summary: ExposureSummaryData
    by_report_type: Mapping[ReportType, ExposureSummaryData]


def _attenuation(tx_power_dbm: int, rssi: int) -> int:
    # GAEN reports attenuation as an unsigned byte; a reading stronger than the transmit
    # power (a calibration error) is zero attenuation, never negative.
    return min(max(tx_power_dbm - rssi, 0), 255)


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def exposure_windows(
    keys: Iterable[DiagnosisKey], index: SightingIndex, model: RiskModel
) -> list[ExposureWindow]:
    """The exposure windows of ``keys`` (the keys a sync matched) in ``index``'s sightings.

    Each key's sightings are found again (for matched keys only, so this is cheap), its AEMs
    decrypted for the sender's transmit power, and the sightings cut into windows at every
    30 minutes and every UTC midnight. Windows come out ordered by start, then by key.
    """
    windows: list[ExposureWindow] = []
    for key in keys:
        report_type = model.report_type(key.report_type)
        infectiousness = model.infectiousness(key.days_since_onset_of_symptoms)
        if key.report_type is ReportType.REVOKED or infectiousness is Infectiousness.NONE:
            continue
        hits = index.hits([key])
        if not hits:
            continue
        aemk = derive_aemk(key.key_data)
        sightings = sorted((index.sightings[hit.sighting] for hit in hits), key=lambda s: s.time)
        current: list[ScanInstance] = []
        started: datetime | None = None
        for sighting in sightings:
            metadata = BluetoothMetadata.decode(decrypt_metadata(aemk, sighting.rpi, sighting.aem))
            attenuations = [_attenuation(metadata.tx_power_dbm, rssi) for rssi in sighting.rssi]
            scan = ScanInstance(
                typical_attenuation_db=round(sum(attenuations) / len(attenuations)),
                min_attenuation_db=min(attenuations),
                seconds_since_last_scan=sighting.seconds_since_last_scan,
            )
            if started is not None and (
                sighting.time - started >= MAX_WINDOW_LENGTH
                or _utc_day(sighting.time) != _utc_day(started)
            ):
                windows.append(
                    ExposureWindow(
                        day=_utc_day(started),
                        started_at=started,
                        report_type=report_type,
                        infectiousness=infectiousness,
                        scan_instances=tuple(current),
                    )
                )
                current, started = [], None
            if started is None:
                started = sighting.time
            current.append(scan)
        if started is not None:
            windows.append(
                ExposureWindow(
                    day=_utc_day(started),
                    started_at=started,
                    report_type=report_type,
                    infectiousness=infectiousness,
                    scan_instances=tuple(current),
                )
            )
    windows.sort(key=lambda window: window.started_at)
    return windows


def daily_summaries(
    windows: Sequence[ExposureWindow], model: RiskModel, *, today: date | None = None
) -> list[DailySummary]:
    """Each day's summary of the windows that reach the minimum score, oldest day first.

    With ``today`` and :attr:`RiskModel.days_since_exposure_threshold` set, days more than
    that many days before ``today`` are left out.
    """
    overall: dict[date, ExposureSummaryData] = {}
    per_type: dict[date, dict[ReportType, ExposureSummaryData]] = {}
    threshold = model.days_since_exposure_threshold
    for window in windows:
        if today is not None and threshold is not None and (today - window.day).days > threshold:
            continue
        score = window.score(model)
        if score < model.minimum_window_score:
            continue
        weighted = window.weighted_duration(model)
        overall[window.day] = overall.get(window.day, ExposureSummaryData()).add(score, weighted)
        by_type = per_type.setdefault(window.day, {})
        by_type[window.report_type] = by_type.get(window.report_type, ExposureSummaryData()).add(
            score, weighted
        )
    return [
        DailySummary(day=day, summary=overall[day], by_report_type=MappingProxyType(per_type[day]))
        for day in sorted(overall)
    ]
