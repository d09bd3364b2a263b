"""One import run: every active source's new files, verified, checked and stored whole.

For each source valid at ``now``:

1. **Index.** Fetch its ``index.txt`` (conditionally: an unchanged index costs one short
   answer). Lines that are not plain relative paths are skipped and counted; a line listed
   twice counts once. An index that went backwards (it no longer lists the newest file
   imported from it, and lists nothing newer) is not used: a peer serving a stale or
   replayed index is reported (``index_went_back``) and nothing is fetched this run.
2. **Files.** Each listed file with no record yet, oldest name first, up to
   ``import_files_per_run``: fetched with a size bound, read, and refused whole, with its
   reason recorded, when it is malformed (``bad_zip``, ``too_large``, ...), carries no
   signature (``unsigned``), no signature verifies with one of the source's keys
   (``unknown_key``, or ``bad_signature`` when a signature names one of them), a key is not
   16 bytes (``bad_key_length``) or holds values no producer writes (``invalid_key``).
3. **Store.** The keys of a file that passed, checked and embargoed by the same rules as
   a publish (:func:`keyserver.service.transform.imported_key_values`) a chunk at a time
   as they stream to the database, and stored by
   :func:`keyserver.service.publish.store_import` (never twice, revised only by the peer
   that sent them), **in the transaction that inserts the file's record**. A process
   killed mid-file leaves neither, and the next run imports the file once; two importers
   that raced on a file cannot both commit it (its record is unique).

A file that cannot be fetched now (timeout, refused connection, 5xx) is not recorded: the
source's run stops there, keeping the order, and the next run retries it. The index's
validators are kept only once every file it listed was handled, so a partial run never
hides the rest behind a 304.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crypto.signing import load_public_key
from exposure.db import SessionFactory, unit_of_work
from exposure.export import (
    KEY_LENGTH,
    ExportErrorCode,
    ExportFormatError,
    ExportKeyRecords,
    ExportSignature,
    KeyRecord,
    check_signatures,
    parse_key_records,
    parse_signature_list,
    read_export_members,
)
from exposure.export.model import ReportType as ExportReportType
from exposure.tek import ReportType
from keyserver.importer.fetch import Fetcher, FetchError, join_location
from keyserver.importer.index import parse_index
from keyserver.models import IMPORT_IMPORTED, IMPORT_REFUSED, ImportFile, ImportSource
from keyserver.service.publish import ImportedKey, store_import
from keyserver.service.transform import KeyRejected, KeyWindow, imported_key_values
from keyserver.settings import KeyserverSettings
from keyserver.store import imports as import_store

__all__ = ["STEPS", "ImportReport", "SourceRun", "run_import"]

_logger = logging.getLogger(__name__)

#: What ``step_hook`` is called with: after a file's keys are stored, before the commit.
STEPS = ("keys_stored",)
#: Keys decoded, checked and sent to the database at a time: memory holds one chunk. Small
#: enough that a chunk's tuples die young: with 50,000, Python's cycle collector, which
#: walks every surviving object, cost half again the decoding time.
_CHUNK_KEYS = 5_000
_REGION = re.compile(r"[A-Z0-9-]{1,20}")
#: Why a source's run stopped early.
INDEX_WENT_BACK = "index_went_back"
#: Why a file was refused, besides the export reader's own codes.
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
INVALID_KEY = "invalid_key"
BAD_KEY_LENGTH = ExportErrorCode.BAD_KEY_LENGTH.value


@dataclass
class SourceRun:
    """What one run did for one source; also the source of the import metrics."""

    source: str
    files_imported: int = 0
    #: reason → files refused this run.
    files_refused: dict[str, int] = field(default_factory=dict)
    keys_inserted: int = 0
    keys_revised: int = 0
    keys_duplicate: int = 0
    keys_dropped: int = 0
    #: Index lines that are not relative paths, and lines listed more than once.
    bad_names: int = 0
    duplicate_listings: int = 0
    #: New files left for the next run (the per-run limit, the time budget, a failure).
    files_pending: int = 0
    #: The stable code of what stopped the run for this source (fetch or index), or None.
    error: str | None = None
    #: When this source last imported without error (this run, or an earlier one).
    last_success_at: datetime | None = None


@dataclass
class ImportReport:
    sources: list[SourceRun] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary for logs and the CLI."""
        return {"sources": [asdict(run) for run in self.sources]}


