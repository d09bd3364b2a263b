"""The blob stores: one behaviour, checked on the filesystem and on a real S3 HTTP server.

The S3 store talks to moto's S3-compatible server over HTTP on localhost, so requests,
headers and pagination go through botocore exactly as they would against AWS or MinIO.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from keyserver.export.blobstore import (
    DEFAULT_CACHE_CONTROL,
    INDEX_CACHE_CONTROL,
    INDEX_CONTENT_TYPE,
    ZIP_CACHE_CONTROL,
    ZIP_CONTENT_TYPE,
    BlobStore,
    FilesystemBlobStore,
    S3BlobStore,
    blob_store_from_settings,
    check_name,
    etag_of,
)
from keyserver.settings import KeyserverSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

REGION = "us-east-1"

UNSAFE_NAMES = [
    "",
    "/",
    "/etc/passwd",
    "../secret.zip",
    "v1/../../secret.zip",
    "v1/..",
    "./v1/a.zip",
    "v1/./a.zip",
    "v1//a.zip",
    "v1/",
    "v1\\..\\secret.zip",
    "v1/.hidden.zip",
    "v1/a\x00.zip",
    "v1/a\n.zip",
    "v1/\ud800.zip",
    "v1/" + "a" * 252 + ".zip",  # a 256-byte segment
    "/".join(["abcdefg"] * 128) + ".zip",  # over 1024 bytes in all
]


def put_zip(store: BlobStore, name: str, data: bytes) -> None:
    store.put(name, data, content_type=ZIP_CONTENT_TYPE, cache_control=ZIP_CACHE_CONTROL)


def put_index(store: BlobStore, name: str, data: bytes) -> None:
    store.put(name, data, content_type=INDEX_CONTENT_TYPE, cache_control=INDEX_CACHE_CONTROL)


# ---- an S3-compatible server over HTTP ------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and no developer's real AWS files on the way."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def s3_client(s3_endpoint: str, aws_credentials: None) -> S3Client:
    client: S3Client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    return client


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    name = f"exports-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "filesystem":
        return FilesystemBlobStore(tmp_path / "exports")
    client: S3Client = request.getfixturevalue("s3_client")
    return S3BlobStore(request.getfixturevalue("bucket"), client=client)


# ---- behaviour shared by both stores --------------------------------------------------


def test_etag_is_the_quoted_sha256_prefix() -> None:
    # SHA-256 of the empty string: e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 ...
    assert etag_of(b"") == '"e3b0c44298fc1c149afbf4c8996fb924"'


def test_zip_round_trips_with_its_headers(store: BlobStore) -> None:
    data = os.urandom(70_000)
    before = datetime.now(UTC)
    put_zip(store, "v1/100-200-00001.zip", data)
    after = datetime.now(UTC)

    blob = store.get("v1/100-200-00001.zip")

    assert blob is not None
    assert blob.data == data
    assert blob.content_type == ZIP_CONTENT_TYPE
    assert blob.cache_control == "public, max-age=86400"
    assert blob.etag == '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    assert blob.last_modified.utcoffset() == timedelta(0)
    # S3 keeps whole seconds.
    assert before - timedelta(seconds=1) <= blob.last_modified <= after + timedelta(seconds=1)


def test_index_round_trips_with_its_headers(store: BlobStore) -> None:
    text = b"v1/100-200-00001.zip\nv1/200-300-00001.zip"
    put_index(store, "v1/index.txt", text)

    blob = store.get("v1/index.txt")

    assert blob is not None
    assert blob.data == text
    assert blob.content_type == "text/plain"
    assert blob.cache_control == "no-cache, max-age=0"


def test_missing_objects_are_none(store: BlobStore) -> None:
    put_zip(store, "v1/100-200-00001.zip", b"zip")
    assert store.get("v1/100-200-00002.zip") is None
    assert store.get("v2/index.txt") is None
    # A name below an existing object is no path through it.
    assert store.get("v1/100-200-00001.zip/index.txt") is None


def test_overwrite_replaces_bytes_and_etag(store: BlobStore) -> None:
    put_index(store, "v1/index.txt", b"v1/1-2-00001.zip")
    first = store.get("v1/index.txt")
    put_index(store, "v1/index.txt", b"v1/1-2-00001.zip\nv1/2-3-00001.zip")
    second = store.get("v1/index.txt")

    assert first is not None
    assert second is not None
    assert second.data == b"v1/1-2-00001.zip\nv1/2-3-00001.zip"
    assert second.etag != first.etag
    assert store.list("v1/") == ["v1/index.txt"]


def test_etag_depends_on_the_bytes_only(store: BlobStore) -> None:
    put_zip(store, "a/1-2-00001.zip", b"same")
    put_zip(store, "b/1-2-00001.zip", b"same")
    first, second = store.get("a/1-2-00001.zip"), store.get("b/1-2-00001.zip")
    assert first is not None
    assert second is not None
    assert first.etag == second.etag == etag_of(b"same")


def test_delete_removes_and_tolerates_missing(store: BlobStore) -> None:
    put_zip(store, "v1/1-2-00001.zip", b"one")
    put_zip(store, "v1/2-3-00001.zip", b"two")

    store.delete("v1/1-2-00001.zip")
    store.delete("v1/1-2-00001.zip")
    store.delete("never/written.zip")

    assert store.get("v1/1-2-00001.zip") is None
    assert store.list("") == ["v1/2-3-00001.zip"]


def test_list_filters_by_string_prefix_and_sorts(store: BlobStore) -> None:
    names = [
        "v2/5-6-00001.zip",
        "v1/index.txt",
        "v10/1-2-00001.zip",
        "v1/3-4-00002.zip",
        "v1/3-4-00001.zip",
        "v1/nested/1-2-00001.zip",
        "top.zip",
    ]
    for name in names:
        if name.endswith(".zip"):
            put_zip(store, name, name.encode())
        else:
            put_index(store, name, b"")

    assert store.list("") == sorted(names)
    assert store.list("v1/") == [
        "v1/3-4-00001.zip",
        "v1/3-4-00002.zip",
        "v1/index.txt",
        "v1/nested/1-2-00001.zip",
    ]
    assert store.list("v1") == [*store.list("v1/"), "v10/1-2-00001.zip"]
    assert store.list("v1/3-4") == ["v1/3-4-00001.zip", "v1/3-4-00002.zip"]
    assert store.list("v1/nested/") == ["v1/nested/1-2-00001.zip"]
    assert store.list("v3/") == []
    assert store.list("v1/index.txt/") == []
    assert store.list("../") == []


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_are_refused(store: BlobStore, name: str) -> None:
    with pytest.raises(ValueError, match="object name"):
        put_zip(store, name, b"x")
    with pytest.raises(ValueError, match="object name"):
        store.get(name)
    with pytest.raises(ValueError, match="object name"):
        store.delete(name)
    assert store.list("") == []


# ---- S3 specifics ---------------------------------------------------------------------


def test_s3_sends_content_type_and_cache_control(s3_client: S3Client, bucket: str) -> None:
    store = S3BlobStore(bucket, client=s3_client)
    put_zip(store, "v1/1-2-00001.zip", b"zip")
    put_index(store, "v1/index.txt", b"v1/1-2-00001.zip")

    # What a CDN in front of the bucket would see.
    zip_head = s3_client.head_object(Bucket=bucket, Key="v1/1-2-00001.zip")
    index_head = s3_client.head_object(Bucket=bucket, Key="v1/index.txt")
    assert (zip_head["ContentType"], zip_head["CacheControl"]) == (
        "application/zip",
        "public, max-age=86400",
    )
    assert (index_head["ContentType"], index_head["CacheControl"]) == (
        "text/plain",
        "no-cache, max-age=0",
    )


def test_s3_object_without_headers_is_not_cached(s3_client: S3Client, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="v1/foreign.bin", Body=b"x")

    blob = S3BlobStore(bucket, client=s3_client).get("v1/foreign.bin")

    assert blob is not None
    assert blob.cache_control == DEFAULT_CACHE_CONTROL


def test_s3_list_follows_every_page(s3_client: S3Client, bucket: str) -> None:
    store = S3BlobStore(bucket, client=s3_client, page_size=2)
    names = [f"v1/{n}-{n + 1}-00001.zip" for n in range(7)]
    for name in reversed(names):
        put_zip(store, name, b"z")
    calls: list[str] = []

    def count(**_: Any) -> None:
        calls.append("ListObjectsV2")

    s3_client.meta.events.register("before-call.s3.ListObjectsV2", count)

    assert store.list("v1/") == names
    assert len(calls) == 4


def test_s3_errors_other_than_missing_key_propagate(s3_client: S3Client) -> None:
    store = S3BlobStore(f"missing-{uuid.uuid4().hex[:16]}", client=s3_client)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        store.get("v1/index.txt")


def test_s3_page_size_is_bounded(s3_client: S3Client) -> None:
    with pytest.raises(ValueError, match="page_size"):
        S3BlobStore("bucket", client=s3_client, page_size=1001)


# ---- filesystem specifics -------------------------------------------------------------


def test_concurrent_reader_sees_only_whole_versions(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    size = 4 * 1024 * 1024
    versions = [bytes([version]) * size + bytes([version + 10]) for version in range(4)]
    name = "v1/index.txt"
    put_index(store, name, versions[0])
    writes_left = 40
    failure: list[BaseException] = []

    def write() -> None:
        try:
            for round_number in range(writes_left):
                put_index(store, name, versions[round_number % len(versions)])
        except BaseException as error:  # reported by the test thread below
            failure.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while writer.is_alive() or reads == 0:
        blob = store.get(name)
        assert blob is not None
        assert blob.data in versions, "a reader saw a partly written object"
        reads += 1
    writer.join()

    assert not failure
    assert reads > 1


def test_put_leaves_only_the_object(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    put_zip(store, "v1/1-2-00001.zip", b"one")
    put_zip(store, "v1/1-2-00001.zip", b"two")

    assert sorted(os.listdir(tmp_path / "v1")) == ["1-2-00001.zip"]
    mode = stat.S_IMODE((tmp_path / "v1" / "1-2-00001.zip").stat().st_mode)
    assert mode == 0o644


def test_failed_write_keeps_the_old_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemBlobStore(tmp_path)
    put_index(store, "v1/index.txt", b"old")

    def broken_fsync(_: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        put_index(store, "v1/index.txt", b"new")
    monkeypatch.undo()

    blob = store.get("v1/index.txt")
    assert blob is not None
    assert blob.data == b"old"
    assert os.listdir(tmp_path / "v1") == ["index.txt"]


def test_leftovers_of_a_crashed_write_are_not_listed(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    put_zip(store, "v1/1-2-00001.zip", b"one")
    (tmp_path / "v1" / ".put-abc123.tmp").write_bytes(b"half")
    (tmp_path / "v1" / ".cache").mkdir()
    (tmp_path / "v1" / ".cache" / "x.zip").write_bytes(b"hidden")

    assert store.list("") == ["v1/1-2-00001.zip"]


@pytest.mark.parametrize(
    ("name", "content_type", "cache_control"),
    [
        ("v1/1-2-00001.zip", "application/octet-stream", ZIP_CACHE_CONTROL),
        ("v1/1-2-00001.zip", ZIP_CONTENT_TYPE, INDEX_CACHE_CONTROL),
        ("v1/index.txt", INDEX_CONTENT_TYPE, ZIP_CACHE_CONTROL),
        ("v1/key.pem", "application/x-pem-file", ZIP_CACHE_CONTROL),
    ],
)
def test_filesystem_refuses_metadata_it_cannot_keep(
    tmp_path: Path, name: str, content_type: str, cache_control: str
) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(ValueError, match="filesystem store"):
        store.put(name, b"x", content_type=content_type, cache_control=cache_control)
    assert store.list("") == []


def test_filesystem_names_never_reach_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret.zip").write_bytes(b"secret")
    store = FilesystemBlobStore(tmp_path / "exports")
    for name in ("../secret.zip", str(tmp_path / "secret.zip"), "a/../../secret.zip"):
        with pytest.raises(ValueError, match="object name"):
            store.get(name)
    assert (tmp_path / "secret.zip").read_bytes() == b"secret"


SAFE_SEGMENT = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    directories=st.lists(SAFE_SEGMENT, min_size=0, max_size=3),
    stem=SAFE_SEGMENT,
    data=st.binary(max_size=64),
)
def test_safe_names_round_trip_at_their_path(
    tmp_path: Path, directories: list[str], stem: str, data: bytes
) -> None:
    store = FilesystemBlobStore(tmp_path)
    name = "/".join([*directories, f"{stem}.zip"])

    put_zip(store, name, data)

    blob = store.get(name)
    assert blob is not None
    assert blob.data == data
    assert store.path(name) == tmp_path.joinpath(*directories, f"{stem}.zip")
    assert name in store.list("/".join(directories))


@given(name=st.text(alphabet=st.sampled_from("ab./\\\x00~:"), max_size=16) | st.text(max_size=40))
def test_any_name_is_refused_or_stays_inside_the_root(name: str) -> None:
    root = Path("/srv/exports")
    try:
        path = FilesystemBlobStore(root).path(name)
    except ValueError:
        return
    assert check_name(name) == name
    assert path.is_relative_to(root)
    assert path != root
    assert os.path.normpath(path) == str(path)


# ---- settings -------------------------------------------------------------------------


def test_settings_default_to_the_filesystem_under_the_data_dir(tmp_path: Path) -> None:
    store = blob_store_from_settings(KeyserverSettings(), tmp_path)
    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "exports"


def test_settings_may_name_the_export_directory(tmp_path: Path) -> None:
    settings = KeyserverSettings(export_directory=tmp_path / "cdn-origin")
    store = blob_store_from_settings(settings, tmp_path / "var")
    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "cdn-origin"


def test_settings_build_an_s3_store_for_the_endpoint(
    s3_endpoint: str, s3_client: S3Client, bucket: str, tmp_path: Path
) -> None:
    settings = KeyserverSettings(
        export_store="s3",
        export_s3_bucket=bucket,
        export_s3_endpoint_url=s3_endpoint,
        export_s3_region=REGION,
    )
    store = blob_store_from_settings(settings, tmp_path)
    assert isinstance(store, S3BlobStore)

    put_zip(store, "v1/1-2-00001.zip", b"through settings")

    stored = s3_client.get_object(Bucket=bucket, Key="v1/1-2-00001.zip")["Body"].read()
    assert stored == b"through settings"
