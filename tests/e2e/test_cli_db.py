"""`exposure db upgrade` on a fresh data directory, and refusal of bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXPOSURE = Path(sys.executable).parent / "exposure"


def _run(*arguments: str, **extra_environment: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXPOSURE_")}
    environment.update(extra_environment)
    return subprocess.run(
        [str(EXPOSURE), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_upgrade_creates_both_service_databases(tmp_path: Path) -> None:
    result = _run("db", "upgrade", EXPOSURE_DATA_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "keyserver:" in result.stdout
    assert "verification:" in result.stdout
    assert (tmp_path / "keyserver.sqlite3").exists()
    assert (tmp_path / "verification.sqlite3").exists()


def test_invalid_setting_exits_2_with_a_reason_and_no_traceback(tmp_path: Path) -> None:
    result = _run(
        "db", "upgrade", EXPOSURE_DATA_DIR=str(tmp_path), EXPOSURE_DATABASE_URL="mysql://x/y"
    )

    assert result.returncode == 2
    assert "invalid setting database_url" in result.stderr
    assert "Traceback" not in result.stderr
