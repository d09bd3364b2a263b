"""``exposure demo`` end to end: a real server, real HTTP, the CLI, both database engines.

A small world (40 phones, 3 days) keeps it quick; the demo itself checks found = expected
against its ground truth, and the test checks the demo says so and that its numbers hold
together.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EXPOSURE, clean_environment


def run_demo(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXPOSURE), "demo", "--phones", "40", "--days", "3", "--seed", "5", *arguments],
        env=clean_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def check(report: dict[str, Any]) -> None:
    assert report["ok"] is True
    assert report["phones"] == 40
    assert report["positives"] >= 1
    assert report["keys_published"] >= report["positives"]
    assert report["files_exported"] >= 1
    assert report["refused_files"] == 0
    assert report["exposure_windows"]["found"] == report["exposure_windows"]["expected"] > 0
    assert report["notified_phones"]["found"] == report["notified_phones"]["expected"]
    assert report["false_notifications"] == 0
    assert report["notified_phones_mismatched"] == 0
    steps = {"start_server", "upload", "export", "download_and_match"}
    assert set(report["steps_seconds"]) >= steps


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_arguments(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "postgresql":
        return ["--database-url", request.getfixturevalue("postgres_database")]
    return []


def test_the_demo_finds_what_its_ground_truth_says(
    tmp_path: Path, engine_arguments: list[str]
) -> None:
    data_dir = tmp_path / "demo"
    completed = run_demo(tmp_path, "--data-dir", str(data_dir), "--json", *engine_arguments)

    assert completed.returncode == 0, completed.stderr + completed.stdout
    check(json.loads(completed.stdout))
    # The server it started was a real one, with the throwaway timing, and is gone now.
    log = (data_dir / "demo-server.log").read_text()
    assert "throwaway demo timing is on" in log


def test_the_summary_is_readable_and_a_used_directory_is_refused(tmp_path: Path) -> None:
    completed = run_demo(tmp_path)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    assert "OK: found = expected" in completed.stdout
    assert "exposure windows" in completed.stdout

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something").write_text("x")
    refused = run_demo(tmp_path, "--data-dir", str(tmp_path / "used"))
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: --data-dir")
    assert "Traceback" not in refused.stderr
