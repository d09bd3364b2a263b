"""The key server's queries on exports: batches and their leases, written files, window keys.

The batcher inserts one batch per closed window; workers lease a batch with one conditional
``UPDATE`` committed on its own (PostgreSQL re-evaluates it against the latest row version
after a concurrent update, SQLite runs it under ``BEGIN IMMEDIATE``), read the keys of its
window, and complete it only while they still hold the lease. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, func, not_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.util.typing import TupleAny

from exposure.db.upsert import upsert_insert
from keyserver.models import (
    STATUS_COMPLETE,
    STATUS_OPEN,
    STATUS_PENDING,
    ExportBatch,
    ExportFile,
    Exposure,
)

#: Which stored keys belong to an export config (see :func:`key_filter`).
KeyFilter: TypeAlias = ColumnElement[bool]

#: The origin of keys read from a peer's export files.
ORIGIN_IMPORT = "import"
# Rows per INSERT and per ``IN (...)`` of batch ids: far below both engines' limits.
_BATCH_CHUNK = 500
# Longest delay of a key's created_at after it is stored: a 144-interval key published as it
# starts, plus the largest truncate window (a day).
_MAX_EMBARGO = timedelta(days=2)


# ---- batches -----------------------------------------------------------------------------


def latest_batch_ends(session: Session) -> dict[int, datetime]:
    """config id → where its latest batch ends, for every config that has a batch."""
    return {
        config_id: latest_end
        for config_id, latest_end in session.execute(
            select(ExportBatch.config_id, func.max(ExportBatch.end_at)).group_by(
                ExportBatch.config_id
            )
        )
    }


def insert_batches(
    session: Session, config_id: int, windows: Sequence[tuple[datetime, datetime]]
) -> list[int]:
    """Insert an open batch per window; return the ids of those no other batcher had inserted.

    ``(config_id, start_at)`` is unique, so a window inserted concurrently is skipped.
    """
    inserted: list[int] = []
    for offset in range(0, len(windows), _BATCH_CHUNK):
        chunk = windows[offset : offset + _BATCH_CHUNK]
        statement = (
            upsert_insert(session, ExportBatch)
            .values(
                [
                    {
                        "config_id": config_id,
                        "start_at": start,
                        "end_at": end,
                        "status": STATUS_OPEN,
                        "lease_holder": None,
                        "lease_expires_at": None,
                        "completed_at": None,
                    }
                    for start, end in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["config_id", "start_at"])
            .returning(ExportBatch.id)
        )
        inserted.extend(session.scalars(statement))
    return inserted


def batches_by_id(session: Session, ids: Sequence[int]) -> list[ExportBatch]:
    """The batches with these ids, in no particular order."""
    batches: list[ExportBatch] = []
    for offset in range(0, len(ids), _BATCH_CHUNK):
        chunk = ids[offset : offset + _BATCH_CHUNK]
        batches.extend(session.scalars(select(ExportBatch).where(ExportBatch.id.in_(chunk))))
    return batches


def batch_by_id(session: Session, batch_id: int) -> ExportBatch | None:
    return session.get(ExportBatch, batch_id)


def last_batch_completion(session: Session) -> datetime | None:
    """When the most recent export batch completed, if any has."""
    return session.scalar(select(func.max(ExportBatch.completed_at)))


# ---- leases ------------------------------------------------------------------------------


def _leasable(now: datetime) -> ColumnElement[bool]:
    return and_(
        ExportBatch.end_at <= now,
        or_(
            ExportBatch.status == STATUS_OPEN,
            and_(ExportBatch.status == STATUS_PENDING, ExportBatch.lease_expires_at <= now),
        ),
    )


def _held_by(batch_id: int, holder: str) -> ColumnElement[bool]:
    return and_(
        ExportBatch.id == batch_id,
        ExportBatch.status == STATUS_PENDING,
        ExportBatch.lease_holder == holder,
    )


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) else 0


def leasable_batch_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` batches that have ended and are open or whose lease expired, oldest first."""
    return list(
        session.scalars(
            select(ExportBatch.id)
            .where(_leasable(now))
            .order_by(ExportBatch.end_at, ExportBatch.id)
            .limit(limit)
        )
    )


