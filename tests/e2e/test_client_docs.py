"""The complete example of docs/client.md, run as written against a real server.

The example uploads, then syncs until the key server has published the keys; the test plays
the operator as the docs tell a reader to: a throwaway server with the demo timing, an
export series of 5-second windows, and the export jobs run as of the real clock once the
upload's window has closed. It checks what the example prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningServer, clean_environment, run_cli, start_server

DEMO_TIMING = {"EXPOSURE_KEYSERVER_THROWAWAY_DEMO_TIMING": "true"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "client.md"
HEADING = "## A complete example"


def example_source() -> str:
    """The first ```python block after the heading of the complete example."""
    text = DOCS.read_text(encoding="utf-8")
    after = text[text.index(HEADING) :]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "docs/client.md has no runnable example"
    return match.group(1)


@pytest.fixture
def throwaway_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path / "var", environment=DEMO_TIMING)
    yield running
    if running.process.poll() is None:
        running.stop()


def test_the_documented_example_runs_against_a_live_server(
    throwaway_server: RunningServer, tmp_path: Path
) -> None:
    server = throwaway_server
    bootstrap = run_cli(server.data_dir, "admin", "bootstrap", "--json")
    assert bootstrap.returncode == 0, bootstrap.stderr
    setup = json.loads(bootstrap.stdout)
    series = run_cli(
        server.data_dir,
        "admin", "export-config", "add", "example", "--period", "5s",
        "--region", setup["export_region"], "--signing-key", setup["export_key_id"],
    )  # fmt: skip
    assert series.returncode == 0, series.stderr
    (tmp_path / "setup.json").write_text(bootstrap.stdout)
    symptoms = (datetime.now(UTC) - timedelta(days=3)).date()
    issued = httpx.post(
        f"{server.base_url}/api/issue",
        json={"testType": "confirmed", "symptomDate": symptoms.isoformat()},
        headers={"X-API-Key": setup["admin_api_key"]},
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    script = tmp_path / "example.py"
    script.write_text(example_source())
    environment = {
        **clean_environment(server.data_dir),
        "EXPOSURE_SETUP": str(tmp_path / "setup.json"),
        # bootstrap names the default port; this server listens on a free one.
        "EXPOSURE_URL": server.base_url,
        "EXPOSURE_CODE": issued.json()["code"],
        "EXPOSURE_EXPORT_ROOT": "example",
        "EXPOSURE_POLL_SECONDS": "0.5",
        "EXPOSURE_PATIENCE_SECONDS": "120",
    }

    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as example:
        assert example.stdout is not None
        first = example.stdout.readline()
        lines.append(first)
        assert first.startswith("uploaded as confirmed: 1 new key"), first + example.stdout.read()
        # The rest is read on a thread while the operator runs the export jobs.
        reader = threading.Thread(target=lambda: lines.extend(example.stdout or []))
        reader.start()
        time.sleep(8)  # the upload's 5-second window closes 2 s after it ends
        for job in ("export-batches", "export-worker"):
            ran = run_cli(server.data_dir, "jobs", "run", job, environment=DEMO_TIMING)
            assert ran.returncode == 0, ran.stderr
        example.wait(timeout=180)
        reader.join(timeout=10)
    output = "".join(lines)

    assert example.returncode == 0, output
    assert "refused" not in output
    assert re.search(r"window \S+ 14:00 UTC, CONFIRMED_TEST, 6 scans, closest 62 dB", output)
    assert re.search(r"exposure on \S+: score 1800, 30 weighted minutes", output), output
    assert (tmp_path / "bob-sync.json").exists()
