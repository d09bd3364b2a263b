"""`exposure audit export|verify|compliance|public-key` and the purge jobs, as an auditor uses them.

The main paths run as real subprocesses (`run_cli`) against one bootstrapped, purged data
directory shared by the module (copied where a test changes it); tampered exports and
argument mistakes run in-process through Typer's runner, since each subprocess pays the
CLI's start-up. A real `exposure serve` shows the purges run by themselves.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from crypto.audit import GENESIS, AuditSigner, chain_link
from exposure.cli import app as exposure_cli
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.retention.log import CHECKPOINT_DOMAIN, ENTRY_DOMAIN, canonical_json
from tests.e2e.conftest import run_cli, start_server
from verification.models import VerificationToken

SERVICES = ("keyserver", "verification")

Bundle = dict[str, Any]


@dataclass(frozen=True)
class Purged:
    """A bootstrapped data directory after one purge, its export and its published keys."""

    data_dir: Path
    export: Path
    keys_file: Path
    keys: dict[str, str]
    realm_id: int

    def bundle(self) -> Bundle:
        loaded: Bundle = json.loads(self.export.read_text())
        return loaded


def _ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def purged(tmp_path_factory: pytest.TempPathFactory) -> Purged:
    root = tmp_path_factory.mktemp("audit")
    data_dir = root / "var"
    _ok(run_cli(data_dir, "db", "upgrade"))
    setup = json.loads(_ok(run_cli(data_dir, "admin", "bootstrap", "--json")).stdout)
    purge = json.loads(_ok(run_cli(data_dir, "jobs", "run", "purge")).stdout)
    assert purge["ran"] is True
    assert sorted(purge["summary"]) == ["purge-keyserver", "purge-verification"]
    assert all(summary["failed"] == [] for summary in purge["summary"].values())
    keys_file = root / "public-keys.json"
    keys_file.write_text(_ok(run_cli(data_dir, "audit", "public-key")).stdout)
    export = root / "export.json"
    exported = _ok(run_cli(data_dir, "audit", "export", "--output", str(export)))
    assert f"of 2 log(s) to {export}" in exported.stderr
    return Purged(
        data_dir=data_dir,
        export=export,
        keys_file=keys_file,
        keys=json.loads(keys_file.read_text())["keys"],
        realm_id=int(setup["realm_id"]),
    )


# ---- the main paths, as subprocesses ----------------------------------------------------


def test_an_export_verifies_against_the_published_keys(purged: Purged) -> None:
    bundle = purged.bundle()
    assert [log["service"] for log in bundle["logs"]] == list(SERVICES)
    assert {log["service"]: log["public_key"] for log in bundle["logs"]} == purged.keys
    assert all(len(base64.b64decode(key)) == 32 for key in purged.keys.values())

    result = _ok(
        run_cli(
            purged.data_dir,
            "audit",
            "verify",
            str(purged.export),
            "--public-key",
            str(purged.keys_file),
        )
    )

    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for service, line, log in zip(SERVICES, lines, bundle["logs"], strict=True):
        count = len(log["entries"])
        assert line.startswith(f"{service}: OK, {count} entries (seq 1..{count}), head ")
    assert "warning" not in result.stderr


def test_the_live_database_verifies(purged: Purged) -> None:
    result = _ok(run_cli(purged.data_dir, "audit", "verify", "--json"))

    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["warnings"] == []
    exported = {log["service"]: len(log["entries"]) for log in purged.bundle()["logs"]}
    assert {log["service"]: log["entries_checked"] for log in report["logs"]} == exported
    assert all(log["problem"] is None for log in report["logs"])


def _insert_expired_token(data_dir: Path, realm_id: int, expired_at: datetime) -> None:
    engine = create_database_engine(f"sqlite:///{data_dir / 'verification.sqlite3'}")
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            session.add(
                VerificationToken(
                    realm_id=realm_id,
                    token_hmac=secrets.token_bytes(64),
                    test_type="confirmed",
                    expires_at=expired_at,
                )
            )
    finally:
        engine.dispose()


def _compliance(data_dir: Path, expected_exit: int) -> dict[str, Any]:
    result = run_cli(data_dir, "audit", "compliance", "--json")
    assert result.returncode == expected_exit, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _findings(report: dict[str, Any]) -> dict[str, list[str]]:
    return {service["service"]: service["findings"] for service in report["services"]}


def test_compliance_finds_data_held_past_its_deadline_until_purged(
    purged: Purged, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    shutil.copytree(purged.data_dir, data_dir)
    clean = _compliance(data_dir, 0)
    assert clean["clean"] is True
    assert _findings(clean) == {"keyserver": [], "verification": []}

    # A token that expired three days ago and that no purge has removed: tokens may live
    # 24 h past expiry, plus two purge intervals of grace.
    _insert_expired_token(data_dir, purged.realm_id, datetime.now(UTC) - timedelta(days=3))
    found = _compliance(data_dir, 1)

    assert found["clean"] is False
    findings = _findings(found)
    assert findings["keyserver"] == []
    assert len(findings["verification"]) == 1
    assert findings["verification"][0].startswith("verification-tokens: held past deadline")
    tokens = next(
        kind for kind in found["services"][1]["kinds"] if kind["kind"] == "verification-tokens"
    )
    assert tokens["within_deadline"] is False
    assert tokens["oldest_age_seconds"] >= 3 * 86400 - 60

    purge = json.loads(_ok(run_cli(data_dir, "jobs", "run", "purge")).stdout)
    removed = {
        kind["kind"]: kind["rows"] for kind in purge["summary"]["purge-verification"]["kinds"]
    }
    assert removed["verification-tokens"] == 1
    assert _compliance(data_dir, 0)["clean"] is True

    # A drill run three days ahead is in the log like any run: auditors see the jump as a
    # gap between purges longer than the schedule allows.
    ahead = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    _ok(run_cli(data_dir, "jobs", "run", "purge", "--now", ahead, "--allow-future"))
    drilled = _compliance(data_dir, 1)
    for service in drilled["services"]:
        assert service["log"]["ok"] is True
        assert service["findings"]
        assert all("gap(s) between purges" in finding for finding in service["findings"])


def test_a_running_server_purges_by_itself(tmp_path: Path) -> None:
    server = start_server(tmp_path / "var")
    try:
        _ok(run_cli(server.data_dir, "admin", "bootstrap", "--json"))
        created = _ok(
            run_cli(
                server.data_dir,
                "admin",
                "apikey",
                "create",
                "--realm",
                "default",
                "--type",
                "auditor",
                "--json",
            )
        )
        auditor = {"X-API-Key": json.loads(created.stdout)["api_key"]}
        refused = httpx.get(f"{server.base_url}/audit/compliance", timeout=10)
        assert refused.status_code == 401

        deadline = time.monotonic() + 60
        while True:
            response = httpx.get(f"{server.base_url}/audit/compliance", headers=auditor, timeout=30)
            assert response.status_code == 200, response.text
            report = response.json()
            ran = all(
                kind["runs"] >= 1 for service in report["services"] for kind in service["kinds"]
            )
            if ran:
                break
            assert time.monotonic() < deadline, "the purge jobs did not run within 60 s"
            time.sleep(0.5)

        assert report["clean"] is True, report
        keys = httpx.get(f"{server.base_url}/audit/public-keys", timeout=10).json()["keys"]
        assert sorted(keys) == list(SERVICES)
        for service in report["services"]:
            assert service["public_key"] == keys[service["service"]]
    finally:
        server.stop()


# ---- tampered exports, in-process ------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in [name for name in os.environ if name.startswith("EXPOSURE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EXPOSURE_DATA_DIR", str(tmp_path / "var"))
    return CliRunner()


def _keyserver_log(bundle: Bundle) -> dict[str, Any]:
    log: dict[str, Any] = bundle["logs"][0]
    assert log["service"] == "keyserver"
    return log


def _edit_rows(entry: dict[str, Any]) -> None:
    body = json.loads(entry["entry"])
    body["rows"] = body["rows"] + 5
    entry["entry"] = canonical_json(body)


def _resign(log: dict[str, Any], signer: AuditSigner) -> None:
    """Recompute a consistent chain and sign every link and checkpoint with ``signer``."""
    links = {}
    previous = GENESIS
    for entry in log["entries"]:
        previous = chain_link(previous, entry["entry"].encode("ascii"))
        links[entry["seq"]] = previous
        entry["link"] = previous.hex()
        entry["signature"] = base64.b64encode(signer.sign(ENTRY_DOMAIN + previous)).decode()
    for checkpoint in log["checkpoints"]:
        body = json.loads(checkpoint["body"])
        body["head"] = links[checkpoint["seq"]].hex()
        checkpoint["body"] = canonical_json(body)
        signature = signer.sign(CHECKPOINT_DOMAIN + checkpoint["body"].encode("ascii"))
        checkpoint["signature"] = base64.b64encode(signature).decode()
    log["public_key"] = base64.b64encode(signer.public_key).decode()


def _edited(bundle: Bundle) -> tuple[int, str]:
    _edit_rows(_keyserver_log(bundle)["entries"][2])
    return 3, "link"


def _deleted(bundle: Bundle) -> tuple[int, str]:
    del _keyserver_log(bundle)["entries"][2]
    return 3, "sequence"


def _swapped(bundle: Bundle) -> tuple[int, str]:
    entries = _keyserver_log(bundle)["entries"]
    entries[2], entries[3] = entries[3], entries[2]
    return 3, "sequence"


def _swapped_and_renumbered(bundle: Bundle) -> tuple[int, str]:
    # The seq beside each entry made to look right; the entry texts and links still differ.
    entries = _keyserver_log(bundle)["entries"]
    entries[2], entries[3] = entries[3], entries[2]
    entries[2]["seq"], entries[3]["seq"] = 3, 4
    return 3, "link"


def _cut_off_the_end(bundle: Bundle) -> tuple[int, str]:
    # The chain left is consistent; the signed checkpoint of the head proves the cut.
    log = _keyserver_log(bundle)
    head = log["entries"][-1]["seq"]
    del log["entries"][-1]
    return head, "sequence"


def _forged(bundle: Bundle) -> tuple[int, str]:
    # Edited, then the whole log re-signed with another key: the first entry is already
    # not signed by the published key.
    log = _keyserver_log(bundle)
    _edit_rows(log["entries"][2])
    _resign(log, AuditSigner.generate())
    return 1, "signature"


def _forged_without_checkpoints(bundle: Bundle) -> tuple[int, str]:
    log = _keyserver_log(bundle)
    log["checkpoints"] = []
    _edit_rows(log["entries"][2])
    _resign(log, AuditSigner.generate())
    return 1, "signature"


TAMPERINGS: dict[str, Callable[[Bundle], tuple[int, str]]] = {
    "edited": _edited,
    "deleted": _deleted,
    "swapped": _swapped,
    "swapped-and-renumbered": _swapped_and_renumbered,
    "cut-off-the-end": _cut_off_the_end,
    "forged": _forged,
    "forged-without-checkpoints": _forged_without_checkpoints,
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_tampered_export_is_broken_at_the_first_bad_entry(
    cli: CliRunner, purged: Purged, tmp_path: Path, tampering: str
) -> None:
    bundle = purged.bundle()
    seq, reason = TAMPERINGS[tampering](bundle)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))

    result = cli.invoke(
        exposure_cli,
        ["audit", "verify", str(tampered), "--public-key", str(purged.keys_file)],
    )

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"keyserver: BROKEN at seq {seq}: {reason} ("), lines[0]
    assert lines[1].startswith("verification: OK, ")
    as_json = cli.invoke(
        exposure_cli,
        ["audit", "verify", str(tampered), "--public-key", str(purged.keys_file), "--json"],
    )
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert report["logs"][0]["problem"]["seq"] == seq
    assert report["logs"][0]["problem"]["reason"] == reason


def test_a_forged_export_only_fails_against_the_published_key(
    cli: CliRunner, purged: Purged, tmp_path: Path
) -> None:
    bundle = purged.bundle()
    _forged(bundle)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(bundle))

    # Self-consistent under the key it carries: that is all an export's own key shows.
    result = cli.invoke(exposure_cli, ["audit", "verify", str(forged)])

    assert result.exit_code == 0, result.output
    assert "keyserver: OK" in result.stdout
    assert "pass --public-key" in result.stderr


def test_verifying_from_after_the_last_entry_checks_nothing(cli: CliRunner, purged: Purged) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    result = cli.invoke(
        exposure_cli,
        [
            "audit",
            "verify",
            str(purged.export),
            "--public-key",
            str(purged.keys_file),
            "--from",
            later,
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [log["entries_checked"] for log in report["logs"]] == [0, 0]


def test_verifying_from_an_earlier_time_checks_everything(cli: CliRunner, purged: Purged) -> None:
    earlier = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    result = cli.invoke(
        exposure_cli,
        ["audit", "verify", str(purged.export), "--public-key", str(purged.keys_file)],
    )
    since = cli.invoke(
        exposure_cli,
        [
            "audit",
            "verify",
            str(purged.export),
            "--public-key",
            str(purged.keys_file),
            "--from",
            earlier,
        ],
    )

    assert result.exit_code == since.exit_code == 0
    assert since.stdout == result.stdout


# ---- mistakes: exit 2 (1 for jobs), one line on standard error, no traceback -------------


def _one_line_error(result: Any, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (("--from", "nope"), "is not an ISO 8601"),
        (("--from", "2026-11-01T00:00:00"), "needs a UTC offset"),
        (("{missing}",), "cannot read"),
        (("{not_json}",), "is not JSON"),
        (("{array}",), "neither a"),
        (("{export}", "--service", "nope"), "no log of service 'nope'"),
        (("{export}", "--public-key", "{missing}"), "cannot read public key file"),
        (("{export}", "--public-key", "{one_key}"), "holds one key but there are 2 logs"),
        (("{export}", "--public-key", "{keyserver_only}"), "no public key for 'verification'"),
        (("{export}", "--service", "keyserver", "--public-key", "{bad_key}"), "not a base64"),
        (("{export}", "--public-key", "{short_key}"), "an Ed25519 public key is 32 bytes"),
    ],
)
def test_verify_mistakes(
    cli: CliRunner,
    purged: Purged,
    tmp_path: Path,
    arguments: tuple[str, ...],
    fragment: str,
) -> None:
    files = {
        "missing": tmp_path / "missing.json",
        "not_json": tmp_path / "notes.txt",
        "array": tmp_path / "array.json",
        "export": purged.export,
        "one_key": tmp_path / "one.key",
        "keyserver_only": tmp_path / "keyserver-only.json",
        "bad_key": tmp_path / "bad.key",
        "short_key": tmp_path / "short.json",
    }
    files["not_json"].write_text("not json at all\n")
    files["array"].write_text("[]\n")
    files["one_key"].write_text(purged.keys["keyserver"] + "\n")
    files["keyserver_only"].write_text(
        json.dumps({"keys": {"keyserver": purged.keys["keyserver"]}})
    )
    files["bad_key"].write_text("not base64!\n")
    short = base64.b64encode(bytes(31)).decode()
    files["short_key"].write_text(json.dumps({"keyserver": short, "verification": short}))
    concrete = [argument.format(**files) for argument in arguments]

    result = cli.invoke(exposure_cli, ["audit", "verify", *concrete])

    _one_line_error(result, 2, fragment)


def test_a_single_key_verifies_a_single_service(
    cli: CliRunner, purged: Purged, tmp_path: Path
) -> None:
    one_key = tmp_path / "keyserver.key"
    one_key.write_text(purged.keys["keyserver"] + "\n")

    result = cli.invoke(
        exposure_cli,
        [
            "audit",
            "verify",
            str(purged.export),
            "--service",
            "keyserver",
            "--public-key",
            str(one_key),
        ],
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("keyserver: OK, ")
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("now", "fragment"),
    [
        ("future", "later than the real clock"),
        ("2026-11-01T00:00:00", "needs a UTC offset"),
        ("yesterday", "is not an ISO 8601 time"),
    ],
)
def test_a_purge_in_the_future_needs_allow_future(
    cli: CliRunner, tmp_path: Path, now: str, fragment: str
) -> None:
    if now == "future":
        now = (datetime.now(UTC) + timedelta(days=3)).isoformat()

    result = cli.invoke(exposure_cli, ["jobs", "run", "purge", "--now", now])

    _one_line_error(result, 1, fragment)
    # Refused before anything was opened, let alone purged.
    assert not (tmp_path / "var").exists()
