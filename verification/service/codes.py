"""Issuing codes (labs) and trading them for verification tokens (phones).

Codes are stored only as keyed HMACs under the current secret and looked up under every
live one. A lookup runs the same query and the same hashing whether or not the code exists,
and unknown, wrong and already-used codes get one answer (``code_invalid``), so the API
cannot be used to learn which codes exist.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from crypto.codes import generate_alphanumeric_code, generate_numeric_code
from crypto.encoding import b64url_encode
from crypto.randomness import random_bytes
from crypto.tokens import sign_jwt_with_signer
from exposure.api.verification import ACCEPT_HIERARCHY, MAX_DATE_AGE_DAYS, TestType
from exposure.ratelimit import BucketLimit, RateDecision, bucket_key, give_back, hit, hit_decision
from exposure.tek import truncate
from verification import store
from verification.cache import ApiKeyView, RealmView
from verification.context import VerificationContext
from verification.errors import (
    CodeAlreadyClaimed,
    CodeExpired,
    CodeInvalid,
    CodeNotFound,
    InvalidDate,
    InvalidTestType,
    MissingDate,
    QuotaExceeded,
    TestTypeNotAccepted,
    UnparsableRequest,
    UnsupportedTestType,
    UuidAlreadyExists,
    VerificationError,
)
from verification.limits import LONG_CODE_MAX_LENGTH
from verification.service import audit
from verification.service.signing_keys import ActiveKey, active_token_key, token_signer

#: Attempts to find an unused code before giving up (a collision is ~1e-5 likely per try
#: with 1,000 live 8-digit codes; six in a row is not going to happen by chance).
COLLISION_RETRIES = 6
JTI_BYTES = 96
QUOTA_WINDOW = timedelta(days=1)
#: A code keeps only the hour it was issued in: issue times are not needed finer.
CREATED_AT_PRECISION = timedelta(hours=1)


@dataclass(frozen=True)
class IssueRequest:
    test_type: str
    symptom_date: str
    test_date: str
    tz_offset_minutes: float
    uuid: str
    external_issuer_id: str


@dataclass(frozen=True)
class IssuedCode:
    uuid: str
    code: str
    long_code: str
    expires_at: datetime
    long_expires_at: datetime


@dataclass(frozen=True)
class CodeStatus:
    claimed: bool
    expires_at: datetime
    long_expires_at: datetime


@dataclass(frozen=True)
class VerifiedCode:
    token: str
    test_type: str
    symptom_date: date | None
    test_date: date | None


def _parse_date(text: str, *, field: str, now: datetime, tz_offset_minutes: float) -> date | None:
    if text == "":
        return None
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise InvalidDate(f"{field} must be a date as YYYY-MM-DD") from None
    if len(text) != len("YYYY-MM-DD"):
        raise InvalidDate(f"{field} must be a date as YYYY-MM-DD")
    # "Today" is the person's local day; the window reaches 28 days back from it.
    today = (now + timedelta(minutes=tz_offset_minutes)).date()
    if not today - timedelta(days=MAX_DATE_AGE_DAYS) <= parsed <= today:
        raise InvalidDate(f"{field} must be within the last {MAX_DATE_AGE_DAYS} days")
    return parsed


def _allowed_types(realm: RealmView) -> set[str]:
    return set(realm.allowed_test_types.split(","))


def _validate_issue(
    realm: RealmView, request: IssueRequest, now: datetime
) -> tuple[TestType, date | None, date | None]:
    test_type = TestType.from_wire(request.test_type)
    if test_type is None:
        raise InvalidTestType("testType must be confirmed, likely, negative or user-report")
    if test_type not in _allowed_types(realm):
        raise UnsupportedTestType(f"this realm does not issue {test_type} codes")
    if not -14 * 60 <= request.tz_offset_minutes <= 14 * 60:
        raise UnparsableRequest("tzOffset must be between -840 and 840 minutes")
    symptom = _parse_date(
        request.symptom_date,
        field="symptomDate",
        now=now,
        tz_offset_minutes=request.tz_offset_minutes,
    )
    tested = _parse_date(
        request.test_date, field="testDate", now=now, tz_offset_minutes=request.tz_offset_minutes
    )
    if realm.require_date and symptom is None and tested is None:
        raise MissingDate("this realm requires a symptomDate or testDate")
    return test_type, symptom, tested


def _normalize_uuid(text: str) -> str:
    if text == "":
        return str(uuid_module.uuid4())
    try:
        return str(uuid_module.UUID(text))
    except ValueError:
        raise UnparsableRequest("uuid must be a UUID") from None


def quota_limit(context: VerificationContext, realm: RealmView) -> BucketLimit:
    """The realm's daily quota of issued codes."""
    return BucketLimit(
        bucket_key(context.bucket_secret, "issue-quota", str(realm.id)),
        realm.daily_issue_limit,
        QUOTA_WINDOW,
    )


