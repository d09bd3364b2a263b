"""Base64 forms used on the wire: the key server's lenient decoder and unpadded base64url.

Example::

    decode_base64_lenient("AQID")      # b"\\x01\\x02\\x03", like "AQID", "AQID==" or "AQID==="
    b64url_encode(b"\\xff\\xfe")       # "__4"
    b64url_decode("__4")               # b"\\xff\\xfe"
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["b64url_decode", "b64url_encode", "decode_base64_lenient"]

_URLSAFE_UNPADDED = re.compile(r"[A-Za-z0-9_-]*")
#: Canonical padded standard base64, what nearly every client sends: decoded as it is.
_STANDARD_PADDED = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_TO_STANDARD = str.maketrans("-_", "+/")
_TO_URLSAFE = str.maketrans("+/", "-_")


def _decode_unpadded_urlsafe(text: str) -> bytes:
    # Validate the alphabet first: binascii would otherwise skip unknown characters.
    if not _URLSAFE_UNPADDED.fullmatch(text):
        raise ValueError("invalid base64 data")
    standard = text.translate(_TO_STANDARD)
    standard += "=" * (-len(standard) % 4)
    try:
        return binascii.a2b_base64(standard, strict_mode=True)
    except binascii.Error as exc:  # a length of 4n + 1 characters
        raise ValueError("invalid base64 data") from exc


def decode_base64_lenient(text: str) -> bytes:
    """Decode base64 the way Google's key server does (``pkg/base64util.DecodeString``).

    Standard and URL-safe alphabets, padded, unpadded and over-padded input all decode to the
    same bytes: ``+`` and ``/`` become ``-`` and ``_``, every trailing ``=`` is removed and the
    rest is decoded as unpadded base64url. Like Go's decoder, carriage returns and line feeds
    are ignored and non-zero trailing bits are accepted.

    Raises :class:`ValueError` for any other character, an ``=`` that is not trailing, or a
    length that no encoding produces.
    """
    if _STANDARD_PADDED.fullmatch(text):
        # The same bytes as the general path below, without rewriting the alphabet twice.
        return binascii.a2b_base64(text)
    urlsafe = text.translate(_TO_URLSAFE).rstrip("=")
    return _decode_unpadded_urlsafe(urlsafe.replace("\r", "").replace("\n", ""))


def b64url_encode(data: bytes) -> str:
    """Encode as base64url without padding (RFC 7515 ``BASE64URL``)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (RFC 7515): no padding, no whitespace, no other alphabet.

    Raises :class:`ValueError` for anything else.
    """
    return _decode_unpadded_urlsafe(text)
