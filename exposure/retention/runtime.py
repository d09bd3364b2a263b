"""One service's retention, assembled: its policies, database, log key and purge job."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crypto.audit import AuditSigner
from exposure.clock import utc_now
from exposure.db import SessionFactory, unit_of_work
from exposure.jobs import Job
from exposure.keys import ServiceKeyStore
from exposure.retention.core import core_policies, purge_job_name
from exposure.retention.policy import RetentionPolicy
from exposure.retention.purge import PurgeReport, run_purge
from exposure.retention.settings import RetentionSettings
from exposure.settings import Service

__all__ = ["PURGE_LEASE_TTL", "PurgeIncomplete", "ServiceRetention", "public_keys_document"]

#: A purge of a large backlog takes minutes; the lease must outlast it.
PURGE_LEASE_TTL = timedelta(minutes=30)


class PurgeIncomplete(Exception):  # noqa: N818 - reads as a condition
    """Some kinds failed to purge (each is logged); the others were purged."""

    def __init__(self, service: str, kinds: Sequence[str]) -> None:
        super().__init__(f"{service}: purge failed for {', '.join(kinds)}")
        self.kinds = tuple(kinds)


@dataclass(frozen=True)
class ServiceRetention:
    """Everything needed to purge one service's database and prove it."""

    service: Service
    policies: tuple[RetentionPolicy, ...]
    session_factory: SessionFactory
    signer: AuditSigner
    settings: RetentionSettings
    #: Public keys of log keys the signer replaced, newest first (still trusted to verify).
    previous_public_keys: tuple[bytes, ...] = ()

    @classmethod
    def build(
        cls,
        service: Service,
        policies: Sequence[RetentionPolicy],
        *,
        session_factory: SessionFactory,
        keys: ServiceKeyStore,
        settings: RetentionSettings,
        now: datetime,
    ) -> ServiceRetention:
        """The service's own ``policies`` plus those of the core tables of its database, and
        its retention-log keys (the first is made on first use)."""
        with unit_of_work(session_factory) as session:
            signer, *previous = keys.log_signers(session, now=now)
        return cls(
            service=service,
            policies=(*policies, *core_policies(service, settings)),
            session_factory=session_factory,
            signer=signer,
            settings=settings,
            previous_public_keys=tuple(key.public_key for key in previous),
        )

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    @property
    def public_keys(self) -> tuple[bytes, ...]:
        """Every key the log verifies against: the current one first."""
        return (self.signer.public_key, *self.previous_public_keys)

    def purge(self, now: datetime, clock: Callable[[], datetime] = utc_now) -> PurgeReport:
        """One purge run as of ``now`` (see :func:`exposure.retention.purge.run_purge`)."""
        return run_purge(
            service=self.service.value,
            policies=self.policies,
            session_factory=self.session_factory,
            signer=self.signer,
            now=now,
            schedule=self.settings.purge_interval,
            log_deadline=self.settings.log,
            clock=clock,
        )

    def job(self) -> Job:
        """The scheduled purge job; a run with failed kinds raises :class:`PurgeIncomplete`."""

        def run(now: datetime) -> Mapping[str, Any]:
            report = self.purge(now)
            if report.failed:
                raise PurgeIncomplete(self.service.value, report.failed)
            return report.as_dict()

        return Job(
            name=purge_job_name(self.service),
            interval=self.settings.purge_interval,
            run=run,
            session_factory=self.session_factory,
            lease_ttl=PURGE_LEASE_TTL,
        )


def public_keys_document(retentions: Mapping[str, ServiceRetention]) -> dict[str, Any]:
    """The published log keys: ``{"keys": {service: current}, "previous_keys": {service:
    [replaced, ...]}}``, base64; what ``GET /audit/public-keys`` serves and ``exposure audit
    verify --public-key`` reads."""

    def b64(key: bytes) -> str:
        return base64.b64encode(key).decode("ascii")

    return {
        "keys": {name: b64(retention.public_key) for name, retention in retentions.items()},
        "previous_keys": {
            name: [b64(key) for key in retention.previous_public_keys]
            for name, retention in retentions.items()
        },
    }
