"""Per-process caches of rows that every request reads and that rarely change.

Each service keeps a few such things in memory for a short time instead of reading them on
every request: the verification service its API keys and signing keys, the key server the
health authorities and apps it trusts and its revision keys. All of them are a
:class:`TtlCache`, which is told the time on every call (time is a parameter), so each
service chooses its clock and tests move time without sleeping.

Example::

    apps: TtlCache[str, AppConfig | None] = TtlCache(timedelta(minutes=5))
    app = apps.get_or_load(app_id, now, lambda: load_app(session, app_id))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_ENTRIES", "TtlCache"]

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")

#: Entries a cache keeps at most unless told otherwise.
DEFAULT_MAX_ENTRIES = 4_096


class TtlCache(Generic[Key, Value]):
    """A bounded, thread-safe map whose entries are fresh for ``ttl`` after they were stored.

    An entry stored at ``t`` is found at ``now`` when ``t <= now < t + ttl``; a clock that
    went backwards also misses, since the entry's age is then unknown. A ``ttl`` of zero
    turns the cache off: nothing is stored and nothing found. Keys may come from requests,
    so the map is bounded: past ``max_entries`` the stale entries go first, then the oldest.

    Raises :class:`ValueError` for a negative ``ttl`` or ``max_entries`` below 1.
    """

    def __init__(self, ttl: timedelta, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if ttl < timedelta(0):
            raise ValueError("ttl must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._ttl = ttl
        self._max_entries = max_entries
        # key → (value, stored at), in the order stored: the first entry is the oldest.
        self._entries: dict[Key, tuple[Value, datetime]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._ttl > timedelta(0)

    def get(self, key: Key, now: datetime) -> Value | None:
        """The value stored under ``key`` if it is fresh at ``now``, else None."""
        with self._lock:
            entry = self._fresh_entry(key, now)
        return None if entry is None else entry[0]

    def put(self, key: Key, value: Value, now: datetime) -> None:
        """Store ``value`` under ``key`` as of ``now`` (nothing, when the cache is off)."""
        if not self.enabled:
            return
        with self._lock:
            self._entries.pop(key, None)  # re-inserted last, so the order stays oldest first
            self._entries[key] = (value, now)
            if len(self._entries) > self._max_entries:
                self._evict(now)

    def get_or_load(self, key: Key, now: datetime, load: Callable[[], Value]) -> Value:
        """The fresh value under ``key``, else what ``load()`` returns, stored as of ``now``.

        Unlike :meth:`get`, this caches a None that ``load`` returns (a miss is worth
        remembering too). ``load`` runs outside the lock, so a slow database does not stall
        lookups of other keys; two threads missing one key may both load it, which is
        harmless. What ``load`` raises propagates, and nothing is stored.
        """
        with self._lock:
            entry = self._fresh_entry(key, now)
        if entry is not None:
            return entry[0]
        value = load()
        self.put(key, value, now)
        return value

    def discard(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _is_fresh(self, stored_at: datetime, now: datetime) -> bool:
        return stored_at <= now < stored_at + self._ttl

    def _fresh_entry(self, key: Key, now: datetime) -> tuple[Value, datetime] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._is_fresh(entry[1], now):
            del self._entries[key]
            return None
        return entry

    def _evict(self, now: datetime) -> None:
        stale = [key for key, (_, at) in self._entries.items() if not self._is_fresh(at, now)]
        for key in stale:
            del self._entries[key]
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