def lease_batch(
    session: Session, batch_id: int, *, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """Lease the batch to ``holder`` until ``expires_at`` if it is still leasable at ``now``."""
    leased = session.execute(
        update(ExportBatch)
        .where(ExportBatch.id == batch_id, _leasable(now))
        .values(status=STATUS_PENDING, lease_holder=holder, lease_expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(leased) == 1


def renew_batch_lease(
    session: Session, batch_id: int, *, holder: str, expires_at: datetime
) -> bool:
    """Extend ``holder``'s lease of the batch to ``expires_at``; False if it no longer holds it."""
    renewed = session.execute(
        update(ExportBatch)
        .where(_held_by(batch_id, holder))
        .values(lease_expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(renewed) == 1


def release_batch(session: Session, batch_id: int, *, holder: str) -> None:
    """Open the batch again, if ``holder`` still holds it."""
    session.execute(
        update(ExportBatch)
        .where(_held_by(batch_id, holder))
        .values(status=STATUS_OPEN, lease_holder=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def complete_batch(session: Session, batch_id: int, *, holder: str, now: datetime) -> bool:
    """Mark the batch complete at ``now`` if ``holder`` still holds it; False otherwise."""
    completed = session.execute(
        update(ExportBatch)
        .where(_held_by(batch_id, holder))
        .values(
            status=STATUS_COMPLETE,
            lease_holder=None,
            lease_expires_at=None,
            completed_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(completed) == 1


# ---- files -------------------------------------------------------------------------------


def add_export_files(session: Session, files: Iterable[ExportFile]) -> None:
    session.add_all(files)


def complete_file_names(session: Session, config_id: int, since: datetime) -> list[str]:
    """The config's complete files of complete batches that started at or after ``since``."""
    return list(
        session.scalars(
            select(ExportFile.filename)
            .join(ExportBatch, ExportBatch.id == ExportFile.batch_id)
            .where(
                ExportBatch.config_id == config_id,
                ExportBatch.status == STATUS_COMPLETE,
                ExportBatch.start_at >= since,
                ExportFile.status == STATUS_COMPLETE,
            )
        )
    )


# ---- the keys of a window ----------------------------------------------------------------


def _region_match(region: str) -> ColumnElement[bool]:
    # Regions are stored wrapped in commas (",LA,VN,") and never contain "%" or "_".
    return Exposure.regions.like(f"%,{region},%")


def key_filter(
    *,
    input_regions: Sequence[str],
    exclude_regions: Sequence[str],
    include_travelers: bool,
    only_non_travelers: bool,
    include_imported: bool = False,
    import_source_ids: Sequence[int] = (),
    import_regions: Sequence[str] = (),
) -> KeyFilter:
    """Which stored keys belong to a config, by origin, region and traveler flag.

    Imported keys go in only with ``include_imported``: those of ``import_source_ids``
    (every source when empty) in ``import_regions`` (the input regions when empty).
    Unlike the reference, the region filters apply with any number of input or excluded
    regions (the reference ignores them when more than one is given, §4.7).
    """
    own = and_(
        Exposure.origin != ORIGIN_IMPORT,
        _regions_and_travelers(
            input_regions, exclude_regions, include_travelers, only_non_travelers
        ),
    )
    if not include_imported:
        return own
    imported_conditions = [
        Exposure.origin == ORIGIN_IMPORT,
        _regions_and_travelers(
            import_regions or input_regions,
            exclude_regions,
            include_travelers,
            only_non_travelers,
        ),
    ]
    if import_source_ids:
        # Not IN (...): the worker streams the compiled text itself, where an expanding IN
        # would stay a placeholder.
        imported_conditions.append(
            or_(*(Exposure.import_source_id == source_id for source_id in import_source_ids))
        )
    return or_(own, and_(*imported_conditions))


def _regions_and_travelers(
    input_regions: Sequence[str],
    exclude_regions: Sequence[str],
    include_travelers: bool,
    only_non_travelers: bool,
) -> KeyFilter:
    included = or_(*(_region_match(region) for region in input_regions))
    if include_travelers:
        included = or_(included, Exposure.traveler.is_(True))
    conditions = [included]
    if exclude_regions:
        conditions.append(not_(or_(*(_region_match(region) for region in exclude_regions))))
    if only_non_travelers:
        conditions.append(Exposure.traveler.is_(False))
    return and_(*conditions)


def _in_window(
    column: InstrumentedAttribute[Any], start: datetime, end: datetime
) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def _keys_statement(start: datetime, end: datetime, keys: KeyFilter) -> Select[*TupleAny]:
    return select(
        Exposure.key,
        Exposure.transmission_risk,
        Exposure.interval_number,
        Exposure.interval_count,
        Exposure.report_type,
        Exposure.days_since_symptom_onset,
    ).where(_in_window(Exposure.created_at, start, end), keys)


def _revised_statement(start: datetime, end: datetime, keys: KeyFilter) -> Select[*TupleAny]:
    # A revision is exported at max(revised_at, created_at); the two disjuncts are that
    # instant falling in the window when the revision came last, and when the key's own
    # (embargoed) created_at came last. Each can use its column's index.
    exported_in_window = or_(
        and_(_in_window(Exposure.revised_at, start, end), Exposure.created_at < end),
        and_(_in_window(Exposure.created_at, start, end), Exposure.revised_at < start),
    )
    # A key is stored at most a day and an hour before its created_at (the embargo of a key
    # published as it starts), and revised after it is stored; the bound lets the revised_at
    # index skip every older revision.
    earliest_revision = start - _MAX_EMBARGO
    # The revised report type and onset, with the original transmission risk (§4.3).
    return select(
        Exposure.key,
        Exposure.transmission_risk,
        Exposure.interval_number,
        Exposure.interval_count,
        Exposure.revised_report_type,
        Exposure.revised_days_since_symptom_onset,
    ).where(
        Exposure.revised_at >= earliest_revision,
        Exposure.revised_at < end,
        exported_in_window,
        keys,
    )


def stream_window_keys(
    connection: Connection,
    *,
    start: datetime,
    end: datetime,
    keys: KeyFilter,
    revised: bool,
    rows_per_chunk: int,
) -> Iterator[Sequence[Any]]:
    """The keys a batch of ``[start, end)`` exports, in lists of up to ``rows_per_chunk``.

    Each row is (key, transmission risk, start interval, period, report type, days since
    onset): of the keys created in the window, or, with ``revised``, of the keys whose
    revision is exported in it. A revision made while its key was still embargoed is
    exported where the key itself is (``max(revised_at, created_at)``), never earlier.

    On PostgreSQL (psycopg) rows are streamed in libpq's chunked mode, bypassing
    SQLAlchemy's result rows: for a million keys that alone was slower than everything else
    the export does, and a client-side result would hold every row in memory at once. The
    statement is still built and compiled by SQLAlchemy; its only parameters are aware UTC
    datetimes and strings, which psycopg adapts exactly as SQLAlchemy's types would.
    """
    statement = (_revised_statement if revised else _keys_statement)(start, end, keys)
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        compiled = statement.compile(dialect=connection.dialect)
        parameters = {
            name: value.astimezone(UTC) if isinstance(value, datetime) else value
            for name, value in compiled.params.items()
        }
        driver_connection: Any = connection.connection.driver_connection
        with driver_connection.cursor() as cursor:
            rows = cursor.stream(str(compiled), parameters, binary=True, size=rows_per_chunk)
            try:
                while chunk := list(islice(rows, rows_per_chunk)):
                    yield chunk
            finally:
                # A consumer that stops early (an error) must not hand the connection back
                # to the pool mid-query: closing the stream cancels and drains it.
                rows.close()
        return
    yield from connection.execute(statement).partitions(rows_per_chunk)


def window_key_metadata(
    session: Session, *, start: datetime, end: datetime, keys: KeyFilter
) -> Sequence[Row[*TupleAny]]:
    """Everything but the key bytes of the keys created in ``[start, end)``, by key.

    Padding copies real keys' metadata; each row names its ``origin`` so padding already
    stored can be told apart.
    """
    return session.execute(
        select(
            Exposure.transmission_risk,
            Exposure.regions,
            Exposure.traveler,
            Exposure.interval_number,
            Exposure.interval_count,
            Exposure.report_type,
            Exposure.days_since_symptom_onset,
            Exposure.created_at,
            Exposure.origin,
        )
        .where(_in_window(Exposure.created_at, start, end), keys)
        .order_by(Exposure.key)
    ).all()
