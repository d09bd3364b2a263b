"""A code's whole journey over real HTTP: bootstrap, issue, verify, certificate, JWKS."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import jwt

from crypto.tokens import public_keys_from_jwk_set, verify_jwt
from tests.e2e.conftest import RunningServer, run_cli


def test_issue_verify_certify_and_check_with_jwks(server: RunningServer) -> None:
    bootstrap = run_cli(server.data_dir, "admin", "bootstrap", "--json")
    assert bootstrap.returncode == 0, bootstrap.stderr
    setup = json.loads(bootstrap.stdout)
    again = json.loads(run_cli(server.data_dir, "admin", "bootstrap", "--json").stdout)
    assert again == setup  # idempotent: same realm, same keys
    today = datetime.now(UTC).date().isoformat()
    ekeyhmac = base64.b64encode(bytes(range(32))).decode()

    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        issued = client.post(
            "/api/issue",
            json={"testType": "confirmed", "symptomDate": today},
            headers={"X-API-Key": setup["admin_api_key"]},
        )
        assert issued.status_code == 200, issued.text
        verified = client.post(
            "/api/verify",
            json={"code": issued.json()["code"], "accept": ["confirmed"]},
            headers={"X-API-Key": setup["device_api_key"]},
        )
        assert verified.status_code == 200, verified.text
        certified = client.post(
            "/api/certificate",
            json={"token": verified.json()["token"], "ekeyhmac": ekeyhmac},
            headers={"X-API-Key": setup["device_api_key"]},
        )
        assert certified.status_code == 200, certified.text
        jwks = httpx.get(setup["jwks_url"].replace("http://127.0.0.1:8080", server.base_url))

    certificate = certified.json()["certificate"]
    issuer = jwt.decode(certificate, options={"verify_signature": False})["iss"]
    claims = verify_jwt(
        certificate,
        public_keys=public_keys_from_jwk_set(jwks.json()),
        audience="exposure-notifications-server",
        issuer=issuer,
        now=datetime.now(UTC),
    )
    assert claims["tekmac"] == ekeyhmac
    assert claims["reportType"] == "confirmed"
    midnight = datetime.fromisoformat(today).replace(tzinfo=UTC)
    assert claims["symptomOnsetInterval"] == int(midnight.timestamp()) // 600


def test_cli_realm_apikey_and_rotation(server: RunningServer) -> None:
    created = run_cli(server.data_dir, "admin", "realm", "create", "hospital-a", "--json")
    assert created.returncode == 0, created.stderr
    realm = json.loads(created.stdout)
    assert {"realm_id", "admin_api_key", "device_api_key", "jwks_url"} <= set(realm)

    key = run_cli(
        server.data_dir,
        "admin",
        "apikey",
        "create",
        "--realm",
        "hospital-a",
        "--type",
        "device",
        "--json",
    )
    assert key.returncode == 0, key.stderr
    disabled = run_cli(
        server.data_dir, "admin", "apikey", "disable", "--id", str(json.loads(key.stdout)["id"])
    )
    assert disabled.returncode == 0, disabled.stderr
    refused = httpx.post(
        f"{server.base_url}/api/verify",
        json={"code": "12345678"},
        headers={"X-API-Key": json.loads(key.stdout)["api_key"]},
    )
    assert refused.status_code == 401
    unsafe = run_cli(
        server.data_dir, "admin", "realm", "create", "weak", "--short-code-length", "4"
    )
    assert unsafe.returncode == 1
    assert "6 to 20 digits" in unsafe.stderr
    rotated = run_cli(
        server.data_dir, "admin", "signing-key", "rotate", "--realm", "hospital-a", "--json"
    )
    assert rotated.returncode == 0, rotated.stderr

    published = httpx.get(f"{server.base_url}/jwks/{realm['realm_id']}").json()
    assert [jwk["kid"] for jwk in published] == [
        json.loads(rotated.stdout)["kid"],
        f"r{realm['realm_id']}v1",
    ]
    duplicate = run_cli(server.data_dir, "admin", "realm", "create", "hospital-a")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr
