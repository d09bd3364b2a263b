"""`exposure admin health-authority|app add` and `exposure jobs run jwks-refresh`.

The main paths run as real subprocesses (`run_cli`); the many ways to get an argument wrong
run in-process through Typer's runner, since each subprocess pays the CLI's start-up.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from typer.testing import CliRunner

from crypto.signing import public_key_pem
from crypto.tokens import jwk_from_public_key
from exposure.cli import app as exposure_cli
from exposure.db import SessionFactory, create_database_engine, make_session_factory, unit_of_work
from exposure.db.migrate import upgrade_service
from exposure.settings import Service
from keyserver.models import AuthorizedApp, HealthAuthority, HealthAuthorityKey
from keyserver.service import trust
from tests.e2e.conftest import run_cli

KEY = ec.generate_private_key(ec.SECP256R1())
PEM = public_key_pem(KEY.public_key()).decode()


def _database(data_dir: Path) -> Iterator[SessionFactory]:
    engine = create_database_engine(f"sqlite:///{data_dir / 'keyserver.sqlite3'}")
    try:
        upgrade_service(engine, Service.KEYSERVER)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _stored(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    for sessions in _database(data_dir):
        with unit_of_work(sessions) as session:
            return {
                "authorities": [
                    (row.id, row.issuer, row.audience, row.name, row.jwks_url)
                    for row in session.scalars(select(HealthAuthority))
                ],
                "keys": [
                    (row.health_authority_id, row.version, row.public_key_pem, row.valid_until)
                    for row in session.scalars(select(HealthAuthorityKey))
                ],
                "apps": [
                    (row.id, row.app_id, row.regions, row.bypass_verification)
                    for row in session.scalars(select(AuthorizedApp))
                ],
            }
    raise AssertionError("unreachable")


def _seed_authorities(data_dir: Path, **jwks_urls: str) -> None:
    """Authorities straight into the database: the CLI path is tested elsewhere."""
    for sessions in _database(data_dir):
        with unit_of_work(sessions) as session:
            for issuer, url in jwks_urls.items():
                trust.add_health_authority(
                    session,
                    issuer=issuer,
                    audience="exposure-notifications-server",
                    name=issuer,
                    jwks_url=url,
                    now=datetime.now(UTC),
                )


def _refused(result_code: int, stderr: str, fragment: str, code: int = 1) -> None:
    """One line on standard error; 2 for a mistake in the flags, 1 for a refused change."""
    assert result_code == code
    assert fragment in stderr
    assert stderr.startswith("error: ")
    assert "Traceback" not in stderr


# --- real subprocesses --------------------------------------------------------------------


def test_add_health_authorities_and_an_app(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    key_file = tmp_path / "ha.pem"
    key_file.write_text(PEM)
    added = run_cli(
        tmp_path,
        "admin",
        "health-authority",
        "add",
        "--issuer",
        "gov.a",
        "--audience",
        "exposure-notifications-server",
        "--name",
        "Health A",
        "--public-key",
        str(key_file),
        "--kid",
        "v1",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    authority = json.loads(added.stdout)
    _seed_authorities(tmp_path, **{"gov.b": "https://vs.example/jwks/2"})

    app = run_cli(
        tmp_path,
        "admin",
        "app",
        "add",
        "Gov.Example.App",
        "--health-authority",
        "gov.a",
        "--health-authority",
        "gov.b",
        "--region",
        "vn",
        "--region",
        "LA",
        "--json",
    )

    assert app.returncode == 0, app.stderr
    assert authority["issuer"] == "gov.a"
    assert authority["kid"] == "v1"
    output = json.loads(app.stdout)
    assert output["app_id"] == "gov.example.app"
    assert output["regions"] == ["LA", "VN"]
    assert len(output["health_authority_ids"]) == 2
    assert authority["health_authority_id"] in output["health_authority_ids"]
    assert output["bypass_verification"] is False
    stored = _stored(tmp_path)
    assert stored["authorities"][0] == (
        authority["health_authority_id"],
        "gov.a",
        "exposure-notifications-server",
        "Health A",
        None,
    )
    assert stored["keys"] == [(authority["health_authority_id"], "v1", PEM, None)]
    assert stored["apps"] == [(output["id"], "gov.example.app", "LA,VN", False)]


def test_a_refused_change_exits_1_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    _seed_authorities(tmp_path, **{"gov.a": "https://vs.example/jwks/1"})

    result = run_cli(
        tmp_path,
        "admin",
        "health-authority",
        "add",
        "--issuer",
        "gov.a",
        "--audience",
        "aud",
        "--name",
        "Again",
        "--jwks-url",
        "https://vs.example/jwks/9",
    )

    _refused(result.returncode, result.stderr, "already exists")


@pytest.fixture
def jwks_url() -> Iterator[str]:
    body = json.dumps([jwk_from_public_key(KEY.public_key(), "r1v1")]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_jobs_run_jwks_refresh(tmp_path: Path, jwks_url: str) -> None:
    _seed_authorities(tmp_path, **{"gov.a": jwks_url})

    result = run_cli(tmp_path, "jobs", "run", "jwks-refresh")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["job"] == "jwks-refresh"
    assert output["ran"] is True
    assert output["summary"]["failed"] == 0
    assert output["summary"]["authorities"][0]["issuer"] == "gov.a"
    assert output["summary"]["authorities"][0]["inserted"] == 1
    assert [row[1:3] for row in _stored(tmp_path)["keys"]] == [("r1v1", PEM)]


def test_jobs_run_reports_a_failing_authority_and_exits_1(tmp_path: Path, jwks_url: str) -> None:
    _seed_authorities(tmp_path, **{"gov.a": jwks_url, "gov.b": jwks_url.replace("/jwks", "/x")})

    result = run_cli(tmp_path, "jobs", "run", "jwks-refresh")

    assert result.returncode == 1
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 1
    by_issuer = {entry["issuer"]: entry for entry in summary["authorities"]}
    assert by_issuer["gov.a"]["inserted"] == 1
    assert "404" in by_issuer["gov.b"]["error"]


# --- in-process: argument mistakes -----------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in [name for name in os.environ if name.startswith("EXPOSURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EXPOSURE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    upgraded = runner.invoke(exposure_cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.stderr
    return runner


HA_ADD = ("admin", "health-authority", "add", "--audience", "aud", "--name", "n")


@pytest.mark.parametrize(
    ("arguments", "message", "code"),
    [
        (("--jwks-url", "https://x.example/", "--public-key", PEM), "exactly one of", 2),
        ((), "exactly one of", 2),
        (("--public-key", PEM), "--kid", 2),
        (("--jwks-url", "https://x.example/", "--kid", "v1"), "--kid", 2),
        (("--public-key", "/nonexistent.pem", "--kid", "v1"), "cannot read public key file", 2),
        (("--public-key", f"{PEM[:60]}xx", "--kid", "v1"), "P-256 PUBLIC KEY", 1),
        (("--jwks-url", "file:///etc/passwd"), "http or https", 1),
    ],
)
def test_health_authority_argument_mistakes(
    cli: CliRunner, tmp_path: Path, arguments: tuple[str, ...], message: str, code: int
) -> None:
    result = cli.invoke(exposure_cli, [*HA_ADD, "--issuer", "gov.b", *arguments])

    _refused(result.exit_code, result.stderr, message, code)
    if (tmp_path / "keyserver.sqlite3").exists():
        assert _stored(tmp_path)["authorities"] == []  # nothing half-done stays behind


def test_health_authority_with_inline_pem_prints_plain_text(cli: CliRunner) -> None:
    result = cli.invoke(
        exposure_cli, [*HA_ADD, "--issuer", "gov.b", "--public-key", PEM, "--kid", "k"]
    )

    assert result.exit_code == 0, result.stderr
    assert "health_authority_id: 1" in result.stdout
    assert "kid: k" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("app.two", "--health-authority", "gov.x"), "gov.x"),
        (("APP.ONE",), "already authorized"),
        (("app.three", "--region", "V_N"), "region"),
        (("app three",), "app id"),
    ],
)
def test_app_argument_mistakes(
    cli: CliRunner, tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    added = cli.invoke(exposure_cli, ["admin", "app", "add", "app.one", "--bypass-verification"])
    assert added.exit_code == 0, added.stderr

    result = cli.invoke(exposure_cli, ["admin", "app", "add", *arguments])

    _refused(result.exit_code, result.stderr, message)
    assert [row[1:] for row in _stored(tmp_path)["apps"]] == [("app.one", "", True)]


def test_jobs_run_refuses_an_unknown_job(cli: CliRunner) -> None:
    result = cli.invoke(exposure_cli, ["jobs", "run", "no-such-job"])

    _refused(result.exit_code, result.stderr, "jwks-refresh", code=2)
