"""The import run over real HTTP: real interop files imported and re-exported, refusals
recorded with nothing stored, tampering, de-duplication, revisions, conditional index."""

from __future__ import annotations

import io
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from crypto.signing import load_public_key
from exposure.db import SessionFactory, make_session_factory, unit_of_work
from exposure.db.lease import new_holder_token
from exposure.export import ExportKey, ReportType, read_export_file, verify_signatures
from exposure.keys import ServiceKeyStore
from exposure.tek import interval_number, truncate
from keyserver.export.batcher import create_batches
from keyserver.export.blobstore import FilesystemBlobStore
from keyserver.export.worker import run_worker
from keyserver.importer import run as run_module
from keyserver.importer.run import ImportReport
from keyserver.importer.sources import SourceKey, add_import_source
from keyserver.models import Exposure, ImportSource
from keyserver.schedule import record_import_metrics
from keyserver.settings import KeyserverSettings
from tests.interop import INTEROP_DIR, interop_path
from tests.keys import sealed_key_store
from tests.unit.keyserver.export.support import exposure_row, make_config, read_exports, read_index
from tests.unit.keyserver.importer.support import (
    Peer,
    PeerSigner,
    add_source,
    day_keys,
    fetcher,
    import_now,
    records,
    serve_peer,
    stored_count,
)

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Env:
    factory: SessionFactory
    settings: KeyserverSettings
    store: FilesystemBlobStore
    key_store: ServiceKeyStore
    peer: Peer

    def run(self, now: datetime = NOW, **options: object) -> ImportReport:
        return import_now(self.factory, self.settings, now, **options)

    def stored(self) -> dict[bytes, Exposure]:
        with unit_of_work(self.factory) as session:
            rows = session.scalars(select(Exposure)).all()
            session.expunge_all()
            return {row.key: row for row in rows}

    def export_keys(self, root: str, now: datetime) -> list[bytes]:
        """Close the windows up to ``now``, write their files, return every key they hold."""
        with unit_of_work(self.factory) as session:
            create_batches(session, settings=self.settings, now=now)
        report = run_worker(
            self.factory,
            store=self.store,
            key_store=self.key_store,
            settings=self.settings,
            now=now,
            holder=new_holder_token(),
        )
        assert report.failures == []
        exports = read_exports(self.store, read_index(self.store, root))
        return [key.key_data for parsed in exports.values() for key in parsed.contents.keys]


@pytest.fixture
def env(engine: Engine, tmp_path: Path) -> Iterator[Env]:
    with serve_peer(tmp_path / "peer") as peer:
        yield Env(
            factory=make_session_factory(engine),
            settings=KeyserverSettings(export_min_records=100, export_padding_range=0),
            store=FilesystemBlobStore(tmp_path / "exports"),
            key_store=sealed_key_store("keyserver"),
            peer=peer,
        )


# ---- real files of deployed systems --------------------------------------------------------


def _interop_files() -> list[Path]:
    interop_path("exports/expected.json")  # skips (fails in CI) without ../shared/interop
    return sorted(
        path for path in (INTEROP_DIR / "exports").iterdir() if path.suffix in (".zip", ".bin")
    )


def _verifying_key(path: Path) -> tuple[Path, str, str] | None:
    """The interop key that verifies ``path``, with the id and version the file names."""
    parsed = read_export_file(path)
    for key_path in sorted((INTEROP_DIR / "keys").glob("*.pem")):
        checks = verify_signatures(parsed, [load_public_key(key_path.read_bytes())])
        for check in checks:
            if check.verified:
                info = check.signature.signature_info
                key_id = (info.verification_key_id if info else None) or "none"
                version = (info.verification_key_version if info else None) or "none"
                return key_path, key_id, version
    return None


