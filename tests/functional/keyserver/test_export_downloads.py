"""The export download routes over HTTP, on a filesystem store, as a phone or a CDN sees them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keyserver.export.api import create_router
from keyserver.export.blobstore import (
    INDEX_CACHE_CONTROL,
    INDEX_CONTENT_TYPE,
    ZIP_CACHE_CONTROL,
    ZIP_CONTENT_TYPE,
    FilesystemBlobStore,
    etag_of,
)

ZIP_NAME = "v1/1600000000-1600014400-00001.zip"
INDEX_TEXT = b"v1/1600000000-1600014400-00001.zip\nv1/1600014400-1600028800-00001.zip"
ZIP_BYTES = b"PK\x03\x04" + os.urandom(5000)


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    store = FilesystemBlobStore(tmp_path / "exports")
    store.put(
        "v1/index.txt",
        INDEX_TEXT,
        content_type=INDEX_CONTENT_TYPE,
        cache_control=INDEX_CACHE_CONTROL,
    )
    store.put(ZIP_NAME, ZIP_BYTES, content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL)
    return store


@pytest.fixture
def client(store: FilesystemBlobStore) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(create_router(store))
    with TestClient(app) as client:
        yield client


def test_index_is_plain_text_that_caches_revalidate(client: TestClient) -> None:
    response = client.get("/exports/v1/index.txt")

    assert response.status_code == 200
    assert response.content == INDEX_TEXT
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["cache-control"] == "no-cache, max-age=0"
    assert response.headers["etag"] == etag_of(INDEX_TEXT)
    modified = parsedate_to_datetime(response.headers["last-modified"])
    assert abs(modified - datetime.now(UTC)) < timedelta(minutes=1)


def test_export_file_is_a_zip_cached_for_a_day(client: TestClient) -> None:
    response = client.get(f"/exports/{ZIP_NAME}")

    assert response.status_code == 200
    assert response.content == ZIP_BYTES
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.headers["content-length"] == str(len(ZIP_BYTES))
    assert response.headers["etag"] == etag_of(ZIP_BYTES)


@pytest.mark.parametrize(
    "if_none_match",
    [
        etag_of(ZIP_BYTES),
        f"W/{etag_of(ZIP_BYTES)}",
        f'"elsewhere", {etag_of(ZIP_BYTES)}',
        "*",
    ],
)
def test_matching_if_none_match_is_not_modified(client: TestClient, if_none_match: str) -> None:
    response = client.get(f"/exports/{ZIP_NAME}", headers={"if-none-match": if_none_match})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag_of(ZIP_BYTES)
    assert response.headers["cache-control"] == ZIP_CACHE_CONTROL
    assert "last-modified" in response.headers


def test_other_etag_gets_the_new_index(client: TestClient, store: FilesystemBlobStore) -> None:
    old_etag = client.get("/exports/v1/index.txt").headers["etag"]
    newer = INDEX_TEXT + b"\nv1/1600028800-1600043200-00001.zip"
    store.put(
        "v1/index.txt", newer, content_type=INDEX_CONTENT_TYPE, cache_control=INDEX_CACHE_CONTROL
    )

    response = client.get("/exports/v1/index.txt", headers={"if-none-match": old_etag})

    assert response.status_code == 200
    assert response.content == newer
    assert response.headers["etag"] == etag_of(newer) != old_etag


def test_if_modified_since_without_etag(client: TestClient, store: FilesystemBlobStore) -> None:
    modified = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    stamp = modified.timestamp() + 0.75  # sub-second part, which HTTP dates cannot carry
    os.utime(store.path(ZIP_NAME), (stamp, stamp))
    path = f"/exports/{ZIP_NAME}"

    def status(since: datetime | str) -> int:
        value = since if isinstance(since, str) else format_datetime(since, usegmt=True)
        return client.get(path, headers={"if-modified-since": value}).status_code

    assert client.get(path).headers["last-modified"] == "Fri, 01 Mar 2024 12:00:00 GMT"
    assert status(modified) == 304
    assert status(modified + timedelta(days=1)) == 304
    assert status(modified - timedelta(seconds=1)) == 200
    assert status("not a date") == 200
    # If-None-Match wins over If-Modified-Since.
    response = client.get(
        path,
        headers={"if-none-match": '"other"', "if-modified-since": "Sat, 01 Mar 2025 00:00:00 GMT"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/exports/v1/index.txt", f"/exports/{ZIP_NAME}"])
def test_head_has_the_headers_and_no_body(client: TestClient, path: str) -> None:
    full = client.get(path)
    head = client.head(path)

    assert head.status_code == 200
    assert head.content == b""
    for header in ("content-type", "content-length", "cache-control", "etag", "last-modified"):
        assert head.headers[header] == full.headers[header]


@pytest.mark.parametrize(
    "path",
    [
        "/exports/v1/1600000000-1600014400-00002.zip",  # well formed, not written
        "/exports/v2/index.txt",
        "/exports/v1/index.TXT",
        "/exports/v1/1-2-3.zip",
        "/exports/v1/1-2-000001.zip",
        "/exports/v1/a-2-00001.zip",
        "/exports/v1/1-2-00001.zip.sig",
        "/exports/v1/%2E%2E%2Fsecret.zip",
        "/exports/v1/1-2-00001.zip%0A",
        "/exports/v1/%D9%A1-2-00001.zip",  # an Arabic-Indic digit
        "/exports/%2E%2E/index.txt",
        "/exports/.hidden/index.txt",
        "/exports/v1/nested/index.txt",
        "/exports/v1",
        "/exports/",
        "/exports/" + "r" * 101 + "/index.txt",
    ],
)
def test_everything_else_is_a_json_404(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert response.headers["cache-control"] == "no-store"


def test_head_of_a_missing_file_is_a_bodiless_404(client: TestClient) -> None:
    response = client.head("/exports/v1/9-10-00001.zip")

    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"


def test_files_outside_the_store_are_unreachable(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "index.txt").write_bytes(b"outside")
    assert client.get("/exports/%2E%2E/index.txt").status_code == 404
    assert client.get("/exports/./index.txt").status_code == 404


def test_writes_are_visible_without_restart(client: TestClient, store: FilesystemBlobStore) -> None:
    name = "v1/1600014400-1600028800-00001.zip"
    assert client.get(f"/exports/{name}").status_code == 404

    store.put(name, b"PK new", content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL)

    assert client.get(f"/exports/{name}").content == b"PK new"
    store.delete(name)
    assert client.get(f"/exports/{name}").status_code == 404
