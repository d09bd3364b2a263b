"""The operator's CLI over the whole life of what it creates: create prints what the next
step needs, list and show find it by the id create printed, disable and remove end it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from exposure.cli import app as exposure_cli
from exposure.db import unit_of_work
from exposure.settings import Service
from tests.deployment import open_test_deployment
from verification.errors import Unauthorized
from verification.service import realms


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def ok(self, *arguments: str) -> str:
        result = self.runner.invoke(exposure_cli, list(arguments))
        assert result.exit_code == 0, (arguments, result.stdout, result.stderr, result.exception)
        return result.stdout

    def json(self, *arguments: str) -> Any:
        return json.loads(self.ok(*arguments, "--json"))

    def refused(self, *arguments: str) -> str:
        result = self.runner.invoke(exposure_cli, list(arguments))
        assert result.exit_code == 1, (arguments, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ")
        return result.stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in [name for name in os.environ if name.startswith("EXPOSURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EXPOSURE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EXPOSURE_PUBLIC_URL", "https://verify.example")
    runner = Cli(tmp_path)
    runner.ok("db", "upgrade")
    return runner


def _authenticates(data_dir: Path, api_key: str, kind: realms.ApiKeyKind) -> bool:
    # Opened from the environment as the CLI opens it, so the same embedded KEK files.
    from exposure.compose import DeploymentSettings, open_deployment
    from exposure.settings import ExposureSettings

    settings = DeploymentSettings(base=ExposureSettings(data_dir=data_dir))
    with open_deployment(settings, [Service.VERIFICATION]) as deployment:
        bundle = deployment.verification
        try:
            with unit_of_work(bundle.session_factory) as session:
                realms.authenticate(session, bundle.context, api_key=api_key, kind=kind)
        except Unauthorized:
            return False
    return True


def test_a_realm_from_creation_to_disabled(cli: Cli) -> None:
    created = cli.json("admin", "realm", "create", "Hanoi CDC", "--issuer", "vn.hanoi")

    assert created["issuer"] == "vn.hanoi"
    assert created["jwks_url"] == f"https://verify.example/jwks/{created['realm_id']}"
    assert "--issuer 'vn.hanoi'" in created["next_step"]
    assert created["jwks_url"] in created["next_step"]
    listed = cli.json("admin", "realm", "list")
    assert [(row["realm"], row["issuer"]) for row in listed] == [("Hanoi CDC", "vn.hanoi")]
    shown = cli.json("admin", "realm", "show", str(created["realm_id"]))
    assert shown["realm"] == "Hanoi CDC"
    assert shown["signing_keys"] == [f"r{created['realm_id']}v1"]
    assert shown["api_keys"] == 2
    device = realms.ApiKeyKind.DEVICE
    assert _authenticates(cli.data_dir, created["device_api_key"], device)

    assert "disabled" in cli.ok("admin", "realm", "disable", "Hanoi CDC")

    assert not _authenticates(cli.data_dir, created["device_api_key"], device)
    assert cli.json("admin", "realm", "list")[0]["disabled_at"] is not None
    assert "no such realm" in cli.refused("admin", "realm", "show", "Nowhere")


def test_api_keys_are_listed_by_the_id_create_prints_and_never_shown(cli: Cli) -> None:
    realm = cli.json("admin", "realm", "create", "lab")
    created = cli.json(
        "admin", "apikey", "create", "--realm", "lab", "--type", "admin", "--name", "lab 7"
    )

    listed = cli.json("admin", "apikey", "list", "--realm", "lab")
    shown = cli.json("admin", "apikey", "show", "--id", str(created["id"]))

    assert [row["id"] for row in listed] == [
        realm["admin_api_key_id"],
        realm["device_api_key_id"],
        created["id"],
    ]
    assert shown["name"] == "lab 7"
    assert shown["preview"] == created["api_key"][:6] + "..."
    for secret in (created["api_key"], realm["admin_api_key"], realm["device_api_key"]):
        assert secret not in json.dumps(listed)
    assert "disabled admin API key" in cli.ok(
        "admin", "apikey", "disable", "--id", str(created["id"])
    )
    assert cli.json("admin", "apikey", "show", "--id", str(created["id"]))["disabled_at"]
    assert "no API key 999" in cli.refused("admin", "apikey", "show", "--id", "999")


def test_trust_from_added_to_removed(cli: Cli) -> None:
    realm = cli.json("admin", "realm", "create", "lab")
    added = cli.json(
        "admin", "health-authority", "add",
        "--issuer", realm["issuer"], "--audience", realm["audience"], "--name", "lab",
        "--jwks-url", realm["jwks_url"],
    )  # fmt: skip
    cli.json(
        "admin",
        "app",
        "add",
        "com.example.app",
        "--health-authority",
        realm["issuer"],
        "--region",
        "VN",
    )

    (authority,) = cli.json("admin", "health-authority", "list")
    (app,) = cli.json("admin", "app", "list")
    assert authority["health_authority_id"] == added["health_authority_id"]
    assert app["health_authorities"] == [realm["issuer"]]
    assert cli.json("admin", "app", "show", "COM.EXAMPLE.APP")["regions"] == ["VN"]

    cli.ok("admin", "app", "remove", "com.example.app")
    cli.ok("admin", "health-authority", "remove", realm["issuer"])

    assert cli.json("admin", "app", "list") == []
    assert cli.json("admin", "health-authority", "list") == []
    assert "no authorized app" in cli.refused("admin", "app", "remove", "com.example.app")


def test_a_health_authority_key_is_revoked_by_its_kid(cli: Cli, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from crypto.signing import public_key_pem

    pem = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()).decode()
    cli.json(
        "admin", "health-authority", "add", "--issuer", "gov.a", "--audience", "aud",
        "--name", "A", "--public-key", pem, "--kid", "v1",
    )  # fmt: skip

    cli.ok("admin", "health-authority", "revoke-key", "--issuer", "gov.a", "--kid", "v1")

    (key,) = cli.json("admin", "health-authority", "show", "gov.a")["keys"]
    assert key["kid"] == "v1"
    assert key["valid_until"] is not None
    assert "no key version 'v9'" in cli.refused(
        "admin", "health-authority", "revoke-key", "--issuer", "gov.a", "--kid", "v9"
    )


def test_export_series_and_signing_keys_from_created_to_retired(cli: Cli) -> None:
    cli.json("admin", "realm", "create", "lab")
    key = cli.json("admin", "signing-key", "add", "--key-id", "452")
    config = cli.json(
        "admin", "export-config", "add", "v1", "--region", "VN", "--signing-key", "452"
    )

    assert "export-config add" in key["next_step"]
    assert cli.json("admin", "export-config", "show", "v1")["index_url"] == config["index_url"]
    listed = cli.json("admin", "signing-key", "list")
    assert {(row["service"], row["key_id"]) for row in listed} == {
        ("verification", "r1v1"),
        ("verification", "t1"),
        ("keyserver", "452"),
    }

    cli.ok("admin", "signing-key", "retire", "--key-id", "452", "--version", "v1")
    cli.ok("admin", "export-config", "disable", "v1")

    export_key = next(row for row in cli.json("admin", "signing-key", "list", "--export"))
    assert export_key["retired_at"] is not None
    assert cli.json("admin", "export-config", "list")[0]["valid_until"] is not None


def test_keys_are_listed_without_values_and_the_log_key_rotates(cli: Cli) -> None:
    before = cli.json("admin", "keys", "list")
    rotated = cli.json("admin", "keys", "rotate-log-key", "--service", "keyserver")
    after = cli.json("admin", "keys", "list", "--service", "keyserver")

    assert {row["purpose"] for row in before} >= {"hmac", "revision-token-aad", "retention-log"}
    assert all(set(row) == {
        "service", "name", "kind", "purpose", "kek_id", "current_kek", "created_at", "retired_at"
    } for row in before)  # fmt: skip
    logs = [row for row in after if row["purpose"] == "retention-log"]
    assert len(logs) == 2
    assert sum(row["retired_at"] is None for row in logs) == 1
    published = json.loads(cli.ok("audit", "public-key"))
    assert published["keys"]["keyserver"] == rotated["public_key"]
    assert len(published["previous_keys"]["keyserver"]) == 1
    assert "re-sealed 0 key(s)" in cli.ok("admin", "keys", "rewrap")
    assert len(cli.ok("admin", "keys", "new-kek").strip()) == 44


def test_an_auditor_key_reads_each_service_it_is_registered_with(cli: Cli, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from exposure.app import create_app
    from exposure.compose import DeploymentSettings, open_deployment
    from exposure.settings import ExposureSettings

    created = cli.json("admin", "auditor-key", "create", "--name", "DPO", "--service", "keyserver")
    (listed,) = cli.json("admin", "auditor-key", "list")
    assert (listed["service"], listed["id"], listed["name"]) == (
        "keyserver",
        created["ids"]["keyserver"],
        "DPO",
    )
    assert created["api_key"] not in json.dumps(listed)

    settings = DeploymentSettings(base=ExposureSettings(data_dir=tmp_path))
    with (
        open_deployment(settings, [Service.KEYSERVER]) as deployment,
        TestClient(create_app(deployment)) as client,
    ):
        headers = {"X-API-Key": created["api_key"]}
        assert client.get("/audit/log?service=keyserver", headers=headers).status_code == 200
        assert client.get("/audit/compliance", headers=headers).status_code == 200
        cli.ok(
            "admin", "auditor-key", "disable", "--id", str(listed["id"]), "--service", "keyserver"
        )
        assert client.get("/audit/log?service=keyserver", headers=headers).status_code == 401


def test_a_process_only_for_one_service_reads_only_its_database(tmp_path: Path) -> None:
    deployment = open_test_deployment(None, tmp_path, services=[Service.KEYSERVER], migrate=True)
    try:
        assert list(deployment.bundles) == [Service.KEYSERVER]
    finally:
        deployment.close()
    assert (tmp_path / "keyserver.sqlite3").exists()
    assert not (tmp_path / "verification.sqlite3").exists()
