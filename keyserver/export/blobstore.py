"""Where export files live: a small protocol with a filesystem and an S3-compatible store.

Names are relative, ``/``-separated paths such as ``v1/123-456-00001.zip``. Both stores accept
the same names (:func:`check_name`), so a deployment can move from one to the other without
renaming anything, and a name can never reach outside the store's root or bucket prefix.

Every write is atomic: a reader sees the previous object or the whole new one. S3 gives that
for each ``PutObject``; the filesystem store writes a hidden temporary file next to the target,
fsyncs it and renames it over the old one.

The filesystem store keeps no metadata beside the bytes, so its directory can also be served
as-is by any static web server: the content type and cache control of an object follow from
the extension of its name (:data:`FILESYSTEM_TYPES`), and a write whose metadata disagrees with
the extension is refused rather than silently dropped.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from keyserver.settings import KeyserverSettings

ZIP_CONTENT_TYPE = "application/zip"
#: Export files never change once listed, so caches may keep them for a day (as the reference).
ZIP_CACHE_CONTROL = "public, max-age=86400"
#: The list of a config's current files, written beside them under its filename root.
INDEX_FILENAME = "index.txt"
INDEX_CONTENT_TYPE = "text/plain"
#: index.txt changes with every batch: caches must revalidate it on every request.
INDEX_CACHE_CONTROL = "no-cache, max-age=0"

#: Metadata of objects written by something other than :meth:`BlobStore.put` (an S3 object
#: without headers): opaque bytes that no cache should keep without asking.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_CACHE_CONTROL = INDEX_CACHE_CONTROL

#: Content type and cache control of the filesystem store, by extension of the name.
FILESYSTEM_TYPES: dict[str, tuple[str, str]] = {
    ".zip": (ZIP_CONTENT_TYPE, ZIP_CACHE_CONTROL),
    ".txt": (INDEX_CONTENT_TYPE, INDEX_CACHE_CONTROL),
}

#: S3's limit on a key, in UTF-8 bytes.
MAX_NAME_BYTES = 1024
#: The usual limit on one file name (ext4, XFS, APFS).
MAX_SEGMENT_BYTES = 255

# Export files are public data that a static web server may need to read.
_FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Blob:
    """One stored object, read whole."""

    data: bytes
    content_type: str
    cache_control: str
    #: Quoted strong ETag derived from the bytes alone, so both stores agree on it.
    etag: str
    last_modified: datetime


class BlobStore(Protocol):
    """Object storage for export files (see the module docstring for the naming rules)."""

    def put(self, name: str, data: bytes, *, content_type: str, cache_control: str) -> None:
        """Store ``data`` under ``name`` atomically, replacing any previous object."""
        ...

    def get(self, name: str) -> Blob | None:
        """The object stored under ``name``, or None."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; a missing object is not an error."""
        ...

    def list(self, prefix: str) -> builtins.list[str]:
        """The names that start with ``prefix`` (plain string prefix, as S3), sorted."""
        ...


