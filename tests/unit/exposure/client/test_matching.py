from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.gaen import (
    INTERVAL_LENGTH,
    derive_rpi_blocks,
    interval_number,
    rolling_proximity_identifiers,
)
from exposure.client import (
    DerivedRpis,
    DiagnosisKey,
    ParallelMatcher,
    ReportType,
    RpiHit,
    Sighting,
    SightingIndex,
)
from tests.interop import interop_path
from tests.unit.exposure.client.support import MORNING, seeded

TWO_HOURS = timedelta(hours=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at_interval(interval: int, skew: timedelta = timedelta(minutes=5)) -> datetime:
    return EPOCH + interval * INTERVAL_LENGTH + skew


def sighting(rpi: bytes, time: datetime, aem: bytes = bytes(4), rssi: int = -60) -> Sighting:
    return Sighting(rpi=rpi, aem=aem, time=time, rssi=(rssi,), seconds_since_last_scan=300)


def rpi_of(key: DiagnosisKey, offset: int) -> bytes:
    return rolling_proximity_identifiers(key.key_data, key.rolling_start_interval_number)[offset]


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(interop_path("gaen_crypto_vectors.json").read_text())
    return data


@pytest.mark.interop
def test_every_rpi_of_the_published_test_vector_is_found(vectors: dict[str, Any]) -> None:
    start = vectors["rolling_start_interval_number"]
    key = DiagnosisKey(bytes.fromhex(vectors["tek_hex"]), start, vectors["tek_rolling_period"])
    heard = [
        sighting(bytes.fromhex(entry["rpi_hex"]), at_interval(entry["enin"]))
        for entry in vectors["intervals"]
    ]

    hits = SightingIndex(heard).hits([key])

    assert [hit.interval for hit in hits] == [entry["enin"] for entry in vectors["intervals"]]
    assert [hit.sighting for hit in hits] == list(range(len(heard)))


@pytest.mark.interop
def test_the_independent_vector_is_found_at_its_interval(vectors: dict[str, Any]) -> None:
    for vector in vectors["secondary_vectors"]:
        key = DiagnosisKey(
            bytes.fromhex(vector["tek_hex"]), vector["rolling_start_interval_number"]
        )
        heard = [
            sighting(bytes.fromhex(entry["rpi_hex"]), at_interval(entry["enin"]))
            for entry in vector["intervals"]
        ]

        hits = SightingIndex(heard).hits([key])

        assert [hit.interval for hit in hits] == [entry["enin"] for entry in vector["intervals"]]


@pytest.mark.interop
def test_a_vector_rpi_heard_outside_its_day_is_not_the_key_s(vectors: dict[str, Any]) -> None:
    start = vectors["rolling_start_interval_number"]
    key = DiagnosisKey(bytes.fromhex(vectors["tek_hex"]), start)
    rpi = bytes.fromhex(vectors["intervals"][0]["rpi_hex"])

    hits = SightingIndex([sighting(rpi, at_interval(start + 144 * 3))]).hits([key])

    assert hits == []


class TestTolerance:
    KEY = DiagnosisKey(bytes(range(16)), 2_993_040)
    OFFSET = 40

    def hits_at(self, moment: datetime) -> list[RpiHit]:
        return SightingIndex([sighting(rpi_of(self.KEY, self.OFFSET), moment)]).hits([self.KEY])

    def test_two_hours_early_or_late_still_counts(self) -> None:
        begins = at_interval(self.KEY.rolling_start_interval_number + self.OFFSET, timedelta(0))

        assert self.hits_at(begins - TWO_HOURS)
        assert self.hits_at(begins + INTERVAL_LENGTH + TWO_HOURS - timedelta(seconds=1))

    def test_beyond_two_hours_it_does_not(self) -> None:
        begins = at_interval(self.KEY.rolling_start_interval_number + self.OFFSET, timedelta(0))

        assert not self.hits_at(begins - TWO_HOURS - timedelta(seconds=1))
        assert not self.hits_at(begins + INTERVAL_LENGTH + TWO_HOURS)

    def test_the_tolerance_is_a_setting(self) -> None:
        begins = at_interval(self.KEY.rolling_start_interval_number + self.OFFSET, timedelta(0))
        heard = [sighting(rpi_of(self.KEY, self.OFFSET), begins - timedelta(minutes=30))]

        assert SightingIndex(heard, tolerance=timedelta(hours=1)).hits([self.KEY])
        assert not SightingIndex(heard, tolerance=timedelta(minutes=10)).hits([self.KEY])


def test_a_key_spanning_midnight_is_found_on_both_days() -> None:
    evening = interval_number(MORNING.replace(hour=18))
    key = DiagnosisKey(seeded(1)(16), evening, 144)  # 18:00 to 18:00 the next day
    heard = [
        sighting(rpi_of(key, 12), at_interval(evening + 12)),  # 20:00
        sighting(rpi_of(key, 60), at_interval(evening + 60)),  # 04:00 next day
    ]

    hits = SightingIndex(heard).hits([key])

    assert [hit.interval for hit in hits] == [evening + 12, evening + 60]


def test_a_short_key_is_derived_only_over_its_own_period() -> None:
    start = interval_number(MORNING)
    short = DiagnosisKey(seeded(2)(16), start, 10)
    [full_day] = derive_rpi_blocks([(short.key_data, start)])
    inside = full_day[16 * 5 : 16 * 6]
    beyond = full_day[16 * 20 : 16 * 21]  # what the same TEK would give after its period

    index = SightingIndex(
        [sighting(inside, at_interval(start + 5)), sighting(beyond, at_interval(start + 20))]
    )

    assert [hit.interval for hit in index.hits([short])] == [start + 5]


def test_keys_no_phone_could_have_heard_are_skipped() -> None:
    start = interval_number(MORNING)
    good = DiagnosisKey(seeded(3)(16), start)
    heard = [sighting(rpi_of(good, 0), at_interval(start))]
    keys = [
        DiagnosisKey(bytes(15), start),
        DiagnosisKey(good.key_data, start, 0),
        DiagnosisKey(good.key_data, start, 145),
        DiagnosisKey(good.key_data, -1),
        good,
    ]

    assert SightingIndex(heard).match(keys) == [4]


def test_padding_keys_never_match() -> None:
    start = interval_number(MORNING)
    real = DiagnosisKey(seeded(4)(16), start, 144, ReportType.CONFIRMED_TEST, 2)
    # Padding copies a real key's metadata onto random bytes, exactly as key servers do.
    random_bytes = seeded(5)
    padding = [real._replace(key_data=random_bytes(16)) for _ in range(1_000)]
    heard = [sighting(rpi_of(real, offset), at_interval(start + offset)) for offset in range(144)]

    assert SightingIndex(heard).match([*padding, real, *padding]) == [1_000]


def test_one_rpi_heard_in_several_scans_gives_a_hit_per_scan() -> None:
    start = interval_number(MORNING)
    key = DiagnosisKey(seeded(6)(16), start)
    rpi = rpi_of(key, 3)
    heard = [sighting(rpi, at_interval(start + 3, timedelta(minutes=m))) for m in (1, 5, 9)]

    hits = SightingIndex(heard).hits([key])

    assert [(hit.interval, hit.sighting) for hit in hits] == [(start + 3, s) for s in range(3)]


def test_nothing_heard_matches_nothing() -> None:
    assert SightingIndex([]).match([DiagnosisKey(bytes(16), 100)]) == []


@pytest.mark.parametrize("chunk_size", [1, 3, 2_000])
def test_chunking_does_not_change_the_answer(chunk_size: int) -> None:
    start = interval_number(MORNING)
    random_bytes = seeded(7)
    keys = [DiagnosisKey(random_bytes(16), start - 144 * (n % 3), 144 - n % 5) for n in range(12)]
    heard = [sighting(rpi_of(keys[n], 2), at_interval(keys[n][1] + 2)) for n in (0, 4, 11)]

    hits = SightingIndex(heard).hits(keys, chunk_size=chunk_size)

    assert [(hit.key, hit.sighting) for hit in hits] == [(0, 0), (4, 1), (11, 2)]


def test_workers_find_what_one_process_finds() -> None:
    start = interval_number(MORNING)
    random_bytes = seeded(8)
    keys = [DiagnosisKey(random_bytes(16), start - 144 * (n % 14)) for n in range(5_000)]
    keys.insert(17, DiagnosisKey(bytes(15), start))  # not derivable: never shipped
    heard = [
        sighting(rpi_of(keys[n], n % 144), at_interval(keys[n][1] + n % 144))
        for n in (0, 1_999, 2_000, 4_321)
    ]
    index = SightingIndex(heard)

    with ParallelMatcher(index, workers=2, chunk_size=700) as matcher:
        parallel = matcher.hits(keys)
        matched = matcher.match(keys)

    assert parallel == index.hits(keys)
    assert matched == [0, 1_999, 2_000, 4_321]


def test_derived_once_many_phones_find_what_each_would_find_alone() -> None:
    start = interval_number(MORNING)
    random_bytes = seeded(9)
    keys = [DiagnosisKey(random_bytes(16), start - 144 * (n % 3), 144 - n % 7) for n in range(300)]
    keys.insert(5, DiagnosisKey(bytes(15), start))  # not derivable: skipped, positions kept
    phones = [
        SightingIndex([sighting(rpi_of(keys[n], 1), at_interval(keys[n][1] + 1)) for n in heard])
        for heard in ([0, 17], [], [299, 6], [4])
    ]
    # A sighting of a published RPI made far outside the tolerance is not a hit either way.
    phones.append(SightingIndex([sighting(rpi_of(keys[9], 1), at_interval(keys[9][1] + 40))]))

    derived = DerivedRpis(keys, chunk_size=64)

    assert len(derived) == sum(key[2] for key in keys if len(key[0]) == 16)
    for index in phones:
        assert index.hits_in(derived) == index.hits(keys)
    assert [index.match_in(derived) for index in phones] == [[0, 17], [], [6, 299], [4], []]
    assert derived.lookup(bytes(3)) == []


def test_workers_with_nothing_heard_answer_at_once() -> None:
    with ParallelMatcher(SightingIndex([]), workers=1) as matcher:
        assert matcher.match([DiagnosisKey(bytes(16), 100)]) == []


# ---- properties ----------------------------------------------------------------------------

keys_data = st.binary(min_size=16, max_size=16)
# Keys of the GAEN era (2020) to the end of the uint32 interval range's realistic use.
start_intervals = st.integers(min_value=2_640_000, max_value=3_400_000)


@settings(max_examples=60, deadline=None)
@given(
    key_data=keys_data,
    start=start_intervals,
    period=st.integers(min_value=1, max_value=144),
    data=st.data(),
    skew=st.integers(min_value=-7_200, max_value=600 + 7_200 - 1),
    others=st.lists(keys_data, max_size=8),
    noise=st.lists(keys_data, max_size=8),
)
def test_any_sighting_of_a_published_key_is_found(
    key_data: bytes,
    start: int,
    period: int,
    data: st.DataObject,
    skew: int,
    others: list[bytes],
    noise: list[bytes],
) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=period - 1), label="offset")
    key = DiagnosisKey(key_data, start, period)
    heard_at = at_interval(start + offset, timedelta(seconds=skew))
    heard = [sighting(rpi, heard_at) for rpi in noise]
    heard.append(sighting(rpi_of(key, offset), heard_at))
    published = [DiagnosisKey(other, start) for other in others]
    position = data.draw(st.integers(min_value=0, max_value=len(published)), label="position")
    published.insert(position, key)

    hits = SightingIndex(heard).hits(published)

    assert RpiHit(position, start + offset, len(heard) - 1) in hits
    assert SightingIndex(heard).hits_in(DerivedRpis(published)) == hits


@settings(max_examples=40, deadline=None)
@given(
    heard_keys=st.lists(keys_data, min_size=1, max_size=4, unique=True),
    published_keys=st.lists(keys_data, min_size=1, max_size=8),
    start=start_intervals,
    offsets=st.lists(st.integers(min_value=0, max_value=143), min_size=1, max_size=6),
)
def test_no_sighting_of_an_unpublished_key_is_ever_found(
    heard_keys: list[bytes], published_keys: list[bytes], start: int, offsets: list[int]
) -> None:
    published = [DiagnosisKey(key, start) for key in published_keys if key not in heard_keys]
    heard = [
        sighting(rpi_of(DiagnosisKey(key, start), offset), at_interval(start + offset))
        for key in heard_keys
        for offset in offsets
    ]

    assert SightingIndex(heard).match(published) == []
    assert SightingIndex(heard).match_in(DerivedRpis(published)) == []
