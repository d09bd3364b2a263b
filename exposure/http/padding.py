"""Random padding that hides the size of what a response (or request) really carries.

Every JSON API of the deployed systems has a ``padding`` field of random base64 so that an
observer of the encrypted traffic cannot tell a positive upload (or a failed one) from any
other exchange by its length. The defaults reproduce Google's servers: 1024 bytes plus a
uniform ``[0, 1024)`` more, before base64 (key server ``RESPONSE_PADDING_MIN_BYTES`` and
``RESPONSE_PADDING_RANGE``; the verification server's ``Padding.MarshalJSON``).

Example::

    response = PublishResponse(..., padding=random_padding())
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from crypto.randomness import random_below, random_bytes

__all__ = ["DEFAULT_MINIMUM", "DEFAULT_SPREAD", "random_padding"]

#: Bytes of padding every response carries at least (before base64).
DEFAULT_MINIMUM = 1024
#: Width of the uniform random range added on top of the minimum.
DEFAULT_SPREAD = 1024


def random_padding(
    rng_bytes: Callable[[int], bytes] = random_bytes,
    *,
    minimum: int = DEFAULT_MINIMUM,
    spread: int = DEFAULT_SPREAD,
) -> str:
    """Standard base64 of ``minimum`` + uniform ``[0, spread)`` random bytes.

    The length is random too (from the CSPRNG), otherwise padding would only shift every
    size by a constant and hide nothing. ``rng_bytes`` supplies the content so tests can
    make it deterministic; the bytes carry no meaning and are never read back.

    Raises :class:`ValueError` if ``minimum`` is negative or ``spread`` is not positive.
    """
    if minimum < 0:
        raise ValueError("padding minimum must not be negative")
    if spread < 1:
        raise ValueError("padding spread must be at least 1")
    length = minimum + random_below(spread)
    return base64.b64encode(rng_bytes(length)).decode("ascii")
