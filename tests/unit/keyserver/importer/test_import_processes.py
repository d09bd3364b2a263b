"""An importer killed with SIGKILL in the middle of a file, then run again: every key of
every file is stored exactly once, and every file has exactly one record."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from exposure.db import make_session_factory, unit_of_work
from keyserver.models import Exposure, ImportFile
from tests.unit.keyserver.importer.support import (
    Peer,
    PeerSigner,
    add_source,
    day_keys,
    serve_peer,
)
from tests.unit.keyserver.importer.test_run import NOW

REPOSITORY = Path(__file__).resolve().parents[4]
CHILD_TIMEOUT = 120.0


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    with serve_peer(tmp_path / "peer") as served:
        yield served


def _spawn(arguments: dict[str, Any]) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.unit.keyserver.importer.import_process",
            json.dumps(arguments),
        ],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> str:
    """The child's next line of output (fails the test after CHILD_TIMEOUT)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + CHILD_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=1.0):
                line = process.stdout.readline()
                if line:
                    return line
                break
    finally:
        selector.close()
    process.kill()
    _, errors = process.communicate()
    pytest.fail(f"the importer printed nothing; stderr:\n{errors}")


@pytest.mark.parametrize("killed_in_file", [1, 2])
def test_an_importer_killed_mid_file_imports_every_key_exactly_once(
    database_url: str, engine: Engine, peer: Peer, killed_in_file: int
) -> None:
    factory = make_session_factory(engine)
    signer = PeerSigner()
    files = {f"v1/{number}.zip": day_keys(NOW, 300) for number in range(3)}
    for name, keys in files.items():
        peer.publish(name, signer.export(keys, NOW))
    peer.index(sorted(files))
    add_source(factory, peer, [signer.source_key()], now=NOW)
    arguments = {"database_url": database_url, "now": NOW.isoformat()}

    child = _spawn({**arguments, "pause_at_file": killed_in_file})
    assert _line(child).strip() == "PAUSED"
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == -signal.SIGKILL

    with unit_of_work(factory) as session:
        committed = session.scalar(select(func.count()).select_from(ImportFile))
    assert committed == killed_in_file - 1  # the file it was killed in left nothing
    again = _spawn(arguments)
    report = json.loads(_line(again))
    _, errors = again.communicate(timeout=CHILD_TIMEOUT)
    assert again.returncode == 0, errors
    [run] = report["sources"]
    assert run["files_imported"] == len(files) - (killed_in_file - 1)
    with unit_of_work(factory) as session:
        stored = list(session.scalars(select(Exposure.key)))
        recorded = list(session.scalars(select(ImportFile.filename)))
    assert sorted(stored) == sorted(key.key_data for keys in files.values() for key in keys)
    assert sorted(recorded) == sorted(files)
