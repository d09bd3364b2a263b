"""What every verification use case needs besides a session: settings, secrets, keys."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from crypto.codes import KeyedHasher, hmac_sha512
from crypto.keystore import FileKeyStore, KeyStore
from exposure.secrets import load_or_create_secret_keys
from verification.cache import Caches, MonotonicClock
from verification.settings import VerificationSettings


@dataclass(frozen=True)
class VerificationContext:
    """Built once at start-up and passed to the service functions."""

    settings: VerificationSettings
    #: Keyed hashes of codes, tokens and API keys (newest secret first, all live ones tried).
    hasher: KeyedHasher
    #: Names rate-limit buckets; derived from the current secret with its own label.
    bucket_secret: bytes
    key_store: KeyStore
    #: What this process read of API keys, realms and signing keys (see verification.cache).
    caches: Caches = field(default_factory=lambda: Caches.create(0))

    @classmethod
    def from_settings(
        cls,
        settings: VerificationSettings,
        data_dir: Path,
        *,
        cache_clock: MonotonicClock = time.monotonic,
    ) -> VerificationContext:
        configured = settings.secret_keys.get_secret_value() if settings.secret_keys else None
        secrets = load_or_create_secret_keys(configured, data_dir / "secrets" / "verification.keys")
        return cls(
            settings=settings,
            hasher=KeyedHasher(secrets),
            bucket_secret=hmac_sha512(secrets[0], b"exposure/verification/rate-limit-buckets"),
            key_store=FileKeyStore(data_dir / "keys" / "verification"),
            caches=Caches.create(settings.cache_ttl.total_seconds(), cache_clock),
        )
