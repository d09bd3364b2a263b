"""Every SQL query of the verification service. Nothing here commits, except the retention
purgers, which delete in batches of one transaction each (see the end of this module); the
one-statement steps of PostgreSQL are each a whole autocommitted write of their caller.

The statements on the request path (issuing, claiming codes and tokens) are SQLAlchemy Core
statements built once with bound parameters: they skip the ORM's per-row bookkeeping, are
compiled once per process, and PostgreSQL runs them as prepared statements. Each does its
whole job in one round trip (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, ``UPDATE ...
RETURNING``), where the ORM needed a SELECT, a flush and a savepoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from exposure.db import SessionFactory
from exposure.db.driver import driver_rows, uses_psycopg
from exposure.ratelimit import MAX_COUNT, BucketLimit, RateLimitWindow, window_start
from exposure.retention.policy import Purger, PurgeResult
from exposure.retention.store import (
    batched_delete,
    blank_in_batches,
    delete_in_batches,
    oldest_of,
    oldest_value,
)
from verification.models import (
    ApiKey,
    AuditEntry,
    Realm,
    SigningKey,
    VerificationCode,
    VerificationToken,
)


def get_realm(session: Session, realm_id: int) -> Realm | None:
    return session.get(Realm, realm_id)


def get_realm_by_name(session: Session, name: str) -> Realm | None:
    return session.execute(select(Realm).where(Realm.name == name)).scalar_one_or_none()


def add_realm(session: Session, realm: Realm) -> Realm:
    session.add(realm)
    session.flush()  # the caller needs the generated id for keys and audit entries
    return realm


def add_api_key(session: Session, api_key: ApiKey) -> ApiKey:
    session.add(api_key)
    session.flush()  # the generated id goes into the audit entry
    return api_key


def get_api_key(session: Session, api_key_id: int) -> ApiKey | None:
    return session.get(ApiKey, api_key_id)


def find_api_key(session: Session, key_hmacs: Sequence[bytes]) -> ApiKey | None:
    """The API key whose stored HMAC is one of ``key_hmacs`` (one per live secret)."""
    return session.execute(
        select(ApiKey).where(ApiKey.key_hmac.in_(list(key_hmacs)))
    ).scalar_one_or_none()


_CODES = cast(Table, VerificationCode.__table__)
_TOKENS = cast(Table, VerificationToken.__table__)


@cache
def _insert_code_statement(dialect_name: str) -> Any:
    insert_into = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    # No conflict target: a clash on any unique key (uuid, code, long code) inserts nothing.
    return insert_into(_CODES).on_conflict_do_nothing().returning(_CODES.c.id)


def insert_code(session: Session, values: Mapping[str, object]) -> bool:
    """Insert one code row; False (and nothing inserted) if it clashes with a unique key."""
    statement = _insert_code_statement(session.get_bind().dialect.name)
    return session.execute(statement, dict(values)).first() is not None


_UUID_TAKEN = select(_CODES.c.id).where(
    _CODES.c.realm_id == bindparam("realm_id"), _CODES.c.uuid == bindparam("uuid")
)


def uuid_taken(session: Session, realm_id: int, uuid: str) -> bool:
    return session.execute(_UUID_TAKEN, {"realm_id": realm_id, "uuid": uuid}).first() is not None


@dataclass(frozen=True)
class ClaimedCode:
    test_type: str
    symptom_date: date | None
    test_date: date | None


_CANDIDATES: BindParameter[Any] = bindparam("candidates", expanding=True)
_NOW: BindParameter[Any] = bindparam("now")
_CLAIM_CODE = (
    update(_CODES)
    .where(
        _CODES.c.realm_id == bindparam("realm"),
        _CODES.c.claimed.is_(False),
        _CODES.c.test_type.in_(bindparam("accepted", expanding=True)),
        or_(
            and_(_CODES.c.code_hmac.in_(_CANDIDATES), _CODES.c.expires_at > _NOW),
            and_(_CODES.c.long_code_hmac.in_(_CANDIDATES), _CODES.c.long_expires_at > _NOW),
        ),
    )
    .values(claimed=True)
    .returning(_CODES.c.test_type, _CODES.c.symptom_date, _CODES.c.test_date)
)


def claim_code(
    session: Session,
    *,
    realm_id: int,
    code_hmacs: Sequence[bytes],
    accepted_test_types: Sequence[str],
    now: datetime,
) -> ClaimedCode | None:
    """Mark the code claimed if it is unclaimed, unexpired (by the variant that matched) and
    of an accepted test type; one atomic statement. None if no code qualified.

    Concurrent claims of one code serialize on its row: the loser re-checks ``claimed``
    after the winner commits and claims nothing. Should a candidate ever match two codes
    (a short code equal to another code's long code), this raises and the caller's
    transaction rolls back, claiming neither.
    """
    row = session.execute(
        _CLAIM_CODE,
        {
            "realm": realm_id,
            "candidates": list(code_hmacs),
            "accepted": sorted(accepted_test_types),
            "now": now,
        },
    ).one_or_none()
    if row is None:
        return None
    return ClaimedCode(test_type=row[0], symptom_date=row[1], test_date=row[2])


_INSERT_TOKEN = insert(_TOKENS)


def insert_token(session: Session, values: Mapping[str, object]) -> None:
    session.execute(_INSERT_TOKEN, dict(values))


def code_by_uuid(
    session: Session, realm_id: int, uuid: str, *, for_update: bool = False
) -> VerificationCode | None:
    query = select(VerificationCode).where(
        VerificationCode.realm_id == realm_id, VerificationCode.uuid == uuid
    )
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def code_for_claim(
    session: Session, realm_id: int, code_hmacs: Sequence[bytes]
) -> VerificationCode | None:
    """The code matching any candidate HMAC as short or long code, locked for update."""
    candidates = list(code_hmacs)
    return session.execute(
        select(VerificationCode)
        .where(
            VerificationCode.realm_id == realm_id,
            or_(
                VerificationCode.code_hmac.in_(candidates),
                VerificationCode.long_code_hmac.in_(candidates),
            ),
        )
        .with_for_update()
    ).scalar_one_or_none()


_CLAIM_TOKEN = (
    update(_TOKENS)
    .where(
        _TOKENS.c.realm_id == bindparam("realm"),
        _TOKENS.c.token_hmac.in_(bindparam("token_hmacs", expanding=True)),
        _TOKENS.c.used.is_(False),
        _TOKENS.c.expires_at > bindparam("now"),
        _TOKENS.c.test_type == bindparam("type"),
        _TOKENS.c.symptom_date.is_not_distinct_from(bindparam("symptom")),
        _TOKENS.c.test_date.is_not_distinct_from(bindparam("tested")),
    )
    .values(used=True)
)


_CLAIM_TOKEN_ON_PSYCOPG = text(
    f"""
    UPDATE {_TOKENS.name} SET used = TRUE
    WHERE realm_id = :realm AND token_hmac = ANY(CAST(:token_hmacs AS bytea[]))
      AND used = FALSE AND expires_at > :now AND test_type = :type
      AND symptom_date IS NOT DISTINCT FROM CAST(:symptom AS date)
      AND test_date IS NOT DISTINCT FROM CAST(:tested AS date)
    RETURNING 1
    """  # noqa: S608 - the table name is the model's constant
)


def claim_token(
    session: Session,
    *,
    realm_id: int,
    token_hmacs: Sequence[bytes],
    test_type: str,
    symptom_date: date | None,
    test_date: date | None,
    now: datetime,
) -> bool:
    """Mark the token used if it is unused, unexpired and matches; one atomic statement."""
    parameters = {
        "realm": realm_id,
        "token_hmacs": list(token_hmacs),
        "now": now,
        "type": test_type,
        "symptom": symptom_date,
        "tested": test_date,
    }
    if uses_psycopg(session):
        # Every certificate runs it: straight to the driver (exposure.db.driver).
        return len(driver_rows(session, _CLAIM_TOKEN_ON_PSYCOPG, parameters)) == 1
    result = session.execute(_CLAIM_TOKEN, parameters)
    return bool(getattr(result, "rowcount", 0) == 1)


# ---- one statement per step on PostgreSQL -------------------------------------------------
# The request path of /api/issue and /api/verify in as few autocommitted statements as
# their rules allow, each run on psycopg directly (exposure.db.driver). Every statement
# decides in the database what the portable path decides in Python between statements
# (a hit counts, a slot is taken only if it fits, a code is inserted only with its quota
# slot), against the latest committed rows, so concurrent requests see exactly the limits
# they see on the portable path. Bucket names never coincide (each is an HMAC over a
# distinct purpose), so no statement touches one row twice.

_WINDOWS = RateLimitWindow.__tablename__

# Counting a request as exposure.ratelimit.hit counts it (saturating at MAX_COUNT).
_COUNT_REQUEST = f"""
    request AS (
        INSERT INTO {_WINDOWS} AS w (bucket, window_start, count)
        VALUES (:request_bucket, :request_window, 1)
        ON CONFLICT (bucket, window_start) DO UPDATE
        SET count = CASE WHEN w.count >= :max_count THEN :max_count ELSE w.count + 1 END
        RETURNING w.count
    )"""  # noqa: S608 - the table name is the model's constant


def _take_after(name: str, source: str, condition: str) -> str:
    """A CTE taking one slot of bucket ``name`` as exposure.ratelimit.take does, for each
    row of ``source`` meeting ``condition`` (one at most). All three are constants."""
    return f"""
    {name} AS (
        INSERT INTO {_WINDOWS} AS w (bucket, window_start, count)
        SELECT :{name}_bucket, :{name}_window, 1 FROM {source}
        WHERE {condition} AND :{name}_limit > 0
        ON CONFLICT (bucket, window_start) DO UPDATE
        SET count = w.count + 1 WHERE w.count < :{name}_limit
        RETURNING w.count
    )"""  # noqa: S608 - names and condition are constants of this module


_ADMIT_LOOKUP = text(
    "WITH"  # noqa: S608 - built of this module's constants
    + _COUNT_REQUEST
    + ","
    + _take_after("client", "request", "request.count <= :request_limit")
    + ","
    + _take_after("realm", "client", "TRUE")
    + """
    SELECT (SELECT count FROM request), (SELECT count FROM client), (SELECT count FROM realm)
    """
)


def _limit_parameters(name: str, limit: BucketLimit, now: datetime) -> dict[str, Any]:
    return {
        f"{name}_bucket": limit.bucket,
        f"{name}_window": window_start(now, limit.window),
        f"{name}_limit": min(limit.limit, MAX_COUNT),
    }


def _request_parameters(request: BucketLimit, now: datetime) -> dict[str, Any]:
    return {
        "request_bucket": request.bucket,
        "request_window": window_start(now, request.window),
        "request_limit": request.limit,
        "max_count": MAX_COUNT,
    }


def counts_in_one_statement(connection: Connection) -> bool:
    """Whether the one-statement steps below run on ``connection``'s database."""
    return uses_psycopg(connection)


def _require_psycopg(connection: Connection) -> None:
    if not counts_in_one_statement(connection):
        raise ValueError("the one-statement steps need PostgreSQL through psycopg")


@dataclass(frozen=True)
class LookupAdmission:
    """What :func:`admit_lookup` counted: the request's count, and the lockout slots taken
    (None when the request was not allowed, or the slot did not fit)."""

    request_count: int
    client_count: int | None
    realm_count: int | None


def admit_lookup(
    connection: Connection,
    *,
    request: BucketLimit,
    client: BucketLimit,
    realm: BucketLimit,
    now: datetime,
) -> LookupAdmission:
    """PostgreSQL only, autocommitted: count the request; if it is within its limit, take
    a slot of the client's lockout, and if that fits, one of the realm's.

    The same counts as :func:`exposure.ratelimit.hit` and then
    :func:`exposure.ratelimit.take` twice, in one statement. A client slot taken when the
    realm's did not fit is still taken: the caller gives it back, as the portable path does.
    """
    _require_psycopg(connection)
    parameters = {
        **_request_parameters(request, now),
        **_limit_parameters("client", client, now),
        **_limit_parameters("realm", realm, now),
    }
    [(request_count, client_count, realm_count)] = driver_rows(
        connection, _ADMIT_LOOKUP, parameters
    )
    return LookupAdmission(int(request_count), client_count, realm_count)


_CLAIM_CODE_FOR_TOKEN = text(
    f"""
    WITH claimed AS (
        UPDATE {_CODES.name} SET claimed = TRUE
        WHERE realm_id = :realm AND claimed = FALSE
          AND test_type = ANY(CAST(:accepted AS text[]))
          AND ((code_hmac = ANY(CAST(:candidates AS bytea[])) AND expires_at > :now)
               OR (long_code_hmac = ANY(CAST(:candidates AS bytea[]))
                   AND long_expires_at > :now))
        RETURNING id, test_type, symptom_date, test_date
    ),
    token AS (
        -- A second claimed code (a short code equal to another code's long code) would
        -- insert the token twice: its unique HMAC fails the statement, claiming neither.
        INSERT INTO {_TOKENS.name}
            (realm_id, token_hmac, test_type, symptom_date, test_date, used, expires_at)
        SELECT :realm, :token_hmac, test_type, symptom_date, test_date, FALSE, :expires_at
        FROM claimed
        RETURNING 1
    ),
    client_back AS (
        UPDATE {_WINDOWS} SET count = count - 1
        WHERE bucket = :client_bucket AND window_start = :client_window AND count > 0
          AND EXISTS (SELECT 1 FROM token)
        RETURNING 1
    ),
    realm_back AS (
        -- After the client's row, never before: admit_lookup locks the two rows in that
        -- order, and two statements locking them in opposite orders would deadlock.
        UPDATE {_WINDOWS} SET count = count - 1
        WHERE bucket = :realm_bucket AND window_start = :realm_window AND count > 0
          AND EXISTS (SELECT 1 FROM token) AND (SELECT count(*) FROM client_back) >= 0
        RETURNING 1
    )
    SELECT id, test_type, symptom_date, test_date, (SELECT count(*) FROM realm_back)
    FROM claimed
    """  # noqa: S608 - table names are the models' constants
)


@dataclass(frozen=True)
class ClaimedForToken:
    """A code :func:`claim_code_for_token` claimed (``code_id`` to undo it)."""

    code_id: int
    code: ClaimedCode


def claim_code_for_token(
    connection: Connection,
    *,
    realm_id: int,
    code_hmacs: Sequence[bytes],
    accepted_test_types: Sequence[str],
    token_hmac: bytes,
    token_expires_at: datetime,
    give_back: Sequence[BucketLimit],
    now: datetime,
) -> ClaimedForToken | None:
    """PostgreSQL only, autocommitted: :func:`claim_code`, and if it claims, insert the
    token row (``token_hmac``, ``token_expires_at``; the rest comes from the code) and
    give back one hit of each of ``give_back`` (the lookup's two lockout slots, taken at
    ``now``) in the same statement. None, changing nothing, when no code qualified.
    """
    _require_psycopg(connection)
    client, realm = give_back
    parameters = {
        "realm": realm_id,
        "accepted": sorted(accepted_test_types),
        "candidates": list(code_hmacs),
        "now": now,
        "token_hmac": token_hmac,
        "expires_at": token_expires_at,
        "client_bucket": client.bucket,
        "client_window": window_start(now, client.window),
        "realm_bucket": realm.bucket,
        "realm_window": window_start(now, realm.window),
    }
    rows = driver_rows(connection, _CLAIM_CODE_FOR_TOKEN, parameters)
    if not rows:
        return None
    [(code_id, test_type, symptom_date, test_date, _given)] = rows
    return ClaimedForToken(code_id, ClaimedCode(test_type, symptom_date, test_date))


_UNDO_CLAIM = text(
    f"""
    WITH dropped AS (DELETE FROM {_TOKENS.name} WHERE token_hmac = :token_hmac RETURNING 1)
    UPDATE {_CODES.name} SET claimed = FALSE WHERE id = :code_id AND claimed = TRUE
    """  # noqa: S608 - table names are the models' constants
)


def undo_claim(connection: Connection, *, code_id: int, token_hmac: bytes) -> None:
    """PostgreSQL only, autocommitted: take back what :func:`claim_code_for_token` did to
    the code and the token (for a token that could not be signed after all)."""
    _require_psycopg(connection)
    driver_rows(connection, _UNDO_CLAIM, {"code_id": code_id, "token_hmac": token_hmac})


_CODE_COLUMNS = (
    "realm_id",
    "uuid",
    "code_hmac",
    "long_code_hmac",
    "test_type",
    "symptom_date",
    "test_date",
    "expires_at",
    "long_expires_at",
    "claimed",
    "issued_by_api_key_id",
    "external_issuer_id",
    "created_at",
)

_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
# Each value cast to its column's type: a parameter in a SELECT list has none to infer.
_CODE_VALUES = ", ".join(
    f"CAST(:{name} AS {_CODES.c[name].type.compile(dialect=_PG_DIALECT)})" for name in _CODE_COLUMNS
)
_COUNT_AND_INSERT_CODE = text(
    "WITH"  # noqa: S608 - built of this module's and the model's constants
    + _COUNT_REQUEST
    + ","
    + _take_after("quota", "request", "request.count <= :request_limit")
    + f""",
    code AS (
        INSERT INTO {_CODES.name} ({", ".join(_CODE_COLUMNS)})
        SELECT {_CODE_VALUES} FROM quota
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count FROM request), (SELECT count FROM quota), (SELECT count(*) FROM code)
    """  # noqa: S608 - the table and column names are the model's constants
)


@dataclass(frozen=True)
class IssueAdmission:
    """What :func:`count_and_insert_code` did: the request's count, the quota slot taken
    (None if the request was not allowed or the quota is spent) and whether the code row
    went in."""

    request_count: int
    quota_count: int | None
    inserted: bool


def count_and_insert_code(
    connection: Connection,
    *,
    request: BucketLimit,
    quota: BucketLimit,
    row: Mapping[str, object],
    now: datetime,
) -> IssueAdmission:
    """PostgreSQL only, autocommitted: count the request; if it is within its limit, take a
    slot of the realm's daily quota, and if that fits, insert the code row ``row`` unless
    it clashes with a unique key (as :func:`insert_code`).

    A quota slot taken for a row that clashed stays taken: the caller gives it back
    (:func:`exposure.ratelimit.give_back`) before it decides the request the portable way.
    """
    _require_psycopg(connection)
    missing = set(_CODE_COLUMNS).difference(row)
    if missing:
        raise ValueError(f"a code row needs {sorted(missing)}")
    parameters = {
        **_request_parameters(request, now),
        **_limit_parameters("quota", quota, now),
        **{name: row[name] for name in _CODE_COLUMNS},
    }
    [(request_count, quota_count, inserted)] = driver_rows(
        connection, _COUNT_AND_INSERT_CODE, parameters
    )
    return IssueAdmission(int(request_count), quota_count, bool(inserted))


_COUNT_AND_CLAIM_TOKEN = text(
    "WITH"  # noqa: S608 - built of this module's and the model's constants
    + _COUNT_REQUEST
    + f""",
    claimed AS (
        UPDATE {_TOKENS.name} SET used = TRUE
        WHERE realm_id = :realm AND token_hmac = ANY(CAST(:token_hmacs AS bytea[]))
          AND used = FALSE AND expires_at > :now AND test_type = :type
          AND symptom_date IS NOT DISTINCT FROM CAST(:symptom AS date)
          AND test_date IS NOT DISTINCT FROM CAST(:tested AS date)
          AND EXISTS (SELECT 1 FROM request WHERE request.count <= :request_limit)
        RETURNING 1
    )
    SELECT (SELECT count FROM request), (SELECT count(*) FROM claimed)
    """  # noqa: S608 - the table name is the model's constant
)


def count_and_claim_token(
    connection: Connection,
    *,
    request: BucketLimit,
    realm_id: int,
    token_hmacs: Sequence[bytes],
    test_type: str,
    symptom_date: date | None,
    test_date: date | None,
    now: datetime,
) -> tuple[int, bool]:
    """PostgreSQL only, autocommitted: count the request and, if it is within its limit,
    :func:`claim_token`, in one statement; the request's count and whether it claimed."""
    _require_psycopg(connection)
    parameters = {
        **_request_parameters(request, now),
        "realm": realm_id,
        "token_hmacs": list(token_hmacs),
        "now": now,
        "type": test_type,
        "symptom": symptom_date,
        "tested": test_date,
    }
    [(request_count, claimed)] = driver_rows(connection, _COUNT_AND_CLAIM_TOKEN, parameters)
    return int(request_count), claimed == 1


def add_signing_key(session: Session, key: SigningKey) -> SigningKey:
    session.add(key)
    session.flush()  # the id names the next key version
    return key


def signing_keys(
    session: Session, *, purpose: str, realm_id: int | None, now: datetime
) -> list[SigningKey]:
    """Keys of one purpose and realm that are not retired at ``now``, newest first."""
    return list(
        session.execute(
            select(SigningKey)
            .where(
                SigningKey.purpose == purpose,
                SigningKey.realm_id.is_(None)
                if realm_id is None
                else SigningKey.realm_id == realm_id,
                or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now),
            )
            .order_by(SigningKey.id.desc())
        ).scalars()
    )


