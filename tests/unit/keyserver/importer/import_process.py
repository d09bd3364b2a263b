"""An import run in a process of its own, for the crash test.

Run as ``python -m tests.unit.keyserver.importer.import_process '<json>'`` with
``database_url``, ``now`` (ISO 8601) and ``pause_at_file`` (optional, 1-based): after the
keys of that file are stored and before they commit, print ``PAUSED`` and wait forever, so
the test can SIGKILL the process mid-file. On success it prints the report as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from exposure.db import create_database_engine, make_session_factory
from keyserver.importer.fetch import Fetcher
from keyserver.importer.run import run_import
from keyserver.settings import KeyserverSettings


def main(arguments: dict[str, Any]) -> None:
    engine = create_database_engine(arguments["database_url"])
    pause_at = arguments.get("pause_at_file")
    stored = 0

    def hook(step: str) -> None:
        nonlocal stored
        if step != "keys_stored":
            return
        stored += 1
        if stored == pause_at:
            print("PAUSED", flush=True)  # noqa: T201 - the test reads stdout
            while True:
                time.sleep(60)

    fetcher = Fetcher(timeout=timedelta(seconds=10), retries=0, backoff=timedelta(0))
    report = run_import(
        make_session_factory(engine),
        settings=KeyserverSettings(),
        fetcher=fetcher,
        now=datetime.fromisoformat(arguments["now"]),
        step_hook=hook,
    )
    print(json.dumps(report.as_dict(), default=str), flush=True)  # noqa: T201


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
