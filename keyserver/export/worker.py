"""The export worker: turn closed batches into signed export files and list them in index.txt.

Any number of workers may run at once (in threads, processes or replicas). Each loops:

1. **Lease** a batch whose window has ended: an ``open`` one, or a ``pending`` one whose
   lease has expired (its worker died). The lease is one ``UPDATE ... WHERE status/lease``
   committed on its own, which PostgreSQL re-evaluates against the latest row version after
   a concurrent update and SQLite runs under ``BEGIN IMMEDIATE``, so two workers never hold
   one batch.
2. **Select** the config's keys whose ``created_at`` is in the window (the embargo of
   still-valid keys is already in ``created_at``) and its revised keys whose revision falls
   in the window. A revision made while its key was still embargoed is exported in the
   batch where the key itself is (``max(revised_at, created_at)``), never earlier: otherwise
   the revised copy would leak the key before its embargo ends (the reference has that leak).
3. **Pad** a batch with fewer than ``export_min_records`` keys up to that plus a random
   ``[0, export_padding_range]``, with random keys that copy real keys' metadata round-robin.
   Padding keys are stored (origin ``padding``, ``created_at`` = the latest real
   ``created_at`` of the batch) and committed before any file is written, so a re-run of the
   batch selects them again and writes the same keys. Padding already in the window (an
   earlier run, or another config over the same keys) counts towards the minimum, so a
   re-run never pads twice.
4. **Write** the files: keys and then revised keys, sorted by key bytes, split every
   ``min(config max_records, export_file_max_records)`` keys; each file is
   ``<root>/<start>-<end>-<NNNNN>.zip`` (unix seconds of the batch window, NNNNN the 1-based
   file number) and, when there is more than one, its ``end_timestamp`` is the batch end
   plus its file number (a reference quirk, §4.3). Every valid signature info of the config
   signs, newest first.
5. Under the config's index lease (``export-index:<config id>``): **rewrite index.txt** with
   every complete file of the config whose batch started within ``export_retention`` plus
   the new files (sorted, de-duplicated, ``\\n``-separated, no trailing newline), then in one
   transaction insert the file rows and mark the batch complete, if this worker still holds
   its lease. Empty batches write no file but still rewrite index.txt, so files older than
   the retention leave it even when no keys arrive.

Crash safety: blob writes are atomic, and index.txt only ever names files that were written
whole before it; a worker that dies at any step leaves the batch ``pending`` with a lease
that expires, after which another worker redoes it under the same file names.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crypto.randomness import random_below, random_bytes
from crypto.signing import Signer
from exposure.db import SessionFactory, unit_of_work
from exposure.db.lease import acquire_lease, release_lease
from exposure.db.unit_of_work import autocommit
from exposure.export.model import SignatureInfo as ExportSignatureInfo
from exposure.export.writer import sign_export, write_export_zip
from exposure.keys import KeyStore
from keyserver.export.blobstore import (
    INDEX_CACHE_CONTROL,
    INDEX_CONTENT_TYPE,
    INDEX_FILENAME,
    ZIP_CACHE_CONTROL,
    ZIP_CONTENT_TYPE,
    BlobStore,
)
from keyserver.export.configs import (
    config_exclude_regions,
    config_import_regions,
    config_import_source_ids,
    config_input_regions,
    valid_signature_infos,
)
from keyserver.export.encode import KeyRecordEncoder, encode_export_bin_records
from keyserver.models import STATUS_COMPLETE, ExportFile
from keyserver.settings import KeyserverSettings
from keyserver.store import export_configs as export_config_store
from keyserver.store import exports as exports_store
from keyserver.store import exposures as exposure_store

__all__ = [
    "INDEX_FILENAME",
    "ORIGIN_PADDING",
    "STEPS",
    "BatchFailure",
    "IndexBusy",
    "WorkerReport",
    "acquire_index_lease",
    "export_filename",
    "index_lease_name",
    "rewrite_index",
    "run_worker",
]

_logger = logging.getLogger(__name__)

ORIGIN_PADDING = "padding"
#: What ``step_hook`` is called with, in order: after padding is committed, after each zip,
#: after the last zip, after index.txt, after the batch is marked complete.
STEPS = ("padded", "file_written", "files_written", "index_written", "completed")
#: Candidates read per lease attempt; the reference reads 100 and shuffles them.
LEASE_CANDIDATES = 100
#: How long the index lease is held at most; writing one index takes milliseconds.
INDEX_LEASE_TTL = timedelta(seconds=60)
#: Longest wait for another worker's index lease before giving the batch up for this run.
INDEX_LEASE_WAIT = timedelta(seconds=90)
_INDEX_RETRY_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0)
# Rows per fetch: large enough to amortize round trips, small enough to bound memory.
_FETCH_ROWS = 50_000
_PADDING_INSERT_ROWS = 100  # as the reference (MAX_INSERT_BATCH_SIZE)
# Files signed, zipped and stored at once; compression dominates and runs one core each.
_FILE_THREADS = 2


@dataclass(frozen=True)
class BatchFailure:
    """A batch this run gave up on (its lease was released, or lost); ``code`` is stable."""

    batch_id: int
    code: str
    detail: str


@dataclass
class WorkerReport:
    """What one :func:`run_worker` call did; also the source of the export metrics."""

    batches_completed: int = 0
    empty_batches: int = 0
    files_written: int = 0
    keys_exported: int = 0
    revised_keys_exported: int = 0
    padding_keys: int = 0
    bad_key_length: int = 0
    #: Candidates another worker leased between our read and our update.
    lease_contention: int = 0
    failures: list[BatchFailure] = field(default_factory=list)
    #: Seconds spent per phase, summed over batches: load (config, signing keys), select
    #: (database), records (rows to key records), pad, sort, encode (export.bin), sign, zip
    #: and write (blob store; these three run in threads, in parallel with each other and
    #: with encode), wait (for those threads), index, complete.
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary for logs, the CLI and the benchmark."""
        return asdict(self)


