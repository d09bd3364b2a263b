"""Phones built on the SDK against a real ``exposure serve``, over real HTTP, on both engines.

Alice and Bob meet twice (two days ago, and today); Bob also hears Carol, who never tests
positive. Alice uploads her keys with a ``likely`` code, then again with a ``confirmed`` one
and the revision token the first upload returned. The operator's export jobs run (as of two
days later, since exports wait for keys to expire). Bob downloads index.txt and the files,
verifies them with the key bootstrap printed, and finds Alice's keys, and only hers: the
windows and daily summaries say when, how close, and that it was a confirmed test.

On the way, the files misbehave as a CDN can: one listed in index.txt is missing (refused,
while the other is processed and remembered), one is signed by another key (refused).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.signing import FileSigner
from exposure.client import (
    Device,
    ExportSigningKey,
    ExportSource,
    ExportSync,
    ReportType,
    RiskModel,
    ServerConfig,
    SightingIndex,
    SyncState,
    TemporaryExposureKey,
    Uploader,
    daily_summaries,
    exposure_windows,
)
from exposure.export import SignatureInfo, read_export_members, sign_export, write_export_zip
from exposure.keys.kek import new_kek
from exposure.tek import utc_midnight
from tests.e2e.conftest import RunningServer, run_cli, start_server
from tests.unit.exposure.client.support import meet, seeded

SCAN = timedelta(minutes=5)


@dataclass
class Deployment:
    """A running server set up by ``exposure admin bootstrap``, and what the phones need."""

    server: RunningServer
    setup: dict[str, Any]
    environment: dict[str, str] = field(default_factory=dict)

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        completed = run_cli(self.server.data_dir, *arguments, environment=self.environment)
        assert completed.returncode == 0, completed.stderr + completed.stdout
        return completed

    def issue_code(self, test_type: str, symptoms: datetime) -> str:
        issued = httpx.post(
            f"{self.server.base_url}/api/issue",
            json={"testType": test_type, "symptomDate": symptoms.date().isoformat()},
            headers={"X-API-Key": self.setup["admin_api_key"]},
            timeout=10,
        )
        assert issued.status_code == 200, issued.text
        code: str = issued.json()["code"]
        return code

    def run_exports(self, at: datetime) -> None:
        for job in ("export-batches", "export-worker"):
            self.cli("jobs", "run", job, "--now", at.isoformat(), "--allow-future")

    @property
    def upload_config(self) -> ServerConfig:
        return ServerConfig(
            verification_url=self.server.base_url,
            keyserver_url=self.server.base_url,
            api_key=self.setup["device_api_key"],
            health_authority_id=self.setup["health_authority_id"],
        )

    def source(self, signing_key: ExportSigningKey | None = None) -> ExportSource:
        published = ExportSigningKey.from_pem(
            self.setup["export_key_id"],
            self.setup["export_key_version"],
            self.setup["export_public_key_pem"].encode(),
        )
        return ExportSource(
            base_url=f"{self.server.base_url}/exports",
            index_path=f"{self.setup['export_root']}/index.txt",
            signing_keys=(signing_key or published,),
        )

    def blob(self, name: str) -> Path:
        """Where the filesystem store keeps an export file (the CDN the test tampers with)."""
        return self.server.data_dir / "exports" / name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    environment: dict[str, str] = {}
    if request.param == "postgresql":
        environment = {
            "EXPOSURE_DATABASE_URL": request.getfixturevalue("postgres_database"),
            "EXPOSURE_KEYSERVER_KEK": new_kek(),
            "EXPOSURE_VERIFICATION_KEK": new_kek(),
        }
    server = start_server(tmp_path / "var", environment=environment)
    try:
        bootstrap = run_cli(
            server.data_dir, "admin", "bootstrap", "--json", environment=environment
        )
        assert bootstrap.returncode == 0, bootstrap.stderr
        yield Deployment(server, json.loads(bootstrap.stdout), environment)
    finally:
        if server.process.poll() is None:
            server.stop()


@dataclass
class Encounters:
    """Alice and Carol as Bob heard them, and the keys Alice shares."""

    bob: Device
    alice_keys: list[TemporaryExposureKey]
    first: datetime
    second: datetime


def meet_twice(now: datetime) -> Encounters:
    today = utc_midnight(now)
    alice, bob, carol = (
        Device(random_bytes=seeded(1)),
        Device(random_bytes=seeded(2)),
        Device(random_bytes=seeded(3)),
    )
    first = today - timedelta(days=2) + timedelta(hours=10)
    second = today + timedelta(hours=1)
    meet(bob, carol, first - timedelta(hours=1), 6, attenuation=40)
    meet(bob, alice, first, 9, attenuation=45)  # 40 minutes: windows of 6 and 3 scans
    meet(bob, alice, second, 4, attenuation=65)
    # Today's key is still valid: the key server holds it back until it has expired, so it
    # reaches phones in a later export file than the older key.
    keys = [*alice.keys_for_upload(now), alice.key_at(now)]
    return Encounters(bob, keys, first, second)


def upload_likely_then_confirmed(
    deployment: Deployment, keys: list[TemporaryExposureKey], now: datetime
) -> None:
    symptoms = now - timedelta(days=3)
    with Uploader(deployment.upload_config) as alice:
        likely = alice.upload(deployment.issue_code("likely", symptoms), keys)
        assert (likely.test_type, likely.published.inserted_exposures) == ("likely", 2)
        assert alice.send_chaff().statuses == (200, 200, 200)
        first_token = alice.revision_token
        confirmed = alice.upload(deployment.issue_code("confirmed", symptoms), keys)
    assert first_token
    assert confirmed.test_type == "confirmed"
    assert confirmed.published.inserted_exposures == 0  # revised, not inserted


def test_a_phone_learns_it_met_someone_who_tested_positive(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    met = meet_twice(now)
    upload_likely_then_confirmed(deployment, met.alice_keys, now)
    deployment.run_exports(now + timedelta(days=2))

    index = SightingIndex(met.bob.sightings.sightings)
    state_path = tmp_path / "bob" / "sync.json"
    with ExportSync(deployment.source(), SyncState(), state_path=state_path) as sync:
        names = sync.fetch_index()
    assert len(names) == 2, names  # the older keys' window, and the held-back key's
    older, newer = names

    # The newer file is listed but gone from the CDN: refused, the older one processed.
    hidden = tmp_path / "hidden.zip"
    shutil.move(deployment.blob(newer), hidden)
    with ExportSync(deployment.source(), SyncState.load(state_path), state_path=state_path) as sync:
        report = sync.run(index, now=now)
    assert report.processed == (older,)
    assert [(r.name, r.code) for r in report.refused] == [(newer, "missing_file")]
    remembered = SyncState.load(state_path)
    assert remembered.processed == {older}
    assert met.alice_keys[0].key_data in {key.key_data for key in remembered.matched_keys}

    # It comes back; the processed file is not fetched again (it is gone now, and unmissed).
    shutil.move(hidden, deployment.blob(newer))
    deployment.blob(older).unlink()
    with ExportSync(deployment.source(), SyncState.load(state_path), state_path=state_path) as sync:
        report = sync.run(index, now=now)
        matched = sync.state.matched_keys
    assert (report.processed, report.refused) == ((newer,), ())
    assert SyncState.load(state_path).processed == {older, newer}

    # Alice's two keys, and nobody else's; the confirmed revision won over the likely upload.
    assert sorted(key.key_data for key in matched) == sorted(k.key_data for k in met.alice_keys)
    assert {key.report_type for key in matched} == {ReportType.CONFIRMED_TEST}
    model = RiskModel(
        attenuation_thresholds_db=(50, 60, 70), attenuation_weights=(1.0, 0.5, 0.25, 0)
    )
    windows = exposure_windows(matched, index, model)
    assert [(w.started_at, len(w.scan_instances)) for w in windows] == [
        (met.first, 6),
        (met.first + 6 * SCAN, 3),
        (met.second, 4),
    ]
    assert {scan.typical_attenuation_db for scan in windows[0].scan_instances} == {45}
    assert {scan.typical_attenuation_db for scan in windows[2].scan_instances} == {65}
    # A scan stands for the time since the previous one; Bob's first scan of each encounter
    # follows a long pause, so it counts for the 10-minute cap, the others for 5 minutes.
    summaries = daily_summaries(windows, model)
    assert [(s.day, s.summary.weighted_duration_sum) for s in summaries] == [
        (met.first.date(), (600 + 8 * 300) * 1.0),
        (met.second.date(), (600 + 3 * 300) * 0.25),
    ]


def test_files_that_do_not_verify_are_refused(deployment: Deployment, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    met = meet_twice(now)
    upload_likely_then_confirmed(deployment, met.alice_keys, now)
    deployment.run_exports(now + timedelta(days=2))
    index = SightingIndex(met.bob.sightings.sightings)
    impostor = FileSigner.generate()

    # A phone configured with another key under the same id and version trusts no file.
    wrong = ExportSigningKey(
        deployment.setup["export_key_id"],
        deployment.setup["export_key_version"],
        impostor.public_key(),
    )
    with ExportSync(deployment.source(wrong), SyncState()) as sync:
        report = sync.run(index, now=now)
        assert sync.state.matched_keys == []
    assert report.processed == ()
    assert {r.code for r in report.refused} == {"invalid_signature"}
    assert len(report.refused) == 2

    # One file re-signed by someone else on the way: that one refused, the other processed.
    with ExportSync(deployment.source(), SyncState()) as sync:
        older, newer = sync.fetch_index()
        members = read_export_members(deployment.blob(newer).read_bytes())
        info = SignatureInfo(
            verification_key_id=deployment.setup["export_key_id"],
            verification_key_version=deployment.setup["export_key_version"],
        )
        forged = sign_export(members.export_bin, [(info, impostor)])
        deployment.blob(newer).write_bytes(write_export_zip(members.export_bin, forged))

        report = sync.run(index, now=now)
    assert report.processed == (older,)
    assert [(r.name, r.code) for r in report.refused] == [(newer, "invalid_signature")]
