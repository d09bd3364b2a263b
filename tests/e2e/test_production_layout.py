"""The production layout of docs/operations.md, run step by step as an operator would.

- A DBA makes the migration owner and one database per service; the owner runs
  ``exposure db upgrade`` and applies deploy/postgresql/grants.sql to each database (psql,
  as the docs say); the DBA makes the two logins the services run as.
- The operator's CLI runs from a directory of its own, as the owner: a realm, the key
  server's trust in it, an app, an export signing key and an export series.
- One ``exposure serve verification`` and two ``exposure serve keyserver`` replicas, each in
  its own empty data directory (no file is shared: keys are in the databases, exports in
  an S3-compatible store), each logged in as its service's role, none migrating.
- A phone's flow: a code, a token, a certificate; one phone publishes to each replica.
- The jobs run as the key server's role (``exposure jobs run``); index.txt and every zip are
  downloaded from both replicas and verified with the public key ``signing-key add``
  printed: every published key is there exactly once.
- A replica started with a wrong KEK refuses to start with one line; readiness answers 503
  with its reason when a schema is emptied and when a database is dropped.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from crypto.signing import load_public_key
from crypto.tekmac import SignedKey, compute_tekmac
from exposure.db import create_database_engine
from exposure.export.reader import read_export
from exposure.export.verify import verify_export
from exposure.keys.kek import new_kek
from exposure.launcher import free_loopback_port
from tests.conftest import postgres_base_url
from tests.e2e.test_publish_flow import _keys

pytestmark = pytest.mark.postgres

EXPOSURE = Path(sys.executable).parent / "exposure"
GRANTS_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgresql" / "grants.sql"
APP_ID = "vn.gov.exposure"
REGION = "VN"
BUCKET = "exposure-exports"


@dataclass
class Cluster:
    """The DBA's side: databases and roles, all with a random suffix, dropped afterwards."""

    base: URL
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def name(self, stem: str) -> str:
        return f"{stem}_{self.suffix}"

    def url(self, role: str, database: str) -> str:
        url = self.base.set(username=role, password=None, database=database)
        return url.render_as_string(hide_password=False)

    def dba(self, *statements: str) -> None:
        admin = create_database_engine(self.base.render_as_string(hide_password=False))
        try:
            with admin.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            admin.dispose()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster(make_url(postgres_base_url()))
    yield made
    drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in made.databases]
    for role in reversed(made.roles):
        drops.append(
            f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN EXECUTE 'DROP ROLE \"{role}\"'; END IF; END $$"
        )
    made.dba(*drops)


