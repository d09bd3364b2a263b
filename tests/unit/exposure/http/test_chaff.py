"""Chaff requests: answered like real ones in size and time, never seen by the app."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.testclient import TestClient

from exposure.http.chaff import ChaffMiddleware, ResponseProfile, RollingProfile, is_chaff
from exposure.http.padding import DEFAULT_MINIMUM, DEFAULT_SPREAD

PROTECTED = "/api/verify"
STREAMED = "/api/stream"
UNPROTECTED = "/api/other"
CHAFF = {"X-Chaff": "1"}


@dataclass
class Harness:
    """A tiny app behind the middleware, with a fake clock and a recording sleep."""

    now: float = 1000.0
    calls: dict[str, int] = field(default_factory=lambda: {"verify": 0, "stream": 0, "other": 0})
    slept: list[float] = field(default_factory=list)
    middleware: ChaffMiddleware | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _app(harness: Harness) -> FastAPI:
    app = FastAPI()

    @app.post(PROTECTED)
    async def verify(request: Request) -> Response:
        harness.calls["verify"] += 1
        await request.body()
        harness.now += float(request.query_params.get("seconds", "0"))
        size = int(request.query_params.get("size", "100"))
        headers = {"X-Big": "h" * int(request.query_params.get("header", "0"))}
        return Response(b"x" * size, media_type="application/json", headers=headers)

    @app.post(STREAMED)
    async def stream(request: Request) -> StreamingResponse:
        harness.calls["stream"] += 1
        chunks = int(request.query_params.get("chunks", "10"))

        async def body() -> AsyncIterator[bytes]:
            for _ in range(chunks):
                yield b"y" * 100

        return StreamingResponse(body(), media_type="application/json")

    @app.post(UNPROTECTED)
    async def other() -> Response:
        harness.calls["other"] += 1
        return Response(b"z" * 50_000, media_type="application/json")

    return app


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    middleware = ChaffMiddleware(
        _app(harness),
        paths={PROTECTED, STREAMED},
        max_latency=1.0,
        sleep=harness.sleep,
        clock=harness.clock,
    )
    harness.middleware = middleware
    with TestClient(middleware) as test_client:
        yield test_client


def _padding_of(body: bytes) -> bytes:
    document = json.loads(body)
    assert list(document) == ["padding"]
    return base64.b64decode(document["padding"], validate=True)


def test_chaff_never_reaches_the_app(client: TestClient, harness: Harness) -> None:
    response = client.post(PROTECTED, content=b"{not json at all", headers=CHAFF)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert harness.calls["verify"] == 0
    _padding_of(response.content)


def test_first_chaff_has_the_default_padding_and_no_delay(
    client: TestClient, harness: Harness
) -> None:
    response = client.post(PROTECTED, headers=CHAFF)

    padding = _padding_of(response.content)
    assert DEFAULT_MINIMUM <= len(padding) < DEFAULT_MINIMUM + DEFAULT_SPREAD
    assert harness.slept == []


def test_chaff_body_size_tracks_the_average_real_body(client: TestClient, harness: Harness) -> None:
    for size in (1000, 2000, 3000):
        client.post(PROTECTED, params={"size": size})

    sizes = [len(client.post(PROTECTED, headers=CHAFF).content) for _ in range(5)]

    assert harness.calls["verify"] == 3
    assert all(abs(size - 2000) <= 2000 * 0.02 for size in sizes)


def test_only_the_last_history_responses_count(harness: Harness) -> None:
    middleware = ChaffMiddleware(
        _app(harness), paths={PROTECTED}, history=2, sleep=harness.sleep, clock=harness.clock
    )
    with TestClient(middleware) as client:
        for size in (50_000, 1000, 1000):
            client.post(PROTECTED, params={"size": size})

        size = len(client.post(PROTECTED, headers=CHAFF).content)

    assert abs(size - 1000) <= 20


def test_streaming_responses_are_measured_chunk_by_chunk(
    client: TestClient, harness: Harness
) -> None:
    streamed = client.post(STREAMED, params={"chunks": 30})
    assert len(streamed.content) == 3000

    size = len(client.post(STREAMED, headers=CHAFF).content)

    assert harness.calls["stream"] == 1
    assert abs(size - 3000) <= 60


def test_chaff_answers_do_not_feed_the_averages(client: TestClient) -> None:
    client.post(PROTECTED, params={"size": 500})
    for _ in range(20):
        client.post(PROTECTED, headers=CHAFF)

    size = len(client.post(PROTECTED, headers=CHAFF).content)

    assert abs(size - 500) <= 10


def test_empty_chaff_header_is_a_real_request(client: TestClient, harness: Harness) -> None:
    response = client.post(PROTECTED, params={"size": 7}, headers={"X-Chaff": ""})

    assert harness.calls["verify"] == 1
    assert response.content == b"x" * 7


def test_unlisted_paths_pass_through_untouched_and_unmeasured(
    client: TestClient, harness: Harness
) -> None:
    response = client.post(UNPROTECTED, headers=CHAFF)
    assert harness.calls["other"] == 1
    assert len(response.content) == 50_000
    # Exact match only: a trailing slash is another path.
    client.post(PROTECTED + "/", headers=CHAFF)

    assert harness.middleware is not None
    assert harness.middleware.profile.average() is None


def test_latency_approaches_the_average_real_latency(client: TestClient, harness: Harness) -> None:
    client.post(PROTECTED, params={"seconds": 0.2})
    client.post(PROTECTED, params={"seconds": 0.4})

    client.post(PROTECTED, headers=CHAFF)

    assert harness.slept == [pytest.approx(0.3)]


def test_latency_is_capped(client: TestClient, harness: Harness) -> None:
    client.post(PROTECTED, params={"seconds": 30})

    client.post(PROTECTED, headers=CHAFF)

    assert harness.slept == [pytest.approx(1.0)]


def test_chaff_headers_are_padded_to_the_average_header_size(client: TestClient) -> None:
    real = client.post(PROTECTED, params={"size": 10, "header": 300})
    real_size = sum(len(name) + len(value) for name, value in real.headers.items())

    chaff = client.post(PROTECTED, headers=CHAFF)
    chaff_size = sum(len(name) + len(value) for name, value in chaff.headers.items())

    assert "x-chaff" in chaff.headers
    assert abs(chaff_size - real_size) <= 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], False),
        ([(b"x-chaff", b"")], False),
        ([(b"x-chaff", b"  ")], False),
        ([(b"x-chaff", b"daily")], True),
        ([(b"X-Chaff", b"1")], True),
        # Go's Header.Get reads the first value only.
        ([(b"x-chaff", b""), (b"x-chaff", b"1")], False),
    ],
)
def test_is_chaff(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert is_chaff(headers) is expected


def test_rolling_profile_averages_and_forgets() -> None:
    profile = RollingProfile(history=2)
    assert profile.average() is None
    for body in (10, 20, 40):
        profile.record(ResponseProfile(body_size=body, header_size=body, latency=body / 10))

    assert profile.average() == ResponseProfile(body_size=30, header_size=30, latency=3.0)


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="history"):
        ChaffMiddleware(FastAPI(), paths={PROTECTED}, history=0)
    with pytest.raises(ValueError, match="max_latency"):
        ChaffMiddleware(FastAPI(), paths={PROTECTED}, max_latency=-1.0)
