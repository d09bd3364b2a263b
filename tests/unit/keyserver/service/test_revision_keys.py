"""Revision keys in the database: sealed storage, the first key, rotation, the process cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from crypto.sealing import Keyring, open_sealed, seal
from exposure.db import make_session_factory, unit_of_work
from keyserver.errors import InvalidRevisionToken
from keyserver.models import RevisionKey
from keyserver.proto import gaen_revision_pb2 as pb
from keyserver.service import revision_keys
from keyserver.service.revision import RevisableKey, decode_token, encode_token
from keyserver.service.revision_keys import (
    REVISION_KEY_CACHE_TTL,
    RevisionKeyCache,
    RevisionKeyUnavailable,
    RotationReport,
    create_revision_key,
    load_keyring,
    rotate_revision_keys,
    wrapping_keyring,
)

SECRET = bytes(range(32))
NEWER_SECRET = bytes(range(100, 132))
WRAP = wrapping_keyring([SECRET])
AAD = b"exposure-revision-aad"
T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
FIFTEEN_DAYS = timedelta(days=15)
SECOND = timedelta(seconds=1)
TEK = RevisableKey(bytes(range(16)), 2_990_000, 144)


def _rotate(session: Session, now: datetime, wrapping: Keyring = WRAP) -> RotationReport:
    return rotate_revision_keys(
        session, wrapping, now, new_key_period=WEEK, destroy_after=FIFTEEN_DAYS
    )


def _token(ring: Keyring) -> str:
    return encode_token(ring, AAD, [TEK], min_length=28)


def _opens(ring: Keyring, token: str) -> bool:
    try:
        return decode_token(ring, AAD, token) == [TEK]
    except InvalidRevisionToken:
        return False


def _rows(session: Session) -> list[RevisionKey]:
    return list(session.scalars(select(RevisionKey).order_by(RevisionKey.id)))


# --- wrapping keys ---------------------------------------------------------------------------


def test_wrapping_key_is_derived_from_the_secret_with_its_own_label() -> None:
    expected_id = hmac.new(SECRET, b"exposure/keyserver/revision-key-wrap-id", hashlib.sha512)
    expected_key = hmac.new(SECRET, b"exposure/keyserver/revision-key-wrap", hashlib.sha512)
    independent = Keyring(
        {expected_id.hexdigest()[:8]: expected_key.digest()[:32]},
        current=expected_id.hexdigest()[:8],
    )

    box = seal(WRAP, b"a revision key", b"aad")

    assert WRAP.current == expected_id.hexdigest()[:8]
    assert open_sealed(independent, box.key_id, box.data, b"aad") == b"a revision key"


def test_newest_secret_is_current_and_ids_do_not_depend_on_position() -> None:
    rotated = wrapping_keyring([NEWER_SECRET, SECRET])

    assert rotated.current == wrapping_keyring([NEWER_SECRET]).current
    assert rotated.key_ids == {WRAP.current, rotated.current}
    assert len(rotated.key_ids) == 2
    assert wrapping_keyring([SECRET, SECRET]).key_ids == {WRAP.current}


@pytest.mark.parametrize("secrets", [[], [bytes(31)], [SECRET, bytes(16)]])
def test_missing_or_weak_secrets_are_refused(secrets: list[bytes]) -> None:
    with pytest.raises(ValueError, match="secret"):
        wrapping_keyring(secrets)


# --- storage ---------------------------------------------------------------------------------


def test_created_key_is_stored_sealed_under_the_current_wrapping_key(
    db_session: Session,
) -> None:
    row = create_revision_key(db_session, WRAP, T0)

    assert row.allowed
    assert row.created_at == T0
    assert row.destroyed_at is None
    sealed = row.sealed_key
    assert sealed is not None
    # len(id) || id || nonce (12) || sealed 32-byte key || tag (16)
    assert sealed[0] == 8
    assert sealed[1:9] == WRAP.current.encode()
    assert len(sealed) == 1 + 8 + 12 + 32 + 16


def test_each_key_is_fresh(db_session: Session) -> None:
    first = create_revision_key(db_session, WRAP, T0)
    create_revision_key(db_session, WRAP, T0 + SECOND)
    ring = load_keyring(db_session, WRAP, T0 + SECOND)
    envelope = pb.RevisionToken.FromString(base64.b64decode(_token(ring)))
    # The same sealed payload claimed for the first key must not open: the keys differ.
    relabelled = pb.RevisionToken(kid=str(first.id), data=envelope.data)

    assert envelope.kid != str(first.id)
    assert not _opens(ring, base64.b64encode(relabelled.SerializeToString()).decode())


def test_sealed_key_moved_to_another_row_does_not_open(db_session: Session) -> None:
    first = create_revision_key(db_session, WRAP, T0)
    second = create_revision_key(db_session, WRAP, T0 + SECOND)
    first.sealed_key, second.sealed_key = second.sealed_key, first.sealed_key
    db_session.flush()

    with pytest.raises(RevisionKeyUnavailable) as caught:
        load_keyring(db_session, WRAP, T0 + SECOND)
    assert caught.value.status == 500
    assert caught.value.code == "internal_error"


def test_keys_sealed_under_an_unconfigured_secret_are_unavailable(db_session: Session) -> None:
    create_revision_key(db_session, WRAP, T0)

    with pytest.raises(RevisionKeyUnavailable):
        load_keyring(db_session, wrapping_keyring([NEWER_SECRET]), T0)


def test_an_allowed_key_without_its_sealed_bytes_is_unavailable(db_session: Session) -> None:
    db_session.add(RevisionKey(sealed_key=None, created_at=T0, allowed=True))
    db_session.flush()

    with pytest.raises(RevisionKeyUnavailable):
        load_keyring(db_session, WRAP, T0)


def test_a_sealed_key_of_the_wrong_length_is_unavailable(db_session: Session) -> None:
    row = create_revision_key(db_session, WRAP, T0)
    row.sealed_key = revision_keys._wrap(WRAP, row.id, bytes(16))
    db_session.flush()

    with pytest.raises(RevisionKeyUnavailable):
        load_keyring(db_session, WRAP, T0)


# --- loading ---------------------------------------------------------------------------------


def test_first_load_creates_the_first_key_and_later_loads_reuse_it(db_session: Session) -> None:
    ring = load_keyring(db_session, WRAP, T0)
    again = load_keyring(db_session, WRAP, T0 + timedelta(hours=1))

    rows = _rows(db_session)
    assert [str(row.id) for row in rows] == [ring.current]
    assert again.current == ring.current
    assert _opens(again, _token(ring))


def test_newest_allowed_key_is_current_and_every_allowed_key_opens(db_session: Session) -> None:
    old_ring = load_keyring(db_session, WRAP, T0)
    old_token = _token(old_ring)
    newer = create_revision_key(db_session, WRAP, T0 + WEEK)

    ring = load_keyring(db_session, WRAP, T0 + WEEK)

    assert ring.current == str(newer.id)
    assert ring.key_ids == {old_ring.current, str(newer.id)}
    assert _opens(ring, old_token)


# --- rotation --------------------------------------------------------------------------------


def test_rotation_boundaries_to_the_second(db_session: Session) -> None:
    first_ring = load_keyring(db_session, WRAP, T0)
    first_token = _token(first_ring)
    [first] = _rows(db_session)

    report = _rotate(db_session, T0 + WEEK - SECOND)
    assert (report.created, report.destroyed) == (None, ())

    report = _rotate(db_session, T0 + WEEK)
    second_id = report.created
    assert second_id is not None
    assert report.destroyed == ()
    second_token = _token(load_keyring(db_session, WRAP, T0 + WEEK))

    # The second key has been current for one second short of 15 days (a third key has just
    # been made, since the second is a week old by now).
    report = _rotate(db_session, T0 + WEEK + FIFTEEN_DAYS - SECOND)
    assert report.created is not None
    assert report.destroyed == ()
    ring = load_keyring(db_session, WRAP, T0 + WEEK + FIFTEEN_DAYS - SECOND)
    assert _opens(ring, first_token)
    assert _opens(ring, second_token)

    report = _rotate(db_session, T0 + WEEK + FIFTEEN_DAYS)
    assert (report.created, report.destroyed) == (None, (first.id,))
    db_session.flush()
    db_session.expire(first)
    assert first.allowed is False
    assert first.sealed_key is None
    assert first.destroyed_at == T0 + WEEK + FIFTEEN_DAYS

    ring = load_keyring(db_session, WRAP, T0 + WEEK + FIFTEEN_DAYS)
    assert first_ring.current not in ring.key_ids
    assert not _opens(ring, first_token)
    assert _opens(ring, second_token)


def test_rotation_schedule_every_four_hours_for_fifty_days(db_session: Session) -> None:
    load_keyring(db_session, WRAP, T0)
    now = T0
    while now <= T0 + timedelta(days=50):
        _rotate(db_session, now)
        allowed = [row for row in _rows(db_session) if row.allowed]
        # Never more keys alive than 15 days of weekly keys plus the newest one.
        assert 1 <= len(allowed) <= 4
        now += timedelta(hours=4)

    rows = _rows(db_session)
    assert [row.created_at - T0 for row in rows] == [WEEK * week for week in range(8)]
    for older, newer in pairwise(rows):
        if newer.created_at + FIFTEEN_DAYS <= T0 + timedelta(days=50):
            assert older.destroyed_at == newer.created_at + FIFTEEN_DAYS
            assert (older.allowed, older.sealed_key) == (False, None)
        else:
            assert (older.allowed, older.destroyed_at) == (True, None)
    assert rows[-1].allowed


def test_rotation_creates_a_key_when_none_is_allowed(db_session: Session) -> None:
    report = _rotate(db_session, T0)

    assert report.created is not None
    assert report.destroyed == ()
    assert load_keyring(db_session, WRAP, T0).current == str(report.created)


def test_rotation_reseals_keys_under_the_newest_secret(db_session: Session) -> None:
    token = _token(load_keyring(db_session, WRAP, T0))
    both = wrapping_keyring([NEWER_SECRET, SECRET])
    newer_only = wrapping_keyring([NEWER_SECRET])
    with pytest.raises(RevisionKeyUnavailable):
        load_keyring(db_session, newer_only, T0 + SECOND)

    report = _rotate(db_session, T0 + SECOND, wrapping=both)

    assert report.created is None
    assert len(report.rewrapped) == 1
    assert _opens(load_keyring(db_session, newer_only, T0 + SECOND), token)
    assert _rotate(db_session, T0 + 2 * SECOND, wrapping=both).rewrapped == ()


@pytest.mark.parametrize(
    ("new_key_period", "destroy_after"),
    [(timedelta(0), FIFTEEN_DAYS), (WEEK, timedelta(0)), (WEEK, -FIFTEEN_DAYS)],
)
def test_rotation_refuses_periods_that_are_not_positive(
    db_session: Session, new_key_period: timedelta, destroy_after: timedelta
) -> None:
    with pytest.raises(ValueError, match="positive"):
        rotate_revision_keys(
            db_session, WRAP, T0, new_key_period=new_key_period, destroy_after=destroy_after
        )


# --- two processes and the first key (real commits, both engines) --------------------------


def test_two_processes_loading_an_empty_table_at_once(engine: Engine, engine_name: str) -> None:
    """Neither process may end up with a current key the other can never open.

    PostgreSQL (READ COMMITTED): neither sees the other's uncommitted key, so each creates
    one. Both rows stay allowed; until its cache expires each process opens only its own
    tokens, and after reloading both open both and seal with the later id.
    SQLite: ``BEGIN IMMEDIATE`` serializes the two transactions, so the second waits for
    the first to commit and then uses its key: one key in all.
    """
    factory = make_session_factory(engine)
    if engine_name == "postgresql":
        with factory() as first_session, factory() as second_session, first_session.begin():
            first_ring = load_keyring(first_session, WRAP, T0)
            with second_session.begin():
                second_ring = load_keyring(second_session, WRAP, T0)
        assert first_ring.current != second_ring.current
    else:
        first_loaded = threading.Event()
        release_first = threading.Event()

        def first() -> Keyring:
            with unit_of_work(factory) as session:
                ring = load_keyring(session, WRAP, T0)
                first_loaded.set()
                release_first.wait(timeout=10)
            return ring

        def second() -> Keyring:
            first_loaded.wait(timeout=10)
            with unit_of_work(factory) as session:
                return load_keyring(session, WRAP, T0)

        with ThreadPoolExecutor(max_workers=2) as pool:
            first_future = pool.submit(first)
            second_future = pool.submit(second)
            first_loaded.wait(timeout=10)
            time.sleep(0.2)
            assert not second_future.done()  # waiting for the first transaction
            release_first.set()
            first_ring, second_ring = first_future.result(), second_future.result()
        assert first_ring.current == second_ring.current

    first_token, second_token = _token(first_ring), _token(second_ring)
    with unit_of_work(factory) as session:
        kids = {str(row.id) for row in _rows(session)}
        reloaded_first = load_keyring(session, WRAP, T0 + REVISION_KEY_CACHE_TTL)
    with unit_of_work(factory) as session:
        reloaded_second = load_keyring(session, WRAP, T0 + REVISION_KEY_CACHE_TTL)
    assert kids == {first_ring.current, second_ring.current}
    assert reloaded_first.key_ids == reloaded_second.key_ids == kids
    assert reloaded_first.current == reloaded_second.current == max(kids, key=int)
    for ring in (reloaded_first, reloaded_second):
        assert _opens(ring, first_token)
        assert _opens(ring, second_token)


# --- the per-process cache -------------------------------------------------------------------


def test_cache_keeps_the_ring_for_its_ttl(engine: Engine) -> None:
    factory = make_session_factory(engine)
    cache = RevisionKeyCache(WRAP)
    ring = cache.get(factory, T0)
    with unit_of_work(factory) as session:
        newer = create_revision_key(session, WRAP, T0 + SECOND)

    assert cache.get(factory, T0 + REVISION_KEY_CACHE_TTL - SECOND) is ring
    reloaded = cache.get(factory, T0 + REVISION_KEY_CACHE_TTL)
    assert reloaded.current == str(newer.id)
    assert cache.get(factory, T0 + REVISION_KEY_CACHE_TTL + SECOND) is reloaded


def test_cache_reloads_when_the_clock_goes_back_or_when_invalidated(engine: Engine) -> None:
    factory = make_session_factory(engine)
    cache = RevisionKeyCache(WRAP)
    ring = cache.get(factory, T0)

    earlier = cache.get(factory, T0 - SECOND)
    assert earlier is not ring
    cache.invalidate()
    assert cache.get(factory, T0 - SECOND) is not earlier
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.count()).select_from(RevisionKey)) == 1


def test_cache_commits_the_first_key_it_creates(engine: Engine) -> None:
    factory = make_session_factory(engine)
    ring = RevisionKeyCache(WRAP).get(factory, T0)

    with unit_of_work(factory) as session:
        assert [str(row.id) for row in _rows(session)] == [ring.current]


def test_concurrent_first_use_loads_once(engine: Engine) -> None:
    factory = make_session_factory(engine)
    cache = RevisionKeyCache(WRAP)

    with ThreadPoolExecutor(max_workers=8) as pool:
        rings = list(pool.map(lambda _: cache.get(factory, T0), range(8)))

    assert all(ring is rings[0] for ring in rings)
    with unit_of_work(factory) as session:
        assert len(_rows(session)) == 1


def test_cache_does_not_keep_a_failed_load(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        create_revision_key(session, WRAP, T0)
    cache = RevisionKeyCache(wrapping_keyring([NEWER_SECRET, SECRET]))
    stale = cache.get(factory, T0)

    cache_without_old_secret = RevisionKeyCache(wrapping_keyring([NEWER_SECRET]))
    with pytest.raises(RevisionKeyUnavailable):
        cache_without_old_secret.get(factory, T0)
    with unit_of_work(factory) as session:
        _rotate(session, T0, wrapping=wrapping_keyring([NEWER_SECRET, SECRET]))
    assert cache_without_old_secret.get(factory, T0).key_ids == stale.key_ids


def test_negative_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        RevisionKeyCache(WRAP, ttl=-SECOND)
