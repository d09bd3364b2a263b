"""Realms and their API keys.

An API key is shown exactly once, when it is created; the database keeps its keyed hash and
a six-character preview, so a stolen dump cannot be replayed against the API.

Authentication reads a key and its realm through the context's cache, keyed by the key's
keyed hash, so a disabled key keeps working for at most the cache TTL in processes that
have seen it recently (see :mod:`verification.cache`). Unknown keys are never cached: a new
key works at once, and a stream of wrong keys cannot crowd out the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from crypto.encoding import b64url_encode
from crypto.randomness import random_bytes
from exposure.api.verification import TestType
from exposure.text import has_control_character
from verification import store
from verification.cache import ApiKeySnapshot, RealmSnapshot, RealmView
from verification.context import VerificationContext
from verification.errors import (
    ApiKeyNotFound,
    InvalidRealmPolicy,
    RealmNotFound,
    Unauthorized,
    VerificationError,
)
from verification.limits import (
    LONG_CODE_MAX_LENGTH,
    LONG_CODE_MAX_MINUTES,
    LONG_CODE_MIN_LENGTH,
    LONG_CODE_MIN_MINUTES,
    SHORT_CODE_MAX_LENGTH,
    SHORT_CODE_MAX_MINUTES,
    SHORT_CODE_MIN_LENGTH,
    SHORT_CODE_MIN_MINUTES,
)
from verification.models import ApiKey, Realm
from verification.service import audit
from verification.service.signing_keys import create_first_certificate_key, token_signer

API_KEY_BYTES = 32
PREVIEW_LENGTH = 6
DEFAULT_AUDIENCE = "exposure-notifications-server"


class ApiKeyKind(StrEnum):
    ADMIN = "admin"
    DEVICE = "device"
    #: Read-only access to the retention log and compliance report (``/audit/...``).
    AUDITOR = "auditor"


class RealmExists(VerificationError):  # noqa: N818
    status = 409


@dataclass(frozen=True)
class RealmPolicy:
    """How a realm issues codes and certificates; the defaults are the reference's."""

    short_code_length: int = 8
    short_code_minutes: int = 15
    long_code_length: int = 16
    long_code_minutes: int = 24 * 60
    allow_user_report: bool = False
    require_date: bool = True
    certificate_issuer: str | None = None
    certificate_audience: str = DEFAULT_AUDIENCE
    certificate_lifetime_seconds: int = 900
    daily_issue_limit: int = 20_000

    def validate(self) -> None:
        """Refuse settings that would make codes guessable or certificates long-lived."""
        checks = (
            (
                SHORT_CODE_MIN_LENGTH <= self.short_code_length <= SHORT_CODE_MAX_LENGTH,
                f"short codes need {SHORT_CODE_MIN_LENGTH} to {SHORT_CODE_MAX_LENGTH} digits",
            ),
            (
                LONG_CODE_MIN_LENGTH <= self.long_code_length <= LONG_CODE_MAX_LENGTH,
                f"long codes need {LONG_CODE_MIN_LENGTH} to {LONG_CODE_MAX_LENGTH} characters",
            ),
            (
                SHORT_CODE_MIN_MINUTES <= self.short_code_minutes <= SHORT_CODE_MAX_MINUTES,
                f"short codes live {SHORT_CODE_MIN_MINUTES} to {SHORT_CODE_MAX_MINUTES} minutes",
            ),
            (
                LONG_CODE_MIN_MINUTES <= self.long_code_minutes <= LONG_CODE_MAX_MINUTES,
                f"long codes live {LONG_CODE_MIN_MINUTES} minute to "
                f"{LONG_CODE_MAX_MINUTES // 60} hours",
            ),
            (
                self.long_code_minutes >= self.short_code_minutes,
                "long codes must not expire before short codes",
            ),
            (
                60 <= self.certificate_lifetime_seconds <= 3600,
                "certificates live 60 to 3600 seconds",
            ),
            (1 <= self.daily_issue_limit <= 10_000_000, "the daily quota is 1 to 10,000,000"),
            (0 < len(self.certificate_audience) <= 255, "the audience has 1 to 255 characters"),
            (
                self.certificate_issuer is None or 0 < len(self.certificate_issuer) <= 255,
                "the issuer has 1 to 255 characters",
            ),
        )
        for passed, message in checks:
            if not passed:
                raise InvalidRealmPolicy(message)


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key: ``plaintext`` is never stored and never shown again."""

    record: ApiKey
    plaintext: str


@dataclass(frozen=True)
class NewRealm:
    realm: Realm
    admin_key: NewApiKey
    device_key: NewApiKey


def create_api_key(
    session: Session,
    context: VerificationContext,
    *,
    realm: RealmView,
    kind: ApiKeyKind,
    name: str,
    now: datetime,
    actor: str,
) -> NewApiKey:
    plaintext = b64url_encode(random_bytes(API_KEY_BYTES))
    record = store.add_api_key(
        session,
        ApiKey(
            realm_id=realm.id,
            kind=kind.value,
            name=name,
            key_hmac=context.hasher.digest(plaintext),
            preview=plaintext[:PREVIEW_LENGTH],
            created_at=now,
        ),
    )
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action=f"created {kind.value} API key",
        target=f"api_key:{record.id}",
        diff=f"name={name} preview={record.preview}",
        now=now,
    )
    return NewApiKey(record=record, plaintext=plaintext)


def create_realm(
    session: Session,
    context: VerificationContext,
    *,
    name: str,
    now: datetime,
    actor: str,
    policy: RealmPolicy | None = None,
) -> NewRealm:
    """Create a realm with its first certificate key and one admin and one device key."""
    policy = policy or RealmPolicy()
    if not 0 < len(name) <= 100:
        raise InvalidRealmPolicy("a realm name has 1 to 100 characters")
    policy.validate()
    if store.get_realm_by_name(session, name) is not None:
        raise RealmExists(f"realm {name!r} already exists")
    allowed = [TestType.CONFIRMED, TestType.LIKELY, TestType.NEGATIVE]
    if policy.allow_user_report:
        allowed.append(TestType.USER_REPORT)
    realm = store.add_realm(
        session,
        Realm(
            name=name,
            short_code_length=policy.short_code_length,
            short_code_minutes=policy.short_code_minutes,
            long_code_length=policy.long_code_length,
            long_code_minutes=policy.long_code_minutes,
            allowed_test_types=",".join(allowed),
            require_date=policy.require_date,
            certificate_issuer=policy.certificate_issuer or f"exposure-verification/{name}",
            certificate_audience=policy.certificate_audience,
            certificate_lifetime_seconds=policy.certificate_lifetime_seconds,
            daily_issue_limit=policy.daily_issue_limit,
            created_at=now,
        ),
    )
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="created realm",
        target=f"realm:{realm.id}",
        diff=f"name={name} issuer={realm.certificate_issuer}",
        now=now,
    )
    create_first_certificate_key(session, context, realm, now)
    # Make sure the system token key exists before any phone can race to create it.
    token_signer(session, context, now)
    admin_key = create_api_key(
        session, context, realm=realm, kind=ApiKeyKind.ADMIN, name="admin", now=now, actor=actor
    )
    device_key = create_api_key(
        session, context, realm=realm, kind=ApiKeyKind.DEVICE, name="device", now=now, actor=actor
    )
    return NewRealm(realm=realm, admin_key=admin_key, device_key=device_key)


def policy_of(realm: Realm) -> RealmPolicy:
    """The policy ``realm`` runs under now, as :meth:`RealmPolicy.validate` checks it."""
    return RealmPolicy(
        short_code_length=realm.short_code_length,
        short_code_minutes=realm.short_code_minutes,
        long_code_length=realm.long_code_length,
        long_code_minutes=realm.long_code_minutes,
        allow_user_report=TestType.USER_REPORT in realm.allowed_test_types.split(","),
        require_date=realm.require_date,
        certificate_issuer=realm.certificate_issuer,
        certificate_audience=realm.certificate_audience,
        certificate_lifetime_seconds=realm.certificate_lifetime_seconds,
        daily_issue_limit=realm.daily_issue_limit,
    )


def change_code_limits(
    session: Session,
    realm: Realm,
    *,
    short_code_minutes: int,
    long_code_minutes: int,
    daily_issue_limit: int,
    now: datetime,
    actor: str,
) -> bool:
    """Set how long ``realm``'s new codes live and how many it issues a day, within the
    bounds a new realm has (:meth:`RealmPolicy.validate`, raising
    :class:`InvalidRealmPolicy`); return False when nothing changed.

    Codes already issued keep their expiry. Processes that cached the realm for an API key
    see the change within the cache's TTL.
    """
    wanted = replace(
        policy_of(realm),
        short_code_minutes=short_code_minutes,
        long_code_minutes=long_code_minutes,
        daily_issue_limit=daily_issue_limit,
    )
    wanted.validate()
    before = (realm.short_code_minutes, realm.long_code_minutes, realm.daily_issue_limit)
    after = (short_code_minutes, long_code_minutes, daily_issue_limit)
    if before == after:
        return False
    names = ("short_code_minutes", "long_code_minutes", "daily_issue_limit")
    realm.short_code_minutes, realm.long_code_minutes, realm.daily_issue_limit = after
    session.flush()
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="changed realm code limits",
        target=f"realm:{realm.id}",
        diff=" ".join(
            f"{name}={old}->{new}"
            for name, old, new in zip(names, before, after, strict=True)
            if old != new
        ),
        now=now,
    )
    return True


def find_realm(session: Session, name_or_id: str) -> Realm:
    """A realm by numeric id or by name; raise :class:`RealmNotFound` otherwise.

    ``name_or_id`` may come straight from a URL, so nothing in it reaches SQL unchecked:
    only ASCII digits that fit an int32 column are an id (``"²".isdigit()`` is true, and
    PostgreSQL refuses integers past 2**31), and a name with a control character names no
    realm (PostgreSQL refuses NUL). The message never repeats what was asked for.
    """
    numeric = name_or_id.isascii() and name_or_id.isdigit() and len(name_or_id) <= 9
    realm = store.get_realm(session, int(name_or_id)) if numeric else None
    if realm is None and not has_control_character(name_or_id):
        realm = store.get_realm_by_name(session, name_or_id)
    if realm is None:
        raise RealmNotFound("no such realm")
    return realm


def list_realms(session: Session) -> list[Realm]:
    return store.list_realms(session)


def disable_realm(session: Session, realm: Realm, *, now: datetime, actor: str) -> bool:
    """Stop every API key of ``realm`` from working (its published keys stay, so
    certificates already issued still verify); return False if it was already disabled."""
    if realm.disabled_at is not None:
        return False
    realm.disabled_at = now
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="disabled realm",
        target=f"realm:{realm.id}",
        diff="",
        now=now,
    )
    return True


def list_api_keys(session: Session, *, realm_id: int | None = None) -> list[ApiKey]:
    """API keys (never their hashes), oldest first; of one realm when given."""
    return store.list_api_keys(session, realm_id=realm_id)


def get_api_key(session: Session, api_key_id: int) -> ApiKey:
    record = store.get_api_key(session, api_key_id)
    if record is None:
        raise ApiKeyNotFound(f"no API key {api_key_id}")
    return record


def _cache_key(api_key: str, context: VerificationContext) -> list[bytes]:
    if not api_key or len(api_key) > 256:
        raise Unauthorized("missing or invalid API key")
    return context.hasher.candidates(api_key)


def _admitted(
    found: tuple[ApiKeySnapshot, RealmSnapshot], kind: ApiKeyKind
) -> tuple[ApiKeySnapshot, RealmSnapshot]:
    key, key_realm = found
    if key.disabled or key_realm.disabled or key.kind != kind.value:
        raise Unauthorized("missing or invalid API key")
    return key, key_realm


def authenticate_cached(
    context: VerificationContext, *, api_key: str, kind: ApiKeyKind
) -> tuple[ApiKeySnapshot, RealmSnapshot] | None:
    """:func:`authenticate` from the per-process cache alone: None when the cache does not
    know ``api_key`` (then :func:`authenticate` asks the database)."""
    candidates = _cache_key(api_key, context)
    found = context.caches.api_keys.get(candidates[0])
    return None if found is None else _admitted(found, kind)


def authenticate(
    session: Session, context: VerificationContext, *, api_key: str, kind: ApiKeyKind
) -> tuple[ApiKeySnapshot, RealmSnapshot]:
    """The enabled key of ``kind`` that ``api_key`` is, and its realm; else Unauthorized."""
    candidates = _cache_key(api_key, context)
    # The hash under the current secret names the entry: only the key itself finds it.
    cache_key = candidates[0]
    found = context.caches.api_keys.get(cache_key)
    if found is None:
        record = store.find_api_key(session, candidates)
        if record is None:
            raise Unauthorized("missing or invalid API key")
        realm = store.get_realm(session, record.realm_id)
        if realm is None:  # impossible with the foreign key; fail closed anyway
            raise Unauthorized("missing or invalid API key")
        found = (ApiKeySnapshot.of(record), RealmSnapshot.of(realm))
        context.caches.api_keys.put(cache_key, found)
    return _admitted(found, kind)


def disable_api_key(session: Session, *, api_key_id: int, now: datetime, actor: str) -> ApiKey:
    """Stop an API key from working; it cannot be re-enabled (create a new one instead)."""
    record = store.get_api_key(session, api_key_id)
    if record is None:
        raise ApiKeyNotFound(f"no API key {api_key_id}")
    if record.disabled_at is None:
        record.disabled_at = now
        audit.record(
            session,
            realm_id=record.realm_id,
            actor=actor,
            action=f"disabled {record.kind} API key",
            target=f"api_key:{record.id}",
            diff=f"preview={record.preview}",
            now=now,
        )
    return record
