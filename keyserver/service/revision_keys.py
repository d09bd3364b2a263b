"""Revision keys: the AES-256 keys that seal revision tokens, stored sealed in the database.

Every allowed key opens tokens; the newest allowed key seals new ones (reference §2.6). The
rotation job (reference §7, key-rotation) adds a key every ``new_key_period`` and destroys an
older key once the key after it has sealed tokens for ``destroy_after``. With the default of
15 days, the publish age limit, the keys a token sealed under the older key lists have aged
out of revision by then, except a key still valid when the token was issued (up to a day
more) and tokens sealed by a process whose cache had not yet seen the newer key (up to the
cache TTL more): the reference accepts that edge, and so do we.

The keys never reach the database in the clear. Each is sealed under a *wrapping* key
derived from the key server's KEKs (the reference uses a KMS key here), with authenticated
data naming its purpose and row, so a sealed key copied into another row does not open.
The stored form is ``len(wrapping id) || wrapping id || nonce || ciphertext || tag``; the
wrapping id lets a secret be rotated: the job re-seals keys under the newest one.

Example (the request edge caches the ring; the job runner owns the transaction)::

    wrapping = wrapping_keyring(secrets)
    cache = RevisionKeyCache(wrapping)
    ring = cache.get(session_factory, now)          # before the request's own transaction
    with unit_of_work(session_factory) as session:  # every few hours, under a lease
        rotate_revision_keys(session, wrapping, now, new_key_period=..., destroy_after=...)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from sqlalchemy.orm import Session

from crypto.errors import InvalidKey, InvalidSealedData
from crypto.randomness import random_bytes
from crypto.sealing import (
    KEY_LENGTH,
    MINIMUM_SECRET_LENGTH,
    Keyring,
    derived_keyring,
    open_sealed,
    seal,
)
from exposure.cache import TtlCache
from exposure.db.unit_of_work import SessionFactory, unit_of_work
from keyserver.errors import PublishError
from keyserver.models import RevisionKey
from keyserver.store import revision_keys as revision_key_store

__all__ = [
    "REVISION_KEY_CACHE_TTL",
    "WRAPPING_ID_LABEL",
    "WRAPPING_KEY_LABEL",
    "RevisionKeyCache",
    "RevisionKeyUnavailable",
    "RotationReport",
    "create_revision_key",
    "load_keyring",
    "rewrap_revision_keys",
    "rotate_revision_keys",
    "wrapping_keyring",
]

#: How long a process reuses its opened keys (reference ``REVISION_KEY_CACHE_DURATION``).
REVISION_KEY_CACHE_TTL = timedelta(minutes=1)

#: Labels under which the revision-key wrapping keys and their ids are derived from a KEK.
WRAPPING_KEY_LABEL = b"exposure/keyserver/revision-key-wrap"
WRAPPING_ID_LABEL = b"exposure/keyserver/revision-key-wrap-id"
_SEALED_KEY_AAD_PREFIX = b"exposure/keyserver/revision-key/"
_KEYRING = "keyring"


class RevisionKeyUnavailable(PublishError):  # noqa: N818 - names the condition
    """An allowed revision key cannot be opened: its secret is gone or the row is damaged.

    An operator error (a secret removed too early), never a client's: ``internal_error``.
    """

    def __init__(self, kid: int) -> None:
        super().__init__("revision keys are unavailable")
        self.kid = kid


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What one rotation run changed: kids created, destroyed and re-sealed."""

    created: int | None
    destroyed: tuple[int, ...]
    rewrapped: tuple[int, ...]


def wrapping_keyring(secrets: Sequence[bytes]) -> Keyring:
    """The keys that seal revision keys: one per secret (the key server's KEKs), the first
    (newest) current; each key and its id are derived under labels of their own, so neither
    reveals the secret, the other, or any other key derived from it.

    Raises :class:`ValueError` if there is no secret or one is shorter than 32 bytes.
    """
    try:
        return derived_keyring(secrets, key_label=WRAPPING_KEY_LABEL, id_label=WRAPPING_ID_LABEL)
    except InvalidKey as error:
        raise ValueError(
            f"revision keys need at least one secret of {MINIMUM_SECRET_LENGTH} bytes"
        ) from error


def _sealed_key_aad(kid: int) -> bytes:
    return _SEALED_KEY_AAD_PREFIX + str(kid).encode("ascii")


def _wrap(wrapping: Keyring, kid: int, key: bytes) -> bytes:
    box = seal(wrapping, key, _sealed_key_aad(kid))
    wrapping_id = box.key_id.encode("ascii")
    return bytes([len(wrapping_id)]) + wrapping_id + box.data


def _wrapping_id(sealed_key: bytes) -> str:
    return sealed_key[1 : 1 + sealed_key[0]].decode("ascii", errors="replace")


def _unwrap(wrapping: Keyring, row: RevisionKey) -> bytes:
    sealed = row.sealed_key
    if not sealed:
        raise RevisionKeyUnavailable(row.id)
    try:
        key = open_sealed(
            wrapping, _wrapping_id(sealed), sealed[1 + sealed[0] :], _sealed_key_aad(row.id)
        )
    except InvalidSealedData as error:
        raise RevisionKeyUnavailable(row.id) from error
    if len(key) != KEY_LENGTH:
        raise RevisionKeyUnavailable(row.id)
    return key


