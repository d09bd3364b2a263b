"""The key server's queries on stored exposure keys: the only module that writes them.

Callers own the transaction. Existing rows are read ``FOR UPDATE`` on PostgreSQL so that two
publishes of the same keys serialize (SQLite serializes every writer with BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    LargeBinary,
    TextClause,
    any_,
    bindparam,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from exposure.db.driver import driver_rows, uses_psycopg
from exposure.db.upsert import upsert_insert
from exposure.json_codec import encode_json
from keyserver.models import Exposure

#: Rows per INSERT statement; keeps statements far below the parameter limits of both engines.
INSERT_BATCH_SIZE = 500


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# On PostgreSQL the keys travel as one array parameter: the statement's text is the same
# for any number of keys, so the driver prepares it once per connection and the server
# skips parsing and planning on every publish.
_LOCK_BY_ARRAY = (
    select(Exposure)
    .where(Exposure.key == any_(bindparam("keys", type_=postgresql.ARRAY(LargeBinary))))
    .with_for_update()
)


def lock_existing(session: Session, keys: Sequence[bytes]) -> dict[bytes, Exposure]:
    """The stored rows of ``keys`` (those that exist), locked until the transaction ends."""
    if not keys:
        return {}
    if _is_postgresql(session):
        rows = session.scalars(_LOCK_BY_ARRAY, {"keys": list(keys)})
    else:
        rows = session.scalars(select(Exposure).where(Exposure.key.in_(keys)).with_for_update())
    return {row.key: row for row in rows}


@cache
def _unnest_insert(columns: tuple[str, ...]) -> TextClause:
    """``INSERT ... SELECT * FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING key``.

    One array per column, each cast to its column's type: a fixed text however many rows,
    which PostgreSQL prepares once per connection.
    """
    table = Exposure.__table__
    dialect: Dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    arrays = ", ".join(
        f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns
    )
    return text(
        f"INSERT INTO {Exposure.__tablename__} ({', '.join(columns)}) "  # noqa: S608 - model constants
        f"SELECT * FROM unnest({arrays}) ON CONFLICT (key) DO NOTHING RETURNING key"
    )


def insert_exposures(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert new keys, skipping any that another transaction stored first; return how many."""
    if not rows:
        return 0
    if _is_postgresql(session):
        columns = tuple(rows[0])
        if any(tuple(row) != columns for row in rows):
            raise ValueError("every row must name the same columns in the same order")
        arrays = {name: [row[name] for row in rows] for name in columns}
        return len(session.execute(_unnest_insert(columns), arrays).all())
    # One statement executed with many parameter sets: SQLAlchemy compiles it once and
    # caches it ("insertmanyvalues" batches the rows into multi-row INSERTs), where a
    # statement built with .values(rows) would be compiled anew for every publish.
    statement = (
        upsert_insert(session, Exposure.__table__)
        .on_conflict_do_nothing(index_elements=["key"])
        # rowcount is not reliable for multi-row inserts on every driver; RETURNING is.
        .returning(Exposure.__table__.c.key)
    )
    inserted = 0
    for start in range(0, len(rows), INSERT_BATCH_SIZE):
        chunk = [dict(row) for row in rows[start : start + INSERT_BATCH_SIZE]]
        inserted += len(session.execute(statement, chunk).all())
    return inserted


