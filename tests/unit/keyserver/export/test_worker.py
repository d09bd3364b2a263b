"""The export worker: keys in files exactly once, embargo, padding, splitting, index, leases."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from exposure.api.v1 import ExposureKey, PublishRequest
from exposure.db import SessionFactory, make_session_factory, unit_of_work
from exposure.db.lease import new_holder_token
from exposure.export import ParsedExport, ReportType
from exposure.keys import ServiceKeyStore
from exposure.tek import interval_number
from keyserver.export import worker as worker_module
from keyserver.export.batcher import STATUS_COMPLETE, STATUS_OPEN, STATUS_PENDING, create_batches
from keyserver.export.blobstore import FilesystemBlobStore
from keyserver.export.configs import (
    add_signature_info,
    attach_signature_info,
    rotate_signature_info,
)
from keyserver.export.encode import KeyRecordEncoder
from keyserver.export.worker import (
    ORIGIN_PADDING,
    WorkerReport,
    _lease_batch,
    export_filename,
    run_worker,
)
from keyserver.models import ExportBatch, ExportConfig, ExportFile, Exposure, SignatureInfo
from keyserver.service.transform import transform_publish
from keyserver.settings import KeyserverSettings
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
    write_public_keys,
)

EXPOSURE_CLI = Path(sys.executable).parent / "exposure"


@dataclass
class Env:
    factory: SessionFactory
    store: FilesystemBlobStore
    key_store: ServiceKeyStore
    settings: KeyserverSettings
    tmp_path: Path

    def batch_and_work(self, now: datetime, **options: Any) -> WorkerReport:
        with unit_of_work(self.factory) as session:
            create_batches(session, settings=self.settings, now=now)
        return self.work(now, **options)

    def work(self, now: datetime, **options: Any) -> WorkerReport:
        report = run_worker(
            self.factory,
            store=self.store,
            key_store=self.key_store,
            settings=self.settings,
            now=now,
            holder=options.pop("holder", new_holder_token()),
            **options,
        )
        assert report.failures == [], report.failures
        return report

    def config(self, **options: Any) -> tuple[ExportConfig, SignatureInfo]:
        with unit_of_work(self.factory) as session:
            return make_config(session, self.key_store, **options)

    def keys(self, rows: list[dict[str, Any]]) -> list[bytes]:
        with unit_of_work(self.factory) as session:
            return add_keys(session, rows)

    def exports(self, root: str) -> dict[str, ParsedExport]:
        return read_exports(self.store, read_index(self.store, root))


@pytest.fixture
def env(engine: Engine, tmp_path: Path) -> Env:
    return Env(
        factory=make_session_factory(engine),
        store=FilesystemBlobStore(tmp_path / "exports"),
        key_store=sealed_key_store("keyserver"),
        settings=settings(),
        tmp_path=tmp_path,
    )


def _all_keys(exports: dict[str, ParsedExport], field: str = "keys") -> list[bytes]:
    return [key.key_data for parsed in exports.values() for key in getattr(parsed.contents, field)]


def _many(count: int, created_at: datetime, **options: Any) -> list[dict[str, Any]]:
    return [exposure_row(created_at=created_at, **options) for _ in range(count)]


# ---- every key exactly once --------------------------------------------------------------------


def test_every_key_lands_in_exactly_one_file_of_its_config(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    _, info = env.config(period=timedelta(hours=4))
    published: list[bytes] = []
    for hour in range(0, 30, 3):
        published += env.keys(_many(150, T0 + hour * HOUR))
    other_region = env.keys(_many(20, T0 + HOUR, regions=("LA",)))
    for hour in range(2, 40, 5):  # a moving clock: each run closes what became old enough
        env.batch_and_work(T0 + hour * HOUR)

    exports = env.exports("vn")
    keys = _all_keys(exports)
    counts = Counter(keys)
    assert set(published) <= set(counts)
    assert all(counts[key] == 1 for key in published)
    assert not set(other_region) & set(counts)
    assert len(keys) == len(published)  # 150 per window is over the minimum: no padding
    for name, parsed in exports.items():
        start, end, number = name.removeprefix("vn/").removesuffix(".zip").split("-")
        assert parsed.contents.start_timestamp == int(start)
        assert parsed.contents.end_timestamp == int(end)
        assert number == "00001"
        assert int(end) - int(start) == 4 * 3600
        assert parsed.contents.region == "VN"
        assert (parsed.contents.batch_num, parsed.contents.batch_size) == (1, 1)
        assert [key.key_data for key in parsed.contents.keys] == sorted(
            key.key_data for key in parsed.contents.keys
        )
        assert_verifies(parsed, [info.public_key_pem])


def test_exported_fields_follow_the_reference(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    env.config(period=timedelta(hours=4))
    start = interval_number(T0 - timedelta(days=2))
    rows = [
        exposure_row(
            created_at=T0 + HOUR,
            interval=start,
            interval_count=144,
            transmission_risk=0,
            report_type="",
            days_since_symptom_onset=None,
        ),
        exposure_row(
            created_at=T0 + HOUR,
            interval=start + 6,
            interval_count=100,
            transmission_risk=5,
            report_type="user-report",
            days_since_symptom_onset=-3,
        ),
        *(
            exposure_row(created_at=T0 + HOUR, report_type=report_type)
            for report_type in ("confirmed", "likely", "negative")
        ),
        *_many(100, T0 + HOUR),
    ]
    env.keys(rows)
    env.batch_and_work(T0 + 6 * HOUR)
    by_key = {key.key_data: key for key in _all_keys_objects(env.exports("vn"))}
    plain = by_key[rows[0]["key"]]
    assert plain.transmission_risk_level == 0
    assert plain.rolling_start_interval_number == start
    assert plain.rolling_period == 144
    assert plain.report_type is None
    assert plain.days_since_onset_of_symptoms is None
    shorter = by_key[rows[1]["key"]]
    assert (shorter.rolling_period, shorter.transmission_risk_level) == (100, 5)
    assert shorter.report_type == ReportType.SELF_REPORT
    assert shorter.days_since_onset_of_symptoms == -3
    assert [by_key[row["key"]].report_type for row in rows[2:5]] == [
        ReportType.CONFIRMED_TEST,
        ReportType.CONFIRMED_CLINICAL_DIAGNOSIS,
        ReportType.REVOKED,
    ]


def _all_keys_objects(exports: dict[str, ParsedExport]) -> list[Any]:
    return [key for parsed in exports.values() for key in parsed.contents.keys]


def test_region_and_traveler_filters(env: Env) -> None:
    # Every batch here has at least 100 keys: no padding (which copies regions, and so
    # would land in the other config's window too).
    env.settings = settings(export_min_records=100, export_padding_range=0)
    env.config(
        root="vn-la",
        input_regions=["VN", "LA"],
        exclude_regions=["KH"],
        include_travelers=True,
    )
    env.config(root="home", key_version="v2", only_non_travelers=True)
    at = T0 + HOUR
    vn = env.keys(_many(100, at, regions=("VN",)))
    la = env.keys(_many(50, at, regions=("LA",)))
    vn_kh = env.keys(_many(5, at, regions=("VN", "KH")))
    traveler_th = env.keys(_many(5, at, regions=("TH",), traveler=True))
    traveler_vn = env.keys(_many(5, at, regions=("VN",), traveler=True))
    env.keys(_many(5, at, regions=("TH",)))
    env.batch_and_work(T0 + 6 * HOUR)

    assert set(_all_keys(env.exports("vn-la"))) == set(vn + la + traveler_th + traveler_vn)
    # Several regions filter too (the reference would drop the filter here).
    assert set(_all_keys(env.exports("home"))) == set(vn + vn_kh)


# ---- embargo and revisions -------------------------------------------------------------------


def _publish_rows(now: datetime, keys: list[tuple[bytes, int, int]]) -> list[dict[str, Any]]:
    """Rows exactly as publish stores them (the embargo comes from the real transform)."""
    request = PublishRequest.model_validate(
        {
            "temporaryExposureKeys": [
                ExposureKey(
                    key=base64.b64encode(key).decode(),
                    rollingStartNumber=start,
                    rollingPeriod=count,
                    transmissionRisk=0,
                )
                for key, start, count in keys
            ],
            "healthAuthorityID": "gov.example.app",
        }
    )
    result = transform_publish(
        request,
        report_type="confirmed",
        certificate_onset=None,
        regions=["VN"],
        now=now,
        settings=settings(),
    )
    assert not result.errors
    return [
        exposure_row(
            key=validated.key,
            created_at=validated.created_at,
            interval=validated.interval_number,
            interval_count=validated.interval_count,
            transmission_risk=validated.transmission_risk,
            days_since_symptom_onset=validated.days_since_symptom_onset,
        )
        for validated in result.keys
    ]


def test_no_key_appears_before_its_embargo_ends(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    published_at = T0 + 10 * HOUR
    today = interval_number(T0)
    still_valid, ended = bytes(range(16)), bytes(range(1, 17))
    rows = _publish_rows(published_at, [(ended, today - 144, 144), (still_valid, today, 144)])
    env.keys(rows)
    key_end = T0 + 24 * HOUR  # the still-valid key is broadcast until midnight
    seen_at: dict[bytes, datetime] = {}
    clock = published_at
    while clock <= T0 + 40 * HOUR:
        env.batch_and_work(clock)
        for key in _all_keys(env.exports("vn")):
            seen_at.setdefault(key, clock)
        clock += HOUR
    assert seen_at[ended] == T0 + 14 * HOUR  # window [08:00, 12:00) closes at 14:00
    assert seen_at[still_valid] >= key_end + env.settings.export_min_window_age
    assert seen_at[still_valid] == T0 + 30 * HOUR  # created 01:00, window [00:00, 04:00)
    assert Counter(_all_keys(env.exports("vn")))[still_valid] == 1


def test_revised_keys_land_in_the_batch_of_their_revision(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    env.config(period=timedelta(hours=4))
    rows = _many(100, T0 + HOUR, report_type="likely", days_since_symptom_onset=2)
    revised_rows = rows[:10]
    env.keys(rows)
    env.batch_and_work(T0 + 6 * HOUR)  # [00:00, 04:00): the original keys
    with unit_of_work(env.factory) as session:
        session.execute(
            update(Exposure)
            .where(Exposure.key.in_([row["key"] for row in revised_rows]))
            .values(
                revised_report_type="confirmed",
                revised_at=T0 + 9 * HOUR,
                revised_days_since_symptom_onset=5,
                revised_transmission_risk=7,
            )
        )
    env.keys(_many(100, T0 + 9 * HOUR))
    env.batch_and_work(T0 + 14 * HOUR)

    exports = env.exports("vn")
    by_window = {parsed.contents.start_timestamp: parsed for parsed in exports.values()}
    first = by_window[int(T0.timestamp())]
    revision = by_window[int((T0 + 8 * HOUR).timestamp())]
    assert first.contents.revised_keys == ()
    assert sorted(key.key_data for key in revision.contents.revised_keys) == sorted(
        row["key"] for row in revised_rows
    )
    for key in revision.contents.revised_keys:
        assert key.report_type == ReportType.CONFIRMED_TEST
        assert key.days_since_onset_of_symptoms == 5
        assert key.transmission_risk_level == 2  # the original risk, as the reference does
    assert all(Counter(_all_keys(exports, "revised_keys"))[row["key"]] == 1 for row in revised_rows)


def test_a_revision_of_an_embargoed_key_waits_for_the_key(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    env.config(period=timedelta(hours=4))
    today = interval_number(T0)
    key = bytes(range(16))
    (row,) = _publish_rows(T0 + 10 * HOUR, [(key, today, 144)])
    row |= {
        "report_type": "likely",
        "revised_report_type": "confirmed",
        "revised_at": T0 + 11 * HOUR,  # revised while still embargoed (created_at 01:00)
    }
    env.keys([row, *_many(100, T0 + 11 * HOUR), *_many(100, T0 + 25 * HOUR)])
    for clock in (T0 + 16 * HOUR, T0 + 23 * HOUR):
        env.batch_and_work(clock)
        assert key not in _all_keys(env.exports("vn"), "revised_keys")
    env.batch_and_work(T0 + 30 * HOUR)
    exports = env.exports("vn")
    (holder,) = [p for p in exports.values() if key in _all_keys({"": p}, "revised_keys")]
    assert holder.contents.start_timestamp == int((T0 + 24 * HOUR).timestamp())
    assert key in _all_keys({"": holder})


# ---- padding -----------------------------------------------------------------------------------


def test_small_batches_are_padded_with_persisted_keys_copying_metadata(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    real_rows = [
        exposure_row(
            created_at=T0 + hour * HOUR,
            transmission_risk=risk,
            days_since_symptom_onset=risk - 3,
            regions=("VN", "LA") if risk % 2 else ("VN",),
            traveler=risk == 4,
        )
        for hour, risk in ((0, 1), (1, 2), (2, 3), (3, 4))
    ]
    real = set(env.keys(real_rows))
    report = env.batch_and_work(T0 + 6 * HOUR)

    (parsed,) = env.exports("vn").values()
    keys = parsed.contents.keys
    assert 1000 <= len(keys) <= 1100
    assert report.padding_keys == len(keys) - 4
    assert real <= {key.key_data for key in keys}
    with unit_of_work(env.factory) as session:
        padding = (
            session.execute(select(Exposure).where(Exposure.origin == ORIGIN_PADDING))
            .scalars()
            .all()
        )
        assert {row.key for row in padding} == {key.key_data for key in keys} - real
        assert {row.created_at for row in padding} == {T0 + 3 * HOUR}
        sources = Counter(
            (row.transmission_risk, row.days_since_symptom_onset, row.regions, row.traveler)
            for row in padding
        )
    real_metadata = {
        (row["transmission_risk"], row["days_since_symptom_onset"], row["regions"], row["traveler"])
        for row in real_rows
    }
    assert set(sources) == real_metadata
    assert max(sources.values()) - min(sources.values()) <= 1  # round-robin


def test_a_rerun_writes_the_same_keys_and_never_pads_twice(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    env.keys(_many(7, T0 + HOUR))
    env.batch_and_work(T0 + 6 * HOUR)
    (name,) = read_index(env.store, "vn")
    first_run = {key.key_data for key in env.exports("vn")[name].contents.keys}
    with unit_of_work(env.factory) as session:
        padding_before = session.scalars(
            select(Exposure.key).where(Exposure.origin == ORIGIN_PADDING)
        ).all()
        # Make the batch run again, as after a crash between padding and completion.
        session.execute(update(ExportBatch).values(status=STATUS_OPEN, completed_at=None))
        session.execute(delete(ExportFile))
    report = env.work(T0 + 7 * HOUR)
    assert report.padding_keys == 0
    assert report.batches_completed == 1
    assert {key.key_data for key in env.exports("vn")[name].contents.keys} == first_run
    with unit_of_work(env.factory) as session:
        padding_after = session.scalars(
            select(Exposure.key).where(Exposure.origin == ORIGIN_PADDING)
        ).all()
    assert sorted(padding_after) == sorted(padding_before)


def test_empty_batches_write_no_file_but_complete(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    report = env.batch_and_work(T0 + 10 * HOUR)
    assert report.batches_completed == 2
    assert report.empty_batches == 2
    assert report.files_written == 0
    assert env.store.list("vn/") == ["vn/index.txt"]
    assert read_index(env.store, "vn") == []
    with unit_of_work(env.factory) as session:
        statuses = session.scalars(select(ExportBatch.status)).all()
        assert statuses == [STATUS_COMPLETE, STATUS_COMPLETE]
        assert session.scalars(select(Exposure.key)).all() == []  # nothing to pad from


# ---- splitting, index, signatures ---------------------------------------------------------------


def test_large_batches_split_at_max_records_with_end_timestamp_offsets(env: Env) -> None:
    env.config(period=timedelta(hours=4), max_records=400)
    keys = env.keys(_many(1000, T0 + HOUR))
    revised = env.keys(
        _many(
            150,
            T0 - 10 * HOUR,
            revised_at=T0 + 2 * HOUR,
            revised_report_type="confirmed",
            report_type="likely",
        )
    )
    report = env.batch_and_work(T0 + 6 * HOUR)
    assert report.files_written == 3

    names = read_index(env.store, "vn")
    start, end = int(T0.timestamp()), int((T0 + 4 * HOUR).timestamp())
    assert names == [f"vn/{start}-{end}-{number:05d}.zip" for number in (1, 2, 3)]
    exports = env.exports("vn")
    contents = [exports[name].contents for name in names]
    assert [len(c.keys) for c in contents] == [400, 400, 200]
    assert [len(c.revised_keys) for c in contents] == [0, 0, 150]
    assert [c.end_timestamp for c in contents] == [end + 1, end + 2, end + 3]
    assert all(c.start_timestamp == start for c in contents)
    in_order = [key.key_data for c in contents for key in c.keys]
    assert in_order == sorted(keys)  # sorted across files too: each file is a key range
    assert sorted(key.key_data for key in contents[2].revised_keys) == sorted(revised)
    with unit_of_work(env.factory) as session:
        rows = session.scalars(select(ExportFile).order_by(ExportFile.filename)).all()
        assert [(r.batch_num, r.batch_size, r.key_count) for r in rows] == [
            (1, 3, 400),
            (2, 3, 400),
            (3, 3, 350),
        ]


def test_the_settings_cap_the_config_max_records(env: Env) -> None:
    env.settings = settings(export_file_max_records=1000)
    env.config(period=timedelta(hours=4), max_records=500_000)
    env.keys(_many(1500, T0 + HOUR))
    report = env.batch_and_work(T0 + 6 * HOUR)
    assert report.files_written == 2


def test_index_lists_recent_complete_files_sorted_without_trailing_newline(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    env.config(period=timedelta(days=1))
    for day in range(20):
        env.keys(_many(100, T0 + timedelta(days=day, hours=3)))
    for day in range(1, 21):
        env.batch_and_work(T0 + timedelta(days=day, hours=2))
    blob = env.store.get("vn/index.txt")
    assert blob is not None
    assert blob.content_type == "text/plain"
    assert not blob.data.endswith(b"\n")
    names = blob.data.decode().split("\n")
    assert names == sorted(set(names))
    now = T0 + timedelta(days=20, hours=2)
    expected = [
        export_filename("vn", T0 + timedelta(days=day), T0 + timedelta(days=day + 1), 1)
        for day in range(20)
        if T0 + timedelta(days=day) >= now - env.settings.export_retention
    ]
    assert names == expected
    assert len(names) == 13  # batches starting on days 7 to 19
    with unit_of_work(env.factory) as session:
        assert len(session.scalars(select(ExportFile.filename)).all()) == 20


def test_files_carry_every_valid_signature_newest_first(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    _, old = env.config(period=timedelta(hours=4))
    with unit_of_work(env.factory) as session:
        new = rotate_signature_info(
            session,
            env.key_store,
            key_id="452",
            new_key_version="v2",
            old_valid_until=T0 + 12 * HOUR,
            now=T0,
        )
    env.keys(_many(100, T0 + HOUR))
    env.keys(_many(100, T0 + 13 * HOUR))
    env.batch_and_work(T0 + 6 * HOUR)
    env.batch_and_work(T0 + 18 * HOUR)
    exports = env.exports("vn")
    by_window = {parsed.contents.start_timestamp: parsed for parsed in exports.values()}
    both = by_window[int(T0.timestamp())]
    assert [
        (i.verification_key_id, i.verification_key_version) for i in both.contents.signature_infos
    ] == [
        ("452", "v2"),
        ("452", "v1"),
    ]
    assert_verifies(both, [new.public_key_pem, old.public_key_pem])
    only_new = by_window[int((T0 + 12 * HOUR).timestamp())]
    assert [i.verification_key_version for i in only_new.contents.signature_infos] == ["v2"]
    assert_verifies(only_new, [new.public_key_pem])


def test_files_verify_with_the_exposure_cli(env: Env) -> None:
    env.settings = settings(export_min_records=100, export_padding_range=0)
    _, info = env.config(period=timedelta(hours=4))
    with unit_of_work(env.factory) as session:
        config = session.scalars(select(ExportConfig)).one()
        second = add_signature_info(session, env.key_store, key_id="310", key_version="v7", now=T0)
        attach_signature_info(session, config, second)
    env.keys(_many(120, T0 + HOUR))
    env.batch_and_work(T0 + 6 * HOUR)
    (name,) = read_index(env.store, "vn")
    keys = write_public_keys(env.tmp_path, [second.public_key_pem, info.public_key_pem])
    command = [str(EXPOSURE_CLI), "export", "inspect", str(env.store.path(name)), "--json"]
    for key in keys:
        command += ["--public-key", str(key)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verification"] == "passed"
    # A key that did not sign fails the check.
    with unit_of_work(env.factory) as session:
        unrelated = add_signature_info(
            session, env.key_store, key_id="999", key_version="v1", now=T0
        )
    (env.tmp_path / "unrelated").mkdir()
    (wrong,) = write_public_keys(env.tmp_path / "unrelated", [unrelated.public_key_pem])
    failed = subprocess.run(
        [*command[:5], "--public-key", str(wrong)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 1


# ---- leases and failures --------------------------------------------------------------------


def test_a_leased_batch_is_left_alone_until_its_lease_expires(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    env.keys(_many(5, T0 + HOUR))
    now = T0 + 6 * HOUR
    with unit_of_work(env.factory) as session:
        create_batches(session, settings=env.settings, now=now)
        session.execute(
            update(ExportBatch).values(
                status=STATUS_PENDING,
                lease_holder="someone-else",
                lease_expires_at=now + env.settings.export_worker_lease,
            )
        )
    assert env.work(now).batches_completed == 0
    assert (
        env.work(now + env.settings.export_worker_lease - timedelta(seconds=1)).batches_completed
        == 0
    )
    report = env.work(now + env.settings.export_worker_lease)
    assert report.batches_completed == 1


def test_concurrent_leases_of_one_batch_have_one_winner(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    now = T0 + 6 * HOUR
    with unit_of_work(env.factory) as session:
        create_batches(session, settings=env.settings, now=now)
    barrier = threading.Barrier(6)
    winners: list[int | None] = []
    errors: list[BaseException] = []

    def lease(holder: str) -> None:
        try:
            barrier.wait()
            winners.append(
                _lease_batch(
                    env.factory,
                    holder=holder,
                    now=now,
                    lease=env.settings.export_worker_lease,
                    skip=set(),
                    report=WorkerReport(),
                    random_below_source=lambda _bound: 0,
                )
            )
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=lease, args=(f"worker-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([winner for winner in winners if winner is not None]) == 1
    with unit_of_work(env.factory) as session:
        batch = session.scalars(select(ExportBatch)).one()
        assert batch.status == STATUS_PENDING
        assert batch.lease_expires_at == now + env.settings.export_worker_lease


def test_batches_that_have_not_ended_are_not_leased(env: Env) -> None:
    env.config(period=timedelta(hours=4))
    with unit_of_work(env.factory) as session:
        config = session.scalars(select(ExportConfig)).one()
        session.add(
            ExportBatch(
                config_id=config.id,
                start_at=T0,
                end_at=T0 + 4 * HOUR,
                status=STATUS_OPEN,
            )
        )
    assert env.work(T0 + 4 * HOUR - timedelta(seconds=1)).batches_completed == 0
    assert env.work(T0 + 4 * HOUR).batches_completed == 1


def test_a_config_without_a_valid_signing_key_keeps_its_batch_open(env: Env) -> None:
    _, info = env.config(period=timedelta(hours=4))
    with unit_of_work(env.factory) as session:
        session.execute(
            update(SignatureInfo).where(SignatureInfo.id == info.id).values(valid_until=T0)
        )
    env.keys(_many(5, T0 + HOUR))
    with unit_of_work(env.factory) as session:
        create_batches(session, settings=env.settings, now=T0 + 6 * HOUR)
    report = run_worker(
        env.factory,
        store=env.store,
        key_store=env.key_store,
        settings=env.settings,
        now=T0 + 6 * HOUR,
        holder="worker-1",
    )
    assert [failure.code for failure in report.failures] == ["no_signing_key"]
    assert report.batches_completed == 0
    with unit_of_work(env.factory) as session:
        batch = session.scalars(select(ExportBatch)).one()
        assert (batch.status, batch.lease_holder) == (STATUS_OPEN, None)
    assert env.store.list("vn/") == []


def test_a_failure_while_streaming_keys_releases_the_batch(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.config(period=timedelta(hours=4))
    env.keys(_many(1200, T0 + HOUR))
    monkeypatch.setattr(worker_module, "_FETCH_ROWS", 100)
    original = KeyRecordEncoder.records
    calls = 0

    def failing_records(self: KeyRecordEncoder, rows: Any) -> list[bytes]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk on fire")
        return original(self, rows)

    monkeypatch.setattr(KeyRecordEncoder, "records", failing_records)
    with unit_of_work(env.factory) as session:
        create_batches(session, settings=env.settings, now=T0 + 6 * HOUR)
    failed = run_worker(
        env.factory,
        store=env.store,
        key_store=env.key_store,
        settings=env.settings,
        now=T0 + 6 * HOUR,
        holder="worker-1",
    )
    assert [failure.code for failure in failed.failures] == ["error"]
    assert "disk on fire" in failed.failures[0].detail
    monkeypatch.setattr(KeyRecordEncoder, "records", original)
    # The interrupted query left every pooled connection usable, and the batch open.
    report = env.work(T0 + 6 * HOUR)
    assert report.batches_completed == 1
    assert report.keys_exported == 1200


def test_max_batches_limits_one_run(env: Env) -> None:
    env.config(period=timedelta(hours=1))
    report = env.batch_and_work(T0 + 12 * HOUR, max_batches=3)
    assert report.batches_completed == 3
    assert env.work(T0 + 12 * HOUR).batches_completed == 7


def test_steps_are_reported_in_order(env: Env) -> None:
    env.config(period=timedelta(hours=4), max_records=600)
    env.keys(_many(3, T0 + HOUR))
    steps: list[str] = []
    env.batch_and_work(T0 + 6 * HOUR, step_hook=steps.append)
    assert steps == [
        "padded",
        "file_written",
        "file_written",
        "files_written",
        "index_written",
        "completed",
    ]


def test_worker_arguments_are_checked(env: Env) -> None:
    with pytest.raises(ValueError, match="aware"):
        env.work(datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="holder"):
        env.work(T0, holder="")
