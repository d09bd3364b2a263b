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

from exposure.db import unit_of_work
from exposure.http.blocking import run_blocking
from exposure.retention.compliance import compliance_report
from exposure.retention.log import export_document
from exposure.retention.runtime import ServiceRetention, public_keys_document

__all__ = ["MAX_PAGE", "AuditErrorCode", "create_router"]

#: Most entries one page of ``/audit/log`` returns.
MAX_PAGE = 10_000


class AuditErrorCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    UNKNOWN_SERVICE = "unknown_service"
    BAD_REQUEST = "bad_request"


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
    router = APIRouter(prefix="/audit", tags=["audit"])

    async def allowed(request: Request) -> bool:
        api_key = request.headers.get("x-api-key", "")
        # Key checks touch the database: keep them off the event loop.
        return await run_blocking(authorize, api_key)

    @router.get("/public-keys")
    def public_keys() -> JSONResponse:
        """Each service's retention-log public keys (base64), to verify exported logs with."""
        return JSONResponse(public_keys_document(retentions))

    @router.get("/log")
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

    @router.get("/compliance")
    async def compliance(request: Request) -> JSONResponse:
        """Per kind of data: oldest item against its deadline, purge runs, log verification."""
        if not await allowed(request):
            return _error(401, AuditErrorCode.UNAUTHORIZED, "missing or invalid auditor API key")
        report = await run_blocking(compliance_report, list(retentions.values()), now=clock())
        return JSONResponse(report)

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