# The common publish (none of its keys stored yet, no revision token) in one statement on
# PostgreSQL, run autocommitted: no BEGIN, no row locks, no COMMIT. The rows travel as one
# JSON text, which the driver sends as it is; eleven arrays cost it more to encode than the
# statement costs the database. `stored` and the insert read the same snapshot: when a key
# is already stored, nothing is inserted and the caller falls back to the transaction that
# revises (store_publish). A key another publish stores meanwhile is skipped by ON CONFLICT,
# as in that transaction.
_INSERT_UNLESS_ANY_STORED = text(
    f"""
    WITH incoming AS (
        SELECT decode(r.key, 'hex') AS key, r.publish, r.transmission_risk, r.regions,
               r.traveler, r.interval_number, r.interval_count, r.created_at, r.origin,
               r.health_authority_id, r.report_type, r.days_since_symptom_onset
        FROM json_to_recordset(CAST(:rows AS json)) AS r(
            key text, publish boolean, transmission_risk integer, regions text,
            traveler boolean, interval_number integer, interval_count integer,
            created_at timestamptz, origin text, health_authority_id integer,
            report_type text, days_since_symptom_onset integer)
    ),
    stored AS (
        SELECT 1 FROM {Exposure.__tablename__} AS e JOIN incoming USING (key) LIMIT 1
    ),
    inserted AS (
        INSERT INTO {Exposure.__tablename__} (
            key, transmission_risk, regions, traveler, interval_number, interval_count,
            created_at, origin, health_authority_id, report_type, days_since_symptom_onset)
        SELECT key, transmission_risk, regions, traveler, interval_number, interval_count,
               created_at, origin, health_authority_id, report_type, days_since_symptom_onset
        FROM incoming
        WHERE publish AND NOT EXISTS (SELECT 1 FROM stored)
        ON CONFLICT (key) DO NOTHING
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM stored), (SELECT count(*) FROM inserted)
    """  # noqa: S608 - the table name is the model's constant
)

#: The columns :func:`insert_unless_any_stored` takes for each key, beside ``publish``.
FAST_ROW_COLUMNS = (
    "key",
    "transmission_risk",
    "regions",
    "traveler",
    "interval_number",
    "interval_count",
    "created_at",
    "origin",
    "health_authority_id",
    "report_type",
    "days_since_symptom_onset",
)


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    created_at: datetime = row["created_at"]
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError("naive datetime given where an aware UTC datetime is required")
    missing = _JSON_ROW_NAMES.difference(row)
    if missing:
        raise ValueError(f"a row needs {sorted(missing)}")
    return {**row, "key": row["key"].hex(), "created_at": created_at.isoformat()}


_JSON_ROW_NAMES = frozenset(("publish", *FAST_ROW_COLUMNS))


def stores_in_one_statement(connection: Connection) -> bool:
    """Whether :func:`insert_unless_any_stored` runs on ``connection``'s database."""
    return uses_psycopg(connection)


def insert_unless_any_stored(
    connection: Connection, rows: Sequence[Mapping[str, Any]]
) -> int | None:
    """PostgreSQL only: store ``rows`` in one statement unless any of their keys is stored.

    Each row names :data:`FAST_ROW_COLUMNS` and ``publish``: a row with ``publish`` False is
    checked against the stored keys but not inserted (a negative test's key). Returns how
    many rows were inserted (fewer than asked when a concurrent publish stored some of the
    keys first), or None, inserting nothing, when a key was already stored. Run it on an
    autocommit connection (:func:`exposure.db.unit_of_work.autocommit`).
    """
    if not stores_in_one_statement(connection):
        raise ValueError("the one-statement publish needs PostgreSQL through psycopg")
    if not rows:
        return 0
    encoded = encode_json([_json_row(row) for row in rows]).decode("utf-8")
    [(any_stored, inserted)] = driver_rows(connection, _INSERT_UNLESS_ANY_STORED, {"rows": encoded})
    return None if any_stored else int(inserted)


# ---- imports: a whole file's keys, a chunk at a time ----------------------------------------

