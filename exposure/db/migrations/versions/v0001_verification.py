"""verification: realms, API keys, codes, tokens, signing keys, audit

Revision ID: v0001_verification
Revises:
Depends on: 0001_core
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "v0001_verification"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("verification",)
depends_on: str | Sequence[str] | None = "0001_core"


def upgrade() -> None:
    op.create_table(
        "verification_audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_audit_entries")),
    )
    op.create_index(
        op.f("ix_verification_audit_entries_realm_id"),
        "verification_audit_entries",
        ["realm_id"],
        unique=False,
    )

    op.create_table(
        "verification_realms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("short_code_length", sa.Integer(), nullable=False),
        sa.Column("short_code_minutes", sa.Integer(), nullable=False),
        sa.Column("long_code_length", sa.Integer(), nullable=False),
        sa.Column("long_code_minutes", sa.Integer(), nullable=False),
        sa.Column("allowed_test_types", sa.String(length=100), nullable=False),
        sa.Column("require_date", sa.Boolean(), nullable=False),
        sa.Column("certificate_issuer", sa.String(length=255), nullable=False),
        sa.Column("certificate_audience", sa.String(length=255), nullable=False),
        sa.Column("certificate_lifetime_seconds", sa.Integer(), nullable=False),
        sa.Column("daily_issue_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "certificate_lifetime_seconds BETWEEN 60 AND 3600",
            name=op.f("ck_verification_realms_certificate_lifetime"),
        ),
        sa.CheckConstraint(
            "daily_issue_limit >= 1", name=op.f("ck_verification_realms_daily_issue_limit")
        ),
        sa.CheckConstraint(
            "long_code_length >= 12", name=op.f("ck_verification_realms_long_code_floor")
        ),
        sa.CheckConstraint(
            "long_code_minutes BETWEEN 1 AND 1440",
            name=op.f("ck_verification_realms_long_code_minutes"),
        ),
        sa.CheckConstraint(
            "short_code_length >= 6", name=op.f("ck_verification_realms_short_code_floor")
        ),
        sa.CheckConstraint(
            "short_code_minutes BETWEEN 1 AND 120",
            name=op.f("ck_verification_realms_short_code_minutes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_realms")),
        sa.UniqueConstraint("name", name=op.f("uq_verification_realms_name")),
    )
    op.create_table(
        "verification_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
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
        sa.CheckConstraint(
            "kind IN ('admin', 'device')", name=op.f("ck_verification_api_keys_kind")
        ),
        sa.ForeignKeyConstraint(
            ["realm_id"],
            ["verification_realms.id"],
            name=op.f("fk_verification_api_keys_realm_id_verification_realms"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_api_keys")),
        sa.UniqueConstraint("key_hmac", name=op.f("uq_verification_api_keys_key_hmac")),
    )
    op.create_index(
        op.f("ix_verification_api_keys_realm_id"),
        "verification_api_keys",
        ["realm_id"],
        unique=False,
    )

    op.create_table(
        "verification_signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("key_reference", sa.String(length=255), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("active_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "(purpose = 'token' AND realm_id IS NULL) OR "
            "(purpose = 'certificate' AND realm_id IS NOT NULL)",
            name=op.f("ck_verification_signing_keys_purpose_realm"),
        ),
        sa.CheckConstraint(
            "purpose IN ('token', 'certificate')", name=op.f("ck_verification_signing_keys_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["realm_id"],
            ["verification_realms.id"],
            name=op.f("fk_verification_signing_keys_realm_id_verification_realms"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_signing_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_verification_signing_keys_kid")),
    )
    op.create_index(
        op.f("ix_verification_signing_keys_realm_id"),
        "verification_signing_keys",
        ["realm_id"],
        unique=False,
    )

    op.create_table(
        "verification_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.Integer(), nullable=False),
        sa.Column(
            "token_hmac",
            sa.LargeBinary(length=64),
            nullable=False,
            comment="HMAC-SHA512 of the token's jti.",
        ),
        sa.Column("test_type", sa.String(length=16), nullable=False),
        sa.Column("symptom_date", sa.Date(), nullable=True),
        sa.Column("test_date", sa.Date(), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["realm_id"],
            ["verification_realms.id"],
            name=op.f("fk_verification_tokens_realm_id_verification_realms"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_tokens")),
        sa.UniqueConstraint("token_hmac", name=op.f("uq_verification_tokens_token_hmac")),
    )
    op.create_table(
        "verification_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("realm_id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column(
            "code_hmac",
            sa.LargeBinary(length=64),
            nullable=True,
            comment="HMAC-SHA512 of the short code.",
        ),
        sa.Column(
            "long_code_hmac",
            sa.LargeBinary(length=64),
            nullable=True,
            comment="HMAC-SHA512 of the long code.",
        ),
        sa.Column("test_type", sa.String(length=16), nullable=False),
        sa.Column("symptom_date", sa.Date(), nullable=True),
        sa.Column("test_date", sa.Date(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("long_expires_at", UTCDateTime(), nullable=False),
        sa.Column("claimed", sa.Boolean(), nullable=False),
        sa.Column("issued_by_api_key_id", sa.Integer(), nullable=True),
        sa.Column(
            "external_issuer_id",
            sa.String(length=255),
            nullable=False,
            comment="Opaque caller-supplied label; callers hash any PII.",
        ),
        sa.Column(
            "created_at",
            UTCDateTime(),
            nullable=False,
            comment="Truncated to the hour: issue times are not needed finer.",
        ),
        sa.ForeignKeyConstraint(
            ["issued_by_api_key_id"],
            ["verification_api_keys.id"],
            name=op.f("fk_verification_codes_issued_by_api_key_id_verification_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["realm_id"],
            ["verification_realms.id"],
            name=op.f("fk_verification_codes_realm_id_verification_realms"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_codes")),
        sa.UniqueConstraint("realm_id", "code_hmac", name="uq_verification_codes_realm_code"),
        sa.UniqueConstraint(
            "realm_id", "long_code_hmac", name="uq_verification_codes_realm_long_code"
        ),
        sa.UniqueConstraint("realm_id", "uuid", name="uq_verification_codes_realm_uuid"),
    )


def downgrade() -> None:
    op.drop_table("verification_codes")
    op.drop_table("verification_tokens")
    op.drop_index(
        op.f("ix_verification_signing_keys_realm_id"), table_name="verification_signing_keys"
    )

    op.drop_table("verification_signing_keys")
    op.drop_index(op.f("ix_verification_api_keys_realm_id"), table_name="verification_api_keys")

    op.drop_table("verification_api_keys")
    op.drop_table("verification_realms")
    op.drop_index(
        op.f("ix_verification_audit_entries_realm_id"), table_name="verification_audit_entries"
    )

    op.drop_table("verification_audit_entries")
