"""verification: a realm can be disabled (its API keys stop working)

Revision ID: v0003_realm_disabled
Revises: v0002_verification_auditor_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "v0003_realm_disabled"
down_revision: str | None = "v0002_verification_auditor_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("verification_realms") as batch:
        batch.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("verification_realms") as batch:
        batch.drop_column("disabled_at")
