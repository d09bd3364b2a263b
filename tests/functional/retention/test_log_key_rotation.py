"""Rotating a retention-log key: the new key signs, the old one stays published, and the whole
log verifies against both; against either alone it breaks where the other took over."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import Engine

from crypto.audit import AuditSigner
from exposure.db import unit_of_work
from exposure.retention.compliance import compliance_report
from exposure.retention.log import export_document, verify_document
from exposure.retention.runtime import public_keys_document
from exposure.retention.settings import RetentionSettings
from tests.functional.retention.conftest import T0, build_world

OLD = AuditSigner.from_seed(bytes(range(32)))
NEW = AuditSigner.from_seed(bytes(range(32, 64)))


def _seed(*signers: AuditSigner) -> SecretStr:
    return SecretStr(",".join(base64.b64encode(s.seed).decode() for s in signers))


def test_a_rotated_log_verifies_against_the_current_and_replaced_keys(
    engine: Engine, tmp_path: Path
) -> None:
    before = build_world(engine, tmp_path, RetentionSettings(keyserver_log_key=_seed(OLD)))
    before.keyserver_retention.purge(T0, clock=lambda: T0)
    settings = RetentionSettings(keyserver_log_key=_seed(NEW, OLD))
    after = build_world(engine, tmp_path, settings)
    retention = after.keyserver_retention
    later = T0 + timedelta(minutes=30)
    retention.purge(later, clock=lambda: later)

    assert retention.public_key == NEW.public_key
    assert retention.public_keys == (NEW.public_key, OLD.public_key)
    published = public_keys_document({"keyserver": retention})
    assert published["previous_keys"]["keyserver"] == [base64.b64encode(OLD.public_key).decode()]

    with unit_of_work(after.sessions) as session:
        document = export_document(session, service="keyserver", public_key=NEW.public_key)
    first_new = next(
        item["seq"] for item in document["entries"] if '"as_of":"2026-06-01T00:30' in item["entry"]
    )
    assert verify_document(document, public_key=retention.public_keys).ok
    only_new = verify_document(document, public_key=NEW.public_key).problem
    only_old = verify_document(document, public_key=OLD.public_key).problem
    assert only_new is not None
    assert (only_new.seq, only_new.reason) == (1, "signature")
    assert only_old is not None
    assert (only_old.seq, only_old.reason) == (first_new, "signature")

    report = compliance_report([retention], now=later)
    assert report["services"][0]["log"]["ok"]
