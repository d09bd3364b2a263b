"""What an auditor asks of a running service: is anything held past its deadline, did every
scheduled purge run on time, and does the retention log verify.

For each kind of data with a deadline, the report gives the age of the oldest item still
held (by the policy's own measure) against the deadline. An item may legitimately wait one
purge interval past its deadline for the next run; twice the interval is a finding. For
each kind the purge job enforces, the log's entries give the runs: the last one must be
recent (no more than twice the interval ago), consecutive runs must be no more than twice
the interval apart, and the last run must have succeeded. The log itself must verify
against the service's public key. Any finding makes the report not clean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from exposure.db import unit_of_work
from exposure.retention.log import export_document, verify_document
from exposure.retention.policy import Action
from exposure.retention.purge import LOG_KIND
from exposure.retention.runtime import ServiceRetention

__all__ = ["GRACE_INTERVALS", "KindCompliance", "compliance_report"]

#: How many purge intervals an item may overstay, and runs may be apart, before a finding.
GRACE_INTERVALS = 2
#: Gaps listed per kind at most (the count is always complete).
_MAX_LISTED_GAPS = 10


@dataclass
class KindCompliance:
    kind: str
    action: str
    deadline_seconds: int | None
    oldest_age_seconds: int | None = None
    runs: int = 0
    last_run: str | None = None
    last_outcome: str | None = None
    gaps: list[dict[str, str]] = field(default_factory=list)
    gap_count: int = 0
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "deadline_seconds": self.deadline_seconds,
            "oldest_age_seconds": self.oldest_age_seconds,
            "within_deadline": not any(f.startswith("held") for f in self.findings),
            "runs": self.runs,
            "last_run": self.last_run,
            "last_outcome": self.last_outcome,
            "gap_count": self.gap_count,
            "gaps": self.gaps,
            "findings": self.findings,
        }


def _runs_by_kind(document: Mapping[str, Any]) -> dict[str, list[tuple[datetime, str, int]]]:
    """(as_of, outcome, schedule seconds) of every logged run, by kind, oldest first."""
    runs: dict[str, list[tuple[datetime, str, int]]] = {}
    for item in document["entries"]:
        body = json.loads(item["entry"])
        runs.setdefault(body["kind"], []).append(
            (
                datetime.fromisoformat(body["as_of"]),
                str(body.get("outcome")),
                int(body["policy"]["schedule_seconds"]),
            )
        )
    return runs


def compliance_report(retentions: Sequence[ServiceRetention], *, now: datetime) -> dict[str, Any]:
    """The compliance report of every service in ``retentions`` as of ``now``."""
    services = [_service_report(retention, now) for retention in retentions]
    return {
        "as_of": now.isoformat(),
        "clean": all(service["clean"] for service in services),
        "grace_intervals": GRACE_INTERVALS,
        "services": services,
    }


def _service_report(retention: ServiceRetention, now: datetime) -> dict[str, Any]:
    schedule = retention.settings.purge_interval
    grace = GRACE_INTERVALS * schedule
    with unit_of_work(retention.session_factory) as session:
        document = export_document(
            session, service=retention.service.value, public_key=retention.public_key
        )
    verification = verify_document(document, public_key=retention.public_keys)
    findings: list[str] = []
    if not verification.ok and verification.problem is not None:
        problem = verification.problem
        findings.append(
            f"retention log does not verify at seq {problem.seq}: {problem.reason} "
            f"({problem.detail})"
        )
    # The exported document is what was just verified: read the runs from it, not again.
    runs = _runs_by_kind(document)
    kinds = []
    for policy in retention.policies:
        if policy.action is Action.KEEP or policy.deadline is None:
            continue
        kind = KindCompliance(
            kind=policy.kind,
            action=policy.action.value,
            deadline_seconds=int(policy.deadline.total_seconds()),
        )
        if policy.oldest is not None:
            oldest = policy.oldest(retention.session_factory, now)
            if oldest is not None:
                age = now - oldest
                kind.oldest_age_seconds = max(0, int(age.total_seconds()))
                if age > policy.deadline + grace:
                    kind.findings.append(
                        f"held past deadline: oldest item is {_days(age)} old, deadline "
                        f"{_days(policy.deadline)} (+{_days(grace)} grace)"
                    )
        if policy.purged or policy.kind == LOG_KIND:
            _check_runs(kind, runs.get(policy.kind, []), now=now, grace=grace)
        findings.extend(f"{policy.kind}: {finding}" for finding in kind.findings)
        kinds.append(kind.as_dict())
    return {
        "service": retention.service.value,
        "clean": not findings,
        "purge_interval_seconds": int(schedule.total_seconds()),
        "log": verification.as_dict(),
        "public_key": document["public_key"],
        "kinds": kinds,
        "findings": findings,
    }


def _check_runs(
    kind: KindCompliance,
    runs: list[tuple[datetime, str, int]],
    *,
    now: datetime,
    grace: timedelta,
) -> None:
    kind.runs = len(runs)
    if not runs:
        kind.findings.append("no purge run is logged")
        return
    last_at, last_outcome, _schedule = runs[-1]
    kind.last_run = last_at.isoformat()
    kind.last_outcome = last_outcome
    if now - last_at > grace:
        kind.findings.append(f"overdue: last purge ran {_days(now - last_at)} ago")
    if last_outcome != "ok":
        kind.findings.append("the last purge failed")
    for (earlier, _, _), (later, _, schedule_seconds) in pairwise(runs):
        allowed = GRACE_INTERVALS * timedelta(seconds=schedule_seconds)
        if later - earlier > allowed:
            kind.gap_count += 1
            if len(kind.gaps) < _MAX_LISTED_GAPS:
                kind.gaps.append({"from": earlier.isoformat(), "to": later.isoformat()})
    if kind.gap_count:
        kind.findings.append(
            f"{kind.gap_count} gap(s) between purges longer than twice the schedule"
        )


def _days(duration: timedelta) -> str:
    hours = duration.total_seconds() / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"