def in_one_statement(connection: Connection) -> bool:
    """Whether ``connection``'s database runs :func:`issue_code_counted` and
    :func:`verify_code_at_once` (PostgreSQL through psycopg)."""
    return store.counts_in_one_statement(connection)


@dataclass(frozen=True)
class _PendingCode:
    """A code about to be stored: its row (with fresh code hashes) and its answer."""

    row: dict[str, object]
    issued: IssuedCode

    def redraw(self, realm: RealmView, context: VerificationContext) -> _PendingCode:
        """The same code with freshly drawn short and long codes."""
        short_code = generate_numeric_code(realm.short_code_length)
        long_code = generate_alphanumeric_code(realm.long_code_length)
        row = {
            **self.row,
            "code_hmac": context.hasher.digest(short_code),
            "long_code_hmac": context.hasher.digest(long_code),
        }
        issued = IssuedCode(
            self.issued.uuid,
            short_code,
            long_code,
            self.issued.expires_at,
            self.issued.long_expires_at,
        )
        return _PendingCode(row, issued)


def _pending_code(
    context: VerificationContext,
    *,
    realm: RealmView,
    api_key: ApiKeyView | None,
    request: IssueRequest,
    now: datetime,
) -> _PendingCode:
    """Validate ``request`` (raising its refusal) and draw its codes."""
    test_type, symptom, tested = _validate_issue(realm, request, now)
    code_uuid = _normalize_uuid(request.uuid)
    expires_at = now + timedelta(minutes=realm.short_code_minutes)
    long_expires_at = now + timedelta(minutes=realm.long_code_minutes)
    if test_type == TestType.USER_REPORT:
        long_expires_at = expires_at  # self-reports get no long-lived link code
    row: dict[str, object] = {
        "realm_id": realm.id,
        "uuid": code_uuid,
        "test_type": test_type.value,
        "symptom_date": symptom,
        "test_date": tested,
        "expires_at": expires_at,
        "long_expires_at": long_expires_at,
        "claimed": False,
        "issued_by_api_key_id": None if api_key is None else api_key.id,
        "external_issuer_id": request.external_issuer_id,
        "created_at": truncate(now, CREATED_AT_PRECISION),
    }
    issued = IssuedCode(code_uuid, "", "", expires_at, long_expires_at)
    return _PendingCode(row, issued).redraw(realm, context)


def issue_code(
    session: Session,
    context: VerificationContext,
    *,
    realm: RealmView,
    api_key: ApiKeyView | None,
    request: IssueRequest,
    now: datetime,
) -> IssuedCode:
    """Issue a short and a long code for one positive (or negative) result.

    ``api_key`` is the lab API key that asked, or None for a code a person issued in the
    console (``issued_by_api_key_id`` is then NULL).

    The code is inserted first and the daily quota counted after it, so a uuid that was
    already used is refused before it spends quota (as the reference does); a refusal by
    the quota raises, and the caller's rollback removes the code again.
    """
    pending = _pending_code(context, realm=realm, api_key=api_key, request=request, now=now)
    for _ in range(COLLISION_RETRIES):
        if store.insert_code(session, pending.row):
            break
        # Nothing was inserted: the uuid is taken, or (rarely) one of the codes is.
        if store.uuid_taken(session, realm.id, pending.issued.uuid):
            raise UuidAlreadyExists("a code with this uuid was already issued")
        pending = pending.redraw(realm, context)
    else:
        raise RuntimeError("could not find an unused code; the code space is exhausted")
    limit = quota_limit(context, realm)
    quota = hit(session, bucket=limit.bucket, limit=limit.limit, window=limit.window, now=now)
    if not quota.allowed:
        raise QuotaExceeded("this realm has issued its daily quota of codes")
    return pending.issued


@dataclass(frozen=True)
class CountedIssue:
    """What :func:`issue_code_counted` did: the request's decision, and the code issued
    (None when the request was refused, or the code is left to :func:`issue_code`)."""

    request: RateDecision
    issued: IssuedCode | None


