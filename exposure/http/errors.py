"""Every error the framework itself answers (no route, wrong method, a crash) in the JSON
error shape of the service the path belongs to, never plain text.

The verification API (``/api/...``, ``/jwks/...``) speaks Google's verification-server shape,
``{"error": ..., "errorCode": ..., "error_code": ..., "padding": ...}``, padded like every
other answer it gives; everything else the key server's and the operations routes'
``{"error": ..., "code": ...}``. Messages are fixed per status: no part of the request (path,
method, body) is echoed.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from exposure.http.padding import random_padding

__all__ = ["ErrorBody", "install_json_errors"]


class ErrorBody(BaseModel):
    """The key server's and the operations routes' error shape (for the OpenAPI document)."""

    error: str = Field(description="For people; fixed per status, never the request.")
    code: str = Field(description="Stable, for programs: not_found, internal_error, ...")


_CODES = {
    400: ("bad_request", "the request could not be read"),
    401: ("unauthorized", "missing or invalid credentials"),
    403: ("forbidden", "not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed on this resource"),
    413: ("request_too_large", "the request is too large"),
    415: ("unsupported_media_type", "unsupported content type"),
    429: ("too_many_requests", "too many requests"),
    500: ("internal_error", "internal error"),
    503: ("unavailable", "temporarily unavailable"),
}


def _body(status: int, *, verification_shape: bool) -> dict[str, str]:
    code, message = _CODES.get(status, ("error", "request failed"))
    if verification_shape:
        if status >= 500:
            code = "internal_server_error"
        return {
            "error": message,
            "errorCode": code,
            "error_code": code,
            "padding": random_padding(),
        }
    return {"error": message, "code": code}


def install_json_errors(app: FastAPI, *, verification_prefixes: Sequence[str]) -> None:
    """Answer framework errors on ``app`` in JSON; paths under ``verification_prefixes``
    get the verification service's shape."""
    prefixes = tuple(verification_prefixes)

    def respond(
        request: Request, status: int, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        shape = bool(prefixes) and request.url.path.startswith(prefixes)
        return JSONResponse(
            _body(status, verification_shape=shape), status_code=status, headers=headers
        )

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)  # noqa: S101 - registered for it only
        return respond(request, error.status_code, getattr(error, "headers", None))

    async def validation_error(request: Request, _error: Exception) -> JSONResponse:
        return respond(request, 400)

    async def crash(request: Request, _error: Exception) -> JSONResponse:
        # The server logs the exception after this answer (with its type, never its message).
        return respond(request, 500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, crash)
