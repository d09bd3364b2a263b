"""A phone's whole journey over real HTTP: a code, a certificate, a publish, a revision.

The server is a real ``exposure serve`` (uvicorn) set up by ``exposure admin bootstrap``,
which trusts the default verification realm as a health authority; nothing is faked. The
server's log is read at the end: it must not hold the client's address or user agent.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crypto.tekmac import SignedKey, compute_tekmac
from exposure.tek import interval_number, utc_midnight
from tests.e2e.conftest import RunningServer, run_cli

USER_AGENT = "ExposurePhone/1.0 marker-7f3a"


def _keys(count: int) -> list[dict[str, Any]]:
    today = interval_number(utc_midnight(datetime.now(UTC)))
    return [
        {
            "key": base64.b64encode(secrets.token_bytes(16)).decode(),
            "rollingStartNumber": today - 144 * (day + 1),
            "rollingPeriod": 144,
            "transmissionRisk": 0,
        }
        for day in range(count)
    ]


def _standard_base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _certificate(
    client: httpx.Client,
    setup: dict[str, Any],
    test_type: str,
    hmac: bytes,
    *,
    encode: Callable[[bytes], str] = _standard_base64,
) -> str:
    symptoms = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    issued = client.post(
        "/api/issue",
        json={"testType": test_type, "symptomDate": symptoms},
        headers={"X-API-Key": setup["admin_api_key"]},
    )
    assert issued.status_code == 200, issued.text
    verified = client.post(
        "/api/verify",
        json={"code": issued.json()["code"], "accept": ["confirmed", "likely"]},
        headers={"X-API-Key": setup["device_api_key"]},
    )
    assert verified.status_code == 200, verified.text
    certified = client.post(
        "/api/certificate",
        json={"token": verified.json()["token"], "ekeyhmac": encode(hmac)},
        headers={"X-API-Key": setup["device_api_key"]},
    )
    assert certified.status_code == 200, certified.text
    certificate: str = certified.json()["certificate"]
    return certificate


def test_a_phone_publishes_fourteen_keys_then_revises_them(server: RunningServer) -> None:
    bootstrap = run_cli(server.data_dir, "admin", "bootstrap", "--json")
    assert bootstrap.returncode == 0, bootstrap.stderr
    setup = json.loads(bootstrap.stdout)
    keys = _keys(14)
    secret = secrets.token_bytes(32)
    signed = [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    tekmac = compute_tekmac(secret, signed)
    publish_path = setup["publish_url"].removeprefix("http://127.0.0.1:8080")

    with httpx.Client(
        base_url=server.base_url, timeout=10, headers={"User-Agent": USER_AGENT}
    ) as client:
        likely = _certificate(client, setup, "likely", tekmac)
        body = {
            "temporaryExposureKeys": keys,
            "healthAuthorityID": setup["health_authority_id"],
            "verificationPayload": likely,
            "hmacKey": base64.b64encode(secret).decode(),
            "padding": base64.b64encode(secrets.token_bytes(1024)).decode(),
        }
        first = client.post(publish_path, json=body)
        assert first.status_code == 200, first.text
        assert first.json()["insertedExposures"] == 14

        confirmed = _certificate(client, setup, "confirmed", tekmac)
        revision = {
            **body,
            "verificationPayload": confirmed,
            "revisionToken": first.json()["revisionToken"],
        }
        second = client.post(publish_path, json=revision)
        replay = client.post(publish_path, json={**revision, "revisionToken": ""})

    assert second.status_code == 200, second.text
    assert "insertedExposures" not in second.json()
    assert second.json()["revisionToken"]
    assert replay.status_code == 400
    assert replay.json()["code"] == "missing_revision_token"

    log = server.stop()
    server_port = server.base_url.rsplit(":", 1)[1]
    addresses = [
        line
        for line in log.splitlines()
        if re.search(r"127\.0\.0\.1:\d+", line) and f":{server_port}" not in line
    ]
    assert addresses == []
    assert "marker-7f3a" not in log


def test_a_url_safe_unpadded_ekeyhmac_certifies_a_publish(server: RunningServer) -> None:
    # Google's verification server takes any base64 for ekeyhmac and copies it into the
    # certificate's tekmac verbatim; the key server must then accept that tekmac.
    setup = json.loads(run_cli(server.data_dir, "admin", "bootstrap", "--json").stdout)
    keys = _keys(3)
    signed = [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    while True:  # a MAC whose two alphabets differ, so the test shows which one is read
        secret = secrets.token_bytes(32)
        tekmac = compute_tekmac(secret, signed)
        if set(base64.b64encode(tekmac).decode()) & {"+", "/"}:
            break

    def url_safe_unpadded(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        certificate = _certificate(client, setup, "confirmed", tekmac, encode=url_safe_unpadded)
        published = client.post(
            setup["publish_url"].removeprefix("http://127.0.0.1:8080"),
            json={
                "temporaryExposureKeys": keys,
                "healthAuthorityID": setup["health_authority_id"],
                "verificationPayload": certificate,
                "hmacKey": base64.b64encode(secret).decode(),
            },
        )

    assert published.status_code == 200, published.text
    assert published.json()["insertedExposures"] == 3