def test_every_verifying_interop_file_is_imported_and_re_exported(env: Env) -> None:
    imported_files = 0
    everything_exported: Counter[bytes] = Counter()
    for number, path in enumerate(_interop_files()):
        found = _verifying_key(path)
        parsed = read_export_file(path)
        if found is None or parsed.key_length_problems:
            continue  # the refusal tests below cover these
        key_path, key_id, version = found
        assert parsed.contents.end_timestamp is not None
        # Some samples end before their keys do: import once the file and its keys ended.
        ends = [
            (key.rolling_start_interval_number + key.rolling_period) * 600
            for key in parsed.contents.keys
        ]
        ended = max(parsed.contents.end_timestamp, *ends)
        now = datetime.fromtimestamp(ended, UTC) + 2 * HOUR
        name = f"v1/{number:02d}-{path.name}"
        env.peer.publish(name, path.read_bytes())
        env.peer.index([name], f"{number}/index.txt")
        source = f"interop-{number}"
        add_source(
            env.factory,
            env.peer,
            [SourceKey(key_id, version, key_path.read_text())],
            now=now,
            name=source,
            index=f"{number}/index.txt",
        )
        root = f"reexport-{number}"
        region = (parsed.contents.region or "US").upper()
        with unit_of_work(env.factory) as session:
            source_id = session.scalars(
                select(ImportSource.id).where(ImportSource.name == source)
            ).one()
            make_config(
                session,
                env.key_store,
                root=root,
                period=HOUR,
                valid_from=truncate(now, HOUR) - HOUR,
                valid_until=now + 6 * HOUR,
                key_id=f"k{number}",
                output_region=region,
                include_imported=True,
                import_source_ids=[source_id],
            )

        before = set(env.stored())

        report = env.run(now)

        [run] = [run for run in report.sources if run.source == source]
        assert run.files_imported == 1, run
        oldest_end = interval_number(now - env.settings.max_interval_age)
        young = {
            key.key_data
            for key in parsed.contents.keys
            if key.rolling_start_interval_number + key.rolling_period >= oldest_end
        }
        assert young, f"{path.name}: no key young enough to import"
        # Some samples repeat keys of earlier ones: those are never stored twice.
        expected = young - before
        assert (run.keys_inserted, run.keys_duplicate) == (len(expected), len(young & before))
        assert run.keys_dropped == len(parsed.contents.keys) - len(young)
        stored = env.stored()
        assert young <= set(stored)
        assert all(stored[key].import_source_id == source_id for key in expected)
        exported = Counter(env.export_keys(root, now + 6 * HOUR))
        assert expected <= set(exported), f"{path.name}: imported keys missing from the export"
        assert all(exported[key] == 1 for key in expected)
        everything_exported.update(exported)
        imported_files += 1
    # Each imported key left once, whichever series took it (padding keys are the series'
    # own, and may be selected by series whose windows overlap).
    imported = [key for key, row in env.stored().items() if row.origin == "import"]
    assert all(everything_exported[key] == 1 for key in imported)
    assert imported_files >= 5  # the README lists five such files