#: The columns of an imported key, in the order :func:`insert_imported` and
#: :func:`insert_imported_if_all_new` take them.
IMPORT_COLUMNS = (*FAST_ROW_COLUMNS, "import_source_id", "import_file_id")
_COLUMN_LIST = ", ".join(IMPORT_COLUMNS)
# PostgreSQL's types of IMPORT_COLUMNS, which binary COPY needs exactly.
_IMPORT_COPY_TYPES = (
    "bytea",  # key
    "int4",  # transmission_risk
    "varchar",  # regions
    "bool",  # traveler
    "int4",  # interval_number
    "int4",  # interval_count
    "timestamptz",  # created_at
    "varchar",  # origin
    "int4",  # health_authority_id
    "varchar",  # report_type
    "int4",  # days_since_symptom_onset
    "int4",  # import_source_id
    "int4",  # import_file_id
)
_IMPORT_SAVEPOINT = "import_chunk"
# Where a chunk with stored keys goes on PostgreSQL: a temporary table of the transaction,
# inserted from with ON CONFLICT DO NOTHING.
_STAGING = "import_staging"
# SQLite allows 32,766 bound parameters per statement.
_SQLITE_LOOKUP_BATCH = 10_000
_STORED_COLUMNS = (
    "key, origin, import_source_id, interval_number, interval_count, report_type, "
    "revised_report_type, health_authority_id, regions"
)
_STORED_AMONG_ARRAY = text(
    f"SELECT {_STORED_COLUMNS} FROM {Exposure.__tablename__} "  # noqa: S608 - constants
    "WHERE key = ANY(:keys) FOR UPDATE"
).bindparams(bindparam("keys", type_=postgresql.ARRAY(LargeBinary)))
_STORED_AMONG_LIST = text(
    f"SELECT {_STORED_COLUMNS} FROM {Exposure.__tablename__} WHERE key IN :keys"  # noqa: S608
).bindparams(bindparam("keys", expanding=True, type_=LargeBinary))


@dataclass(frozen=True)
class StoredKey:
    """What deciding on an imported copy of a stored key needs of the stored row."""

    key: bytes
    origin: str
    import_source_id: int | None
    interval_number: int
    interval_count: int
    report_type: str
    revised_report_type: str | None
    health_authority_id: int | None
    regions: str


def stored_among(session: Session, keys: Sequence[bytes]) -> dict[bytes, StoredKey]:
    """The stored rows of those of ``keys`` that are stored, locked until the transaction
    ends (PostgreSQL)."""
    if not keys:
        return {}
    if _is_postgresql(session):
        batches = [session.execute(_STORED_AMONG_ARRAY, {"keys": list(keys)})]
    else:
        batches = [
            session.execute(
                _STORED_AMONG_LIST, {"keys": list(keys[at : at + _SQLITE_LOOKUP_BATCH])}
            )
            for at in range(0, len(keys), _SQLITE_LOOKUP_BATCH)
        ]
    return {bytes(row[0]): StoredKey(bytes(row[0]), *row[1:]) for batch in batches for row in batch}


def insert_imported_if_all_new(session: Session, rows: Iterable[tuple[Any, ...]]) -> int | None:
    """Insert imported keys (values in :data:`IMPORT_COLUMNS` order) if none of them is
    stored, and say how many; None, inserting none, when one is, or when the engine cannot
    tell cheaply (SQLite: ``rows`` is then not read, and the caller takes
    :func:`insert_imported`).

    The common case of an import, a file of keys nobody stored yet, costs no lookup: on
    PostgreSQL the rows stream straight into the key table in one binary COPY, so the
    server's index work runs while the caller still produces rows, under a savepoint that a
    stored key's unique violation rolls back.
    """
    connection = session.connection()
    if not uses_psycopg(connection):
        return None
    # Imported here: a server on the embedded database never loads the PostgreSQL driver.
    from psycopg.errors import UniqueViolation

    connection.exec_driver_sql(f"SAVEPOINT {_IMPORT_SAVEPOINT}")
    try:
        copied = _copy_rows(connection, Exposure.__tablename__, rows)
    except UniqueViolation:
        connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_IMPORT_SAVEPOINT}")
        connection.exec_driver_sql(f"RELEASE SAVEPOINT {_IMPORT_SAVEPOINT}")
        return None
    connection.exec_driver_sql(f"RELEASE SAVEPOINT {_IMPORT_SAVEPOINT}")
    return copied


