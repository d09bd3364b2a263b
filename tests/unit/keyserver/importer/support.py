"""Helpers of the import tests: a peer served over real HTTP, sources, signed files."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crypto.signing import FileSigner
from exposure.db import SessionFactory, unit_of_work
from exposure.export import ExportContents, ExportKey, SignatureInfo, build_export
from exposure.tek import interval_number, utc_midnight
from keyserver.importer.fetch import Fetcher
from keyserver.importer.run import ImportReport, run_import
from keyserver.importer.sources import SourceKey, add_import_source
from keyserver.models import Exposure, ImportFile, ImportSource
from keyserver.settings import KeyserverSettings


@dataclass
class PeerState:
    """What the peer's handler does: delay answers, count requests by path."""

    delay_seconds: float = 0.0
    requests: list[str] = field(default_factory=list)


class _PeerHandler(http.server.SimpleHTTPRequestHandler):
    state: PeerState

    def __init__(self, *args: Any, state: PeerState, **kwargs: Any) -> None:
        self.state = state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.state.requests.append(self.path)
        if self.state.delay_seconds:
            time.sleep(self.state.delay_seconds)
        super().do_GET()

    def log_message(self, *_args: Any) -> None:
        return None  # quiet: the tests' output is pytest's


@dataclass
class Peer:
    """A directory served over HTTP by a real server in a thread."""

    root: Path
    url: str
    state: PeerState
    #: The index's modification time: moved on by whole seconds at each change, as
    #: Last-Modified has a one-second granularity.
    index_mtime: float = 1_700_000_000.0

    def publish(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def index(self, names: Sequence[str], path: str = "v1/index.txt") -> None:
        self.publish(path, "\n".join(names).encode("ascii"))
        self.index_mtime += 10
        os.utime(self.root / path, (self.index_mtime, self.index_mtime))


@contextmanager
def serve_peer(root: Path) -> Iterator[Peer]:
    root.mkdir(parents=True, exist_ok=True)
    state = PeerState()
    handler = partial(_PeerHandler, state=state, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Peer(root=root, url=f"http://127.0.0.1:{server.server_address[1]}", state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetcher(*, timeout: float = 5.0, retries: int = 0) -> Fetcher:
    return Fetcher(
        timeout=timedelta(seconds=timeout),
        retries=retries,
        backoff=timedelta(0),
        sleep=lambda _seconds: None,
    )


def add_source(
    factory: SessionFactory,
    peer: Peer,
    keys: Sequence[SourceKey],
    *,
    now: datetime,
    name: str = "peer",
    region: str = "US",
    index: str = "v1/index.txt",
) -> int:
    with unit_of_work(factory) as session:
        source: ImportSource = add_import_source(
            session,
            name=name,
            index_location=f"{peer.url}/{index}",
            export_root=peer.url,
            keys=keys,
            region=region,
            valid_from=now - timedelta(days=1),
            now=now,
        )
        return source.id


def import_now(
    factory: SessionFactory, settings: KeyserverSettings, now: datetime, **options: Any
) -> ImportReport:
    own = options.pop("fetch", None) or fetcher()
    try:
        return run_import(factory, settings=settings, fetcher=own, now=now, **options)
    finally:
        own.close()


def stored_count(factory: SessionFactory) -> int:
    with unit_of_work(factory) as session:
        return int(session.scalar(select(func.count()).select_from(Exposure)) or 0)


def records(factory: SessionFactory) -> dict[str, tuple[str, str | None]]:
    """filename → (status, reason) of every import record."""
    with unit_of_work(factory) as session:
        rows = session.scalars(select(ImportFile)).all()
        return {row.filename: (row.status, row.reason) for row in rows}


@dataclass
class PeerSigner:
    """A peer's own signing key and how its files name it."""

    signer: FileSigner = field(default_factory=FileSigner.generate)
    key_id: str = "999"
    key_version: str = "v1"

    def source_key(self) -> SourceKey:
        return SourceKey(
            key_id=self.key_id,
            key_version=self.key_version,
            public_key_pem=self.signer.public_key_pem().decode("ascii"),
        )

    def info(self) -> SignatureInfo:
        return SignatureInfo(
            verification_key_id=self.key_id, verification_key_version=self.key_version
        )

    def export(
        self,
        keys: Sequence[ExportKey],
        now: datetime,
        *,
        revised: Sequence[ExportKey] = (),
        region: str | None = "US",
    ) -> bytes:
        end = int(now.timestamp())
        contents = ExportContents(
            start_timestamp=end - 3600,
            end_timestamp=end,
            region=region,
            keys=tuple(keys),
            revised_keys=tuple(revised),
        )
        return build_export(contents, [(self.info(), self.signer)])


def day_keys(now: datetime, count: int, **options: Any) -> list[ExportKey]:
    """``count`` random day-long keys of yesterday (expired: no embargo)."""
    start = interval_number(utc_midnight(now) - timedelta(days=1))
    return [
        ExportKey(
            key_data=os.urandom(16),
            rolling_start_interval_number=start,
            rolling_period=144,
            **options,
        )
        for _ in range(count)
    ]
