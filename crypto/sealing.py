"""AES-256-GCM sealing under named, rotating keys (used for revision tokens).

A :class:`Keyring` maps key ids to 32-byte keys and names the current one. :func:`seal`
always uses the current key and returns the key id beside ``nonce || ciphertext || tag``;
:func:`open_sealed` opens data sealed under any key still on the ring, so a key can be
rotated without invalidating what was sealed before, and retired by dropping it.

Example::

    ring = Keyring({"1": random_bytes(32)}, current="1")
    box = seal(ring, b"revisable keys", b"server-wide aad")
    assert open_sealed(ring, box.key_id, box.data, b"server-wide aad") == b"revisable keys"
    ring = ring.rotate("2", random_bytes(32))  # seals with "2", still opens "1"

:func:`derived_keyring` turns a list of secrets (newest first) into a ring: each secret
gives one sealing key and a short public id, both derived under labels that name their use,
so one secret can serve several uses without any of them revealing it or each other.

The nonce is 96 random bits per message. Under one key that keeps the chance of a repeated
nonce below 2**-32 for up to 2**32 messages (NIST SP 800-38D, 8.3); rotate well before.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import InvalidKey, InvalidSealedData
from crypto.randomness import random_bytes

__all__ = [
    "KEY_LENGTH",
    "MINIMUM_SECRET_LENGTH",
    "NONCE_LENGTH",
    "TAG_LENGTH",
    "Keyring",
    "SealedBox",
    "derived_keyring",
    "open_sealed",
    "seal",
]

#: AES-256 key length in bytes.
KEY_LENGTH = 32
#: GCM nonce length in bytes (96 bits, the length GCM is designed for).
NONCE_LENGTH = 12
#: GCM authentication tag length in bytes.
TAG_LENGTH = 16
#: A secret that keys are derived from must be at least as strong as the keys.
MINIMUM_SECRET_LENGTH = 32
#: Hex characters of a derived key id: enough to tell a handful of secrets apart.
_DERIVED_ID_HEX = 8


class Keyring:
    """Named AES-256 keys, one of them current. Immutable; :meth:`rotate` returns a new ring.

    Raises :class:`InvalidKey` if a key is not 32 bytes, a key id is empty, or ``current`` is
    not one of the ids. The keys never appear in ``repr``.
    """

    __slots__ = ("__ciphers", "__current", "__keys")

    def __init__(self, keys: Mapping[str, bytes], *, current: str) -> None:
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not key_id or len(key) != KEY_LENGTH:
                raise InvalidKey
            ciphers[key_id] = AESGCM(bytes(key))
        if current not in ciphers:
            raise InvalidKey
        self.__ciphers: Mapping[str, AESGCM] = MappingProxyType(ciphers)
        self.__current = current
        self.__keys = {key_id: bytes(key) for key_id, key in keys.items()}

    @property
    def current(self) -> str:
        """The id of the key that :func:`seal` uses."""
        return self.__current

    @property
    def key_ids(self) -> frozenset[str]:
        """Every id :func:`open_sealed` accepts."""
        return frozenset(self.__ciphers)

    def rotate(self, key_id: str, key: bytes) -> Keyring:
        """Return a ring with ``key`` added under ``key_id`` and made current.

        Raises :class:`InvalidKey` if ``key_id`` is already on the ring or ``key`` is invalid.
        """
        if key_id in self.__keys:
            raise InvalidKey
        return Keyring({**self.__keys, key_id: key}, current=key_id)

    def retire(self, key_id: str) -> Keyring:
        """Return a ring without ``key_id``; data sealed under it no longer opens.

        Raises :class:`InvalidKey` if ``key_id`` is the current key.
        """
        if key_id == self.__current:
            raise InvalidKey
        remaining = {kid: key for kid, key in self.__keys.items() if kid != key_id}
        return Keyring(remaining, current=self.__current)

    def _cipher(self, key_id: str) -> AESGCM | None:
        return self.__ciphers.get(key_id)

    def _current_cipher(self) -> tuple[str, AESGCM]:
        return self.__current, self.__ciphers[self.__current]

    def __repr__(self) -> str:
        return f"Keyring(key_ids={sorted(self.__ciphers)!r}, current={self.__current!r})"


@dataclass(frozen=True, slots=True)
class SealedBox:
    """What :func:`seal` returns: the key id and ``nonce (12) || ciphertext || tag (16)``."""

    key_id: str
    data: bytes


def seal(
    keyring: Keyring, plaintext: bytes, aad: bytes, *, nonce: bytes | None = None
) -> SealedBox:
    """Encrypt and authenticate ``plaintext`` (and ``aad``) under the ring's current key.

    ``nonce`` is for known-answer tests only: leave it out, and a fresh random nonce is used.
    Raises :class:`ValueError` if a given nonce is not 12 bytes.
    """
    if nonce is None:
        nonce = random_bytes(NONCE_LENGTH)
    elif len(nonce) != NONCE_LENGTH:
        raise ValueError(f"nonce must be {NONCE_LENGTH} bytes")
    key_id, cipher = keyring._current_cipher()
    return SealedBox(key_id, nonce + cipher.encrypt(nonce, plaintext, aad))


def open_sealed(keyring: Keyring, key_id: str, data: bytes, aad: bytes) -> bytes:
    """Authenticate and decrypt ``data`` sealed under ``key_id``.

    Raises :class:`InvalidSealedData`, whatever the cause: an unknown or retired key id, data
    too short to hold a nonce and a tag, any modified byte, or a different ``aad``.
    """
    cipher = keyring._cipher(key_id)
    if cipher is None or len(data) < NONCE_LENGTH + TAG_LENGTH:
        raise InvalidSealedData
    try:
        return cipher.decrypt(data[:NONCE_LENGTH], data[NONCE_LENGTH:], aad)
    except InvalidTag as exc:
        raise InvalidSealedData from exc


def derived_keyring(secrets: Sequence[bytes], *, key_label: bytes, id_label: bytes) -> Keyring:
    """A ring with one key per secret, the first (newest) current.

    Each key is ``HMAC-SHA512(secret, key_label)`` cut to 32 bytes and its id the first
    eight hex digits of ``HMAC-SHA512(secret, id_label)``: stable while the secret is
    configured, wherever it sits in the list, and safe to print or store.

    Raises :class:`InvalidKey` if there is no secret or one is shorter than 32 bytes.
    """
    if not secrets:
        raise InvalidKey
    keys: dict[str, bytes] = {}
    for secret in secrets:
        if len(secret) < MINIMUM_SECRET_LENGTH:
            raise InvalidKey
        key_id = hmac.new(secret, id_label, hashlib.sha512).hexdigest()[:_DERIVED_ID_HEX]
        keys.setdefault(key_id, hmac.new(secret, key_label, hashlib.sha512).digest()[:KEY_LENGTH])
    return Keyring(keys, current=next(iter(keys)))
