"""How fast a phone checks downloaded keys against what it heard (``exposure bench match``).

``run_match_benchmark(keys=N, sightings=M)`` writes N random keys into signed export files of
at most ``keys_per_file`` keys each (as a key server would publish them: 14 days of start
intervals, random report types), and a phone's M sightings: random RPIs spread over the same
14 days, plus three sightings of each of a few *planted* keys hidden among the N. Then, in a
fresh process so that its memory is measured alone, it does what the SDK does on a sync
(:func:`exposure.client.open_export` for every file, one at a time: read, verify the
signature, parse; then :meth:`~exposure.client.VerifiedExport.match` with
:class:`exposure.client.ParallelMatcher` over every core) and times it. The run is void
unless exactly the planted keys are found.

Memory stays flat as N grows: files are read one at a time and only matches are kept, so the
peak depends on ``keys_per_file``, not on N. The result reports the peak resident memory of
the process that read and parsed the files and of the largest worker, and the CPU time of
both, since on a shared machine wall time alone says little.

Example::

    result = run_match_benchmark(keys=1_000_000, sightings=10_000)
    print(f"{result.keys_per_second:,.0f} keys/s, peak {result.peak_rss_mib:.0f} MiB")
"""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.rpi import DAYS_OF_KEYS, DEFAULT_START_INTERVAL, MachineInfo, machine_info
from crypto.gaen import INTERVAL_LENGTH, MAX_INTERVAL_COUNT, rolling_proximity_identifiers
from crypto.randomness import random_below, random_bytes
from crypto.signing import FileSigner
from exposure.client import (
    ExportSigningKey,
    ParallelMatcher,
    Sighting,
    SightingIndex,
    open_export,
)
from exposure.export import SignatureInfo, sign_export, write_export_zip
from exposure.export.model import EXPORT_HEADER, ReportType
from exposure.export.proto import export_pb2

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_KEYS_PER_FILE",
    "DEFAULT_SIGHTINGS",
    "MatchBenchmarkResult",
    "MatchMismatchError",
    "run_match_benchmark",
]

DEFAULT_KEYS = 20_000
DEFAULT_SIGHTINGS = 10_000
#: Keys per export file. The reference server allows 500,000; 100,000 keeps one file's
#: decoded keys (the peak of a sync) near 60 MB.
DEFAULT_KEYS_PER_FILE = 100_000
#: Keys hidden among the N whose RPIs the phone heard, three sightings each.
DEFAULT_PLANTED = 20
SIGHTINGS_PER_PLANTED_KEY = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_ID, _KEY_VERSION = "bench", "v1"
_REPORT_TYPES = (ReportType.CONFIRMED_TEST, ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)


class MatchMismatchError(RuntimeError):
    """The matcher did not find exactly the planted keys: the benchmark is void."""


@dataclass(frozen=True, slots=True)
class MatchBenchmarkResult:
    """One run: ``keys`` keys in ``files`` files checked against ``sightings`` sightings."""

    keys: int
    sightings: int
    files: int
    keys_per_file: int
    workers: int
    seconds: float
    keys_per_second: float
    #: Seconds of the run spent reading, verifying and parsing files (the rest is matching).
    open_seconds: float
    #: CPU seconds (user and system) of the syncing process and its workers during the run:
    #: on a busy machine, ``keys / cpu_seconds x cores`` is what idle cores would reach.
    cpu_seconds: float
    planted_keys: int
    matched_keys: int
    #: Peak resident memory of the process that ran the sync, and of its largest worker
    #: (counting the pages a forked worker shares with that process); the baseline is the
    #: same process's peak before the sync began (its imports and its arguments).
    peak_rss_mib: float
    worker_peak_rss_mib: float
    baseline_rss_mib: float
    machine: MachineInfo

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Timed:
    seconds: float
    open_seconds: float
    cpu_seconds: float
    matched: frozenset[bytes]
    peak_rss_mib: float
    worker_peak_rss_mib: float
    baseline_rss_mib: float


def _interval_time(interval: int, seconds: int) -> datetime:
    return _EPOCH + interval * INTERVAL_LENGTH + timedelta(seconds=seconds)


def _start_of(position: int) -> int:
    return DEFAULT_START_INTERVAL - MAX_INTERVAL_COUNT * (position % DAYS_OF_KEYS)


def _write_files(
    directory: Path, keys: int, keys_per_file: int, planted: dict[int, bytes]
) -> list[Path]:
    """Signed export files holding ``keys`` keys; ``planted`` fixes some keys' bytes."""
    signer = FileSigner.generate()
    info = SignatureInfo(verification_key_id=_KEY_ID, verification_key_version=_KEY_VERSION)
    (directory / "public.pem").write_bytes(signer.public_key_pem())
    paths: list[Path] = []
    for first in range(0, keys, keys_per_file):
        count = min(keys_per_file, keys - first)
        material = random_bytes(16 * count)
        message = export_pb2.TemporaryExposureKeyExport(
            start_timestamp=1_796_000_000, end_timestamp=1_796_014_400, region="VN"
        )
        for offset in range(count):
            position = first + offset
            message.keys.add(
                key_data=planted.get(position, material[16 * offset : 16 * (offset + 1)]),
                transmission_risk_level=0,
                rolling_start_interval_number=_start_of(position),
                report_type=_REPORT_TYPES[position % 2],
                days_since_onset_of_symptoms=position % 15 - 7,
            )
        export_bin = EXPORT_HEADER + message.SerializeToString()
        path = directory / f"{first:010d}.zip"
        path.write_bytes(write_export_zip(export_bin, sign_export(export_bin, [(info, signer)])))
        paths.append(path)
    return paths


