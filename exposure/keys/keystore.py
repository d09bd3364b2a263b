"""A service's private keys and secrets, kept in its own database sealed under its KEK.

:class:`KeyStore` is what the services see: it creates ECDSA P-256 keys and hands out
:class:`crypto.signing.Signer` objects by reference, never private key bytes, so a cloud
KMS or an HSM can implement it later without touching a caller. Its methods take the
caller's session: a key is created in the same transaction as the row that names it, so
neither outlives the other.

:class:`ServiceKeyStore` is the implementation every service uses today. Each row of
``sealed_keys`` is sealed with AES-256-GCM under a key derived from the service's newest
KEK (envelope encryption), with authenticated data naming the service, the key and its
use, so a sealed value copied into another row or another service's database does not
open. Rows record the id of the KEK that sealed them: when the KEK is rotated (new one
first in the setting), :meth:`ServiceKeyStore.rewrap` re-seals every row under the new one,
after which the old KEK can be dropped.

Besides signing keys it keeps the secrets a service derives keyed hashes from and its
retention-log keys; those are made on first use, atomically, so that every replica of a
service uses the same ones without anyone copying files between hosts.

Example::

    keys = ServiceKeyStore("verification", keks, kek_source="EXPOSURE_VERIFICATION_KEK")
    with unit_of_work(sessions) as session:
        keys.check(session)                        # at start-up: every stored key opens
        reference = keys.create(session, "token-t1", now=now)
        signature = keys.signer(session, reference).sign(b"payload")
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from crypto.audit import SEED_LENGTH, AuditSigner
from crypto.errors import CryptoError
from crypto.randomness import random_bytes
from crypto.sealing import MINIMUM_SECRET_LENGTH, Keyring, derived_keyring, open_sealed, seal
from crypto.signing import FileSigner, Signer
from exposure.keys import store
from exposure.keys.errors import KeyNotFound, KeysDoNotOpen
from exposure.keys.models import SealedKey

__all__ = [
    "ECDSA_P256",
    "ED25519",
    "LOG_PURPOSE",
    "SECRET",
    "SIGNING_PURPOSE",
    "KeyStore",
    "SealedKeyInfo",
    "ServiceKeyStore",
]

ECDSA_P256 = "ecdsa-p256"
ED25519 = "ed25519"
SECRET = "secret"  # noqa: S105 - a kind of row, not a secret
SIGNING_PURPOSE = "signing"
LOG_PURPOSE = "retention-log"

_WRAP_LABEL = b"exposure/sealed-keys/wrap"
_KEK_ID_LABEL = b"exposure/sealed-keys/kek-id"


class KeyStore(Protocol):
    """Creates ECDSA P-256 keys and gives out signers for them by reference."""

    def create(self, session: Session, name: str, *, now: datetime) -> str:
        """Create a key called ``name`` in the caller's transaction; return its reference."""
        ...

    def signer(self, session: Session, reference: str) -> Signer:
        """The signer of a key created earlier; raises :class:`KeyNotFound` if it is gone."""
        ...

    def destroy(self, session: Session, reference: str) -> bool:
        """Erase a key for good; return whether it existed (False is not an error)."""
        ...


@dataclass(frozen=True)
class SealedKeyInfo:
    """What an operator may see of a stored key: never its value."""

    name: str
    kind: str
    purpose: str
    kek_id: str
    created_at: datetime
    retired_at: datetime | None
    public_key: str | None


