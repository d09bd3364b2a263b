"""The core TTL cache: freshness on the caller's time, the bound, misses, thread safety."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from exposure.cache import TtlCache

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=10)
TICK = timedelta(microseconds=1)


def test_an_entry_is_fresh_from_when_it_was_stored_until_the_ttl() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL)
    cache.put("a", 1, T0)

    assert cache.get("a", T0) == 1
    assert cache.get("a", T0 + TTL - TICK) == 1
    assert cache.get("a", T0 + TTL) is None
    assert len(cache) == 0


def test_a_clock_that_went_backwards_misses() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL)
    cache.put("a", 1, T0)

    assert cache.get("a", T0 - TICK) is None


def test_a_zero_ttl_caches_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(timedelta(0))
    cache.put("a", 1, T0)

    assert cache.get("a", T0) is None
    assert len(cache) == 0
    assert not cache.enabled


def test_get_or_load_keeps_a_miss_and_loads_again_once_it_is_stale() -> None:
    cache: TtlCache[str, int | None] = TtlCache(TTL)
    loads: list[datetime] = []

    def load_at(now: datetime) -> int | None:
        loads.append(now)
        return None if len(loads) == 1 else len(loads)

    assert cache.get_or_load("a", T0, lambda: load_at(T0)) is None
    assert cache.get_or_load("a", T0 + TTL - TICK, lambda: load_at(T0 + TTL - TICK)) is None
    assert cache.get_or_load("a", T0 + TTL, lambda: load_at(T0 + TTL)) == 2
    assert loads == [T0, T0 + TTL]


def test_a_failed_load_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL)

    def failing() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        cache.get_or_load("a", T0, failing)
    assert cache.get_or_load("a", T0, lambda: 7) == 7


def test_the_oldest_entries_go_first_when_full() -> None:
    cache: TtlCache[int, int] = TtlCache(TTL, max_entries=3)
    for key in range(5):
        cache.put(key, key, T0)

    assert [cache.get(key, T0) for key in range(5)] == [None, None, 2, 3, 4]


def test_stale_entries_go_before_fresh_ones() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL, max_entries=3)
    cache.put("fresh-1", 1, T0 + TTL)
    cache.put("stale", 0, T0)  # stored last, but long ago
    cache.put("fresh-2", 2, T0 + TTL)

    cache.put("fresh-3", 3, T0 + TTL)

    assert [cache.get(key, T0 + TTL) for key in ("fresh-1", "fresh-2", "fresh-3")] == [1, 2, 3]
    assert len(cache) == 3


def test_storing_a_key_again_makes_it_the_newest() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL, max_entries=2)
    cache.put("a", 1, T0)
    cache.put("b", 2, T0)
    cache.put("a", 3, T0)

    cache.put("c", 4, T0)

    assert (cache.get("a", T0), cache.get("b", T0), cache.get("c", T0)) == (3, None, 4)


def test_discard_and_clear() -> None:
    cache: TtlCache[str, int] = TtlCache(TTL)
    cache.put("a", 1, T0)
    cache.put("b", 2, T0)

    cache.discard("a")
    cache.discard("missing")
    assert (cache.get("a", T0), cache.get("b", T0)) == (None, 2)
    cache.clear()
    assert len(cache) == 0


def test_nonsense_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        TtlCache(-TICK)
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(TTL, max_entries=0)


def test_concurrent_use_keeps_the_bound() -> None:
    cache: TtlCache[int, int] = TtlCache(TTL, max_entries=50)

    def churn(offset: int) -> None:
        for key in range(offset, offset + 2_000):
            cache.put(key, key, T0)
            cache.get_or_load(key - 7, T0, lambda: -1)

    threads = [threading.Thread(target=churn, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cache) == 50
