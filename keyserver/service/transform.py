"""Validate a publish request and turn its keys into rows to store, as the reference does.

This is the pure middle of ``/v1/publish`` (reference §2): no database, no HTTP, no clock.
Each uploaded key is checked on its own; a bad key is dropped and reported as
``key {i} cannot be imported: {reason}`` while the rest go ahead (a partial failure). A key
too far from the symptom onset is dropped with a warning, not an error, and a key sent twice
is stored once, silently, as the reference does. Only problems with the upload as a whole
(no keys, too many, every key invalid, keys that overlap without sharing a start interval)
refuse the request, with :class:`~keyserver.errors.BadRequest`.

Example::

    result = transform_publish(
        request, report_type="confirmed", certificate_onset=None,
        regions=["us"], now=now, settings=settings,
    )
    result.keys      # ValidatedKey rows, sorted by (interval_number, interval_count)
    result.errors    # one line per dropped key, for the partial_failure answer
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from crypto.encoding import decode_base64_lenient
from exposure.api.v1 import ExposureKey, PublishRequest
from exposure.tek import (
    KEY_LENGTH,
    MAX_INTERVAL_COUNT,
    ReportType,
    days_between_intervals,
    interval_number,
    time_of_interval,
    truncate,
    utc_midnight,
)
from keyserver.errors import BadRequest
from keyserver.settings import KeyserverSettings

__all__ = [
    "MAX_TRANSMISSION_RISK",
    "MIN_TRANSMISSION_RISK",
    "KeyRejected",
    "KeyWindow",
    "TransformResult",
    "ValidatedKey",
    "backfill_transmission_risk",
    "check_key_values",
    "describe_key_errors",
    "imported_key_values",
    "symptom_onset_interval",
    "transform_publish",
]

MIN_TRANSMISSION_RISK = 0
MAX_TRANSMISSION_RISK = 8
MIN_INTERVAL_COUNT = 1

#: Transmission risk given to keys uploaded without one (``ReportTypeTransmissionRisk``).
#: ``user-report`` keys get 0 like unverified ones: the reference never uses its
#: self-report constant (5) here.
_BACKFILLED_TRANSMISSION_RISK = {
    ReportType.CONFIRMED.value: 2,
    ReportType.LIKELY.value: 4,
    ReportType.NEGATIVE.value: 6,
}
_UNKNOWN_TRANSMISSION_RISK = 0
_KNOWN_REPORT_TYPES = frozenset({"", *(member.value for member in ReportType)})


@dataclass(frozen=True, slots=True)
class ValidatedKey:
    """One uploaded key that passed every check, with what the server adds to it."""

    key: bytes
    interval_number: int
    interval_count: int
    #: The phone's value, or the report type's default when the phone sent 0.
    transmission_risk: int
    #: Exports select keys by this: ``now`` truncated, or later for a key still in use.
    created_at: datetime
    #: From the verification certificate; empty when the app bypasses verification.
    report_type: str
    days_since_symptom_onset: int | None
    traveler: bool
    regions: tuple[str, ...]

    @property
    def end_interval(self) -> int:
        """The first interval in which the key is no longer broadcast."""
        return self.interval_number + self.interval_count


@dataclass(frozen=True)
class TransformResult:
    """The keys to store, and what to tell the phone about the ones left out."""

    keys: list[ValidatedKey]
    #: ``key {i} cannot be imported: {reason}``, ``i`` being the key's index in the request.
    errors: list[str]
    #: Keys dropped for a symptom onset too far away; not errors in the reference's answer.
    warnings: list[str]
    #: True when neither the request nor the certificate gave a usable onset.
    missing_onset: bool
    #: The onset interval the keys' days since symptom onset are counted from.
    symptom_onset_interval: int = 0
    #: Copies of a key sent more than once, left out silently (counted as dropped).
    duplicates: int = 0


def backfill_transmission_risk(transmission_risk: int, report_type: str) -> int:
    """The risk to store: the phone's when non-zero, else the report type's default.

    Defaults: confirmed 2, likely 4, negative 6, anything else (``user-report``, none) 0.
    """
    if transmission_risk != 0:
        return transmission_risk
    return _BACKFILLED_TRANSMISSION_RISK.get(report_type, _UNKNOWN_TRANSMISSION_RISK)


def symptom_onset_interval(
    requested: int,
    from_certificate: int | None,
    now: datetime,
    settings: KeyserverSettings,
) -> tuple[int, bool]:
    """The onset interval to count days from, and whether the default had to be used.

    The request's value wins over the certificate's (reference PR #1103); either is used
    only if it lies before the current interval and no earlier than UTC midnight
    ``max_valid_symptom_onset_report_days`` ago. 0 means "not given" (Go's zero value).
    Without a usable value the onset is ``default_symptom_onset_days_ago`` days before
    ``now``. Raises :class:`ValueError` for a naive ``now``.
    """
    current = interval_number(now)
    earliest = interval_number(
        utc_midnight(now - timedelta(days=settings.max_valid_symptom_onset_report_days))
    )
    for candidate in (requested, from_certificate):
        if candidate is not None and 0 < candidate < current and candidate >= earliest:
            onset = candidate
            break
    else:
        return _default_onset(now, settings), True
    # Redundant with the window above today, but the reference checks the distance again
    # and a future change to either rule should not silently let a far onset through.
    if abs(days_between_intervals(onset, current)) > settings.max_valid_symptom_onset_report_days:
        return _default_onset(now, settings), True
    return onset, False


def _default_onset(now: datetime, settings: KeyserverSettings) -> int:
    return interval_number(now - timedelta(days=settings.default_symptom_onset_days_ago))


@dataclass(frozen=True, slots=True)
class KeyWindow:
    """The bounds every key of one request (or imported file) is checked against, computed
    once from ``now``."""

    current_interval: int
    oldest_end_interval: int
    created_at: datetime
    truncate_window: timedelta
    embargo: bool

    @classmethod
    def at(cls, now: datetime, settings: KeyserverSettings) -> KeyWindow:
        return cls(
            current_interval=interval_number(now),
            oldest_end_interval=interval_number(now - settings.max_interval_age),
            created_at=truncate(now, settings.created_at_window),
            truncate_window=settings.created_at_window,
            embargo=not settings.release_same_day_keys,
        )

    def created_at_for(self, end_interval: int) -> datetime:
        """When the key joins an export batch: now, or after it stops being broadcast.

        A key still in use is held back until the window after its last interval, so an
        export never carries a key a phone may still be broadcasting (reference §2.2: a
        key expiring at 00:00 UTC gets 01:00 with a one-hour window).
        """
        if self.embargo and end_interval > self.current_interval:
            expiry = time_of_interval(end_interval)
            return truncate(expiry + self.truncate_window, self.truncate_window)
        return self.created_at


class _KeyRejectedError(Exception):
    """Why one key is dropped; becomes one line of the partial-failure answer."""


class KeyRejected(_KeyRejectedError):  # noqa: N818 - a verdict, like the reference's reasons
    """A key breaks a per-key rule; ``malformed`` when no valid producer writes such a key
    (length, period, risk), as opposed to one outside the accepted time window."""

    def __init__(self, reason: str, *, malformed: bool) -> None:
        super().__init__(reason)
        self.malformed = malformed


def _decode_key(text: str) -> bytes:
    try:
        return decode_base64_lenient(text)
    except ValueError as error:
        raise _KeyRejectedError("key is not valid base64") from error


def check_key_values(raw: bytes, start: int, count: int, risk: int, window: KeyWindow) -> None:
    """Raise :class:`KeyRejected` unless the key passes every per-key rule, in the
    reference's order: length, rolling period, age (by its end), future start, risk."""
    if len(raw) != KEY_LENGTH:
        raise KeyRejected(f"invalid key length, {len(raw)}, must be {KEY_LENGTH}", malformed=True)
    # 0 is refused, not read as 144: the docs' "optional" rollingPeriod is not what the
    # reference's publish does.
    if not MIN_INTERVAL_COUNT <= count <= MAX_INTERVAL_COUNT:
        raise KeyRejected(
            f"invalid rolling period, {count}, must be >= {MIN_INTERVAL_COUNT} "
            f"&& <= {MAX_INTERVAL_COUNT}",
            malformed=True,
        )
    # Age is judged by the key's end, so a key that started just before the limit but was
    # broadcast after it is still accepted.
    if start + count < window.oldest_end_interval:
        raise KeyRejected(
            f"key expires before the minimum window: {start} + {count} = {start + count} "
            f"is too old, must be >= {window.oldest_end_interval}",
            malformed=False,
        )
    if start > window.current_interval:
        raise KeyRejected(
            f"interval number {start} is in the future, must be <= {window.current_interval}",
            malformed=False,
        )
    if not MIN_TRANSMISSION_RISK <= risk <= MAX_TRANSMISSION_RISK:
        raise KeyRejected(
            f"invalid transmission risk: {risk}, must be >= {MIN_TRANSMISSION_RISK} "
            f"&& <= {MAX_TRANSMISSION_RISK}",
            malformed=True,
        )


def _check_key(uploaded: ExposureKey, window: KeyWindow) -> bytes:
    """The decoded key if it passes every per-key rule, in the reference's order."""
    raw = _decode_key(uploaded.key)
    check_key_values(
        raw, uploaded.rollingStartNumber, uploaded.rollingPeriod, uploaded.transmissionRisk, window
    )
    return raw


def describe_key_errors(errors: Sequence[str]) -> str:
    """The per-key errors as one text, in the layout of the reference's multierror.

    ``"2 errors occurred:\\n\\t* key 0 ...\\n\\t* key 3 ...\\n\\n"`` (``1 error`` for one),
    the form the reference puts in a ``partial_failure`` answer's ``error``.
    """
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {error}" for error in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


class _OverlapError(Exception):
    """Keys that cannot all be true at once; refuses the whole request."""


def _check_overlaps(keys: Sequence[ValidatedKey], settings: KeyserverSettings) -> None:
    """Refuse keys that overlap unless they share a start (v1.5 same-day keys), and cap those.

    ``keys`` must be sorted by (interval_number, interval_count). Raises
    :class:`_OverlapError` with the reference's wording.
    """
    first = keys[0]
    last_start, next_start = first.interval_number, first.end_interval
    for key in keys:
        if key.interval_number == last_start:
            # Sorted by count, so the longest key of this start sets where the next may begin.
            next_start = key.end_interval
            continue
        if key.interval_number < next_start:
            raise _OverlapError(
                "exposure keys have non aligned overlapping intervals: "
                f"{key.interval_number} overlaps with the previous key, valid from "
                f"{last_start} to {next_start}"
            )
        last_start, next_start = key.interval_number, key.end_interval
    for start, count in sorted(Counter(key.interval_number for key in keys).items()):
        if count > settings.max_same_start_interval_keys:
            raise _OverlapError(
                f"too many overlapping keys for start interval {start}: "
                f"want <= {settings.max_same_start_interval_keys}, got {count}"
            )


def transform_publish(
    request: PublishRequest,
    *,
    report_type: str,
    certificate_onset: int | None,
    regions: Sequence[str],
    now: datetime,
    settings: KeyserverSettings,
) -> TransformResult:
    """Check every key of ``request`` and build what to store (reference §2).

    ``report_type`` and ``certificate_onset`` come from the verified certificate (``""`` and
    ``None`` without one); ``regions`` are the authorized app's. Keys of report type
    ``negative`` are returned like any other: whether to insert them is the store's call.

    A request whose every key is too far from the symptom onset is not refused: the result
    has no keys, only warnings (the reference's 200). Raises
    :class:`~keyserver.errors.BadRequest` when the request as a whole is unusable: no keys,
    more than ``max_keys_on_publish``, every key invalid, keys that overlap without sharing a
    start interval, or more than ``max_same_start_interval_keys`` keys sharing one. Raises
    :class:`ValueError` for a naive ``now`` or a ``report_type`` that is not a known one (a
    caller bug, never the phone's doing).
    """
    if report_type not in _KNOWN_REPORT_TYPES:
        raise ValueError(f"unknown report type {report_type!r}")
    uploaded = request.temporaryExposureKeys
    if not uploaded:
        raise BadRequest("no exposure keys in publish request")
    if len(uploaded) > settings.max_keys_on_publish:
        raise BadRequest(
            f"too many exposure keys in publish: {len(uploaded)}, "
            f"max of {settings.max_keys_on_publish} is allowed"
        )

    window = KeyWindow.at(now, settings)
    onset, missing_onset = symptom_onset_interval(
        request.symptomOnsetInterval, certificate_onset, now, settings
    )
    stored_regions = tuple(sorted({region.upper() for region in regions}))

    accepted: list[ValidatedKey] = []
    errors: list[str] = []
    warnings: list[str] = []
    for index, candidate in enumerate(uploaded):
        try:
            raw = _check_key(candidate, window)
        except _KeyRejectedError as reason:
            errors.append(f"key {index} cannot be imported: {reason}")
            continue

        start, count = candidate.rollingStartNumber, candidate.rollingPeriod
        days_since_onset = days_between_intervals(onset, start)
        # A warning and not an error: iOS cannot handle partial success, and apps in the
        # field rely on this (reference PR #1131).
        if abs(days_since_onset) > settings.max_symptom_onset_days:
            warnings.append(
                f"key {index} symptom onset is too large, {abs(days_since_onset)} > "
                f"{settings.max_symptom_onset_days} - saving without this key"
            )
            continue
        accepted.append(
            ValidatedKey(
                key=raw,
                interval_number=start,
                interval_count=count,
                transmission_risk=backfill_transmission_risk(
                    candidate.transmissionRisk, report_type
                ),
                created_at=window.created_at_for(start + count),
                report_type=report_type,
                days_since_symptom_onset=days_since_onset,
                traveler=request.traveler,
                regions=stored_regions,
            )
        )

    if not accepted:
        if errors:
            raise BadRequest(describe_key_errors(errors), warnings=warnings)
        # Every key too far from the onset: warnings only, which is a success with nothing to
        # store, as in the reference (iOS apps cannot handle a partial failure here).
        return TransformResult(
            keys=[],
            errors=[],
            warnings=warnings,
            missing_onset=missing_onset,
            symptom_onset_interval=onset,
        )
    # Stable, so copies of one key with the same interval stay in request order.
    accepted.sort(key=lambda key: (key.interval_number, key.interval_count))
    try:
        # Copies of a key count here as separate keys, as in the reference.
        _check_overlaps(accepted, settings)
    except _OverlapError as error:
        raise BadRequest(str(error), warnings=warnings) from error
    unique = _last_copy_of_each_key(accepted)
    return TransformResult(
        keys=unique,
        errors=errors,
        warnings=warnings,
        missing_onset=missing_onset,
        symptom_onset_interval=onset,
        duplicates=len(accepted) - len(unique),
    )


def _last_copy_of_each_key(keys: Sequence[ValidatedKey]) -> list[ValidatedKey]:
    """``keys`` with each TEK once: its last copy in (interval, request) order, as stored.

    The reference stores one row per TEK (the key is the primary key) from a map filled in
    that order, so the last copy wins; the request is not refused and nothing is reported.
    """
    last: dict[bytes, ValidatedKey] = {}
    for key in keys:
        last.pop(key.key, None)  # re-inserted at the end: the result stays in sorted order
        last[key.key] = key
    return list(last.values())


def imported_key_values(
    raw: bytes,
    *,
    start: int,
    count: int,
    transmission_risk: int | None,
    report_type: str,
    days_since_onset: int | None,
    window: KeyWindow,
    max_symptom_onset_days: int,
) -> tuple[int, datetime, int | None]:
    """Check a key read from a peer's export file like an uploaded one, and embargo it.

    Returns what the server stores besides the peer's values: the transmission risk, when
    the key joins an export, and the days since onset. ``report_type`` is the file's (or
    the source's default); a missing risk is backfilled from it as for a publish. A days
    since onset beyond ``max_symptom_onset_days`` is cleared rather than the key dropped,
    as the reference's federation does: the peer already decided to publish the key.
    Raises :class:`KeyRejected`. Kept to plain values because an import checks files of
    500,000 keys one after the other.
    """
    if report_type not in _KNOWN_REPORT_TYPES:
        raise ValueError(f"unknown report type {report_type!r}")
    risk = backfill_transmission_risk(transmission_risk or 0, report_type)
    check_key_values(raw, start, count, risk, window)
    if days_since_onset is not None and abs(days_since_onset) > max_symptom_onset_days:
        days_since_onset = None
    return risk, window.created_at_for(start + count), days_since_onset
