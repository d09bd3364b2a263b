"""Import sources: the peers whose signed export files this server imports.

A source names the peer's ``index.txt`` (an http(s) URL, or a file on a disk handed over
offline), the root its lines are relative to, the public keys that must have signed its
files (several, so the peer can rotate), the region and report type to apply where its
files carry none, and when it is valid. Disabling a source stops its imports; what it
brought stays until its deadline, or until an operator purges it.

Functions here take the caller's session and never commit; time is a parameter.
"""

# Error names say what went wrong, as keyserver.errors does.
# ruff: noqa: N818

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from crypto.errors import InvalidKey
from crypto.signing import load_public_key, public_key_pem
from exposure.clock import require_aware
from exposure.tek import ReportType
from keyserver.models import IMPORT_IMPORTED, ImportSource, ImportSourceKey
from keyserver.store import imports as import_store

__all__ = [
    "DuplicateImportSource",
    "ImportSourceError",
    "InvalidImportSource",
    "SourceKey",
    "UnknownImportSource",
    "add_import_source",
    "disable_import_source",
    "find_import_source",
    "import_source_facts",
    "list_import_sources",
    "normalized_location",
    "purge_import_source",
]

#: Source names appear in metrics and logs: a closed, harmless alphabet.
SOURCE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
#: ``verification_key_id`` / ``verification_key_version`` as peers write them.
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# As keyserver.export.configs: stored keys find a region with LIKE '%,XX,%'.
_REGION = re.compile(r"[A-Z0-9-]{1,20}")
_LOCATION_LENGTH = 1000
#: Report types a peer's keys may be given by default (a negative test publishes nothing).
DEFAULT_REPORT_TYPES = (ReportType.CONFIRMED, ReportType.LIKELY, ReportType.USER_REPORT)


class ImportSourceError(ValueError):
    """An import source change is refused; ``code`` is stable for scripts."""

    code = "import_source_error"


class InvalidImportSource(ImportSourceError):
    code = "invalid_import_source"


class DuplicateImportSource(ImportSourceError):
    code = "duplicate_import_source"


class UnknownImportSource(ImportSourceError):
    code = "unknown_import_source"


@dataclass(frozen=True)
class SourceKey:
    """A public key that signs a source's files, as its files name it."""

    key_id: str
    key_version: str
    public_key_pem: str


def is_url(location: str) -> bool:
    """Whether ``location`` is fetched over HTTP (else it is a local path)."""
    return urlsplit(location).scheme in ("http", "https")


def normalized_location(value: str, name: str) -> str:
    """``value`` as a source or mirror location: an http(s) URL with a host, or an absolute
    path; :class:`InvalidImportSource` otherwise."""
    value = value.strip()
    if not value or len(value) > _LOCATION_LENGTH:
        raise InvalidImportSource(f"{name} must be 1 to {_LOCATION_LENGTH} characters")
    if is_url(value):
        if not urlsplit(value).netloc:
            raise InvalidImportSource(f"{name} must name a host")
        return value
    if urlsplit(value).scheme and len(urlsplit(value).scheme) > 1:  # C:\\ is a path
        raise InvalidImportSource(f"{name} must be an http(s) URL or a local path")
    if not Path(value).is_absolute():
        raise InvalidImportSource(f"{name} must be an absolute path when it is not a URL")
    return value


def _check_key(key: SourceKey) -> SourceKey:
    for value, name in ((key.key_id, "key id"), (key.key_version, "key version")):
        if not _KEY_NAME.fullmatch(value):
            raise InvalidImportSource(f"{name} must be 1 to 100 letters, digits, '_', '.' or '-'")
    try:
        loaded = load_public_key(key.public_key_pem.encode("ascii"))
    except (InvalidKey, UnicodeEncodeError) as error:
        raise InvalidImportSource(
            f"key {key.key_id}/{key.key_version} is not a P-256 public key in PEM"
        ) from error
    return SourceKey(key.key_id, key.key_version, public_key_pem(loaded).decode("ascii"))


