"""Two processes contend for one lease on PostgreSQL; they must never hold it together.

Each process loops: take the lease, record "inside" in a shared counter, hold it briefly,
record "outside", release. If the lease ever let both in, the counter would reach 2.
"""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized

import pytest

from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.lease import acquire_lease, new_holder_token, release_lease

pytestmark = pytest.mark.postgres

ROUNDS = 40


def _contend(
    url: str,
    inside: Synchronized[int],
    overlaps: Synchronized[int],
    wins: Synchronized[int],
    start: float,
) -> None:
    engine = create_database_engine(url)
    factory = make_session_factory(engine)
    while time.time() < start:  # line both processes up on the same instant
        time.sleep(0.001)
    for _ in range(ROUNDS):
        holder = new_holder_token()
        with unit_of_work(factory) as session:
            lease = acquire_lease(
                session,
                name="contended",
                holder=holder,
                ttl=timedelta(seconds=30),
                now=datetime.now(UTC),
            )
        if lease is None:
            time.sleep(0.001)
            continue
        with inside.get_lock():
            inside.value += 1
            if inside.value > 1:
                overlaps.value += 1
        with wins.get_lock():
            wins.value += 1
        time.sleep(0.002)
        with inside.get_lock():
            inside.value -= 1
        with unit_of_work(factory) as session:
            release_lease(session, name="contended", holder=holder)
    engine.dispose()


@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_two_processes_never_hold_one_lease_at_once(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    inside = context.Value("i", 0)
    overlaps = context.Value("i", 0)
    wins = context.Value("i", 0)
    start = time.time() + 2.0
    workers = [
        context.Process(target=_contend, args=(database_url, inside, overlaps, wins, start))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0, 0]
    assert overlaps.value == 0
    # The lease really was contended and really was granted, to both over time.
    assert wins.value >= ROUNDS // 2
