"""verification: API keys of type auditor (read-only access to /audit)

Revision ID: v0002_verification_auditor_keys
Revises: v0001_verification
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "v0002_verification_auditor_keys"
down_revision: str | None = "v0001_verification"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONSTRAINT = "ck_verification_api_keys_kind"


def upgrade() -> None:
    with op.batch_alter_table("verification_api_keys") as batch:
        batch.drop_constraint(op.f(_CONSTRAINT), type_="check")
        batch.create_check_constraint(op.f(_CONSTRAINT), "kind IN ('admin', 'device', 'auditor')")


def downgrade() -> None:
    op.execute("DELETE FROM verification_api_keys WHERE kind = 'auditor'")
    with op.batch_alter_table("verification_api_keys") as batch:
        batch.drop_constraint(op.f(_CONSTRAINT), type_="check")
        batch.create_check_constraint(op.f(_CONSTRAINT), "kind IN ('admin', 'device')")
