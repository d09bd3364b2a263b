"""Signing keys: the system token key and each realm's certificate keys, with rotation.

A realm's newest key that is already active signs certificates. Rotation adds a key that
becomes active only after ``signing_key_activation_delay``, during which ``/jwks/{realm}``
already publishes it, so key servers that refresh their JWKS know it before it is used. The
keys it replaces stay published until every certificate they signed has expired.

Signing and verifying read the keys through the context's cache (see
:mod:`verification.cache`): a process notices a key added or retired elsewhere within the
cache TTL, which is far shorter than the activation delay. When the cache knows no usable
key, the database is asked again before giving up or creating one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from crypto.randomness import random_bytes
from crypto.signing import Signer, load_public_key
from crypto.tokens import jwk_from_public_key
from verification import store
from verification.cache import RealmView, SigningKeySnapshot
from verification.context import VerificationContext
from verification.errors import VerificationError
from verification.models import SigningKey
from verification.service import audit

TOKEN = "token"  # noqa: S105 - a key purpose, not a secret
CERTIFICATE = "certificate"
#: Set in ``session.info`` once the session has created or changed a key: what it reads
#: afterwards may roll back, so it is not cached.
_KEYS_CHANGED = "verification_signing_keys_changed"


class NoSigningKey(VerificationError):  # noqa: N818 - names the missing thing
    """No key is active yet (a realm whose only key is still in its activation delay)."""


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    signer: Signer


def _create(
    session: Session,
    context: VerificationContext,
    *,
    purpose: str,
    realm_id: int | None,
    now: datetime,
    active_at: datetime,
) -> SigningKey:
    version = store.count_signing_keys(session, purpose=purpose, realm_id=realm_id) + 1
    kid = f"t{version}" if realm_id is None else f"r{realm_id}v{version}"
    # A random suffix keeps names unique even when two realms' keys are made at once.
    reference = context.key_store.create(
        session, f"{purpose}-{kid}-{random_bytes(4).hex()}".lower(), now=now
    )
    public_pem = context.key_store.signer(session, reference).public_key_pem().decode("ascii")
    _keys_changed(session, context, purpose=purpose, realm_id=realm_id)
    return store.add_signing_key(
        session,
        SigningKey(
            realm_id=realm_id,
            purpose=purpose,
            kid=kid,
            key_reference=reference,
            public_key_pem=public_pem,
            created_at=now,
            active_at=active_at,
        ),
    )


def _keys_changed(
    session: Session, context: VerificationContext, *, purpose: str, realm_id: int | None
) -> None:
    session.info[_KEYS_CHANGED] = True
    context.caches.signing_keys.discard((purpose, realm_id))


def _snapshots(
    session: Session,
    context: VerificationContext,
    *,
    purpose: str,
    realm_id: int | None,
    now: datetime,
    fresh: bool = False,
) -> tuple[SigningKeySnapshot, ...]:
    """The keys of one purpose and realm not retired when read, newest first (cached)."""
    cache = context.caches.signing_keys
    if not fresh:
        cached = cache.get((purpose, realm_id))
        if cached is not None:
            return cached
    rows = store.signing_keys(session, purpose=purpose, realm_id=realm_id, now=now)
    snapshots = tuple(SigningKeySnapshot.of(row) for row in rows)
    if not session.info.get(_KEYS_CHANGED):
        cache.put((purpose, realm_id), snapshots)
    return snapshots


def _newest_active(
    keys: tuple[SigningKeySnapshot, ...], now: datetime
) -> SigningKeySnapshot | None:
    # The keys come newest (highest id) first, and max() keeps the first of equals.
    active = [key for key in keys if key.active_at <= now and key.usable_at(now)]
    return max(active, key=lambda key: key.active_at, default=None)


def _active_key(
    session: Session,
    context: VerificationContext,
    *,
    purpose: str,
    realm_id: int | None,
    now: datetime,
) -> SigningKeySnapshot | None:
    cached = _snapshots(session, context, purpose=purpose, realm_id=realm_id, now=now)
    key = _newest_active(cached, now)
    if key is None:  # created or activated since the cache was filled?
        fresh = _snapshots(
            session, context, purpose=purpose, realm_id=realm_id, now=now, fresh=True
        )
        key = _newest_active(fresh, now)
    return key


def active_token_key(
    session: Session, context: VerificationContext, now: datetime
) -> ActiveKey | None:
    """The system key that signs verification tokens, if one exists (reads only)."""
    key = _active_key(session, context, purpose=TOKEN, realm_id=None, now=now)
    if key is None:
        return None
    return ActiveKey(kid=key.kid, signer=context.key_store.signer(session, key.key_reference))


def token_signer(session: Session, context: VerificationContext, now: datetime) -> ActiveKey:
    """The system key that signs verification tokens, created on first use."""
    key = active_token_key(session, context, now)
    if key is not None:
        return key
    created = _create(session, context, purpose=TOKEN, realm_id=None, now=now, active_at=now)
    return ActiveKey(
        kid=created.kid, signer=context.key_store.signer(session, created.key_reference)
    )


def token_public_keys(
    session: Session, context: VerificationContext, now: datetime, *, fresh: bool = False
) -> dict[str, ec.EllipticCurvePublicKey]:
    """Every unretired token key by kid (a token outlives a rotation by up to a day).

    ``fresh`` bypasses the cache, for a token that the cached keys could not verify.
    """
    keys = _snapshots(session, context, purpose=TOKEN, realm_id=None, now=now, fresh=fresh)
    return {key.kid: key.public_key for key in keys if key.usable_at(now)}


def create_first_certificate_key(
    session: Session, context: VerificationContext, realm: RealmView, now: datetime
) -> SigningKey:
    """A new realm's first key is active at once: no key server can have cached another."""
    return _create(session, context, purpose=CERTIFICATE, realm_id=realm.id, now=now, active_at=now)


