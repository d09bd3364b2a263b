"""Fetching: local files, size bounds, retries with back-off, conditional requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from keyserver.importer.fetch import Fetcher, FetchError, join_location


def _fetcher(handler: httpx.MockTransport, sleeps: list[float], retries: int = 2) -> Fetcher:
    return Fetcher(
        timeout=timedelta(seconds=5),
        retries=retries,
        backoff=timedelta(seconds=1),
        sleep=sleeps.append,
        transport=handler,
    )


def test_a_local_file_is_read_within_its_bound(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(b"x" * 100)
    fetcher = _fetcher(httpx.MockTransport(lambda _: httpx.Response(500)), [])

    assert fetcher.fetch(str(tmp_path / "a.zip"), max_bytes=100).body == b"x" * 100
    with pytest.raises(FetchError) as too_large:
        fetcher.fetch(str(tmp_path / "a.zip"), max_bytes=99)
    assert (too_large.value.code, too_large.value.transient) == ("too_large", False)
    with pytest.raises(FetchError) as missing:
        fetcher.fetch(str(tmp_path / "b.zip"), max_bytes=99)
    assert missing.value.code == "not_found"


def test_server_errors_are_retried_with_doubling_back_off() -> None:
    answers = iter([503, 429, 200])

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), content=b"index")

    sleeps: list[float] = []
    result = _fetcher(httpx.MockTransport(handler), sleeps).fetch(
        "https://peer.example/index.txt", max_bytes=100
    )

    assert result.body == b"index"
    assert sleeps == [1.0, 2.0]


def test_retries_end_and_a_missing_file_is_not_retried() -> None:
    sleeps: list[float] = []
    failing = _fetcher(httpx.MockTransport(lambda _: httpx.Response(502)), sleeps)
    with pytest.raises(FetchError) as spent:
        failing.fetch("https://peer.example/a.zip", max_bytes=100)
    assert (spent.value.code, len(sleeps)) == ("http_status", 2)

    sleeps.clear()
    missing = _fetcher(httpx.MockTransport(lambda _: httpx.Response(404)), sleeps)
    with pytest.raises(FetchError) as gone:
        missing.fetch("https://peer.example/a.zip", max_bytes=100)
    assert (gone.value.code, sleeps) == ("not_found", [])


def test_an_announced_length_over_the_bound_is_refused_unread() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"y" * 500)

    with pytest.raises(FetchError) as refused:
        _fetcher(httpx.MockTransport(handler), []).fetch("https://p.example/a", max_bytes=499)
    assert refused.value.code == "too_large"


def test_the_index_is_fetched_conditionally() -> None:
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        if request.headers.get("If-None-Match") == '"v1"':
            return httpx.Response(304)
        return httpx.Response(200, content=b"a", headers={"ETag": '"v1"'})

    fetcher = _fetcher(httpx.MockTransport(handler), [])
    first = fetcher.fetch("https://peer.example/index.txt", max_bytes=10)
    second = fetcher.fetch("https://peer.example/index.txt", max_bytes=10, etag=first.etag)

    assert (first.body, first.etag) == (b"a", '"v1"')
    assert second.body is None
    assert seen[0].get("Accept-Encoding") == "identity"


def test_locations_join_urls_and_directories() -> None:
    assert join_location("https://cdn.example/exports/", "v1/a.zip") == (
        "https://cdn.example/exports/v1/a.zip"
    )
    assert join_location("/srv/peer", "v1/a.zip") == "/srv/peer/v1/a.zip"
