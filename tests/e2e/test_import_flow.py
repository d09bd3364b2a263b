"""Two real servers of this project: one takes a publish and exports, the other imports
its signed files over HTTP and re-exports them in its own; a phone of the SDK that
downloads only from the second finds the exposure.

Server A is the ``deployment`` of the client flow (SQLite, or PostgreSQL); server B is a
fresh embedded server. B is told of A's index, export root and export public key with
``exposure admin import-source add``, and of a series that re-exports imported keys with
``exposure admin export-config add --include-imported``; its ``import`` job runs through
the CLI as an operator would, as of the same later time as the export jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exposure.client import (
    ExportSigningKey,
    ExportSource,
    ExportSync,
    ReportType,
    RiskModel,
    SightingIndex,
    SyncState,
    Uploader,
    exposure_windows,
)
from tests.e2e.conftest import start_server
from tests.e2e.test_client_flow import Deployment, meet_twice
from tests.e2e.test_client_flow import deployment as deployment  # the first server (fixture)

#: How long to wait for the server's own run of a job to let go of the job's lease.
LEASE_WAIT_SECONDS = 60


@pytest.fixture
def importer(tmp_path: Path) -> Iterator[Deployment]:
    server = start_server(tmp_path / "importer")
    try:
        deployment = Deployment(server, {})
        bootstrap = deployment.cli("admin", "bootstrap", "--json")
        deployment.setup = json.loads(bootstrap.stdout)
        yield deployment
    finally:
        if server.process.poll() is None:
            server.stop()


def _run_job(deployment: Deployment, name: str, now: datetime) -> dict[str, Any]:
    # The server runs every job 5 s after it starts; a CLI run then finds the lease held.
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while True:
        completed = deployment.cli("jobs", "run", name, "--now", now.isoformat(), "--allow-future")
        result: dict[str, Any] = json.loads(completed.stdout)
        if result["ran"] or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_a_phone_of_the_second_server_finds_an_exposure_published_on_the_first(
    deployment: Deployment, importer: Deployment, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    met = meet_twice(now)
    with Uploader(deployment.upload_config) as alice:
        symptoms = now - timedelta(days=3)
        published = alice.upload(deployment.issue_code("confirmed", symptoms), met.alice_keys)
    assert published.published.inserted_exposures == 2
    later = now + timedelta(days=2)
    deployment.run_exports(later)

    peer = deployment.setup
    public_key = tmp_path / "peer-export-key.pem"
    public_key.write_text(peer["export_public_key_pem"])
    added = importer.cli(
        "admin",
        "import-source",
        "add",
        "first-server",
        "--index",
        f"{deployment.server.base_url}/exports/{peer['export_root']}/index.txt",
        "--export-root",
        f"{deployment.server.base_url}/exports",
        "--key",
        f"{peer['export_key_id']}:{peer['export_key_version']}:{public_key}",
        "--region",
        "VN",
        "--json",
    )
    assert json.loads(added.stdout)["name"] == "first-server"
    importer.cli(
        "admin",
        "export-config",
        "add",
        "all",
        "--region",
        "VN",
        "--period",
        "4h",
        "--signing-key",
        importer.setup["export_key_id"],
        "--include-imported",
        "--import-source",
        "first-server",
    )

    imported = _run_job(importer, "import", later)
    [run] = imported["summary"]["sources"]
    # The first server pads its small batches with random keys, which no importer can tell
    # apart: they come along, and match nobody.
    assert (run["files_imported"], run["error"]) == (2, None), run
    assert run["keys_inserted"] >= len(met.alice_keys)
    again = _run_job(importer, "import", later + timedelta(minutes=5))
    assert again["summary"]["sources"][0]["files_imported"] == 0
    importer.run_exports(later + timedelta(days=2))

    source = ExportSource(
        base_url=f"{importer.server.base_url}/exports",
        index_path="all/index.txt",
        signing_keys=(
            ExportSigningKey.from_pem(
                importer.setup["export_key_id"],
                importer.setup["export_key_version"],
                importer.setup["export_public_key_pem"].encode(),
            ),
        ),
    )
    index = SightingIndex(met.bob.sightings.sightings)
    with ExportSync(source, SyncState(), state_path=tmp_path / "bob" / "sync.json") as sync:
        report = sync.run(index, now=later + timedelta(days=2))
        matched = sync.state.matched_keys
    assert report.refused == ()
    assert report.processed
    assert sorted(key.key_data for key in matched) == sorted(k.key_data for k in met.alice_keys)
    assert {key.report_type for key in matched} == {ReportType.CONFIRMED_TEST}
    assert exposure_windows(matched, index, RiskModel())
    shown = json.loads(
        importer.cli("admin", "import-source", "show", "first-server", "--json").stdout
    )
    assert (shown["files_imported"], shown["files_refused"]) == (2, {})
    assert shown["keys_stored"] == run["keys_inserted"]