def add_import_source(
    session: Session,
    *,
    name: str,
    index_location: str,
    export_root: str,
    keys: Sequence[SourceKey],
    region: str,
    now: datetime,
    report_type: str = ReportType.CONFIRMED.value,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> ImportSource:
    """Record a peer to import from; its files are fetched by the next ``import`` run.

    Raises :class:`InvalidImportSource` (a bad name, location, key, region, report type or
    validity) or :class:`DuplicateImportSource`.
    """
    require_aware(now, "now")
    if not SOURCE_NAME_PATTERN.fullmatch(name):
        raise InvalidImportSource(
            "name must be 1 to 100 lower-case letters, digits or '-', not starting with '-'"
        )
    index = normalized_location(index_location, "index")
    root = normalized_location(export_root, "export root")
    if is_url(index) != is_url(root):
        raise InvalidImportSource("index and export root must both be URLs or both be paths")
    normalized_region = region.strip().upper()
    if not _REGION.fullmatch(normalized_region):
        raise InvalidImportSource("region must be 1 to 20 letters, digits or hyphens")
    if report_type not in {member.value for member in DEFAULT_REPORT_TYPES}:
        allowed = ", ".join(member.value for member in DEFAULT_REPORT_TYPES)
        raise InvalidImportSource(f"report type must be one of {allowed}")
    if not keys:
        raise InvalidImportSource("a source needs at least one public key")
    checked = [_check_key(key) for key in keys]
    if len({(key.key_id, key.key_version) for key in checked}) != len(checked):
        raise InvalidImportSource("each key id and version may be given once")
    start = valid_from or now
    require_aware(start, "valid_from")
    if valid_until is not None:
        require_aware(valid_until, "valid_until")
        if valid_until <= start:
            raise InvalidImportSource("until must be after from")
    if import_store.import_source_by_name(session, name) is not None:
        raise DuplicateImportSource(f"an import source named {name!r} exists")
    source = ImportSource(
        name=name,
        index_location=index,
        export_root=root,
        region=normalized_region,
        report_type=report_type,
        valid_from=start,
        valid_until=valid_until,
        created_at=now,
    )
    rows = [
        ImportSourceKey(
            key_id=key.key_id,
            key_version=key.key_version,
            public_key_pem=key.public_key_pem,
            created_at=now,
        )
        for key in checked
    ]
    return import_store.add_import_source(session, source, rows)


def list_import_sources(session: Session) -> list[ImportSource]:
    return import_store.import_sources(session)


def find_import_source(session: Session, name_or_id: str) -> ImportSource:
    """The source named ``name_or_id`` (or with that id); :class:`UnknownImportSource`."""
    source = import_store.import_source_by_name(session, name_or_id)
    if source is None and name_or_id.isdigit():
        source = import_store.import_source_by_id(session, int(name_or_id))
    if source is None:
        raise UnknownImportSource(f"no import source {name_or_id!r}")
    return source


def disable_import_source(source: ImportSource, now: datetime) -> bool:
    """Import nothing more from the source after ``now``; False if it had already ended."""
    require_aware(now, "now")
    if source.valid_until is not None and source.valid_until <= now:
        return False
    source.valid_until = now
    return True


@dataclass(frozen=True)
class PurgedSource:
    keys: int
    records: int


def purge_import_source(session: Session, source: ImportSource, now: datetime) -> PurgedSource:
    """Disconnect the source: disable it, delete every key it brought and its records.

    Keys another source or a phone also sent are kept under their first provenance, which
    is the only one stored (a duplicate is never stored twice).
    """
    disable_import_source(source, now)
    keys = import_store.delete_imported_keys(session, source.id)
    records = import_store.delete_import_files(session, source.id)
    return PurgedSource(keys=keys, records=records)


def import_source_facts(session: Session, source: ImportSource) -> dict[str, object]:
    """A source as an operator reads it: where, who signs, what it brought."""
    counts = import_store.import_file_counts(session, source.id)
    refused: dict[str, int] = {}
    for (status, reason), count in counts.items():
        if status != IMPORT_IMPORTED:
            refused[reason or "unknown"] = refused.get(reason or "unknown", 0) + count
    return {
        "id": source.id,
        "name": source.name,
        "index": source.index_location,
        "export_root": source.export_root,
        "region": source.region,
        "report_type": source.report_type,
        "keys": [
            {"key_id": key.key_id, "key_version": key.key_version}
            for key in import_store.import_source_keys(session, source.id)
        ],
        "valid_from": source.valid_from,
        "valid_until": source.valid_until,
        "last_success_at": source.last_success_at,
        "last_error": source.last_error,
        "files_imported": sum(
            count for (status, _), count in counts.items() if status == IMPORT_IMPORTED
        ),
        "files_refused": refused,
        "keys_stored": import_store.imported_key_count(session, source.id),
    }
