"""The load generator (benchmarks.loadgen) against small servers written here.

Each test runs an asyncio server in the same event loop that answers in one particular way
(split packets, chunked, closing, garbage, silence), so the parsing, the accounting and the
failure paths are checked byte for byte, without the real service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from benchmarks.loadgen import (
    MAX_CLIENT_ADDRESSES,
    Client,
    LoadGenerator,
    LoadRun,
    Request,
    build_request,
    event_loop_name,
    json_request,
    loopback_addresses,
    run_event_loop,
)

T = TypeVar("T")
HOST = "127.0.0.1"


@dataclass
class Seen:
    """Every request the test server read: its head and its body."""

    requests: list[tuple[bytes, bytes]] = field(default_factory=list)


Answer = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


def ok_json(payload: object, *, extra_headers: bytes = b"") -> bytes:
    body = json.dumps(payload).encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra_headers
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def serving(answer: Answer, seen: Seen) -> tuple[asyncio.Server, int]:
    """A server that reads whole requests and lets ``answer`` reply; False closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                seen.requests.append((head, body))
                if not await answer(head, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return run_event_loop(main)


async def drive(
    answer: Answer,
    unit_factory: Callable[[int], Callable[[Client, int], Awaitable[None]]],
    *,
    units: int,
    connections: int = 2,
    time_limit: float = 10.0,
    request_timeout: float = 5.0,
) -> tuple[LoadRun, Seen]:
    seen = Seen()
    server, port = await serving(answer, seen)
    try:
        async with LoadGenerator(
            HOST, port, connections=connections, request_timeout=request_timeout
        ) as generator:
            result = await generator.run(unit_factory(port), units=units, time_limit=time_limit)
    finally:
        server.close()
        await server.wait_closed()
    return result, seen


def single(label: str = "ping", *, check_status: int = 200) -> Callable[[int], Any]:
    """A unit of one GET whose answer must have ``check_status``."""

    def factory(port: int) -> Callable[[Client, int], Awaitable[None]]:
        request = build_request("GET", "/ping", host=f"{HOST}:{port}", label=label)

        async def unit(client: Client, _index: int) -> None:
            response = await client.send(request)
            if response.status != check_status:
                client.fail(label, f"http_{response.status}")
            client.accept(label, response)

        return unit

    return factory


async def answer_ok(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(ok_json({"status": "ok"}))
    return True


# ---- building requests -----------------------------------------------------------------


def test_requests_are_encoded_once_with_length() -> None:
    request = json_request(
        "POST",
        "/api/verify",
        {"code": "12345678"},
        host="h:1",
        label="verify",
        headers={"X-API-Key": "k"},
    )
    head, _, body = request.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/verify HTTP/1.1"
    assert set(lines[1:]) == {
        b"Host: h:1",
        b"Content-Type: application/json",
        b"X-API-Key: k",
        b"Content-Length: 19",
    }
    assert json.loads(body) == {"code": "12345678"}
    assert request.label == "verify"
    assert build_request("GET", "/health", host="h", label="x").data == (
        b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n"
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {"path": "/x HTTP/1.1\r\nX-Evil: 1"},
        {"headers": {"X-API-Key": "k\r\nX-Evil: 1"}},
        {"headers": {"X-Evil\n": "1"}},
    ],
)
def test_line_breaks_cannot_smuggle_headers(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="line break"):
        build_request(
            "GET", arguments.get("path", "/"), host="h", label="x", headers=arguments.get("headers")
        )


# ---- accounting -------------------------------------------------------------------------


@pytest.mark.parametrize("stdlib_loop", [False, True])
def test_every_unit_and_request_is_counted(stdlib_loop: bool) -> None:
    # On the generator's own loop (uvloop when installed) and on the standard library's.
    def main() -> Coroutine[Any, Any, tuple[LoadRun, Seen]]:
        return drive(answer_ok, single(), units=57, connections=4)

    result, seen = asyncio.run(main()) if stdlib_loop else run(main)
    assert (result.units_started, result.units_completed, result.units_failed) == (57, 57, 0)
    assert result.requests == len(seen.requests) == 57
    assert len(result.latencies["ping"]) == len(result.unit_latencies) == 57
    assert all(latency > 0 for latency in result.latencies["ping"])
    assert result.errors == {}
    assert not result.timed_out
    # Keep-alive: one connection per client, not one per request.
    assert result.connects == 4
    assert result.client_cpu_seconds >= 0
    assert result.client_cpu_per_request_ms == pytest.approx(1000 * result.client_cpu_seconds / 57)
    assert all(head.startswith(b"GET /ping HTTP/1.1\r\n") for head, _ in seen.requests)


def test_a_flow_builds_each_request_from_the_previous_answer() -> None:
    async def answer_next(_head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        step = json.loads(body)["step"]
        writer.write(ok_json({"next": step + 1}))
        return True

    def factory(port: int) -> Callable[[Client, int], Awaitable[None]]:
        async def flow(client: Client, index: int) -> None:
            step = index * 100
            for label in ("first", "second", "third"):
                request = json_request(
                    "POST", "/step", {"step": step}, host=f"{HOST}:{port}", label=label
                )
                response = await client.send(request)
                answer = response.json()
                assert isinstance(answer, dict)
                step = answer["next"]
                client.accept(label, response)
            assert step == index * 100 + 3

        return flow

    result, seen = run(lambda: drive(answer_next, factory, units=10, connections=3))
    assert result.units_completed == 10
    assert result.requests == 30
    assert {label: len(values) for label, values in result.latencies.items()} == {
        "first": 10,
        "second": 10,
        "third": 10,
    }
    steps = sorted(json.loads(body)["step"] for _, body in seen.requests)
    assert steps == sorted(index * 100 + offset for index in range(10) for offset in range(3))
    # A flow's duration covers its three requests.
    assert min(result.unit_latencies) >= min(result.latencies["first"])


def test_rejected_answers_fail_the_unit_and_are_counted_by_reason() -> None:
    async def answer_teapot(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n")
        return True

    result, _ = run(lambda: drive(answer_teapot, single(), units=9))
    assert (result.units_started, result.units_completed, result.units_failed) == (9, 0, 9)
    assert result.errors == {"ping/http_418": 9}
    assert "ping" not in result.latencies
    assert result.unit_latencies == []


def test_a_bug_in_a_unit_stops_the_run() -> None:
    def factory(port: int) -> Callable[[Client, int], Awaitable[None]]:
        request = build_request("GET", "/", host=f"{HOST}:{port}", label="x")

        async def unit(client: Client, index: int) -> None:
            await client.send(request)
            if index == 3:
                raise KeyError("a bug")

        return unit

    with pytest.raises(KeyError, match="a bug"):
        run(lambda: drive(answer_ok, factory, units=1_000))


def test_no_unit_starts_after_the_time_limit() -> None:
    async def answer_slowly(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(ok_json({}))
        return True

    result, _ = run(
        lambda: drive(answer_slowly, single(), units=10_000, connections=2, time_limit=0.2)
    )
    assert result.timed_out
    assert 2 <= result.units_started < 100
    assert result.units_completed == result.units_started
    assert result.seconds < 2


def test_run_arguments_are_checked() -> None:
    async def main() -> None:
        async with LoadGenerator(HOST, 1, connections=2) as generator:
            with pytest.raises(ValueError, match="connections"):
                await generator.run(single()(1), units=1, time_limit=1, connections=3)
            with pytest.raises(ValueError, match="time_limit"):
                await generator.run(single()(1), units=1, time_limit=0)

    run(main)
    with pytest.raises(ValueError, match="connections"):
        LoadGenerator(HOST, 1, connections=0)


# ---- parsing ------------------------------------------------------------------------------


async def answer_byte_by_byte(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    for byte in ok_json({"split": True}, extra_headers=b"X-Long: " + b"y" * 300 + b"\r\n"):
        writer.write(bytes([byte]))
        await writer.drain()
    return True


async def answer_chunked(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n'
        b"A;ext=1\r\n: [1, 2, 3\r\n"
        b"2\r\n]}\r\n"
        b"0\r\nX-Trailer: t\r\n\r\n"
    )
    return True


async def answer_and_close(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(ok_json({"closing": True}, extra_headers=b"Connection: close\r\n"))
    return False


async def answer_until_close(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"old": 1}')
    return False


async def answer_no_content(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    return True


@pytest.mark.parametrize(
    ("answer", "body", "connects"),
    [
        (answer_byte_by_byte, {"split": True}, 1),
        (answer_chunked, {"a": [1, 2, 3]}, 1),
        # The server closes after each answer: the client opens a new connection each time.
        (answer_and_close, {"closing": True}, 5),
        (answer_until_close, {"old": 1}, 5),
    ],
)
def test_answers_are_read_whatever_their_framing(
    answer: Answer, body: object, connects: int
) -> None:
    bodies: list[object] = []

    def factory(port: int) -> Callable[[Client, int], Awaitable[None]]:
        request = build_request("GET", "/", host=f"{HOST}:{port}", label="get")

        async def unit(client: Client, _index: int) -> None:
            response = await client.send(request)
            assert response.status == 200
            bodies.append(response.json())
            client.accept("get", response)

        return unit

    result, seen = run(lambda: drive(answer, factory, units=5, connections=1))
    assert result.errors == {}
    assert bodies == [body] * 5
    assert len(seen.requests) == 5
    assert result.connects == connects


def test_an_answer_without_a_body() -> None:
    result, _ = run(lambda: drive(answer_no_content, single(check_status=204), units=4))
    assert result.units_completed == 4
    assert result.connects == 2


async def answer_garbage(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    return True


async def answer_too_much(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}{}")
    return True


async def answer_half_and_close(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
    return False


async def answer_bad_chunk(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    return True


async def answer_bad_length(_head: bytes, _body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n")
    return True


async def answer_never(_head: bytes, _body: bytes, _writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(30)
    return False


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (answer_garbage, "HttpProtocolError"),
        (answer_too_much, "HttpProtocolError"),
        (answer_half_and_close, "HttpProtocolError"),
        (answer_bad_chunk, "HttpProtocolError"),
        (answer_bad_length, "HttpProtocolError"),
        (answer_never, "TimeoutError"),
    ],
)
def test_broken_answers_fail_the_unit_and_the_connection_is_replaced(
    answer: Answer, reason: str
) -> None:
    result, seen = run(lambda: drive(answer, single(), units=3, connections=1, request_timeout=0.1))
    assert (result.units_started, result.units_completed) == (3, 0)
    assert result.errors == {f"ping/{reason}": 3}
    assert len(seen.requests) == 3
    # A connection whose framing is lost is never reused.
    assert result.connects == 3


def test_a_server_that_is_not_there_fails_every_unit() -> None:
    async def main() -> LoadRun:
        # A port that was free a moment ago: nothing listens there.
        server = await asyncio.start_server(lambda _r, _w: None, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with LoadGenerator(HOST, port, connections=2) as generator:
            return await generator.run(single()(port), units=6, time_limit=5)

    result = run(main)
    assert result.units_completed == 0
    assert result.errors == {"ping/ConnectionRefusedError": 6}


def test_the_event_loop_is_named() -> None:
    assert event_loop_name() in {"uvloop", "asyncio"}
    assert isinstance(Request("x", b""), Request)


# ---- source addresses ------------------------------------------------------------------


def test_loopback_addresses_are_distinct_and_in_127_8() -> None:
    addresses = loopback_addresses(600)

    assert addresses[:3] == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    assert len(set(addresses)) == 600
    assert all(ipaddress.ip_address(address).is_loopback for address in addresses)
    assert loopback_addresses(MAX_CLIENT_ADDRESSES)[-1] == "127.0.249.250"
    for count in (0, MAX_CLIENT_ADDRESSES + 1):
        with pytest.raises(ValueError, match="count"):
            loopback_addresses(count)


def test_connections_come_from_the_source_addresses_in_turn() -> None:
    peers: list[str] = []

    async def main() -> LoadRun:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername")[0])
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(ok_json({"status": "ok"}))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with LoadGenerator(
                HOST, port, connections=5, source_addresses=loopback_addresses(3)
            ) as generator:
                return await generator.run(single()(port), units=20, time_limit=10)
        finally:
            server.close()
            await server.wait_closed()

    result = run(main)

    assert result.units_completed == 20
    assert sorted(peers) == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3"]