class ServiceKeyStore:
    """One service's sealed keys (see the module documentation)."""

    def __init__(self, service: str, keks: Sequence[bytes], *, kek_source: str) -> None:
        """``keks`` newest first; ``kek_source`` names where they came from, for messages.

        Raises ``ValueError`` if there is no KEK or one is shorter than 32 bytes.
        """
        try:
            self._ring = derived_keyring(keks, key_label=_WRAP_LABEL, id_label=_KEK_ID_LABEL)
        except CryptoError as error:
            raise ValueError(f"each KEK needs at least {MINIMUM_SECRET_LENGTH} bytes") from error
        self.__keks = tuple(keks)
        self.service = service
        self.kek_source = kek_source
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()

    @property
    def current_kek_id(self) -> str:
        return self._ring.current

    @property
    def kek_ids(self) -> frozenset[str]:
        return self._ring.key_ids

    def derived_keyring(
        self, *, key_label: bytes, id_label: bytes, older_secrets: Sequence[bytes] = ()
    ) -> Keyring:
        """Keys derived from the same KEKs for another use (revision keys are sealed so);
        the labels keep each use's keys apart from every other's. ``older_secrets`` are
        secrets the use had before, still opened but never current (to re-seal from)."""
        return derived_keyring(
            (*self.__keks, *older_secrets), key_label=key_label, id_label=id_label
        )

    # ---- sealing ---------------------------------------------------------------------

    def _aad(self, name: str, kind: str, purpose: str) -> bytes:
        return f"exposure/sealed-key/v1/{self.service}/{kind}/{purpose}/{name}".encode()

    def _sealed_row(
        self, *, name: str, kind: str, purpose: str, value: bytes, public: str | None, now: datetime
    ) -> SealedKey:
        box = seal(self._ring, value, self._aad(name, kind, purpose))
        return SealedKey(
            service=self.service,
            name=name,
            kind=kind,
            purpose=purpose,
            kek_id=box.key_id,
            sealed=box.data,
            public_key=public,
            created_at=now,
            retired_at=None,
        )

    def _open(self, row: SealedKey) -> bytes:
        if row.kek_id not in self._ring.key_ids:
            raise KeysDoNotOpen(
                f"{self.kek_source} does not open the {self.service} keys in its database: "
                f"they are sealed under KEK id {row.kek_id}, and the configured KEK ids are "
                f"{', '.join(sorted(self._ring.key_ids))}; configure the KEK the keys were "
                "sealed with (when rotating, the new one first, then the old one)"
            )
        try:
            return open_sealed(
                self._ring, row.kek_id, row.sealed, self._aad(row.name, row.kind, row.purpose)
            )
        except CryptoError as error:
            raise KeysDoNotOpen(
                f"the {self.service} key {row.name!r} does not open with the KEK it names "
                f"(id {row.kek_id}): the row was damaged or copied from elsewhere"
            ) from error

    # ---- KeyStore: signing keys ------------------------------------------------------

    def create(self, session: Session, name: str, *, now: datetime) -> str:
        self.import_signing_key(session, name, FileSigner.generate(), now=now)
        return name

    def import_signing_key(
        self, session: Session, name: str, signer: FileSigner, *, now: datetime
    ) -> bool:
        """Store an existing P-256 key under ``name``; False if the name is already taken."""
        row = self._sealed_row(
            name=name,
            kind=ECDSA_P256,
            purpose=SIGNING_PURPOSE,
            value=signer.private_key_pem(),
            public=signer.public_key_pem().decode("ascii"),
            now=now,
        )
        inserted = store.insert_key(session, row)
        if inserted:
            with self._lock:
                self._signers[name] = signer
        return inserted

    def signer(self, session: Session, reference: str) -> Signer:
        cached = self._signers.get(reference)
        if cached is not None:
            return cached
        row = store.key_by_name(session, self.service, reference)
        if row is None or row.kind != ECDSA_P256:
            raise KeyNotFound(
                f"the {self.service} database holds no signing key {reference!r} (keys kept "
                "in files before this version are moved in by `exposure db upgrade`)"
            )
        loaded = FileSigner.from_pem(self._open(row))
        with self._lock:
            # Signers never change, so whichever thread loaded first is as good as any.
            return self._signers.setdefault(reference, loaded)

    def holds(self, session: Session, reference: str) -> bool:
        """Whether the database holds a key called ``reference``."""
        return store.key_by_name(session, self.service, reference) is not None

    def destroy(self, session: Session, reference: str) -> bool:
        with self._lock:
            self._signers.pop(reference, None)
        return store.delete_key(session, self.service, reference)

    # ---- secrets and retention-log keys ----------------------------------------------

    def secrets(self, session: Session, purpose: str, *, now: datetime) -> list[bytes]:
        """The secrets of ``purpose``, newest first; the first is made on first use."""
        rows = store.keys_of_purpose(session, self.service, purpose)
        if not rows:
            self._create_secret(session, purpose, f"{purpose}-1", now)
            rows = store.keys_of_purpose(session, self.service, purpose)
        return [self._open(row) for row in rows]

    def rotate_secret(self, session: Session, purpose: str, *, now: datetime) -> str:
        """Add a newer secret of ``purpose``; the older ones stay, still checked."""
        name = f"{purpose}-{random_bytes(6).hex()}"
        self._create_secret(session, purpose, name, now)
        return name

    def _create_secret(self, session: Session, purpose: str, name: str, now: datetime) -> None:
        row = self._sealed_row(
            name=name,
            kind=SECRET,
            purpose=purpose,
            value=random_bytes(MINIMUM_SECRET_LENGTH),
            public=None,
            now=now,
        )
        store.insert_key(session, row)

    def import_secret(
        self, session: Session, purpose: str, name: str, value: bytes, *, now: datetime
    ) -> bool:
        """Store a secret made elsewhere (an earlier version's file or setting)."""
        row = self._sealed_row(
            name=name, kind=SECRET, purpose=purpose, value=value, public=None, now=now
        )
        return store.insert_key(session, row)

    def log_signers(self, session: Session, *, now: datetime) -> list[AuditSigner]:
        """The retention-log keys, newest first: the first signs, the rest it replaced.

        The first key is made on first use.
        """
        rows = store.keys_of_purpose(session, self.service, LOG_PURPOSE)
        if not rows:
            self.import_log_key(session, f"{LOG_PURPOSE}-1", AuditSigner.generate(), now=now)
            rows = store.keys_of_purpose(session, self.service, LOG_PURPOSE)
        return [AuditSigner.from_seed(self._open(row)) for row in rows]

    def rotate_log_key(self, session: Session, *, now: datetime) -> AuditSigner:
        """A new retention-log key signs from now on; the older ones are kept to verify."""
        previous = store.keys_of_purpose(session, self.service, LOG_PURPOSE)
        signer = AuditSigner.generate()
        self.import_log_key(session, f"{LOG_PURPOSE}-{random_bytes(6).hex()}", signer, now=now)
        store.retire_keys(session, [row.id for row in previous], now)
        return signer

    def retire(self, session: Session, name: str, *, now: datetime) -> None:
        """Mark a key as replaced: it no longer signs, but still verifies what it signed."""
        row = store.key_by_name(session, self.service, name)
        if row is not None:
            store.retire_keys(session, [row.id], now)

    def import_log_key(
        self, session: Session, name: str, signer: AuditSigner, *, now: datetime
    ) -> bool:
        row = self._sealed_row(
            name=name,
            kind=ED25519,
            purpose=LOG_PURPOSE,
            value=signer.seed,
            public=base64.b64encode(signer.public_key).decode("ascii"),
            now=now,
        )
        if len(signer.seed) != SEED_LENGTH:  # pragma: no cover - AuditSigner guarantees it
            raise ValueError("an Ed25519 seed is 32 bytes")
        return store.insert_key(session, row)

    # ---- operations ------------------------------------------------------------------

    def check(self, session: Session) -> int:
        """Open every stored key of the service; return how many.

        Raises :class:`KeysDoNotOpen` naming the setting to fix if one does not open.
        """
        rows = store.keys_of_service(session, self.service)
        for row in rows:
            self._open(row)
        return len(rows)

    def unknown_kek_ids(self, session: Session) -> set[str]:
        """KEK ids that sealed a stored key but are not configured (a cheap readiness probe)."""
        return store.kek_ids_in_use(session, self.service) - self._ring.key_ids

    def rewrap(self, session: Session) -> int:
        """Re-seal every key not sealed under the newest KEK; return how many were."""
        count = 0
        for row in store.keys_of_service(session, self.service):
            if row.kek_id == self._ring.current:
                continue
            value = self._open(row)
            box = seal(self._ring, value, self._aad(row.name, row.kind, row.purpose))
            store.reseal_key(session, row.id, kek_id=box.key_id, sealed=box.data)
            count += 1
        return count

    def describe(self, session: Session) -> list[SealedKeyInfo]:
        """Every stored key of the service, without its value."""
        return [
            SealedKeyInfo(
                name=row.name,
                kind=row.kind,
                purpose=row.purpose,
                kek_id=row.kek_id,
                created_at=row.created_at,
                retired_at=row.retired_at,
                public_key=row.public_key,
            )
            for row in store.keys_of_service(session, self.service)
        ]
