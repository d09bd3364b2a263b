"""Find published keys among what a phone heard: the hot path of every download.

Every key in an export stands for up to 144 Rolling Proximity Identifiers, one per
ten-minute interval of its validity (``rolling_start_interval_number`` up to
``+ rolling_period``). A phone derives them all and looks each one up in its sightings; a
hit counts only if the sighting was made within two hours of the RPI's own interval
(:data:`DEFAULT_TOLERANCE`), the clock skew GAEN allows between two phones.

How it stays fast (docs/benchmarks.md has the numbers):

- The sightings are indexed once (:class:`SightingIndex`): a dictionary from RPI to the
  sightings of it, and a set of the first eight bytes of every sighted RPI as integers.
- Keys are derived in chunks with the flat :func:`crypto.gaen.derive_rpi_blocks` (one HKDF
  and one AES call per key), and the chunk's RPIs are never cut into objects: the chunk's
  bytes are read as one array of 64-bit words, and the words that start an RPI are
  intersected with the prefix set in a single C call. Only a word found there (nearly
  always a real hit) leads to a search for the full 16 bytes and a check of the time.
- :class:`ParallelMatcher` hands chunks to worker processes, each holding a copy of the
  index, and receives only the hits.

Many phones with one download (a simulation, a demo) need not derive it once each:
:class:`DerivedRpis` derives a key list once, and each phone's index then looks its own
sightings up in it (:meth:`SightingIndex.hits_in`), which costs a dictionary lookup per
sighting instead of a derivation per key.

Both matchers have ``match(keys) -> positions of matched keys``, the :class:`KeyMatcher`
protocol the download sync uses, and ``hits(keys)`` with every (key, interval, sighting).

Example::

    index = SightingIndex(phone.sightings.sightings)
    matched = [keys[position] for position in index.match(keys)]
"""

from __future__ import annotations

import gc
import os
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import NamedTuple, Protocol

from crypto.gaen import (
    INTERVAL_LENGTH,
    KEY_LENGTH,
    MAX_INTERVAL_COUNT,
    MAX_INTERVAL_NUMBER,
    RPI_LENGTH,
    derive_rpi_blocks,
)
from exposure.client.sightings import Sighting
from exposure.export.model import ReportType

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_TOLERANCE",
    "DerivedRpis",
    "DiagnosisKey",
    "KeyMatcher",
    "KeyWindow",
    "ParallelMatcher",
    "RpiHit",
    "SightingIndex",
]

#: GAEN's allowance for clock skew: a sighting made up to two hours before or after the
#: interval of the RPI it carries still counts.
DEFAULT_TOLERANCE = timedelta(hours=2)
#: Keys derived per step. Large enough that per-chunk work is negligible, small enough that
#: the chunk's 2,304 bytes per key stay in memory the allocator reuses (as in benchmarks/rpi).
DEFAULT_CHUNK_SIZE = 2_000

_INTERVAL_SECONDS = int(INTERVAL_LENGTH.total_seconds())
# An RPI's first 8 bytes read as one 64-bit integer (array typecode "q" is 8 bytes wide).
# Native byte order is fine: the index and the chunks are read on one machine.
_WORD = "q"
_WORDS_PER_RPI = RPI_LENGTH // 8


class DiagnosisKey(NamedTuple):
    """A published key as a phone needs it: what to derive, and how to weigh a match.

    ``report_type`` is the export's (``UNKNOWN`` when the file leaves it out);
    ``days_since_onset_of_symptoms`` is None when absent. The first three fields are what
    a matcher reads.
    """

    key_data: bytes
    rolling_start_interval_number: int
    rolling_period: int = MAX_INTERVAL_COUNT
    report_type: ReportType = ReportType.UNKNOWN
    days_since_onset_of_symptoms: int | None = None


