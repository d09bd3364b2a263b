"""Mirrors over real HTTP: copies byte for byte, files before the index, files gone upstream
removed, a failed fetch leaving the previous copy whole, an unusable index left unused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from exposure.db import SessionFactory, make_session_factory, unit_of_work
from keyserver.export.blobstore import FilesystemBlobStore
from keyserver.importer.mirror import MirrorReport, add_mirror, disable_mirror, run_mirrors
from keyserver.importer.sources import InvalidImportSource
from keyserver.models import Mirror
from keyserver.settings import KeyserverSettings
from tests.keys import sealed_key_store
from tests.unit.keyserver.export.support import make_config
from tests.unit.keyserver.importer.support import Peer, PeerSigner, day_keys, fetcher, serve_peer

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


@dataclass
class Env:
    factory: SessionFactory
    store: FilesystemBlobStore
    peer: Peer

    def add(self, **overrides: str) -> None:
        arguments = {
            "name": "older-app",
            "index_location": f"{self.peer.url}/v1/index.txt",
            "export_root": self.peer.url,
            "mirror_root": "older",
        }
        arguments.update(overrides)
        with unit_of_work(self.factory) as session:
            add_mirror(session, now=NOW, **arguments)

    def run(self, **options: float) -> MirrorReport:
        own = fetcher(**options)
        try:
            return run_mirrors(
                self.factory, store=self.store, settings=KeyserverSettings(), fetcher=own, now=NOW
            )
        finally:
            own.close()

    def copy(self, name: str) -> bytes | None:
        blob = self.store.get(f"older/{name}")
        return blob.data if blob is not None else None


@pytest.fixture
def env(engine: Engine, tmp_path: Path) -> Iterator[Env]:
    with serve_peer(tmp_path / "peer") as peer:
        yield Env(make_session_factory(engine), FilesystemBlobStore(tmp_path / "cdn"), peer)


def _files(peer: Peer, names: list[str]) -> dict[str, bytes]:
    signer = PeerSigner()
    files = {name: signer.export(day_keys(NOW, 2), NOW) for name in names}
    for name, data in files.items():
        peer.publish(name, data)
    peer.index(names)
    return files


def test_a_mirror_copies_the_index_and_files_as_they_are(env: Env) -> None:
    files = _files(env.peer, ["v1/1-2-00001.zip", "v1/2-3-00001.zip"])
    env.add()

    [run] = env.run().mirrors

    assert (run.files_listed, run.files_copied, run.error) == (2, 2, None)
    for name, data in files.items():
        assert env.copy(name) == data
    assert env.copy("v1/index.txt") == (env.peer.root / "v1/index.txt").read_bytes()
    # Copied once: a later run fetches only the (unchanged, 304) index.
    requests = len(env.peer.state.requests)
    [again] = env.run().mirrors
    assert again.files_copied == 0
    assert env.peer.state.requests[requests:] == ["/v1/index.txt"]


def test_files_gone_upstream_are_removed_after_the_new_index_is_copied(env: Env) -> None:
    _files(env.peer, ["v1/1-2-00001.zip", "v1/2-3-00001.zip"])
    env.add()
    env.run()
    newer = _files(env.peer, ["v1/3-4-00001.zip"])
    env.peer.index(["v1/2-3-00001.zip", "v1/3-4-00001.zip"])

    [run] = env.run().mirrors

    assert (run.files_copied, run.files_removed) == (1, 1)
    assert env.copy("v1/1-2-00001.zip") is None
    assert env.copy("v1/3-4-00001.zip") == newer["v1/3-4-00001.zip"]
    assert env.copy("v1/index.txt") == b"v1/2-3-00001.zip\nv1/3-4-00001.zip"


def test_a_failed_fetch_keeps_the_previous_copy_whole(env: Env) -> None:
    _files(env.peer, ["v1/1-2-00001.zip"])
    env.add()
    env.run()
    env.peer.index(["v1/1-2-00001.zip", "v1/2-3-00001.zip"])  # listed, but not there

    [run] = env.run().mirrors

    assert run.error == "not_found"
    assert env.copy("v1/index.txt") == b"v1/1-2-00001.zip"
    assert env.copy("v1/1-2-00001.zip") is not None
    with unit_of_work(env.factory) as session:
        assert session.query(Mirror).one().last_error == "not_found"


def test_an_index_naming_what_cannot_be_copied_is_not_used(env: Env) -> None:
    _files(env.peer, ["v1/1-2-00001.zip"])
    env.add()
    env.peer.index(["v1/1-2-00001.zip", "../../secrets.zip"])

    [run] = env.run().mirrors

    assert run.error == "bad_index"
    assert env.store.list("older/") == []


def test_a_disabled_mirror_copies_nothing(env: Env) -> None:
    _files(env.peer, ["v1/1-2-00001.zip"])
    env.add()
    with unit_of_work(env.factory) as session:
        assert disable_mirror(session.query(Mirror).one(), NOW - timedelta(hours=1))

    assert env.run().mirrors == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Older"}, "name must be"),
        ({"index_location": "https://elsewhere.example/v1/index.txt"}, "under the export root"),
        ({"mirror_root": ".hidden"}, "mirror root must be"),
        ({"mirror_root": "v1"}, "an export config writes under"),
    ],
)
def test_bad_mirrors_are_refused(env: Env, overrides: dict[str, str], message: str) -> None:
    with unit_of_work(env.factory) as session:
        make_config(session, sealed_key_store("keyserver"), root="v1")
    with pytest.raises(InvalidImportSource, match=message):
        env.add(**overrides)
