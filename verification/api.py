"""HTTP layer of the verification service: parse, authenticate, limit, call, answer.

Every answer, success or error, carries random ``padding`` and the rate-limit headers; the
status codes and ``errorCode`` values are those of Google's verification server.

Bodies are read the reference's way, with two rules of our own applied at this edge: field
names match in any ASCII case (as on ``/v1/publish``), and a string holding a control
character is refused (:mod:`exposure.text`), so both engines answer every body alike. No
error message repeats a value from the request.

A request costs one hop to a worker thread. The API key and its realm usually come from
the per-process cache (see :mod:`verification.cache`), so authenticating runs no query.
The request is then counted against its client's limit by one statement that commits on
its own (so a request whose work fails still counts, and the client's counter row is
locked only for that statement, not for the work), and the work runs in one transaction.
A code lookup first takes its slots in the invalid-code lockout, also on its own
(:mod:`verification.service.lockout`), and settles them once the work has succeeded or
failed. A certificate needs no transaction: its only write, claiming the token, is one
atomic statement made after the certificate is signed.

On PostgreSQL (through psycopg) the three device and lab steps take fewer statements, each
autocommitted (:class:`AtOnce`): ``/api/issue`` counts the request, takes the realm's
quota slot and inserts the code in one; ``/api/verify`` counts the request and takes the
lookup's two lockout slots in one, then claims the code, stores the token and gives the
slots back in another; ``/api/certificate`` counts the request in the statement that
claims the token. The answers, counts and lockouts are the portable path's (tests in
``tests/unit/verification/test_codes_at_once.py``); what those statements cannot decide
(a spent quota or a used uuid, a token key not created yet, a request that fails before
its count) goes the portable way.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from exposure.api.verification import (
    MAX_BATCH_SIZE,
    MAX_REQUEST_BYTES,
    BatchIssueCodeRequest,
    BatchIssueCodeResponse,
    CertificateRequest,
    CertificateResponse,
    CodeStatusRequest,
    CodeStatusResponse,
    ErrorCode,
    ErrorResponse,
    IssueCodeRequest,
    IssueCodeResponse,
    JsonWebKey,
    VerifyCodeRequest,
    VerifyCodeResponse,
)
from exposure.db import SessionFactory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.http.blocking import run_blocking
from exposure.http.body import BodyError, parse_model, read_json_object
from exposure.http.openapi import (
    CHAFF_PARAMETER,
    Answer,
    ChaffResponse,
    DocumentedRouter,
    KeyKind,
    Operation,
    Parameter,
)
from exposure.http.padding import random_padding
from exposure.json_codec import encode_json
from exposure.ratelimit import BucketLimit, RateDecision, bucket_key, hit, rate_limit_headers
from verification import metrics
from verification.cache import ApiKeySnapshot, RealmSnapshot
from verification.context import VerificationContext
from verification.errors import (
    QuotaExceeded,
    UnparsableRequest,
    VerificationError,
)
from verification.service import certificates, codes, lockout, realms, signing_keys
from verification.service.realms import ApiKeyKind

_logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
Clock = Callable[[], datetime]

RATE_WINDOW = timedelta(minutes=1)

#: The device endpoints a phone may send chaff to.
CHAFF_PATHS = ("/api/verify", "/api/certificate")

# ---- what each route takes and answers (the OpenAPI document) -------------------------

_RATE_HEADERS = {
    "X-RateLimit-Limit": "Requests this client may make per minute.",
    "X-RateLimit-Remaining": "Requests left in the current minute.",
    "X-RateLimit-Reset": "When the current minute ends (RFC 1123 date).",
}
_READING = (
    "Bodies are JSON objects of at most 64,000 bytes sent as `application/json`. Field "
    "names match in any ASCII case; unknown or duplicate fields, values of the wrong type, "
    "control characters in strings and trailing data are refused. The status and "
    "`errorCode` values are those of Google's verification server."
)


def _api_operation(
    path: str,
    operation_id: str,
    summary: str,
    description: str,
    *,
    key: KeyKind,
    request: type[BaseModel],
    success: Answer,
    errors: dict[int, str],
    quota: str = "",
    failure: Any = ErrorResponse,
) -> Operation:
    """A ``POST /api/...`` call: the answers every call shares, and ``errors`` of its own
    (status → the ``errorCode`` values and when); ``failure`` is the body of an error the
    call's own work answers (the request's refusals are always :class:`ErrorResponse`)."""
    bad = errors.get(400, "")
    answers = {
        200: success,
        400: Answer(
            "`unparsable_request`: not `application/json`, malformed JSON, not an object, "
            f"an unknown field, a wrong type, a control character, trailing data. {bad}",
            failure,
        ),
        401: Answer(
            "`unauthorized`: no API key, an unknown or disabled one, or the wrong kind.",
            ErrorResponse,
        ),
        413: Answer("`unparsable_request`: the body is over 64,000 bytes.", ErrorResponse),
        429: Answer(
            f"`rate_limited`: the client's requests per minute are spent; {quota}"
            "`maintenance_mode`: the service is down for maintenance.",
            failure,
            headers={**_RATE_HEADERS, "Retry-After": "Seconds until a retry may succeed."},
        ),
        500: Answer(
            "`internal_server_error`: anything unexpected (details only in the server log).",
            ErrorResponse,
        ),
    }
    answers.update(
        {status: Answer(text, failure) for status, text in errors.items() if status != 400}
    )
    return Operation(
        method="POST",
        path=path,
        operation_id=operation_id,
        summary=summary,
        description=f"{description}\n\n{_READING}",
        tag="verification",
        request=request,
        answers=answers,
        key=key,
        parameters=(CHAFF_PARAMETER,) if path in CHAFF_PATHS else (),
    )


_TEST_TYPE_ERRORS = (
    "`invalid_test_type`: not confirmed, likely, negative or user-report; "
    "`unsupported_test_type`: a type the realm does not issue; `missing_date`: the realm "
    "needs a date; `invalid_date`: not YYYY-MM-DD, in the future or over 28 days old; "
    "`unparsable_request` also for a bad `uuid` or `tzOffset`, or `onlyGenerateSMS: true`."
)

ISSUE = _api_operation(
    "/api/issue",
    "issueCode",
    "Issue a verification code",
    "A lab asks for a one-time code (8 digits, 15 minutes) and a long code (24 hours) "
    "for a person's diagnosis. A phone number, if sent, is dropped unread: no SMS is sent.",
    key=KeyKind.ADMIN,
    request=IssueCodeRequest,
    success=Answer("The code.", IssueCodeResponse, headers=_RATE_HEADERS),
    errors={
        400: _TEST_TYPE_ERRORS,
        409: "`uuid_already_exists`: a code with this `uuid` was already issued.",
    },
    quota="`quota_exceeded`: the realm's daily issuing quota is spent; ",
)
BATCH_ISSUE = _api_operation(
    "/api/batch-issue",
    "batchIssueCodes",
    "Issue up to ten codes",
    "Each request is issued on its own (not atomically) and answered at its index in "
    "`codes`, with its own `error` and `errorCode` on failure; the status and top-level "
    "error are those of the first failure. An empty batch answers 200 with `codes: []`.",
    key=KeyKind.ADMIN,
    request=BatchIssueCodeRequest,
    success=Answer("Every code was issued.", BatchIssueCodeResponse, headers=_RATE_HEADERS),
    errors={
        400: f"More than {MAX_BATCH_SIZE} codes; or the first failed code's: {_TEST_TYPE_ERRORS}",
        409: "The first failed code's `uuid_already_exists`; the others are in `codes`.",
    },
    quota="`quota_exceeded`: the first failed code hit the realm's daily quota; ",
    # A code's own failure answers the batch, with every code's outcome at its index.
    failure=ErrorResponse | BatchIssueCodeResponse,
)
CHECK_CODE_STATUS = _api_operation(
    "/api/checkcodestatus",
    "checkCodeStatus",
    "Whether a code was claimed, and when it expires",
    "Looks up a code of the caller's realm by the `uuid` it was issued with.",
    key=KeyKind.ADMIN,
    request=CodeStatusRequest,
    success=Answer("The code's status.", CodeStatusResponse, headers=_RATE_HEADERS),
    errors={
        400: "`unparsable_request` also for a `uuid` that is not a UUID.",
        404: "`code_not_found`: no code with this `uuid` in the realm.",
    },
)
EXPIRE_CODE = _api_operation(
    "/api/expirecode",
    "expireCode",
    "Make an unclaimed code unusable now",
    "Sets both expiries to now (a no-op once expired) and writes an audit entry.",
    key=KeyKind.ADMIN,
    request=CodeStatusRequest,
    success=Answer("The code's status after expiry.", CodeStatusResponse, headers=_RATE_HEADERS),
    errors={
        400: "`unparsable_request` also for a `uuid` that is not a UUID; "
        "`code_already_claimed`: the code was used.",
        404: "`code_not_found`: no code with this `uuid` in the realm.",
    },
)
VERIFY = _api_operation(
    "/api/verify",
    "verifyCode",
    "Trade a code for a verification token",
    "A phone sends the code its user typed and gets a token (an ES256 JWT, 24 hours) to "
    "ask for a certificate with. A code is claimed once. Wrong codes count against a "
    "lockout per client and per realm.",
    key=KeyKind.DEVICE,
    request=VerifyCodeRequest,
    success=Answer(
        "The token, and the diagnosis it certifies (or, for chaff, padding only).",
        VerifyCodeResponse | ChaffResponse,
        headers=_RATE_HEADERS,
    ),
    errors={
        400: "`code_invalid`: unknown, wrong or used (indistinguishable); `code_expired`; "
        "`invalid_test_type`: an `accept` value is no test type.",
        412: "`unsupported_test_type`: the code's type is outside `accept`.",
    },
    quota="`quota_exceeded`: too many wrong codes from this client or realm; ",
)
CERTIFICATE = _api_operation(
    "/api/certificate",
    "getCertificate",
    "Trade a token and the TEK HMAC for a certificate",
    "The certificate is an ES256 JWT signed by the realm's key, valid 15 minutes, that "
    "the key server checks on `POST /v1/publish`. The token is claimed once.",
    key=KeyKind.DEVICE,
    request=CertificateRequest,
    success=Answer(
        "The certificate (or, for chaff, padding only).",
        CertificateResponse | ChaffResponse,
        headers=_RATE_HEADERS,
    ),
    errors={
        400: "`token_invalid`: malformed, forged or of an unknown key; `token_expired`: "
        "expired, used, or of another realm; `hmac_invalid`: `ekeyhmac` is not base64 of "
        "32 bytes.",
    },
)
JWKS = Operation(
    method="GET",
    path="/jwks/{realm}",
    operation_id="getRealmJwks",
    summary="A realm's certificate public keys",
    description="The keys key servers check certificates with, as a bare JSON array of "
    "JWKs (the shape Google's key server reads). A rotated key is listed from its creation "
    "(an hour before it signs), a replaced one until its last certificate expired.",
    tag="verification",
    parameters=(Parameter("realm", "path", "The realm's numeric id or its name.", required=True),),
    answers={
        200: Answer(
            "The keys.",
            list[JsonWebKey],
            headers={"Cache-Control": "public, max-age=300"},
        ),
        404: Answer("`not_found`: no such realm (whatever was asked for).", ErrorResponse),
        500: Answer("`internal_server_error`: anything unexpected.", ErrorResponse),
    },
)


class RateLimited(VerificationError):  # noqa: N818
    code, status = ErrorCode.RATE_LIMITED, 429


class MaintenanceMode(VerificationError):  # noqa: N818
    code, status = ErrorCode.MAINTENANCE_MODE, 429


@dataclass(frozen=True)
class Caller:
    api_key: ApiKeySnapshot
    realm: RealmSnapshot
    client_bucket: str
    headers: dict[str, str]


#: The work of an endpoint, in the request's transaction: (session, caller, body, now).
Work = Callable[[Session, Caller, Model, datetime], Response]
#: Given the work's failure (None on success), what must be kept or undone once it is over.
Settle = Callable[[Connection, Exception | None], None]
#: Runs before the work, on the autocommit connection that counted the request: it may
#: refuse the request (by raising) and says how to settle once the work is over.
Admit = Callable[[Connection, Caller, datetime], Settle]


@dataclass(frozen=True)
class _Portable:
    """What :attr:`AtOnce.finish` hands back when the work is left to the transaction: how
    to settle it once it is over (nothing to settle: None)."""

    settle: Settle | None = None


@dataclass(frozen=True)
class AtOnce(Generic[Model]):
    """An endpoint's way on PostgreSQL through psycopg, in fewer autocommitted statements.

    ``count`` counts the request (as the portable path counts it, and taking whatever the
    endpoint takes before its work, in the same statement) and returns its decision with
    what ``finish`` needs; None when it counted nothing (the portable path then runs from
    the start). ``finish`` runs once the request is known to be allowed: it answers, or
    raises the endpoint's refusal, or leaves the work to the portable transaction.
    """

    count: Callable[[Connection, Caller, Model, datetime], tuple[RateDecision, Any] | None]
    finish: Callable[[Connection, Caller, Model, datetime, Any], Response | _Portable]


@dataclass(frozen=True)
class _Call(Generic[Model]):
    endpoint: str
    kind: ApiKeyKind
    api_key: str
    client: str
    body: Model | BodyError
    work: Work[Model]
    admit: Admit | None
    needs_transaction: bool
    at_once: AtOnce[Model] | None


@dataclass(frozen=True)
class _Outcome:
    response: Response
    result: str
    caller: Caller | None


def _rfc1123(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _json(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = model.model_dump(mode="json")
    body["padding"] = random_padding()
    return Response(
        encode_json(body), status_code=status, headers=headers, media_type="application/json"
    )


def _error(error: VerificationError, headers: dict[str, str] | None = None) -> Response:
    body = ErrorResponse(error=error.message, errorCode=error.code, error_code=error.code)
    return _json(body, status=error.status, headers=headers)


def _body_error(error: BodyError) -> Response:
    code = ErrorCode.UNPARSABLE_REQUEST
    body = ErrorResponse(error=error.message, errorCode=code, error_code=code)
    # The reference answers every body it cannot read with 400, a wrong content type too
    # (the key server's 415 is the key server's own).
    status = 400 if error.reason == "content_type" else error.status
    return _json(body, status=status)


def _log_failure(endpoint: str, failure: Exception) -> None:
    # The type and the stack, never the message: a database error's message carries the
    # statement's parameters (a uuid, a label, a code's hash), and others may quote a row.
    stack = "".join(traceback.format_tb(failure.__traceback__))
    _logger.error("verification %s failed: %s\n%s", endpoint, type(failure).__name__, stack)


def create_router(
    context: VerificationContext, session_factory: SessionFactory, clock: Clock
) -> APIRouter:
    """The verification routes, bound to their dependencies (no module-level state)."""
    router = DocumentedRouter()
    settings = context.settings

    def request_limit(client_bucket: str) -> BucketLimit:
        """The client's limit on requests to any endpoint."""
        return BucketLimit(
            bucket_key(context.bucket_secret, "requests", client_bucket),
            settings.requests_per_minute,
            RATE_WINDOW,
        )

    def count_request(
        connection: Session | Connection, client_bucket: str, now: datetime
    ) -> RateDecision:
        limit = request_limit(client_bucket)
        return hit(connection, bucket=limit.bucket, limit=limit.limit, window=limit.window, now=now)

    def settle_after(endpoint: str, settle: Settle, failure: Exception | None) -> None:
        # The work's outcome stands whatever happens here: a code claimed must reach its
        # phone, a refusal keeps its reason. Settling that fails leaves the slots taken,
        # which errs on the side of the lockout.
        try:
            with autocommit(session_factory) as connection:
                settle(connection, failure)
        except Exception as error:
            _log_failure(f"{endpoint} (settling)", error)

    def serve(call: _Call[Model]) -> _Outcome:
        now = clock()
        caller: Caller | None = None
        try:
            if settings.maintenance_mode:
                raise MaintenanceMode("the service is down for maintenance; try again later")
            known = realms.authenticate_cached(context, api_key=call.api_key, kind=call.kind)
            if known is None:
                with session_factory() as session:
                    known = realms.authenticate(
                        session, context, api_key=call.api_key, kind=call.kind
                    )
            api_key, realm = known
            # The client address is used here, hashed, and then forgotten.
            client_bucket = bucket_key(context.bucket_secret, "client", str(realm.id), call.client)
            settle: Settle | None = None
            with autocommit(session_factory) as connection:
                # Counted on its own, before and whatever the work does: committed at once,
                # holding the client's counter row only for this one statement.
                at_once = call.at_once
                counted = None
                if (
                    at_once is not None
                    and not isinstance(call.body, BodyError)
                    and codes.in_one_statement(connection)
                ):
                    unknown = Caller(api_key, realm, client_bucket, {})
                    counted = at_once.count(connection, unknown, call.body, now)
                if counted is None:
                    decision = count_request(connection, client_bucket, now)
                else:
                    decision = counted[0]
                caller = Caller(api_key, realm, client_bucket, rate_limit_headers(decision))
                if not decision.allowed:
                    metrics.RATE_LIMITED.labels(call.endpoint, "requests").inc()
                    raise RateLimited("too many requests; retry later")
                if isinstance(call.body, BodyError):
                    code = ErrorCode.UNPARSABLE_REQUEST
                    return _Outcome(_body_error(call.body), code, caller)
                if at_once is not None and counted is not None:
                    finished = at_once.finish(connection, caller, call.body, now, counted[1])
                    if isinstance(finished, Response):
                        return _Outcome(finished, "ok", caller)
                    settle = finished.settle
                elif not call.needs_transaction:
                    with Session(bind=connection) as session:
                        return _Outcome(call.work(session, caller, call.body, now), "ok", caller)
                elif call.admit is not None:
                    settle = call.admit(connection, caller, now)
            try:
                with unit_of_work(session_factory) as session:
                    response = call.work(session, caller, call.body, now)
            except Exception as failure:
                if settle is not None:
                    settle_after(call.endpoint, settle, failure)
                raise
            if settle is not None:
                settle_after(call.endpoint, settle, None)
            return _Outcome(response, "ok", caller)
        except VerificationError as error:
            return _Outcome(_error(error, error.headers), error.code, caller)
        except Exception as failure:
            # Logged for operators; the caller learns only that it failed.
            _log_failure(call.endpoint, failure)
            internal = VerificationError("internal error")
            return _Outcome(_error(internal), ErrorCode.INTERNAL, caller)

    async def handle(
        request: Request,
        endpoint: str,
        kind: ApiKeyKind,
        model: type[Model],
        work: Work[Model],
        *,
        admit: Admit | None = None,
        needs_transaction: bool = True,
        at_once: AtOnce[Model] | None = None,
    ) -> Response:
        body: Model | BodyError
        try:
            data = await read_json_object(request, max_bytes=MAX_REQUEST_BYTES)
            body = parse_model(model, data, case_insensitive=True, refuse_control_characters=True)
        except BodyError as error:
            body = error  # answered only once the caller is known to be allowed to ask
        call = _Call(
            endpoint=endpoint,
            kind=kind,
            api_key=request.headers.get("x-api-key", ""),
            client=request.client.host if request.client else "",
            body=body,
            work=work,
            admit=admit,
            needs_transaction=needs_transaction,
            at_once=at_once,
        )
        # Database work is synchronous; it runs in the loop's worker threads so the event
        # loop keeps serving other requests (and chaff) meanwhile.
        outcome = await run_blocking(serve, call)
        realm_label = str(outcome.caller.realm.id) if outcome.caller is not None else "none"
        metrics.REQUESTS.labels(endpoint, realm_label, outcome.result).inc()
        if outcome.caller is not None:
            outcome.response.headers.update(outcome.caller.headers)
        return outcome.response

    # ---- lab API (admin keys) -------------------------------------------------------

    def issue_request(item: IssueCodeRequest) -> codes.IssueRequest:
        # The phone number itself never gets here (the request model drops it as it is
        # parsed), and no SMS is sent: a code issued for one is handed to the lab like
        # any other. Asking for the SMS text alone is refused, as the reference refuses it
        # on a realm not allowed to generate SMS.
        if item.onlyGenerateSMS:
            raise UnparsableRequest("this realm may not use onlyGenerateSMS")
        return codes.IssueRequest(
            test_type=item.testType,
            symptom_date=item.symptomDate,
            test_date=item.testDate,
            tz_offset_minutes=float(item.tzOffset),
            uuid=item.uuid,
            external_issuer_id=item.externalIssuerID,
        )

    def issue_one(
        session: Session, caller: Caller, item: IssueCodeRequest, now: datetime
    ) -> IssueCodeResponse:
        issued = codes.issue_code(
            session,
            context,
            realm=caller.realm,
            api_key=caller.api_key,
            request=issue_request(item),
            now=now,
        )
        return issued_response(caller, issued)

    def issued_response(caller: Caller, issued: codes.IssuedCode) -> IssueCodeResponse:
        metrics.CODES_ISSUED.labels(str(caller.realm.id)).inc()
        return IssueCodeResponse(
            uuid=issued.uuid,
            code=issued.code,
            longCode=issued.long_code,
            expiresAt=_rfc1123(issued.expires_at),
            expiresAtTimestamp=int(issued.expires_at.timestamp()),
            longExpiresAt=_rfc1123(issued.long_expires_at),
            longExpiresAtTimestamp=int(issued.long_expires_at.timestamp()),
        )

    def issue_work(
        session: Session, caller: Caller, item: IssueCodeRequest, now: datetime
    ) -> Response:
        return _json(issue_one(session, caller, item, now))

    def count_issue(
        connection: Connection, caller: Caller, item: IssueCodeRequest, now: datetime
    ) -> tuple[RateDecision, Any] | None:
        try:
            request = issue_request(item)
        except VerificationError:
            return None  # counted and refused the portable way
        counted = codes.issue_code_counted(
            connection,
            context,
            realm=caller.realm,
            api_key=caller.api_key,
            request=request,
            request_limit=request_limit(caller.client_bucket),
            now=now,
        )
        return None if counted is None else (counted.request, counted.issued)

    def finish_issue(
        _connection: Connection,
        caller: Caller,
        _item: IssueCodeRequest,
        _now: datetime,
        issued: codes.IssuedCode | None,
    ) -> Response | _Portable:
        if issued is None:
            return _Portable()
        return _json(issued_response(caller, issued))

    async def issue(request: Request) -> Response:
        """Issue a verification code (admin API key)."""
        return await handle(
            request,
            "issue",
            ApiKeyKind.ADMIN,
            IssueCodeRequest,
            issue_work,
            at_once=AtOnce(count_issue, finish_issue),
        )

    def batch_issue_work(
        session: Session, caller: Caller, batch: BatchIssueCodeRequest, now: datetime
    ) -> Response:
        # An empty batch is no error: it issues nothing and answers 200, as the reference.
        if len(batch.codes) > MAX_BATCH_SIZE:
            raise UnparsableRequest(f"codes must hold at most {MAX_BATCH_SIZE} requests")
        results: list[IssueCodeResponse] = []
        first_error: VerificationError | None = None
        # Not atomic, as the reference: each code stands alone (in its own savepoint) and
        # answers at its index.
        for item in batch.codes:
            try:
                with session.begin_nested():
                    results.append(issue_one(session, caller, item, now))
            except VerificationError as error:
                first_error = first_error or error
                results.append(IssueCodeResponse(error=error.message, errorCode=error.code))
        if first_error is None:
            return _json(BatchIssueCodeResponse(codes=results))
        body = BatchIssueCodeResponse(
            codes=results, error=first_error.message, errorCode=first_error.code
        )
        return _json(body, status=first_error.status)

    async def batch_issue(request: Request) -> Response:
        """Issue up to ten codes (admin API key); each answers at its request's index."""
        return await handle(
            request, "batch_issue", ApiKeyKind.ADMIN, BatchIssueCodeRequest, batch_issue_work
        )

    def status_response(status: codes.CodeStatus) -> Response:
        return _json(
            CodeStatusResponse(
                claimed=status.claimed,
                expiresAtTimestamp=int(status.expires_at.timestamp()),
                longExpiresAtTimestamp=int(status.long_expires_at.timestamp()),
            )
        )

    def check_status_work(
        session: Session, caller: Caller, item: CodeStatusRequest, _now: datetime
    ) -> Response:
        status = codes.code_status(session, realm=caller.realm, uuid=item.uuid)
        return status_response(status)

    async def check_code_status(request: Request) -> Response:
        """Whether a code was claimed, and when it expires (admin API key)."""
        return await handle(
            request, "checkcodestatus", ApiKeyKind.ADMIN, CodeStatusRequest, check_status_work
        )

    def expire_work(
        session: Session, caller: Caller, item: CodeStatusRequest, now: datetime
    ) -> Response:
        status = codes.expire_code(
            session,
            realm=caller.realm,
            uuid=item.uuid,
            now=now,
            actor=f"api_key:{caller.api_key.id}",
        )
        return status_response(status)

    async def expire_code(request: Request) -> Response:
        """Make an unclaimed code unusable now (admin API key)."""
        return await handle(request, "expirecode", ApiKeyKind.ADMIN, CodeStatusRequest, expire_work)

    # ---- device API ------------------------------------------------------------------

    def rejected(caller: Caller, kept: bool, failure: Exception | None) -> None:
        if kept and isinstance(failure, VerificationError):
            metrics.CODES_REJECTED.labels(str(caller.realm.id), failure.code).inc()

    def begin_lookup(connection: Connection, caller: Caller, now: datetime) -> Settle:
        try:
            attempt = lockout.begin_attempt(
                connection,
                context,
                client_bucket=caller.client_bucket,
                realm_id=caller.realm.id,
                now=now,
            )
        except QuotaExceeded:
            metrics.RATE_LIMITED.labels("verify", "invalid_codes").inc()
            raise

        def settle(connection: Connection, failure: Exception | None) -> None:
            rejected(caller, attempt.settle(connection, failure), failure)

        return settle

    def verify_work(
        session: Session, caller: Caller, item: VerifyCodeRequest, now: datetime
    ) -> Response:
        # The lookup's slots in the lockout were taken by begin_lookup, before this.
        verified = codes.verify_code(
            session,
            context,
            realm=caller.realm,
            code=item.code,
            accept=item.accept,
            now=now,
        )
        return verified_response(caller, verified)

    def verified_response(caller: Caller, verified: codes.VerifiedCode) -> Response:
        realm_label = str(caller.realm.id)
        metrics.CODES_CLAIMED.labels(realm_label).inc()
        metrics.TOKENS_ISSUED.labels(realm_label).inc()
        return _json(
            VerifyCodeResponse(
                testtype=verified.test_type,
                symptomDate=verified.symptom_date.isoformat() if verified.symptom_date else "",
                testDate=verified.test_date.isoformat() if verified.test_date else "",
                token=verified.token,
            )
        )

    def count_lookup(
        connection: Connection, caller: Caller, _item: VerifyCodeRequest, now: datetime
    ) -> tuple[RateDecision, Any]:
        counted = lockout.begin_counted_attempt(
            connection,
            context,
            request_limit=request_limit(caller.client_bucket),
            client_bucket=caller.client_bucket,
            realm_id=caller.realm.id,
            now=now,
        )
        return counted.request, counted

    def finish_lookup(
        connection: Connection,
        caller: Caller,
        item: VerifyCodeRequest,
        now: datetime,
        counted: lockout.CountedAttempt,
    ) -> Response | _Portable:
        if counted.refusal is not None:
            metrics.RATE_LIMITED.labels("verify", "invalid_codes").inc()
            raise counted.refusal
        attempt = counted.attempt
        assert attempt is not None  # noqa: S101 - an allowed request has one or a refusal

        def settle(connection: Connection, failure: Exception | None) -> None:
            rejected(caller, attempt.settle(connection, failure), failure)

        def settle_here(failure: Exception | None) -> None:
            # As settle_after: the lookup's own answer stands whatever happens here.
            try:
                settle(connection, failure)
            except Exception as error:
                _log_failure("verify (settling)", error)

        verified = codes.verify_code_at_once(
            connection,
            context,
            realm=caller.realm,
            code=item.code,
            accept=item.accept,
            lockout_slots=attempt.taken,
            settle=settle_here,
            now=now,
        )
        if verified is None:
            return _Portable(settle)
        return verified_response(caller, verified)

    async def verify(request: Request) -> Response:
        """Trade a code for a verification token (device API key)."""
        return await handle(
            request,
            "verify",
            ApiKeyKind.DEVICE,
            VerifyCodeRequest,
            verify_work,
            admit=begin_lookup,
            at_once=AtOnce(count_lookup, finish_lookup),
        )

    def certificate_work(
        session: Session, caller: Caller, item: CertificateRequest, now: datetime
    ) -> Response:
        certificate = certificates.issue_certificate(
            session,
            context,
            realm=caller.realm,
            token=item.token,
            ekeyhmac=item.ekeyhmac,
            now=now,
        )
        return certificate_response(caller, certificate)

    def count_certificate(
        connection: Connection, caller: Caller, item: CertificateRequest, now: datetime
    ) -> tuple[RateDecision, Any] | None:
        counted = certificates.issue_certificate_counted(
            connection,
            context,
            realm=caller.realm,
            token=item.token,
            ekeyhmac=item.ekeyhmac,
            request_limit=request_limit(caller.client_bucket),
            now=now,
        )
        return None if counted is None else (counted.request, counted)

    def finish_certificate(
        _connection: Connection,
        caller: Caller,
        _item: CertificateRequest,
        _now: datetime,
        counted: certificates.CountedCertificate,
    ) -> Response:
        return certificate_response(caller, counted.certificate_or_refusal())

    def certificate_response(caller: Caller, certificate: str) -> Response:
        metrics.CERTIFICATES_ISSUED.labels(str(caller.realm.id)).inc()
        return _json(CertificateResponse(certificate=certificate))

    async def certificate(request: Request) -> Response:
        """Trade a token and the TEK HMAC for a certificate (device API key)."""
        # Its only write is the token claim, one atomic UPDATE after the certificate is
        # signed: it needs no transaction around it, so it runs with the request's count
        # (on PostgreSQL in the same statement).
        return await handle(
            request,
            "certificate",
            ApiKeyKind.DEVICE,
            CertificateRequest,
            certificate_work,
            needs_transaction=False,
            at_once=AtOnce(count_certificate, finish_certificate),
        )

    # Plain Starlette routes: each endpoint reads its own body and answers a Response, so
    # FastAPI's per-request parameter and dependency resolution would only cost time.
    router.add_documented_route(ISSUE, issue)
    router.add_documented_route(BATCH_ISSUE, batch_issue)
    router.add_documented_route(CHECK_CODE_STATUS, check_code_status)
    router.add_documented_route(EXPIRE_CODE, expire_code)
    router.add_documented_route(VERIFY, verify)
    router.add_documented_route(CERTIFICATE, certificate)

    # ---- public keys -----------------------------------------------------------------

    def realm_jwks(realm: str) -> list[dict[str, str]]:
        with unit_of_work(session_factory) as session:
            found = realms.find_realm(session, realm)
            return signing_keys.realm_jwks(session, found, clock())

    async def jwks(realm: str) -> Response:
        """The realm's certificate public keys as a bare JSON array of JWKs."""
        try:
            keys = await run_blocking(realm_jwks, realm)
        except VerificationError as error:
            return _error(error)
        return Response(
            json.dumps(keys),
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    router.add_documented_api_route(JWKS, jwks)
    return router
