"""The whole app over TestClient, on both engines, with a realm and a movable clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from exposure.app import create_app
from exposure.db import SessionFactory, unit_of_work
from tests.deployment import open_test_deployment
from tests.keys import kek_setting
from tests.unit.verification.conftest import Clock
from verification.service import realms
from verification.settings import VerificationSettings

SECRET = base64.b64encode(bytes(range(32, 64))).decode()


@dataclass
class Api:
    client: TestClient
    clock: Clock
    admin_key: str
    device_key: str
    realm_id: int
    sessions: SessionFactory

    def admin(self, path: str, body: object) -> dict[str, object]:
        response = self.client.post(path, json=body, headers={"X-API-Key": self.admin_key})
        return {"status": response.status_code, **response.json()}

    def device(self, path: str, body: object) -> dict[str, object]:
        response = self.client.post(path, json=body, headers={"X-API-Key": self.device_key})
        return {"status": response.status_code, **response.json()}

    def session(self) -> Session:
        return self.sessions()


def make_api(database_url: str, tmp_path: Path, **verification_overrides: Any) -> Iterator[Api]:
    verification_settings = VerificationSettings(
        kek=kek_setting("verification"), **verification_overrides
    )
    clock = Clock()
    deployment = open_test_deployment(
        database_url, tmp_path, clock=clock, verification=verification_settings
    )
    bundle = deployment.verification
    with unit_of_work(bundle.session_factory) as session:
        created = realms.create_realm(
            session, bundle.context, name="lab", now=clock(), actor="test"
        )
        keys = (created.admin_key.plaintext, created.device_key.plaintext, created.realm.id)
    app = create_app(deployment, owns_deployment=True)
    with TestClient(app) as client:
        yield Api(client, clock, keys[0], keys[1], keys[2], bundle.session_factory)


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(database_url, tmp_path)
