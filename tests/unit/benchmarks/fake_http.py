"""A small asyncio HTTP/1.1 server for the benchmark tests, and a target pointing at it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from benchmarks import harness

#: Given a request's head (without the blank line) and body, the bytes to answer.
Respond = Callable[[bytes, bytes], Awaitable[bytes]]


def answer(status: int, body: bytes) -> bytes:
    """A whole HTTP/1.1 response with ``body``."""
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)


def request_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


@asynccontextmanager
async def fake_server(respond: Respond) -> AsyncIterator[int]:
    """Serve ``respond`` on a free loopback port (yielded) until the block ends."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n"))[:-4]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                writer.write(await respond(head, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port: int = server.sockets[0].getsockname()[1]
        yield port
    finally:
        server.close()
        await server.wait_closed()


def target(port: int, scratch: Path) -> harness.BenchServer:
    """A benchmark target at ``port``; its CPU is this process's (the server runs here)."""
    return harness.BenchServer(
        host="127.0.0.1",
        port=port,
        base_url=f"http://127.0.0.1:{port}",
        pid=os.getpid(),
        log_path=scratch / "server.log",
        environment={},
        database=harness.Database.SQLITE,
        data_dir=scratch,
        database_url=None,
        scratch=scratch,
    )