def test_imported_keys_stay_out_of_configs_that_do_not_include_them(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 3)
    env.peer.publish("v1/a.zip", peer.export(keys, NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    own = exposure_row(created_at=truncate(NOW, HOUR), regions=("US",))
    with unit_of_work(env.factory) as session:
        session.add(Exposure(**own))
        make_config(
            session,
            env.key_store,
            root="own",
            period=HOUR,
            valid_from=NOW - HOUR,
            output_region="US",
        )
    env.run()

    exported = env.export_keys("own", NOW + 6 * HOUR)
    assert own["key"] in exported
    assert not {key.key_data for key in keys} & set(exported)


@pytest.mark.parametrize(
    ("file", "key", "named", "reason"),
    [
        # Signed with a development key never published; its own production key is named.
        (
            "corona-warn-app_cwa-app-android__test_resources__keys.zip",
            "corona-warn-app_cwa-app-android__262-v1_prod.pem",
            ("262", "v1"),
            "bad_signature",
        ),
        # Signed, but by a key the source does not have.
        (
            "google_exposure-notifications-server__examples_export__testExport-2-records-1-of-1.zip",
            "google_exposure-notifications-internals__310-v1.pem",
            ("310", "v1"),
            "unknown_key",
        ),
        # A bare export.bin, and a zip whose export.sig is empty.
        (
            "google_exposure-notifications-internals__app_raw__export.bin",
            "google_exposure-notifications-internals__310-v1.pem",
            ("310", "v1"),
            "unsigned",
        ),
        (
            "google_exposure-notifications-server__1605818700-1605819000-0001-ff23e2-1cc99f7c.zip",
            "google_exposure-notifications-internals__310-v1.pem",
            ("310", "v1"),
            "unsigned",
        ),
        # Verifies, but its one key is 53 bytes long.
        (
            "minvws_nl-covid19-notification-app-backend__tests_unit_EksEngine.Tests_Resources__ProtobufHeaderTestFile.zip",
            "minvws_nl-covid19-notification-app-backend__TestECDSA_p12_public.pem",
            ("204", "v1"),
            "bad_key_length",
        ),
    ],
)
def test_refused_files_are_recorded_with_their_reason_and_nothing_is_stored(
    env: Env, file: str, key: str, named: tuple[str, str], reason: str
) -> None:
    path = interop_path(f"exports/{file}")
    key_path = interop_path(f"keys/{key}")
    parsed = read_export_file(path)
    end = parsed.contents.end_timestamp or 1_600_000_000
    now = datetime.fromtimestamp(end, UTC) + 2 * HOUR
    env.peer.publish("v1/file.zip", path.read_bytes())
    env.peer.index(["v1/file.zip"])
    add_source(env.factory, env.peer, [SourceKey(*named, key_path.read_text())], now=now)

    report = env.run(now)

    assert report.sources[0].files_refused == {reason: 1}
    assert records(env.factory) == {"v1/file.zip": ("refused", reason)}
    assert stored_count(env.factory) == 0
    # Refused for good: the next run does not fetch it again.
    fetched = len(env.peer.state.requests)
    env.run(now)
    assert len(env.peer.state.requests) == fetched + 1  # the index only


# ---- tampering -------------------------------------------------------------------------------


def _tampered(archive: bytes, key: bytes) -> bytes:
    """The same archive with one byte of ``key`` changed after it was signed."""
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    export_bin = bytearray(members["export.bin"])
    at = export_bin.index(key)
    export_bin[at] ^= 0x01
    members["export.bin"] = bytes(export_bin)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)
    return out.getvalue()


def test_a_file_changed_after_signing_is_refused(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 5)
    env.peer.publish("v1/a.zip", _tampered(peer.export(keys, NOW), keys[2].key_data))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    env.run()

    assert records(env.factory) == {"v1/a.zip": ("refused", "bad_signature")}
    assert stored_count(env.factory) == 0


def test_a_file_listed_twice_is_imported_once(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 7)
    env.peer.publish("v1/a.zip", peer.export(keys, NOW))
    env.peer.index(["v1/a.zip", "v1/a.zip", "../../etc/passwd", "/v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    [run] = env.run().sources

    assert (run.files_imported, run.keys_inserted, run.duplicate_listings) == (1, 7, 1)
    assert run.bad_names == 2
    assert set(env.stored()) == {key.key_data for key in keys}
    assert env.peer.state.requests.count("/v1/a.zip") == 1


def test_an_index_that_goes_back_is_not_used(env: Env) -> None:
    peer = PeerSigner()
    env.peer.publish("v1/1000-2000.zip", peer.export(day_keys(NOW, 2), NOW))
    env.peer.publish("v1/2000-3000.zip", peer.export(day_keys(NOW, 2), NOW))
    env.peer.publish("v1/0500-1000.zip", peer.export(day_keys(NOW, 2), NOW))
    env.peer.index(["v1/2000-3000.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    env.run()
    # A stale (or replayed) index: the newest file is gone and nothing newer is listed.
    env.peer.index(["v1/0500-1000.zip", "v1/1000-2000.zip"])

    [run] = env.run(NOW + HOUR).sources

    assert run.error == "index_went_back"
    assert set(records(env.factory)) == {"v1/2000-3000.zip"}
    assert stored_count(env.factory) == 2
    with unit_of_work(env.factory) as session:
        assert session.scalars(select(ImportSource.last_error)).one() == "index_went_back"
    # A quiet peer whose files all aged out lists nothing: not an index going back.
    env.peer.index([])
    [quiet] = env.run(NOW + 2 * HOUR).sources
    assert quiet.error is None


def test_an_oversized_file_is_refused_without_being_read_whole(env: Env) -> None:
    env.settings = KeyserverSettings(import_max_file_bytes=2048)
    peer = PeerSigner()
    env.peer.publish("v1/big.zip", peer.export(day_keys(NOW, 200), NOW))
    env.peer.publish("v1/small.zip", peer.export(day_keys(NOW, 3), NOW))
    env.peer.index(["v1/big.zip", "v1/small.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    env.run()

    assert records(env.factory) == {
        "v1/big.zip": ("refused", "too_large"),
        "v1/small.zip": ("imported", None),
    }
    assert stored_count(env.factory) == 3


def test_a_slow_peer_times_out_records_nothing_and_is_retried(env: Env) -> None:
    peer = PeerSigner()
    env.peer.publish("v1/a.zip", peer.export(day_keys(NOW, 4), NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    env.peer.state.delay_seconds = 2.0

    [slow] = env.run(fetch=fetcher(timeout=0.5, retries=1)).sources

    assert slow.error == "timeout"
    assert records(env.factory) == {}
    assert stored_count(env.factory) == 0
    assert len(env.peer.state.requests) == 2  # one retry
    env.peer.state.delay_seconds = 0.0
    [fast] = env.run().sources
    assert (fast.error, fast.files_imported, fast.keys_inserted) == (None, 1, 4)


# ---- de-duplication and revisions ------------------------------------------------------------


def test_keys_already_stored_are_never_stored_twice_and_local_keys_are_never_revised(
    env: Env,
) -> None:
    peer = PeerSigner()
    own = exposure_row(created_at=truncate(NOW, HOUR), regions=("US",), report_type="likely")
    with unit_of_work(env.factory) as session:
        session.add(Exposure(**own))
    shared = ExportKey(
        key_data=own["key"],
        rolling_start_interval_number=own["interval_number"],
        rolling_period=own["interval_count"],
        report_type=ReportType.CONFIRMED_TEST,
    )
    fresh = day_keys(NOW, 3)
    env.peer.publish("v1/a.zip", peer.export([shared, *fresh], NOW))
    env.peer.publish("v1/b.zip", peer.export(fresh, NOW))
    env.peer.index(["v1/a.zip", "v1/b.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    [run] = env.run().sources

    assert (run.keys_inserted, run.keys_duplicate, run.keys_revised) == (3, 4, 0)
    stored = env.stored()
    assert len(stored) == 4
    local = stored[own["key"]]
    assert (local.origin, local.report_type, local.revised_report_type) == (
        "publish",
        "likely",
        None,
    )


def test_a_peer_revises_its_own_keys(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 2, report_type=ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    env.peer.publish("v1/a.zip", peer.export(keys, NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    env.run()
    revised = [
        ExportKey(
            key_data=keys[0].key_data,
            rolling_start_interval_number=keys[0].rolling_start_interval_number,
            rolling_period=144,
            report_type=ReportType.CONFIRMED_TEST,
        )
    ]
    env.peer.publish("v1/b.zip", peer.export([], NOW + HOUR, revised=revised))
    env.peer.index(["v1/a.zip", "v1/b.zip"])

    [run] = env.run(NOW + HOUR).sources

    assert run.keys_revised == 1
    stored = env.stored()
    assert stored[keys[0].key_data].revised_report_type == "confirmed"
    assert stored[keys[1].key_data].revised_report_type is None
    assert stored[keys[0].key_data].report_type == "likely"


def test_another_source_cannot_revise_a_peers_key(env: Env) -> None:
    first, second = PeerSigner(), PeerSigner(key_id="888")
    keys = day_keys(NOW, 1, report_type=ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    env.peer.publish("v1/a.zip", first.export(keys, NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [first.source_key()], now=NOW, name="first")
    env.run()
    with serve_peer(env.peer.root.parent / "second") as other:
        revised = [
            ExportKey(
                key_data=keys[0].key_data,
                rolling_start_interval_number=keys[0].rolling_start_interval_number,
                rolling_period=144,
                report_type=ReportType.CONFIRMED_TEST,
            )
        ]
        other.publish("v1/b.zip", second.export([], NOW, revised=revised))
        other.index(["v1/b.zip"])
        add_source(env.factory, other, [second.source_key()], now=NOW, name="second")
        runs = {run.source: run for run in env.run(NOW + HOUR).sources}

    assert (runs["second"].keys_revised, runs["second"].keys_duplicate) == (0, 1)
    assert env.stored()[keys[0].key_data].revised_report_type is None


# ---- a file streams to the database a chunk at a time ----------------------------------------


@pytest.fixture
def two_key_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of a few keys span several chunks, as files of 500,000 keys do."""
    monkeypatch.setattr(run_module, "_CHUNK_KEYS", 2)


@pytest.mark.usefixtures("two_key_chunks")
def test_a_malformed_key_in_a_later_chunk_refuses_the_whole_file(env: Env) -> None:
    peer = PeerSigner()
    malformed = day_keys(NOW, 1, transmission_risk_level=99)
    env.peer.publish("v1/a.zip", peer.export([*day_keys(NOW, 5), *malformed], NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    [run] = env.run().sources

    assert run.files_refused == {"invalid_key": 1}
    assert (run.files_imported, run.keys_inserted) == (0, 0)
    assert records(env.factory) == {"v1/a.zip": ("refused", "invalid_key")}
    assert stored_count(env.factory) == 0


@pytest.mark.usefixtures("two_key_chunks")
def test_the_last_copy_of_a_key_counts_within_and_across_chunks(env: Env) -> None:
    peer = PeerSigner()
    likely = day_keys(NOW, 4, report_type=ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    confirmed_again, revoked = (
        ExportKey(
            key_data=key.key_data,
            rolling_start_interval_number=key.rolling_start_interval_number,
            rolling_period=key.rolling_period,
            report_type=report_type,
        )
        for key, report_type in (
            (likely[0], ReportType.CONFIRMED_TEST),
            (likely[1], ReportType.REVOKED),
        )
    )
    # Chunks: [0, 1], [2, 2 again], [3], then the revised keys [0 confirmed, 1 revoked].
    keys = [likely[0], likely[1], likely[2], likely[2], likely[3]]
    env.peer.publish("v1/a.zip", peer.export(keys, NOW, revised=[confirmed_again, revoked]))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    [run] = env.run().sources

    # Three copies were replaced by later ones; a revoked key is never inserted.
    assert (run.keys_inserted, run.keys_duplicate, run.keys_revised) == (3, 3, 0)
    stored = env.stored()
    assert set(stored) == {likely[0].key_data, likely[2].key_data, likely[3].key_data}
    assert stored[likely[0].key_data].report_type == "confirmed"
    assert stored[likely[2].key_data].report_type == "likely"


def test_imported_keys_are_found_by_their_window_like_published_ones(env: Env) -> None:
    # An export selects keys by comparing created_at with its window's bounds: an imported
    # key stored in another form of the same instant (SQLite keeps timestamps as text)
    # would fall into the window before its own.
    peer = PeerSigner()
    keys = day_keys(NOW, 3)
    env.peer.publish("v1/a.zip", peer.export(keys, NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    env.run()
    window_start = truncate(NOW, env.settings.created_at_window)

    with unit_of_work(env.factory) as session:
        in_window = session.scalars(
            select(Exposure.key).where(
                Exposure.created_at >= window_start,
                Exposure.created_at < window_start + env.settings.created_at_window,
            )
        ).all()

    assert sorted(in_window) == sorted(key.key_data for key in keys)


def test_the_source_defaults_apply_where_the_file_says_nothing(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 2)  # no report type, no risk
    env.peer.publish("v1/a.zip", peer.export(keys, NOW, region=None))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW, region="VN")

    env.run()

    for row in env.stored().values():
        assert (row.regions, row.report_type, row.transmission_risk) == (",VN,", "confirmed", 2)
        assert row.origin == "import"


def test_still_valid_keys_are_embargoed_like_published_ones(env: Env) -> None:
    peer = PeerSigner()
    today = interval_number(truncate(NOW, timedelta(days=1)))
    current = ExportKey(
        key_data=b"\x01" * 16, rolling_start_interval_number=today, rolling_period=144
    )
    env.peer.publish("v1/a.zip", peer.export([current], NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)

    env.run()

    created = env.stored()[b"\x01" * 16].created_at
    assert created > NOW  # held back until the key is no longer broadcast


def test_an_unchanged_index_is_answered_not_modified(env: Env) -> None:
    peer = PeerSigner()
    env.peer.publish("v1/a.zip", peer.export(day_keys(NOW, 2), NOW))
    env.peer.index(["v1/a.zip"])
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    env.run()
    with unit_of_work(env.factory) as session:
        assert session.scalars(select(ImportSource.index_last_modified)).one() is not None
    requests = len(env.peer.state.requests)

    [run] = env.run(NOW + HOUR).sources

    assert run.error is None
    assert env.peer.state.requests[requests:] == ["/v1/index.txt"]
    assert run.last_success_at == NOW + HOUR


def test_metrics_count_files_refusals_keys_and_the_last_success_per_source(env: Env) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 3)
    env.peer.publish("v1/a.zip", peer.export(keys, NOW))
    env.peer.publish("v1/b.zip", peer.export(keys, NOW))  # the same keys again
    env.peer.publish("v1/c.zip", PeerSigner(key_id="777").export(day_keys(NOW, 1), NOW))
    env.peer.index(["v1/a.zip", "v1/b.zip", "v1/c.zip"])
    name = f"metrics-{env.factory.kw['bind'].dialect.name}"
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW, name=name)

    def sample(metric: str, **labels: str) -> float:
        value = REGISTRY.get_sample_value(metric, {"source": name, **labels})
        return value or 0.0

    record_import_metrics(env.run())

    prefix = "exposure_keyserver_import"
    assert sample(f"{prefix}_files_total", result="imported") == 2
    assert sample(f"{prefix}_files_total", result="refused") == 1
    assert sample(f"{prefix}_files_refused_total", reason="unknown_key") == 1
    assert sample(f"{prefix}_keys_total", outcome="inserted") == 3
    assert sample(f"{prefix}_keys_total", outcome="duplicate") == 3
    assert sample(f"{prefix}_last_success_timestamp_seconds") == NOW.timestamp()


def test_two_importers_racing_store_every_key_and_record_every_file_once(env: Env) -> None:
    peer = PeerSigner()
    files = {f"v1/{number}.zip": day_keys(NOW, 200) for number in range(4)}
    for name, keys in files.items():
        env.peer.publish(name, peer.export(keys, NOW))
    env.peer.index(sorted(files))
    add_source(env.factory, env.peer, [peer.source_key()], now=NOW)
    start = threading.Barrier(2)
    reports: list[ImportReport] = []

    def race() -> None:
        start.wait()
        reports.append(env.run())

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(reports) == 2
    assert sum(report.sources[0].files_imported for report in reports) == len(files)
    assert set(records(env.factory)) == set(files)
    with unit_of_work(env.factory) as session:
        stored = list(session.scalars(select(Exposure.key)))
    assert sorted(stored) == sorted(key.key_data for keys in files.values() for key in keys)


def test_a_disk_handed_over_offline_is_imported_like_a_url(env: Env, tmp_path: Path) -> None:
    peer = PeerSigner()
    keys = day_keys(NOW, 5)
    disk = tmp_path / "disk"
    (disk / "v1").mkdir(parents=True)
    (disk / "v1" / "a.zip").write_bytes(peer.export(keys, NOW))
    (disk / "v1" / "index.txt").write_text("v1/a.zip\nv1/missing-later.zip")
    with unit_of_work(env.factory) as session:
        add_import_source(
            session,
            name="disk",
            index_location=str(disk / "v1" / "index.txt"),
            export_root=str(disk),
            keys=[peer.source_key()],
            region="VN",
            valid_from=NOW - HOUR,
            now=NOW,
        )

    [run] = env.run().sources

    # The listed file that is not on the disk stops the run after the one that is.
    assert (run.files_imported, run.keys_inserted, run.error) == (1, 5, "not_found")
    assert set(env.stored()) == {key.key_data for key in keys}