def create_revision_key(session: Session, wrapping: Keyring, now: datetime) -> RevisionKey:
    """Add a fresh random key, sealed under the current wrapping key; it is newest from now."""
    row = RevisionKey(sealed_key=None, created_at=now, allowed=True, destroyed_at=None)
    # The row id is the token kid, and the sealed key's authenticated data names it.
    revision_key_store.add_revision_key(session, row)
    row.sealed_key = _wrap(wrapping, row.id, random_bytes(KEY_LENGTH))
    return row


def load_keyring(session: Session, wrapping: Keyring, now: datetime) -> Keyring:
    """Every allowed key, opened; the newest (by ``created_at``, then id) is current.

    Creates the first key when none is allowed, as the reference does. Two processes doing
    that at once may each create one (PostgreSQL); both rows stay allowed, the later id is
    current, and once each reloads, each ring opens the tokens of both.

    Raises :class:`RevisionKeyUnavailable` if an allowed key cannot be opened.
    """
    rows = revision_key_store.allowed_newest_first(session) or [
        create_revision_key(session, wrapping, now)
    ]
    keys = {str(row.id): _unwrap(wrapping, row) for row in rows}
    return Keyring(keys, current=str(rows[0].id))


def rotate_revision_keys(
    session: Session,
    wrapping: Keyring,
    now: datetime,
    *,
    new_key_period: timedelta,
    destroy_after: timedelta,
) -> RotationReport:
    """One run of the key-rotation job (the caller serializes runs with a lease).

    - A new key is created when no key is allowed or the newest is ``new_key_period`` old.
    - A key is destroyed (sealed key erased, no longer allowed) once the next newer allowed
      key has been current for ``destroy_after``; the current key never is.
    - Keys still allowed but sealed under an older wrapping key are re-sealed under the
      current one, so an old server secret can be removed after one run.

    Raises :class:`ValueError` for a period that is not positive, and
    :class:`RevisionKeyUnavailable` if a key to re-seal cannot be opened.
    """
    if new_key_period <= timedelta(0) or destroy_after <= timedelta(0):
        raise ValueError("rotation periods must be positive")
    rows = revision_key_store.allowed_newest_first(session)
    created = None
    if not rows or now - rows[0].created_at >= new_key_period:
        created_row = create_revision_key(session, wrapping, now)
        created = created_row.id
        rows.insert(0, created_row)

    destroyed = []
    for newer, older in pairwise(rows):
        # The newer key took over from the older one when it was created.
        if now - newer.created_at >= destroy_after:
            older.sealed_key = None
            older.allowed = False
            older.destroyed_at = now
            destroyed.append(older.id)

    rewrapped = _rewrap(rows, wrapping)
    return RotationReport(created=created, destroyed=tuple(destroyed), rewrapped=rewrapped)


def _rewrap(rows: Sequence[RevisionKey], wrapping: Keyring) -> tuple[int, ...]:
    rewrapped = []
    for row in rows:
        if row.allowed and row.sealed_key and _wrapping_id(row.sealed_key) != wrapping.current:
            row.sealed_key = _wrap(wrapping, row.id, _unwrap(wrapping, row))
            rewrapped.append(row.id)
    return tuple(rewrapped)


def rewrap_revision_keys(session: Session, wrapping: Keyring) -> tuple[int, ...]:
    """Re-seal every allowed key under the ring's current wrapping key (after a KEK change);
    return the ids re-sealed.

    Raises :class:`RevisionKeyUnavailable` if a key opens under none of the ring's keys.
    """
    return _rewrap(revision_key_store.allowed_newest_first(session), wrapping)


class RevisionKeyCache:
    """This process's opened revision keys, reloaded once they are ``ttl`` old.

    :meth:`get` loads in a short transaction of its own and commits it before returning, so
    no token is ever sealed under a first key that a rolled-back request would take back.
    Call it before opening the request's own unit of work (SQLite allows one writer).
    Thread-safe: concurrent callers during a reload wait for that one load.
    """

    def __init__(self, wrapping: Keyring, *, ttl: timedelta = REVISION_KEY_CACHE_TTL) -> None:
        self._wrapping = wrapping
        self._keyring: TtlCache[str, Keyring] = TtlCache(ttl, max_entries=1)
        # Held while loading: concurrent first callers would otherwise each create a key.
        self._loading = threading.Lock()

    def get(self, session_factory: SessionFactory, now: datetime) -> Keyring:
        """The cached ring, reloaded first if it is ``ttl`` old (or ``now`` went backwards).

        Raises :class:`RevisionKeyUnavailable` if loading fails; the next call tries again.
        """
        with self._loading:
            keyring = self._keyring.get(_KEYRING, now)
            if keyring is None:
                with unit_of_work(session_factory) as session:
                    keyring = load_keyring(session, self._wrapping, now)
                self._keyring.put(_KEYRING, keyring, now)
            return keyring

    def invalidate(self) -> None:
        """Forget the ring: the next :meth:`get` reloads (e.g. right after a rotation)."""
        # After a load in progress, which may have read the keys before the rotation.
        with self._loading:
            self._keyring.clear()
