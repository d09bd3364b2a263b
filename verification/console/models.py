"""The console's tables: staff accounts and their sign-in sessions.

A staff account names a person of a lab or health authority (a username they chose); it is
kept while the account is active and purged a while after it is disabled (see
docs/privacy.md). Sessions keep only a keyed hash of their token.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime

USERNAME_MAX_LENGTH = 64


class StaffRole(StrEnum):
    """What a staff account may do in its realm."""

    LAB = "lab"
    REALM_ADMIN = "realm_admin"
    AUDITOR = "auditor"


class StaffAccount(Base):
    """A person who signs in to the console, in one realm, with one role."""

    __tablename__ = "verification_staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int] = mapped_column(ForeignKey("verification_realms.id"), index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(
        String(255), comment="argon2id (PHC string); the password itself is never stored."
    )
    #: The TOTP secret, sealed under a key derived from the service's hashing secrets.
    totp_key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary(128), nullable=True)
    #: IANA name; "today" for a symptom or test date is this zone's day.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: The console's language for this person: "vi" or "en".
    language: Mapped[str] = mapped_column(String(8), default="vi")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("realm_id", "username", name="uq_verification_staff_realm_username"),
        CheckConstraint("role IN ('lab', 'realm_admin', 'auditor')", name="role"),
        CheckConstraint("language IN ('vi', 'en')", name="language"),
    )


class StaffSession(Base):
    """A signed-in browser. The cookie holds the token; the row only its keyed hash."""

    __tablename__ = "verification_staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("verification_staff.id", ondelete="CASCADE"), index=True
    )
    token_hmac: Mapped[bytes] = mapped_column(LargeBinary(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
