"""Chaff: fake requests that the server answers like real ones, without doing anything.

Only people who tested positive ever call the verification and publish endpoints, so the
mere fact that a phone talks to them would give a positive away to anyone watching the
network. Apps therefore send chaff now and then: the same request marked with a non-empty
``X-Chaff`` header. The server must answer it so that it looks like a real answer from the
outside (status, size, timing) while touching nothing: the body is never read, nothing is
stored or counted, no rate limit is spent.

This is Google's ``internal/middleware/chaff.go`` (``mikehelmick/go-chaff``) for ASGI:

- Real responses on the protected paths are measured as they pass through: body bytes
  (counted chunk by chunk, so streaming responses are measured too), header bytes and the
  time from the request's arrival to the last body chunk.
- A chaff request is answered ``200 application/json {"padding": "<random base64>"}`` sized
  to the rolling average body size of the last ``history`` real responses, with an
  ``X-Chaff`` response header of random characters when the real responses carry more
  header bytes, after sleeping until the average real latency has passed (capped at
  ``max_latency``). Until a real response has been measured, the padding has the default
  size of :func:`~exposure.http.padding.random_padding` and there is no delay.
- Chaff answers never feed the averages, or repeated chaff would pull them toward itself.

The middleware must sit outside everything that does work per request (rate limiting,
metrics, body parsing, database sessions), as in Google's chain: Recovery → Chaff → ….

Example::

    app.add_middleware(ChaffMiddleware, paths={"/api/verify", "/api/certificate"})
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crypto.randomness import random_bytes
from exposure.http.padding import random_padding

__all__ = ["CHAFF_HEADER", "DEFAULT_HISTORY", "DEFAULT_MAX_LATENCY", "ChaffMiddleware"]

#: The request header that marks chaff (any non-empty value), and the response header that
#: pads a chaff answer's headers.
CHAFF_HEADER = "X-Chaff"
#: How many real responses the averages cover (go-chaff ``DefaultCapacity``).
DEFAULT_HISTORY = 100
#: Longest a chaff answer is held back, in seconds (``CHAFF_REQUEST_MAX_LATENCY_MS``).
DEFAULT_MAX_LATENCY = 1.0

_CHAFF_KEY = CHAFF_HEADER.lower().encode("ascii")
# The bytes a chaff body has besides its padding: {"padding":""}
_BODY_OVERHEAD = len(json.dumps({"padding": ""}, separators=(",", ":")))
# RFC 9110 optional whitespace, which servers strip from header values anyway.
_OWS = b" \t"


@dataclass(frozen=True)
class ResponseProfile:
    """What one real response looked like from the outside (or the average of many)."""

    body_size: int
    header_size: int
    latency: float


class RollingProfile:
    """The average of the last ``history`` recorded responses.

    Running sums make :meth:`average` constant-time, so a chaff answer costs the same
    whatever the history. A lock guards the sums because ASGI servers may run several
    event loops in threads; it is never held across an ``await``.
    """

    def __init__(self, history: int) -> None:
        if history < 1:
            raise ValueError("chaff history must hold at least one response")
        self._samples: deque[ResponseProfile] = deque()
        self._history = history
        self._lock = threading.Lock()
        self._body = 0
        self._header = 0
        self._latency = 0.0

    def record(self, sample: ResponseProfile) -> None:
        """Add ``sample``, forgetting the oldest one once ``history`` are held."""
        with self._lock:
            if len(self._samples) == self._history:
                oldest = self._samples.popleft()
                self._body -= oldest.body_size
                self._header -= oldest.header_size
                self._latency -= oldest.latency
            self._samples.append(sample)
            self._body += sample.body_size
            self._header += sample.header_size
            self._latency += sample.latency

    def average(self) -> ResponseProfile | None:
        """The mean of the held responses, or ``None`` before the first one."""
        with self._lock:
            count = len(self._samples)
            if count == 0:
                return None
            return ResponseProfile(
                body_size=round(self._body / count),
                header_size=round(self._header / count),
                latency=max(0.0, self._latency / count),
            )


class ChaffMiddleware:
    """Answer ``X-Chaff`` requests on ``paths`` with look-alike responses (see module doc).

    ``paths`` are matched exactly against the ASGI ``path`` (no prefix or trailing-slash
    matching, as Google's router does); requests elsewhere, and non-HTTP scopes, pass
    through untouched and unmeasured. ``sleep`` and ``clock`` are parameters so tests can
    observe the delay without waiting for it.

    Raises :class:`ValueError` if ``history`` is below 1 or ``max_latency`` is negative.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        max_latency: float = DEFAULT_MAX_LATENCY,
        history: int = DEFAULT_HISTORY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_latency < 0:
            raise ValueError("chaff max_latency must not be negative")
        self.app = app
        self.paths = frozenset(paths)
        self.max_latency = max_latency
        self.profile = RollingProfile(history)
        self._sleep = sleep
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if is_chaff(scope["headers"]):
            await self._answer_chaff(send)
            return
        await self._measure(scope, receive, send)

    async def _measure(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._clock()
        header_size = 0
        body_size = 0

        async def measuring_send(message: Message) -> None:
            nonlocal header_size, body_size
            if message["type"] == "http.response.start":
                header_size = _header_bytes(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                body_size += len(message.get("body", b""))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Only complete responses count: an aborted one says nothing about the
                # size or time a chaff answer should imitate.
                self.profile.record(
                    ResponseProfile(
                        body_size=body_size,
                        header_size=header_size,
                        latency=self._clock() - started,
                    )
                )

        await self.app(scope, receive, measuring_send)

    async def _answer_chaff(self, send: Send) -> None:
        started = self._clock()
        average = self.profile.average()
        if average is None:
            body = _padding_body(random_padding())
            extra_header_bytes = 0
            target_latency = 0.0
        else:
            body = _padding_body(_base64_of_length(average.body_size - _BODY_OVERHEAD))
            extra_header_bytes = average.header_size
            target_latency = min(average.latency, self.max_latency)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        missing = extra_header_bytes - _header_bytes(headers) - len(_CHAFF_KEY)
        if missing > 0:
            headers.append((_CHAFF_KEY, _random_token(missing).encode("ascii")))
        delay = target_latency - (self._clock() - started)
        if delay > 0:
            await self._sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def is_chaff(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the first ``X-Chaff`` header of an ASGI request is non-empty.

    Go's ``r.Header.Get("X-Chaff") != ""`` reads the first value only, after the server
    has trimmed surrounding whitespace; an empty header marks a real request.
    """
    for name, value in headers:
        if name.lower() == _CHAFF_KEY:
            return bool(value.strip(_OWS))
    return False


def _header_bytes(headers: Iterable[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) for name, value in headers)


def _padding_body(padding: str) -> bytes:
    # Compact separators, as Starlette's JSONResponse writes its bodies.
    return json.dumps({"padding": padding}, separators=(",", ":")).encode("ascii")


def _base64_of_length(length: int) -> str:
    """Valid standard base64 of random bytes, ``length`` characters rounded to a multiple
    of 4 (base64's granule), so the body lands within two bytes of its target."""
    if length <= 0:
        return ""
    granules = (length + 2) // 4
    return base64.b64encode(random_bytes(3 * granules)).decode("ascii")


def _random_token(length: int) -> str:
    """``length`` random base64 characters: valid in a header value, and meaningless."""
    return base64.b64encode(random_bytes(3 * ((length + 3) // 4))).decode("ascii")[:length]
