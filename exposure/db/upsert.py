"""The dialect's own INSERT, for ``ON CONFLICT`` upserts on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert_insert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for ``table`` that offers ``on_conflict_do_update`` on the session's engine.

    Both dialects spell the upsert the same way and evaluate its WHERE clause against the
    latest committed row, which leases and rate-limit counters rely on.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
