"""``exposure admin import-source add|list|show|disable|purge`` and the import options of
``exposure admin export-config add``, as subprocesses; refusals are one line each."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crypto.signing import FileSigner
from exposure.cli import app as exposure_cli
from tests.e2e.conftest import run_cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert run_cli(directory, "db", "upgrade").returncode == 0
    return directory


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "peer.pem"
    path.write_bytes(FileSigner.generate().public_key_pem())
    return path


def _ok(data_dir: Path, *arguments: str) -> str:
    completed = run_cli(data_dir, *arguments)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return completed.stdout


def test_an_operator_adds_lists_shows_disables_and_purges_a_source(
    data_dir: Path, pem: Path, tmp_path: Path
) -> None:
    (tmp_path / "disk" / "v1").mkdir(parents=True)
    added = json.loads(
        _ok(
            data_dir,
            "admin",
            "import-source",
            "add",
            "older-app",
            "--index",
            str(tmp_path / "disk" / "v1" / "index.txt"),
            "--export-root",
            str(tmp_path / "disk"),
            "--key",
            f"310:v1:{pem}",
            "--key",
            f"310:v2:{pem}",
            "--region",
            "vn",
            "--until",
            "2099-01-01T00:00:00+00:00",
            "--json",
        )
    )
    assert (added["name"], added["region"], len(added["keys"])) == ("older-app", "VN", 2)
    listed = json.loads(_ok(data_dir, "admin", "import-source", "list", "--json"))
    assert [row["name"] for row in listed] == ["older-app"]
    shown = json.loads(_ok(data_dir, "admin", "import-source", "show", "older-app", "--json"))
    assert shown["index"] == str(tmp_path / "disk" / "v1" / "index.txt")

    config = _ok(
        data_dir,
        "admin",
        "export-config",
        "add",
        "all",
        "--region",
        "VN",
        "--include-imported",
        "--import-source",
        "older-app",
        "--import-region",
        "vn",
    )
    assert "include_imported: True" in config
    facts = json.loads(_ok(data_dir, "admin", "export-config", "show", "all", "--json"))
    assert (facts["import_source_ids"], facts["import_regions"]) == ([added["id"]], ["VN"])
    changed = json.loads(
        _ok(data_dir, "admin", "export-config", "imports", "all", "--no-imported", "--json")
    )
    assert (changed["include_imported"], changed["import_source_ids"]) == (False, [])

    assert "disabled" in _ok(data_dir, "admin", "import-source", "disable", "older-app")
    assert "already ended" in _ok(data_dir, "admin", "import-source", "disable", "older-app")
    purged = json.loads(
        _ok(data_dir, "admin", "import-source", "purge", "older-app", "--yes", "--json")
    )
    assert (purged["keys_deleted"], purged["records_deleted"]) == (0, 0)


# --- in-process: argument mistakes -----------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in [name for name in os.environ if name.startswith("EXPOSURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EXPOSURE_DATA_DIR", str(tmp_path / "in-process"))
    runner = CliRunner()
    upgraded = runner.invoke(exposure_cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.stderr
    return runner


def _mistake(cli: CliRunner, *arguments: str) -> str:
    result = cli.invoke(exposure_cli, list(arguments))
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, no trace
    return lines[0]


ADD = ("admin", "import-source", "add")
WHERE = ("--index", "https://peer.example/v1/index.txt", "--export-root", "https://peer.example")


def test_mistakes_are_refused_in_one_line(cli: CliRunner, pem: Path) -> None:
    key = ("--key", f"1:v1:{pem}", "--region", "VN")
    assert "KEY_ID:KEY_VERSION:PEM_FILE" in _mistake(
        cli, *ADD, "peer", *WHERE, "--key", str(pem), "--region", "VN"
    )
    assert "cannot read public key file" in _mistake(
        cli, *ADD, "peer", *WHERE, "--key", "1:v1:/nonexistent.pem", "--region", "VN"
    )
    assert "time zone" in _mistake(cli, *ADD, "peer", *WHERE, *key, "--from", "2026-01-01")
    assert "name must be" in _mistake(cli, *ADD, "Peer", *WHERE, *key)
    added = cli.invoke(exposure_cli, [*ADD, "peer", *WHERE, *key])
    assert added.exit_code == 0, added.stderr
    assert "exists" in _mistake(cli, *ADD, "peer", *WHERE, *key)
    assert "no import source 'nobody'" in _mistake(cli, "admin", "import-source", "show", "nobody")
    assert "--yes" in _mistake(cli, "admin", "import-source", "purge", "peer")
    assert "need include_imported" in _mistake(
        cli, "admin", "export-config", "add", "x", "--region", "VN", "--import-source", "peer"
    )
