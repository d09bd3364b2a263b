"""Logging set-up for every process: what a log line may carry, and how often.

Privacy rules:

- No client address, user agent or request line is ever logged. Uvicorn's access log (which
  records the client's IP and port) is switched off where the server starts, and the
  format below carries nothing from the request.
- No value from a request or a row. Engines hide bound parameters
  (``hide_parameters``), and a logged exception shows its traceback (code, not data) with
  only the type of each exception in the chain, and for a database error its SQLSTATE: the
  message is left out, since a driver's message quotes the row it refused (PostgreSQL's
  ``DETAIL: Key (key_hmac)=(...) already exists``) and a validation error quotes its input.
- A failure that repeats (every request while the database is down) is logged once per
  :data:`REPEAT_INTERVAL_SECONDS`, then once more with how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType

__all__ = ["LOG_FORMAT", "PrivateFormatter", "RepeatFilter", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: How long an identical warning or error is left out after it was logged.
REPEAT_INTERVAL_SECONDS = 10.0

ExceptionInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def describe_exception(error: BaseException) -> str:
    """The type of ``error`` and, for a database error, its SQLSTATE; never its message."""
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    original = getattr(error, "orig", None)
    sqlstate = getattr(original, "sqlstate", None) or getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return f"{name} (SQLSTATE {sqlstate})"
    return name


class PrivateFormatter(logging.Formatter):
    """The project's format, with exceptions reduced to their tracebacks and types."""

    def formatException(self, ei: ExceptionInfo | tuple[None, None, None]) -> str:  # noqa: N802 - logging's name
        error = ei[1]
        if error is None:
            return ""
        chain: list[BaseException] = []
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            chain.append(current)
            current = current.__cause__ or (
                None if current.__suppress_context__ else current.__context__
            )
        lines: list[str] = []
        for position, link in enumerate(reversed(chain)):
            if position:
                lines.append("The above led to:")
            lines.append("Traceback (most recent call last):")
            lines.extend(line.rstrip("\n") for line in traceback.format_tb(link.__traceback__))
            lines.append(describe_exception(link))
        return "\n".join(lines)


class RepeatFilter(logging.Filter):
    """Lets a warning or error through once per interval per (logger, message, exception
    type); the next one let through says how many were left out meanwhile.

    ``clock`` is monotonic seconds; tests pass their own.
    """

    def __init__(
        self,
        interval: float = REPEAT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (when last let through, how many left out since)
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        error = record.exc_info[1] if record.exc_info else None
        key = (record.name, str(record.msg), type(error).__name__ if error else "")
        now = self._clock()
        with self._lock:
            last, left_out = self._seen.get(key, (None, 0))
            if last is not None and now - last < self._interval:
                self._seen[key] = (last, left_out + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:  # a flood of distinct messages must not grow memory
                self._seen = {key: (now, 0)}
        if left_out:
            record.msg = (
                f"{record.msg} (and {left_out} more like it in the last {self._interval:g} s)"
            )
        return True


def configure_logging(level: str) -> None:
    """Send log records to stderr at ``level`` in the project's private format."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrivateFormatter(LOG_FORMAT))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if level != "debug":
        # Each migration step says which dialect it uses; only debugging wants that.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
