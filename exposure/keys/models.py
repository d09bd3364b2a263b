"""The table of a service's private keys and secrets, sealed under its KEK (core migration 0004).

Every service database has it; in a database that two services share, each row belongs to
the one its ``service`` column names and is sealed under that service's key-encryption key.
Nothing here is readable without the KEK: a dump of the database yields no private key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime


class SealedKey(Base):
    """One private key or secret, sealed (AES-256-GCM) under a key derived from a KEK."""

    __tablename__ = "sealed_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(32))
    #: The reference the service stores (a signing key's row names it) or a fixed name.
    name: Mapped[str] = mapped_column(String(255))
    #: ecdsa-p256 (certificates, tokens, export files), ed25519 (retention log), secret.
    kind: Mapped[str] = mapped_column(String(16))
    #: What the key is for: signing, retention-log, or the use of a secret (hmac, ...).
    purpose: Mapped[str] = mapped_column(String(64))
    kek_id: Mapped[str] = mapped_column(
        String(16), comment="Which configured KEK sealed it (a derived, public id)."
    )
    sealed: Mapped[bytes] = mapped_column(
        LargeBinary, comment="nonce || ciphertext || tag; the plaintext never reaches disk."
    )
    #: PEM of a P-256 key or base64 of an Ed25519 key; None for a secret.
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Set when a newer key of the same purpose took over (a retention-log key that no
    #: longer signs but still verifies what it signed).
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("service", "name", name="uq_sealed_keys_service_name"),
        CheckConstraint("kind IN ('ecdsa-p256', 'ed25519', 'secret')", name="kind"),
    )