@dataclass(frozen=True)
class _Source:
    """What a run needs of a source, read once (no ORM object crosses transactions)."""

    id: int
    name: str
    index_location: str
    export_root: str
    region: str
    report_type: str
    index_etag: str | None
    index_last_modified: str | None
    last_success_at: datetime | None
    #: (key id, key version, loaded key) of every key that may sign its files.
    keys: tuple[tuple[str, str, EllipticCurvePublicKey], ...]


@dataclass(frozen=True)
class _Refusal:
    reason: str


@dataclass(frozen=True)
class _Accepted:
    """A file whose signature verified and whose keys decode: checked while stored."""

    records: ExportKeyRecords
    region: str


class _FileRefused(Exception):  # noqa: N818 - a verdict on the file, raised mid-store
    """A key of an accepted file breaks a rule no valid producer breaks: refuse it whole."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: A key's values as stored (risk, created_at, report type, days since onset); None when
#: the key is dropped.
_Verdict = tuple[int, datetime, str, int | None] | None


@dataclass
class _KeyChecks:
    """A file's checked keys, a chunk at a time, as often as the store goes through them.

    When a key comes more than once, its last copy counts (a file's revised keys follow its
    keys): a pass that gives each key once skips the earlier copies and counts them as
    duplicates. A key that is not 16 bytes, or holds values no producer writes, refuses
    the whole file (:class:`_FileRefused`) when the pass meets it.
    """

    records: ExportKeyRecords
    default_report_type: str
    window: KeyWindow
    max_symptom_onset_days: int
    dropped: int = 0
    superseded: int = 0
    _verdicts: dict[tuple[object, ...], _Verdict] = field(default_factory=dict)

    def __call__(self, once: bool) -> Iterator[list[ImportedKey]]:
        # Each pass counts afresh.
        self.dropped = self.superseded = 0
        copies_left = self.records.repeated_keys() if once else {}
        verdicts = self._verdicts
        for chunk in self.records.chunks(_CHUNK_KEYS):
            checked: list[ImportedKey] = []
            append = checked.append
            for record in chunk:
                key_data = record[0]
                if len(key_data) != KEY_LENGTH:
                    raise _FileRefused(BAD_KEY_LENGTH)
                if copies_left and key_data in copies_left:
                    copies_left[key_data] -= 1
                    if copies_left[key_data]:
                        self.superseded += 1
                        continue
                values = record[1:]
                try:
                    verdict = verdicts[values]
                except KeyError:
                    verdict = verdicts[values] = self._verdict(record)
                if verdict is None:
                    self.dropped += 1
                    continue
                risk, created_at, report_type, onset = verdict
                append((key_data, record[2], record[3], risk, created_at, report_type, onset))
            yield checked

    def _verdict(self, record: KeyRecord) -> _Verdict:
        """What the rules make of a key with these values: the same for every such key.

        Every rule looks at the values besides the key data, but for its length, which the
        pass checks for every key; a file's keys share few distinct values (start intervals
        are midnights), so each set of values is judged once.
        """
        key_data, risk, start, count, export_type, days_since_onset = record
        report_type = _report_type(
            None if export_type is None else ExportReportType(export_type),
            self.default_report_type,
        )
        if report_type is None:
            return None
        try:
            risk, created_at, days_since_onset = imported_key_values(
                key_data,
                start=start,
                count=count,
                transmission_risk=risk,
                report_type=report_type,
                days_since_onset=days_since_onset,
                window=self.window,
                max_symptom_onset_days=self.max_symptom_onset_days,
            )
        except KeyRejected as rejected:
            if rejected.malformed:
                raise _FileRefused(INVALID_KEY) from None
            return None
        return (risk, created_at, report_type, days_since_onset)


def _no_hook(_step: str) -> None:
    return None


def run_import(
    session_factory: SessionFactory,
    *,
    settings: KeyserverSettings,
    fetcher: Fetcher,
    now: datetime,
    step_hook: Callable[[str], None] = _no_hook,
) -> ImportReport:
    """Import the new files of every source valid at ``now`` (see the module's docstring).

    A source that fails (its index cannot be fetched, it went backwards) is reported and
    does not stop the others. No new file starts once half of ``import_lease`` has passed.
    """
    budget_end = time.monotonic() + settings.import_lease.total_seconds() / 2
    with unit_of_work(session_factory) as session:
        sources = [
            _snapshot(session, source)
            for source in import_store.active_import_sources(session, now)
        ]
    report = ImportReport()
    for source in sources:
        run = SourceRun(source=source.name, last_success_at=source.last_success_at)
        report.sources.append(run)
        try:
            _run_source(session_factory, source, run, settings, fetcher, now, budget_end, step_hook)
        except FetchError as error:
            _logger.warning("import %s: index fetch failed (%s)", source.name, error.code)
            run.error = error.code
        _finish_source(session_factory, source, run, now)
    return report


def _snapshot(session: Session, source: ImportSource) -> _Source:
    keys = tuple(
        (key.key_id, key.key_version, load_public_key(key.public_key_pem.encode("ascii")))
        for key in import_store.import_source_keys(session, source.id)
    )
    return _Source(
        id=source.id,
        name=source.name,
        index_location=source.index_location,
        export_root=source.export_root,
        region=source.region,
        report_type=source.report_type,
        index_etag=source.index_etag,
        index_last_modified=source.index_last_modified,
        last_success_at=source.last_success_at,
        keys=keys,
    )


def _run_source(
    session_factory: SessionFactory,
    source: _Source,
    run: SourceRun,
    settings: KeyserverSettings,
    fetcher: Fetcher,
    now: datetime,
    budget_end: float,
    step_hook: Callable[[str], None],
) -> None:
    index = fetcher.fetch(
        source.index_location,
        max_bytes=settings.import_max_index_bytes,
        etag=source.index_etag,
        last_modified=source.index_last_modified,
    )
    if index.body is None:  # not modified: every file it lists was handled
        return
    parsed = parse_index(index.body)
    names = parsed.names
    run.bad_names += parsed.bad_names
    run.duplicate_listings += parsed.duplicates
    with unit_of_work(session_factory) as session:
        handled = import_store.handled_file_names(session, source.id)
        latest = import_store.latest_imported_name(session, source.id)
    # An empty index is a quiet peer whose files all aged out, not one going back.
    went_back = bool(names) and latest is not None and latest not in names
    if went_back and latest is not None and all(name < latest for name in names):
        _logger.warning("import %s: the index went back; nothing imported", source.name)
        run.error = INDEX_WENT_BACK
        return
    new = sorted(name for name in names if name not in handled)
    for position, name in enumerate(new):
        if position >= settings.import_files_per_run or time.monotonic() > budget_end:
            run.files_pending = len(new) - position
            return
        try:
            data = fetcher.fetch(
                join_location(source.export_root, name), max_bytes=settings.import_max_file_bytes
            ).body
        except FetchError as error:
            if error.code != "too_large":
                # May pass: retried next run, and nothing after it is taken before it.
                _logger.warning("import %s: a file fetch failed (%s)", source.name, error.code)
                run.error = error.code
                run.files_pending = len(new) - position
                return
            _record(session_factory, source, name, _Refusal(error.code), run, settings, now)
            continue
        verdict = _examine(data or b"", source, settings)
        _record(session_factory, source, name, verdict, run, settings, now, step_hook)
    # Every file the index lists is handled: an unchanged index may now be answered 304.
    source_validators = (index.etag, index.last_modified)
    with unit_of_work(session_factory) as session:
        stored = import_store.import_source_by_id(session, source.id)
        if stored is not None:
            stored.index_etag, stored.index_last_modified = source_validators


def _examine(data: bytes, source: _Source, settings: KeyserverSettings) -> _Refusal | _Accepted:
    """Refuse the file, or accept it for its keys to be checked as they are stored.

    The signature is checked over the raw export.bin before a single key is decoded, as a
    phone does: a file nobody we trust signed costs no more than that.
    """
    try:
        members = read_export_members(data, max_member_size=settings.import_max_file_bytes)
        signatures = (
            parse_signature_list(members.export_sig) if members.export_sig is not None else ()
        )
        refusal = _signature_refusal(members.export_bin, signatures, source)
        if refusal is not None:
            return _Refusal(refusal)
        records = parse_key_records(members.export_bin)
    except ExportFormatError as error:
        return _Refusal(error.code.value)
    region = (records.region or "").strip().upper()
    if not _REGION.fullmatch(region):
        region = source.region
    return _Accepted(records=records, region=region)


def _report_type(export_type: ExportReportType | None, default: str) -> str | None:
    """The stored report type of an exported key; None for one relayed from elsewhere."""
    if export_type is None or export_type == ExportReportType.UNKNOWN:
        return default
    diagnosis = ReportType.from_export(export_type)
    return diagnosis.value if diagnosis is not None else None


def _signature_refusal(
    export_bin: bytes, signatures: Sequence[ExportSignature], source: _Source
) -> str | None:
    """None when a signature verifies with one of the source's keys, else why not.

    Every signature is tried with every key: the names a file gives its signatures only
    say which refusal it is.
    """
    if not signatures:
        return UNSIGNED
    checks = check_signatures(export_bin, signatures, [key for _, _, key in source.keys])
    if any(check.verified for check in checks):
        return None
    named = {(key_id, key_version) for key_id, key_version, _ in source.keys}
    for signature in signatures:
        info = signature.signature_info
        if (
            info is not None
            and (
                info.verification_key_id or "",
                info.verification_key_version or "",
            )
            in named
        ):
            return BAD_SIGNATURE
    return UNKNOWN_KEY


def _record(
    session_factory: SessionFactory,
    source: _Source,
    name: str,
    verdict: _Refusal | _Accepted,
    run: SourceRun,
    settings: KeyserverSettings,
    now: datetime,
    step_hook: Callable[[str], None] = _no_hook,
) -> None:
    """Store the file's record and, when accepted, its keys: one transaction.

    A key no valid producer writes, met while the keys stream in, rolls the whole
    transaction back; the file is then recorded as refused, in a transaction of its own.
    """
    try:
        record = _store_file(session_factory, source, name, verdict, settings, now, step_hook)
    except _FileRefused as refused:
        verdict = _Refusal(refused.reason)
        try:
            record = _store_file(session_factory, source, name, verdict, settings, now)
        except IntegrityError:
            record = None
    except IntegrityError:
        record = None
    if record is None:
        # Another importer handled the file first (its lease had expired): nothing of
        # this attempt was kept, and its record stands.
        _logger.info("import %s: a file was handled concurrently", source.name)
        return
    if isinstance(verdict, _Refusal):
        _logger.warning("import %s: a file was refused (%s)", source.name, verdict.reason)
        run.files_refused[verdict.reason] = run.files_refused.get(verdict.reason, 0) + 1
        return
    run.files_imported += 1
    run.keys_inserted += record.keys_inserted
    run.keys_revised += record.keys_revised
    run.keys_duplicate += record.keys_duplicate
    run.keys_dropped += record.keys_dropped


def _store_file(
    session_factory: SessionFactory,
    source: _Source,
    name: str,
    verdict: _Refusal | _Accepted,
    settings: KeyserverSettings,
    now: datetime,
    step_hook: Callable[[str], None] = _no_hook,
) -> ImportFile:
    with unit_of_work(session_factory) as session:
        record = import_store.add_import_file(
            session,
            ImportFile(
                source_id=source.id,
                filename=name,
                status=IMPORT_REFUSED if isinstance(verdict, _Refusal) else IMPORT_IMPORTED,
                reason=verdict.reason if isinstance(verdict, _Refusal) else None,
                keys_inserted=0,
                keys_revised=0,
                keys_duplicate=0,
                keys_dropped=0,
                created_at=now,
            ),
        )
        if isinstance(verdict, _Accepted):
            checks = _KeyChecks(
                records=verdict.records,
                default_report_type=source.report_type,
                window=KeyWindow.at(now, settings),
                max_symptom_onset_days=settings.max_symptom_onset_days,
            )
            outcome = store_import(
                session,
                checks,
                region=verdict.region,
                source_id=source.id,
                file_id=record.id,
                settings=settings,
                now=now,
            )
            record.keys_inserted = outcome.inserted
            record.keys_revised = outcome.revised
            record.keys_duplicate = outcome.duplicates + checks.superseded
            record.keys_dropped = checks.dropped
            step_hook("keys_stored")
    return record


def _finish_source(
    session_factory: SessionFactory, source: _Source, run: SourceRun, now: datetime
) -> None:
    with unit_of_work(session_factory) as session:
        stored = import_store.import_source_by_id(session, source.id)
        if stored is None:  # removed meanwhile
            return
        stored.last_error = run.error
        if run.error is None:
            stored.last_success_at = now
            run.last_success_at = now
