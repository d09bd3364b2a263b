"""What every verification use case needs besides a session: settings, secrets, keys."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from crypto.codes import KeyedHasher, hmac_sha512
from exposure.keys import KeyStore
from verification.cache import Caches, MonotonicClock
from verification.settings import VerificationSettings

#: The purpose of the sealed secrets that codes, tokens and API keys are hashed under.
HASH_SECRET = "hmac"  # noqa: S105 - a purpose name, not a secret


@dataclass(frozen=True)
class VerificationContext:
    """Built once at start-up (by :mod:`verification.bundle`) and passed to the services."""

    settings: VerificationSettings
    #: Keyed hashes of codes, tokens and API keys (newest secret first, all live ones tried).
    hasher: KeyedHasher
    #: Names rate-limit buckets; derived from the current secret with its own label.
    bucket_secret: bytes
    #: The private keys that sign tokens and certificates.
    key_store: KeyStore
    #: What this process read of API keys, realms and signing keys (see verification.cache).
    caches: Caches = field(default_factory=lambda: Caches.create(0))

    @classmethod
    def create(
        cls,
        settings: VerificationSettings,
        *,
        secrets: Sequence[bytes],
        key_store: KeyStore,
        cache_clock: MonotonicClock = time.monotonic,
    ) -> VerificationContext:
        """A context over ``secrets`` (newest first) and ``key_store``."""
        return cls(
            settings=settings,
            hasher=KeyedHasher(secrets),
            bucket_secret=hmac_sha512(secrets[0], b"exposure/verification/rate-limit-buckets"),
            key_store=key_store,
            caches=Caches.create(settings.cache_ttl.total_seconds(), cache_clock),
        )
