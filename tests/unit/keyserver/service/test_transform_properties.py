"""Properties of the publish transform over generated requests (hypothesis)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from crypto.encoding import decode_base64_lenient
from exposure.api.v1 import ExposureKey, PublishRequest
from exposure.tek import ReportType, interval_number, time_of_interval, truncate
from keyserver.errors import BadRequest
from keyserver.service.transform import TransformResult, transform_publish
from keyserver.settings import KeyserverSettings

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# Fixed moments: mid-interval, exactly midnight, the last second of a day, on the hour.
MOMENTS = [
    datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC),
    datetime(2026, 11, 26, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2027, 3, 1, 7, tzinfo=UTC),
]
SETTINGS_VARIANTS = [
    KeyserverSettings(),
    KeyserverSettings(truncate_window=timedelta(minutes=10)),
    KeyserverSettings(truncate_window=timedelta(days=1), max_same_start_interval_keys=1),
    KeyserverSettings(release_same_day_keys=True, max_keys_on_publish=5),
]
REPORT_TYPES = st.sampled_from(["", *(member.value for member in ReportType)])


@dataclass(frozen=True)
class Case:
    request: PublishRequest
    now: datetime
    settings: KeyserverSettings
    report_type: str
    certificate_onset: int | None

    def run(self) -> TransformResult:
        return transform_publish(
            self.request,
            report_type=self.report_type,
            certificate_onset=self.certificate_onset,
            regions=["us", "Ca"],
            now=self.now,
            settings=self.settings,
        )


def spellings(raw: bytes) -> st.SearchStrategy[str]:
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return st.sampled_from([standard, urlsafe, standard.rstrip("="), standard + "=="])


@st.composite
def well_formed_cases(draw: st.DrawFn) -> Case:
    """Requests of valid, non-overlapping keys inside the accepted age window."""
    now = draw(st.sampled_from(MOMENTS))
    config = draw(st.sampled_from(SETTINGS_VARIANTS))
    current = interval_number(now)
    oldest_end = interval_number(now - config.max_interval_age)
    raws = draw(
        st.lists(
            st.binary(min_size=16, max_size=16),
            min_size=1,
            max_size=config.max_keys_on_publish,
            unique=True,
        )
    )
    # Walk forward from the oldest allowed start, leaving gaps, so keys never overlap.
    start = oldest_end - draw(st.integers(min_value=0, max_value=143))
    keys: list[ExposureKey] = []
    for raw in raws:
        period = draw(st.integers(min_value=1, max_value=144))
        start = max(start, oldest_end - period)
        if start > current:
            break
        keys.append(
            ExposureKey(
                key=draw(spellings(raw)),
                rollingStartNumber=start,
                rollingPeriod=period,
                transmissionRisk=draw(st.integers(min_value=0, max_value=8)),
            )
        )
        start += period + draw(st.integers(min_value=0, max_value=300))
    if not keys:
        keys.append(
            ExposureKey(
                key=base64.b64encode(raws[0]).decode(), rollingStartNumber=current, rollingPeriod=1
            )
        )
    order = draw(st.permutations(range(len(keys))))
    onset = draw(
        st.one_of(st.just(0), st.integers(min_value=current - 30 * 144, max_value=current))
    )
    request = PublishRequest(
        temporaryExposureKeys=[keys[i] for i in order],
        symptomOnsetInterval=onset,
        traveler=draw(st.booleans()),
    )
    certificate_onset = draw(
        st.one_of(st.none(), st.integers(min_value=current - 30 * 144, max_value=current))
    )
    return Case(request, now, config, draw(REPORT_TYPES), certificate_onset)


def garbage_key_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.binary(max_size=24).map(lambda raw: base64.b64encode(raw).decode()),
        st.binary(min_size=16, max_size=16).flatmap(spellings),
        st.text(alphabet="AQIDBw=_-+/\r\n ", max_size=30),
    )


@st.composite
def arbitrary_cases(draw: st.DrawFn) -> Case:
    """Any request the wire model admits, with values bunched around ``now`` to reach deep."""
    now = draw(st.sampled_from(MOMENTS))
    config = draw(st.sampled_from(SETTINGS_VARIANTS))
    current = interval_number(now)
    near = st.integers(min_value=current - 20 * 144, max_value=current + 300)
    # Mostly plausible values, so that many requests get past the first checks.
    exposure_keys = st.builds(
        ExposureKey,
        key=st.one_of(st.binary(min_size=16, max_size=16).flatmap(spellings), garbage_key_text()),
        rollingStartNumber=st.one_of(near, INT32),
        rollingPeriod=st.one_of(
            st.integers(min_value=1, max_value=144), st.integers(-2, 150), INT32
        ),
        transmissionRisk=st.one_of(
            st.integers(min_value=0, max_value=8), st.integers(-2, 10), INT64
        ),
    )
    request = draw(
        st.builds(
            PublishRequest,
            temporaryExposureKeys=st.lists(exposure_keys, max_size=config.max_keys_on_publish + 2),
            healthAuthorityID=st.text(max_size=10),
            verificationPayload=st.text(max_size=10),
            hmacKey=st.text(max_size=10),
            symptomOnsetInterval=st.one_of(near, INT32),
            traveler=st.booleans(),
            revisionToken=st.text(max_size=10),
            padding=st.text(max_size=10),
        )
    )
    certificate_onset = draw(st.one_of(st.none(), near, st.integers(0, 2**32 - 1)))
    return Case(request, now, config, draw(REPORT_TYPES), certificate_onset)


def outcome(case: Case) -> TransformResult | BadRequest:
    """The result, or the refusal: anything else raised fails the test."""
    try:
        result = case.run()
    except BadRequest as refusal:
        reason = "every key invalid" if "occurred" in refusal.message else refusal.message[:24]
        event(f"refused: {reason}")
        return refusal
    event("accepted" if not (result.errors or result.warnings) else "accepted in part")
    return result


def sent_keys(request: PublishRequest) -> set[tuple[bytes, int, int]]:
    sent = set()
    for uploaded in request.temporaryExposureKeys:
        try:
            raw = decode_base64_lenient(uploaded.key)
        except ValueError:
            continue
        sent.add((raw, uploaded.rollingStartNumber, uploaded.rollingPeriod))
    return sent


def check_output_shape(case: Case, result: TransformResult) -> None:
    """Sorted, every key one that was sent, every sent key accounted for exactly once."""
    order = [(k.interval_number, k.interval_count) for k in result.keys]
    assert order == sorted(order)
    sent = sent_keys(case.request)
    for returned in result.keys:
        assert (returned.key, returned.interval_number, returned.interval_count) in sent
    assert len({k.key for k in result.keys}) == len(result.keys), "each key at most once"
    assert len(result.keys) + result.duplicates + len(result.errors) + len(result.warnings) == len(
        case.request.temporaryExposureKeys
    )
    mentioned = [line.split(" ")[1] for line in result.errors + result.warnings]
    assert len(set(mentioned)) == len(mentioned)


def check_key_invariants(case: Case, result: TransformResult) -> None:
    config, now = case.settings, case.now
    current = interval_number(now)
    oldest_end = interval_number(now - config.max_interval_age)
    window = config.truncate_window
    for k in result.keys:
        assert len(k.key) == 16
        assert 1 <= k.interval_count <= 144
        assert k.end_interval >= oldest_end
        assert k.interval_number <= current
        assert 0 <= k.transmission_risk <= 8
        assert k.days_since_symptom_onset is not None
        assert abs(k.days_since_symptom_onset) <= config.max_symptom_onset_days
        assert k.report_type == case.report_type
        assert k.traveler is case.request.traveler
        assert k.regions == ("CA", "US")
        assert k.created_at == truncate(k.created_at, window)
        if config.release_same_day_keys:
            # No embargo: every key joins the current batch, even one still broadcast.
            assert k.created_at == truncate(now, window)
            continue
        assert k.created_at >= truncate(now, window)
        # The batch a key lands in never closes before the key stopped being broadcast.
        assert k.created_at + window > time_of_interval(k.end_interval)
        if k.end_interval > current:
            assert k.created_at >= time_of_interval(k.end_interval)


@settings(max_examples=300)
@given(case=well_formed_cases())
def test_well_formed_keys_come_out_valid_and_embargoed(case: Case) -> None:
    result = outcome(case)
    # Keys built not to overlap are never refused, even when every one is too far from the
    # onset (that is warnings and nothing to store, as in the reference).
    assert isinstance(result, TransformResult)
    assert result.errors == []
    check_key_invariants(case, result)
    check_output_shape(case, result)


@settings(max_examples=300)
@given(case=well_formed_cases())
def test_without_an_onset_every_in_range_key_is_kept(case: Case) -> None:
    request = case.request.model_copy(update={"symptomOnsetInterval": 0})
    case = Case(request, case.now, case.settings, case.report_type, None)
    result = outcome(case)
    assert isinstance(result, TransformResult)
    assert len(result.keys) == len(request.temporaryExposureKeys)
    assert result.missing_onset is True
    assert result.warnings == []


@settings(max_examples=500)
@given(case=arbitrary_cases())
def test_arbitrary_requests_only_ever_raise_bad_request(case: Case) -> None:
    result = outcome(case)
    if isinstance(result, BadRequest):
        return
    check_key_invariants(case, result)
    check_output_shape(case, result)


def test_release_same_day_keys_lets_a_key_still_broadcast_into_the_current_batch() -> None:
    """The counterexample hypothesis found when the checks above asserted the embargo always.

    The second key is broadcast until 13:00; at 12:34:56 with release_same_day_keys it is
    stored in the 12:00 batch, which closes at 13:00, not held back to the 14:00 one.
    """
    now = MOMENTS[0]
    request = PublishRequest(
        temporaryExposureKeys=[
            ExposureKey(key="", rollingStartNumber=2_989_803, rollingPeriod=1),
            ExposureKey(key="A" * 22 + "==", rollingStartNumber=2_992_542, rollingPeriod=144),
        ],
        symptomOnsetInterval=2_990_448,
    )
    release = KeyserverSettings(release_same_day_keys=True, max_keys_on_publish=5)
    released = Case(request, now, release, "", None)
    embargoed = Case(request, now, KeyserverSettings(max_keys_on_publish=5), "", None)

    result = released.run()

    assert [(k.key, k.end_interval) for k in result.keys] == [(bytes(16), 2_992_686)]
    assert time_of_interval(2_992_686) == datetime(2026, 11, 25, 13, tzinfo=UTC)
    assert result.keys[0].created_at == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert result.errors == ["key 0 cannot be imported: invalid key length, 0, must be 16"]
    check_key_invariants(released, result)
    check_output_shape(released, result)
    assert embargoed.run().keys[0].created_at == datetime(2026, 11, 25, 14, tzinfo=UTC)
