"""keyserver imports: sources, their keys, import records, provenance, re-export, mirrors

Revision ID: k0003_keyserver_imports
Revises: k0002_keyserver_exports
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from exposure.db.base import UTCDateTime

revision: str = "k0003_keyserver_imports"
down_revision: str | None = "k0002_keyserver_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "keyserver_import_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("index_location", sa.String(length=1000), nullable=False),
        sa.Column("export_root", sa.String(length=1000), nullable=False),
        sa.Column("region", sa.String(length=20), nullable=False),
        sa.Column("report_type", sa.String(length=20), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("index_etag", sa.String(length=200), nullable=True),
        sa.Column("index_last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=50), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_import_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_keyserver_import_sources_name")),
    )
    op.create_table(
        "keyserver_import_source_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=100), nullable=False),
        sa.Column("key_version", sa.String(length=100), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["keyserver_import_sources.id"],
            name=op.f("fk_keyserver_import_source_keys_source_id_keyserver_import_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_import_source_keys")),
        sa.UniqueConstraint(
            "source_id",
            "key_id",
            "key_version",
            name=op.f("uq_keyserver_import_source_keys_source_id"),
        ),
    )
    op.create_index(
        op.f("ix_keyserver_import_source_keys_source_id"),
        "keyserver_import_source_keys",
        ["source_id"],
        unique=False,
    )
    op.create_table(
        "keyserver_import_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=True),
        sa.Column("keys_inserted", sa.Integer(), nullable=False),
        sa.Column("keys_revised", sa.Integer(), nullable=False),
        sa.Column("keys_duplicate", sa.Integer(), nullable=False),
        sa.Column("keys_dropped", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["keyserver_import_sources.id"],
            name=op.f("fk_keyserver_import_files_source_id_keyserver_import_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_import_files")),
        sa.UniqueConstraint(
            "source_id", "filename", name=op.f("uq_keyserver_import_files_source_id")
        ),
    )
    op.create_index(
        "ix_keyserver_import_files_created_at",
        "keyserver_import_files",
        ["created_at"],
        unique=False,
    )
    op.create_table(
        "keyserver_mirrors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("index_location", sa.String(length=1000), nullable=False),
        sa.Column("export_root", sa.String(length=1000), nullable=False),
        sa.Column("mirror_root", sa.String(length=100), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("index_etag", sa.String(length=200), nullable=True),
        sa.Column("index_last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=50), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyserver_mirrors")),
        sa.UniqueConstraint("name", name=op.f("uq_keyserver_mirrors_name")),
        sa.UniqueConstraint("mirror_root", name=op.f("uq_keyserver_mirrors_mirror_root")),
    )
    with op.batch_alter_table("keyserver_exposures") as batch:
        batch.add_column(sa.Column("import_source_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("import_file_id", sa.Integer(), nullable=True))
        batch.create_index("ix_keyserver_exposures_import_source_id", ["import_source_id"])
    with op.batch_alter_table("keyserver_export_configs") as batch:
        batch.add_column(
            sa.Column("include_imported", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("import_source_ids", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("import_regions", sa.String(length=500), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("keyserver_export_configs") as batch:
        batch.drop_column("import_regions")
        batch.drop_column("import_source_ids")
        batch.drop_column("include_imported")
    with op.batch_alter_table("keyserver_exposures") as batch:
        batch.drop_index("ix_keyserver_exposures_import_source_id")
        batch.drop_column("import_file_id")
        batch.drop_column("import_source_id")
    op.drop_table("keyserver_mirrors")
    op.drop_index("ix_keyserver_import_files_created_at", table_name="keyserver_import_files")
    op.drop_table("keyserver_import_files")
    op.drop_index(
        op.f("ix_keyserver_import_source_keys_source_id"),
        table_name="keyserver_import_source_keys",
    )
    op.drop_table("keyserver_import_source_keys")
    op.drop_table("keyserver_import_sources")
