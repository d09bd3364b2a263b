"""keyserver exports: signature infos, configs, batches, files

Revision ID: k0002_keyserver_exports
Revises: k0001_keyserver
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "k0002_keyserver_exports"
down_revision: str | None = "k0001_keyserver"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "keyserver_export_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("filename_root", sa.String(length=200), nullable=False),
        sa.Column("period_seconds", sa.Integer(), nullable=False),
        sa.Column("output_region", sa.String(length=20), nullable=False),
        sa.Column("input_regions", sa.String(length=500), nullable=False),
        sa.Column("exclude_regions", sa.String(length=500), nullable=False),
        sa.Column("include_travelers", sa.Boolean(), nullable=False),
        sa.Column("only_non_travelers", sa.Boolean(), nullable=False),
        sa.Column("max_records", sa.Integer(), nullable=False),
        sa.Column("signature_info_ids", sa.String(length=200), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "max_records >= 1", name=op.f("ck_keyserver_export_configs_max_records")
        ),
        sa.CheckConstraint(
            "period_seconds BETWEEN 1 AND 86400", name=op.f("ck_keyserver_export_configs_period")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_export_configs")),
        sa.UniqueConstraint(
            "filename_root", name=op.f("uq_keyserver_export_configs_filename_root")
        ),
    )
    op.create_table(
        "keyserver_signature_infos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signing_key", sa.String(length=255), nullable=False),
        sa.Column("key_id", sa.String(length=100), nullable=False),
        sa.Column("key_version", sa.String(length=100), nullable=False),
        sa.Column("algorithm", sa.String(length=50), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_signature_infos")),
        sa.UniqueConstraint(
            "key_id", "key_version", name=op.f("uq_keyserver_signature_infos_key_id")
        ),
    )
    op.create_table(
        "keyserver_export_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("config_id", sa.Integer(), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lease_holder", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_keyserver_export_batches_window")),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["keyserver_export_configs.id"],
            name=op.f("fk_keyserver_export_batches_config_id_keyserver_export_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_export_batches")),
        sa.UniqueConstraint(
            "config_id", "start_at", name=op.f("uq_keyserver_export_batches_config_id")
        ),
    )
    op.create_index(
        op.f("ix_keyserver_export_batches_config_id"),
        "keyserver_export_batches",
        ["config_id"],
        unique=False,
    )
    op.create_index(
        "ix_keyserver_export_batches_status_end_at",
        "keyserver_export_batches",
        ["status", "end_at"],
        unique=False,
    )
    op.create_table(
        "keyserver_export_files",
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("batch_num", sa.Integer(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("key_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["keyserver_export_batches.id"],
            name=op.f("fk_keyserver_export_files_batch_id_keyserver_export_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("filename", name=op.f("pk_keyserver_export_files")),
    )
    op.create_index(
        op.f("ix_keyserver_export_files_batch_id"),
        "keyserver_export_files",
        ["batch_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_keyserver_export_files_batch_id"), table_name="keyserver_export_files")
    op.drop_table("keyserver_export_files")
    op.drop_index(
        "ix_keyserver_export_batches_status_end_at", table_name="keyserver_export_batches"
    )
    op.drop_index(
        op.f("ix_keyserver_export_batches_config_id"), table_name="keyserver_export_batches"
    )
    op.drop_table("keyserver_export_batches")
    op.drop_table("keyserver_signature_infos")
    op.drop_table("keyserver_export_configs")
