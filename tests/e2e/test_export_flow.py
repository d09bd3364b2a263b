"""From a phone's publish to a phone's download: keys come back in signed export files.

A real ``exposure serve`` takes a publish; the export jobs run through the CLI as of a later
time (``--now ... --allow-future``, as an operator would backfill); index.txt and every zip
it lists are downloaded from the same server over HTTP, verified with the public key that
bootstrap printed, and searched for the published keys: each is there exactly once.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crypto.signing import load_public_key
from crypto.tekmac import SignedKey, compute_tekmac
from exposure.export.reader import read_export
from exposure.export.verify import verify_export
from tests.e2e.conftest import RunningServer, run_cli
from tests.e2e.test_publish_flow import _certificate, _keys

LOCAL = "http://127.0.0.1:8080"


#: How long to wait for the server's own run of a job to let go of the job's lease.
LEASE_WAIT_SECONDS = 60


def _run_job(server: RunningServer, name: str, now: datetime) -> dict[str, Any]:
    # The server runs every job 5 s after it starts; a CLI run at that moment finds the
    # lease held and skips (ran: false). Ask again until this run is the one that ran.
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while True:
        completed = run_cli(
            server.data_dir, "jobs", "run", name, "--now", now.isoformat(), "--allow-future"
        )
        assert completed.returncode == 0, completed.stderr + completed.stdout
        result: dict[str, Any] = json.loads(completed.stdout)
        if result["ran"] or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_published_keys_come_back_once_each_in_signed_files(server: RunningServer) -> None:
    setup = json.loads(run_cli(server.data_dir, "admin", "bootstrap", "--json").stdout)
    keys = _keys(14)
    secret = secrets.token_bytes(32)
    tekmac = compute_tekmac(
        secret, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    )
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        certificate = _certificate(client, setup, "confirmed", tekmac)
        published = client.post(
            setup["publish_url"].removeprefix(LOCAL),
            json={
                "temporaryExposureKeys": keys,
                "healthAuthorityID": setup["health_authority_id"],
                "verificationPayload": certificate,
                "hmacKey": base64.b64encode(secret).decode(),
            },
        )
        assert published.status_code == 200, published.text

        later = datetime.now(UTC) + timedelta(days=1)
        batches = _run_job(server, "export-batches", later)
        worker = _run_job(server, "export-worker", later)
        assert batches["summary"]["created"] >= 1
        assert worker["summary"]["batches_completed"] == batches["summary"]["created"]

        index = client.get(setup["index_url"].removeprefix(LOCAL))
        assert index.status_code == 200
        assert index.headers["cache-control"].startswith("no-cache")
        names = index.text.split("\n")
        assert all(names), index.text
        assert names == sorted(names)
        assert not index.text.endswith("\n")
        public_key = load_public_key(setup["export_public_key_pem"].encode())
        found: list[bytes] = []
        for name in names:
            download = client.get(f"/exports/{name}")
            assert download.status_code == 200, name
            assert download.headers["content-type"] == "application/zip"
            parsed = read_export(download.content, strict_key_length=True)
            verify_export(parsed, public_key)  # raises unless the bootstrap key signed it
            assert parsed.contents.region == "VN"
            found.extend(key.key_data for key in parsed.contents.keys)

    published_keys = [base64.b64decode(k["key"]) for k in keys]
    assert all(found.count(key) == 1 for key in published_keys)
    # A small batch is padded to at least 1,000 keys that look like the real ones.
    assert len(found) >= 1_000
    assert len(set(found)) == len(found)
