"""One purge run over a service's policies, each kind logged in the retention log.

:func:`run_purge` is the body of the ``purge-keyserver`` and ``purge-verification`` jobs.
For every policy the service purges, in declaration order, it computes the cutoff
(``now - deadline``), calls the policy's purger, measures the oldest item left, and appends
one signed entry to the retention log, whether the purge worked or failed. A failure is
logged (with its trace, which never holds data values), counted, recorded in the entry as
its exception class, and the run goes on with the next kind: one broken kind never keeps
the others past their deadline. Then the log's own retention is applied (and logged) and
the chain head is signed in a checkpoint.

Entries hold only counts, times and policy values, never data: what was deleted is known
only as "so many rows older than the cutoff".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from crypto.audit import AuditSigner
from exposure.db import SessionFactory, unit_of_work
from exposure.retention import metrics
from exposure.retention.log import append_entry, truncate_before, write_checkpoint
from exposure.retention.policy import PurgeResult, RetentionPolicy

__all__ = ["ENTRY_VERSION", "LOG_KIND", "KindOutcome", "PurgeReport", "run_purge"]

_logger = logging.getLogger(__name__)

#: The kind under which the log records its own truncation.
LOG_KIND = "retention-log"
#: Version of the entry's fields; a change of meaning gets a new one.
ENTRY_VERSION = 1

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class KindOutcome:
    kind: str
    ok: bool
    rows: int
    blobs: int
    cutoff: datetime
    oldest_remaining_age_seconds: int | None
    error: str | None
    seq: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "rows": self.rows,
            "blobs": self.blobs,
            "cutoff": self.cutoff.isoformat(),
            "oldest_remaining_age_seconds": self.oldest_remaining_age_seconds,
            "error": self.error,
            "log_seq": self.seq,
        }


@dataclass
class PurgeReport:
    service: str
    as_of: datetime
    outcomes: list[KindOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [outcome.kind for outcome in self.outcomes if not outcome.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "as_of": self.as_of.isoformat(),
            "rows": sum(outcome.rows for outcome in self.outcomes),
            "blobs": sum(outcome.blobs for outcome in self.outcomes),
            "failed": self.failed,
            "kinds": [outcome.as_dict() for outcome in self.outcomes],
        }


def _age_seconds(oldest: datetime | None, now: datetime) -> int | None:
    if oldest is None:
        return None
    return max(0, int((now - oldest).total_seconds()))


def run_purge(
    *,
    service: str,
    policies: Sequence[RetentionPolicy],
    session_factory: SessionFactory,
    signer: AuditSigner,
    now: datetime,
    schedule: timedelta,
    log_deadline: timedelta,
    clock: Clock,
) -> PurgeReport:
    """Purge every kind ``service`` purges as of ``now``; log each; never stop early.

    ``now`` is the time the deadlines are measured against (the CLI may move it); ``clock``
    times the run. Raises nothing for a failing kind (see the report's ``failed``); errors
    writing the log itself propagate, since a purge that cannot be proven must be noticed.
    """
    report = PurgeReport(service=service, as_of=now)
    for policy in policies:
        if policy.service != service or policy.purge is None or policy.deadline is None:
            continue
        report.outcomes.append(
            _purge_one(policy, session_factory, signer, now=now, schedule=schedule, clock=clock)
        )
    report.outcomes.append(
        _truncate_log(
            service,
            session_factory,
            signer,
            now=now,
            schedule=schedule,
            deadline=log_deadline,
            clock=clock,
        )
    )
    with unit_of_work(session_factory) as session:
        write_checkpoint(session, signer, service=service, now=now)
    return report


def _policy_fields(
    *, action: str, deadline: timedelta, measured_from: str, schedule: timedelta
) -> dict[str, Any]:
    return {
        "action": action,
        "deadline_seconds": int(deadline.total_seconds()),
        "measured_from": measured_from,
        "schedule_seconds": int(schedule.total_seconds()),
    }


def _purge_one(
    policy: RetentionPolicy,
    session_factory: SessionFactory,
    signer: AuditSigner,
    *,
    now: datetime,
    schedule: timedelta,
    clock: Clock,
) -> KindOutcome:
    if policy.purge is None or policy.deadline is None:
        raise ValueError(f"{policy.kind} is not purged by this job")
    cutoff = policy.cutoff(now)
    started = clock()
    result = PurgeResult(rows=0)
    error: str | None = None
    oldest: datetime | None = None
    try:
        result = policy.purge(session_factory, cutoff, now)
        if policy.oldest is not None:
            oldest = policy.oldest(session_factory, now)
    except Exception as failure:
        # The trace is for operators; purgers put no data values in their exceptions.
        _logger.exception("purge of %s (%s) failed", policy.kind, policy.service)
        error = type(failure).__name__
    outcome = KindOutcome(
        kind=policy.kind,
        ok=error is None,
        rows=result.rows,
        blobs=result.blobs,
        cutoff=cutoff,
        oldest_remaining_age_seconds=_age_seconds(oldest, now),
        error=error,
        seq=None,
    )
    return _logged(
        outcome,
        service=policy.service,
        policy=_policy_fields(
            action=policy.action.value,
            deadline=policy.deadline,
            measured_from=policy.measured_from,
            schedule=schedule,
        ),
        deadline=policy.deadline,
        session_factory=session_factory,
        signer=signer,
        now=now,
        started=started,
        finished=clock(),
    )


def _truncate_log(
    service: str,
    session_factory: SessionFactory,
    signer: AuditSigner,
    *,
    now: datetime,
    schedule: timedelta,
    deadline: timedelta,
    clock: Clock,
) -> KindOutcome:
    cutoff = now - deadline
    started = clock()
    with unit_of_work(session_factory) as session:
        rows = truncate_before(session, signer, service=service, cutoff=cutoff, now=now)
    outcome = KindOutcome(
        kind=LOG_KIND,
        ok=True,
        rows=rows,
        blobs=0,
        cutoff=cutoff,
        oldest_remaining_age_seconds=None,
        error=None,
        seq=None,
    )
    return _logged(
        outcome,
        service=service,
        policy=_policy_fields(
            action="delete", deadline=deadline, measured_from="recorded_at", schedule=schedule
        ),
        deadline=deadline,
        session_factory=session_factory,
        signer=signer,
        now=now,
        started=started,
        finished=clock(),
    )


def _logged(
    outcome: KindOutcome,
    *,
    service: str,
    policy: dict[str, Any],
    deadline: timedelta,
    session_factory: SessionFactory,
    signer: AuditSigner,
    now: datetime,
    started: datetime,
    finished: datetime,
) -> KindOutcome:
    """Append ``outcome``'s entry to the log, record its metrics, and return it with its seq."""
    fields = _entry_fields(outcome, now=now, started=started, finished=finished, policy=policy)
    with unit_of_work(session_factory) as session:
        seq = append_entry(
            session, signer, service=service, kind=outcome.kind, fields=fields, recorded_at=now
        ).seq
    _record_metrics(service, outcome.kind, outcome, deadline, finished)
    return replace(outcome, seq=seq)


def _entry_fields(
    outcome: KindOutcome,
    *,
    now: datetime,
    started: datetime,
    finished: datetime,
    policy: dict[str, Any],
) -> dict[str, Any]:
    # No host name, process id or replica: the entry says what happened, not where.
    return {
        "v": ENTRY_VERSION,
        "as_of": now.isoformat(),
        "policy": policy,
        "cutoff": outcome.cutoff.isoformat(),
        "rows": outcome.rows,
        "blobs": outcome.blobs,
        "oldest_remaining_age_seconds": outcome.oldest_remaining_age_seconds,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "outcome": "ok" if outcome.ok else "failed",
        "error": outcome.error,
    }


def _record_metrics(
    service: str, kind: str, outcome: KindOutcome, deadline: timedelta, finished: datetime
) -> None:
    metrics.DEADLINE.labels(service, kind).set(deadline.total_seconds())
    if not outcome.ok:
        metrics.PURGE_FAILURES.labels(service, kind).inc()
        return
    metrics.PURGED_ROWS.labels(service, kind).inc(outcome.rows)
    metrics.PURGED_BLOBS.labels(service, kind).inc(outcome.blobs)
    metrics.LAST_SUCCESS.labels(service, kind).set(finished.timestamp())
    metrics.OLDEST_ITEM_AGE.labels(service, kind).set(outcome.oldest_remaining_age_seconds or 0)
