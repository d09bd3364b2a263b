"""Per-process caches: expiry on an injected clock, revocation delay, no realm crossing."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.unit.verification.conftest import Clock, make_context
from verification.cache import Caches, ClockedCache
from verification.context import VerificationContext
from verification.errors import Unauthorized
from verification.models import Realm
from verification.service import certificates, codes, realms, signing_keys
from verification.service.codes import IssueRequest
from verification.service.realms import ApiKeyKind, NewRealm
from verification.settings import VerificationSettings

EKEYHMAC = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
TTL = timedelta(seconds=10)


@dataclass
class Ticks:
    """A monotonic clock that tests move by hand."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def cached_context(ticks: Ticks) -> VerificationContext:
    return make_context(VerificationSettings(cache_ttl=TTL), cache_clock=ticks)


@pytest.fixture
def cached_realm(
    db_session: Session, cached_context: VerificationContext, clock: Clock
) -> NewRealm:
    created = realms.create_realm(db_session, cached_context, name="lab", now=clock(), actor="t")
    _next_transaction(db_session)
    return created


def _next_transaction(session: Session) -> None:
    """Forget that this session created keys, as a session of a later request would."""
    session.info.clear()


def test_entries_expire_after_the_ttl(ticks: Ticks) -> None:
    cache: ClockedCache[str, int] = ClockedCache(10, clock=ticks)
    cache.put("a", 1)

    ticks.advance(9.999)
    assert cache.get("a") == 1
    ticks.advance(0.001)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_zero_ttl_caches_nothing(ticks: Ticks) -> None:
    cache: ClockedCache[str, int] = ClockedCache(0, clock=ticks)
    cache.put("a", 1)

    assert cache.get("a") is None
    assert not cache.enabled


def test_the_oldest_entries_go_first_when_full(ticks: Ticks) -> None:
    cache: ClockedCache[int, int] = ClockedCache(10, max_entries=3, clock=ticks)
    for key in range(5):
        cache.put(key, key)

    assert [cache.get(key) for key in range(5)] == [None, None, 2, 3, 4]


def test_nonsense_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ClockedCache(-1)
    with pytest.raises(ValueError, match="max_entries"):
        ClockedCache(1, max_entries=0)


def test_concurrent_use_keeps_the_bound(ticks: Ticks) -> None:
    cache: ClockedCache[int, int] = ClockedCache(10, max_entries=50, clock=ticks)

    def churn(offset: int) -> None:
        for key in range(offset, offset + 2_000):
            cache.put(key, key)
            cache.get(key - 7)

    threads = [threading.Thread(target=churn, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cache) == 50


def test_the_default_context_caches_for_the_settings_ttl() -> None:
    context = make_context()

    assert context.settings.cache_ttl == timedelta(seconds=10)
    assert context.caches.api_keys.enabled
    assert context.caches.signing_keys.enabled


def test_cache_ttl_is_bounded() -> None:
    with pytest.raises(ValueError, match="cache_ttl"):
        VerificationSettings(cache_ttl=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("2.5", 2.5), ("30", 30.0), ("PT20S", 20.0)]
)
def test_cache_ttl_reads_plain_seconds_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("EXPOSURE_VERIFICATION_CACHE_TTL", text)

    settings = VerificationSettings()

    assert settings.cache_ttl == timedelta(seconds=seconds)


def _authenticate(
    session: Session, context: VerificationContext, key: str, kind: ApiKeyKind
) -> tuple[int, int]:
    record, realm = realms.authenticate(session, context, api_key=key, kind=kind)
    return record.id, realm.id