def etag_of(data: bytes) -> str:
    """The quoted strong ETag of ``data``: the first 128 bits of its SHA-256, in hex."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe object name, else raise ValueError.

    Refused: empty names or segments, absolute paths, backslashes, control characters, and
    any segment starting with ``.`` (which covers ``.`` and ``..`` and keeps the filesystem
    store's hidden temporary files out of the namespace). Lengths follow S3 (1024 bytes) and
    common filesystems (255 bytes per segment).
    """
    if not name:
        raise ValueError("object name is empty")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("object name is not valid UTF-8 text") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise ValueError(f"object name is longer than {MAX_NAME_BYTES} bytes")
    if "\\" in name:
        raise ValueError("object name contains a backslash")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ValueError("object name contains a control character")
    if name.startswith("/"):
        raise ValueError("object name is absolute")
    for segment in name.split("/"):
        if not segment:
            raise ValueError("object name has an empty segment")
        if segment.startswith("."):
            raise ValueError("object name has a segment starting with '.'")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise ValueError(f"object name has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return name


class FilesystemBlobStore:
    """Objects as files under ``root``; the embedded default.

    A reader opens the file once and reads from that descriptor, and a writer replaces the
    file with ``os.replace``, so a reader keeps the complete old file even while it is being
    overwritten. Files are written mode 0644 (they are public), directories as needed.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(os.path.abspath(root))

    @property
    def root(self) -> Path:
        return self._root

    def path(self, name: str) -> Path:
        """Where ``name`` lives on disk (always inside the root); ValueError if unsafe."""
        return self._root.joinpath(*check_name(name).split("/"))

    def put(self, name: str, data: bytes, *, content_type: str, cache_control: str) -> None:
        target = self.path(name)
        expected = _filesystem_metadata(name)
        if (content_type, cache_control) != expected:
            raise ValueError(
                f"the filesystem store serves {name!r} as {expected[0]!r} with "
                f"{expected[1]!r}; got {content_type!r} with {cache_control!r}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".put-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fchmod(stream.fileno(), _FILE_MODE)
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(target.parent)

    def get(self, name: str) -> Blob | None:
        path = self.path(name)
        try:
            with open(path, "rb") as stream:
                status = os.fstat(stream.fileno())
                data = stream.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        content_type, cache_control = _filesystem_metadata(name)
        return Blob(
            data=data,
            content_type=content_type,
            cache_control=cache_control,
            etag=etag_of(data),
            last_modified=datetime.fromtimestamp(status.st_mtime, tz=UTC),
        )

    def delete(self, name: str) -> None:
        path = self.path(name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()

    def list(self, prefix: str) -> builtins.list[str]:
        # Walk only the directory named by the prefix's complete segments, then filter. A
        # prefix whose complete segments are no valid name can match no stored name.
        directory_part, _, _ = prefix.rpartition("/")
        try:
            start = self.path(directory_part) if directory_part else self._root
        except ValueError:
            return []
        names: builtins.list[str] = []
        for directory, subdirectories, files in os.walk(start):
            subdirectories[:] = [entry for entry in subdirectories if not entry.startswith(".")]
            relative = Path(directory).relative_to(self._root).as_posix()
            base = "" if relative == "." else relative + "/"
            for file_name in files:
                if file_name.startswith("."):
                    continue  # a write in progress, or the leftover of a crashed one
                name = base + file_name
                if name.startswith(prefix):
                    names.append(name)
        return sorted(names)


def _filesystem_metadata(name: str) -> tuple[str, str]:
    suffix = PurePosixPath(name).suffix.lower()
    try:
        return FILESYSTEM_TYPES[suffix]
    except KeyError:
        known = ", ".join(sorted(FILESYSTEM_TYPES))
        raise ValueError(f"the filesystem store keeps only {known} files, not {name!r}") from None


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: without it a power cut can bring the old file back."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class S3BlobStore:
    """Objects in an S3-compatible bucket (AWS, MinIO, Ceph, GCS interoperability, ...)."""

    def __init__(self, bucket: str, *, client: S3Client, page_size: int = 1000) -> None:
        """``page_size``: names asked for per ListObjectsV2 call (S3 returns at most 1000)."""
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._bucket = bucket
        self._client = client
        self._page_size = page_size

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, name: str, data: bytes, *, content_type: str, cache_control: str) -> None:
        self._client.put_object(
            Bucket=self._bucket,
            Key=check_name(name),
            Body=data,
            ContentType=content_type,
            CacheControl=cache_control,
        )

    def get(self, name: str) -> Blob | None:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=check_name(name))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        body = response["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        return Blob(
            data=data,
            content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE,
            cache_control=response.get("CacheControl") or DEFAULT_CACHE_CONTROL,
            etag=etag_of(data),
            last_modified=response["LastModified"].astimezone(UTC),
        )

    def delete(self, name: str) -> None:
        # S3 answers 204 for a missing key too.
        self._client.delete_object(Bucket=self._bucket, Key=check_name(name))

    def list(self, prefix: str) -> builtins.list[str]:
        names: builtins.list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": self._page_size}
        )
        for page in pages:
            names.extend(entry["Key"] for entry in page.get("Contents", []) if "Key" in entry)
        return sorted(names)


def blob_store_from_settings(settings: KeyserverSettings, data_dir: Path) -> BlobStore:
    """The store ``settings.export_store`` names (filesystem: ``<data_dir>/exports`` unless set).

    The S3 client takes its credentials from boto3's usual chain (environment, shared files,
    instance role).
    """
    if settings.export_store == "s3":
        # Imported here: boto3 takes long to import and only S3 deployments need it.
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=settings.export_s3_endpoint_url,
            region_name=settings.export_s3_region,
        )
        return S3BlobStore(settings.export_s3_bucket, client=client)
    return FilesystemBlobStore(settings.export_directory or data_dir / "exports")
