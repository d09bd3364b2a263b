"""Auditor access over HTTP: the retention log and the compliance report, read-only.

- ``GET /audit/public-keys``: each service's retention-log public key (base64 Ed25519).
  Public: anyone may hold the service to its log.
- ``GET /audit/log?service=S&after=N&limit=M``: a page of ``S``'s log as the document that
  ``exposure audit verify`` checks (entries with seq above ``N``, at most ``M``).
- ``GET /audit/compliance``: the report of ``exposure audit compliance``.

The last two need an ``X-API-Key`` of type ``auditor``. Nothing here can change or delete
anything, and no response holds data of people: the log holds counts and times only.
Errors are ``{"error": message, "code": stable_code}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from exposure.db import unit_of_work
from exposure.http.blocking import run_blocking
from exposure.http.errors import ErrorBody
from exposure.http.openapi import Answer, DocumentedRouter, KeyKind, Operation, Parameter
from exposure.retention.compliance import compliance_report
from exposure.retention.log import export_document
from exposure.retention.runtime import ServiceRetention, public_keys_document
from exposure.settings import Service

__all__ = ["MAX_PAGE", "AuditErrorCode", "create_router"]

#: Most entries one page of ``/audit/log`` returns.
MAX_PAGE = 10_000


class AuditErrorCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_SERVICE = "unknown_service"
    BAD_REQUEST = "bad_request"


# ---- what each route answers (the OpenAPI document) -----------------------------------


class AuditError(BaseModel):
    error: str = Field(description="For people; never repeats the request.")
    code: AuditErrorCode


class PublicKeys(BaseModel):
    """``GET /audit/public-keys``: what ``exposure audit verify --public-key`` reads."""

    keys: dict[str, str] = Field(description="Service → its log's public key (base64 Ed25519).")
    previous_keys: dict[str, list[str]] = Field(
        description="Service → the keys the current one replaced, newest first."
    )


class LogEntry(BaseModel):
    seq: int
    entry: str = Field(description="The exact canonical JSON that was hashed and signed.")
    link: str = Field(description="Hex of the hash chaining this entry to the one before.")
    signature: str = Field(description="Base64 Ed25519 signature.")


class LogCheckpoint(BaseModel):
    seq: int
    body: str = Field(description="Canonical JSON: the chain's head at ``seq``.")
    signature: str


class LogPage(BaseModel):
    """A page of one service's retention log, as ``exposure audit verify`` checks it."""

    format: str
    service: str
    public_key: str = Field(description="Convenience only: verify with a key you trust.")
    entries: list[LogEntry]
    checkpoints: list[LogCheckpoint]


class ServiceCompliance(BaseModel):
    service: str
    clean: bool
    purge_interval_seconds: int
    log: dict[str, Any] = Field(description="The log's verification result.")
    public_key: str
    kinds: list[dict[str, Any]] = Field(
        description="Per kind of data: deadline, oldest item's age, purge runs, findings."
    )
    findings: list[str]


class ComplianceReport(BaseModel):
    """The report of ``exposure audit compliance``."""

    as_of: str
    clean: bool = Field(description="No finding in any service.")
    grace_intervals: int
    services: list[ServiceCompliance]


_UNAUTHORIZED = Answer("`unauthorized`: no, wrong or disabled auditor key.", AuditError)
_FAILED = Answer("`internal_error`: anything unexpected.", ErrorBody)
_READ_ONLY = "Read-only; the log holds counts and times only, never data of people."

