"""core: the hash-chained, signed retention log and its checkpoints

Revision ID: 0003_core_retention_log
Revises: 0002_core_rate_limits
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "0003_core_retention_log"
down_revision: str | None = "0002_core_rate_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column(
            "seq", sa.Integer(), nullable=False, comment="1, 2, 3, ... per service, no gaps."
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "recorded_at",
            UTCDateTime(),
            nullable=False,
            comment="The run's time (as_of); the log's own retention counts from it.",
        ),
        sa.Column("entry", sa.Text(), nullable=False, comment="Canonical JSON: the bytes hashed."),
        sa.Column(
            "link",
            sa.LargeBinary(length=32),
            nullable=False,
            comment="Chain hash up to this entry.",
        ),
        sa.Column(
            "signature",
            sa.LargeBinary(length=64),
            nullable=False,
            comment="Ed25519 over the link.",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_log")),
        sa.UniqueConstraint("service", "seq", name="uq_retention_log_service_seq"),
    )
    op.create_index(
        "ix_retention_log_service_kind_recorded_at",
        "retention_log",
        ["service", "kind", "recorded_at"],
        unique=False,
    )
    op.create_table(
        "retention_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column(
            "seq", sa.Integer(), nullable=False, comment="The entry the head is the link of."
        ),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column(
            "body",
            sa.Text(),
            nullable=False,
            comment="Canonical JSON of service, seq, head, time.",
        ),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_checkpoints")),
        sa.UniqueConstraint("service", "seq", name="uq_retention_checkpoints_service_seq"),
    )


def downgrade() -> None:
    op.drop_table("retention_checkpoints")
    op.drop_index("ix_retention_log_service_kind_recorded_at", table_name="retention_log")
    op.drop_table("retention_log")
