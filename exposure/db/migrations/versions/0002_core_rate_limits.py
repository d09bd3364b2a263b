"""core: fixed-window rate-limit counters keyed by HMAC buckets

Revision ID: 0002_core_rate_limits
Revises: 0001_core
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "0002_core_rate_limits"
down_revision: str | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_windows",
        sa.Column(
            "bucket",
            sa.String(length=128),
            nullable=False,
            comment=(
                "Hex HMAC-SHA256 of the limited subject's parts (realm, client, purpose) under "
                "a server secret; never a raw IP address, API key or code."
            ),
        ),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 0", name=op.f("ck_rate_limit_windows_count_not_negative")),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_rate_limit_windows")),
    )
    op.create_index(
        op.f("ix_rate_limit_windows_window_start"),
        "rate_limit_windows",
        ["window_start"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_windows_window_start"), table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
