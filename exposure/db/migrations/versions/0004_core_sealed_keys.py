"""core: private keys and secrets sealed under the service's KEK; auditor API keys

Revision ID: 0004_core_sealed_keys
Revises: 0003_core_retention_log
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "0004_core_sealed_keys"
down_revision: str | None = "0003_core_retention_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sealed_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column(
            "kek_id",
            sa.String(length=16),
            nullable=False,
            comment="Which configured KEK sealed it (a derived, public id).",
        ),
        sa.Column(
            "sealed",
            sa.LargeBinary(),
            nullable=False,
            comment="nonce || ciphertext || tag; the plaintext never reaches disk.",
        ),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('ecdsa-p256', 'ed25519', 'secret')", name=op.f("ck_sealed_keys_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealed_keys")),
        sa.UniqueConstraint("service", "name", name="uq_sealed_keys_service_name"),
    )
    op.create_table(
        "auditor_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "key_hmac",
            sa.LargeBinary(length=64),
            nullable=False,
            comment="HMAC-SHA512 of the key; the key itself is gone.",
        ),
        sa.Column("preview", sa.String(length=8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auditor_keys")),
        sa.UniqueConstraint("service", "key_hmac", name="uq_auditor_keys_service_key_hmac"),
    )


def downgrade() -> None:
    op.drop_table("auditor_keys")
    op.drop_table("sealed_keys")
