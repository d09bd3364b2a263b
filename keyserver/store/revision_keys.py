"""The key server's queries on revision keys (the keys that seal revision tokens).

Nothing here commits; the caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyserver.models import RevisionKey


def allowed_newest_first(session: Session) -> list[RevisionKey]:
    """The keys still allowed to open tokens, newest (by ``created_at``, then id) first."""
    statement = (
        select(RevisionKey)
        .where(RevisionKey.allowed.is_(True))
        .order_by(RevisionKey.created_at.desc(), RevisionKey.id.desc())
    )
    return list(session.scalars(statement))


def add_revision_key(session: Session, row: RevisionKey) -> RevisionKey:
    session.add(row)
    session.flush()  # the caller needs the id (the token kid) before it seals the key
    return row
