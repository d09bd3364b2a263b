"""What the console shows auditors: the service's retention log, whether it verifies, and
compliance per kind of data; read-only.

Everything comes from the functions behind ``exposure audit``: the log is exported with
:func:`exposure.retention.log.export_document`, checked with
:func:`exposure.retention.log.verify_document` against the service's published keys, and
compliance is :func:`exposure.retention.compliance.compliance_report`, so a page and the
CLI cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from exposure.db import unit_of_work
from exposure.retention.compliance import compliance_report
from exposure.retention.log import export_document, verify_document
from exposure.retention.runtime import ServiceRetention
from verification.console.models import StaffRole
from verification.console.service import StaffView, require_role

AUDIT_ROLES = (StaffRole.AUDITOR, StaffRole.REALM_ADMIN)
#: Entries shown on one page, newest first.
PAGE_SIZE = 200


@dataclass(frozen=True)
class LogRow:
    seq: int
    kind: str
    recorded_at: str
    outcome: str
    rows: int
    blobs: int
    cutoff: str


@dataclass(frozen=True)
class LogFilter:
    kind: str = ""
    since: date | None = None
    until: date | None = None


def _row(item: dict[str, Any]) -> LogRow:
    body = json.loads(item["entry"])
    return LogRow(
        seq=int(item["seq"]),
        kind=str(body.get("kind", "")),
        recorded_at=str(body.get("as_of", ""))[:16].replace("T", " "),
        outcome=str(body.get("outcome", "")),
        rows=int(body.get("rows", 0) or 0),
        blobs=int(body.get("blobs", 0) or 0),
        cutoff=str(body.get("cutoff", ""))[:16].replace("T", " "),
    )


def _matches(row: LogRow, wanted: LogFilter) -> bool:
    if wanted.kind and row.kind != wanted.kind:
        return False
    day = row.recorded_at[:10]
    if wanted.since is not None and day < wanted.since.isoformat():
        return False
    return not (wanted.until is not None and day > wanted.until.isoformat())


def export(retention: ServiceRetention, staff: StaffView) -> dict[str, Any]:
    """The log as the document ``exposure audit verify`` checks offline."""
    require_role(staff, *AUDIT_ROLES)
    with unit_of_work(retention.session_factory) as session:
        return export_document(
            session, service=retention.service.value, public_key=retention.public_key
        )


@dataclass(frozen=True)
class LogView:
    chain: dict[str, Any]
    rows: list[LogRow]
    kinds: list[str]
    total: int


def log_view(retention: ServiceRetention, staff: StaffView, wanted: LogFilter) -> LogView:
    """The log's entries matching ``wanted`` (newest first) and the whole chain's status."""
    document = export(retention, staff)
    chain = verify_document(document, public_key=retention.public_keys).as_dict()
    every = [_row(item) for item in document["entries"]]
    matching = [row for row in reversed(every) if _matches(row, wanted)]
    kinds = sorted({policy.kind for policy in retention.policies})
    return LogView(chain=chain, rows=matching[:PAGE_SIZE], kinds=kinds, total=len(matching))


def compliance(retention: ServiceRetention, staff: StaffView, now: datetime) -> dict[str, Any]:
    """The service's compliance report, as ``exposure audit compliance`` prints it."""
    require_role(staff, *AUDIT_ROLES)
    report: dict[str, Any] = compliance_report([retention], now=now)["services"][0]
    return report