PUBLIC_KEYS = Operation(
    method="GET",
    path="/audit/public-keys",
    operation_id="getRetentionPublicKeys",
    summary="The retention logs' public keys",
    description="Each service's retention-log public key and the keys it replaced, to "
    "verify exported logs with. Public: anyone may hold the service to its log.",
    tag="audit",
    answers={200: Answer("The keys.", PublicKeys)},
)
LOG = Operation(
    method="GET",
    path="/audit/log",
    operation_id="getRetentionLog",
    summary="A page of one service's retention log",
    description=f"Entries with seq above `after`, at most `limit`, oldest first, plus every "
    f"checkpoint. {_READ_ONLY}",
    tag="audit",
    key=KeyKind.AUDITOR,
    parameters=(
        Parameter(
            "service",
            "query",
            "Whose log: a service this process serves.",
            schema={"type": "string", "enum": [service.value for service in Service]},
            required=True,
        ),
        Parameter(
            "after",
            "query",
            "Entries with seq above this (default 0).",
            schema={"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
        ),
        Parameter(
            "limit",
            "query",
            f"At most this many entries (default {MAX_PAGE}).",
            schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": MAX_PAGE},
        ),
    ),
    answers={
        200: Answer("The page.", LogPage),
        400: Answer(
            f"`bad_request`: `after` or `limit` is not an integer in range (0..2^31-1, "
            f"1..{MAX_PAGE}).",
            AuditError,
        ),
        401: _UNAUTHORIZED,
        404: Answer(
            "`unknown_service`: no such service, or one this process does not serve.",
            AuditError,
        ),
        500: _FAILED,
    },
)
COMPLIANCE = Operation(
    method="GET",
    path="/audit/compliance",
    operation_id="getComplianceReport",
    summary="The compliance report",
    description="Per kind of data: the oldest item against its deadline, the purge runs, "
    f"and whether the log verifies. {_READ_ONLY}",
    tag="audit",
    key=KeyKind.AUDITOR,
    answers={200: Answer("The report.", ComplianceReport), 401: _UNAUTHORIZED, 500: _FAILED},
)


def _error(status: int, code: AuditErrorCode, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code.value}, status_code=status)


def _int_parameter(request: Request, name: str, default: int, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII only: str.isdigit() also accepts superscripts (int() refuses them, a 500) and
    # other scripts' digits (int() reads them).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if low <= value <= high else None


def create_router(
    retentions: Mapping[str, ServiceRetention],
    authorize: Callable[[str], bool],
    clock: Callable[[], datetime],
) -> APIRouter:
    """The audit routes over ``retentions`` (by service name); ``authorize`` checks a key."""
    router = DocumentedRouter()

    async def allowed(request: Request) -> bool:
        api_key = request.headers.get("x-api-key", "")
        # Key checks touch the database: keep them off the event loop.
        return await run_blocking(authorize, api_key)

    def public_keys() -> JSONResponse:
        """Each service's retention-log public keys (base64), to verify exported logs with."""
        return JSONResponse(public_keys_document(retentions))

    async def log(request: Request) -> JSONResponse:
        """A page of one service's retention log (auditor key)."""
        if not await allowed(request):
            return _error(401, AuditErrorCode.UNAUTHORIZED, "missing or invalid auditor API key")
        service = request.query_params.get("service", "")
        retention = retentions.get(service)
        if retention is None:
            known = ", ".join(sorted(retentions))
            return _error(404, AuditErrorCode.UNKNOWN_SERVICE, f"service must be one of: {known}")
        after = _int_parameter(request, "after", 0, 0, 2**31 - 1)
        limit = _int_parameter(request, "limit", MAX_PAGE, 1, MAX_PAGE)
        if after is None or limit is None:
            return _error(
                400,
                AuditErrorCode.BAD_REQUEST,
                f"after must be an integer >= 0 and limit one in 1..{MAX_PAGE}",
            )
        document = await run_blocking(_page, retention, after, limit)
        return JSONResponse(document)

    async def compliance(request: Request) -> JSONResponse:
        """Per kind of data: oldest item against its deadline, purge runs, log verification."""
        if not await allowed(request):
            return _error(401, AuditErrorCode.UNAUTHORIZED, "missing or invalid auditor API key")
        report = await run_blocking(compliance_report, list(retentions.values()), now=clock())
        return JSONResponse(report)

    router.add_documented_api_route(PUBLIC_KEYS, public_keys)
    router.add_documented_api_route(LOG, log)
    router.add_documented_api_route(COMPLIANCE, compliance)
    return router


def _page(retention: ServiceRetention, after: int, limit: int) -> dict[str, Any]:
    with unit_of_work(retention.session_factory) as session:
        return export_document(
            session,
            service=retention.service.value,
            public_key=retention.public_key,
            after_seq=after,
            limit=limit,
        )
