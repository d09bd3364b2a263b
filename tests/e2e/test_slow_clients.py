"""Slow clients cannot hold a server's connections: a request's headers and body must
arrive within their deadlines, and connections beyond the cap are refused at once, while
ordinary requests keep being answered."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from exposure.launcher import free_loopback_port
from tests.e2e.conftest import EXPOSURE, clean_environment

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_loopback_port()
    environment = clean_environment(tmp_path / "var")
    environment.update(
        {
            "EXPOSURE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "EXPOSURE_BODY_TIMEOUT": str(BODY_TIMEOUT),
            "EXPOSURE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        }
    )
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/health/live", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def connect(server: str) -> Iterator[Callable[[], socket.socket]]:
    """Opens raw connections to the server; every one is closed after the test."""
    opened: list[socket.socket] = []
    host, port = server.removeprefix("http://").split(":")

    def open_one() -> socket.socket:
        opened.append(socket.create_connection((host, int(port)), timeout=10))
        return opened[-1]

    yield open_one
    for connection in opened:
        connection.close()


def _closed_within(connection: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``connection`` (without answering) within ``seconds``."""
    connection.settimeout(seconds)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


Connect = Callable[[], socket.socket]


def test_a_client_that_never_finishes_its_headers_is_closed(server: str, connect: Connect) -> None:
    connections = [connect() for _ in range(10)]
    started = time.monotonic()
    for connection in connections:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: exposure\r\nX-Slow: ")

    closed = [_closed_within(connection, HEADER_TIMEOUT + 3) for connection in connections]

    assert all(closed)
    assert time.monotonic() - started < HEADER_TIMEOUT + 3
    assert httpx.get(f"{server}/health/live", timeout=5).status_code == 200


def test_a_silent_connection_is_closed(connect: Connect) -> None:
    connection = connect()

    assert _closed_within(connection, HEADER_TIMEOUT + 3)


def test_a_client_that_never_finishes_its_body_is_closed(connect: Connect) -> None:
    connection = connect()
    connection.sendall(
        b"POST /v1/publish HTTP/1.1\r\nHost: exposure\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"temporaryExposureKeys": ['
    )

    assert _closed_within(connection, BODY_TIMEOUT + 3)


def test_connections_beyond_the_cap_are_refused_at_once(server: str, connect: Connect) -> None:
    held = [connect() for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    extra = [connect() for _ in range(5)]

    refused = [_closed_within(connection, 1.0) for connection in extra]

    assert all(refused)
    for connection in held:
        connection.close()
    time.sleep(0.2)
    assert httpx.get(f"{server}/health/live", timeout=5).status_code == 200


def test_a_client_sending_steadily_is_served(connect: Connect) -> None:
    connection = connect()
    request = b"GET /health/live HTTP/1.1\r\nHost: exposure\r\nConnection: close\r\n\r\n"
    for byte in range(0, len(request), 8):
        connection.sendall(request[byte : byte + 8])
        time.sleep(0.02)

    connection.settimeout(5)
    answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 200")
