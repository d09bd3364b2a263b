"""verification: staff accounts and their sessions (the web console)

Revision ID: v0004_console_staff
Revises: v0003_realm_disabled
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "v0004_console_staff"
down_revision: str | None = "v0003_realm_disabled"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verification_staff",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "realm_id", sa.Integer(), sa.ForeignKey("verification_realms.id"), nullable=False
        ),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column(
            "password_hash",
            sa.String(255),
            nullable=False,
            comment="argon2id (PHC string); the password itself is never stored.",
        ),
        sa.Column("totp_key_id", sa.String(16), nullable=True),
        sa.Column("totp_sealed", sa.LargeBinary(128), nullable=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("realm_id", "username", name="uq_verification_staff_realm_username"),
        sa.CheckConstraint("role IN ('lab', 'realm_admin', 'auditor')", name="role"),
        sa.CheckConstraint("language IN ('vi', 'en')", name="language"),
    )
    op.create_index("ix_verification_staff_realm_id", "verification_staff", ["realm_id"])
    op.create_table(
        "verification_staff_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "staff_id",
            sa.Integer(),
            sa.ForeignKey("verification_staff.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hmac", sa.LargeBinary(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_verification_staff_sessions_staff_id", "verification_staff_sessions", ["staff_id"]
    )
    op.create_index(
        "ix_verification_staff_sessions_expires_at", "verification_staff_sessions", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_table("verification_staff_sessions")
    op.drop_table("verification_staff")
