"""How fast a peer's signed export is imported, against this server's own export of it.

``run_import_benchmark(keys=1_000_000)`` seeds ``keys`` random keys into one export window
of a first database and exports them with the export worker (the peer's side: timed, in a
fresh process). A second, empty database then imports those files end to end with the
import run, from the export directory as a local source (an offline hand-over, so no HTTP
server's speed is measured): read the index, read each file, verify its signature, check
and embargo every key, store them with their provenance and the file's record. The import
is timed in a fresh process too, with its peak resident memory; the stored keys are then
counted, so a fast but lossy import fails the run. On PostgreSQL, the database's own write
of the same rows into an empty twin of the key table is timed last: the floor under any
import on this machine.

Example::

    result = run_import_benchmark(keys=100_000, database=Database.SQLITE)
    print(f"{result.keys_per_second:,.0f} keys/s, {result.export_ratio:.2f}x the export time")
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from benchmarks import export as export_bench
from benchmarks.harness import BenchmarkError, Database
from exposure.db import make_session_factory, unit_of_work
from exposure.db.migrate import upgrade_service
from exposure.keys.kek import new_kek
from exposure.settings import Service
from keyserver.importer.fetch import Fetcher
from keyserver.importer.run import run_import
from keyserver.importer.sources import SourceKey, add_import_source
from keyserver.models import Exposure, SignatureInfo
from keyserver.settings import KeyserverSettings

#: As of when the import runs: the exported window has closed.
IMPORT_NOW = export_bench.WINDOW_START + export_bench.PERIOD + timedelta(hours=3)
_FLOOR_TABLE = "bench_write_floor"


@dataclass(frozen=True)
class ImportBenchmarkResult:
    database: Database
    keys: int
    files: int
    keys_stored: int
    import_seconds: float
    export_seconds: float
    import_peak_mb: float
    export_peak_mb: float
    baseline_peak_mb: float
    #: PostgreSQL alone writing the stored rows again into an empty table with the key
    #: table's indexes, in key order (None on SQLite): the least any import can take.
    write_floor_seconds: float | None = None

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.import_seconds if self.import_seconds else 0.0

    @property
    def floor_ratio(self) -> float | None:
        """Import time over the database's own write of the same rows, same run."""
        if not self.write_floor_seconds:
            return None
        return self.import_seconds / self.write_floor_seconds

    @property
    def export_ratio(self) -> float:
        """Import time over export time of the same keys (below 1: import is faster)."""
        return self.import_seconds / self.export_seconds if self.export_seconds else 0.0


def _import_settings() -> KeyserverSettings:
    # The seeded keys span 17 days before the window; every one should be imported, and
    # one run should take every file.
    return KeyserverSettings(max_interval_age=timedelta(days=21), import_lease=timedelta(hours=1))


def _import_in_child(url: str) -> tuple[float, float, int]:
    engine = export_bench._engine(url)
    fetcher = Fetcher(timeout=timedelta(seconds=60), retries=0, backoff=timedelta(0))
    try:
        started = time.perf_counter()
        report = run_import(
            make_session_factory(engine),
            settings=_import_settings(),
            fetcher=fetcher,
            now=IMPORT_NOW,
        )
        elapsed = time.perf_counter() - started
    finally:
        fetcher.close()
        engine.dispose()
    [run] = report.sources
    if run.error is not None or run.files_refused:
        raise BenchmarkError(f"the import failed: {report.as_dict()}")
    return elapsed, export_bench._peak_mb(), run.files_imported


def _prepare_importer(url: str, export_url: str, export_dir: Path) -> None:
    """A fresh database that knows the exporter's directory and public key as a source."""
    exporter = export_bench._engine(export_url)
    try:
        with unit_of_work(make_session_factory(exporter)) as session:
            info = session.scalars(select(SignatureInfo)).one()
            key = SourceKey(info.key_id, info.key_version, info.public_key_pem)
    finally:
        exporter.dispose()
    engine = export_bench._engine(url)
    try:
        upgrade_service(engine, Service.KEYSERVER)
        with unit_of_work(make_session_factory(engine)) as session:
            add_import_source(
                session,
                name="bench-peer",
                index_location=str(export_dir / export_bench.ROOT / "index.txt"),
                export_root=str(export_dir),
                keys=[key],
                region="VN",
                valid_from=export_bench.WINDOW_START,
                now=export_bench.WINDOW_START,
            )
    finally:
        engine.dispose()


def _write_floor_seconds(url: str) -> float:
    """Time PostgreSQL copying the stored keys into an empty twin of the key table.

    The twin has the same primary key, indexes and constraints (``LIKE ... INCLUDING
    ALL``) and is logged like the real one; the rows arrive in key order, already parsed,
    so nothing of the import's own work is in this figure.
    """
    table = Exposure.__tablename__
    engine = export_bench._engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE TABLE bench_write_floor (LIKE {table} INCLUDING ALL)"
            )
            started = time.perf_counter()
            connection.exec_driver_sql(
                f"INSERT INTO {_FLOOR_TABLE} SELECT * FROM {table} ORDER BY key"  # noqa: S608
            )
            elapsed = time.perf_counter() - started
            connection.exec_driver_sql(f"DROP TABLE {_FLOOR_TABLE}")
    finally:
        engine.dispose()
    return elapsed


def _stored(url: str) -> int:
    engine = export_bench._engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(Exposure)) or 0)
    finally:
        engine.dispose()


def run_import_benchmark(
    *,
    keys: int,
    database: Database = Database.POSTGRESQL,
    postgres_url: str | None = None,
) -> ImportBenchmarkResult:
    """Export ``keys`` keys from one database, import the files into another; time both."""
    if keys < 1:
        raise ValueError("keys must be at least 1")
    spawn = multiprocessing.get_context("spawn")
    postgres = postgres_url or os.environ.get("EXPOSURE_TEST_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="exposure-bench-import-") as scratch:
        directory = Path(scratch)
        export_dir, kek = directory / "exports", new_kek()
        (directory / "peer").mkdir()
        (directory / "importer").mkdir()
        with (
            export_bench._database(database, postgres, directory / "peer") as peer_url,
            export_bench._database(database, postgres, directory / "importer") as url,
        ):
            export_bench._prepare(peer_url, keys, export_dir, kek)
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                baseline = pool.apply(export_bench._baseline_in_child)
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                export_seconds, export_peak, _ = pool.apply(
                    export_bench._export_in_child, (peer_url, str(export_dir), kek)
                )
            _prepare_importer(url, peer_url, export_dir)
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                import_seconds, import_peak, files = pool.apply(_import_in_child, (url,))
            stored = _stored(url)
            floor = _write_floor_seconds(url) if database is Database.POSTGRESQL else None
        _, exported = export_bench._count_exported(export_dir)
    # Small batches are padded by the exporting side: those keys are imported too.
    if stored != exported or exported < keys:
        raise BenchmarkError(f"{stored} keys were stored of the {exported} exported")
    return ImportBenchmarkResult(
        database=database,
        keys=keys,
        files=files,
        keys_stored=stored,
        import_seconds=import_seconds,
        export_seconds=export_seconds,
        import_peak_mb=import_peak,
        export_peak_mb=export_peak,
        baseline_peak_mb=baseline,
        write_floor_seconds=floor,
    )
