"""``exposure jobs run`` while another process holds the job's lease."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.lease import acquire_lease
from tests.e2e.conftest import run_cli


def _hold_lease(data_dir: Path, job: str, seconds: float) -> None:
    """Take ``job``'s lease in the key server's database as a replica running it would."""
    engine = create_database_engine(f"sqlite:///{(data_dir / 'keyserver.sqlite3').resolve()}")
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lease = acquire_lease(
                session,
                name=f"job:{job}",
                holder="another-replica",
                ttl=timedelta(seconds=seconds),
                now=datetime.now(UTC),
            )
        assert lease is not None
    finally:
        engine.dispose()


def test_a_run_waits_for_the_lease_another_process_holds(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    _hold_lease(tmp_path, "jwks-refresh", seconds=4)

    result = run_cli(tmp_path, "jobs", "run", "jwks-refresh", "--wait", "30")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["ran"] is True
    assert output["summary"]["failed"] == 0


def test_without_waiting_a_held_lease_is_reported_as_skipped(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    _hold_lease(tmp_path, "jwks-refresh", seconds=600)

    result = run_cli(tmp_path, "jobs", "run", "jwks-refresh", "--wait", "0")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output == {
        "job": "jwks-refresh",
        "ran": False,
        "summary": {"skipped": "lease held elsewhere"},
    }