class _LeaseLost(Exception):  # noqa: N818 - a condition, like TimeoutError
    """Another worker took the batch over (our lease expired)."""


class _BatchRefused(Exception):  # noqa: N818
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def export_filename(root: str, start: datetime, end: datetime, file_number: int) -> str:
    """``<root>/<start>-<end>-<NNNNN>.zip`` with unix seconds and a 1-based file number."""
    return f"{root}/{_unix(start)}-{_unix(end)}-{file_number:05d}.zip"


def index_lease_name(config_id: int) -> str:
    """The lease that serializes index.txt writes of one config."""
    return f"export-index:{config_id}"


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


class _Clock:
    """``now`` as given, moved forward by the wall time this run has taken.

    Leases must expire relative to the time they are taken; a long run with a fixed ``now``
    would hand out leases that are already over in real time.
    """

    def __init__(self, now: datetime) -> None:
        self._start = now
        self._started = time.monotonic()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._started)


class _Timer:
    def __init__(self, timings: dict[str, float]) -> None:
        self._timings = timings
        self._last = time.perf_counter()

    def lap(self, phase: str, *, of_which: dict[str, float] | None = None) -> None:
        """Book the time since the last lap to ``phase``, less the parts in ``of_which``."""
        now = time.perf_counter()
        elapsed = now - self._last
        for part, seconds in (of_which or {}).items():
            self._timings[part] = self._timings.get(part, 0.0) + seconds
            elapsed -= seconds
        self._timings[phase] = self._timings.get(phase, 0.0) + elapsed
        self._last = now


