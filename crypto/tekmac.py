"""The TEK HMAC that binds a verification certificate to the keys a phone uploads.

The phone computes an HMAC-SHA256 over its keys with a secret it keeps, sends the MAC to the
verification server (which copies it into the certificate's ``tekmac`` claim), then sends the
keys, the certificate and the secret to the key server, which recomputes the MAC. The format
is exactly that of Google's key server (``pkg/verification/utils.go``): for every key the
string ``"<key>.<rollingStartNumber>.<rollingPeriod>.<transmissionRisk>"``, with the key as
the very string sent in JSON (no re-encoding), sorted by that string byte-wise, joined with
``","``. A three-field form without the transmission risk is also accepted, but only when
every transmission risk is 0, as the reference does.

Example::

    keys = [SignedKey("z2Cx9hdz2SlxZ8GEgqTYpA==", 1, 144, 3)]
    mac = compute_tekmac(secret, keys)
    verify_tekmac(secret, keys, mac)  # raises InvalidMac on any mismatch
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from crypto.encoding import decode_base64_lenient
from crypto.errors import InvalidMac

__all__ = [
    "SignedKey",
    "compute_tekmac",
    "compute_tekmac_without_risk",
    "decode_base64_lenient",
    "verify_tekmac",
]


@dataclass(frozen=True, slots=True)
class SignedKey:
    """One uploaded key, as the fields appear in the publish request.

    ``key`` is the base64 string exactly as received; ``transmission_risk`` is 0 when the
    request omits it. Raises :class:`TypeError` if a field has another type (a ``bool`` would
    print as ``True`` and silently change the MAC).
    """

    key: str
    rolling_start_number: int
    rolling_period: int
    transmission_risk: int = 0

    def __post_init__(self) -> None:
        if type(self.key) is not str:
            raise TypeError("key must be the base64 string as sent")
        for number in (self.rolling_start_number, self.rolling_period, self.transmission_risk):
            if type(number) is not int:
                raise TypeError("rolling_start_number, rolling_period, transmission_risk: int")


def _sorted(keys: Iterable[SignedKey]) -> list[SignedKey]:
    # Go's strings.Compare orders UTF-8 bytes; UTF-8 preserves code point order, which is
    # what Python compares, so sorting the str values gives the same order.
    return sorted(keys, key=lambda signed: signed.key)


def _mac(secret: bytes, segments: Iterable[str]) -> bytes:
    return hmac.digest(secret, ",".join(segments).encode("utf-8"), hashlib.sha256)


def compute_tekmac(secret: bytes, keys: Iterable[SignedKey]) -> bytes:
    """Return HMAC-SHA256 over the four-field form of ``keys`` (32 bytes).

    Raises :class:`UnicodeEncodeError` (a :class:`ValueError`) for a key string with a lone
    surrogate, which no JSON encoder sends.
    """
    return _mac(
        secret,
        (
            f"{k.key}.{k.rolling_start_number}.{k.rolling_period}.{k.transmission_risk}"
            for k in _sorted(keys)
        ),
    )


def compute_tekmac_without_risk(secret: bytes, keys: Iterable[SignedKey]) -> bytes:
    """Return HMAC-SHA256 over the three-field form (no transmission risk) of ``keys``.

    Computed for any keys; :func:`verify_tekmac` accepts it only when every transmission risk
    is 0. Raises as :func:`compute_tekmac` does.
    """
    return _mac(
        secret, (f"{k.key}.{k.rolling_start_number}.{k.rolling_period}" for k in _sorted(keys))
    )


def verify_tekmac(secret: bytes, keys: Iterable[SignedKey], mac: bytes) -> None:
    """Check ``mac`` against ``keys``; raise :class:`InvalidMac` if it matches neither form.

    The four-field MAC is always compared; the three-field MAC is compared as well when every
    transmission risk is 0. Both comparisons are constant time and both run, so the time
    taken does not tell which form (if any) matched.
    """
    key_list = list(keys)
    try:
        expected = compute_tekmac(secret, key_list)
        without_risk = compute_tekmac_without_risk(secret, key_list)
    except ValueError as exc:
        raise InvalidMac from exc
    matches = hmac.compare_digest(expected, mac)
    alternative = hmac.compare_digest(without_risk, mac)
    if all(k.transmission_risk == 0 for k in key_list):
        matches |= alternative
    if not matches:
        raise InvalidMac
