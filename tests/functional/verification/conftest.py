"""The whole app over TestClient, on both engines, with a realm and a movable clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session

from exposure.app import Databases, create_app
from exposure.db import make_session_factory, unit_of_work
from exposure.settings import ExposureSettings, Service
from tests.unit.verification.conftest import Clock
from verification.context import VerificationContext
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
    databases: Databases

    def admin(self, path: str, body: object) -> dict[str, object]:
        response = self.client.post(path, json=body, headers={"X-API-Key": self.admin_key})
        return {"status": response.status_code, **response.json()}

    def device(self, path: str, body: object) -> dict[str, object]:
        response = self.client.post(path, json=body, headers={"X-API-Key": self.device_key})
        return {"status": response.status_code, **response.json()}

    def session(self) -> Session:
        return make_session_factory(self.databases.engines[Service.VERIFICATION])()


def make_api(database_url: str, tmp_path: Path, **verification_overrides: object) -> Iterator[Api]:
    settings = ExposureSettings(data_dir=tmp_path, database_url=database_url)
    verification_settings = VerificationSettings(
        secret_keys=SecretStr(SECRET), **verification_overrides
    )
    databases = Databases.from_settings(settings)
    clock = Clock()
    context = VerificationContext.from_settings(verification_settings, tmp_path)
    with unit_of_work(make_session_factory(databases.engines[Service.VERIFICATION])) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="test")
        keys = (created.admin_key.plaintext, created.device_key.plaintext, created.realm.id)
    app = create_app(settings, databases, verification_settings=verification_settings, clock=clock)
    with TestClient(app) as client:
        yield Api(client, clock, keys[0], keys[1], keys[2], databases)
    databases.dispose()


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(database_url, tmp_path)
