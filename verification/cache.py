"""Per-process caches of what the hot path reads on every request but rarely changes.

A verification flow touches the same few rows over and over: the caller's API key and its
realm, the token signing keys and the realm's certificate keys. Reading them from the
database on every request cost more than the work itself, so each process keeps what it
read for :attr:`VerificationSettings.cache_ttl` (``EXPOSURE_VERIFICATION_CACHE_TTL``) and
then reads it again. That TTL is the longest a change made elsewhere (another process, the
admin CLI, a manual UPDATE) can go unnoticed here:

- a disabled API key keeps authenticating for at most the TTL (its *revocation delay*);
- a changed realm policy (code lengths and lifetimes, daily quota, certificate issuer...)
  applies after at most the TTL;
- a certificate key rotated elsewhere is seen after at most the TTL, which is far shorter
  than the activation delay (at least five minutes) before it may sign, and a key retired
  in the database stays usable for signing for at most the TTL.

What is cached is only ever found through a secret (an API key is looked up by its keyed
hash, and the cached realm is the one that key belongs to), so a cache entry can never
lend one realm's key to another. Nothing that is written on the hot path (codes, tokens,
rate-limit counters) is cached: those stay in the database, in the caller's transaction.
Only values read from committed rows are stored; keys created inside a transaction that
may still roll back are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from crypto.signing import load_public_key
from exposure.cache import DEFAULT_MAX_ENTRIES, TtlCache
from verification.models import ApiKey, Realm, SigningKey

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "ApiKeySnapshot",
    "ApiKeyView",
    "Caches",
    "ClockedCache",
    "MonotonicClock",
    "RealmSnapshot",
    "RealmView",
    "SigningKeySnapshot",
]

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")
#: Seconds from an arbitrary start that never go backwards (``time.monotonic``).
MonotonicClock = Callable[[], float]
# The core cache counts in datetimes; the monotonic seconds are laid out from this origin.
_MONOTONIC_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


class ClockedCache(Generic[Key, Value]):
    """A :class:`~exposure.cache.TtlCache` that reads the time from a monotonic clock.

    Entries expire ``ttl_seconds`` after being stored, however the wall clock moves. A TTL
    of 0 disables it: :meth:`get` never finds anything. ``clock`` is injectable so tests
    can move time without sleeping.
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self._cache: TtlCache[Key, Value] = TtlCache(
            timedelta(seconds=ttl_seconds), max_entries=max_entries
        )
        self._clock = clock

    def _now(self) -> datetime:
        return _MONOTONIC_ORIGIN + timedelta(seconds=self._clock())

    @property
    def enabled(self) -> bool:
        return self._cache.enabled

    def get(self, key: Key) -> Value | None:
        """The value stored under ``key`` if it has not expired yet, else None."""
        return self._cache.get(key, self._now())

    def put(self, key: Key, value: Value) -> None:
        self._cache.put(key, value, self._now())

    def discard(self, key: Key) -> None:
        self._cache.discard(key)

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


class RealmView(Protocol):
    """What the use cases read of a realm: its row, or a :class:`RealmSnapshot` of it."""

    @property
    def id(self) -> int: ...
    @property
    def short_code_length(self) -> int: ...
    @property
    def short_code_minutes(self) -> int: ...
    @property
    def long_code_length(self) -> int: ...
    @property
    def long_code_minutes(self) -> int: ...
    @property
    def allowed_test_types(self) -> str: ...
    @property
    def require_date(self) -> bool: ...
    @property
    def certificate_issuer(self) -> str: ...
    @property
    def certificate_audience(self) -> str: ...
    @property
    def certificate_lifetime_seconds(self) -> int: ...
    @property
    def daily_issue_limit(self) -> int: ...


class ApiKeyView(Protocol):
    """What the use cases read of an API key: its row, or an :class:`ApiKeySnapshot`."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RealmSnapshot:
    """A realm's settings as read at one moment; immutable, so threads may share it."""

    id: int
    name: str
    short_code_length: int
    short_code_minutes: int
    long_code_length: int
    long_code_minutes: int
    allowed_test_types: str
    require_date: bool
    certificate_issuer: str
    certificate_audience: str
    certificate_lifetime_seconds: int
    daily_issue_limit: int
    disabled: bool = False

    @classmethod
    def of(cls, realm: Realm) -> RealmSnapshot:
        return cls(
            id=realm.id,
            name=realm.name,
            short_code_length=realm.short_code_length,
            short_code_minutes=realm.short_code_minutes,
            long_code_length=realm.long_code_length,
            long_code_minutes=realm.long_code_minutes,
            allowed_test_types=realm.allowed_test_types,
            require_date=realm.require_date,
            certificate_issuer=realm.certificate_issuer,
            certificate_audience=realm.certificate_audience,
            certificate_lifetime_seconds=realm.certificate_lifetime_seconds,
            daily_issue_limit=realm.daily_issue_limit,
            disabled=realm.disabled_at is not None,
        )


@dataclass(frozen=True, slots=True)
class ApiKeySnapshot:
    """What authentication needs of an API key; never its hash or preview."""

    id: int
    realm_id: int
    kind: str
    disabled: bool

    @classmethod
    def of(cls, api_key: ApiKey) -> ApiKeySnapshot:
        return cls(
            id=api_key.id,
            realm_id=api_key.realm_id,
            kind=api_key.kind,
            disabled=api_key.disabled_at is not None,
        )


@dataclass(frozen=True, slots=True)
class SigningKeySnapshot:
    """A signing key's row, with its public key already parsed (verifying needs it)."""

    kid: str
    key_reference: str
    public_key: ec.EllipticCurvePublicKey
    active_at: datetime
    retired_at: datetime | None

    @classmethod
    def of(cls, key: SigningKey) -> SigningKeySnapshot:
        return cls(
            kid=key.kid,
            key_reference=key.key_reference,
            public_key=load_public_key(key.public_key_pem.encode()),
            active_at=key.active_at,
            retired_at=key.retired_at,
        )

    def usable_at(self, now: datetime) -> bool:
        """Not retired at ``now`` (it may verify); signing also needs ``active_at <= now``."""
        return self.retired_at is None or self.retired_at > now


@dataclass(frozen=True)
class Caches:
    """The caches of one process, built once with the context."""

    #: By the API key's keyed hash under the current secret: the key and its realm.
    api_keys: ClockedCache[bytes, tuple[ApiKeySnapshot, RealmSnapshot]]
    #: By (purpose, realm id or None): every key of that purpose not retired when read.
    signing_keys: ClockedCache[tuple[str, int | None], tuple[SigningKeySnapshot, ...]]

    @classmethod
    def create(cls, ttl_seconds: float, clock: MonotonicClock = time.monotonic) -> Caches:
        return cls(
            api_keys=ClockedCache(ttl_seconds, clock=clock),
            signing_keys=ClockedCache(ttl_seconds, clock=clock),
        )
