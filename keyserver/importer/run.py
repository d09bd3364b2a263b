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
   a publish (:func:`keyserver.service.transform.imported_key`) and stored by
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crypto.signing import load_public_key
from exposure.db import SessionFactory, unit_of_work
from exposure.export import (
    ExportFormatError,
    ExportSignature,
    check_signatures,
    parse_export_bin,
    parse_signature_list,
    read_export_members,
)
from exposure.export.model import ExportKey
from exposure.export.model import ReportType as ExportReportType
from exposure.tek import ReportType
from keyserver.importer.fetch import Fetcher, FetchError, join_location
from keyserver.importer.index import parse_index
from keyserver.models import IMPORT_IMPORTED, IMPORT_REFUSED, ImportFile, ImportSource
from keyserver.service.publish import store_import
from keyserver.service.transform import KeyRejected, KeyWindow, ValidatedKey, imported_key
from keyserver.settings import KeyserverSettings
from keyserver.store import imports as import_store

__all__ = ["STEPS", "ImportReport", "SourceRun", "run_import"]

_logger = logging.getLogger(__name__)

#: What ``step_hook`` is called with: after a file's keys are stored, before the commit.
STEPS = ("keys_stored",)
_REGION = re.compile(r"[A-Z0-9-]{1,20}")
#: Why a source's run stopped early.
INDEX_WENT_BACK = "index_went_back"
#: Why a file was refused, besides the export reader's own codes.
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
INVALID_KEY = "invalid_key"


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
    keys: list[ValidatedKey]
    dropped: int


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
        verdict = _examine(data or b"", source, settings, now)
        _record(session_factory, source, name, verdict, run, settings, now, step_hook)
    # Every file the index lists is handled: an unchanged index may now be answered 304.
    source_validators = (index.etag, index.last_modified)
    with unit_of_work(session_factory) as session:
        stored = import_store.import_source_by_id(session, source.id)
        if stored is not None:
            stored.index_etag, stored.index_last_modified = source_validators


def _examine(
    data: bytes, source: _Source, settings: KeyserverSettings, now: datetime
) -> _Refusal | _Accepted:
    """Refuse the file, or return every key to store; nothing is stored here.

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
        contents = parse_export_bin(members.export_bin)
    except ExportFormatError as error:
        return _Refusal(error.code.value)
    if contents.key_length_problems():
        return _Refusal("bad_key_length")
    region = (contents.region or "").strip().upper()
    if not _REGION.fullmatch(region):
        region = source.region
    window = KeyWindow.at(now, settings)
    keys: list[ValidatedKey] = []
    dropped = 0
    # Revised keys after the keys: when a key is in both, its revision is the last word.
    # Few distinct report types per file: each is mapped once.
    report_types: dict[ExportReportType | None, str | None] = {}
    for exported in (*contents.keys, *contents.revised_keys):
        if exported.report_type not in report_types:
            report_types[exported.report_type] = _report_type(exported, source.report_type)
        report_type = report_types[exported.report_type]
        if report_type is None:
            dropped += 1
            continue
        try:
            keys.append(
                imported_key(
                    exported.key_data,
                    start=exported.rolling_start_interval_number,
                    count=exported.rolling_period,
                    transmission_risk=exported.transmission_risk_level,
                    report_type=report_type,
                    days_since_onset=exported.days_since_onset_of_symptoms,
                    region=region,
                    window=window,
                    settings=settings,
                )
            )
        except KeyRejected as rejected:
            if rejected.malformed:
                return _Refusal(INVALID_KEY)
            dropped += 1
    return _Accepted(keys=keys, dropped=dropped)


def _report_type(exported: ExportKey, default: str) -> str | None:
    """The stored report type of an exported key; None for one relayed from elsewhere."""
    if exported.report_type is None or exported.report_type == ExportReportType.UNKNOWN:
        return default
    diagnosis = ReportType.from_export(exported.report_type)
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
    """Store the file's record and, when accepted, its keys: one transaction."""
    try:
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
                outcome = store_import(
                    session,
                    verdict.keys,
                    source_id=source.id,
                    file_id=record.id,
                    settings=settings,
                    now=now,
                )
                record.keys_inserted = outcome.inserted
                record.keys_revised = outcome.revised
                record.keys_duplicate = outcome.duplicates
                record.keys_dropped = verdict.dropped
                step_hook("keys_stored")
    except IntegrityError:
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
