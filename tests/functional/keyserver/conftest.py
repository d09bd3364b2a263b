"""The whole app over TestClient with a trusted health authority, an app and a movable clock.

Certificates are made here with the authority's private key, as the verification service
would make them, so every check of the key server runs on real ES256 signatures and real
HMACs.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.signing import public_key_pem
from crypto.tekmac import SignedKey, compute_tekmac
from crypto.tokens import sign_jwt
from exposure.app import create_app
from exposure.db import SessionFactory, unit_of_work
from exposure.tek import interval_number, utc_midnight
from keyserver.models import Exposure
from keyserver.service import trust
from keyserver.settings import KeyserverSettings
from tests.deployment import open_test_deployment
from tests.keys import kek_setting
from tests.unit.verification.conftest import Clock

ISSUER = "gov.example.lab"
AUDIENCE = "exposure-notifications-server"
KID = "v1"
APP_ID = "com.example.exposure"
BYPASS_APP_ID = "com.example.testing"
NO_REGION_APP_ID = "com.example.noregion"


@dataclass
class Phone:
    """Builds publish bodies the way a GAEN app does."""

    api: Api
    hmac_secret: bytes

    def keys(self, count: int = 14, *, days_back_from: int = 1) -> list[dict[str, Any]]:
        """``count`` daily keys ending yesterday (so none is embargoed)."""
        today = interval_number(utc_midnight(self.api.clock()))
        return [
            {
                "key": base64.b64encode(secrets.token_bytes(16)).decode(),
                "rollingStartNumber": today - 144 * (days_back_from + day),
                "rollingPeriod": 144,
                "transmissionRisk": 0,
            }
            for day in range(count)
        ]

    def certificate(
        self, keys: Sequence[dict[str, Any]], *, report_type: str = "confirmed", **claims: Any
    ) -> str:
        signed = [
            SignedKey(k["key"], k["rollingStartNumber"], k["rollingPeriod"], k["transmissionRisk"])
            for k in keys
        ]
        now = self.api.clock()
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=15)).timestamp()),
            "reportType": report_type,
            "symptomOnsetInterval": interval_number(utc_midnight(now - timedelta(days=3))),
            "tekmac": base64.b64encode(compute_tekmac(self.hmac_secret, signed)).decode(),
        }
        body.update(claims)
        return sign_jwt(self.api.private_key, body, KID)

    def body(
        self,
        keys: Sequence[dict[str, Any]],
        *,
        report_type: str = "confirmed",
        app_id: str = APP_ID,
        **fields: Any,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "temporaryExposureKeys": list(keys),
            "healthAuthorityID": app_id,
            "verificationPayload": self.certificate(keys, report_type=report_type),
            "hmacKey": base64.b64encode(self.hmac_secret).decode(),
            "padding": base64.b64encode(secrets.token_bytes(512)).decode(),
        }
        request.update(fields)
        return request


@dataclass
class Api:
    client: TestClient
    clock: Clock
    sessions: SessionFactory
    private_key: ec.EllipticCurvePrivateKey

    def phone(self) -> Phone:
        return Phone(self, secrets.token_bytes(32))

    def publish(self, body: object, **kwargs: Any) -> Response:
        return self.client.post("/v1/publish", json=body, **kwargs)

    def session(self) -> Session:
        return self.sessions()

    def stored(self) -> dict[bytes, Exposure]:
        with self.session() as session:
            return {row.key: row for row in session.scalars(select(Exposure))}


def make_api(database_url: str, tmp_path: Path, **keyserver_overrides: Any) -> Iterator[Api]:
    keyserver_settings = KeyserverSettings(kek=kek_setting("keyserver"), **keyserver_overrides)
    clock = Clock()
    deployment = open_test_deployment(
        database_url, tmp_path, clock=clock, keyserver=keyserver_settings
    )
    private_key = ec.generate_private_key(ec.SECP256R1())
    sessions = deployment.keyserver.session_factory
    with unit_of_work(sessions) as session:
        authority = trust.add_health_authority(
            session, issuer=ISSUER, audience=AUDIENCE, name="Lab", jwks_url=None, now=clock()
        )
        trust.add_health_authority_key(
            session,
            authority,
            version=KID,
            public_key_pem=public_key_pem(private_key.public_key()).decode(),
            valid_from=clock() - timedelta(days=1),
        )
        for app_id, regions, bypass in (
            (APP_ID, ["VN"], False),
            (BYPASS_APP_ID, ["VN"], True),
            (NO_REGION_APP_ID, [], False),
        ):
            trust.add_authorized_app(
                session,
                app_id=app_id,
                health_authority_issuers=[ISSUER],
                regions=regions,
                bypass_verification=bypass,
                now=clock(),
            )
    app = create_app(deployment, owns_deployment=True)
    with TestClient(app) as client:
        yield Api(client, clock, sessions, private_key)


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(database_url, tmp_path)
