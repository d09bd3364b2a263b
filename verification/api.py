"""HTTP layer of the verification service: parse, authenticate, limit, call, answer.

Every answer, success or error, carries random ``padding`` and the rate-limit headers; the
status codes and ``errorCode`` values are those of Google's verification server. Each
request runs in units of work this module opens: one that authenticates and counts the
request (kept even when the work fails), one for the work itself, and for a failed code
verification one more that counts the failure toward the lockout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

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
    VerifyCodeRequest,
    VerifyCodeResponse,
)
from exposure.db import SessionFactory, unit_of_work
from exposure.http.body import BodyError, parse_model, read_json_object
from exposure.http.padding import random_padding
from exposure.ratelimit import bucket_key, hit, peek, rate_limit_headers
from verification import metrics
from verification.context import VerificationContext
from verification.errors import (
    CodeExpired,
    CodeInvalid,
    QuotaExceeded,
    UnparsableRequest,
    VerificationError,
)
from verification.models import ApiKey, Realm
from verification.service import certificates, codes, realms, signing_keys
from verification.service.realms import ApiKeyKind

_logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
Clock = Callable[[], datetime]

RATE_WINDOW = timedelta(minutes=1)
LOCKOUT_CLIENT_WINDOW = timedelta(hours=1)

#: The device endpoints a phone may send chaff to.
CHAFF_PATHS = ("/api/verify", "/api/certificate")


class RateLimited(VerificationError):  # noqa: N818
    code, status = ErrorCode.RATE_LIMITED, 429


class MaintenanceMode(VerificationError):  # noqa: N818
    code, status = ErrorCode.MAINTENANCE_MODE, 429


@dataclass(frozen=True)
class Caller:
    api_key: ApiKey
    realm: Realm
    client_bucket: str
    headers: dict[str, str]


def _rfc1123(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _json(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = model.model_copy(update={"padding": random_padding()}).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def _error(error: VerificationError, headers: dict[str, str] | None = None) -> Response:
    body = ErrorResponse(error=error.message, errorCode=error.code, error_code=error.code)
    return _json(body, status=error.status, headers=headers)


def _body_error(error: BodyError) -> Response:
    code = ErrorCode.UNPARSABLE_REQUEST
    body = ErrorResponse(error=error.message, errorCode=code, error_code=code)
    return _json(body, status=error.status)


def create_router(
    context: VerificationContext, session_factory: SessionFactory, clock: Clock
) -> APIRouter:
    """The verification routes, bound to their dependencies (no module-level state)."""
    router = APIRouter(tags=["verification"])
    settings = context.settings

    def authenticate(request: Request, kind: ApiKeyKind, endpoint: str) -> Caller:
        if settings.maintenance_mode:
            raise MaintenanceMode("the service is down for maintenance; try again later")
        api_key = request.headers.get("x-api-key", "")
        now = clock()
        with unit_of_work(session_factory) as session:
            record, realm = realms.authenticate(session, context, api_key=api_key, kind=kind)
            # The client address is used here, hashed, and then forgotten.
            client = request.client.host if request.client else ""
            client_bucket = bucket_key(context.bucket_secret, "client", str(realm.id), client)
            decision = hit(
                session,
                bucket=bucket_key(context.bucket_secret, "requests", client_bucket),
                limit=settings.requests_per_minute,
                window=RATE_WINDOW,
                now=now,
            )
        headers = rate_limit_headers(decision)
        if not decision.allowed:
            metrics.RATE_LIMITED.labels(endpoint, "requests").inc()
            raise RateLimited("too many requests; retry later", headers=headers)
        return Caller(record, realm, client_bucket, headers)

    async def parse(request: Request, model: type[Model]) -> Model:
        data = await read_json_object(request, max_bytes=MAX_REQUEST_BYTES)
        return parse_model(model, data)

    async def handle(
        request: Request,
        endpoint: str,
        kind: ApiKeyKind,
        model: type[Model],
        work: Callable[[Caller, Model], Response],
    ) -> Response:
        # Database work is synchronous; it runs in the thread pool so the event loop keeps
        # serving other requests (and chaff) meanwhile.
        caller: Caller | None = None
        result: str = "ok"
        try:
            caller = await run_in_threadpool(authenticate, request, kind, endpoint)
            parsed = await parse(request, model)
            response = await run_in_threadpool(work, caller, parsed)
        except BodyError as error:
            result = ErrorCode.UNPARSABLE_REQUEST
            response = _body_error(error)
        except VerificationError as error:
            result = error.code
            response = _error(error, error.headers)
        except Exception:
            # Logged with its trace for operators; the caller learns only that it failed.
            _logger.exception("verification %s failed", endpoint)
            result = ErrorCode.INTERNAL
            response = _error(VerificationError("internal error"))
        realm_label = str(caller.realm.id) if caller is not None else "none"
        metrics.REQUESTS.labels(endpoint, realm_label, result).inc()
        if caller is not None:
            response.headers.update(caller.headers)
        return response

    # ---- lab API (admin keys) -------------------------------------------------------

    def issue_one(caller: Caller, item: IssueCodeRequest) -> IssueCodeResponse:
        now = clock()
        request = codes.IssueRequest(
            test_type=item.testType,
            symptom_date=item.symptomDate,
            test_date=item.testDate,
            tz_offset_minutes=float(item.tzOffset),
            uuid=item.uuid,
            external_issuer_id=item.externalIssuerID,
        )
        with unit_of_work(session_factory) as session:
            issued = codes.issue_code(
                session,
                context,
                realm=caller.realm,
                api_key=caller.api_key,
                request=request,
                now=now,
            )
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

    @router.post("/api/issue")
    async def issue(request: Request) -> Response:
        """Issue a verification code (admin API key)."""
        return await handle(
            request,
            "issue",
            ApiKeyKind.ADMIN,
            IssueCodeRequest,
            lambda caller, item: _json(issue_one(caller, item)),
        )

    def batch_issue_work(caller: Caller, batch: BatchIssueCodeRequest) -> Response:
        if not 1 <= len(batch.codes) <= MAX_BATCH_SIZE:
            raise UnparsableRequest(f"codes must hold 1 to {MAX_BATCH_SIZE} requests")
        results: list[IssueCodeResponse] = []
        first_error: VerificationError | None = None
        # Not atomic, as the reference: each code stands alone and answers at its index.
        for item in batch.codes:
            try:
                results.append(issue_one(caller, item))
            except VerificationError as error:
                first_error = first_error or error
                results.append(IssueCodeResponse(error=error.message, errorCode=error.code))
        if first_error is None:
            return _json(BatchIssueCodeResponse(codes=results))
        body = BatchIssueCodeResponse(
            codes=results, error=first_error.message, errorCode=first_error.code
        )
        return _json(body, status=first_error.status)

    @router.post("/api/batch-issue")
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

    def check_status_work(caller: Caller, item: CodeStatusRequest) -> Response:
        with unit_of_work(session_factory) as session:
            status = codes.code_status(session, realm=caller.realm, uuid=item.uuid)
        return status_response(status)

    @router.post("/api/checkcodestatus")
    async def check_code_status(request: Request) -> Response:
        """Whether a code was claimed, and when it expires (admin API key)."""
        return await handle(
            request, "checkcodestatus", ApiKeyKind.ADMIN, CodeStatusRequest, check_status_work
        )

    def expire_work(caller: Caller, item: CodeStatusRequest) -> Response:
        with unit_of_work(session_factory) as session:
            status = codes.expire_code(
                session,
                realm=caller.realm,
                uuid=item.uuid,
                now=clock(),
                actor=f"api_key:{caller.api_key.id}",
            )
        return status_response(status)

    @router.post("/api/expirecode")
    async def expire_code(request: Request) -> Response:
        """Make an unclaimed code unusable now (admin API key)."""
        return await handle(request, "expirecode", ApiKeyKind.ADMIN, CodeStatusRequest, expire_work)

    # ---- device API ------------------------------------------------------------------

    def lockout_buckets(caller: Caller) -> tuple[str, str]:
        realm_id = str(caller.realm.id)
        return (
            bucket_key(context.bucket_secret, "invalid-code-client", caller.client_bucket),
            bucket_key(context.bucket_secret, "invalid-code-realm", realm_id),
        )

    def verify_work(caller: Caller, item: VerifyCodeRequest) -> Response:
        now = clock()
        client_bucket, realm_bucket = lockout_buckets(caller)
        limits = (
            (client_bucket, settings.invalid_codes_per_client_per_hour, LOCKOUT_CLIENT_WINDOW),
            (
                realm_bucket,
                settings.invalid_codes_per_realm_per_window,
                settings.invalid_code_window,
            ),
        )
        realm_label = str(caller.realm.id)
        try:
            with unit_of_work(session_factory) as session:
                for bucket, limit, window in limits:
                    decision = peek(session, bucket=bucket, limit=limit, window=window, now=now)
                    if decision.remaining <= 0:
                        metrics.RATE_LIMITED.labels("verify", "invalid_codes").inc()
                        raise QuotaExceeded("too many invalid codes; try again later")
                verified = codes.verify_code(
                    session,
                    context,
                    realm=caller.realm,
                    code=item.code,
                    accept=item.accept,
                    now=now,
                )
        except (CodeInvalid, CodeExpired) as error:
            metrics.CODES_REJECTED.labels(realm_label, error.code).inc()
            with unit_of_work(session_factory) as session:
                for bucket, limit, window in limits:
                    hit(session, bucket=bucket, limit=limit, window=window, now=now)
            raise
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

    @router.post("/api/verify")
    async def verify(request: Request) -> Response:
        """Trade a code for a verification token (device API key)."""
        return await handle(request, "verify", ApiKeyKind.DEVICE, VerifyCodeRequest, verify_work)

    def certificate_work(caller: Caller, item: CertificateRequest) -> Response:
        with unit_of_work(session_factory) as session:
            certificate = certificates.issue_certificate(
                session,
                context,
                realm=caller.realm,
                token=item.token,
                ekeyhmac=item.ekeyhmac,
                now=clock(),
            )
        metrics.CERTIFICATES_ISSUED.labels(str(caller.realm.id)).inc()
        return _json(CertificateResponse(certificate=certificate))

    @router.post("/api/certificate")
    async def certificate(request: Request) -> Response:
        """Trade a token and the TEK HMAC for a certificate (device API key)."""
        return await handle(
            request, "certificate", ApiKeyKind.DEVICE, CertificateRequest, certificate_work
        )

    # ---- public keys -----------------------------------------------------------------

    @router.get("/jwks/{realm}")
    def jwks(realm: str) -> Response:
        """The realm's certificate public keys as a bare JSON array of JWKs."""
        try:
            with unit_of_work(session_factory) as session:
                found = realms.find_realm(session, realm)
                keys = signing_keys.realm_jwks(session, found, clock())
        except VerificationError as error:
            return _error(error)
        return Response(
            json.dumps(keys),
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return router
