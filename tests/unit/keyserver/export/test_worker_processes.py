"""Export workers as real processes: killed at every step, and racing each other.

A worker is SIGKILLed while paused at a named step (see ``worker_process.py``); whatever it
left behind, index.txt may only list whole files that exist, and another worker must finish
the batch once the lease has expired. Two workers racing over many batches must write every
batch once and every key exactly once.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from exposure.db import SessionFactory, make_session_factory, unit_of_work
from exposure.db.lease import new_holder_token
from keyserver.export.batcher import STATUS_COMPLETE, STATUS_PENDING, create_batches
from keyserver.export.blobstore import FilesystemBlobStore
from keyserver.export.worker import ORIGIN_PADDING, run_worker
from keyserver.models import ExportBatch, ExportFile, Exposure
from tests.keys import sealed_key_store
from tests.unit.keyserver.export.support import (
    HOUR,
    T0,
    add_keys,
    assert_verifies,
    exposure_row,
    make_config,
    read_exports,
    read_index,
    settings,
)

REPOSITORY = Path(__file__).resolve().parents[4]
CHILD_TIMEOUT = 120.0


def _spawn(arguments: dict[str, Any]) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.unit.keyserver.export.worker_process", json.dumps(arguments)],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + CHILD_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=1.0):
                continue
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line
    finally:
        selector.close()
    process.kill()
    _, errors = process.communicate()
    pytest.fail(f"worker never printed {prefix!r}; stderr:\n{errors}")


def _window_keys(factory: SessionFactory, start: datetime, end: datetime) -> set[bytes]:
    with unit_of_work(factory) as session:
        return set(
            session.scalars(
                select(Exposure.key).where(Exposure.created_at >= start, Exposure.created_at < end)
            )
        )


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [("padded", 1), ("file_written", 1), ("files_written", 1), ("index_written", 1)],
)
def test_a_worker_killed_at_any_step_leaves_only_whole_listed_files(
    database_url: str, engine: Engine, tmp_path: Path, step: str, occurrence: int
) -> None:
    factory = make_session_factory(engine)
    store = FilesystemBlobStore(tmp_path / "exports")
    key_store = sealed_key_store("keyserver")
    export_settings = settings()
    with unit_of_work(factory) as session:
        # Padding takes each batch to 1000-1100 keys: two files of at most 600.
        _, info = make_config(session, key_store, period=timedelta(hours=4), max_records=600)
        add_keys(session, [exposure_row(created_at=T0 + HOUR) for _ in range(5)])
        add_keys(session, [exposure_row(created_at=T0 + 5 * HOUR) for _ in range(5)])
        create_batches(session, settings=export_settings, now=T0 + 6 * HOUR)
    first = run_worker(
        factory,
        store=store,
        key_store=key_store,
        settings=export_settings,
        now=T0 + 6 * HOUR,
        holder=new_holder_token(),
    )
    assert first.batches_completed == 1
    earlier_files = read_index(store, "vn")
    assert len(earlier_files) == 2

    now = T0 + 10 * HOUR
    with unit_of_work(factory) as session:
        create_batches(session, settings=export_settings, now=now)
    holder = new_holder_token()
    child = _spawn(
        {
            "database_url": database_url,
            "store": str(tmp_path / "exports"),
            "keys": str(tmp_path / "keys"),
            "now": now.isoformat(),
            "holder": holder,
            "pause_at": step,
            "pause_occurrence": occurrence,
        }
    )
    try:
        _wait_for_line(child, f"PAUSED {step}")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == -signal.SIGKILL

    # Whatever the index lists exists whole and verifies; the earlier files stay listed.
    listed = read_index(store, "vn")
    assert set(earlier_files) <= set(listed)
    for parsed in read_exports(store, listed).values():
        assert_verifies(parsed, [info.public_key_pem])
    with unit_of_work(factory) as session:
        batch = session.scalars(
            select(ExportBatch).where(ExportBatch.start_at == T0 + 4 * HOUR)
        ).one()
        assert (batch.status, batch.lease_holder) == (STATUS_PENDING, holder)

    # The batch stays with the dead worker until its lease expires, then is finished.
    def work(at: datetime) -> int:
        report = run_worker(
            factory,
            store=store,
            key_store=key_store,
            settings=export_settings,
            now=at,
            holder=new_holder_token(),
        )
        assert report.failures == []
        return report.batches_completed

    assert work(now + timedelta(minutes=1)) == 0
    assert work(now + export_settings.export_worker_lease + timedelta(seconds=5)) == 1

    listed = read_index(store, "vn")
    assert listed == sorted(listed)
    assert len(listed) == 4
    exports = read_exports(store, listed)
    for parsed in exports.values():
        assert_verifies(parsed, [info.public_key_pem])
    exported = Counter(key.key_data for parsed in exports.values() for key in parsed.contents.keys)
    assert set(exported.values()) == {1}
    stored = _window_keys(factory, T0, T0 + 8 * HOUR)
    assert set(exported) == stored  # every key, padding included, exactly once
    with unit_of_work(factory) as session:
        padding = session.scalar(
            select(func.count()).where(
                Exposure.origin == ORIGIN_PADDING, Exposure.created_at >= T0 + 4 * HOUR
            )
        )
        files = session.scalars(select(ExportFile.filename).order_by(ExportFile.filename)).all()
    assert padding is not None
    assert 995 <= padding <= 1095  # padded once, not twice
    assert list(files) == listed


def test_two_workers_racing_write_every_batch_once_and_every_key_once(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    factory = make_session_factory(engine)
    key_store = sealed_key_store("keyserver")
    overrides = {"export_min_records": 100, "export_padding_range": 10}
    export_settings = settings(**overrides)
    published: list[bytes] = []
    revised: list[bytes] = []
    with unit_of_work(factory) as session:
        make_config(session, key_store, period=timedelta(hours=1), max_records=150)
        for hour in range(24):
            count = (40, 120, 200)[hour % 3]  # padded, one file, two files
            published += add_keys(
                session, [exposure_row(created_at=T0 + hour * HOUR) for _ in range(count)]
            )
        revised += add_keys(
            session,
            [
                exposure_row(
                    created_at=T0 - 30 * HOUR,
                    report_type="likely",
                    revised_at=T0 + (n % 24) * HOUR,
                    revised_report_type="confirmed",
                )
                for n in range(60)
            ],
        )
        batches = create_batches(session, settings=export_settings, now=T0 + 27 * HOUR)
    assert len(batches) == 25  # [00:00, 01:00) to [24:00, 25:00), the last one empty

    start_file = tmp_path / "go"
    put_log = tmp_path / "puts.log"
    children = [
        _spawn(
            {
                "database_url": database_url,
                "store": str(tmp_path / "exports"),
                "keys": str(tmp_path / "keys"),
                "now": (T0 + 27 * HOUR).isoformat(),
                "holder": f"worker-{number}",
                "settings": overrides,
                "start_file": str(start_file),
                "put_log": str(put_log),
            }
        )
        for number in (1, 2)
    ]
    start_file.touch()
    reports = []
    for child in children:
        output, errors = child.communicate(timeout=CHILD_TIMEOUT * 3)
        assert child.returncode == 0, errors
        reports.append(json.loads(output.strip().splitlines()[-1]))

    assert all(report["failures"] == [] for report in reports)
    assert sum(report["batches_completed"] for report in reports) == 25
    puts = put_log.read_text().splitlines()
    written = Counter(line.split(" ", 1)[1] for line in puts)
    assert set(written.values()) == {1}, "a file was written twice"

    store = FilesystemBlobStore(tmp_path / "exports")
    listed = read_index(store, "vn")
    assert sorted(written) == listed
    exports = read_exports(store, listed)
    keys = Counter(key.key_data for parsed in exports.values() for key in parsed.contents.keys)
    revisions = Counter(
        key.key_data for parsed in exports.values() for key in parsed.contents.revised_keys
    )
    assert all(keys[key] == 1 for key in published)
    assert set(keys.values()) == {1}
    assert set(revisions) == set(revised)
    assert set(revisions.values()) == {1}
    with unit_of_work(factory) as session:
        statuses = Counter(session.scalars(select(ExportBatch.status)))
        padding = set(
            session.scalars(select(Exposure.key).where(Exposure.origin == ORIGIN_PADDING))
        )
    assert statuses == {STATUS_COMPLETE: 25}
    assert set(keys) == set(published) | padding
