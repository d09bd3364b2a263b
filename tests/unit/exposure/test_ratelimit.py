"""Fixed-window rate limits on SQLite and PostgreSQL: counting, windows, headers, purge."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from exposure import ratelimit
from exposure.db import make_session_factory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.ratelimit import (
    MAX_COUNT,
    BucketLimit,
    RateDecision,
    RateLimitWindow,
    bucket_key,
    give_back,
    hit,
    peek,
    peek_many,
    rate_limit_headers,
    take,
    window_start,
)

SECRET = b"rate-limit-test-secret-32-bytes!"
NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
BUCKET = bucket_key(SECRET, "verify", "realm-1", "192.0.2.7")


def _stored(session: Session) -> dict[tuple[str, datetime], int]:
    rows = session.execute(
        select(RateLimitWindow.bucket, RateLimitWindow.window_start, RateLimitWindow.count)
    )
    return {(bucket, start): count for bucket, start, count in rows}


def test_hits_count_up_to_the_limit_and_then_deny(db_session: Session) -> None:
    decisions = [hit(db_session, bucket=BUCKET, limit=3, window=MINUTE, now=NOW) for _ in range(5)]

    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert {d.reset_at for d in decisions} == {datetime(2026, 11, 25, 12, 1, tzinfo=UTC)}
    assert [d.retry_after_seconds for d in decisions] == [0, 0, 0, 30, 30]


def test_denied_hits_still_count(db_session: Session) -> None:
    for _ in range(10):
        hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)

    assert _stored(db_session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 10}


def test_a_new_window_starts_from_zero(db_session: Session) -> None:
    for _ in range(3):
        hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)
    last_instant = NOW + timedelta(seconds=29, microseconds=999_999)
    assert not hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=last_instant).allowed

    rolled = hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW + timedelta(seconds=30))

    assert rolled.allowed
    assert rolled.remaining == 1
    assert rolled.reset_at == datetime(2026, 11, 25, 12, 2, tzinfo=UTC)


def test_buckets_are_independent(db_session: Session) -> None:
    other = bucket_key(SECRET, "verify", "realm-1", "192.0.2.8")
    hit(db_session, bucket=BUCKET, limit=1, window=MINUTE, now=NOW)

    assert hit(db_session, bucket=other, limit=1, window=MINUTE, now=NOW).allowed
    assert not hit(db_session, bucket=BUCKET, limit=1, window=MINUTE, now=NOW).allowed


def test_cost_counts_several_hits_at_once(db_session: Session) -> None:
    first = hit(db_session, bucket=BUCKET, limit=10, window=MINUTE, now=NOW, cost=7)
    second = hit(db_session, bucket=BUCKET, limit=10, window=MINUTE, now=NOW, cost=4)

    assert (first.allowed, first.remaining) == (True, 3)
    assert (second.allowed, second.remaining) == (False, 0)


def test_windows_are_aligned_on_the_epoch() -> None:
    assert window_start(NOW, DAY) == datetime(2026, 11, 25, tzinfo=UTC)
    assert window_start(NOW, MINUTE) == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    # 1795608030 s since the epoch; the last multiple of 7 is 1795608024.
    assert window_start(NOW, timedelta(seconds=7)) == datetime(2026, 11, 25, 12, 0, 24, tzinfo=UTC)
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    assert window_start(midnight, DAY) == midnight
    assert window_start(midnight - timedelta(microseconds=1), DAY) == midnight - DAY


def test_other_time_zones_name_the_same_window() -> None:
    from zoneinfo import ZoneInfo

    local = NOW.astimezone(ZoneInfo("Asia/Kolkata"))  # UTC+05:30

    assert window_start(local, timedelta(hours=1)) == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_peek_counts_nothing(db_session: Session) -> None:
    assert peek(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW).remaining == 2
    hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)

    before = peek(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)
    again = peek(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)

    assert before == again
    assert (before.allowed, before.remaining) == (True, 1)
    assert _stored(db_session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 1}


def test_peek_reports_a_lockout_once_the_limit_is_used_up(db_session: Session) -> None:
    for _ in range(3):
        hit(db_session, bucket=BUCKET, limit=3, window=MINUTE, now=NOW)

    locked = peek(db_session, bucket=BUCKET, limit=3, window=MINUTE, now=NOW)

    assert (locked.allowed, locked.remaining, locked.retry_after_seconds) == (False, 0, 30)
    assert peek(db_session, bucket=BUCKET, limit=3, window=MINUTE, now=NOW + MINUTE).allowed


def test_peek_many_answers_each_limit_in_order(db_session: Session) -> None:
    other = bucket_key(SECRET, "verify", "realm-2", "192.0.2.7")
    for _ in range(2):
        hit(db_session, bucket=BUCKET, limit=5, window=MINUTE, now=NOW)
    hit(db_session, bucket=other, limit=5, window=DAY, now=NOW)
    # A count from another window of the same bucket must not be mistaken for this one.
    hit(db_session, bucket=other, limit=5, window=MINUTE, now=NOW, cost=4)
    limits = [
        BucketLimit(other, 1, DAY),
        BucketLimit(BUCKET, 5, MINUTE),
        BucketLimit(bucket_key(SECRET, "never", "hit"), 3, MINUTE),
    ]

    decisions = peek_many(db_session, limits, now=NOW)

    assert [(d.allowed, d.remaining) for d in decisions] == [(False, 0), (True, 3), (True, 3)]
    assert [d.reset_at for d in decisions] == [
        datetime(2026, 11, 26, tzinfo=UTC),
        datetime(2026, 11, 25, 12, 1, tzinfo=UTC),
        datetime(2026, 11, 25, 12, 1, tzinfo=UTC),
    ]
    assert decisions[1] == peek(db_session, bucket=BUCKET, limit=5, window=MINUTE, now=NOW)
    assert peek_many(db_session, [], now=NOW) == []


def test_an_autocommit_hit_sticks_whatever_follows(engine: Engine) -> None:
    factory = make_session_factory(engine)
    decisions: list[RateDecision] = []

    def count_then_fail() -> None:
        with autocommit(factory) as connection:
            decisions.append(hit(connection, bucket=BUCKET, limit=3, window=MINUTE, now=NOW))
            raise RuntimeError("a later failure")

    with pytest.raises(RuntimeError, match="later failure"):
        count_then_fail()

    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2)]
    with unit_of_work(factory) as session:
        assert _stored(session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 1}


def test_counters_saturate_instead_of_overflowing(db_session: Session) -> None:
    hit(db_session, bucket=BUCKET, limit=1, window=MINUTE, now=NOW, cost=MAX_COUNT - 1)

    saturated = [
        hit(db_session, bucket=BUCKET, limit=1, window=MINUTE, now=NOW, cost=5) for _ in range(2)
    ]

    assert [d.allowed for d in saturated] == [False, False]
    assert set(_stored(db_session).values()) == {MAX_COUNT}


def test_headers_of_an_allowed_hit() -> None:
    decision = RateDecision(
        allowed=True,
        limit=120,
        remaining=119,
        reset_at=datetime(2026, 11, 25, 12, 1, tzinfo=UTC),
        retry_after_seconds=0,
    )

    assert rate_limit_headers(decision) == {
        "X-RateLimit-Limit": "120",
        "X-RateLimit-Remaining": "119",
        "X-RateLimit-Reset": "Wed, 25 Nov 2026 12:01:00 GMT",
    }


def test_headers_of_a_denied_hit_say_when_to_retry() -> None:
    decision = RateDecision(
        allowed=False,
        limit=5,
        remaining=0,
        reset_at=datetime(2026, 11, 25, 12, 1, tzinfo=UTC),
        retry_after_seconds=30,
    )

    headers = rate_limit_headers(decision)

    assert headers["Retry-After"] == "30"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert parsedate_to_datetime(headers["X-RateLimit-Reset"]) == decision.reset_at


def test_a_zero_limit_denies_everything_and_retry_after_rounds_up(db_session: Session) -> None:
    first = hit(db_session, bucket=BUCKET, limit=0, window=MINUTE, now=NOW)
    almost_over = datetime(2026, 11, 25, 12, 0, 59, 900_000, tzinfo=UTC)

    last = hit(db_session, bucket=BUCKET, limit=0, window=MINUTE, now=almost_over)

    assert (first.allowed, first.remaining, first.retry_after_seconds) == (False, 0, 30)
    assert (last.allowed, last.retry_after_seconds) == (False, 1)


def test_bucket_key_never_contains_its_inputs() -> None:
    parts = ("verify", "realm-1", "192.0.2.7", "2001:db8::1")

    key = bucket_key(SECRET, *parts)

    assert len(key) == 64
    assert int(key, 16) >= 0
    for part in (*parts, "192", "2001", "realm"):
        assert part not in key
    assert SECRET.hex() not in key


def test_bucket_key_depends_on_every_part_and_the_secret() -> None:
    keys = {
        bucket_key(SECRET, "verify", "realm-1", "192.0.2.7"),
        bucket_key(SECRET, "verify", "realm-2", "192.0.2.7"),
        bucket_key(SECRET, "quota", "realm-1", "192.0.2.7"),
        bucket_key(SECRET, "verify", "realm-1192.0.2.7"),
        bucket_key(b"another-secret-of-32-bytes-long!", "verify", "realm-1", "192.0.2.7"),
    }

    assert len(keys) == 5
    assert bucket_key(SECRET, "verify", "realm-1", "192.0.2.7") == BUCKET


@pytest.mark.parametrize(
    ("secret", "parts", "match"),
    [
        (b"short", ("a",), "secret"),
        (SECRET, (), "part"),
        (SECRET, ("a\x1fb",), "separator"),
    ],
)
def test_bucket_key_refuses_weak_or_ambiguous_input(
    secret: bytes, parts: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        bucket_key(secret, *parts)


@pytest.mark.parametrize(
    "bucket", ["192.0.2.7", "", BUCKET.upper(), BUCKET[:-1], BUCKET + "0", "realm-1:192.0.2.7"]
)
def test_only_hmac_buckets_are_stored(bucket: str) -> None:
    # An unbound session: the bucket is refused before the database is ever asked.
    with pytest.raises(ValueError, match="bucket"):
        hit(Session(), bucket=bucket, limit=1, window=MINUTE, now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": -1}, "limit"),
        ({"cost": 0}, "cost"),
        ({"window": timedelta(0)}, "window"),
        ({"window": timedelta(milliseconds=1500)}, "window"),
        ({"now": datetime(2026, 11, 25, 12, 0)}, "naive"),  # noqa: DTZ001 - the point
    ],
)
def test_nonsense_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    session = Session()  # unbound: arguments are checked before the database is asked
    arguments: dict[str, object] = {"limit": 1, "window": MINUTE, "now": NOW, "cost": 1}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hit(session, bucket=BUCKET, **arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        peek(session, bucket=BUCKET, **arguments)  # type: ignore[arg-type]


HIT_STEPS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),  # which bucket
        st.integers(min_value=0, max_value=90),  # seconds since the previous hit
        st.integers(min_value=1, max_value=3),  # cost
    ),
    min_size=1,
    max_size=15,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=HIT_STEPS, limit=st.integers(min_value=0, max_value=5))
def test_hits_agree_with_an_in_memory_model(
    db_session: Session, steps: list[tuple[int, int, int]], limit: int
) -> None:
    """Whatever sequence of hits happens, the database decides as a dict of counters does."""
    nested = db_session.begin_nested()
    buckets = [bucket_key(SECRET, "property", str(index)) for index in range(3)]
    window = timedelta(seconds=45)
    counts: dict[tuple[int, datetime], int] = {}
    clock = NOW
    for which, seconds_later, cost in steps:
        clock += timedelta(seconds=seconds_later)
        start = window_start(clock, window)
        count = counts.get((which, start), 0) + cost
        counts[(which, start)] = count

        decision = hit(
            db_session, bucket=buckets[which], limit=limit, window=window, now=clock, cost=cost
        )

        assert decision.allowed == (count <= limit)
        assert decision.remaining == max(0, limit - count)
        assert decision.reset_at == start + window
        assert start <= clock < decision.reset_at
    nested.rollback()


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_concurrent_hits_are_never_lost(engine: Engine) -> None:
    factory = make_session_factory(engine)
    threads, rounds = 4, 50
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def hammer() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(rounds):
                with unit_of_work(factory) as session:
                    hit(session, bucket=BUCKET, limit=10, window=DAY, now=NOW)
        except BaseException as error:  # reported below, a thread cannot fail the test
            failures.append(error)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    with unit_of_work(factory) as session:
        total = session.execute(select(func.sum(RateLimitWindow.count))).scalar_one()
        final = peek(session, bucket=BUCKET, limit=10, window=DAY, now=NOW)
    assert total == threads * rounds
    assert (final.allowed, final.remaining) == (False, 0)


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_concurrent_autocommit_hits_are_never_lost(engine: Engine) -> None:
    factory = make_session_factory(engine)
    threads, rounds = 4, 50
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def hammer() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(rounds):
                with autocommit(factory) as connection:
                    hit(connection, bucket=BUCKET, limit=10, window=DAY, now=NOW)
        except BaseException as error:  # reported below, a thread cannot fail the test
            failures.append(error)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    with unit_of_work(factory) as session:
        total = session.execute(select(func.sum(RateLimitWindow.count))).scalar_one()
    assert total == threads * rounds


def test_postgres_counts_through_the_driver_and_agrees_with_sqlalchemy(
    engine_name: str, db_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver_counts: list[int] = []
    original = ratelimit._count_on_psycopg

    def recording(session: Session | Connection, parameters: dict[str, object]) -> int:
        driver_counts.append(original(session, parameters))
        return driver_counts[-1]

    monkeypatch.setattr(ratelimit, "_count_on_psycopg", recording)
    decisions = [hit(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW) for _ in range(3)]

    assert [d.remaining for d in decisions] == [1, 0, 0]
    assert driver_counts == ([1, 2, 3] if engine_name == "postgresql" else [])
    assert _stored(db_session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 3}


def test_take_counts_only_what_fits(db_session: Session) -> None:
    decisions = [take(db_session, bucket=BUCKET, limit=3, window=MINUTE, now=NOW) for _ in range(5)]

    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert [d.retry_after_seconds for d in decisions] == [0, 0, 0, 30, 30]
    # Unlike hit(), a refused take counts nothing.
    assert _stored(db_session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 3}


def test_take_with_a_zero_limit_refuses_and_stores_nothing(db_session: Session) -> None:
    decision = take(db_session, bucket=BUCKET, limit=0, window=MINUTE, now=NOW)

    assert (decision.allowed, decision.remaining) == (False, 0)
    assert _stored(db_session) == {}


def test_give_back_returns_a_slot_to_the_same_window(db_session: Session) -> None:
    for _ in range(2):
        take(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW)
    later_in_the_window = NOW + timedelta(seconds=20)

    give_back(db_session, bucket=BUCKET, window=MINUTE, now=NOW)

    assert take(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=later_in_the_window).allowed
    assert not take(db_session, bucket=BUCKET, limit=2, window=MINUTE, now=NOW).allowed


def test_give_back_never_goes_below_zero(db_session: Session) -> None:
    give_back(db_session, bucket=BUCKET, window=MINUTE, now=NOW)  # nothing there: a no-op
    take(db_session, bucket=BUCKET, limit=5, window=MINUTE, now=NOW)
    for _ in range(3):
        give_back(db_session, bucket=BUCKET, window=MINUTE, now=NOW)

    assert _stored(db_session) == {(BUCKET, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)): 0}


def test_take_and_give_back_refuse_what_hit_refuses(db_session: Session) -> None:
    with pytest.raises(ValueError, match="bucket must be"):
        take(db_session, bucket="192.0.2.7", limit=1, window=MINUTE, now=NOW)
    with pytest.raises(ValueError, match="bucket must be"):
        give_back(db_session, bucket="192.0.2.7", window=MINUTE, now=NOW)
    with pytest.raises(ValueError, match="aware"):
        take(db_session, bucket=BUCKET, limit=1, window=MINUTE, now=NOW.replace(tzinfo=None))


def test_concurrent_takes_never_get_past_the_limit(engine: Engine) -> None:
    factory = make_session_factory(engine)
    threads, rounds, limit = 8, 10, 25
    barrier = threading.Barrier(threads)
    allowed: list[bool] = []
    failures: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(rounds):
                with autocommit(factory) as connection:
                    decision = take(connection, bucket=BUCKET, limit=limit, window=DAY, now=NOW)
                allowed.append(decision.allowed)
        except BaseException as error:  # reported below, a thread cannot fail the test
            failures.append(error)

    workers = [threading.Thread(target=race) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    assert allowed.count(True) == limit
    assert len(allowed) == threads * rounds
    with unit_of_work(factory) as session:
        assert session.execute(select(func.sum(RateLimitWindow.count))).scalar_one() == limit