def certificate_signer(
    session: Session, context: VerificationContext, realm: RealmView, now: datetime
) -> ActiveKey:
    key = _active_key(session, context, purpose=CERTIFICATE, realm_id=realm.id, now=now)
    if key is None:
        raise NoSigningKey("no active certificate signing key for this realm")
    return ActiveKey(kid=key.kid, signer=context.key_store.signer(session, key.key_reference))


def rotate_certificate_key(
    session: Session, context: VerificationContext, realm: RealmView, *, now: datetime, actor: str
) -> SigningKey:
    """Add a key that signs after the activation delay; retire the ones it replaces."""
    active_at = now + context.settings.signing_key_activation_delay
    previous = store.signing_keys(session, purpose=CERTIFICATE, realm_id=realm.id, now=now)
    new_key = _create(
        session, context, purpose=CERTIFICATE, realm_id=realm.id, now=now, active_at=active_at
    )
    # Certificates signed just before the switch must still verify until they expire.
    retire_at = active_at + timedelta(seconds=realm.certificate_lifetime_seconds)
    for key in previous:
        if key.retired_at is None or key.retired_at > retire_at:
            key.retired_at = retire_at
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="rotated certificate signing key",
        target=f"signing_key:{new_key.kid}",
        diff=f"active_at={active_at.isoformat()} retires={','.join(k.kid for k in previous)}",
        now=now,
    )
    return new_key


def realm_jwks(session: Session, realm: RealmView, now: datetime) -> list[dict[str, str]]:
    """The realm's published certificate keys as a bare list of JWKs (what key servers read)."""
    keys = store.signing_keys(session, purpose=CERTIFICATE, realm_id=realm.id, now=now)
    return [
        jwk_from_public_key(load_public_key(key.public_key_pem.encode()), key.kid) for key in keys
    ]


def list_signing_keys(session: Session, *, realm_id: int | None = None) -> list[SigningKey]:
    """Every key not yet purged, retired ones included (their public facts only matter)."""
    return store.all_signing_keys(session, realm_id=realm_id)
