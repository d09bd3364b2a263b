"""Leases on SQLite and PostgreSQL: grant, refuse, renew, release, take over on expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exposure.db import make_session_factory, unit_of_work
from exposure.db.lease import (
    LeaseUnavailable,
    acquire_lease,
    current_lease,
    held_lease,
    release_lease,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def test_first_holder_gets_the_lease(db_session: Session) -> None:
    lease = acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW)

    assert lease is not None
    assert lease.holder == "a"
    assert lease.expires_at == NOW + TTL
    assert current_lease(db_session, name="export", now=NOW) == lease


def test_second_holder_is_refused_while_the_lease_lives(db_session: Session) -> None:
    acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW)

    refused = acquire_lease(
        db_session, name="export", holder="b", ttl=TTL, now=NOW + TTL - timedelta(seconds=1)
    )

    assert refused is None
    still = current_lease(db_session, name="export", now=NOW)
    assert still is not None
    assert still.holder == "a"


def test_expired_lease_is_taken_over(db_session: Session) -> None:
    acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW)

    taken = acquire_lease(db_session, name="export", holder="b", ttl=TTL, now=NOW + TTL)

    assert taken is not None
    assert taken.holder == "b"
    # The old holder can neither renew nor release what it no longer holds.
    assert acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW + TTL) is None
    assert release_lease(db_session, name="export", holder="a") is False
    assert current_lease(db_session, name="export", now=NOW + TTL) == taken


def test_holder_renews_its_own_lease(db_session: Session) -> None:
    acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW)

    renewed = acquire_lease(
        db_session, name="export", holder="a", ttl=TTL, now=NOW + timedelta(minutes=4)
    )

    assert renewed is not None
    assert renewed.expires_at == NOW + timedelta(minutes=9)


def test_only_the_holder_releases(db_session: Session) -> None:
    acquire_lease(db_session, name="export", holder="a", ttl=TTL, now=NOW)

    assert release_lease(db_session, name="export", holder="b") is False
    assert current_lease(db_session, name="export", now=NOW) is not None
    assert release_lease(db_session, name="export", holder="a") is True
    assert current_lease(db_session, name="export", now=NOW) is None
    assert acquire_lease(db_session, name="export", holder="b", ttl=TTL, now=NOW) is not None


def test_names_are_independent(db_session: Session) -> None:
    assert acquire_lease(db_session, name="one", holder="a", ttl=TTL, now=NOW) is not None
    assert acquire_lease(db_session, name="two", holder="b", ttl=TTL, now=NOW) is not None


def test_too_short_ttl_is_refused(db_session: Session) -> None:
    with pytest.raises(ValueError, match="TTL"):
        acquire_lease(db_session, name="x", holder="a", ttl=timedelta(milliseconds=10), now=NOW)


def test_naive_time_is_refused(db_session: Session) -> None:
    naive = datetime(2026, 11, 25, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        acquire_lease(db_session, name="x", holder="a", ttl=TTL, now=naive)


def test_held_lease_commits_and_releases(engine: Engine) -> None:
    factory = make_session_factory(engine)

    with held_lease(factory, name="job", ttl=TTL, clock=lambda: NOW) as lease:
        # Visible from another session: the lease was committed before the block ran.
        with unit_of_work(factory) as other:
            assert current_lease(other, name="job", now=NOW) == lease
        with (
            pytest.raises(LeaseUnavailable),
            held_lease(factory, name="job", ttl=TTL, clock=lambda: NOW),
        ):
            pass

    with unit_of_work(factory) as session:
        assert current_lease(session, name="job", now=NOW) is None


def test_held_lease_is_released_when_the_block_fails(engine: Engine) -> None:
    factory = make_session_factory(engine)

    with pytest.raises(RuntimeError), held_lease(factory, name="job", ttl=TTL, clock=lambda: NOW):
        raise RuntimeError("job failed")

    with unit_of_work(factory) as session:
        assert current_lease(session, name="job", now=NOW) is None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(min_value=0, max_value=20)),
        min_size=1,
        max_size=12,
    )
)
def test_at_most_one_unexpired_holder_property(
    db_session: Session, steps: list[tuple[str, int]]
) -> None:
    """Whatever sequence of acquisitions happens, the model and the database agree."""
    nested = db_session.begin_nested()
    holder: str | None = None
    expires = NOW
    clock = NOW
    for who, minutes_later in steps:
        clock = clock + timedelta(minutes=minutes_later)
        granted = acquire_lease(db_session, name="p", holder=who, ttl=TTL, now=clock)
        expected = holder is None or expires <= clock or holder == who
        assert (granted is not None) == expected
        if granted is not None:
            holder, expires = who, granted.expires_at
    nested.rollback()
