"""``exposure phone``: a phone's expected failures are one line and an exit code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import RunningServer, run_cli


def test_a_code_the_server_refuses_is_one_line(server: RunningServer, tmp_path: Path) -> None:
    bootstrap = run_cli(server.data_dir, "admin", "bootstrap", "--json")
    assert bootstrap.returncode == 0, bootstrap.stderr
    setup = tmp_path / "setup.json"
    setup.write_text(bootstrap.stdout)

    refused = run_cli(
        server.data_dir, "phone", "upload", "--code", "00000000", "--setup", str(setup),
        "--server", server.base_url,
    )  # fmt: skip

    assert refused.returncode == 1
    assert refused.stderr.startswith("error: upload refused: code_invalid"), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "00000000" not in refused.stderr

    # Nothing exported yet: the phone says so and fails, without a traceback.
    empty = run_cli(
        server.data_dir, "phone", "download", "--into", str(tmp_path / "files"),
        "--setup", str(setup), "--server", server.base_url,
    )  # fmt: skip
    assert empty.returncode == 1
    assert "Traceback" not in empty.stderr + empty.stdout


def test_a_setup_that_is_not_bootstrap_s_is_a_usage_error(
    server: RunningServer, tmp_path: Path
) -> None:
    wrong = tmp_path / "setup.json"
    wrong.write_text(json.dumps({"verification_url": server.base_url}))

    for arguments in (["upload", "--code", "12345678"], ["download", "--into", str(tmp_path)]):
        completed = run_cli(server.data_dir, "phone", *arguments, "--setup", str(wrong))
        assert completed.returncode == 2
        assert completed.stderr.startswith("error: ")
        assert "lacks device_api_key" in completed.stderr
        assert len(completed.stderr.strip().splitlines()) == 1

    missing = run_cli(server.data_dir, "phone", "upload", "--code", "1", "--setup", "nope.json")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot read the setup")