def run_worker(
    session_factory: SessionFactory,
    *,
    store: BlobStore,
    key_store: KeyStore,
    settings: KeyserverSettings,
    now: datetime,
    holder: str,
    max_batches: int | None = None,
    step_hook: Callable[[str], None] | None = None,
    random_bytes_source: Callable[[int], bytes] = random_bytes,
    random_below_source: Callable[[int], int] = random_below,
) -> WorkerReport:
    """Lease and export batches until none is left (or ``max_batches`` were attempted).

    ``holder`` names this worker in leases (a random token: see
    :func:`exposure.db.lease.new_holder_token`). ``step_hook`` is for crash tests only: it is
    called with each name in :data:`STEPS` as the batch passes it. Randomness (padding keys,
    padding counts, candidate order) comes from the two ``random_*`` parameters.

    A batch that fails (no valid signing key, a blob store error, a lost lease) is reported
    in :attr:`WorkerReport.failures`, its lease released when still held, and not retried
    in this run; database errors while leasing propagate.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if not 1 <= len(holder) <= 64:
        raise ValueError("holder must be 1 to 64 characters")
    report = WorkerReport()
    clock = _Clock(now)
    attempted: set[int] = set()
    while max_batches is None or len(attempted) < max_batches:
        batch_id = _lease_batch(
            session_factory,
            holder=holder,
            now=clock(),
            lease=settings.export_worker_lease,
            skip=attempted,
            report=report,
            random_below_source=random_below_source,
        )
        if batch_id is None:
            break
        attempted.add(batch_id)
        job = _BatchJob(
            session_factory,
            batch_id=batch_id,
            store=store,
            key_store=key_store,
            settings=settings,
            clock=clock,
            holder=holder,
            report=report,
            step_hook=step_hook or _no_hook,
            random_bytes_source=random_bytes_source,
            random_below_source=random_below_source,
        )
        try:
            job.run()
        except _LeaseLost:
            _logger.warning("export batch %s: lease lost to another worker", batch_id)
            report.failures.append(BatchFailure(batch_id, "lease_lost", "lease taken over"))
        except _BatchRefused as refused:
            _logger.error("export batch %s: %s", batch_id, refused)
            report.failures.append(BatchFailure(batch_id, refused.code, str(refused)))
            _release_batch(session_factory, batch_id=batch_id, holder=holder)
        except Exception as error:
            _logger.exception("export batch %s failed", batch_id)
            detail = f"{type(error).__name__}: {error}"[:300]
            report.failures.append(BatchFailure(batch_id, "error", detail))
            _release_batch(session_factory, batch_id=batch_id, holder=holder)
    return report


def _no_hook(_step: str) -> None:
    return None


def _lease_batch(
    session_factory: SessionFactory,
    *,
    holder: str,
    now: datetime,
    lease: timedelta,
    skip: set[int],
    report: WorkerReport,
    random_below_source: Callable[[int], int],
) -> int | None:
    with unit_of_work(session_factory) as session:
        candidates = [
            batch_id
            for batch_id in exports_store.leasable_batch_ids(
                session, now, LEASE_CANDIDATES + len(skip)
            )
            if batch_id not in skip
        ][:LEASE_CANDIDATES]
    # Shuffled so concurrent workers rarely race for the same row; the oldest windows still
    # go first overall, so padding lands in older files (as in the reference).
    for index in range(len(candidates) - 1, 0, -1):
        other = random_below_source(index + 1)
        candidates[index], candidates[other] = candidates[other], candidates[index]
    for batch_id in candidates:
        with unit_of_work(session_factory) as session:
            if exports_store.lease_batch(
                session, batch_id, holder=holder, now=now, expires_at=now + lease
            ):
                return batch_id
        report.lease_contention += 1
    return None


def _release_batch(session_factory: SessionFactory, *, batch_id: int, holder: str) -> None:
    """Give a failed batch back at once, if this worker still holds it."""
    try:
        with unit_of_work(session_factory) as session:
            exports_store.release_batch(session, batch_id, holder=holder)
    except Exception:  # the lease then simply expires
        _logger.exception("export batch %s: could not release the lease", batch_id)


@dataclass(frozen=True)
class _Window:
    config_id: int
    filename_root: str
    output_region: str
    start: datetime
    end: datetime
    max_records: int
    keys: exports_store.KeyFilter
    signers: tuple[tuple[ExportSignatureInfo, Signer], ...]


class _BatchJob:
    """Everything done for one leased batch (see the module docstring for the steps)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        batch_id: int,
        store: BlobStore,
        key_store: KeyStore,
        settings: KeyserverSettings,
        clock: Callable[[], datetime],
        holder: str,
        report: WorkerReport,
        step_hook: Callable[[str], None],
        random_bytes_source: Callable[[int], bytes],
        random_below_source: Callable[[int], int],
    ) -> None:
        self._session_factory = session_factory
        self._batch_id = batch_id
        self._store = store
        self._key_store = key_store
        self._settings = settings
        self._clock = clock
        self._holder = holder
        self._report = report
        self._step = step_hook
        self._random_bytes = random_bytes_source
        self._random_below = random_below_source
        self._timer = _Timer(report.timings)

    def run(self) -> None:
        window = self._load_window()
        self._timer.lap("load")
        encoder = KeyRecordEncoder()
        keys = self._select(window, encoder, revised=False)
        if 0 < len(keys) < self._settings.export_min_records and self._pad(window, len(keys)):
            # Read back what was stored, so the file holds exactly what a re-run would.
            encoder = KeyRecordEncoder()
            keys = self._select(window, encoder, revised=False)
        revised = self._select(window, encoder, revised=True)
        self._report.bad_key_length += encoder.bad_key_length
        keys.sort()
        revised.sort()
        self._timer.lap("sort")

        # Selecting and encoding a large batch takes a while: make sure nobody took the
        # batch over before anything is written, and restart the lease from here.
        self._renew_lease()
        names = self._write_files(window, keys, revised)
        self._step("files_written")
        self._index_and_complete(window, names, len(keys), len(revised))

    # ---- loading -----------------------------------------------------------------------

    def _load_window(self) -> _Window:
        with unit_of_work(self._session_factory) as session:
            batch = exports_store.batch_by_id(session, self._batch_id)
            if batch is None:  # pragma: no cover - deleted while leased
                raise _BatchRefused("batch_missing", "batch no longer exists")
            config = export_config_store.export_config_by_id(session, batch.config_id)
            if config is None:  # pragma: no cover - cascade deletes batches with configs
                raise _BatchRefused("config_missing", "export config no longer exists")
            infos = valid_signature_infos(session, config, self._clock())
            if not infos:
                # Unsigned files are useless to phones; the batch waits for a signing key.
                raise _BatchRefused(
                    "no_signing_key", f"export config {config.id} has no valid signature info"
                )
            signers = tuple(
                (
                    ExportSignatureInfo(
                        verification_key_version=info.key_version or None,
                        verification_key_id=info.key_id or None,
                        signature_algorithm=info.algorithm,
                    ),
                    self._key_store.signer(session, info.signing_key),
                )
                for info in infos
            )
            return _Window(
                config_id=config.id,
                filename_root=config.filename_root,
                output_region=config.output_region,
                start=batch.start_at,
                end=batch.end_at,
                max_records=min(config.max_records, self._settings.export_file_max_records),
                keys=exports_store.key_filter(
                    input_regions=config_input_regions(config),
                    exclude_regions=config_exclude_regions(config),
                    include_travelers=config.include_travelers,
                    only_non_travelers=config.only_non_travelers,
                    include_imported=config.include_imported,
                    import_source_ids=config_import_source_ids(config),
                    import_regions=config_import_regions(config),
                ),
                signers=signers,
            )

    def _select(self, window: _Window, encoder: KeyRecordEncoder, *, revised: bool) -> list[bytes]:
        records: list[bytes] = []
        encoding = 0.0
        # Outside a transaction: on SQLite every transaction takes the write lock (BEGIN
        # IMMEDIATE), which a long read must not hold. A closed window no longer changes
        # (except by this batch's padding, committed before), so one snapshot per query is
        # enough.
        with autocommit(self._session_factory) as connection:
            for rows in exports_store.stream_window_keys(
                connection,
                start=window.start,
                end=window.end,
                keys=window.keys,
                revised=revised,
                rows_per_chunk=_FETCH_ROWS,
            ):
                started = time.perf_counter()
                records.extend(encoder.records(rows))
                encoding += time.perf_counter() - started
        self._timer.lap("select", of_which={"records": encoding})
        return records

    # ---- padding -----------------------------------------------------------------------

    def _pad(self, window: _Window, count: int) -> bool:
        settings = self._settings
        target = settings.export_min_records + self._random_below(settings.export_padding_range + 1)
        needed = target - count
        with unit_of_work(self._session_factory) as session:
            sources = exports_store.window_key_metadata(
                session, start=window.start, end=window.end, keys=window.keys
            )
            real = [row for row in sources if row.origin != ORIGIN_PADDING] or list(sources)
            if not real:  # pragma: no cover - the keys vanished since they were counted
                return False
            created_at = max(row.created_at for row in real)
            rows = [
                {
                    "key": self._random_bytes(16),
                    "transmission_risk": source.transmission_risk,
                    "regions": source.regions,
                    "traveler": source.traveler,
                    "interval_number": source.interval_number,
                    "interval_count": source.interval_count,
                    "created_at": created_at,
                    "origin": ORIGIN_PADDING,
                    "health_authority_id": None,
                    "report_type": source.report_type,
                    "days_since_symptom_onset": source.days_since_symptom_onset,
                }
                for source in (real[index % len(real)] for index in range(needed))
            ]
            inserted = 0
            for offset in range(0, len(rows), _PADDING_INSERT_ROWS):
                chunk = rows[offset : offset + _PADDING_INSERT_ROWS]
                inserted += exposure_store.insert_exposures(session, chunk)
        self._report.padding_keys += inserted
        self._timer.lap("pad")
        self._step("padded")
        return inserted > 0

    # ---- files and index ---------------------------------------------------------------

    def _renew_lease(self) -> None:
        now = self._clock()
        with unit_of_work(self._session_factory) as session:
            if not exports_store.renew_batch_lease(
                session,
                self._batch_id,
                holder=self._holder,
                expires_at=now + self._settings.export_worker_lease,
            ):
                raise _LeaseLost

    def _write_files(
        self, window: _Window, keys: Sequence[bytes], revised: Sequence[bytes]
    ) -> list[tuple[str, int]]:
        """Write every file of the batch; return (name, key count) per file, in order.

        Keys were sorted before the split, so a re-run puts the same keys in the same file
        (a file already fetched under a name must not change its keys). Files are signed,
        zipped and stored in threads (zlib, hashing and file I/O release the GIL) while the
        next file is encoded; at most :data:`_FILE_THREADS` files are in flight.
        """
        total = len(keys) + len(revised)
        if total == 0:
            return []
        per_file = window.max_records
        file_count = -(-total // per_file)
        written: list[tuple[str, int]] = []
        pending: deque[Future[dict[str, float]]] = deque()

        def finish_oldest() -> None:
            timings = pending.popleft().result()
            for phase, seconds in timings.items():
                self._report.timings[phase] = self._report.timings.get(phase, 0.0) + seconds
            self._step("file_written")

        with ThreadPoolExecutor(max_workers=_FILE_THREADS) as pool:
            try:
                for number in range(1, file_count + 1):
                    first, last = (number - 1) * per_file, min(number * per_file, total)
                    file_keys = keys[first:last]
                    file_revised = revised[max(first - len(keys), 0) : max(last - len(keys), 0)]
                    export_bin = encode_export_bin_records(
                        start_timestamp=_unix(window.start),
                        # A reference quirk (§4.3): split batches number their ends.
                        end_timestamp=_unix(window.end) + (number if file_count > 1 else 0),
                        region=window.output_region,
                        signature_infos=[info for info, _ in window.signers],
                        keys=file_keys,
                        revised_keys=file_revised,
                    )
                    name = export_filename(window.filename_root, window.start, window.end, number)
                    written.append((name, len(file_keys) + len(file_revised)))
                    self._timer.lap("encode")
                    if len(pending) >= _FILE_THREADS:
                        finish_oldest()
                        self._timer.lap("wait")
                    pending.append(pool.submit(self._store_file, window, name, export_bin))
                while pending:
                    finish_oldest()
            finally:
                for future in pending:
                    future.cancel()
        self._timer.lap("wait")
        return written

    def _store_file(self, window: _Window, name: str, export_bin: bytes) -> dict[str, float]:
        """Sign, zip and store one file (in a pool thread); return the seconds per phase."""
        started = time.perf_counter()
        export_sig = sign_export(export_bin, window.signers)
        signed = time.perf_counter()
        archive = write_export_zip(export_bin, export_sig)
        zipped = time.perf_counter()
        self._store.put(
            name, archive, content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL
        )
        stored = time.perf_counter()
        return {"sign": signed - started, "zip": zipped - signed, "write": stored - zipped}

    def _index_and_complete(
        self, window: _Window, files: Sequence[tuple[str, int]], keys: int, revised: int
    ) -> None:
        lease_name = index_lease_name(window.config_id)
        self._acquire_index_lease(lease_name)
        try:
            now = self._clock()
            _write_index(
                self._session_factory,
                self._store,
                config_id=window.config_id,
                filename_root=window.filename_root,
                since=now - self._settings.export_retention,
                new_files=[name for name, _ in files],
            )
            self._timer.lap("index")
            self._step("index_written")
            self._complete(files, now)
            self._timer.lap("complete")
        finally:
            with unit_of_work(self._session_factory) as session:
                release_lease(session, name=lease_name, holder=self._holder)
        self._report.batches_completed += 1
        self._report.files_written += len(files)
        self._report.keys_exported += keys
        self._report.revised_keys_exported += revised
        if not files:
            self._report.empty_batches += 1
        self._step("completed")

    def _acquire_index_lease(self, lease_name: str) -> None:
        if not acquire_index_lease(
            self._session_factory, lease_name, holder=self._holder, clock=self._clock
        ):
            raise _BatchRefused("index_busy", f"index lease {lease_name} stayed busy")

    def _complete(self, files: Sequence[tuple[str, int]], now: datetime) -> None:
        with unit_of_work(self._session_factory) as session:
            if not exports_store.complete_batch(
                session, self._batch_id, holder=self._holder, now=now
            ):
                raise _LeaseLost
            exports_store.add_export_files(
                session,
                (
                    ExportFile(
                        filename=name,
                        batch_id=self._batch_id,
                        batch_num=number,
                        batch_size=len(files),
                        key_count=key_count,
                        status=STATUS_COMPLETE,
                        created_at=now,
                    )
                    for number, (name, key_count) in enumerate(files, start=1)
                ),
            )


def _write_index(
    session_factory: SessionFactory,
    store: BlobStore,
    *,
    config_id: int,
    filename_root: str,
    since: datetime,
    new_files: Sequence[str] = (),
) -> list[str]:
    """Write a config's index.txt; the caller holds the config's index lease.

    It lists the config's complete files of batches that started at or after ``since``,
    and ``new_files`` (written, not yet recorded): sorted, de-duplicated, ``\\n``-separated,
    without a trailing newline. Returns the names listed.
    """
    with unit_of_work(session_factory) as session:
        listed = exports_store.complete_file_names(session, config_id, since)
    names = sorted(set(listed).union(new_files))
    store.put(
        f"{filename_root}/{INDEX_FILENAME}",
        "\n".join(names).encode("ascii"),
        content_type=INDEX_CONTENT_TYPE,
        cache_control=INDEX_CACHE_CONTROL,
    )
    return names


def acquire_index_lease(
    session_factory: SessionFactory,
    lease_name: str,
    *,
    holder: str,
    clock: Callable[[], datetime],
) -> bool:
    """Take a config's index lease, waiting up to :data:`INDEX_LEASE_WAIT`; False if busy."""
    waited = 0.0
    attempt = 0
    while True:
        with unit_of_work(session_factory) as session:
            lease = acquire_lease(
                session, name=lease_name, holder=holder, ttl=INDEX_LEASE_TTL, now=clock()
            )
        if lease is not None:
            return True
        if waited >= INDEX_LEASE_WAIT.total_seconds():
            return False
        pause = _INDEX_RETRY_SECONDS[min(attempt, len(_INDEX_RETRY_SECONDS) - 1)]
        time.sleep(pause)
        waited += pause
        attempt += 1


class IndexBusy(Exception):  # noqa: N818 - a condition, like LeaseUnavailable
    """Another worker held a config's index lease for longer than we wait."""


def rewrite_index(
    session_factory: SessionFactory,
    store: BlobStore,
    *,
    config_id: int,
    filename_root: str,
    since: datetime,
    holder: str,
    clock: Callable[[], datetime],
) -> list[str]:
    """Rewrite a config's index.txt to list its complete files of batches from ``since``.

    The retention purge calls this before deleting old files, so phones stop being sent
    to files that are about to disappear. Raises :class:`IndexBusy` if the lease stays held.
    """
    lease_name = index_lease_name(config_id)
    if not acquire_index_lease(session_factory, lease_name, holder=holder, clock=clock):
        raise IndexBusy(lease_name)
    try:
        names = _write_index(
            session_factory,
            store,
            config_id=config_id,
            filename_root=filename_root,
            since=since,
        )
    finally:
        with unit_of_work(session_factory) as session:
            release_lease(session, name=lease_name, holder=holder)
    return names
