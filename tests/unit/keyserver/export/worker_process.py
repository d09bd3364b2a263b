"""An export worker in a process of its own, for the crash and race tests.

Run as ``python -m tests.unit.keyserver.export.worker_process '<json>'`` with:

- ``database_url``, ``store``, ``keys``: where the database, export files and signing keys are;
- ``now``: ISO 8601 clock of the run; ``holder``: the worker's lease holder;
- ``settings``: KeyserverSettings overrides;
- ``pause_at`` / ``pause_occurrence``: stop forever at that step (its n-th occurrence, 1-based)
  after printing ``PAUSED <step>``, so the test can SIGKILL the process exactly there;
- ``start_file``: wait until this file exists before starting (lines up racing workers);
- ``put_log``: append ``<holder> <name>`` for every zip written.

On success it prints the report as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from exposure.db import create_database_engine, make_session_factory
from keyserver.export.blobstore import Blob, FilesystemBlobStore
from keyserver.export.worker import run_worker
from keyserver.settings import KeyserverSettings
from tests.keys import sealed_key_store


class LoggingStore:
    """A filesystem store that logs every zip it writes (one O_APPEND line each)."""

    def __init__(self, inner: FilesystemBlobStore, log: Path, holder: str) -> None:
        self._inner = inner
        self._log = log
        self._holder = holder

    def put(self, name: str, data: bytes, *, content_type: str, cache_control: str) -> None:
        self._inner.put(name, data, content_type=content_type, cache_control=cache_control)
        if name.endswith(".zip"):
            descriptor = os.open(self._log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, f"{self._holder} {name}\n".encode())
            finally:
                os.close(descriptor)

    def get(self, name: str) -> Blob | None:
        return self._inner.get(name)

    def delete(self, name: str) -> None:
        self._inner.delete(name)

    def list(self, prefix: str) -> list[str]:
        return self._inner.list(prefix)


def main(arguments: dict[str, Any]) -> None:
    pause_at = arguments.get("pause_at")
    pause_occurrence = int(arguments.get("pause_occurrence", 1))
    seen: dict[str, int] = {}

    def step_hook(step: str) -> None:
        seen[step] = seen.get(step, 0) + 1
        if step == pause_at and seen[step] == pause_occurrence:
            sys.stdout.write(f"PAUSED {step}\n")
            sys.stdout.flush()
            while True:  # until the test kills us
                time.sleep(60)

    start_file = arguments.get("start_file")
    if start_file:
        while not Path(start_file).exists():
            time.sleep(0.01)
    engine = create_database_engine(arguments["database_url"])
    filesystem = FilesystemBlobStore(Path(arguments["store"]))
    holder = arguments["holder"]
    put_log = arguments.get("put_log")
    store = LoggingStore(filesystem, Path(put_log), holder) if put_log else filesystem
    report = run_worker(
        make_session_factory(engine),
        store=store,
        key_store=sealed_key_store("keyserver"),
        settings=KeyserverSettings(**arguments.get("settings", {})),
        now=datetime.fromisoformat(arguments["now"]),
        holder=holder,
        step_hook=step_hook,
    )
    sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    engine.dispose()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
