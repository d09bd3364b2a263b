"""Passwords (argon2id) and second factors (TOTP, RFC 6238), with no I/O.

A sign-in for an unknown username checks the password against :data:`DUMMY_HASH`, made with
the same parameters, so it costs the same argon2 time as a real one and the answer cannot
tell the two apart.
"""

from __future__ import annotations

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: OWASP's first argon2id choice (m=19 MiB, t=2, p=1).
PASSWORD_HASHER = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: A code may be from the previous or next 30-second step (clocks drift, people type).
TOTP_VALID_WINDOW = 1

DUMMY_HASH = PASSWORD_HASHER.hash("not a password of anyone: spends the same time")


class WeakPassword(ValueError):  # noqa: N818 - reads as the refusal it is
    """A password outside the length limits."""


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password``; raise :class:`WeakPassword` if too short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_PASSWORD_LENGTH} characters")
    return PASSWORD_HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; None (no such user) checks against
    :data:`DUMMY_HASH` and answers False, taking the same time."""
    candidate = password[:MAX_PASSWORD_LENGTH]
    try:
        PASSWORD_HASHER.verify(stored_hash or DUMMY_HASH, candidate)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return stored_hash is not None


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits) for an authenticator app."""
    return pyotp.random_base32(length=32)


def totp_uri(secret: str, *, username: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def totp_matches(secret: str, code: str, *, at: float) -> bool:
    """Whether ``code`` is the 6-digit TOTP of ``secret`` at the Unix time ``at`` (± a step)."""
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return False
    return bool(pyotp.TOTP(secret).verify(code, for_time=at, valid_window=TOTP_VALID_WINDOW))
