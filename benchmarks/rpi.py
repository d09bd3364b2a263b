"""How fast this machine turns TEKs into Rolling Proximity Identifiers.

A phone (or a server-side matcher) derives all 144 RPIs of every key in an export before it
can compare them with what it heard. This benchmark measures that derivation in keys per
second, on one core or fanned out over worker processes, and checks a random sample of the
results against the slow reference path (one HKDF object, one AES call per interval), so a
broken fast path cannot post a good number.

Example::

    result = run_rpi_benchmark(200_000, workers=2)
    print(f"{result.keys_per_second:,.0f} keys/s")
"""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crypto.gaen import (
    MAX_INTERVAL_COUNT,
    RPI_LENGTH,
    derive_rpi_blocks,
    derive_rpik,
    rolling_proximity_identifier,
)
from crypto.randomness import random_below, random_bytes

__all__ = [
    "BenchmarkMismatchError",
    "MachineInfo",
    "RpiBenchmarkResult",
    "generate_keys",
    "machine_info",
    "reference_rpis",
    "run_rpi_benchmark",
]

#: A realistic first interval: midnight UTC of 2026-11-25 (keys start at midnights).
DEFAULT_START_INTERVAL = 2_992_608
#: Keys of an export span the last 14 days, so they have 14 distinct start intervals.
DAYS_OF_KEYS = 14
#: Keys per task handed to a worker process.
CHUNK_SIZE = 2_000
#: How many keys are checked against the reference path.
DEFAULT_SAMPLE_SIZE = 32

_KEY_LENGTH = 16


class BenchmarkMismatchError(RuntimeError):
    """The fast derivation disagreed with the reference path: the benchmark is void."""


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """Where a number was measured."""

    cpu_model: str
    cores: int
    memory_gib: float | None
    python_version: str
    platform: str