def issue_code_counted(
    connection: Connection,
    context: VerificationContext,
    *,
    realm: RealmView,
    api_key: ApiKeyView,
    request: IssueRequest,
    request_limit: BucketLimit,
    now: datetime,
) -> CountedIssue | None:
    """PostgreSQL, autocommitted: count the request against ``request_limit`` and, when it
    is allowed, issue the code with its quota slot, all in one statement.

    None, having counted nothing, when ``request`` is refused by validation: the caller
    counts it and lets :func:`issue_code` refuse it. ``issued`` is None when the request is
    allowed but the code did not go in at once (the quota is spent, the uuid or a code is
    taken): nothing of it is kept (a quota slot taken is given back) and the caller decides
    it with :func:`issue_code` in a transaction, which answers as it always has.
    """
    try:
        pending = _pending_code(context, realm=realm, api_key=api_key, request=request, now=now)
    except VerificationError:
        return None
    quota = quota_limit(context, realm)
    admission = store.count_and_insert_code(
        connection, request=request_limit, quota=quota, row=pending.row, now=now
    )
    decision = hit_decision(
        admission.request_count, limit=request_limit.limit, window=request_limit.window, now=now
    )
    if admission.inserted:
        return CountedIssue(decision, pending.issued)
    if admission.quota_count is not None:
        give_back(connection, bucket=quota.bucket, window=quota.window, now=now)
    return CountedIssue(decision, None)


def code_status(session: Session, *, realm: RealmView, uuid: str) -> CodeStatus:
    record = store.code_by_uuid(session, realm.id, uuid)
    if record is None:
        raise CodeNotFound("no code with this uuid in this realm")
    return CodeStatus(record.claimed, record.expires_at, record.long_expires_at)


def expire_code(
    session: Session, *, realm: RealmView, uuid: str, now: datetime, actor: str
) -> CodeStatus:
    """Make a code unusable now; refused once claimed, a no-op once expired."""
    record = store.code_by_uuid(session, realm.id, uuid, for_update=True)
    if record is None:
        raise CodeNotFound("no code with this uuid in this realm")
    if record.claimed:
        raise CodeAlreadyClaimed("the code was already used")
    if record.long_expires_at > now or record.expires_at > now:
        before = (
            f"expires_at={record.expires_at.isoformat()} long={record.long_expires_at.isoformat()}"
        )
        record.expires_at = min(record.expires_at, now)
        record.long_expires_at = min(record.long_expires_at, now)
        audit.record(
            session,
            realm_id=realm.id,
            actor=actor,
            action="expired verification code",
            target=f"verification_code:{record.id}",
            diff=f"{before} -> {now.isoformat()}",
            now=now,
        )
    return CodeStatus(record.claimed, record.expires_at, record.long_expires_at)


def accepted_test_types(accept: Sequence[str]) -> set[str]:
    """Expand the ``accept`` list (any case) along confirmed < likely < negative; empty
    accepts all."""
    named = [test_type for value in accept if (test_type := TestType.from_wire(value))]
    if len(named) != len(accept):
        raise InvalidTestType("accept holds an unknown test type")
    if not named:
        return {member.value for member in TestType}
    accepted: set[str] = set()
    for test_type in named:
        if test_type == TestType.USER_REPORT:
            accepted.add(test_type.value)
            continue
        ceiling = ACCEPT_HIERARCHY.index(test_type)
        accepted.update(level.value for level in ACCEPT_HIERARCHY[: ceiling + 1])
    return accepted


@dataclass(frozen=True)
class _NewToken:
    """A fresh token's id, and what its row keeps of it (the id's hash, the expiry)."""

    jti: str
    token_hmac: bytes
    expires_at: datetime

    @classmethod
    def draw(cls, context: VerificationContext, now: datetime) -> _NewToken:
        jti = b64url_encode(random_bytes(JTI_BYTES))
        return cls(jti, context.hasher.digest(jti), now + context.settings.token_lifetime)


def _signed_token(
    context: VerificationContext,
    key: ActiveKey,
    claimed: store.ClaimedCode,
    token: _NewToken,
    now: datetime,
) -> str:
    settings = context.settings
    subject = ".".join(
        (
            claimed.test_type,
            claimed.symptom_date.isoformat() if claimed.symptom_date else "",
            claimed.test_date.isoformat() if claimed.test_date else "",
        )
    )
    return sign_jwt_with_signer(
        key.signer,
        {
            "iss": settings.token_issuer,
            "aud": settings.token_issuer,
            "sub": subject,
            "jti": token.jti,
            "iat": int(now.timestamp()),
            "exp": int(token.expires_at.timestamp()),
        },
        kid=key.kid,
    )


