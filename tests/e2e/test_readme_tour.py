"""The README's five-minute tour, run as written: from a lab's code to a verified export file.

The tour's shell block runs in bash with job control (as in the terminal a reader pastes it
into), in a temporary directory that holds links to the repository's Makefile, pyproject.toml
and .venv, so ``make run`` and ``.venv/bin/exposure`` work and every file the tour writes
stays out of the repository (``make run`` makes the virtual environment first if ``make``
has not). The tour's server listens on a free port (``EXPOSURE_PORT``, which the tour
defaults to 8080) and ``mktemp`` creates its data directory under the test's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from exposure.launcher import free_loopback_port
from tests.e2e.conftest import clean_environment

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash") or "/bin/bash"
HEADING = "## A five-minute tour"


def tour_script() -> str:
    """The first ```sh block after the tour's heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(HEADING) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README has no tour block"
    return match.group(1)


def session_processes(session: int) -> list[int]:
    """Processes still alive in ``session`` (the tour's, started by this test)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields: state, ppid, pgrp, session, ...
            alive.append(int(entry.name))
    return alive


def test_the_tour_runs_as_written_to_a_verified_zip(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "tmp").mkdir()
    port = free_loopback_port()
    environment = clean_environment(tmp_path / "unused")
    del environment["EXPOSURE_DATA_DIR"]  # the tour makes its own
    environment.update(
        {
            "EXPOSURE_PORT": str(port),
            "EXPOSURE_METRICS_PORT": str(free_loopback_port()),
            "TMPDIR": str(tmp_path / "tmp"),
        }
    )
    script = tmp_path / "tour.sh"
    script.write_text(tour_script())

    tour = subprocess.Popen(
        [BASH, "-e", "-m", str(script)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = tour.communicate(timeout=240)
    finally:
        for pid in session_processes(tour.pid):
            os.kill(pid, signal.SIGTERM)

    assert tour.returncode == 0, output
    assert "# TYPE " in output, "the metrics listener answered nothing"
    assert '"openapi":"3.1' in output.replace(" ", ""), output
    assert re.search(r"uploaded as confirmed: \d+ of 3 keys", output), output
    zips = sorted((tmp_path / "downloads").glob("*.zip"))
    assert len(zips) == 1, output
    assert f"verified downloads/{zips[0].name}" in output
    # export inspect, the last command but one, checked the signature again, offline (and
    # `bash -e` would have stopped at its exit status had it not verified).
    inspected = output[output.rindex(f"verified downloads/{zips[0].name}") :]
    assert "verification: passed" in inspected, output
    # `kill %1` stopped the server.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
