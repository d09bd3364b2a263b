"""Revision tokens and report-type transitions (pure: no database, no clock, no randomness).

A revision token lets a phone that published keys later revise them (say, from ``likely`` to
``confirmed``) and proves it published them. It is opaque to the phone and wire-compatible
with Google's key server (reference §2.6)::

    token = base64(RevisionToken{kid, data = nonce || AES-256-GCM(RevisionTokenData, aad)})

The plaintext lists the revisable keys, padded with zero entries (a 16-byte zero key with
interval 0/0) to at least ``min_length`` entries so the token's size does not tell how many
keys a person uploaded. ``aad`` is the server-wide revision-token secret.

Example::

    token = encode_token(ring, aad, [RevisableKey(tek, 2_654_208, 144)], min_length=28)
    decode_token(ring, aad, token)  # [RevisableKey(tek, 2_654_208, 144)]
    allowed_transition("likely", "confirmed")  # True
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from crypto.encoding import decode_base64_lenient
from crypto.errors import InvalidSealedData
from crypto.sealing import Keyring, open_sealed, seal
from exposure.tek import KEY_LENGTH, ReportType, interval_number
from keyserver.errors import InvalidRevisionToken
from keyserver.proto import gaen_revision_pb2 as pb

__all__ = [
    "INVALID_TOKEN_MESSAGE",
    "RevisableKey",
    "allowed_transition",
    "decode_token",
    "encode_token",
    "next_token_keys",
]

#: The one message of every token failure (reference wording); why it failed is not told.
INVALID_TOKEN_MESSAGE = "revision token is invalid"  # noqa: S105 - a message, not a secret

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_PADDING_KEY = bytes(KEY_LENGTH)

# ``likely`` also stands for a stored "" (published without a certificate), as in the
# reference; ``confirmed`` and ``negative`` are final.
_ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    ReportType.LIKELY: frozenset({ReportType.CONFIRMED, ReportType.NEGATIVE}),
    ReportType.USER_REPORT: frozenset(
        {ReportType.CONFIRMED, ReportType.LIKELY, ReportType.NEGATIVE}
    ),
}


@dataclass(frozen=True, slots=True, order=True)
class RevisableKey:
    """A key a token lets its holder revise: the TEK and its validity interval."""

    key: bytes
    interval_number: int
    interval_count: int

    @property
    def end_interval(self) -> int:
        """The first interval after the key stopped being used."""
        return self.interval_number + self.interval_count


def _unique_by_key(keys: Iterable[RevisableKey]) -> list[RevisableKey]:
    # A TEK identifies the key: a second entry for the same TEK could only contradict the first.
    seen: set[bytes] = set()
    unique = []
    for entry in keys:
        if entry.key not in seen:
            seen.add(entry.key)
            unique.append(entry)
    return unique


def _check_encodable(entry: RevisableKey) -> None:
    if len(entry.key) != KEY_LENGTH:
        raise ValueError(f"a revisable key must be {KEY_LENGTH} bytes")
    for value in (entry.interval_number, entry.interval_count):
        if not _INT32_MIN <= value <= _INT32_MAX:
            raise ValueError("interval number and count must fit in an int32")
    if entry.interval_number == 0 and entry.interval_count == 0:
        raise ValueError("interval 0/0 marks padding; it would be dropped on decode")


def encode_token(
    keyring: Keyring,
    aad: bytes,
    keys: Sequence[RevisableKey],
    *,
    min_length: int,
    nonce: bytes | None = None,
) -> str:
    """Seal ``keys`` into a revision token under the ring's current key.

    Keys repeating an earlier entry's TEK are left out. The entries are padded with zero
    entries to at least ``min_length``. ``nonce`` is for known-answer tests only.

    Raises :class:`ValueError` if a key is not 16 bytes, an interval does not fit in an
    int32, an entry has interval 0/0 (the padding marker), or ``min_length`` is negative.
    """
    if min_length < 0:
        raise ValueError("min_length must not be negative")
    unique = _unique_by_key(keys)
    for entry in unique:
        _check_encodable(entry)
    data = pb.RevisionTokenData(
        revisableKeys=[
            pb.RevisableKey(
                temporaryExposureKey=entry.key,
                intervalNumber=entry.interval_number,
                intervalCount=entry.interval_count,
            )
            for entry in unique
        ]
    )
    for _ in range(min_length - len(unique)):
        data.revisableKeys.add(temporaryExposureKey=_PADDING_KEY)
    box = seal(keyring, data.SerializeToString(), aad, nonce=nonce)
    envelope = pb.RevisionToken(kid=box.key_id, data=box.data)
    return base64.b64encode(envelope.SerializeToString()).decode("ascii")


def decode_token(keyring: Keyring, aad: bytes, token: str) -> list[RevisableKey]:
    """Open a revision token and return its keys, without the padding entries.

    Any base64 the reference accepts is accepted (standard or URL-safe, padded or not).

    Raises :class:`~keyserver.errors.InvalidRevisionToken` for any failure: bad base64, a
    malformed envelope or payload, a key id not on the ring (unknown, or destroyed), a
    modified byte or another ``aad``. The cause is chained for the server's logs only.
    """
    try:
        envelope = pb.RevisionToken.FromString(decode_base64_lenient(token))
        plaintext = open_sealed(keyring, envelope.kid, envelope.data, aad)
        data = pb.RevisionTokenData.FromString(plaintext)
    except (ValueError, DecodeError, InvalidSealedData) as error:
        raise InvalidRevisionToken(INVALID_TOKEN_MESSAGE) from error
    return [
        RevisableKey(entry.temporaryExposureKey, entry.intervalNumber, entry.intervalCount)
        for entry in data.revisableKeys
        if entry.intervalNumber != 0 or entry.intervalCount != 0
    ]


def allowed_transition(stored: str, incoming: str) -> bool:
    """Whether a key stored with report type ``stored`` may be revised to ``incoming``.

    A stored ``""`` (no certificate) counts as ``likely``. Only ``likely`` → ``confirmed`` or
    ``negative`` and ``user-report`` → ``confirmed``, ``likely`` or ``negative`` are allowed;
    keeping the same type is not a transition (the caller treats an unchanged type as a
    no-op before asking).
    """
    effective = stored or ReportType.LIKELY
    return incoming in _ALLOWED_TRANSITIONS.get(effective, frozenset())


def next_token_keys(
    previous: Sequence[RevisableKey],
    processed: Sequence[RevisableKey],
    *,
    now: datetime,
    max_interval_age: timedelta,
) -> list[RevisableKey]:
    """The keys of the token a publish returns: still-revisable old entries, then new ones.

    Entries of the previous token come first, in their order, kept only while they can still
    be revised (``interval_number + interval_count >= interval_number(now - max_interval_age)``,
    the publish age rule). Then come the keys this publish inserted or revised, unless their
    TEK is already listed. The caller omits the token when the result is empty.
    """
    oldest_end = interval_number(now - max_interval_age)
    kept = [entry for entry in previous if entry.end_interval >= oldest_end]
    return _unique_by_key([*kept, *processed])
