"""Auditor API keys of a service (core migration 0004): read access to its retention log.

Each service keeps its own, so a key server run by one agency and a verification service
run by another each decide who audits them. A key is stored only as a keyed hash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime


class AuditorKey(Base):
    """An API key for ``GET /audit/log`` and ``/audit/compliance`` of one service."""

    __tablename__ = "auditor_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    key_hmac: Mapped[bytes] = mapped_column(
        LargeBinary(64), comment="HMAC-SHA512 of the key; the key itself is gone."
    )
    preview: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("service", "key_hmac", name="uq_auditor_keys_service_key_hmac"),
    )