def verify_code(
    session: Session,
    context: VerificationContext,
    *,
    realm: RealmView,
    code: str,
    accept: Sequence[str],
    now: datetime,
) -> VerifiedCode:
    """Claim ``code`` and return a signed verification token; raise on any failure.

    The claim is one conditional UPDATE; only when it claims nothing is the code read again
    to tell the caller why, and every such reason but an expired code or a test type the
    app does not accept is the same ``code_invalid``.
    """
    accepted = accepted_test_types(accept)
    # Hash even an obviously malformed code so every request takes the same path.
    candidates = context.hasher.candidates(code[:LONG_CODE_MAX_LENGTH])
    claimed = store.claim_code(
        session,
        realm_id=realm.id,
        code_hmacs=candidates,
        accepted_test_types=sorted(accepted),
        now=now,
    )
    if claimed is None:
        _refuse(session, realm, candidates, accepted, now)
    assert claimed is not None  # noqa: S101 - _refuse always raises
    new_token = _NewToken.draw(context, now)
    store.insert_token(
        session,
        {
            "realm_id": realm.id,
            "token_hmac": new_token.token_hmac,
            "expires_at": new_token.expires_at,
            "test_type": claimed.test_type,
            "symptom_date": claimed.symptom_date,
            "test_date": claimed.test_date,
            "used": False,
        },
    )
    key = token_signer(session, context, now)
    token = _signed_token(context, key, claimed, new_token, now)
    return VerifiedCode(token, claimed.test_type, claimed.symptom_date, claimed.test_date)


#: Given a lookup's failure (None: it found its code), settles its lockout slots.
SettleLookup = Callable[[Exception | None], None]


def verify_code_at_once(
    connection: Connection,
    context: VerificationContext,
    *,
    realm: RealmView,
    code: str,
    accept: Sequence[str],
    lockout_slots: Sequence[BucketLimit],
    settle: SettleLookup,
    now: datetime,
) -> VerifiedCode | None:
    """PostgreSQL, autocommitted: :func:`verify_code` with the claim, the token row and the
    return of the lookup's ``lockout_slots`` (taken at ``now``) in one statement.

    The same answers as :func:`verify_code`, in the same order. A lookup that fails is
    settled by ``settle`` (with the failure) before its error is raised; one that claims
    its code has given its slots back in the claim's statement. Should the token then
    fail to sign, the claim is undone, so the code stays usable, as when
    :func:`verify_code`'s transaction rolls back. None, having done nothing, when the
    token key is not created yet: :func:`verify_code` creates it in its transaction.
    """
    try:
        accepted = accepted_test_types(accept)
        with Session(bind=connection) as session:
            key = active_token_key(session, context, now)
    except Exception as failure:
        settle(failure)
        raise
    if key is None:
        return None
    candidates = context.hasher.candidates(code[:LONG_CODE_MAX_LENGTH])
    new_token = _NewToken.draw(context, now)
    try:
        claimed = store.claim_code_for_token(
            connection,
            realm_id=realm.id,
            code_hmacs=candidates,
            accepted_test_types=sorted(accepted),
            token_hmac=new_token.token_hmac,
            token_expires_at=new_token.expires_at,
            give_back=lockout_slots,
            now=now,
        )
        if claimed is None:
            with Session(bind=connection) as session:
                _refuse(session, realm, candidates, accepted, now)
    except Exception as failure:
        settle(failure)
        raise
    assert claimed is not None  # noqa: S101 - _refuse always raises
    try:
        token = _signed_token(context, key, claimed.code, new_token, now)
    except BaseException:
        store.undo_claim(connection, code_id=claimed.code_id, token_hmac=new_token.token_hmac)
        raise
    found = claimed.code
    return VerifiedCode(token, found.test_type, found.symptom_date, found.test_date)


def _refuse(
    session: Session,
    realm: RealmView,
    candidates: Sequence[bytes],
    accepted: set[str],
    now: datetime,
) -> NoReturn:
    """Why no code was claimed, in the order the checks have always answered."""
    record = store.code_for_claim(session, realm.id, candidates)
    if record is None:
        raise CodeInvalid("the code is invalid or was already used")
    matched_long = record.long_code_hmac is not None and record.long_code_hmac in candidates
    expiry = record.long_expires_at if matched_long else record.expires_at
    if expiry <= now:
        raise CodeExpired("the code has expired")
    if record.claimed:
        raise CodeInvalid("the code is invalid or was already used")
    if record.test_type not in accepted:
        raise TestTypeNotAccepted(
            f"the code is for a {record.test_type} diagnosis, which this app does not accept"
        )
    # Claimable now, though the claim found nothing: it changed in between. Fail closed.
    raise CodeInvalid("the code is invalid or was already used")


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
