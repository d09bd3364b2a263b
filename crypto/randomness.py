"""The project's one source of randomness: the operating system's CSPRNG, via :mod:`secrets`.

Every key, nonce, code and padding byte comes from here, so there is exactly one place to
audit (and never :mod:`random`). Code whose output must be reproducible in tests takes the
random value, or a function producing it, as a parameter instead of calling these directly.

Example::

    nonce = random_bytes(12)
    digit = DIGITS[random_below(10)]
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["random_below", "random_bytes", "random_choice"]

_T = TypeVar("_T")


def random_bytes(n: int) -> bytes:
    """Return ``n`` bytes from the CSPRNG. Raises :class:`ValueError` if ``n`` is negative."""
    if n < 0:
        raise ValueError("cannot produce a negative number of bytes")
    return secrets.token_bytes(n)


def random_below(n: int) -> int:
    """Return a uniform integer in ``[0, n)``. Raises :class:`ValueError` unless ``n > 0``."""
    if n <= 0:
        raise ValueError("the upper bound must be positive")
    return secrets.randbelow(n)


def random_choice(items: Sequence[_T]) -> _T:
    """Return a uniformly chosen element of ``items`` (no modulo bias).

    Raises :class:`IndexError` if ``items`` is empty.
    """
    return secrets.choice(items)
