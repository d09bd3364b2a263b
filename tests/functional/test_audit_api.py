"""The /audit routes over TestClient on both engines: who may read, what pages hold, proofs.

The purges run through :class:`~exposure.retention.runtime.ServiceRetention` objects built
by :mod:`exposure.services` from the app's settings and data directory, so they sign with
the very log keys the app publishes (the embedded shape keeps them under the data directory).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exposure.api.audit import MAX_PAGE
from exposure.app import create_app
from exposure.compose import Deployment
from exposure.db import unit_of_work
from exposure.retention.log import verify_document
from exposure.retention.runtime import ServiceRetention
from tests.deployment import open_test_deployment
from tests.unit.verification.conftest import Clock
from verification.context import HASH_SECRET
from verification.service import realms

SERVICES = ("keyserver", "verification")
ROUTES = ("/audit/public-keys", "/audit/log?service=keyserver", "/audit/compliance")


@dataclass
class Audit:
    client: TestClient
    clock: Clock
    deployment: Deployment
    auditor_key: str
    disabled_auditor_key: str
    admin_key: str
    device_key: str

    @property
    def retentions(self) -> dict[str, ServiceRetention]:
        return {b.service.value: b.retention for b in self.deployment.bundles.values()}

    def get(self, path: str, key: str | None = None) -> Any:
        headers = {} if key is None else {"X-API-Key": key}
        return self.client.get(path, headers=headers)

    def audited(self, path: str) -> Any:
        response = self.get(path, self.auditor_key)
        assert response.status_code == 200, response.text
        return response.json()

    def purge(self) -> None:
        for retention in self.retentions.values():
            report = retention.purge(self.clock())
            assert not report.failed

    def secrets(self) -> list[str]:
        """Every secret a response must never hold, in the forms it could appear in."""
        found = [self.auditor_key, self.disabled_auditor_key, self.admin_key, self.device_key]
        bundle = self.deployment.verification
        with unit_of_work(bundle.session_factory) as session:
            hashing = bundle.keys.secrets(session, HASH_SECRET, now=self.clock())
        for secret in hashing:
            found += [base64.b64encode(secret).decode(), secret.hex()]
        for retention in self.retentions.values():
            seed = retention.signer.seed
            found += [base64.b64encode(seed).decode(), seed.hex()]
        return found


@pytest.fixture
def audit(database_url: str, tmp_path: Path) -> Iterator[Audit]:
    clock = Clock()
    deployment = open_test_deployment(database_url, tmp_path, clock=clock)
    context = deployment.verification.context
    with unit_of_work(deployment.verification.session_factory) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="test")
        auditor = realms.create_api_key(
            session,
            context,
            realm=created.realm,
            kind=realms.ApiKeyKind.AUDITOR,
            name="auditor",
            now=clock(),
            actor="test",
        )
        retired = realms.create_api_key(
            session,
            context,
            realm=created.realm,
            kind=realms.ApiKeyKind.AUDITOR,
            name="former auditor",
            now=clock(),
            actor="test",
        )
        realms.disable_api_key(session, api_key_id=retired.record.id, now=clock(), actor="test")
        keys = (
            auditor.plaintext,
            retired.plaintext,
            created.admin_key.plaintext,
            created.device_key.plaintext,
        )
    # The purges run through the very bundles the app serves: the same log keys.
    with TestClient(create_app(deployment, owns_deployment=True)) as client:
        yield Audit(client, clock, deployment, *keys)


# ---- public keys ----------------------------------------------------------------------


def test_public_keys_need_no_api_key_and_are_the_signers_keys(audit: Audit) -> None:
    response = audit.get("/audit/public-keys")

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert sorted(keys) == list(SERVICES)
    for service, encoded in keys.items():
        decoded = base64.b64decode(encoded, validate=True)
        assert len(decoded) == 32
        assert decoded == audit.retentions[service].public_key
    assert keys["keyserver"] != keys["verification"]
    # A key of any kind (or none that is valid) changes nothing for a public route.
    assert audit.get("/audit/public-keys", "not-a-key").json()["keys"] == keys


# ---- who may read the log and the report ---------------------------------------------


@pytest.mark.parametrize("path", ["/audit/log?service=keyserver", "/audit/compliance"])
def test_only_an_enabled_auditor_key_reads(audit: Audit, path: str) -> None:
    refused = {
        "no key": None,
        "empty key": "",
        "admin key": audit.admin_key,
        "device key": audit.device_key,
        "disabled auditor key": audit.disabled_auditor_key,
        "unknown key": "x" * 43,
        "overlong key": audit.auditor_key * 10,
    }
    for label, key in refused.items():
        response = audit.get(path, key)
        assert response.status_code == 401, label
        assert response.json()["code"] == "unauthorized", label

    assert audit.get(path, audit.auditor_key).status_code == 200


def test_a_non_ascii_key_header_is_refused_not_an_error(audit: Audit) -> None:
    response = audit.client.get("/audit/compliance", headers={b"X-API-Key": b"\xc3\xa9\xff"})

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_an_unauthorized_caller_learns_nothing_about_parameters(audit: Audit) -> None:
    for path in ("/audit/log?service=nope", "/audit/log?service=keyserver&after=-1"):
        response = audit.get(path, audit.device_key)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


# ---- /audit/log parameters ------------------------------------------------------------


def test_an_unknown_service_is_404(audit: Audit) -> None:
    for query in ("service=nope", "service=", ""):
        response = audit.get(f"/audit/log?{query}", audit.auditor_key)
        assert response.status_code == 404, query
        body = response.json()
        assert body["code"] == "unknown_service"
        assert "keyserver" in body["error"]
        assert "verification" in body["error"]


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=abc",
        "after=",
        "after=1.5",
        "after=%201",
        "after=99999999999",
        "after=2147483648",
        "limit=0",
        f"limit={MAX_PAGE + 1}",
        "limit=-5",
        # Superscript two, Arabic-Indic one, fullwidth five: str.isdigit() accepts each.
        "after=%C2%B2",
        "after=%D9%A1",
        "limit=%EF%BC%95",
    ],
)
def test_bad_paging_parameters_are_400(audit: Audit, query: str) -> None:
    response = audit.get(f"/audit/log?service=keyserver&{query}", audit.auditor_key)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_paging_returns_the_requested_seqs(audit: Audit) -> None:
    audit.purge()
    full = audit.audited("/audit/log?service=keyserver")
    seqs = [entry["seq"] for entry in full["entries"]]
    count = len(seqs)
    assert count >= 5
    assert seqs == list(range(1, count + 1))

    def page(after: int, limit: int) -> list[int]:
        document = audit.audited(f"/audit/log?service=keyserver&after={after}&limit={limit}")
        return [entry["seq"] for entry in document["entries"]]

    assert page(0, 1) == [1]
    assert page(1, 3) == [2, 3, 4]
    assert page(count - 2, MAX_PAGE) == [count - 1, count]
    assert page(count, MAX_PAGE) == []
    assert page(count + 100, 1) == []
    assert page(0, MAX_PAGE) == seqs
    stitched: list[dict[str, Any]] = []
    after = 0
    while True:
        document = audit.audited(f"/audit/log?service=keyserver&after={after}&limit=3")
        if not document["entries"]:
            break
        stitched += document["entries"]
        after = document["entries"][-1]["seq"]
    assert stitched == full["entries"]


def test_the_log_verifies_against_the_published_key(audit: Audit) -> None:
    audit.purge()
    audit.clock.advance(timedelta(hours=1))
    audit.purge()
    keys = audit.get("/audit/public-keys").json()["keys"]

    for service in SERVICES:
        key = base64.b64decode(keys[service])
        document = audit.audited(f"/audit/log?service={service}")
        report = verify_document(document, public_key=key)
        assert report.ok, report.problem
        assert report.entries_checked == len(document["entries"])
        assert report.first_seq == 1
        # Each run ends with a signed checkpoint of the head.
        checkpoints = [checkpoint["seq"] for checkpoint in document["checkpoints"]]
        assert len(checkpoints) == 2
        assert checkpoints[-1] == report.head_seq
        # A page that starts at a checkpoint verifies on its own.
        second_run = audit.audited(f"/audit/log?service={service}&after={checkpoints[0]}")
        assert verify_document(second_run, public_key=key).ok
        # The other service's key does not verify it.
        other = next(name for name in SERVICES if name != service)
        wrong = verify_document(document, public_key=base64.b64decode(keys[other]))
        assert not wrong.ok
        assert wrong.problem is not None
        assert wrong.problem.reason == "signature"


# ---- compliance ----------------------------------------------------------------------


def test_compliance_before_any_purge_names_the_missing_runs(audit: Audit) -> None:
    report = audit.audited("/audit/compliance")

    assert report["clean"] is False
    assert report["as_of"] == audit.clock().isoformat()
    for service in report["services"]:
        assert service["clean"] is False
        assert any("no purge run is logged" in finding for finding in service["findings"])


def test_compliance_is_clean_after_a_purge(audit: Audit) -> None:
    audit.purge()
    audit.clock.advance(timedelta(minutes=10))

    report = audit.audited("/audit/compliance")

    assert report["clean"] is True, report
    assert [service["service"] for service in report["services"]] == list(SERVICES)
    keys = audit.get("/audit/public-keys").json()["keys"]
    for service in report["services"]:
        assert service["findings"] == []
        assert service["log"]["ok"] is True
        assert service["public_key"] == keys[service["service"]]
        assert all(kind["runs"] == 1 for kind in service["kinds"]), service["kinds"]


def test_compliance_finds_an_overdue_purge(audit: Audit) -> None:
    audit.purge()
    # Twice the default one-hour schedule, and then some.
    audit.clock.advance(timedelta(hours=3))

    report = audit.audited("/audit/compliance")

    assert report["clean"] is False
    for service in report["services"]:
        assert any("overdue" in finding for finding in service["findings"]), service


# ---- read-only, and nothing secret -----------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_audit_route_changes_anything(audit: Audit, method: str) -> None:
    audit.purge()
    before = audit.audited("/audit/log?service=keyserver")

    for path in ROUTES:
        response = audit.client.request(
            method, path, headers={"X-API-Key": audit.auditor_key}, json={}
        )
        assert response.status_code == 405, (method, path)

    assert audit.audited("/audit/log?service=keyserver") == before


def test_no_response_holds_key_material(audit: Audit) -> None:
    audit.purge()
    texts = [audit.get("/audit/public-keys").text]
    for path in (*ROUTES, "/audit/log?service=verification", "/audit/log?service=nope"):
        texts.append(audit.get(path, audit.auditor_key).text)
        texts.append(audit.get(path, audit.admin_key).text)
        texts.append(audit.get(path).text)
    texts.append(audit.get("/audit/log?service=keyserver&limit=0", audit.auditor_key).text)

    secrets = audit.secrets()
    for text in texts:
        for secret in secrets:
            assert secret not in text