@dataclass(frozen=True, slots=True)
class RpiBenchmarkResult:
    """One benchmark run: ``keys`` keys, ``rpis_per_key`` RPIs each, in ``seconds``."""

    keys: int
    rpis_per_key: int
    workers: int
    seconds: float
    keys_per_second: float
    rpis_per_second: float
    verified_keys: int
    machine: MachineInfo

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info() -> MachineInfo:
    """Describe this machine: CPU model (``/proc/cpuinfo``), cores, memory, Python."""
    cpu_model = platform.processor() or platform.machine() or "unknown"
    for line in _read_text(Path("/proc/cpuinfo")).splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and value.strip():
            cpu_model = value.strip()
            break
    memory_gib: float | None = None
    for line in _read_text(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            kibibytes = int(line.split()[1])
            memory_gib = round(kibibytes / 2**20, 1)
            break
    return MachineInfo(
        cpu_model=cpu_model,
        cores=os.cpu_count() or 1,
        memory_gib=memory_gib,
        python_version=platform.python_version(),
        platform=platform.platform(terse=True),
    )


def generate_keys(
    count: int, *, start_interval: int = DEFAULT_START_INTERVAL
) -> list[tuple[bytes, int]]:
    """Return ``count`` random TEKs, with start intervals spread over 14 days like an export."""
    material = random_bytes(_KEY_LENGTH * count)
    return [
        (
            material[_KEY_LENGTH * index : _KEY_LENGTH * (index + 1)],
            start_interval - MAX_INTERVAL_COUNT * (index % DAYS_OF_KEYS),
        )
        for index in range(count)
    ]


def reference_rpis(tek: bytes, start_interval: int, count: int = MAX_INTERVAL_COUNT) -> bytes:
    """The slow, obviously correct derivation, as one bytes object (for the sample check)."""
    rpik = derive_rpik(tek)
    return b"".join(
        rolling_proximity_identifier(rpik, start_interval + offset) for offset in range(count)
    )


def _derive_chunk(
    keys: list[tuple[bytes, int]], sample_offsets: list[int]
) -> tuple[int, list[bytes]]:
    # Runs in a worker: derive everything, hand back only the sampled keys' blocks (shipping
    # 2304 bytes per key back to the parent would cost more than deriving them).
    blocks = derive_rpi_blocks(keys)
    return len(blocks), [blocks[offset] for offset in sample_offsets]


def _warm_up(delay: float) -> int:
    # Start the process and fill the template cache before the clock runs; the sleep keeps
    # this worker busy so that the next warm-up task starts another one.
    derive_rpi_blocks(generate_keys(DAYS_OF_KEYS))
    time.sleep(delay)
    return os.getpid()


def _chunks(count: int, workers: int) -> list[range]:
    # Small chunks: each worker's output (2304 bytes per key) stays a few megabytes that the
    # allocator reuses, where chunks of 12,500 keys measured 15-20 % slower; and the queue
    # keeps both workers busy to the end. Fewer keys than workers x 2,000 are split evenly.
    size = max(1, min(CHUNK_SIZE, -(-count // workers)))
    return [range(first, min(first + size, count)) for first in range(0, count, size)]


def _sample(count: int, size: int) -> set[int]:
    picked: set[int] = set()
    while len(picked) < min(size, count):
        picked.add(random_below(count))
    return picked


def run_rpi_benchmark(
    keys: int = 200_000,
    *,
    workers: int | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> RpiBenchmarkResult:
    """Derive all 144 RPIs of ``keys`` random keys and time it.

    ``workers`` defaults to the number of cores; with 1 the work runs in this process, with
    more it is split into chunks over a process pool started (and warmed up) before timing.
    Key generation and the sample check are not timed.

    Raises :class:`ValueError` unless ``keys``, ``workers`` and ``sample_size`` are positive,
    and
    :class:`BenchmarkMismatchError` if a sampled key's RPIs differ from the reference path.
    """
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if keys < 1 or workers < 1 or sample_size < 1:
        raise ValueError("keys, workers and sample_size must be positive")
    material = generate_keys(keys)
    # Picked before deriving, and never shown to the derivation, which cannot favour them.
    sampled = _sample(keys, sample_size)
    chunks = _chunks(keys, workers)
    tasks = [
        (
            material[chunk.start : chunk.stop],
            [index - chunk.start for index in chunk if index in sampled],
        )
        for chunk in chunks
    ]

    results: list[tuple[int, list[bytes]]]
    if workers == 1:
        derive_rpi_blocks(generate_keys(DAYS_OF_KEYS))  # same warm-up as the workers
        started = time.perf_counter()
        results = [_derive_chunk(chunk_keys, offsets) for chunk_keys, offsets in tasks]
        seconds = time.perf_counter() - started
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_warm_up, [0.2] * workers))
            started = time.perf_counter()
            futures = [pool.submit(_derive_chunk, *task) for task in tasks]
            results = [future.result() for future in futures]
            seconds = time.perf_counter() - started

    derived = sum(count for count, _ in results)
    sampled_blocks = [block for _, blocks in results for block in blocks]
    sampled_keys = [material[index] for chunk in chunks for index in chunk if index in sampled]
    if derived != keys or len(sampled_blocks) != len(sampled_keys):
        raise BenchmarkMismatchError("the workers did not derive every key")
    for (tek, start_interval), block in zip(sampled_keys, sampled_blocks, strict=True):
        if len(block) != MAX_INTERVAL_COUNT * RPI_LENGTH or block != reference_rpis(
            tek, start_interval
        ):
            raise BenchmarkMismatchError("the fast path disagrees with the reference derivation")

    return RpiBenchmarkResult(
        keys=keys,
        rpis_per_key=MAX_INTERVAL_COUNT,
        workers=workers,
        seconds=seconds,
        keys_per_second=keys / seconds,
        rpis_per_second=keys * MAX_INTERVAL_COUNT / seconds,
        verified_keys=len(sampled_keys),
        machine=machine_info(),
    )
