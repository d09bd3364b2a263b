"""A small HTTP/1.1 load generator for the benchmarks: cheap for the client, honest about it.

The benchmarks run the server, PostgreSQL and the clients on the same few cores, so every
millisecond of CPU the clients burn is taken from the server they measure. A general
purpose client (httpx) spends several milliseconds per request on connection pools, header
objects and streams. This one writes request bytes built in advance onto keep-alive
connections (raw asyncio protocols, on uvloop when it is installed, as it is with
``uvicorn[standard]``) and parses only what a benchmark needs from each answer: the status,
the body (delimited by ``Content-Length``, chunked transfer coding, or the end of the
connection) and whether the server will close the connection. It measures its own CPU per
request, so a result says how much of the machine the load itself took.

It is not a general client. It talks to servers the benchmarks start on loopback: no TLS,
no redirects, no ``Expect``/``1xx``, one request in flight per connection (no pipelining).

Work is given as *units*: an async function of a :class:`Client` and the unit's index that
sends one request or a dependent sequence (a flow whose next body is built from the
previous answer), records what it accepted, and raises :class:`UnitFailed` through
:meth:`Client.fail` at the first answer it rejects. ``connections`` workers, each with its
own keep-alive connection, take units one after the other until ``units`` have been
started or the time limit has passed.

Example::

    health = build_request("GET", "/health", host="127.0.0.1:8080", label="health")

    async def unit(client: Client, index: int) -> None:
        response = await client.send(health)
        if response.status != 200:
            client.fail(health.label, f"http_{response.status}")
        client.accept(health.label, response)

    async def main() -> LoadRun:
        async with LoadGenerator("127.0.0.1", 8080, connections=16) as generator:
            return await generator.run(unit, units=10_000, time_limit=60)

    run = run_event_loop(main)
    print(run.units_completed / run.seconds, run.client_cpu_per_request_ms)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn, TypeVar, cast

try:
    import uvloop

    _HAVE_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard] on Linux
    _HAVE_UVLOOP = False

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_CLIENT_ADDRESSES",
    "Client",
    "HttpProtocolError",
    "LoadGenerator",
    "LoadRun",
    "Request",
    "Response",
    "Unit",
    "UnitFailed",
    "build_request",
    "event_loop_name",
    "json_request",
    "loopback_addresses",
    "run_event_loop",
]

#: Seconds a request may wait for its answer before its connection is aborted.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: A response head longer than this is refused (uvicorn's are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024

_T = TypeVar("_T")
_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"
# Statuses that never have a body (RFC 9112 §6.3).
_BODYLESS_STATUSES = frozenset({204, 304})


class HttpProtocolError(Exception):
    """The server sent something this client cannot read as HTTP/1.1, or closed early."""


class UnitFailed(Exception):  # noqa: N818 - a unit's outcome, not an error of the generator
    """A unit stopped at an answer it rejected; the rejection is already counted."""


@dataclass(frozen=True, slots=True)
class Request:
    """A whole request as it goes on the wire, and the label its results are counted under."""

    label: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """What the benchmarks read from an answer.

    ``latency`` runs from handing the request to the transport to the arrival of the
    answer's last byte, in seconds; time the client's event loop then takes to resume the
    unit is not in it.
    """

    status: int
    body: bytes
    latency: float

    def json(self) -> object:
        """The body parsed as JSON; raises :class:`ValueError` if it is not JSON."""
        return json.loads(self.body)


def build_request(
    method: str,
    path: str,
    *,
    host: str,
    label: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Request:
    """Encode a request once, to be sent any number of times.

    ``host`` is the ``Host`` header (``"127.0.0.1:8080"``). A body gets a
    ``Content-Length``. Raises :class:`ValueError` for a line break in any part, which
    would smuggle a header or a second request.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("a request line or header holds a line break")
    head = "\r\n".join(lines).encode("latin-1") + _HEAD_END
    return Request(label=label, data=head + body if body is not None else head)


