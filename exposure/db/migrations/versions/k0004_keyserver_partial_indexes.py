"""keyserver: index revised_at and import_source_id only where set; imported timestamps

Most stored keys are never revised, and published keys come from no import source; their
NULLs filled two indexes that no query reads (every query on these columns compares them
with a value, which implies NOT NULL). Each insert now skips both indexes for such keys.

On SQLite, keys imported before this version stored created_at as text without its
microseconds ("2026-11-02 03:00:00"), where every other statement writes and compares
"2026-11-02 03:00:00.000000": such a key sorted before the instant it names, into the
export window before its own. They are rewritten in the common form.

Revision ID: k0004_keyserver_partial_indexes
Revises: k0003_keyserver_imports
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "k0004_keyserver_partial_indexes"
down_revision: str | None = "k0003_keyserver_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "keyserver_exposures"
_COLUMNS = ("revised_at", "import_source_id")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE keyserver_exposures SET created_at = created_at || '.000000' "
            "WHERE origin = 'import' AND length(created_at) = 19"
        )
    for column in _COLUMNS:
        name = f"ix_{_TABLE}_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name=_TABLE)
        op.create_index(
            name, _TABLE, [column], unique=False, postgresql_where=where, sqlite_where=where
        )


def downgrade() -> None:
    for column in _COLUMNS:
        name = f"ix_{_TABLE}_{column}"
        op.drop_index(name, table_name=_TABLE)
        op.create_index(name, _TABLE, [column], unique=False)
