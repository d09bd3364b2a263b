"""How fast the export worker turns a batch of stored keys into signed files.

``run_export_benchmark(keys=1_000_000)`` seeds ``keys`` random keys into one export window of
a fresh database (a PostgreSQL schema of its own, or a temporary SQLite file), creates an
export config with a signing key, closes the window into a batch, and then, each in a fresh
process so that memory is measured for that work alone:

1. runs the export worker on the batch (select, pad, sort, encode, sign, zip, write, index,
   complete) and records its wall time and the process's peak resident memory;
2. runs a bare ``SELECT`` of the same rows' columns through SQLAlchemy, fetching every row,
   as the floor any export must pay.

The files are then read back and their keys counted, so a fast but wrong export fails the
run. Seeding uses COPY on PostgreSQL and executemany on SQLite; it is not timed.

Example::

    result = run_export_benchmark(keys=100_000, database=Database.POSTGRESQL)
    print(f"{result.keys_per_second:,.0f} keys/s, {result.select_ratio:.2f}x the bare SELECT")
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select

from benchmarks.harness import BenchmarkError, Database, postgres_schema
from crypto.randomness import random_bytes
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.lease import new_holder_token
from exposure.db.migrate import upgrade_service
from exposure.export.reader import read_export
from exposure.keys import ServiceKeyStore
from exposure.keys.kek import decode_keks, new_kek
from exposure.settings import Service
from exposure.tek import interval_number
from keyserver.export.batcher import create_batches
from keyserver.export.blobstore import FilesystemBlobStore
from keyserver.export.configs import add_signature_info, create_export_config
from keyserver.export.worker import run_worker
from keyserver.models import Exposure
from keyserver.settings import KeyserverSettings

#: The window every seeded key falls in; far enough in the past to be closed at once.
WINDOW_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD = timedelta(days=1)
ROOT = "bench"
#: Rows per executemany on SQLite and per COPY chunk on PostgreSQL.
_SEED_CHUNK = 50_000


@dataclass(frozen=True)
class ExportBenchmarkResult:
    database: Database
    keys: int
    files: int
    keys_in_files: int
    export_seconds: float
    select_seconds: float
    #: Peak resident memory of the process that ran the export, and of one that only
    #: imported the same modules (the interpreter's share of it).
    export_peak_mb: float
    baseline_peak_mb: float
    phases: dict[str, float]

    @property
    def keys_per_second(self) -> float:
        return self.keys / self.export_seconds if self.export_seconds else 0.0

    @property
    def select_ratio(self) -> float:
        return self.export_seconds / self.select_seconds if self.select_seconds else 0.0


def _peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(url: str) -> Engine:
    return create_database_engine(url, pool_size=2)


def _settings(export_dir: Path) -> KeyserverSettings:
    return KeyserverSettings(export_directory=export_dir)


def _rows(count: int) -> Iterator[tuple[bytes, int, str, bool, int, int, datetime, str, str]]:
    start_interval = interval_number(WINDOW_START) - 144 * 3
    for index in range(count):
        created = WINDOW_START + timedelta(seconds=index % 86_400 // 3600 * 3600)
        yield (
            random_bytes(16),
            2,
            ",VN,",
            False,
            start_interval - 144 * (index % 14),
            144,
            created,
            "publish",
            "confirmed",
        )


_COLUMNS = (
    "key",
    "transmission_risk",
    "regions",
    "traveler",
    "interval_number",
    "interval_count",
    "created_at",
    "origin",
    "report_type",
)


def seed_keys(engine: Engine, count: int) -> None:
    """Store ``count`` random keys in the benchmark window (not timed)."""
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(
                f"COPY keyserver_exposures ({', '.join(_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in _rows(count):
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    with engine.begin() as connection:
        batch: list[dict[str, object]] = []
        for row in _rows(count):
            batch.append(dict(zip(_COLUMNS, row, strict=True)))
            if len(batch) == _SEED_CHUNK:
                connection.execute(insert(Exposure), batch)
                batch = []
        if batch:
            connection.execute(insert(Exposure), batch)


def _key_store(kek: str) -> ServiceKeyStore:
    return ServiceKeyStore("keyserver", decode_keks(kek), kek_source="the benchmark's KEK")


def _export_in_child(url: str, export_dir: str, kek: str) -> tuple[float, float, dict[str, float]]:
    engine = _engine(url)
    try:
        started = time.perf_counter()
        report = run_worker(
            make_session_factory(engine),
            store=FilesystemBlobStore(Path(export_dir)),
            key_store=_key_store(kek),
            settings=_settings(Path(export_dir)),
            now=WINDOW_START + PERIOD + timedelta(hours=3),
            holder=new_holder_token(),
        )
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
    if report.failures or report.batches_completed != 1:
        raise BenchmarkError(f"the export did not complete: {report.as_dict()}")
    return elapsed, _peak_mb(), dict(report.timings)


def _select_in_child(url: str) -> float:
    engine = _engine(url)
    try:
        columns = [Exposure.__table__.c[name] for name in _COLUMNS if name != "origin"]
        statement = select(*columns).where(
            Exposure.created_at >= WINDOW_START, Exposure.created_at < WINDOW_START + PERIOD
        )
        started = time.perf_counter()
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
        elapsed = time.perf_counter() - started
        del rows
    finally:
        engine.dispose()
    return elapsed


def _baseline_in_child() -> float:
    return _peak_mb()


@contextmanager
def _database(database: Database, postgres_url: str | None, directory: Path) -> Iterator[str]:
    if database is Database.SQLITE:
        yield f"sqlite:///{directory / 'keyserver.sqlite3'}"
        return
    if not postgres_url:
        raise BenchmarkError("PostgreSQL needs --database-url or EXPOSURE_TEST_DATABASE_URL")
    with postgres_schema(postgres_url) as url:
        yield url


def _prepare(url: str, keys: int, export_dir: Path, kek: str) -> None:
    engine = _engine(url)
    try:
        upgrade_service(engine, Service.KEYSERVER)
        seed_keys(engine, keys)
        with unit_of_work(make_session_factory(engine)) as session:
            info = add_signature_info(
                session, _key_store(kek), key_id="bench", key_version="v1", now=WINDOW_START
            )
            create_export_config(
                session,
                filename_root=ROOT,
                period=PERIOD,
                output_region="VN",
                valid_from=WINDOW_START,
                now=WINDOW_START,
                signature_info_ids=[info.id],
            )
            created = create_batches(
                session,
                settings=_settings(export_dir),
                now=WINDOW_START + PERIOD + timedelta(hours=3),
            )
        if len(created) != 1:
            raise BenchmarkError(f"expected one batch, the batcher made {len(created)}")
    finally:
        engine.dispose()


def _count_exported(export_dir: Path) -> tuple[int, int]:
    files = sorted((export_dir / ROOT).glob("*.zip"))
    total = 0
    for path in files:
        total += len(read_export(path.read_bytes()).contents.keys)
    return len(files), total


def run_export_benchmark(
    *,
    keys: int,
    database: Database = Database.POSTGRESQL,
    postgres_url: str | None = None,
) -> ExportBenchmarkResult:
    """Seed ``keys`` keys, export them as one batch, and time it against a bare SELECT."""
    if keys < 1:
        raise ValueError("keys must be at least 1")
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="exposure-bench-export-") as scratch:
        directory = Path(scratch)
        export_dir, kek = directory / "exports", new_kek()
        with _database(
            database, postgres_url or os.environ.get("EXPOSURE_TEST_DATABASE_URL"), directory
        ) as url:
            _prepare(url, keys, export_dir, kek)
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                baseline = pool.apply(_baseline_in_child)
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                select_seconds = pool.apply(_select_in_child, (url,))
            with spawn.Pool(1, maxtasksperchild=1) as pool:
                export_seconds, peak, phases = pool.apply(
                    _export_in_child, (url, str(export_dir), kek)
                )
        files, exported = _count_exported(export_dir)
    if exported < keys:
        raise BenchmarkError(f"only {exported} of {keys} keys were exported")
    return ExportBenchmarkResult(
        database=database,
        keys=keys,
        files=files,
        keys_in_files=exported,
        export_seconds=export_seconds,
        select_seconds=select_seconds,
        export_peak_mb=peak,
        baseline_peak_mb=baseline,
        phases=phases,
    )