#: What a matcher reads of a key: (key data, rolling start interval number, rolling period),
#: possibly followed by more fields, as in :class:`DiagnosisKey`.
KeyWindow = tuple[bytes, int, int, *tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class RpiHit:
    """A sighting of a key's RPI: the key's position, the RPI's interval, the sighting's."""

    key: int
    interval: int
    sighting: int


class KeyMatcher(Protocol):
    """What says which keys were heard: :class:`SightingIndex` or :class:`ParallelMatcher`."""

    def match(self, keys: Sequence[KeyWindow]) -> list[int]:
        """Positions in ``keys`` of the keys with at least one sighting, ascending."""
        ...


def _is_derivable(key_data: bytes, start: int, period: int) -> bool:
    # Export readers pass on what a file holds; a key the schedule cannot derive (wrong
    # length, period outside 1..144, interval outside uint32) can never have been heard.
    return (
        len(key_data) == KEY_LENGTH
        and 1 <= period <= MAX_INTERVAL_COUNT
        and start >= 0
        and start + period - 1 <= MAX_INTERVAL_NUMBER
    )


def _aligned_offsets(derived: bytes, rpi: bytes) -> Iterator[int]:
    """The RPI numbers at which ``rpi`` lies in ``derived`` (16-byte aligned matches only)."""
    at = derived.find(rpi)
    while at >= 0:
        if at % RPI_LENGTH == 0:
            yield at // RPI_LENGTH
        at = derived.find(rpi, at + 1)


class SightingIndex:
    """The sightings of a phone (or of many: positions say which), indexed for matching.

    ``tolerance`` is the clock skew allowed between a sighting's time and its RPI's interval.
    The index is immutable; build a new one when sightings are added.
    """

    def __init__(
        self, sightings: Sequence[Sighting], *, tolerance: timedelta = DEFAULT_TOLERANCE
    ) -> None:
        if tolerance < timedelta(0):
            raise ValueError("the tolerance must not be negative")
        self.sightings: tuple[Sighting, ...] = tuple(sightings)
        self.tolerance = tolerance
        self._tolerance_seconds = int(tolerance.total_seconds())
        by_rpi: dict[bytes, list[int]] = {}
        for position, sighting in enumerate(self.sightings):
            by_rpi.setdefault(sighting.rpi, []).append(position)
        self._by_rpi = {rpi: tuple(positions) for rpi, positions in by_rpi.items()}
        prefixes: dict[int, list[bytes]] = {}
        if by_rpi:
            words = array(_WORD)
            rpis = list(by_rpi)
            words.frombytes(b"".join(rpis))
            for rpi, word in zip(rpis, words[::_WORDS_PER_RPI], strict=True):
                prefixes.setdefault(word, []).append(rpi)
        self._prefix_rpis = {word: tuple(rpis) for word, rpis in prefixes.items()}
        self._prefixes = frozenset(prefixes)
        self._times = array("q", (int(sighting.time.timestamp()) for sighting in self.sightings))

    def __len__(self) -> int:
        return len(self.sightings)

    def match(self, keys: Sequence[KeyWindow]) -> list[int]:
        """Positions in ``keys`` of the keys heard at least once, ascending."""
        return sorted({hit.key for hit in self.hits(keys)})

    def hits(
        self, keys: Sequence[KeyWindow], *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> list[RpiHit]:
        """Every sighting of every key's RPIs within the tolerance, in key order.

        Keys that cannot be derived (not 16 bytes, a period outside 1..144) have no hits.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        found: list[RpiHit] = []
        if not self._prefixes:
            return found
        for first in range(0, len(keys), chunk_size):
            found.extend(self._chunk_hits(keys[first : first + chunk_size], first))
        return found

    def _chunk_hits(self, chunk: Sequence[KeyWindow], offset: int) -> list[RpiHit]:
        by_period: dict[int, list[int]] = {}
        for position, key in enumerate(chunk):
            if _is_derivable(key[0], key[1], key[2]):
                by_period.setdefault(key[2], []).append(position)
        found: list[RpiHit] = []
        for period, positions in by_period.items():
            group = [chunk[position] for position in positions]
            derived = b"".join(derive_rpi_blocks([(key[0], key[1]) for key in group], count=period))
            words = array(_WORD)
            words.frombytes(derived)
            # The one pass over every derived RPI: a C-level set intersection with the first
            # word of each. A chunk nobody heard ends here.
            for word in self._prefixes.intersection(words[::_WORDS_PER_RPI]):
                for rpi in self._prefix_rpis[word]:
                    for number in _aligned_offsets(derived, rpi):
                        member, interval_offset = divmod(number, period)
                        interval = group[member][1] + interval_offset
                        found.extend(
                            RpiHit(offset + positions[member], interval, sighting)
                            for sighting in self._by_rpi[rpi]
                            if self._in_tolerance(interval, self._times[sighting])
                        )
        found.sort(key=lambda hit: (hit.key, hit.interval, hit.sighting))
        return found

    def hits_in(self, derived: DerivedRpis) -> list[RpiHit]:
        """As :meth:`hits` for the keys ``derived`` was built from, without deriving again:
        each sighted RPI is looked up among the derived ones."""
        found: list[RpiHit] = []
        for rpi, positions in self._by_rpi.items():
            for key, interval in derived.lookup(rpi):
                found.extend(
                    RpiHit(key, interval, sighting)
                    for sighting in positions
                    if self._in_tolerance(interval, self._times[sighting])
                )
        found.sort(key=lambda hit: (hit.key, hit.interval, hit.sighting))
        return found

    def match_in(self, derived: DerivedRpis) -> list[int]:
        """As :meth:`match`, for the keys ``derived`` was built from."""
        return sorted({hit.key for hit in self.hits_in(derived)})

    def _in_tolerance(self, interval: int, seen_at: int) -> bool:
        begins = interval * _INTERVAL_SECONDS
        return (
            begins - self._tolerance_seconds
            <= seen_at
            < begins + _INTERVAL_SECONDS + self._tolerance_seconds
        )


class DerivedRpis:
    """Every RPI of a list of keys, derived once, to look sightings up in.

    The derivation is the flat one :meth:`SightingIndex.hits` uses; the RPIs are indexed by
    their first eight bytes (as integers), and a lookup compares the full sixteen. Keys that
    cannot be derived are skipped, so positions still refer to the list given. Memory is
    about 100 bytes per RPI: 144 per key.
    """

    def __init__(self, keys: Sequence[KeyWindow], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.key_count = len(keys)
        self._blocks: list[tuple[bytes, list[tuple[int, int]], int]] = []
        # word -> location (block << 32 | RPI number in the block); a word shared by two RPIs
        # (never seen in practice, but possible) moves to the rare list of several locations.
        self._words: dict[int, int] = {}
        self._shared_words: dict[int, list[int]] = {}
        for first in range(0, len(keys), chunk_size):
            chunk = keys[first : first + chunk_size]
            by_period: dict[int, list[int]] = {}
            for position, key in enumerate(chunk):
                if _is_derivable(key[0], key[1], key[2]):
                    by_period.setdefault(key[2], []).append(first + position)
            for period, positions in by_period.items():
                derived = b"".join(
                    derive_rpi_blocks([(keys[p][0], keys[p][1]) for p in positions], count=period)
                )
                block = len(self._blocks)
                self._blocks.append((derived, [(p, keys[p][1]) for p in positions], period))
                words = array(_WORD)
                words.frombytes(derived)
                for number, word in enumerate(words[::_WORDS_PER_RPI]):
                    location = block << 32 | number
                    if word in self._shared_words:
                        self._shared_words[word].append(location)
                    elif word in self._words:
                        self._shared_words[word] = [self._words.pop(word), location]
                    else:
                        self._words[word] = location

    def __len__(self) -> int:
        """The number of RPIs derived."""
        return sum(len(derived) // RPI_LENGTH for derived, _, _ in self._blocks)

    def lookup(self, rpi: bytes) -> list[tuple[int, int]]:
        """The (key position, interval) pairs whose RPI is ``rpi`` (nearly always 0 or 1)."""
        if len(rpi) != RPI_LENGTH:
            return []
        word = array(_WORD, rpi[:8])[0]
        single = self._words.get(word)
        locations = [single] if single is not None else self._shared_words.get(word, [])
        found: list[tuple[int, int]] = []
        for location in locations:
            block, number = location >> 32, location & 0xFFFFFFFF
            derived, starts, period = self._blocks[block]
            if derived[number * RPI_LENGTH : (number + 1) * RPI_LENGTH] == rpi:
                member, offset = divmod(number, period)
                position, start = starts[member]
                found.append((position, start + offset))
        return found


# ---- worker processes ------------------------------------------------------------------

# Each worker process holds one index, installed once when the process starts; tasks then
# carry only keys. This global exists in worker processes only.
_worker_index: SightingIndex | None = None


def _install_index(index: SightingIndex) -> None:
    # A forked worker shares its parent's heap page by page until it writes to it. The
    # cyclic garbage collector would walk (and so write to) every inherited object on its
    # first full collection; frozen, they are left alone, which saves a copy of the parent.
    gc.freeze()
    global _worker_index  # the worker's one piece of state, set once at start
    _worker_index = index


def _worker_hits(
    key_data: bytes, starts: array[int], periods: array[int]
) -> list[tuple[int, int, int]]:
    index = _worker_index
    if index is None:  # pragma: no cover - the pool always installs it first
        raise RuntimeError("the worker has no sighting index")
    keys = [
        (key_data[KEY_LENGTH * i : KEY_LENGTH * (i + 1)], starts[i], periods[i])
        for i in range(len(starts))
    ]
    # Plain tuples travel back more cheaply than dataclasses.
    return [(hit.key, hit.interval, hit.sighting) for hit in index.hits(keys)]


class ParallelMatcher:
    """A :class:`SightingIndex` spread over worker processes (one per core by default).

    Use it as a context manager, or call :meth:`close`. The pool starts when the matcher is
    made and each worker receives the index once; a :meth:`hits` call then ships only key
    chunks (16 bytes and two integers a key) and receives only hits.
    """

    def __init__(
        self,
        index: SightingIndex,
        *,
        workers: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        mp_context: BaseContext | None = None,
    ) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1 or chunk_size < 1:
            raise ValueError("workers and chunk_size must be positive")
        self.index = index
        self.chunk_size = chunk_size
        # ``mp_context`` picks how workers start (multiprocessing's default when None): a
        # forked worker starts in milliseconds and shares the index with its parent; a
        # spawned one imports the SDK and receives a pickled copy of the index.
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp_context,
            initializer=_install_index,
            initargs=(index,),
        )

    def __enter__(self) -> ParallelMatcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def match(self, keys: Sequence[KeyWindow]) -> list[int]:
        """Positions in ``keys`` of the keys heard at least once, ascending."""
        return sorted({hit.key for hit in self.hits(keys)})

    def hits(self, keys: Sequence[KeyWindow]) -> list[RpiHit]:
        """As :meth:`SightingIndex.hits`, computed by the workers."""
        if not len(self.index):
            return []
        pending: list[tuple[list[int], Future[list[tuple[int, int, int]]]]] = []
        for first in range(0, len(keys), self.chunk_size):
            chunk = keys[first : first + self.chunk_size]
            # Only derivable keys travel (the columns need 16 bytes a key and 64-bit numbers);
            # ``shipped`` maps a worker's positions back to positions in ``keys``.
            shipped = [
                first + position
                for position, key in enumerate(chunk)
                if _is_derivable(key[0], key[1], key[2])
            ]
            if not shipped:
                continue
            if len(shipped) < len(chunk):
                chunk = [keys[position] for position in shipped]
            task = self._pool.submit(
                _worker_hits,
                b"".join([key[0] for key in chunk]),
                array("q", [key[1] for key in chunk]),
                array("q", [key[2] for key in chunk]),
            )
            pending.append((shipped, task))
        found: list[RpiHit] = []
        for shipped, task in pending:
            found.extend(
                RpiHit(shipped[key], interval, sighting)
                for key, interval, sighting in task.result()
            )
        return found
