"""Auditor API keys: who may read a service's retention log and compliance report over HTTP.

A key is 32 random bytes (base64url), shown once and stored as a keyed hash under a secret
of the service's own (kept in ``sealed_keys``). One key may be registered with several
services (``exposure admin auditor-key create`` registers it with every service it can
reach), each keeping its own hash.

Example::

    hasher = auditor_hasher(keys, session, now)
    plaintext = new_auditor_key()
    register(session, hasher, service="keyserver", name="DPO", plaintext=plaintext, now=now)
    assert authorize(session, hasher, service="keyserver", api_key=plaintext)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from crypto.codes import KeyedHasher
from crypto.encoding import b64url_encode
from crypto.randomness import random_bytes
from exposure.auditors import store
from exposure.auditors.models import AuditorKey
from exposure.db import SessionFactory, unit_of_work
from exposure.keys import ServiceKeyStore

__all__ = [
    "AUDITOR_KEY_SECRET",
    "AuditorKeyInfo",
    "auditor_authorizer",
    "auditor_hasher",
    "authorize",
    "disable",
    "list_keys",
    "new_auditor_key",
    "register",
]

#: The purpose of the sealed secret auditor keys are hashed under.
AUDITOR_KEY_SECRET = "auditor-key-hmac"  # noqa: S105 - a purpose name, not a secret
_KEY_BYTES = 32
_PREVIEW_LENGTH = 6
#: Longer values cannot be keys; they are refused before any hashing.
_MAX_KEY_LENGTH = 100


@dataclass(frozen=True)
class AuditorKeyInfo:
    id: int
    service: str
    name: str
    preview: str
    created_at: datetime
    disabled_at: datetime | None


def _info(key: AuditorKey) -> AuditorKeyInfo:
    return AuditorKeyInfo(
        id=key.id,
        service=key.service,
        name=key.name,
        preview=key.preview,
        created_at=key.created_at,
        disabled_at=key.disabled_at,
    )


def auditor_hasher(keys: ServiceKeyStore, session: Session, now: datetime) -> KeyedHasher:
    """The keyed hash of the service's auditor keys (its secret is made on first use)."""
    return KeyedHasher(keys.secrets(session, AUDITOR_KEY_SECRET, now=now))


def new_auditor_key() -> str:
    return b64url_encode(random_bytes(_KEY_BYTES))


def register(
    session: Session,
    hasher: KeyedHasher,
    *,
    service: str,
    name: str,
    plaintext: str,
    now: datetime,
) -> AuditorKeyInfo:
    """Store ``plaintext``'s keyed hash as an auditor key of ``service``."""
    if not 1 <= len(name) <= 100:
        raise ValueError("an auditor key's name has 1 to 100 characters")
    key = store.add_key(
        session,
        AuditorKey(
            service=service,
            name=name,
            key_hmac=hasher.digest(plaintext),
            preview=plaintext[:_PREVIEW_LENGTH],
            created_at=now,
            disabled_at=None,
        ),
    )
    return _info(key)


def authorize(session: Session, hasher: KeyedHasher, *, service: str, api_key: str) -> bool:
    """Whether ``api_key`` is an enabled auditor key of ``service``."""
    if not api_key or len(api_key) > _MAX_KEY_LENGTH:
        return False
    return store.enabled_key_matching(session, service, hasher.candidates(api_key)) is not None


def list_keys(session: Session, *, service: str) -> list[AuditorKeyInfo]:
    return [_info(key) for key in store.keys_of_service(session, service)]


def disable(session: Session, *, service: str, key_id: int, now: datetime) -> bool:
    """Disable an enabled key at once; return whether there was one."""
    return store.disable_key(session, service, key_id, now)


def auditor_authorizer(
    service: str, session_factory: SessionFactory, keys: ServiceKeyStore, now: datetime
) -> Callable[[str], bool]:
    """A check of ``service``'s auditor keys; its hashing secret is read (or made) now."""
    with unit_of_work(session_factory) as session:
        hasher = auditor_hasher(keys, session, now)

    def check(api_key: str) -> bool:
        with session_factory() as session:
            return authorize(session, hasher, service=service, api_key=api_key)

    return check