@pytest.fixture
def object_store() -> Iterator[dict[str, str]]:
    """An S3-compatible store on loopback, and the settings that point a key server at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    endpoint = f"http://{host}:{port}"
    httpx.put(f"{endpoint}/{BUCKET}", timeout=10).raise_for_status()
    yield {
        **credentials,
        "EXPOSURE_KEYSERVER_EXPORT_STORE": "s3",
        "EXPOSURE_KEYSERVER_EXPORT_S3_BUCKET": BUCKET,
        "EXPOSURE_KEYSERVER_EXPORT_S3_ENDPOINT_URL": endpoint,
        "EXPOSURE_KEYSERVER_EXPORT_S3_REGION": "us-east-1",
    }
    server.stop()


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EXPOSURE_", "AWS_"))}
    data_dir.mkdir(parents=True, exist_ok=True)
    # Three servers on one host here: only one may have the metrics listener's port.
    return {**clean, "EXPOSURE_DATA_DIR": str(data_dir), "EXPOSURE_METRICS_PORT": "0", **settings}


def exposure(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXPOSURE), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(env: dict[str, str], *arguments: str) -> str:
    result = exposure(env, *arguments)
    assert result.returncode == 0, (arguments, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def psql(url: str, *arguments: str, options: str = "") -> None:
    program = shutil.which("psql")
    if program is None:
        pytest.fail("psql is needed: the documented layout applies grants.sql with it")
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    env = {**os.environ, "PGOPTIONS": options}
    result = subprocess.run(
        [program, libpq, "-v", "ON_ERROR_STOP=1", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


@dataclass
class Server:
    name: str
    process: subprocess.Popen[str]
    url: str

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=30)
        return output


def serve(env: dict[str, str], service: str, port: int | None = None) -> Server:
    """``exposure serve SERVICE`` on ``port`` (a free one by default), once it is ready."""
    port = port or free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", service, "--port", str(port)],
        env={**env, "EXPOSURE_PUBLIC_URL": env.get("EXPOSURE_PUBLIC_URL", url)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(service, process, url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{server.name} exited early:\n{server.stop()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{server.name} was not ready within 60 s:\n{server.stop()}")


def certificate(
    verification: str, realm: dict[str, Any], keys: list[dict[str, Any]], secret: bytes
) -> str:
    tekmac = compute_tekmac(
        secret, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    )
    symptoms = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    with httpx.Client(base_url=verification, timeout=10) as client:
        admin = {"X-API-Key": realm["admin_api_key"]}
        device = {"X-API-Key": realm["device_api_key"]}
        issued = client.post(
            "/api/issue", json={"testType": "confirmed", "symptomDate": symptoms}, headers=admin
        )
        assert issued.status_code == 200, issued.text
        verified = client.post("/api/verify", json={"code": issued.json()["code"]}, headers=device)
        assert verified.status_code == 200, verified.text
        certified = client.post(
            "/api/certificate",
            json={"token": verified.json()["token"], "ekeyhmac": base64.b64encode(tekmac).decode()},
            headers=device,
        )
        assert certified.status_code == 200, certified.text
        issued_certificate: str = certified.json()["certificate"]
        return issued_certificate


def publish(replica: str, verification: str, realm: dict[str, Any]) -> list[bytes]:
    keys = _keys(14)
    secret = secrets.token_bytes(32)
    body = {
        "temporaryExposureKeys": keys,
        "healthAuthorityID": APP_ID,
        "verificationPayload": certificate(verification, realm, keys, secret),
        "hmacKey": base64.b64encode(secret).decode(),
    }
    answer = httpx.post(f"{replica}/v1/publish", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["insertedExposures"] == 14
    return [base64.b64decode(key["key"]) for key in keys]


def downloaded_keys(replica: str, public_key_pem: str) -> list[bytes]:
    public_key = load_public_key(public_key_pem.encode())
    found: list[bytes] = []
    with httpx.Client(base_url=replica, timeout=10) as client:
        index = client.get("/exports/v1/index.txt")
        assert index.status_code == 200, index.text
        for name in index.text.split("\n"):
            download = client.get(f"/exports/{name}")
            assert download.status_code == 200, name
            parsed = read_export(download.content, strict_key_length=True)
            verify_export(parsed, public_key)
            found.extend(key.key_data for key in parsed.contents.keys)
    return found


def test_the_documented_production_layout(
    cluster: Cluster, object_store: dict[str, str], tmp_path: Path
) -> None:
    owner = cluster.name("exposure_owner")
    keyserver_role, verification_role = cluster.name("ks_role"), cluster.name("vs_role")
    keyserver_login, verification_login = cluster.name("ks_app"), cluster.name("vs_app")
    keyserver_db, verification_db = cluster.name("keyserver"), cluster.name("verification")
    cluster.roles += [owner, keyserver_role, verification_role, keyserver_login, verification_login]
    cluster.databases += [keyserver_db, verification_db]

    # 1. As a DBA: the owner (it may create the service roles) and one database per service.
    cluster.dba(
        f'CREATE ROLE "{owner}" LOGIN CREATEROLE',
        f'CREATE DATABASE "{keyserver_db}" OWNER "{owner}"',
        f'CREATE DATABASE "{verification_db}" OWNER "{owner}"',
    )
    keks = {"EXPOSURE_KEYSERVER_KEK": new_kek(), "EXPOSURE_VERIFICATION_KEK": new_kek()}
    verification_port = free_loopback_port()
    verification_url = f"http://127.0.0.1:{verification_port}"

    # 2. As the owner, from the operator's own directory: migrate, then grant, per database.
    admin = environment(
        tmp_path / "admin",
        EXPOSURE_KEYSERVER_DATABASE_URL=cluster.url(owner, keyserver_db),
        EXPOSURE_VERIFICATION_DATABASE_URL=cluster.url(owner, verification_db),
        EXPOSURE_PUBLIC_URL=verification_url,
        **keks,
    )
    ok(admin, "db", "upgrade")
    role_names = (
        f"-c exposure.keyserver_role={keyserver_role} "
        f"-c exposure.verification_role={verification_role}"
    )
    for database in (keyserver_db, verification_db):
        psql(cluster.url(owner, database), "-1", "-f", str(GRANTS_SQL), options=role_names)
    cluster.dba(
        f'CREATE ROLE "{keyserver_login}" LOGIN IN ROLE "{keyserver_role}"',
        f'CREATE ROLE "{verification_login}" LOGIN IN ROLE "{verification_role}"',
    )

    # 3. The operator's set-up: a realm, the key server's trust in it, an app, exports.
    realm = json.loads(ok(admin, "admin", "realm", "create", "lab", "--json"))
    ok(
        admin, "admin", "health-authority", "add", "--issuer", realm["issuer"],
        "--audience", realm["audience"], "--name", "lab", "--jwks-url", realm["jwks_url"],
    )  # fmt: skip
    ok(
        admin,
        "admin",
        "app",
        "add",
        APP_ID,
        "--health-authority",
        realm["issuer"],
        "--region",
        REGION,
    )
    signing_key = json.loads(ok(admin, "admin", "signing-key", "add", "--key-id", "452", "--json"))
    ok(admin, "admin", "export-config", "add", "v1", "--region", REGION, "--signing-key", "452")

    # 4. The services, each in an empty directory of its own, as its own role.
    serving = {"EXPOSURE_MIGRATE_ON_START": "false"}
    verification_env = environment(
        tmp_path / "verification",
        EXPOSURE_VERIFICATION_DATABASE_URL=cluster.url(verification_login, verification_db),
        EXPOSURE_VERIFICATION_KEK=keks["EXPOSURE_VERIFICATION_KEK"],
        EXPOSURE_PUBLIC_URL=verification_url,
        **serving,
    )
    keyserver_settings = {
        "EXPOSURE_KEYSERVER_DATABASE_URL": cluster.url(keyserver_login, keyserver_db),
        "EXPOSURE_KEYSERVER_KEK": keks["EXPOSURE_KEYSERVER_KEK"],
        **object_store,
        **serving,
    }
    servers: list[Server] = []
    try:
        servers.append(serve(verification_env, "verification", verification_port))
        replicas = []
        for name in ("replica-a", "replica-b"):
            env = environment(tmp_path / name, **keyserver_settings)
            servers.append(serve(env, "keyserver"))
            replicas.append((env, servers[-1]))

        # Each replica serves only its own service's routes.
        assert httpx.post(f"{replicas[0][1].url}/api/issue", json={}).status_code == 404
        assert httpx.post(f"{verification_url}/v1/publish", json={}).status_code == 404

        # 5. The key server learns the realm's keys from its JWKS URL, as its own role.
        job_runner = replicas[0][0]
        refreshed = json.loads(ok(job_runner, "jobs", "run", "jwks-refresh"))
        assert refreshed["summary"]["failed"] == 0

        # 6. One phone publishes to each replica.
        published = [
            *publish(replicas[0][1].url, verification_url, realm),
            *publish(replicas[1][1].url, verification_url, realm),
        ]

        # 7. The export, as the key server's role; downloaded from both replicas.
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        for job in ("export-batches", "export-worker"):
            ok(job_runner, "jobs", "run", job, "--now", later, "--allow-future")
        for _env, replica in replicas:
            found = downloaded_keys(replica.url, signing_key["export_public_key_pem"])
            assert all(found.count(key) == 1 for key in published)
            assert len(set(found)) == len(found)

        # The service roles purge and audit too.
        ok(job_runner, "jobs", "run", "purge")
        ok(job_runner, "audit", "compliance")

        # 8. A replica whose KEK is not the one the keys were sealed with refuses to start.
        wrong = environment(
            tmp_path / "wrong-kek", **{**keyserver_settings, "EXPOSURE_KEYSERVER_KEK": new_kek()}
        )
        refused = exposure(wrong, "serve", "keyserver", "--port", str(free_loopback_port()))
        assert refused.returncode == 5, refused.stderr
        assert refused.stderr.startswith("error: EXPOSURE_KEYSERVER_KEK does not open")
        assert len(refused.stderr.strip().splitlines()) == 1

        # 9. Readiness: an emptied schema, then a dropped database.
        owner_engine = create_database_engine(cluster.url(owner, verification_db))
        with owner_engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        owner_engine.dispose()
        unmigrated = httpx.get(f"{verification_url}/health/ready", timeout=10)
        assert unmigrated.status_code == 503
        assert unmigrated.json()["checks"]["verification"]["database"] == "not_migrated"
        assert httpx.get(f"{verification_url}/health/live").status_code == 200

        cluster.dba(f'DROP DATABASE "{keyserver_db}" WITH (FORCE)')
        dropped = httpx.get(f"{replicas[0][1].url}/health/ready", timeout=10)
        assert dropped.status_code == 503
        assert dropped.json()["checks"]["keyserver"]["database"] in {
            "database_missing",
            "unreachable",
        }
    finally:
        outputs = {server.name: server.stop() for server in servers}
    for name, output in outputs.items():
        assert "Traceback" not in output, f"{name}:\n{output}"
    for directory in ("verification", "replica-a", "replica-b"):
        assert list((tmp_path / directory).iterdir()) == [], f"{directory} holds files"