def count_signing_keys(session: Session, *, purpose: str, realm_id: int | None) -> int:
    return session.execute(
        select(func.count(SigningKey.id)).where(
            SigningKey.purpose == purpose,
            SigningKey.realm_id.is_(None) if realm_id is None else SigningKey.realm_id == realm_id,
        )
    ).scalar_one()


def add_audit_entry(session: Session, entry: AuditEntry) -> None:
    session.add(entry)


def audit_entries(session: Session, *, realm_id: int | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if realm_id is not None:
        query = query.where(AuditEntry.realm_id == realm_id)
    return list(session.execute(query).scalars())


def signing_key_references(session: Session) -> list[str]:
    """The key-store reference of every token and certificate key, oldest first."""
    return list(session.scalars(select(SigningKey.key_reference).order_by(SigningKey.id)))


def list_realms(session: Session) -> list[Realm]:
    return list(session.scalars(select(Realm).order_by(Realm.id)))


def list_api_keys(session: Session, *, realm_id: int | None = None) -> list[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.id)
    if realm_id is not None:
        statement = statement.where(ApiKey.realm_id == realm_id)
    return list(session.scalars(statement))


def all_signing_keys(session: Session, *, realm_id: int | None = None) -> list[SigningKey]:
    """Every token and certificate key (of one realm's certificates when given), by id."""
    statement = select(SigningKey).order_by(SigningKey.id)
    if realm_id is not None:
        statement = statement.where(SigningKey.realm_id == realm_id)
    return list(session.scalars(statement))


# ---- retention: what each purge deletes, and the oldest item left ------------------------
# Tables and conditions are constants; the cutoff is a bound value. Each purger commits batch
# by batch (exposure.retention.store); the functions taking a session leave that to the caller.

# A code is expired once both of its forms are; the later expiry is the one that counts.
_BOTH_EXPIRED = "expires_at < :cutoff AND long_expires_at < :cutoff"
_LATER_EXPIRY = case(
    (VerificationCode.expires_at > VerificationCode.long_expires_at, VerificationCode.expires_at),
    else_=VerificationCode.long_expires_at,
)


def blank_expired_code_hashes(batch_size: int) -> Purger:
    """Blanks the code hashes of codes that expired before the cutoff (the rows stay)."""

    def purge(sessions: SessionFactory, cutoff: datetime, _now: datetime) -> PurgeResult:
        rows = blank_in_batches(
            sessions,
            table="verification_codes",
            assignments="code_hmac = NULL, long_code_hmac = NULL",
            where=f"(code_hmac IS NOT NULL OR long_code_hmac IS NOT NULL) AND {_BOTH_EXPIRED}",
            parameters={"cutoff": cutoff},
            batch_size=batch_size,
        )
        return PurgeResult(rows=rows)

    return purge


#: The later expiry of the oldest code that still has a hash.
oldest_code_hash = oldest_of(
    _LATER_EXPIRY,
    VerificationCode.code_hmac.is_not(None) | VerificationCode.long_code_hmac.is_not(None),
)


def purge_expired_codes(batch_size: int) -> Purger:
    """Deletes the codes that expired before the cutoff."""
    return batched_delete("verification_codes", _BOTH_EXPIRED, batch_size)


#: The later expiry of the oldest code.
oldest_code = oldest_of(_LATER_EXPIRY)


def purge_expired_tokens(batch_size: int) -> Purger:
    """Deletes the tokens that expired before the cutoff."""
    return batched_delete("verification_tokens", "expires_at < :cutoff", batch_size)


#: The expiry of the oldest token.
oldest_token = oldest_of(VerificationToken.expires_at)


def purge_audit_entries(batch_size: int) -> Purger:
    """Deletes the audit entries created before the cutoff."""
    return batched_delete("verification_audit_entries", "created_at < :cutoff", batch_size)


#: When the oldest audit entry was written.
oldest_audit_entry = oldest_of(AuditEntry.created_at)


def signing_keys_retired_before(session: Session, cutoff: datetime) -> list[tuple[int, str]]:
    """(id, key reference) of every signing key retired before ``cutoff``."""
    rows = session.execute(
        select(SigningKey.id, SigningKey.key_reference).where(SigningKey.retired_at < cutoff)
    ).all()
    return [(key_id, reference) for key_id, reference in rows]


def delete_signing_keys(session: Session, ids: Sequence[int]) -> int:
    """Delete the signing keys with these ids; return how many went."""
    result = session.execute(delete(SigningKey).where(SigningKey.id.in_(ids)))
    return int(getattr(result, "rowcount", 0))


def oldest_retired_signing_key(sessions: SessionFactory, now: datetime) -> datetime | None:
    """When the signing key retired longest before ``now`` was retired."""
    return oldest_value(sessions, SigningKey.retired_at, SigningKey.retired_at < now)


def delete_disabled_api_keys(sessions: SessionFactory, cutoff: datetime, batch_size: int) -> int:
    """Delete the API keys disabled before ``cutoff`` that no code names; return the count."""
    return delete_in_batches(
        sessions,
        table="verification_api_keys",
        where=(
            "disabled_at IS NOT NULL AND disabled_at < :cutoff AND NOT EXISTS ("
            "SELECT 1 FROM verification_codes "
            "WHERE verification_codes.issued_by_api_key_id = verification_api_keys.id)"
        ),
        parameters={"cutoff": cutoff},
        batch_size=batch_size,
    )


#: When the API key disabled longest ago was disabled.
oldest_disabled_api_key = oldest_of(ApiKey.disabled_at, ApiKey.disabled_at.is_not(None))
