"""Every expected failure of the command line is one line naming the cause and the setting
to change, with its documented exit code, and never a traceback (docs/operations.md)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exposure.cli.jobs import JOBS
from exposure.db import create_database_engine
from exposure.keys.kek import new_kek
from exposure.settings import Service
from tests.deployment import open_test_deployment

EXPOSURE = Path(sys.executable).parent / "exposure"


def run(data_dir: Path, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXPOSURE_")}
    environment["EXPOSURE_DATA_DIR"] = str(data_dir)
    environment["EXPOSURE_METRICS_PORT"] = "0"
    environment.update(settings)
    return subprocess.run(
        [str(EXPOSURE), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The failure's single line, after checking its exit code and that it says enough."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_the_version_is_printed(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")

    assert result.returncode == 0
    assert result.stdout.startswith("exposure ")


def test_jobs_run_help_lists_every_job(tmp_path: Path) -> None:
    result = run(tmp_path, "jobs", "run", "--help")

    assert result.returncode == 0
    for name in [*JOBS, "purge"]:
        assert name in result.stdout


def test_the_job_list_is_the_bundles_jobs(tmp_path: Path) -> None:
    deployment = open_test_deployment(None, tmp_path, migrate=True)
    try:
        scheduled = {
            job.name: service
            for service, bundle in deployment.bundles.items()
            for job in bundle.jobs
        }
    finally:
        deployment.close()

    assert scheduled == JOBS


def test_a_command_on_a_database_without_the_schema_says_to_upgrade(tmp_path: Path) -> None:
    result = run(tmp_path, "admin", "realm", "list")

    one_line(result, 4, "verification database", "exposure db upgrade")
    assert not (tmp_path / "verification.sqlite3").exists() or (
        # Opening an absent SQLite file creates it empty; nothing is migrated in it.
        run(tmp_path, "db", "status").returncode == 4
    )


def test_a_service_without_a_database_is_refused_when_another_has_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.sqlite3'}"
    result = run(tmp_path, "serve", EXPOSURE_KEYSERVER_DATABASE_URL=url)

    one_line(
        result, 2, "verification service has no database", "EXPOSURE_VERIFICATION_DATABASE_URL"
    )
    assert not (tmp_path / "verification.sqlite3").exists()


def test_an_invalid_setting_names_the_setting(tmp_path: Path) -> None:
    result = run(tmp_path, "db", "upgrade", EXPOSURE_KEYSERVER_KEK="too-short")

    assert result.returncode == 2
    assert "invalid setting kek" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_found_before_anything_is_migrated(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", "--port", str(port))

    one_line(result, 6, f"127.0.0.1:{port}", "in use", "--port")
    assert not (tmp_path / "keyserver.sqlite3").exists()
    assert not (tmp_path / "verification.sqlite3").exists()


def test_an_unreachable_database_is_one_line_naming_its_setting(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    result = run(tmp_path, "db", "upgrade", EXPOSURE_DATABASE_URL=url)

    line = one_line(result, 3, "keyserver database", "does not answer", "EXPOSURE_DATABASE_URL")
    assert "nobody@127.0.0.1:1/none" in line


@pytest.mark.postgres
def test_a_missing_database_says_it_does_not_exist(tmp_path: Path, postgres_database: str) -> None:
    missing = make_url(postgres_database).set(database="no_such_database_here")
    url = missing.render_as_string(hide_password=False)
    result = run(tmp_path, "db", "upgrade", EXPOSURE_VERIFICATION_DATABASE_URL=url)

    one_line(result, 3, "does not exist", "EXPOSURE_VERIFICATION_DATABASE_URL")


@pytest.mark.postgres
def test_a_service_on_postgresql_needs_its_kek(tmp_path: Path, postgres_database: str) -> None:
    settings = {"EXPOSURE_KEYSERVER_DATABASE_URL": postgres_database}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = str(probe.getsockname()[1])
    refused = run(tmp_path, "serve", "keyserver", "--port", free, **settings)

    one_line(refused, 5, "EXPOSURE_KEYSERVER_KEK is not set")
    # Refused before it changed anything: the database is still empty.
    assert run(tmp_path, "db", "status", **settings).returncode == 4


@pytest.mark.postgres
def test_a_wrong_kek_is_refused_and_the_right_one_opens(
    tmp_path: Path, postgres_database: str
) -> None:
    right = {
        "EXPOSURE_KEYSERVER_DATABASE_URL": postgres_database,
        "EXPOSURE_KEYSERVER_KEK": new_kek(),
    }
    wrong = {**right, "EXPOSURE_KEYSERVER_KEK": new_kek()}
    assert run(tmp_path, "db", "upgrade", **right).returncode == 0
    assert run(tmp_path, "admin", "signing-key", "add", "--key-id", "452", **right).returncode == 0

    refused = run(tmp_path, "admin", "keys", "list", **wrong)
    listed = run(tmp_path / "elsewhere", "admin", "keys", "list", **right)

    one_line(refused, 5, "EXPOSURE_KEYSERVER_KEK does not open", "KEK id")
    assert listed.returncode == 0, listed.stderr
    assert "export-452-v1" in listed.stdout


@pytest.mark.postgres
def test_a_role_without_the_privilege_is_one_line(tmp_path: Path, postgres_database: str) -> None:
    role = f"reader_{secrets.token_hex(4)}"
    owner = create_database_engine(postgres_database)
    with owner.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        url = make_url(postgres_database).set(username=role).render_as_string(hide_password=False)
        result = run(tmp_path, "db", "upgrade", EXPOSURE_VERIFICATION_DATABASE_URL=url)
    finally:
        with owner.begin() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
        owner.dispose()

    one_line(result, 3, "permission denied", "EXPOSURE_VERIFICATION_DATABASE_URL")


def test_services_list_is_every_service() -> None:
    assert set(JOBS.values()) == set(Service)
