"""Audit entries for administrative actions, written in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from verification import store
from verification.models import AuditEntry


def record(
    session: Session,
    *,
    realm_id: int | None,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    diff: str = "",
) -> None:
    """Append an audit entry; it commits or rolls back together with the change itself."""
    store.add_audit_entry(
        session,
        AuditEntry(
            realm_id=realm_id, actor=actor, action=action, target=target, diff=diff, created_at=now
        ),
    )
