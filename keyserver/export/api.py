"""Download routes of the export files: ``GET|HEAD /exports/<root>/index.txt`` and the zips.

These serve the blob store directly for the embedded default and as a CDN origin. Responses
carry the stored content type and cache control (zips: a day, public; index.txt: revalidate
every time), a strong ``ETag`` and ``Last-Modified``, and answer ``304`` to a matching
``If-None-Match`` (or, without one, an ``If-Modified-Since`` no older than the object).

Only the names the export worker writes are served: a root of one path segment
(:data:`ROOT_PATTERN`) holding ``index.txt`` and ``<start>-<end>-<NNNNN>.zip``. Anything else
under ``/exports/`` is ``404 {"error": "not found"}``, marked ``no-store`` so that a cache in
front does not keep answering 404 once the object exists.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from exposure.http.blocking import run_blocking
from exposure.http.errors import ErrorBody
from exposure.http.openapi import Answer, DocumentedRouter, Operation, Parameter
from keyserver.export.blobstore import INDEX_FILENAME, Blob, BlobStore

EXPORTS_PATH = "/exports"
#: One path segment, not starting with "." (so never "." or ".."). Nested roots are not served.
ROOT_PATTERN = re.compile(r"(?!\.)[A-Za-z0-9_.-]{1,100}")
#: ``<start>-<end>-<NNNNN>.zip`` as the worker names files (ASCII digits only).
EXPORT_FILENAME_PATTERN = re.compile(r"[0-9]+-[0-9]+-[0-9]{5}\.zip")

NOT_FOUND_BODY = json.dumps({"error": "not found"}).encode()


class NotFound(BaseModel):
    """The body of a 404 under ``/exports/``."""

    error: str = Field(description='Always "not found".')


_ROOT = Parameter(
    "root",
    "path",
    "The export series' filename root (one path segment).",
    schema={"type": "string", "pattern": ROOT_PATTERN.pattern},
    required=True,
)
_CONDITIONS = (
    Parameter("If-None-Match", "header", "ETags held; 304 when one matches (weak comparison)."),
    Parameter(
        "If-Modified-Since",
        "header",
        "HTTP date; 304 when the object is no newer (ignored with If-None-Match).",
    ),
)
_CACHE_HEADERS = {
    "Cache-Control": "zips: public for a day; index.txt: revalidate every time.",
    "ETag": "Strong entity tag of the object.",
    "Last-Modified": "When the object was written.",
}


def _download(method: str, path: str, operation_id: str, summary: str, body: Answer) -> Operation:
    head = method == "HEAD"
    ok = Answer(f"{body.description} (headers only)", headers=body.headers) if head else body
    return Operation(
        method=method,
        path=path,
        operation_id=operation_id,
        summary=summary + (", headers only" if head else ""),
        description="Static files the export worker writes, served from the blob store for "
        "the embedded default and as a CDN's origin. Public: phones download them.",
        tag="exports",
        parameters=(_ROOT, *_CONDITIONS)
        if "{filename}" not in path
        else (
            _ROOT,
            Parameter(
                "filename",
                "path",
                "`<start>-<end>-<NNNNN>.zip`, as index.txt lists it.",
                schema={"type": "string"},
                required=True,
            ),
            *_CONDITIONS,
        ),
        answers={
            200: ok,
            304: Answer("Not modified.", headers=_CACHE_HEADERS),
            404: Answer(
                "No such file (never cached: `no-store`).",
                None if head else NotFound,
                headers={"Cache-Control": "no-store"},
            ),
            500: Answer("`internal_error`: the blob store failed.", None if head else ErrorBody),
        },
    )


_INDEX = Answer(
    "The current export files of the series, one object name a line, oldest first.",
    str,
    media_type="text/plain",
    headers=_CACHE_HEADERS,
)
_FILE = Answer(
    "A signed export file: a zip of export.bin and export.sig.",
    bytes,
    media_type="application/zip",
    headers=_CACHE_HEADERS,
)
_INDEX_PATH = f"{EXPORTS_PATH}/{{root}}/{INDEX_FILENAME}"
_FILE_PATH = f"{EXPORTS_PATH}/{{root}}/{{filename}}"
GET_INDEX = _download("GET", _INDEX_PATH, "getExportIndex", "An export series' index", _INDEX)
HEAD_INDEX = _download("HEAD", _INDEX_PATH, "headExportIndex", "An export series' index", _INDEX)
GET_FILE = _download("GET", _FILE_PATH, "getExportFile", "One export file", _FILE)
HEAD_FILE = _download("HEAD", _FILE_PATH, "headExportFile", "One export file", _FILE)


def export_object_name(root: str, filename: str) -> str | None:
    """The blob name behind ``/exports/<root>/<filename>``, or None if it is not served."""
    if ROOT_PATTERN.fullmatch(root) is None:
        return None
    if filename != INDEX_FILENAME and EXPORT_FILENAME_PATTERN.fullmatch(filename) is None:
        return None
    return f"{root}/{filename}"


def create_router(store: BlobStore) -> APIRouter:
    """The download routes, reading from ``store``."""
    router = DocumentedRouter()

    async def serve(request: Request, name: str | None) -> Response:
        # Reading a blob is blocking I/O (a file or an HTTP call to S3).
        blob = None if name is None else await run_blocking(store.get, name)
        if blob is None:
            response = Response(
                NOT_FOUND_BODY,
                status_code=404,
                headers={"content-type": "application/json", "cache-control": "no-store"},
            )
        elif _not_modified(request, blob):
            response = Response(status_code=304, headers=_cache_headers(blob))
        else:
            # The stored content type is sent as is (no charset added), as S3 or a CDN would.
            headers = {"content-type": blob.content_type, **_cache_headers(blob)}
            response = Response(blob.data, headers=headers)
        if request.method == "HEAD":
            # Same status and headers (Content-Length included), no body.
            return Response(status_code=response.status_code, headers=dict(response.headers))
        return response

    async def get_export_index(request: Request, root: str) -> Response:
        """The list of current export files of ``root``, oldest first."""
        return await serve(request, export_object_name(root, INDEX_FILENAME))

    async def get_export_file(request: Request, root: str, filename: str) -> Response:
        """One signed export file (a zip of export.bin and export.sig)."""
        return await serve(request, export_object_name(root, filename))

    # The index first: its path would also match the file route.
    for operation in (GET_INDEX, HEAD_INDEX):
        router.add_documented_api_route(operation, get_export_index)
    for operation in (GET_FILE, HEAD_FILE):
        router.add_documented_api_route(operation, get_export_file)

    @router.api_route(
        f"{EXPORTS_PATH}/{{rest:path}}", methods=["GET", "HEAD"], include_in_schema=False
    )
    async def export_not_found(request: Request) -> Response:
        # Nested roots and other paths hold no file: the same 404 as a missing one.
        return await serve(request, None)

    return router


def _cache_headers(blob: Blob) -> dict[str, str]:
    return {
        "cache-control": blob.cache_control,
        "etag": blob.etag,
        "last-modified": format_datetime(blob.last_modified.astimezone(UTC), usegmt=True),
    }


def _not_modified(request: Request, blob: Blob) -> bool:
    """RFC 9110 §13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_listed(if_none_match, blob.etag)
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # HTTP dates are always GMT
    # Last-Modified is sent in whole seconds, so compare in whole seconds.
    return _whole_seconds(blob.last_modified) <= since


def _etag_listed(header: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match requires: ``W/"x"`` matches ``"x"``."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/")
        if tag == etag:
            return True
    return False


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def index_url(base_url: str, filename_root: str) -> str:
    """Where phones download a config's index.txt from this server."""
    return f"{base_url.rstrip('/')}{EXPORTS_PATH}/{filename_root}/{INDEX_FILENAME}"
