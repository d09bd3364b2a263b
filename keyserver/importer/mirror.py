"""Mirrors: a peer's index and files copied as they are into the blob store.

While an older app's phones are moved to this service, a CDN can take over the peer's URL
and serve these copies, byte for byte what the peer published and signed. Each run, per
mirror:

1. fetch the peer's index (conditionally); an index with a line that is not a relative
   ``.zip`` path is not used (``bad_index``): a copy must be whole or not at all;
2. copy each listed file not yet copied, in the index's order (files never change under a
   name, so a copy is never fetched twice);
3. only then write the index, so the copied index never names a file that is not there;
4. delete the copies the new index no longer lists: files that disappeared upstream.

A fetch that fails stops the mirror's run before its index is written: the previous copy
of the index stays, and every file it names is still there. Files are not verified here:
phones check the peer's signatures themselves, and a mirror must not differ from its peer.
"""

# ruff: noqa: N818

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from exposure.clock import require_aware
from exposure.db import SessionFactory, unit_of_work
from keyserver.export.blobstore import (
    INDEX_CACHE_CONTROL,
    INDEX_CONTENT_TYPE,
    ZIP_CACHE_CONTROL,
    ZIP_CONTENT_TYPE,
    BlobStore,
)
from keyserver.export.configs import FILENAME_ROOT_PATTERN
from keyserver.importer.fetch import Fetcher, FetchError, join_location
from keyserver.importer.index import is_relative_name, parse_index
from keyserver.importer.sources import (
    SOURCE_NAME_PATTERN,
    ImportSourceError,
    InvalidImportSource,
    is_url,
    normalized_location,
)
from keyserver.models import Mirror
from keyserver.settings import KeyserverSettings
from keyserver.store import export_configs as export_config_store
from keyserver.store import imports as import_store

__all__ = [
    "BAD_INDEX",
    "MirrorReport",
    "MirrorRun",
    "UnknownMirror",
    "add_mirror",
    "disable_mirror",
    "find_mirror",
    "list_mirrors",
    "mirror_facts",
    "run_mirrors",
]

_logger = logging.getLogger(__name__)

#: Why a mirror's run used nothing of the index it fetched.
BAD_INDEX = "bad_index"
_ZIP = re.compile(r".+\.zip")


class UnknownMirror(ImportSourceError):
    code = "unknown_mirror"


def add_mirror(
    session: Session,
    *,
    name: str,
    index_location: str,
    export_root: str,
    mirror_root: str,
    now: datetime,
) -> Mirror:
    """Copy a peer's index and files under ``mirror_root`` of the blob store from now on.

    The index must lie under ``export_root`` (its copy keeps its place: ``<mirror root>/
    <index path>``). Raises :class:`InvalidImportSource` for a bad name, location or root,
    a root another mirror or an export config writes under, or a name in use.
    """
    require_aware(now, "now")
    if not SOURCE_NAME_PATTERN.fullmatch(name):
        raise InvalidImportSource("name must be 1 to 100 lower-case letters, digits or '-'")
    index = normalized_location(index_location, "index")
    root = normalized_location(export_root, "export root")
    if is_url(index) != is_url(root):
        raise InvalidImportSource("index and export root must both be URLs or both be paths")
    if _index_path(index, root) is None:
        raise InvalidImportSource("the index must be a .txt file under the export root")
    if not FILENAME_ROOT_PATTERN.fullmatch(mirror_root):
        raise InvalidImportSource(
            "mirror root must be 1 to 100 letters, digits, '_', '.' or '-', not starting with '.'"
        )
    if export_config_store.export_config_by_filename_root(session, mirror_root) is not None:
        raise InvalidImportSource(f"an export config writes under {mirror_root!r}")
    if import_store.mirror_by_root(session, mirror_root) is not None:
        raise InvalidImportSource(f"a mirror writes under {mirror_root!r}")
    if import_store.mirror_by_name(session, name) is not None:
        raise InvalidImportSource(f"a mirror named {name!r} exists")
    return import_store.add_mirror(
        session,
        Mirror(
            name=name,
            index_location=index,
            export_root=root,
            mirror_root=mirror_root,
            created_at=now,
        ),
    )


def _index_path(index: str, root: str) -> str | None:
    """Where the index lies under the export root, if it does."""
    prefix = root.rstrip("/") + "/"
    if not index.startswith(prefix):
        return None
    relative = index[len(prefix) :]
    if not is_relative_name(relative) or not relative.endswith(".txt"):
        return None
    return relative


def list_mirrors(session: Session) -> list[Mirror]:
    return import_store.mirrors(session)


