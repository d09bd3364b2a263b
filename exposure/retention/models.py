"""The retention log's tables, in every service database (core migration 0003).

Entries are stored as the exact canonical JSON text that was hashed and signed, so an
auditor re-hashes the same bytes the service did, whatever the database does to types.
The service appends and, for the log's own retention, deletes from the front; it never
updates a row (docs/operations.md grants it no UPDATE on these tables).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from exposure.db.base import Base, UTCDateTime


class RetentionLogEntry(Base):
    """One purge of one kind of data, linked to every entry before it and signed."""

    __tablename__ = "retention_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer, comment="1, 2, 3, ... per service, no gaps.")
    kind: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), comment="The run's time (as_of); the log's own retention counts from it."
    )
    entry: Mapped[str] = mapped_column(Text, comment="Canonical JSON: the bytes hashed.")
    link: Mapped[bytes] = mapped_column(LargeBinary(32), comment="Chain hash up to this entry.")
    signature: Mapped[bytes] = mapped_column(LargeBinary(64), comment="Ed25519 over the link.")

    __table_args__ = (
        UniqueConstraint("service", "seq", name="uq_retention_log_service_seq"),
        Index("ix_retention_log_service_kind_recorded_at", "service", "kind", "recorded_at"),
    )


class RetentionCheckpoint(Base):
    """A signed statement of the chain head: where verification may start after truncation."""

    __tablename__ = "retention_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer, comment="The entry the head is the link of.")
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[str] = mapped_column(Text, comment="Canonical JSON of service, seq, head, time.")
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))

    __table_args__ = (
        UniqueConstraint("service", "seq", name="uq_retention_checkpoints_service_seq"),
    )
