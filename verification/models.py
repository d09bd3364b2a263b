"""Tables of the verification service. Nothing here names or locates a person.

Codes, tokens and API keys are stored only as keyed HMACs (see ``crypto.codes``); a
database dump reveals none of them. Every table is listed in docs/privacy.md with why it
exists and how long rows live.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime
from verification.limits import (
    LONG_CODE_MAX_MINUTES,
    LONG_CODE_MIN_LENGTH,
    LONG_CODE_MIN_MINUTES,
    SHORT_CODE_MAX_MINUTES,
    SHORT_CODE_MIN_LENGTH,
    SHORT_CODE_MIN_MINUTES,
)


class Realm(Base):
    """One health authority or lab network: its code policy and certificate identity."""

    __tablename__ = "verification_realms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    short_code_length: Mapped[int] = mapped_column(Integer, default=8)
    short_code_minutes: Mapped[int] = mapped_column(Integer, default=15)
    long_code_length: Mapped[int] = mapped_column(Integer, default=16)
    long_code_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    allowed_test_types: Mapped[str] = mapped_column(
        String(100), default="confirmed,likely,negative"
    )
    require_date: Mapped[bool] = mapped_column(Boolean, default=True)
    certificate_issuer: Mapped[str] = mapped_column(String(255))
    certificate_audience: Mapped[str] = mapped_column(
        String(255), default="exposure-notifications-server"
    )
    certificate_lifetime_seconds: Mapped[int] = mapped_column(Integer, default=900)
    daily_issue_limit: Mapped[int] = mapped_column(Integer, default=20_000)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Set by ``exposure admin realm disable``: its API keys stop working, its JWKS stays.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint(f"short_code_length >= {SHORT_CODE_MIN_LENGTH}", name="short_code_floor"),
        CheckConstraint(f"long_code_length >= {LONG_CODE_MIN_LENGTH}", name="long_code_floor"),
        CheckConstraint(
            f"short_code_minutes BETWEEN {SHORT_CODE_MIN_MINUTES} AND {SHORT_CODE_MAX_MINUTES}",
            name="short_code_minutes",
        ),
        CheckConstraint(
            f"long_code_minutes BETWEEN {LONG_CODE_MIN_MINUTES} AND {LONG_CODE_MAX_MINUTES}",
            name="long_code_minutes",
        ),
        CheckConstraint(
            "certificate_lifetime_seconds BETWEEN 60 AND 3600", name="certificate_lifetime"
        ),
        CheckConstraint("daily_issue_limit >= 1", name="daily_issue_limit"),
    )


class ApiKey(Base):
    """An API key of a realm. Only its keyed hash and a short preview are kept."""

    __tablename__ = "verification_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int] = mapped_column(ForeignKey("verification_realms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    key_hmac: Mapped[bytes] = mapped_column(
        LargeBinary(64), unique=True, comment="HMAC-SHA512 of the key; the key itself is gone."
    )
    preview: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (CheckConstraint("kind IN ('admin', 'device', 'auditor')", name="kind"),)


class VerificationCode(Base):
    """An issued code. The codes are keyed hashes, blanked (NULL) once no longer needed."""

    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int] = mapped_column(ForeignKey("verification_realms.id"))
    uuid: Mapped[str] = mapped_column(String(64))
    code_hmac: Mapped[bytes | None] = mapped_column(
        LargeBinary(64), nullable=True, comment="HMAC-SHA512 of the short code."
    )
    long_code_hmac: Mapped[bytes | None] = mapped_column(
        LargeBinary(64), nullable=True, comment="HMAC-SHA512 of the long code."
    )
    test_type: Mapped[str] = mapped_column(String(16))
    symptom_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    test_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    long_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed: Mapped[bool] = mapped_column(Boolean, default=False)
    issued_by_api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("verification_api_keys.id"), nullable=True
    )
    external_issuer_id: Mapped[str] = mapped_column(
        String(255), default="", comment="Opaque caller-supplied label; callers hash any PII."
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), comment="Truncated to the hour: issue times are not needed finer."
    )

    __table_args__ = (
        UniqueConstraint("realm_id", "uuid", name="uq_verification_codes_realm_uuid"),
        UniqueConstraint("realm_id", "code_hmac", name="uq_verification_codes_realm_code"),
        UniqueConstraint(
            "realm_id", "long_code_hmac", name="uq_verification_codes_realm_long_code"
        ),
    )


class VerificationToken(Base):
    """A verification token handed to a phone; claimed once, when a certificate is signed."""

    __tablename__ = "verification_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int] = mapped_column(ForeignKey("verification_realms.id"))
    token_hmac: Mapped[bytes] = mapped_column(
        LargeBinary(64), unique=True, comment="HMAC-SHA512 of the token's jti."
    )
    test_type: Mapped[str] = mapped_column(String(16))
    symptom_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    test_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SigningKey(Base):
    """An ECDSA P-256 key: the system token key (realm NULL) or a realm's certificate key.

    The private key stays in the key store (a file by default); the row keeps a reference
    to it and the public key that ``/jwks/{realm}`` publishes.
    """

    __tablename__ = "verification_signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int | None] = mapped_column(
        ForeignKey("verification_realms.id"), nullable=True, index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    key_reference: Mapped[str] = mapped_column(String(255))
    public_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("purpose IN ('token', 'certificate')", name="purpose"),
        CheckConstraint(
            "(purpose = 'token' AND realm_id IS NULL) OR "
            "(purpose = 'certificate' AND realm_id IS NOT NULL)",
            name="purpose_realm",
        ),
    )


class AuditEntry(Base):
    """An administrative action, written in the same transaction as the change it records."""

    __tablename__ = "verification_audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    realm_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(100))
    diff: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