def test_a_disabled_key_stops_working_once_the_ttl_has_passed(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    ticks: Ticks,
    clock: Clock,
) -> None:
    device = cached_realm.device_key
    _authenticate(db_session, cached_context, device.plaintext, ApiKeyKind.DEVICE)
    realms.disable_api_key(db_session, api_key_id=device.record.id, now=clock(), actor="t")

    # Within the TTL this process still trusts what it read: the documented revocation delay.
    ticks.advance(TTL.total_seconds() - 1)
    assert _authenticate(db_session, cached_context, device.plaintext, ApiKeyKind.DEVICE) == (
        device.record.id,
        cached_realm.realm.id,
    )
    ticks.advance(1)
    with pytest.raises(Unauthorized):
        _authenticate(db_session, cached_context, device.plaintext, ApiKeyKind.DEVICE)


def test_a_disabled_key_is_refused_at_once_when_not_cached(
    db_session: Session, cached_context: VerificationContext, cached_realm: NewRealm, clock: Clock
) -> None:
    device = cached_realm.device_key
    realms.disable_api_key(db_session, api_key_id=device.record.id, now=clock(), actor="t")

    with pytest.raises(Unauthorized):
        _authenticate(db_session, cached_context, device.plaintext, ApiKeyKind.DEVICE)
    # The refusal itself is cached too (disabling is permanent), never an acceptance.
    with pytest.raises(Unauthorized):
        _authenticate(db_session, cached_context, device.plaintext, ApiKeyKind.DEVICE)


def test_cached_keys_never_cross_realms_or_kinds(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    clock: Clock,
) -> None:
    other = realms.create_realm(db_session, cached_context, name="other", now=clock(), actor="t")
    keys = {
        (cached_realm.admin_key.plaintext, ApiKeyKind.ADMIN): cached_realm,
        (cached_realm.device_key.plaintext, ApiKeyKind.DEVICE): cached_realm,
        (other.admin_key.plaintext, ApiKeyKind.ADMIN): other,
        (other.device_key.plaintext, ApiKeyKind.DEVICE): other,
    }
    for _ in range(2):  # the second round is served from the cache
        for (key, kind), owner in keys.items():
            _, realm_id = _authenticate(db_session, cached_context, key, kind)
            assert realm_id == owner.realm.id
            wrong_kind = ApiKeyKind.DEVICE if kind is ApiKeyKind.ADMIN else ApiKeyKind.ADMIN
            with pytest.raises(Unauthorized):
                _authenticate(db_session, cached_context, key, wrong_kind)
    assert len(cached_context.caches.api_keys) == 4
    # A key that differs in one character is a different key, cached or not.
    with pytest.raises(Unauthorized):
        _authenticate(
            db_session, cached_context, other.device_key.plaintext[:-1] + "!", ApiKeyKind.DEVICE
        )


def test_unknown_keys_are_not_cached(
    db_session: Session, cached_context: VerificationContext, cached_realm: NewRealm
) -> None:
    for attempt in range(20):
        with pytest.raises(Unauthorized):
            _authenticate(db_session, cached_context, f"guess-{attempt}", ApiKeyKind.DEVICE)

    assert len(cached_context.caches.api_keys) == 0


def test_a_new_key_works_at_once(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    clock: Clock,
) -> None:
    _authenticate(db_session, cached_context, cached_realm.device_key.plaintext, ApiKeyKind.DEVICE)
    new_key = realms.create_api_key(
        db_session,
        cached_context,
        realm=cached_realm.realm,
        kind=ApiKeyKind.DEVICE,
        name="second phone app",
        now=clock(),
        actor="t",
    )

    assert _authenticate(db_session, cached_context, new_key.plaintext, ApiKeyKind.DEVICE) == (
        new_key.record.id,
        cached_realm.realm.id,
    )


def test_realm_policy_changes_apply_after_the_ttl(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    ticks: Ticks,
) -> None:
    admin = cached_realm.admin_key.plaintext
    realms.authenticate(db_session, cached_context, api_key=admin, kind=ApiKeyKind.ADMIN)
    db_session.execute(update(Realm).values(daily_issue_limit=7))

    _, before = realms.authenticate(
        db_session, cached_context, api_key=admin, kind=ApiKeyKind.ADMIN
    )
    ticks.advance(TTL.total_seconds())
    _, after = realms.authenticate(db_session, cached_context, api_key=admin, kind=ApiKeyKind.ADMIN)

    assert (before.daily_issue_limit, after.daily_issue_limit) == (20_000, 7)