def _sightings(count: int, planted: dict[int, bytes]) -> list[Sighting]:
    """Random RPIs over the 14 days, plus sightings of every planted key's RPIs."""
    heard: list[Sighting] = []
    for position, key_data in planted.items():
        start = _start_of(position)
        rpis = rolling_proximity_identifiers(key_data, start)
        for _ in range(SIGHTINGS_PER_PLANTED_KEY):
            offset = random_below(MAX_INTERVAL_COUNT)
            moment = _interval_time(start + offset, random_below(600))
            heard.append(Sighting(rpis[offset], random_bytes(4), moment, (-60,), 300))
    oldest = _start_of(DAYS_OF_KEYS - 1)
    span = MAX_INTERVAL_COUNT * DAYS_OF_KEYS
    while len(heard) < count:
        moment = _interval_time(oldest + random_below(span), random_below(600))
        heard.append(Sighting(random_bytes(16), random_bytes(4), moment, (-70,), 300))
    heard.sort(key=lambda sighting: sighting.time)
    return heard


def _cpu_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mib(who: int) -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(who).ru_maxrss / 1024


def _own_peak_rss_mib() -> float:
    """This process's peak resident memory since it was started.

    Not ru_maxrss: Linux carries that across exec, so a spawned process would report the
    peak of the process it was started from (here, the one that wrote the files). VmHWM
    belongs to the process's own memory map, which exec replaces.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mib(resource.RUSAGE_SELF)


def _timed_sync(
    paths: list[Path], public_pem: bytes, heard: list[Sighting], workers: int
) -> _Timed:
    """Runs in a fresh process: what a phone's sync does, timed, with memory measured."""
    baseline = _own_peak_rss_mib()
    signing_keys = [ExportSigningKey.from_pem(_KEY_ID, _KEY_VERSION, public_pem)]
    index = SightingIndex(heard)
    matched: set[bytes] = set()
    open_seconds = 0.0
    # Forked workers, as a phone app's would be on Linux: this process was spawned, and its
    # children would otherwise be spawned too, importing everything again.
    fork = multiprocessing.get_context("fork")
    matcher = ParallelMatcher(index, workers=workers, mp_context=fork) if workers > 1 else None
    try:
        if matcher is not None:
            # Start every worker (and give it the index) before the clock runs.
            matcher.match([])
            list(matcher._pool.map(time.sleep, [0.2] * workers))
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        for path in paths:
            opened = time.perf_counter()
            export = open_export(path.read_bytes(), signing_keys)
            open_seconds += time.perf_counter() - opened
            matched.update(key.key_data for key, _ in export.match(matcher or index))
            del export  # one file at a time: memory must not grow with N
        seconds = time.perf_counter() - started
    finally:
        if matcher is not None:
            matcher.close()  # waits for the workers, whose CPU time then counts as children's
    return _Timed(
        seconds=seconds,
        open_seconds=open_seconds,
        cpu_seconds=_cpu_seconds() - cpu_before,
        matched=frozenset(matched),
        peak_rss_mib=_own_peak_rss_mib(),
        worker_peak_rss_mib=_rss_mib(resource.RUSAGE_CHILDREN),
        baseline_rss_mib=baseline,
    )


def run_match_benchmark(
    keys: int = DEFAULT_KEYS,
    sightings: int = DEFAULT_SIGHTINGS,
    *,
    workers: int | None = None,
    keys_per_file: int = DEFAULT_KEYS_PER_FILE,
    planted: int = DEFAULT_PLANTED,
) -> MatchBenchmarkResult:
    """Write the files and sightings, then time a sync over them (see the module doc).

    ``workers`` defaults to one per core; with 1 the matching runs in the syncing process.
    Raises :class:`ValueError` for sizes that do not fit together, and
    :class:`MatchMismatchError` unless exactly the planted keys are found.
    """
    workers = workers if workers is not None else (os.cpu_count() or 1)
    planted = min(planted, keys)
    if keys < 1 or workers < 1 or keys_per_file < 1 or planted < 0:
        raise ValueError("keys, workers and keys_per_file must be positive")
    if sightings < planted * SIGHTINGS_PER_PLANTED_KEY:
        raise ValueError(f"sightings must be at least {SIGHTINGS_PER_PLANTED_KEY} per planted key")
    positions = random.sample(range(keys), planted)
    planted_keys = {position: random_bytes(16) for position in positions}
    with tempfile.TemporaryDirectory(prefix="exposure-bench-match-") as temporary:
        directory = Path(temporary)
        paths = _write_files(directory, keys, keys_per_file, planted_keys)
        heard = _sightings(sightings, planted_keys)
        public_pem = (directory / "public.pem").read_bytes()
        # A fresh process: its peak memory is the sync's alone, not the file writer's.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as fresh:
            timed = fresh.submit(_timed_sync, paths, public_pem, heard, workers).result()
    if timed.matched != frozenset(planted_keys.values()):
        raise MatchMismatchError(
            f"found {len(timed.matched)} keys, {len(timed.matched - set(planted_keys.values()))} "
            f"of them not planted, where {planted} were planted"
        )
    return MatchBenchmarkResult(
        keys=keys,
        sightings=sightings,
        files=len(paths),
        keys_per_file=keys_per_file,
        workers=workers,
        seconds=timed.seconds,
        keys_per_second=keys / timed.seconds,
        open_seconds=timed.open_seconds,
        cpu_seconds=timed.cpu_seconds,
        planted_keys=planted,
        matched_keys=len(timed.matched),
        peak_rss_mib=timed.peak_rss_mib,
        worker_peak_rss_mib=timed.worker_peak_rss_mib,
        baseline_rss_mib=timed.baseline_rss_mib,
        machine=machine_info(),
    )
