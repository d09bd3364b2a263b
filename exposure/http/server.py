"""The HTTP protocol ``exposure serve`` runs: uvicorn's, with limits on slow clients.

Uvicorn times out an idle keep-alive connection, but not a client that sends a request's
headers or body slowly: 600 connections trickling partial headers stayed open for 100 s
in a review, each holding a socket and a slot. :class:`BoundedHttpToolsProtocol` closes a
connection that has not sent a request's complete headers within ``header_timeout`` of the
connection (or of the previous response), or its complete body within ``body_timeout`` of
its headers, and refuses a connection beyond ``max_connections`` per process at once.
The limits come from settings (:meth:`BoundedHttpToolsProtocol.configure`, called by
``exposure serve`` in every process before it listens); a reverse proxy in front should
enforce its own (docs/operations.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["BoundedHttpToolsProtocol", "ConnectionLimits"]


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request, and how many may be connected."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1_000


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol with deadlines for headers and body, and a cap."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    @classmethod
    def configure(cls, limits: ConnectionLimits) -> None:
        """Set the limits of every connection this process accepts from now on."""
        cls.limits = limits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            # Refused before a byte is read: it holds nothing, and says nothing back.
            transport.close()
            return
        self._arm(self.limits.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request of a kept-alive connection
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
