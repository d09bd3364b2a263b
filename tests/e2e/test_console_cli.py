"""``exposure admin staff``: accounts made, listed, their authenticator app removed and
disabled from the command line, the password read from standard input (never an
argument), refusals in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.conftest import EXPOSURE, clean_environment, run_cli

PASSWORD = "a long console password"


def _staff(data_dir: Path, *arguments: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXPOSURE), "admin", "staff", *arguments],
        input=f"{password}\n",
        env=clean_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_staff_are_added_listed_and_disabled(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert run_cli(data_dir, "db", "upgrade").returncode == 0
    assert run_cli(data_dir, "admin", "realm", "create", "lab").returncode == 0

    added = _staff(
        data_dir,
        "add",
        "lab",
        "nurse",
        "--role",
        "auditor",
        "--totp",
        "--password-stdin",
        "--json",
        password=PASSWORD,
    )
    again = _staff(data_dir, "add", "lab", "nurse", "--password-stdin", password=PASSWORD)
    weak = _staff(data_dir, "add", "lab", "intern", "--password-stdin", password="short")
    listed = run_cli(data_dir, "admin", "staff", "list", "--realm", "lab", "--json")
    removed = run_cli(data_dir, "admin", "staff", "remove-second-factor", "lab", "nurse")
    without = run_cli(data_dir, "admin", "staff", "list", "--json")
    nobody = run_cli(data_dir, "admin", "staff", "remove-second-factor", "lab", "nobody")
    disabled = run_cli(data_dir, "admin", "staff", "disable", "lab", "nurse")
    after = run_cli(data_dir, "admin", "staff", "list", "--json")
    unknown_realm = run_cli(data_dir, "admin", "staff", "list", "--realm", "nowhere")

    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["role"] == "auditor"
    assert created["totp_uri"].startswith("otpauth://totp/")
    assert PASSWORD not in added.stdout
    assert (again.returncode, again.stderr.count("\n")) == (1, 1)
    assert "already has a staff account" in again.stderr
    assert weak.returncode == 1
    assert "at least 12 characters" in weak.stderr
    rows = json.loads(listed.stdout)
    assert [row["username"] for row in rows] == ["nurse"]
    assert "password_hash" not in listed.stdout
    assert "$argon2" not in listed.stdout
    assert rows[0]["totp"] is True
    assert removed.returncode == 0, removed.stderr
    assert "without an authenticator app" in removed.stdout
    assert json.loads(without.stdout)[0]["totp"] is False
    assert (nobody.returncode, nobody.stderr.count("\n")) == (1, 1)
    assert "no staff account" in nobody.stderr
    assert disabled.returncode == 0
    assert "disabled staff account" in disabled.stdout
    assert json.loads(after.stdout)[0]["disabled_at"] is not None
    assert unknown_realm.returncode == 1
    assert unknown_realm.stderr.strip() == "error: no such realm"