def find_mirror(session: Session, name: str) -> Mirror:
    mirror = import_store.mirror_by_name(session, name)
    if mirror is None:
        raise UnknownMirror(f"no mirror {name!r}")
    return mirror


def disable_mirror(mirror: Mirror, now: datetime) -> bool:
    """Copy nothing more; the copies stay for the CDN until an operator deletes them."""
    require_aware(now, "now")
    if mirror.valid_until is not None and mirror.valid_until <= now:
        return False
    mirror.valid_until = now
    return True


def mirror_facts(mirror: Mirror) -> dict[str, object]:
    return {
        "id": mirror.id,
        "name": mirror.name,
        "index": mirror.index_location,
        "export_root": mirror.export_root,
        "mirror_root": mirror.mirror_root,
        "valid_until": mirror.valid_until,
        "last_success_at": mirror.last_success_at,
        "last_error": mirror.last_error,
    }


@dataclass
class MirrorRun:
    mirror: str
    files_listed: int = 0
    files_copied: int = 0
    files_removed: int = 0
    error: str | None = None
    last_success_at: datetime | None = None


@dataclass
class MirrorReport:
    mirrors: list[MirrorRun] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"mirrors": [asdict(run) for run in self.mirrors]}


@dataclass(frozen=True)
class _Target:
    id: int
    name: str
    index_location: str
    export_root: str
    mirror_root: str
    index_path: str
    etag: str | None
    last_modified: str | None
    last_success_at: datetime | None


def run_mirrors(
    session_factory: SessionFactory,
    *,
    store: BlobStore,
    settings: KeyserverSettings,
    fetcher: Fetcher,
    now: datetime,
) -> MirrorReport:
    """One pass over every active mirror (see the module's docstring)."""
    with unit_of_work(session_factory) as session:
        targets = [
            _Target(
                id=mirror.id,
                name=mirror.name,
                index_location=mirror.index_location,
                export_root=mirror.export_root,
                mirror_root=mirror.mirror_root,
                index_path=_index_path(mirror.index_location, mirror.export_root) or "index.txt",
                etag=mirror.index_etag,
                last_modified=mirror.index_last_modified,
                last_success_at=mirror.last_success_at,
            )
            for mirror in import_store.active_mirrors(session, now)
        ]
    report = MirrorReport()
    for target in targets:
        run = MirrorRun(mirror=target.name, last_success_at=target.last_success_at)
        report.mirrors.append(run)
        validators: tuple[str | None, str | None] | None = None
        try:
            validators = _mirror_one(target, run, store, settings, fetcher)
        except FetchError as error:
            _logger.warning("mirror %s: a fetch failed (%s)", target.name, error.code)
            run.error = error.code
        with unit_of_work(session_factory) as session:
            mirror = import_store.mirror_by_id(session, target.id)
            if mirror is None:
                continue
            mirror.last_error = run.error
            if run.error is None:
                mirror.last_success_at = run.last_success_at = now
                if validators is not None:
                    mirror.index_etag, mirror.index_last_modified = validators
    return report


def _mirror_one(
    target: _Target,
    run: MirrorRun,
    store: BlobStore,
    settings: KeyserverSettings,
    fetcher: Fetcher,
) -> tuple[str | None, str | None] | None:
    """Copy what the index lists, then the index, then drop what it no longer lists."""
    index = fetcher.fetch(
        target.index_location,
        max_bytes=settings.import_max_index_bytes,
        etag=target.etag,
        last_modified=target.last_modified,
    )
    if index.body is None:
        return None
    parsed = parse_index(index.body)
    if parsed.bad_names or not all(_ZIP.fullmatch(name) for name in parsed.names):
        _logger.warning("mirror %s: the index lists names that cannot be copied", target.name)
        run.error = BAD_INDEX
        return None
    root = target.mirror_root
    present = set(store.list(f"{root}/"))
    run.files_listed = len(parsed.names)
    for name in parsed.names:
        copy = f"{root}/{name}"
        if copy in present:
            continue
        data = fetcher.fetch(
            join_location(target.export_root, name), max_bytes=settings.import_max_file_bytes
        ).body
        store.put(copy, data or b"", content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL)
        run.files_copied += 1
    index_copy = f"{root}/{target.index_path}"
    store.put(
        index_copy, index.body, content_type=INDEX_CONTENT_TYPE, cache_control=INDEX_CACHE_CONTROL
    )
    listed = {index_copy, *(f"{root}/{name}" for name in parsed.names)}
    for gone in sorted(present - listed):
        store.delete(gone)
        run.files_removed += 1
    return index.etag, index.last_modified
