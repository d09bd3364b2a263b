"""Verification codes and the keyed hashes under which codes and API keys are stored.

Codes are drawn uniformly from the CSPRNG (:mod:`crypto.randomness`): a short numeric code a
person can read over the phone, and a longer lower-case alphanumeric code sent in a link.
Neither a code nor an API key is ever stored; the database keeps ``HMAC-SHA512(k, value)``.
``k`` rotates: :class:`KeyedHasher` hashes new values under the newest key and looks values up
under every key still live, as the reference verification server does.

Example::

    code = generate_numeric_code()              # e.g. "04718253"
    hasher = KeyedHasher([current_key, previous_key])
    stored = hasher.digest(code)                # what the database keeps
    hasher.matches(code, stored)                # True, in constant time
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Sequence

from crypto.errors import InvalidKey
from crypto.randomness import random_choice

__all__ = [
    "ALPHANUMERIC_ALPHABET",
    "MIN_ALPHANUMERIC_LENGTH",
    "MIN_HASH_KEY_LENGTH",
    "MIN_NUMERIC_LENGTH",
    "KeyedHasher",
    "generate_alphanumeric_code",
    "generate_numeric_code",
    "hmac_sha512",
]

#: Shortest numeric code: 10**6 values, enough for a code that lives 15 minutes and is rate
#: limited (the reference's floor).
MIN_NUMERIC_LENGTH = 6
#: Shortest link code: 36**12, about 2**62 values.
MIN_ALPHANUMERIC_LENGTH = 12
#: The link-code alphabet: lower-case letters then digits, as the reference server uses.
ALPHANUMERIC_ALPHABET = string.ascii_lowercase + string.digits
#: A hash key shorter than SHA-512's 256-bit security level is refused.
MIN_HASH_KEY_LENGTH = 32


def _generate(alphabet: str, length: int, floor: int) -> str:
    if length < floor:
        raise ValueError(f"a code must be at least {floor} characters long")
    # secrets.choice draws each index uniformly (rejection sampling, no modulo bias).
    return "".join(random_choice(alphabet) for _ in range(length))


def generate_numeric_code(length: int = 8) -> str:
    """Return ``length`` uniform decimal digits; leading zeros are kept.

    Raises :class:`ValueError` if ``length`` is below 6.
    """
    return _generate(string.digits, length, MIN_NUMERIC_LENGTH)


def generate_alphanumeric_code(length: int = 16) -> str:
    """Return ``length`` uniform characters from ``[a-z0-9]``.

    Raises :class:`ValueError` if ``length`` is below 12.
    """
    return _generate(ALPHANUMERIC_ALPHABET, length, MIN_ALPHANUMERIC_LENGTH)


def hmac_sha512(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA512 with any key (64 bytes). :class:`KeyedHasher` adds the key-length floor."""
    return hmac.digest(key, message, hashlib.sha512)


class KeyedHasher:
    """HMAC-SHA512 of strings under rotating keys; the first key is the current one.

    Raises :class:`InvalidKey` if ``keys`` is empty or a key is shorter than 32 bytes.
    """

    __slots__ = ("__keys",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(key) < MIN_HASH_KEY_LENGTH for key in keys):
            raise InvalidKey
        self.__keys = tuple(bytes(key) for key in keys)

    def digest(self, value: str) -> bytes:
        """Return the 64-byte hash of ``value`` under the current key (to store)."""
        return hmac_sha512(self.__keys[0], value.encode("utf-8"))

    def candidates(self, value: str) -> list[bytes]:
        """Return the hash of ``value`` under every live key, current first (to look up)."""
        message = value.encode("utf-8")
        return [hmac_sha512(key, message) for key in self.__keys]

    def matches(self, value: str, stored: bytes) -> bool:
        """Tell whether ``stored`` is the hash of ``value`` under any live key.

        Every candidate is compared in constant time and none is skipped, so the time taken
        does not reveal which key matched, or whether one did.
        """
        found = False
        for candidate in self.candidates(value):
            found |= hmac.compare_digest(candidate, stored)
        return found

    def __repr__(self) -> str:
        return f"KeyedHasher(<{len(self.__keys)} keys>)"
