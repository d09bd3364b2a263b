"""Temporary Exposure Key value objects and the interval arithmetic of GAEN.

Time in GAEN is counted in ten-minute intervals since the Unix epoch (the ENIN). A key is
valid from ``rolling_start_number`` for ``rolling_period`` intervals (at most 144, one day).
Everything here is pure and takes time as an argument.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from crypto.gaen import INTERVAL_LENGTH, KEY_LENGTH, MAX_INTERVAL_COUNT, interval_number
from exposure.export.model import ReportType as ExportReportType

__all__ = [
    "INTERVALS_PER_DAY",
    "INTERVAL_LENGTH",
    "KEY_LENGTH",
    "MAX_INTERVAL_COUNT",
    "ReportType",
    "days_between_intervals",
    "interval_number",
    "time_of_interval",
    "truncate",
    "utc_midnight",
]

INTERVALS_PER_DAY = 144
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReportType(StrEnum):
    """The diagnosis behind uploaded keys, as the verification certificate states it.

    Keys are stored with these names; export files carry the integer of the proto's
    ``TemporaryExposureKey.ReportType`` that :attr:`export_type` gives (§4.3).
    """

    CONFIRMED = "confirmed"
    LIKELY = "likely"
    NEGATIVE = "negative"
    USER_REPORT = "user-report"

    @property
    def export_type(self) -> ExportReportType:
        """How export files write this diagnosis."""
        return _EXPORT_TYPES[self]

    @classmethod
    def from_export(cls, export_type: ExportReportType) -> ReportType | None:
        """The diagnosis an export file's report type stands for; None when it names none.

        ``UNKNOWN`` and ``RECURSIVE`` (a key relayed from yet another server) have no
        diagnosis: an importer applies its source's default to the first and drops the
        second, as the reference's federation does.
        """
        return _DIAGNOSES.get(export_type)


# GAEN has no "likely" or "negative": a clinical diagnosis is what a likely case is, and a
# negative test revokes the keys an earlier positive published.
_EXPORT_TYPES = MappingProxyType(
    {
        ReportType.CONFIRMED: ExportReportType.CONFIRMED_TEST,
        ReportType.LIKELY: ExportReportType.CONFIRMED_CLINICAL_DIAGNOSIS,
        ReportType.NEGATIVE: ExportReportType.REVOKED,
        ReportType.USER_REPORT: ExportReportType.SELF_REPORT,
    }
)
_DIAGNOSES = MappingProxyType({export: diagnosis for diagnosis, export in _EXPORT_TYPES.items()})


def time_of_interval(interval: int) -> datetime:
    """The moment interval number ``interval`` begins (aware, UTC)."""
    return _EPOCH + interval * INTERVAL_LENGTH


def truncate(moment: datetime, window: timedelta) -> datetime:
    """``moment`` rounded down to a multiple of ``window`` since the epoch (Go's Truncate).

    Raises :class:`ValueError` for a naive ``moment`` or a window that is not positive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("truncate needs an aware datetime")
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    elapsed = moment - _EPOCH
    return _EPOCH + (elapsed // window) * window


def utc_midnight(moment: datetime) -> datetime:
    """The start of ``moment``'s UTC day."""
    return truncate(moment, timedelta(days=1))


def days_between_intervals(onset: int, start: int) -> int:
    """Whole UTC days from the day of interval ``onset`` to the day of interval ``start``.

    Negative when ``start`` lies on an earlier day; the key server stores it as the key's
    days since symptom onset.
    """
    return start // INTERVALS_PER_DAY - onset // INTERVALS_PER_DAY