def json_request(
    method: str,
    path: str,
    payload: object,
    *,
    host: str,
    label: str,
    headers: Mapping[str, str] | None = None,
) -> Request:
    """A request whose body is ``payload`` as compact JSON (``Content-Type`` set)."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    merged = {"Content-Type": "application/json", **(headers or {})}
    return build_request(method, path, host=host, label=label, headers=merged, body=body)


#: The most distinct loopback source addresses :func:`loopback_addresses` hands out.
MAX_CLIENT_ADDRESSES = 250 * 250


def loopback_addresses(count: int) -> tuple[str, ...]:
    """``count`` distinct IPv4 loopback addresses (127.0.0.1, 127.0.0.2, ...).

    Linux answers on all of 127.0.0.0/8 without configuration, so connections bound to
    these reach a server on 127.0.0.1 from what it sees as different clients.
    """
    if not 1 <= count <= MAX_CLIENT_ADDRESSES:
        raise ValueError(f"count must be within 1..{MAX_CLIENT_ADDRESSES}")
    return tuple(f"127.0.{index // 250}.{index % 250 + 1}" for index in range(count))


# ---- one connection -----------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight.

    The answer is parsed in ``data_received`` as bytes arrive, so a response costs one
    future and no coroutine switches besides the unit's own ``await``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self.sent_at = 0.0
        self.closed = False
        #: Whether the last answer allows another request on this connection.
        self.reusable = True
        self._reset_parse_state()

    def _reset_parse_state(self) -> None:
        self._head_end = -1
        self._status = 0
        self._content_end = -1
        self._chunked = False
        self._until_close = False

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not a subclass of asyncio.Transport, but acts as one).
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._until_close and self._head_end >= 0:
                # An answer delimited by the end of the connection is complete now.
                self._complete(bytes(self._buffer[self._head_end :]), len(self._buffer))
            else:
                error = HttpProtocolError("the server closed the connection mid-answer")
                error.__cause__ = exc
                self._fail(error)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection's framing is lost.
            self.abort(HttpProtocolError("the server sent data without a request"))
            return
        self._buffer += data
        try:
            self._parse()
        except HttpProtocolError as error:
            self.abort(error)

    # -- requests

    def send(self, data: bytes) -> asyncio.Future[Response]:
        if self.closed or self._transport is None or not self.reusable:
            raise HttpProtocolError("the connection is closed")
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._buffer.clear()
        self._reset_parse_state()
        self.sent_at = time.perf_counter()
        self._transport.write(data)
        return waiter

    def waiting(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def abort(self, error: Exception) -> None:
        """Fail the request in flight with ``error`` and drop the connection."""
        self._fail(error)
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- parsing

    def _parse(self) -> None:
        buffer = self._buffer
        if self._head_end < 0 and not self._parse_head():
            return
        if self._until_close:
            return
        if self._chunked:
            self._parse_chunked()
            return
        if len(buffer) >= self._content_end:
            if len(buffer) > self._content_end:
                raise HttpProtocolError("the server sent more than the announced body")
            self._complete(bytes(buffer[self._head_end : self._content_end]), self._content_end)

    def _parse_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(_HEAD_END)
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise HttpProtocolError("the response head is too long")
            return False
        lines = bytes(buffer[:end]).split(_CRLF)
        version, _, rest = lines[0].partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not rest[:3].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(rest[:3])
        if status < 200:
            raise HttpProtocolError(f"unexpected interim response {status}")
        content_length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    content_length = int(value.strip())
                except ValueError:
                    raise HttpProtocolError("Content-Length is not a number") from None
                if content_length < 0:
                    raise HttpProtocolError("Content-Length is negative")
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self._status = status
        self._head_end = end + len(_HEAD_END)
        self.reusable = keep_alive
        if status in _BODYLESS_STATUSES:
            self._content_end = self._head_end
        elif chunked:
            self._chunked = True
        elif content_length is not None:
            self._content_end = self._head_end + content_length
        else:
            self._until_close = True
            self.reusable = False
        return True

    def _parse_chunked(self) -> None:
        # Parsed from the start of the body whenever bytes arrive: answers are small and
        # chunked ones rare, so keeping no state between calls costs nothing that matters.
        buffer = self._buffer
        position = self._head_end
        chunks: list[bytes] = []
        while True:
            line_end = buffer.find(_CRLF, position)
            if line_end < 0:
                return
            size_field = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {size_field[:20]!r}") from None
            if size == 0:
                # Optional trailer fields, then an empty line, end the message.
                end = buffer.find(_HEAD_END, line_end)
                if end < 0:
                    return
                consumed = end + len(_HEAD_END)
                if len(buffer) > consumed:
                    raise HttpProtocolError("the server sent more than the chunked body")
                self._complete(b"".join(chunks), consumed)
                return
            data_start = line_end + len(_CRLF)
            data_end = data_start + size
            if len(buffer) < data_end + len(_CRLF):
                return
            if buffer[data_end : data_end + len(_CRLF)] != _CRLF:
                raise HttpProtocolError("a chunk does not end with CRLF")
            chunks.append(bytes(buffer[data_start:data_end]))
            position = data_end + len(_CRLF)

    def _complete(self, body: bytes, consumed: int) -> None:
        latency = time.perf_counter() - self.sent_at
        del self._buffer[:consumed]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, body, latency))
        if not self.reusable:
            self.close()

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


# ---- the tallies of one run ------------------------------------------------------------


@dataclass
class _Tally:
    requests: int = 0
    connects: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)


class Client:
    """What a unit sees: one keep-alive connection and the run's tallies.

    A connection the server closed (or that failed) is opened again on the next
    :meth:`send`, and every connect is counted.
    """

    def __init__(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop,
        tally: _Tally,
        source_address: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._source_address = source_address
        self._loop = loop
        self._connection: _Connection | None = None
        self._tally = tally

    async def send(self, request: Request) -> Response:
        """Send ``request`` and return the answer, whatever its status.

        A connection failure, a timeout or an unreadable answer is counted as
        ``"<label>/<exception name>"`` and ends the unit (raises :class:`UnitFailed`).
        """
        self._tally.requests += 1
        try:
            connection = self._connection
            if connection is None or connection.closed or not connection.reusable:
                connection = await self._connect()
            return await connection.send(request.data)
        except (OSError, HttpProtocolError) as error:
            self._drop()
            self.fail(request.label, type(error).__name__)

    def accept(self, label: str, response: Response) -> None:
        """Count ``response`` as a success under ``label`` (its latency is kept)."""
        latencies = self._tally.latencies.get(label)
        if latencies is None:
            latencies = self._tally.latencies[label] = []
        latencies.append(response.latency)

    def fail(self, label: str, reason: str) -> NoReturn:
        """Count a rejected answer as ``"<label>/<reason>"`` and end the unit."""
        self._tally.errors[f"{label}/{reason}"] += 1
        raise UnitFailed

    # -- for the generator

    def attach(self, tally: _Tally) -> None:
        self._tally = tally

    def overdue(self, now: float, timeout: float) -> bool:
        connection = self._connection
        return (
            connection is not None and connection.waiting() and now - connection.sent_at > timeout
        )

    def time_out(self) -> None:
        if self._connection is not None:
            self._connection.abort(TimeoutError("no answer in time"))

    def close(self) -> None:
        self._drop()

    async def _connect(self) -> _Connection:
        self._drop()
        _, connection = await self._loop.create_connection(
            lambda: _Connection(self._loop),
            self._host,
            self._port,
            local_addr=None if self._source_address is None else (self._source_address, 0),
        )
        self._tally.connects += 1
        self._connection = connection
        return connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


#: One unit of work: send one request or a sequence; raise UnitFailed to count a failure.
Unit = Callable[[Client, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LoadRun:
    """The outcome of one :meth:`LoadGenerator.run`.

    ``latencies`` holds, per label, the latency of every accepted answer (seconds);
    ``unit_latencies`` the duration of every completed unit. ``errors`` counts failures by
    ``"<label>/<reason>"``. ``client_cpu_seconds`` is the CPU this process used during the
    run (user + system, all threads); nothing else runs in it meanwhile.
    """

    units_started: int
    units_completed: int
    requests: int
    connects: int
    seconds: float
    timed_out: bool
    latencies: dict[str, list[float]]
    unit_latencies: list[float]
    errors: dict[str, int]
    client_cpu_seconds: float

    @property
    def units_failed(self) -> int:
        return self.units_started - self.units_completed

    @property
    def client_cpu_per_request_ms(self) -> float:
        """Client CPU per request sent, in milliseconds (0 when nothing was sent)."""
        if self.requests == 0:
            return 0.0
        return 1000 * self.client_cpu_seconds / self.requests


class LoadGenerator:
    """``connections`` keep-alive clients of ``host:port``, reused from one run to the next.

    Use it as an async context manager so that its connections are closed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connections: int,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        source_addresses: Sequence[str] = (),
    ) -> None:
        """``source_addresses``: the local addresses connections come from, in turn (e.g.
        several loopback addresses, so a server that keys limits on the client's address
        sees many clients, as it does in production); none: the system's choice."""
        if connections < 1:
            raise ValueError("connections must be positive")
        if not request_timeout > 0:
            raise ValueError("request_timeout must be positive")
        self._host = host
        self._port = port
        self._connections = connections
        self._request_timeout = request_timeout
        self._source_addresses = tuple(source_addresses)
        self._clients: list[Client] = []

    async def __aenter__(self) -> LoadGenerator:
        loop = asyncio.get_running_loop()
        addresses = self._source_addresses
        self._clients = [
            Client(
                self._host,
                self._port,
                loop,
                _Tally(),
                addresses[index % len(addresses)] if addresses else None,
            )
            for index in range(self._connections)
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for client in self._clients:
            client.close()
        self._clients = []

    async def run(
        self,
        unit: Unit,
        *,
        units: int,
        time_limit: float,
        connections: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> LoadRun:
        """Run up to ``units`` units on the first ``connections`` clients (default: all).

        No unit starts after ``time_limit`` seconds, or once ``stop`` is set; one in flight
        then still finishes or times out. Exceptions of a unit other than
        :class:`UnitFailed` propagate (a bug in the benchmark, not a failure of the server).
        """
        if not self._clients:
            raise RuntimeError("use the generator inside 'async with'")
        width = self._connections if connections is None else connections
        if not 1 <= width <= self._connections:
            raise ValueError(f"connections must be within 1..{self._connections}")
        if units < 0 or not time_limit > 0:
            raise ValueError("units must not be negative and time_limit must be positive")
        tally = _Tally()
        clients = self._clients[:width]
        for client in clients:
            client.attach(tally)
        started_units = 0
        completed_units = 0
        unit_latencies: list[float] = []
        started = time.perf_counter()
        cpu_started = time.process_time()
        deadline = started + time_limit

        async def worker(client: Client) -> None:
            nonlocal started_units, completed_units
            # One event loop thread: the shared counters need no lock.
            while (
                started_units < units
                and time.perf_counter() < deadline
                and not (stop is not None and stop.is_set())
            ):
                index = started_units
                started_units += 1
                unit_started = time.perf_counter()
                try:
                    await unit(client, index)
                except UnitFailed:
                    continue
                unit_latencies.append(time.perf_counter() - unit_started)
                completed_units += 1

        await _run_all([worker(client) for client in clients], self._watch(clients))
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        return LoadRun(
            units_started=started_units,
            units_completed=completed_units,
            requests=tally.requests,
            connects=tally.connects,
            seconds=seconds,
            timed_out=started_units < units,
            latencies=tally.latencies,
            unit_latencies=unit_latencies,
            errors=dict(sorted(tally.errors.items())),
            client_cpu_seconds=cpu_seconds,
        )

    async def _watch(self, clients: list[Client]) -> None:
        # One sweep a fraction of the timeout apart costs far less than a timer per request.
        interval = min(1.0, self._request_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            for client in clients:
                if client.overdue(now, self._request_timeout):
                    client.time_out()


async def _run_all(
    workers: list[Coroutine[Any, Any, None]], watchdog: Coroutine[Any, Any, None]
) -> None:
    """Run ``workers`` to the end beside ``watchdog``; the first error stops them all."""
    tasks = [asyncio.ensure_future(worker) for worker in workers]
    watcher = asyncio.ensure_future(watchdog)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in [*tasks, watcher]:
            task.cancel()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)


# ---- the event loop ---------------------------------------------------------------------


def event_loop_name() -> str:
    """``"uvloop"`` when the runs use it, else ``"asyncio"``."""
    return "uvloop" if _HAVE_UVLOOP else "asyncio"


def run_event_loop(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``main()`` to completion on a new event loop (uvloop's when installed)."""
    factory = uvloop.new_event_loop if _HAVE_UVLOOP else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
