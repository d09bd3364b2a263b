"""Where request handlers run blocking work (database, files): a few threads per process.

Every handler hands its synchronous work to :func:`run_blocking`, which runs it on the event
loop's default executor. :func:`blocking_executor` sizes that executor to the database pool
(``EXPOSURE_DATABASE_POOL_SIZE``), so no more requests touch the database at once than the
pool keeps connections for. With more threads than pooled connections (anyio's pool has 40),
a burst of requests opens overflow connections that the pool closes again as soon as they
are returned: every one costs a PostgreSQL backend start and a TLS-less handshake on the
server's own CPU, several times the cost of the query it was opened for. A request beyond
the executor's threads waits in the loop's queue instead, which costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

__all__ = ["blocking_executor", "run_blocking"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def blocking_executor(workers: int) -> ThreadPoolExecutor:
    """The executor for one process's blocking work: ``workers`` threads."""
    if workers < 1:
        raise ValueError("workers must be positive")
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exposure-blocking")


async def run_blocking(function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``function(*args, **kwargs)`` on the loop's default executor; await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, partial(function, *args, **kwargs))
