"""Fetch a peer's index and files: over HTTP (bounded, timed, retried) or from a directory.

A peer is untrusted and may be slow or broken, so every fetch has a size limit (checked
against the announced length and again while reading), an overall deadline (a server
dripping one byte at a time never trips a per-read timeout), and a few retries with
doubling back-off for what may pass (timeouts, refused connections, 429 and 5xx). The
index is fetched conditionally (``If-None-Match``, ``If-Modified-Since``), so an unchanged
peer costs one short answer. A failure is a :class:`FetchError` with a stable ``code``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from keyserver.importer.sources import is_url

__all__ = ["FetchError", "FetchResult", "Fetcher", "join_location"]

_CHUNK = 64 * 1024
_MAX_REDIRECTS = 5


class FetchError(Exception):
    """A fetch failed; ``code`` is stable (``timeout``, ``unreachable``, ``not_found``,
    ``http_status``, ``too_large``), ``transient`` says whether a retry may help."""

    def __init__(self, code: str, detail: str, *, transient: bool) -> None:
        super().__init__(detail)
        self.code = code
        self.transient = transient


@dataclass(frozen=True)
class FetchResult:
    """The body (None: not modified since the validators given) and its validators."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


def join_location(root: str, name: str) -> str:
    """``name`` (an index line, already checked to be a relative path) under ``root``."""
    if is_url(root):
        return f"{root.rstrip('/')}/{name}"
    return str(Path(root) / name)


class Fetcher:
    """Fetches locations as the importer's settings say; ``sleep`` is a parameter for tests."""

    def __init__(
        self,
        *,
        timeout: timedelta,
        retries: int,
        backoff: timedelta,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._seconds = timeout.total_seconds()
        if self._seconds <= 0:
            raise ValueError("timeout must be positive")
        self._retries = retries
        self._backoff = backoff.total_seconds()
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=self._seconds,
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            transport=transport,
            # Compressed bodies would make the size limit count the wrong bytes.
            headers={"Accept": "*/*", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        location: str,
        *,
        max_bytes: int,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """The body at ``location``; raises :class:`FetchError` once retries are spent."""
        if not is_url(location):
            return FetchResult(_read_file(Path(location), max_bytes))
        delay = self._backoff
        attempt = 0
        while True:
            try:
                return self._get(location, max_bytes, etag, last_modified)
            except FetchError as error:
                if not error.transient or attempt >= self._retries:
                    raise
            attempt += 1
            self._sleep(delay)
            delay *= 2

    def _get(
        self, url: str, max_bytes: int, etag: str | None, last_modified: str | None
    ) -> FetchResult:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self._seconds
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == httpx.codes.NOT_MODIFIED:
                    return FetchResult(None, etag, last_modified)
                if status in (httpx.codes.NOT_FOUND, httpx.codes.GONE):
                    raise FetchError("not_found", f"answered {status}", transient=False)
                if status != httpx.codes.OK:
                    retry = status == httpx.codes.TOO_MANY_REQUESTS or status >= 500
                    raise FetchError("http_status", f"answered {status}", transient=retry)
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > max_bytes:
                    raise FetchError("too_large", f"announces {announced} bytes", transient=False)
                body = bytearray()
                for chunk in response.iter_bytes(_CHUNK):
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(
                            "too_large", f"more than {max_bytes} bytes", transient=False
                        )
                    if time.monotonic() > deadline:
                        raise FetchError(
                            "timeout", f"took longer than {self._seconds:g} s", transient=True
                        )
                return FetchResult(
                    bytes(body), response.headers.get("ETag"), response.headers.get("Last-Modified")
                )
        except httpx.TimeoutException as error:
            raise FetchError(
                "timeout", f"took longer than {self._seconds:g} s", transient=True
            ) from error
        except httpx.HTTPError as error:
            raise FetchError("unreachable", type(error).__name__, transient=True) from error


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(max_bytes + 1)
    except FileNotFoundError as error:
        raise FetchError("not_found", "no such file", transient=False) from error
    except OSError as error:
        raise FetchError("unreachable", type(error).__name__, transient=True) from error
    if len(data) > max_bytes:
        raise FetchError("too_large", f"more than {max_bytes} bytes", transient=False)
    return data
