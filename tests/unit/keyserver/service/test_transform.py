"""The publish transform: per-key checks, embargo, whole-request rules, onset (reference §2)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from exposure.api.v1 import ExposureKey, PublishErrorCode, PublishRequest
from exposure.tek import interval_number, time_of_interval
from keyserver.errors import BadRequest
from keyserver.service.transform import (
    TransformResult,
    backfill_transmission_risk,
    describe_key_errors,
    symptom_onset_interval,
    transform_publish,
)
from keyserver.settings import KeyserverSettings

# 12:34:56 on a Wednesday: not on any window boundary, 75 intervals into the UTC day.
NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
CURRENT = interval_number(NOW)
TODAY = interval_number(datetime(2026, 11, 25, tzinfo=UTC))
TOMORROW = TODAY + 144
DAY = 144
SETTINGS = KeyserverSettings()
# The first interval a key may still be valid in: 15 days before NOW.
OLDEST_END = interval_number(NOW - timedelta(days=15))
DEFAULT_ONSET = interval_number(NOW - timedelta(days=4))


def tek(seed: int) -> bytes:
    return bytes([seed]) * 16


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def key(
    start: int,
    period: int = DAY,
    risk: int = 0,
    *,
    seed: int | None = None,
    text: str | None = None,
) -> ExposureKey:
    # Bytes follow (start, period) unless a test picks them, so keys never collide by accident.
    raw = (
        tek(seed)
        if seed is not None
        else start.to_bytes(8, "big", signed=True) + period.to_bytes(8, "big", signed=True)
    )
    return ExposureKey(
        key=b64(raw) if text is None else text,
        rollingStartNumber=start,
        rollingPeriod=period,
        transmissionRisk=risk,
    )


def publish(*keys: ExposureKey, onset: int = 0, traveler: bool = False) -> PublishRequest:
    return PublishRequest(
        temporaryExposureKeys=list(keys), symptomOnsetInterval=onset, traveler=traveler
    )


def run(
    request: PublishRequest,
    *,
    report_type: str = "confirmed",
    certificate_onset: int | None = None,
    regions: tuple[str, ...] = ("US",),
    now: datetime = NOW,
    settings: KeyserverSettings = SETTINGS,
) -> TransformResult:
    return transform_publish(
        request,
        report_type=report_type,
        certificate_onset=certificate_onset,
        regions=regions,
        now=now,
        settings=settings,
    )


def refusal(request: PublishRequest, settings: KeyserverSettings = SETTINGS) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        run(request, settings=settings)
    assert caught.value.code == PublishErrorCode.BAD_REQUEST
    assert caught.value.status == 400
    return caught.value


def only_error(request: PublishRequest) -> str:
    """The single per-key error of a request whose first key is good and second is not."""
    result = run(request)
    assert len(result.keys) == 1
    assert len(result.errors) == 1
    return result.errors[0]


YESTERDAY_KEY = key(TODAY - DAY, seed=200)


# --- transmission risk backfill -------------------------------------------------------


@pytest.mark.parametrize(
    ("risk", "report_type", "expected"),
    [
        (0, "confirmed", 2),
        (0, "likely", 4),
        (0, "negative", 6),
        (0, "user-report", 0),  # not the unused self-report constant 5
        (0, "", 0),
        (3, "confirmed", 3),
        (8, "", 8),
        (1, "negative", 1),
    ],
)
def test_backfill_only_replaces_zero(risk: int, report_type: str, expected: int) -> None:
    assert backfill_transmission_risk(risk, report_type) == expected


def test_backfilled_risk_lands_on_every_key_and_a_given_risk_is_kept() -> None:
    result = run(publish(key(TODAY - DAY, risk=0), key(TODAY, risk=7)), report_type="likely")
    assert [k.transmission_risk for k in result.keys] == [4, 7]
    assert {k.report_type for k in result.keys} == {"likely"}


def test_without_a_certificate_the_report_type_is_empty_and_risk_stays_zero() -> None:
    result = run(publish(key(TODAY - DAY)), report_type="")
    assert result.keys[0].report_type == ""
    assert result.keys[0].transmission_risk == 0


def test_negative_keys_are_still_returned() -> None:
    result = run(publish(key(TODAY - DAY)), report_type="negative")
    assert result.keys[0].report_type == "negative"
    assert result.keys[0].transmission_risk == 6


def test_an_unknown_report_type_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="unknown report type"):
        run(publish(key(TODAY - DAY)), report_type="CONFIRMED")


# --- per-key checks -------------------------------------------------------------------


@pytest.mark.parametrize("period", [1, 2, 143, 144])
def test_rolling_period_in_range_is_accepted(period: int) -> None:
    result = run(publish(key(TODAY - DAY, period)))
    assert [k.interval_count for k in result.keys] == [period]
    assert result.errors == []


@pytest.mark.parametrize("period", [0, 145, -1, 2**31 - 1])
def test_rolling_period_out_of_range_drops_the_key(period: int) -> None:
    error = only_error(publish(YESTERDAY_KEY, key(TODAY, period)))
    assert error == (
        f"key 1 cannot be imported: invalid rolling period, {period}, must be >= 1 && <= 144"
    )


def test_a_missing_rolling_period_is_refused_not_defaulted() -> None:
    request = PublishRequest.model_validate(
        {
            "temporaryExposureKeys": [
                {"key": b64(tek(1)), "rollingStartNumber": TODAY - DAY, "rollingPeriod": 144},
                {"key": b64(tek(2)), "rollingStartNumber": TODAY},
            ]
        }
    )
    assert "invalid rolling period, 0," in only_error(request)


@pytest.mark.parametrize("risk", [0, 1, 8])
def test_transmission_risk_in_range_is_accepted(risk: int) -> None:
    assert len(run(publish(key(TODAY - DAY, risk=risk))).keys) == 1


@pytest.mark.parametrize("risk", [-1, 9, 2**40])
def test_transmission_risk_out_of_range_drops_the_key(risk: int) -> None:
    error = only_error(publish(YESTERDAY_KEY, key(TODAY, risk=risk)))
    assert error == (
        f"key 1 cannot be imported: invalid transmission risk: {risk}, must be >= 0 && <= 8"
    )


def test_a_key_ending_exactly_at_the_oldest_interval_is_kept() -> None:
    start = OLDEST_END - DAY
    result = run(publish(key(start)))
    assert [k.interval_number for k in result.keys] == [start]


def test_a_key_ending_one_interval_too_early_is_dropped() -> None:
    start = OLDEST_END - DAY - 1
    error = only_error(publish(YESTERDAY_KEY, key(start)))
    assert error == (
        f"key 1 cannot be imported: key expires before the minimum window: {start} + 144 = "
        f"{start + DAY} is too old, must be >= {OLDEST_END}"
    )


def test_age_is_judged_by_the_end_not_the_start() -> None:
    # Starts before the limit but was broadcast after it (the reference's "still valid at min").
    result = run(publish(key(OLDEST_END - 1, 2)))
    assert len(result.keys) == 1


def test_age_follows_the_setting() -> None:
    settings = KeyserverSettings(max_interval_age=timedelta(days=2))
    oldest = interval_number(NOW - timedelta(days=2))
    request = publish(key(oldest - 2, 2), key(oldest - 3, 2))
    result = run(request, settings=settings)
    assert [k.interval_number for k in result.keys] == [oldest - 2]
    assert result.errors[0].startswith("key 1 cannot be imported: key expires before")


def test_a_key_starting_in_the_current_interval_is_accepted() -> None:
    result = run(publish(key(CURRENT, 1)))
    assert [k.interval_number for k in result.keys] == [CURRENT]


def test_a_key_starting_one_interval_in_the_future_is_dropped() -> None:
    error = only_error(publish(YESTERDAY_KEY, key(CURRENT + 1, 1)))
    assert error == (
        f"key 1 cannot be imported: interval number {CURRENT + 1} is in the future, "
        f"must be <= {CURRENT}"
    )


@pytest.mark.parametrize(
    "spelling",
    [
        base64.b64encode(tek(0xFB)).decode(),
        base64.urlsafe_b64encode(tek(0xFB)).decode(),
        base64.b64encode(tek(0xFB)).decode().rstrip("="),
        base64.b64encode(tek(0xFB)).decode() + "==",
    ],
)
def test_every_base64_spelling_of_a_key_is_accepted(spelling: str) -> None:
    result = run(publish(key(TODAY - DAY, text=spelling)))
    assert result.keys[0].key == tek(0xFB)


@pytest.mark.parametrize(("length"), [0, 15, 17, 32])
def test_a_key_of_the_wrong_length_is_dropped(length: int) -> None:
    error = only_error(publish(YESTERDAY_KEY, key(TODAY, text=b64(bytes(length)))))
    assert error == f"key 1 cannot be imported: invalid key length, {length}, must be 16"


@pytest.mark.parametrize("text", ["not base64!", "AQIDBAUGBwgJCgsMDQ4PE", "AQ=D" * 6, "ü" * 22])
def test_a_key_that_is_not_base64_is_dropped(text: str) -> None:
    error = only_error(publish(YESTERDAY_KEY, key(TODAY, text=text)))
    assert error == "key 1 cannot be imported: key is not valid base64"


def test_checks_run_in_the_reference_order() -> None:
    # Wrong length, period, age and risk at once: the key's length is what is reported.
    bad = ExposureKey(key=b64(bytes(3)), rollingStartNumber=0, rollingPeriod=0, transmissionRisk=9)
    assert "invalid key length" in only_error(publish(YESTERDAY_KEY, bad))
    bad = ExposureKey(key=b64(tek(9)), rollingStartNumber=0, rollingPeriod=0, transmissionRisk=9)
    assert "invalid rolling period" in only_error(publish(YESTERDAY_KEY, bad))


def test_errors_name_each_dropped_key_by_its_index_in_the_request() -> None:
    request = publish(
        key(TODAY - 3 * DAY),
        key(TODAY - 2 * DAY, risk=9),
        key(TODAY - DAY),
        key(CURRENT + 5, 1),
        key(TODAY),
    )
    result = run(request)
    assert [k.interval_number for k in result.keys] == [TODAY - 3 * DAY, TODAY - DAY, TODAY]
    assert [error.split(":")[0] for error in result.errors] == [
        "key 1 cannot be imported",
        "key 3 cannot be imported",
    ]
    assert describe_key_errors(result.errors) == (
        f"2 errors occurred:\n\t* {result.errors[0]}\n\t* {result.errors[1]}\n\n"
    )


def test_a_key_sent_twice_is_kept_once_silently_as_the_reference_does() -> None:
    request = publish(key(TODAY - DAY, seed=7), YESTERDAY_KEY, key(TODAY - DAY, seed=7))
    result = run(request)
    assert [k.key for k in result.keys] == [tek(200), tek(7)]
    assert result.errors == []
    assert result.warnings == []
    assert result.duplicates == 1


def test_of_copies_with_different_intervals_the_last_in_interval_order_is_kept() -> None:
    # The reference keeps one row per key from a map filled in sorted order: the last wins.
    request = publish(key(TODAY - DAY, seed=7), key(TODAY - 3 * DAY, seed=7))
    result = run(request)
    assert [(k.key, k.interval_number) for k in result.keys] == [(tek(7), TODAY - DAY)]
    assert result.errors == []


def test_of_copies_with_one_interval_the_last_sent_is_kept() -> None:
    request = publish(key(TODAY - DAY, risk=3, seed=7), key(TODAY - DAY, risk=5, seed=7))
    result = run(request)
    assert [(k.key, k.transmission_risk) for k in result.keys] == [(tek(7), 5)]


def test_copies_of_a_key_count_towards_the_same_start_limit() -> None:
    copies = [key(TODAY - DAY, seed=7)] * (SETTINGS.max_same_start_interval_keys + 1)
    error = refusal(publish(*copies))
    assert "too many overlapping keys" in error.message


def test_describe_key_errors_with_one_error() -> None:
    assert describe_key_errors(["key 0 cannot be imported: x"]) == (
        "1 error occurred:\n\t* key 0 cannot be imported: x\n\n"
    )


# --- embargo --------------------------------------------------------------------------


def test_a_key_expiring_at_midnight_is_created_at_one_in_the_morning() -> None:
    result = run(publish(key(TODAY)))
    assert result.keys[0].created_at == datetime(2026, 11, 26, 1, tzinfo=UTC)


def test_a_past_key_is_created_now_truncated_to_the_window() -> None:
    result = run(publish(key(TODAY - DAY)))
    assert result.keys[0].created_at == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_a_key_that_ended_at_the_current_interval_is_not_embargoed() -> None:
    result = run(publish(key(CURRENT - 10, 10)))
    assert result.keys[0].created_at == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_a_key_ending_one_interval_after_now_is_embargoed() -> None:
    result = run(publish(key(CURRENT - 10, 11)))
    # It ends at 12:40; the window after that hour starts at 13:00.
    assert time_of_interval(CURRENT + 1) == datetime(2026, 11, 25, 12, 40, tzinfo=UTC)
    assert result.keys[0].created_at == datetime(2026, 11, 25, 13, tzinfo=UTC)


def test_the_embargo_rounds_with_the_truncate_window() -> None:
    settings = KeyserverSettings(truncate_window=timedelta(minutes=10))
    result = run(publish(key(TODAY), key(TODAY - DAY)), settings=settings)
    created = {k.interval_number: k.created_at for k in result.keys}
    assert created[TODAY] == datetime(2026, 11, 26, 0, 10, tzinfo=UTC)
    assert created[TODAY - DAY] == datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def test_release_same_day_keys_turns_the_embargo_off() -> None:
    settings = KeyserverSettings(release_same_day_keys=True)
    result = run(publish(key(TODAY)), settings=settings)
    assert result.keys[0].created_at == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_throwaway_demo_timing_keeps_the_second_and_still_embargoes() -> None:
    settings = KeyserverSettings(throwaway_demo_timing=True)
    result = run(publish(key(TODAY), key(TODAY - DAY)), settings=settings)
    created = {k.interval_number: k.created_at for k in result.keys}
    # A key still in use is held back as ever: until one second after it expires.
    assert created[TODAY] == datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC)
    assert created[TODAY - DAY] == NOW.replace(microsecond=0)


# --- whole-request checks -------------------------------------------------------------


def test_no_keys_refuses_the_request() -> None:
    error = refusal(publish())
    assert error.message == "no exposure keys in publish request"
    assert error.warnings == []


def test_the_maximum_number_of_keys_is_accepted() -> None:
    keys = [key(CURRENT - 60 + i, 1, seed=i) for i in range(SETTINGS.max_keys_on_publish)]
    assert len(run(publish(*keys)).keys) == 30


def test_one_key_over_the_maximum_refuses_the_request() -> None:
    keys = [key(CURRENT - 60 + i, 1, seed=i) for i in range(SETTINGS.max_keys_on_publish + 1)]
    error = refusal(publish(*keys))
    assert error.message == "too many exposure keys in publish: 31, max of 30 is allowed"


def test_when_every_key_is_invalid_the_request_is_refused_with_all_reasons() -> None:
    error = refusal(publish(key(TODAY, 0), key(CURRENT + 1, 1)))
    assert error.message.startswith("2 errors occurred:\n\t* key 0 cannot be imported: ")
    assert "\t* key 1 cannot be imported: interval number" in error.message


def test_keys_are_sorted_by_start_then_period() -> None:
    request = publish(key(TODAY, 100), key(TODAY - 2 * DAY), key(TODAY, 50), key(TODAY - DAY, 10))
    result = run(request)
    assert [(k.interval_number, k.interval_count) for k in result.keys] == [
        (TODAY - 2 * DAY, 144),
        (TODAY - DAY, 10),
        (TODAY, 50),
        (TODAY, 100),
    ]


def test_keys_sharing_a_start_may_overlap() -> None:
    request = publish(key(TODAY - DAY, 144), key(TODAY - DAY, 44), key(TODAY - DAY, 88))
    assert [k.interval_count for k in run(request).keys] == [44, 88, 144]


def test_a_key_starting_exactly_where_the_previous_ended_is_fine() -> None:
    request = publish(key(TODAY - DAY, 10), key(TODAY - DAY + 10, 10))
    assert len(run(request).keys) == 2


def test_a_key_starting_before_the_previous_one_ended_refuses_the_request() -> None:
    request = publish(key(TODAY - 2 * DAY), key(TODAY - DAY - 2))
    error = refusal(request)
    assert error.message.startswith("exposure keys have non aligned overlapping intervals")
    assert f"{TODAY - DAY - 2} overlaps" in error.message


def test_overlap_is_judged_against_the_longest_key_of_a_shared_start() -> None:
    # 44 and 144 share a start; a key at +100 overlaps the longer one only.
    request = publish(key(TODAY - DAY, 44), key(TODAY - DAY, 144), key(TODAY - DAY + 100, 10))
    assert "non aligned overlapping" in refusal(request).message


def test_overlap_is_found_whatever_the_request_order() -> None:
    request = publish(key(TODAY - DAY), key(TODAY - 2 * DAY + 1))
    assert "non aligned overlapping" in refusal(request).message


def test_three_keys_with_one_start_are_allowed_and_four_refused() -> None:
    three = [key(TODAY - DAY, period, seed=period) for period in (44, 88, 144)]
    assert len(run(publish(*three)).keys) == 3
    error = refusal(publish(*three, key(TODAY - DAY, 88, seed=1)))
    assert error.message == (
        f"too many overlapping keys for start interval {TODAY - DAY}: want <= 3, got 4"
    )


def test_the_same_start_limit_follows_the_setting() -> None:
    settings = KeyserverSettings(max_same_start_interval_keys=1)
    request = publish(key(TODAY - DAY, 44), key(TODAY - DAY, 88))
    assert "too many overlapping keys" in refusal(request, settings=settings).message


def test_a_dropped_key_takes_no_part_in_the_overlap_check() -> None:
    request = publish(key(TODAY - 2 * DAY), key(TODAY - DAY - 2, risk=9))
    result = run(request)
    assert len(result.keys) == 1
    assert len(result.errors) == 1


def test_a_refusal_after_the_key_checks_carries_the_onset_warnings() -> None:
    # Key 0 is 15 days before today's onset; keys 1 and 2 overlap.
    request = publish(
        key(TODAY - 15 * DAY + 100, 1), key(TODAY - 2 * DAY), key(TODAY - DAY - 2), onset=TODAY
    )
    error = refusal(request)
    assert "non aligned overlapping" in error.message
    assert error.warnings == ["key 0 symptom onset is too large, 15 > 14 - saving without this key"]


# --- symptom onset --------------------------------------------------------------------

EARLIEST_ONSET = interval_number(datetime(2026, 10, 28, tzinfo=UTC))  # midnight 28 days ago


def onset_of(requested: int, certificate: int | None = None) -> tuple[int, bool]:
    return symptom_onset_interval(requested, certificate, NOW, SETTINGS)


def test_a_valid_request_onset_wins_over_the_certificate() -> None:
    assert onset_of(TODAY - 3 * DAY, TODAY - 2 * DAY) == (TODAY - 3 * DAY, False)


def test_the_certificate_onset_is_used_when_the_request_gives_none() -> None:
    assert onset_of(0, TODAY - 2 * DAY) == (TODAY - 2 * DAY, False)


@pytest.mark.parametrize("requested", [CURRENT, CURRENT + 1, EARLIEST_ONSET - 1, -5, 1])
def test_an_invalid_request_onset_falls_back_to_the_certificate(requested: int) -> None:
    assert onset_of(requested, TODAY - 2 * DAY) == (TODAY - 2 * DAY, False)


@pytest.mark.parametrize("requested", [CURRENT - 1, EARLIEST_ONSET])
def test_request_onset_bounds_are_inclusive_of_the_window(requested: int) -> None:
    assert onset_of(requested, TODAY - 2 * DAY) == (requested, False)


@pytest.mark.parametrize("certificate", [None, 0, CURRENT, EARLIEST_ONSET - 1, 2**32 - 1])
def test_without_any_valid_onset_the_default_is_four_days_ago(certificate: int | None) -> None:
    assert onset_of(0, certificate) == (DEFAULT_ONSET, True)
    assert onset_of(CURRENT + 10, certificate) == (DEFAULT_ONSET, True)


def test_the_onset_window_and_default_follow_the_settings() -> None:
    settings = KeyserverSettings(
        max_valid_symptom_onset_report_days=5, default_symptom_onset_days_ago=2
    )
    earliest = interval_number(datetime(2026, 11, 20, tzinfo=UTC))
    assert symptom_onset_interval(earliest, None, NOW, settings) == (earliest, False)
    assert symptom_onset_interval(earliest - 1, None, NOW, settings) == (
        interval_number(NOW - timedelta(days=2)),
        True,
    )


def test_days_since_onset_are_counted_in_utc_days_from_the_onset() -> None:
    onset = TODAY - 2 * DAY + 100  # late in the day, two days ago
    request = publish(key(TODAY - 3 * DAY), key(TODAY - 2 * DAY), key(TODAY), onset=onset)
    result = run(request)
    assert [k.days_since_symptom_onset for k in result.keys] == [-1, 0, 2]
    assert result.missing_onset is False
    assert result.symptom_onset_interval == onset


def test_the_default_onset_is_used_and_flagged() -> None:
    result = run(publish(key(TODAY - 4 * DAY), key(TODAY)))
    assert [k.days_since_symptom_onset for k in result.keys] == [0, 4]
    assert result.missing_onset is True
    assert result.symptom_onset_interval == DEFAULT_ONSET


def test_the_certificate_onset_is_applied_to_the_keys() -> None:
    result = run(publish(key(TODAY)), certificate_onset=TODAY - 5 * DAY)
    assert result.keys[0].days_since_symptom_onset == 5
    assert result.missing_onset is False


def test_keys_further_than_fourteen_days_from_onset_are_dropped_with_a_warning() -> None:
    request = publish(
        key(TODAY - 14 * DAY, 1),  # -14: kept
        key(TODAY - 15 * DAY + 100, 1),  # -15 (and still young enough to pass): dropped
        key(TODAY),  # 0: kept
        onset=TODAY + 10,
    )
    result = run(request)
    assert [k.days_since_symptom_onset for k in result.keys] == [-14, 0]
    assert result.errors == []
    assert result.warnings == [
        "key 1 symptom onset is too large, 15 > 14 - saving without this key"
    ]


def test_a_key_fourteen_days_after_onset_is_kept_and_fifteen_dropped() -> None:
    onset = TODAY - 15 * DAY + 5
    request = publish(key(TODAY - DAY), key(TODAY), onset=onset)
    result = run(request)
    assert [k.days_since_symptom_onset for k in result.keys] == [14]
    assert result.warnings == [
        "key 1 symptom onset is too large, 15 > 14 - saving without this key"
    ]


def test_the_symptom_onset_limit_follows_the_setting() -> None:
    settings = KeyserverSettings(max_symptom_onset_days=1)
    request = publish(
        key(TODAY - 3 * DAY), key(TODAY - 2 * DAY), key(TODAY - DAY), onset=TODAY - DAY + 3
    )
    result = run(request, settings=settings)
    assert [k.days_since_symptom_onset for k in result.keys] == [-1, 0]
    assert result.warnings == ["key 0 symptom onset is too large, 2 > 1 - saving without this key"]


def test_when_every_key_is_too_far_from_onset_nothing_is_stored_and_only_warnings_remain() -> None:
    # Not a refusal: the reference answers 200 with the warnings, because iOS apps cannot
    # handle a partial failure here.
    request = publish(key(TODAY), key(TODAY - DAY), onset=TODAY - 16 * DAY)
    result = run(request)
    assert result.keys == []
    assert result.errors == []
    assert result.warnings == [
        "key 0 symptom onset is too large, 16 > 14 - saving without this key",
        "key 1 symptom onset is too large, 15 > 14 - saving without this key",
    ]


def test_when_no_key_is_left_and_some_were_invalid_the_request_is_refused_with_warnings() -> None:
    request = publish(key(TODAY), key(CURRENT + 1, 1), onset=TODAY - 15 * DAY)
    error = refusal(request)
    assert error.message.startswith("1 error occurred:\n\t* key 1 cannot be imported")
    assert error.warnings == ["key 0 symptom onset is too large, 15 > 14 - saving without this key"]


def test_errors_and_warnings_are_kept_apart() -> None:
    onset = TODAY - 14 * DAY - 1  # 15 days before today, 14 before yesterday
    request = publish(key(TODAY - DAY), key(CURRENT + 1, 1), key(TODAY), onset=onset)
    result = run(request)
    assert [k.interval_number for k in result.keys] == [TODAY - DAY]
    assert [e.split(":")[0] for e in result.errors] == ["key 1 cannot be imported"]
    assert [w.split(" symptom")[0] for w in result.warnings] == ["key 2"]


# --- what every key carries -----------------------------------------------------------


def test_regions_are_upper_cased_sorted_and_deduplicated() -> None:
    result = run(publish(key(TODAY - DAY)), regions=("us", "CA", "Us", "mx"))
    assert result.keys[0].regions == ("CA", "MX", "US")


def test_traveler_is_copied_to_every_key() -> None:
    result = run(publish(key(TODAY - DAY), key(TODAY), traveler=True))
    assert [k.traveler for k in result.keys] == [True, True]
    assert run(publish(key(TODAY - DAY))).keys[0].traveler is False


def test_a_naive_now_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="aware"):
        run(publish(key(TODAY - DAY)), now=NOW.replace(tzinfo=None))
