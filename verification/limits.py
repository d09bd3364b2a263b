"""The bounds of a realm's verification codes, named once.

:meth:`~verification.service.realms.RealmPolicy.validate` refuses a policy outside them,
the realm table's check constraints are built from them, and the admin CLI states them in
its help. The floors on length are the crypto package's: below them a code is guessable.
"""

from __future__ import annotations

from crypto.codes import MIN_ALPHANUMERIC_LENGTH, MIN_NUMERIC_LENGTH

__all__ = [
    "LONG_CODE_MAX_LENGTH",
    "LONG_CODE_MAX_MINUTES",
    "LONG_CODE_MIN_LENGTH",
    "LONG_CODE_MIN_MINUTES",
    "SHORT_CODE_MAX_LENGTH",
    "SHORT_CODE_MAX_MINUTES",
    "SHORT_CODE_MIN_LENGTH",
    "SHORT_CODE_MIN_MINUTES",
]

#: Digits of a short code, the one a person types.
SHORT_CODE_MIN_LENGTH = MIN_NUMERIC_LENGTH
SHORT_CODE_MAX_LENGTH = 20
#: Minutes a short code lives; being short, it must not live long enough to be guessed.
SHORT_CODE_MIN_MINUTES = 1
SHORT_CODE_MAX_MINUTES = 120

#: Characters of a long code, the one a link carries.
LONG_CODE_MIN_LENGTH = MIN_ALPHANUMERIC_LENGTH
LONG_CODE_MAX_LENGTH = 64
#: Minutes a long code lives: at most a day.
LONG_CODE_MIN_MINUTES = 1
LONG_CODE_MAX_MINUTES = 24 * 60