def insert_imported(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert imported keys (values in :data:`IMPORT_COLUMNS` order), skipping any that is
    stored already; how many were inserted."""
    if not rows:
        return 0
    connection = session.connection()
    if not uses_psycopg(connection):
        return _insert_imported_sqlite(connection, rows)
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_STAGING} (LIKE {Exposure.__tablename__}) ON COMMIT DROP"
    )
    _copy_rows(connection, _STAGING, rows)
    result = connection.exec_driver_sql(
        f"INSERT INTO {Exposure.__tablename__} ({_COLUMN_LIST}) "  # noqa: S608 - constants
        f"SELECT {_COLUMN_LIST} FROM {_STAGING} ON CONFLICT (key) DO NOTHING"
    )
    connection.exec_driver_sql(f"DROP TABLE {_STAGING}")
    return int(result.rowcount)


def _copy_rows(connection: Connection, table: str, rows: Iterable[tuple[Any, ...]]) -> int:
    # Imported here: a server on the embedded database never loads the PostgreSQL driver.
    from psycopg.types.string import BytesBinaryDumper

    driver: Any = connection.connection.driver_connection
    copied = 0
    with driver.cursor() as cursor:
        # psycopg's DB-API module dumps bytes in Python (to accept its Binary wrapper too);
        # these rows hold plain bytes, which the library's own dumper encodes in C: a
        # third less CPU per row.
        cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
        with cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_IMPORT_COPY_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
                copied += 1
    return copied


def _sqlite_bind_processor(column_type: Any, dialect: Dialect) -> Any:
    return column_type.dialect_impl(dialect).bind_processor(dialect)


def _insert_imported_sqlite(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    dialect = connection.dialect
    # The key goes as the bytes it is (sqlite3 binds bytes as a BLOB); every other column
    # with a conversion (the timestamp, the flag) holds a few distinct values per file, so
    # each value is converted once. The dialect's own form of each type: a timestamp must
    # be stored as the text every other statement writes and compares with.
    converters = {
        position: processor
        for position, name in enumerate(IMPORT_COLUMNS)
        if name != "key"
        and (processor := _sqlite_bind_processor(Exposure.__table__.c[name].type, dialect))
        is not None
    }
    converted_values: dict[int, dict[Any, Any]] = {position: {} for position in converters}

    def converted(row: tuple[Any, ...]) -> list[Any]:
        values = list(row)
        for position, processor in converters.items():
            value = values[position]
            if value is not None:
                known = converted_values[position]
                if value not in known:
                    known[value] = processor(value)
                values[position] = known[value]
        return values

    placeholders = ", ".join("?" for _ in IMPORT_COLUMNS)
    sqlite_connection: Any = connection.connection.driver_connection
    before = sqlite_connection.total_changes
    driver_cursor = sqlite_connection.cursor()
    try:
        driver_cursor.executemany(
            f"INSERT INTO {Exposure.__tablename__} ({_COLUMN_LIST}) "  # noqa: S608 - constants
            f"VALUES ({placeholders}) ON CONFLICT (key) DO NOTHING",
            map(converted, rows),
        )
    finally:
        driver_cursor.close()
    return int(sqlite_connection.total_changes - before)


def revise_exposure(
    session: Session,
    key: bytes,
    *,
    report_type: str,
    revised_at: datetime,
    days_since_symptom_onset: int | None,
    transmission_risk: int,
    health_authority_id: int | None,
    regions: str,
) -> None:
    """Record a revision of a stored key (the original fields stay as they were)."""
    session.execute(
        update(Exposure)
        .where(Exposure.key == key)
        .values(
            revised_report_type=report_type,
            revised_at=revised_at,
            revised_days_since_symptom_onset=days_since_symptom_onset,
            revised_transmission_risk=transmission_risk,
            health_authority_id=health_authority_id,
            regions=regions,
        )
    )


def encode_regions(regions: Iterable[str]) -> str:
    """``("VN", "LA")`` → ``",LA,VN,"``: sorted, upper case, each wrapped in commas."""
    unique = sorted({region.strip().upper() for region in regions if region.strip()})
    return f",{','.join(unique)}," if unique else ""


def decode_regions(stored: str) -> tuple[str, ...]:
    return tuple(region for region in stored.split(",") if region)
