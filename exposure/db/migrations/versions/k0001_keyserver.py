"""keyserver: health authorities, their keys, authorized apps, exposures, revision keys

Revision ID: k0001_keyserver
Revises:
Depends on: 0001_core
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "k0001_keyserver"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("keyserver",)
depends_on: str | Sequence[str] | None = "0001_core"


def upgrade() -> None:
    op.create_table(
        "keyserver_health_authorities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("audience", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("jwks_url", sa.String(length=1000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_health_authorities")),
        sa.UniqueConstraint("issuer", name=op.f("uq_keyserver_health_authorities_issuer")),
    )
    op.create_table(
        "keyserver_health_authority_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("health_authority_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["health_authority_id"],
            ["keyserver_health_authorities.id"],
            name=op.f(
                "fk_keyserver_health_authority_keys_health_authority_id_keyserver_health_authorities"
            ),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_health_authority_keys")),
        sa.UniqueConstraint(
            "health_authority_id",
            "version",
            name=op.f("uq_keyserver_health_authority_keys_health_authority_id"),
        ),
    )
    op.create_index(
        op.f("ix_keyserver_health_authority_keys_health_authority_id"),
        "keyserver_health_authority_keys",
        ["health_authority_id"],
        unique=False,
    )
    op.create_table(
        "keyserver_authorized_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.String(length=255), nullable=False),
        sa.Column("regions", sa.String(length=500), nullable=False),
        sa.Column("bypass_verification", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "app_id = lower(app_id)", name=op.f("ck_keyserver_authorized_apps_app_id_lower_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_authorized_apps")),
        sa.UniqueConstraint("app_id", name=op.f("uq_keyserver_authorized_apps_app_id")),
    )
    op.create_table(
        "keyserver_authorized_app_health_authorities",
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("health_authority_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["keyserver_authorized_apps.id"],
            name=op.f(
                "fk_keyserver_authorized_app_health_authorities_app_id_keyserver_authorized_apps"
            ),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["health_authority_id"],
            ["keyserver_health_authorities.id"],
            name=op.f(
                "fk_keyserver_authorized_app_health_authorities_health_authority_id_keyserver_health_authorities"
            ),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "app_id",
            "health_authority_id",
            name=op.f("pk_keyserver_authorized_app_health_authorities"),
        ),
    )
    op.create_table(
        "keyserver_exposures",
        sa.Column("key", sa.LargeBinary(length=16), nullable=False),
        sa.Column("transmission_risk", sa.Integer(), nullable=False),
        sa.Column("regions", sa.String(length=500), nullable=False),
        sa.Column("traveler", sa.Boolean(), nullable=False),
        sa.Column("interval_number", sa.Integer(), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("health_authority_id", sa.Integer(), nullable=True),
        sa.Column("report_type", sa.String(length=20), nullable=False),
        sa.Column("days_since_symptom_onset", sa.Integer(), nullable=True),
        sa.Column("revised_report_type", sa.String(length=20), nullable=True),
        sa.Column("revised_at", UTCDateTime(), nullable=True),
        sa.Column("revised_days_since_symptom_onset", sa.Integer(), nullable=True),
        sa.Column("revised_transmission_risk", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "interval_count BETWEEN 1 AND 144", name=op.f("ck_keyserver_exposures_interval_count")
        ),
        sa.CheckConstraint(
            "transmission_risk BETWEEN 0 AND 8",
            name=op.f("ck_keyserver_exposures_transmission_risk"),
        ),
        sa.ForeignKeyConstraint(
            ["health_authority_id"],
            ["keyserver_health_authorities.id"],
            name=op.f("fk_keyserver_exposures_health_authority_id_keyserver_health_authorities"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_keyserver_exposures")),
    )
    op.create_index(
        "ix_keyserver_exposures_created_at", "keyserver_exposures", ["created_at"], unique=False
    )
    op.create_index(
        "ix_keyserver_exposures_revised_at", "keyserver_exposures", ["revised_at"], unique=False
    )
    op.create_table(
        "keyserver_revision_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("destroyed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_revision_keys")),
    )


def downgrade() -> None:
    op.drop_table("keyserver_revision_keys")
    op.drop_index("ix_keyserver_exposures_revised_at", table_name="keyserver_exposures")
    op.drop_index("ix_keyserver_exposures_created_at", table_name="keyserver_exposures")
    op.drop_table("keyserver_exposures")
    op.drop_table("keyserver_authorized_app_health_authorities")
    op.drop_table("keyserver_authorized_apps")
    op.drop_index(
        op.f("ix_keyserver_health_authority_keys_health_authority_id"),
        table_name="keyserver_health_authority_keys",
    )
    op.drop_table("keyserver_health_authority_keys")
    op.drop_table("keyserver_health_authorities")