def _token(session: Session, context: VerificationContext, realm: NewRealm, clock: Clock) -> str:
    request = IssueRequest("confirmed", "2026-11-20", "", 0, "", "")
    issued = codes.issue_code(
        session,
        context,
        realm=realm.realm,
        api_key=realm.admin_key.record,
        request=request,
        now=clock(),
    )
    return codes.verify_code(
        session, context, realm=realm.realm, code=issued.code, accept=[], now=clock()
    ).token


def test_a_token_key_created_elsewhere_is_found_despite_the_cache(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    clock: Clock,
    tmp_path: Path,
) -> None:
    # This process has cached the token keys (t1) by verifying a first token.
    first = _token(db_session, cached_context, cached_realm, clock)
    certificates.issue_certificate(
        db_session,
        cached_context,
        realm=cached_realm.realm,
        token=first,
        ekeyhmac=EKEYHMAC,
        now=clock(),
    )
    cached = cached_context.caches.signing_keys.get((signing_keys.TOKEN, None))
    assert cached is not None
    assert [key.kid for key in cached] == ["t1"]
    # Another process, with its own caches, adds a newer token key and signs with it.
    elsewhere = VerificationContext(
        settings=cached_context.settings,
        hasher=cached_context.hasher,
        bucket_secret=cached_context.bucket_secret,
        key_store=cached_context.key_store,
        caches=Caches.create(0),
    )
    signing_keys._create(
        db_session,
        elsewhere,
        purpose=signing_keys.TOKEN,
        realm_id=None,
        now=clock(),
        active_at=clock(),
    )
    clock.advance(timedelta(seconds=1))
    token = _token(db_session, elsewhere, cached_realm, clock)
    assert signing_keys.token_signer(db_session, elsewhere, clock()).kid == "t2"

    certificate = certificates.issue_certificate(
        db_session,
        cached_context,
        realm=cached_realm.realm,
        token=token,
        ekeyhmac=EKEYHMAC,
        now=clock(),
    )

    assert certificate.count(".") == 2


def test_rotation_elsewhere_is_seen_within_the_ttl(
    db_session: Session,
    cached_context: VerificationContext,
    cached_realm: NewRealm,
    clock: Clock,
    ticks: Ticks,
) -> None:
    realm = cached_realm.realm
    old = signing_keys.certificate_signer(db_session, cached_context, realm, clock()).kid
    uncached = VerificationContext(
        settings=cached_context.settings,
        hasher=cached_context.hasher,
        bucket_secret=cached_context.bucket_secret,
        key_store=cached_context.key_store,
    )
    new = signing_keys.rotate_certificate_key(db_session, uncached, realm, now=clock(), actor="t")
    _next_transaction(db_session)
    clock.advance(cached_context.settings.signing_key_activation_delay)

    # Still the cached view: the old key, which stays published long after this moment.
    assert signing_keys.certificate_signer(db_session, cached_context, realm, clock()).kid == old
    assert signing_keys.realm_jwks(db_session, realm, clock())[-1]["kid"] == old
    ticks.advance(TTL.total_seconds())

    assert signing_keys.certificate_signer(db_session, cached_context, realm, clock()).kid == (
        new.kid
    )


def test_keys_read_after_a_change_in_the_same_transaction_are_not_cached(
    db_session: Session, cached_context: VerificationContext, cached_realm: NewRealm, clock: Clock
) -> None:
    realm = cached_realm.realm
    savepoint = db_session.begin_nested()
    signing_keys.rotate_certificate_key(db_session, cached_context, realm, now=clock(), actor="t")
    signing_keys.certificate_signer(db_session, cached_context, realm, clock())
    savepoint.rollback()

    # What that transaction saw may never have existed: nothing of it was kept.
    assert cached_context.caches.signing_keys.get((signing_keys.CERTIFICATE, realm.id)) is None
