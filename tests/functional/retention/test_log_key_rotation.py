"""Rotating a retention-log key: the new key signs, the old one stays published, and the whole
log verifies against both; against either alone it breaks where the other took over."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

from exposure.db import unit_of_work
from exposure.retention.compliance import compliance_report
from exposure.retention.log import export_document, verify_document
from exposure.retention.runtime import public_keys_document
from tests.functional.retention.conftest import T0, build_world


def test_a_rotated_log_verifies_against_the_current_and_replaced_keys(
    database_url: str, tmp_path: Path
) -> None:
    before = build_world(database_url, tmp_path)
    old = before.keyserver_retention.public_key
    before.keyserver_retention.purge(T0, clock=lambda: T0)
    with unit_of_work(before.sessions) as session:
        new = before.deployment.keyserver.keys.rotate_log_key(session, now=T0).public_key
    before.close()
    # A process started after the rotation signs with the new key.
    after = build_world(database_url, tmp_path)
    retention = after.keyserver_retention
    later = T0 + timedelta(minutes=30)
    retention.purge(later, clock=lambda: later)

    assert retention.public_key == new != old
    assert retention.public_keys == (new, old)
    published = public_keys_document({"keyserver": retention})
    assert published["previous_keys"]["keyserver"] == [base64.b64encode(old).decode()]

    with unit_of_work(after.sessions) as session:
        document = export_document(session, service="keyserver", public_key=new)
    first_new = next(
        item["seq"] for item in document["entries"] if '"as_of":"2026-06-01T00:30' in item["entry"]
    )
    assert verify_document(document, public_key=retention.public_keys).ok
    only_new = verify_document(document, public_key=new).problem
    only_old = verify_document(document, public_key=old).problem
    assert only_new is not None
    assert (only_new.seq, only_new.reason) == (1, "signature")
    assert only_old is not None
    assert (only_old.seq, only_old.reason) == (first_new, "signature")

    report = compliance_report([retention], now=later)
    assert report["services"][0]["log"]["ok"]
    after.close()


def test_every_replica_of_a_service_signs_with_the_same_log_key(
    database_url: str, tmp_path: Path
) -> None:
    first = build_world(database_url, tmp_path / "host-a")
    second = build_world(database_url, tmp_path / "host-b")

    assert first.keyserver_retention.public_key == second.keyserver_retention.public_key
    assert first.verification_retention.public_key == second.verification_retention.public_key
    assert first.keyserver_retention.public_key != first.verification_retention.public_key
    first.close()
    second.close()
