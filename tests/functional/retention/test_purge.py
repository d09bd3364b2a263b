"""The purge runner: failures stay contained, runs are serialized, batches add up, metrics and
compliance tell the truth."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from crypto.randomness import random_bytes
from exposure.db import SessionFactory, unit_of_work
from exposure.db.lease import held_lease
from exposure.jobs import run_job
from exposure.retention.compliance import compliance_report
from exposure.retention.models import RetentionLogEntry
from exposure.retention.policy import PurgeResult
from exposure.retention.runtime import PurgeIncomplete, ServiceRetention
from exposure.retention.store import delete_in_batches
from keyserver.models import Exposure
from tests.functional.retention.conftest import T0, World
from verification.models import Realm, VerificationToken

DAY = timedelta(days=1)


def _old_keys(world: World, count: int, created_at: datetime = T0) -> None:
    with unit_of_work(world.sessions) as session:
        session.add_all(
            Exposure(
                key=random_bytes(16),
                transmission_risk=2,
                regions=",VN,",
                interval_number=2_900_000,
                interval_count=144,
                created_at=created_at,
                origin="publish",
            )
            for _ in range(count)
        )


def _keys(world: World) -> int:
    with world.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Exposure)) or 0)


def _broken(retention: ServiceRetention, kind: str) -> ServiceRetention:
    def fail(_sessions: SessionFactory, _cutoff: datetime, _now: datetime) -> PurgeResult:
        raise RuntimeError("disk on fire")

    policies = tuple(
        dataclasses.replace(policy, purge=fail) if policy.kind == kind else policy
        for policy in retention.policies
    )
    return dataclasses.replace(retention, policies=policies)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failing_kind_is_logged_and_the_others_still_purge(world: World) -> None:
    _old_keys(world, 3)
    broken = _broken(world.keyserver_retention, "padding-keys")
    failures = _sample(
        "exposure_retention_purge_failures_total", service="keyserver", kind="padding-keys"
    )

    report = broken.purge(T0 + 20 * DAY)

    assert report.failed == ["padding-keys"]
    assert _keys(world) == 0
    outcome = next(item for item in report.outcomes if item.kind == "padding-keys")
    assert (outcome.ok, outcome.error) == (False, "RuntimeError")
    with world.sessions() as session:
        entry = session.scalars(
            select(RetentionLogEntry.entry).where(RetentionLogEntry.kind == "padding-keys")
        ).one()
    assert '"outcome":"failed"' in entry
    assert "disk on fire" not in entry  # the class is logged, not the message
    assert (
        _sample("exposure_retention_purge_failures_total", service="keyserver", kind="padding-keys")
        == failures + 1
    )


def test_the_job_reports_a_partial_purge_as_a_failure(world: World) -> None:
    broken = _broken(world.keyserver_retention, "exposure-keys")

    with pytest.raises(PurgeIncomplete, match="exposure-keys"):
        run_job(broken.job(), now=T0)


def test_a_purge_already_running_elsewhere_is_skipped(world: World) -> None:
    job = world.keyserver_retention.job()
    with held_lease(
        world.sessions, name=f"job:{job.name}", ttl=timedelta(minutes=5), clock=lambda: T0
    ):
        result = run_job(job, now=T0, clock=lambda: T0)

    assert not result.ran
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RetentionLogEntry)) == 0


def test_batched_deletes_remove_everything_in_small_transactions(world: World) -> None:
    _old_keys(world, 1_050)
    _old_keys(world, 5, created_at=T0 + 10 * DAY)

    deleted = delete_in_batches(
        world.sessions,
        table="keyserver_exposures",
        where="created_at < :cutoff",
        parameters={"cutoff": T0 + DAY},
        batch_size=100,
    )

    assert deleted == 1_050
    assert _keys(world) == 5


def test_batch_size_must_be_positive(world: World) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        delete_in_batches(
            world.sessions, table="leases", where="1 = 1", parameters={}, batch_size=0
        )


def test_metrics_report_rows_last_success_and_oldest_age(world: World) -> None:
    _old_keys(world, 2)
    _old_keys(world, 1, created_at=T0 + 10 * DAY)
    before = _sample(
        "exposure_retention_purged_rows_total", service="keyserver", kind="exposure-keys"
    )
    now = T0 + 15 * DAY

    world.keyserver_retention.purge(now, clock=lambda: now)

    labels = {"service": "keyserver", "kind": "exposure-keys"}
    assert _sample("exposure_retention_purged_rows_total", **labels) == before + 2
    assert _sample("exposure_retention_last_success_timestamp_seconds", **labels) == now.timestamp()
    assert _sample("exposure_retention_oldest_item_age_seconds", **labels) == 5 * 86400
    assert _sample("exposure_retention_deadline_seconds", **labels) == 14 * 86400


def _findings(world: World, now: datetime) -> list[str]:
    report = compliance_report([world.keyserver_retention, world.verification_retention], now=now)
    findings: list[str] = [
        finding for service in report["services"] for finding in service["findings"]
    ]
    assert report["clean"] == (not findings)
    return findings


def test_compliance_is_clean_right_after_a_purge(world: World) -> None:
    _old_keys(world, 2, created_at=T0 - 3 * DAY)
    world.purge(T0)

    assert _findings(world, T0 + timedelta(minutes=5)) == []


def test_compliance_finds_data_held_past_its_deadline(world: World) -> None:
    world.purge(T0)
    with unit_of_work(world.sessions) as session:
        realm = Realm(name="r", certificate_issuer="iss", created_at=T0)
        session.add(realm)
        session.flush()
        session.add(
            VerificationToken(
                realm_id=realm.id,
                token_hmac=random_bytes(64),
                test_type="confirmed",
                expires_at=T0 - 4 * DAY,
            )
        )

    findings = _findings(world, T0 + timedelta(minutes=5))

    assert len(findings) == 1
    assert findings[0].startswith("verification-tokens: held past deadline")


def test_compliance_finds_no_run_an_overdue_run_and_gaps(world: World) -> None:
    assert any("no purge run is logged" in finding for finding in _findings(world, T0))

    world.purge(T0)
    world.purge(T0 + 5 * timedelta(hours=1))  # 5 h apart, schedule 1 h: a gap
    world.purge(T0 + 6 * timedelta(hours=1))
    findings = _findings(world, T0 + 6 * timedelta(hours=1) + timedelta(minutes=1))
    assert findings
    assert all("gap(s) between purges" in finding for finding in findings)

    later = _findings(world, T0 + 9 * timedelta(hours=1))
    assert any("overdue: last purge ran" in finding for finding in later)


def test_compliance_finds_a_failed_last_run(world: World) -> None:
    _broken(world.keyserver_retention, "leases").purge(T0, clock=lambda: T0)
    world.verification_retention.purge(T0, clock=lambda: T0)

    assert _findings(world, T0) == ["leases: the last purge failed"]


def test_compliance_finds_a_tampered_log(world: World) -> None:
    world.purge(T0)
    with unit_of_work(world.sessions) as session:
        session.execute(
            update(RetentionLogEntry)
            .where(RetentionLogEntry.service == "verification", RetentionLogEntry.seq == 2)
            .values(entry=RetentionLogEntry.entry + " ")
        )

    findings = _findings(world, T0)

    assert len(findings) == 1
    assert findings[0].startswith("retention log does not verify at seq 2: link")
