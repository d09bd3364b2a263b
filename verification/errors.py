"""Domain errors of the verification service, each with a stable wire code and status.

Services raise these; the API layer turns any of them into the reference error body. The
messages are written for the caller, never reveal whether a code exists, and never repeat
a value from the request: at most they name the field that was wrong.
"""

# Names mirror the wire error codes (CodeInvalid is code_invalid), not Python's Error suffix.
# ruff: noqa: N818

from __future__ import annotations

from exposure.api.verification import ErrorCode


class VerificationError(Exception):
    """Base class: a failure the client caused or may retry, with its wire code."""

    code: ErrorCode = ErrorCode.INTERNAL
    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Extra response headers, such as ``Retry-After`` on a rate-limit refusal.
        self.headers = headers or {}


class Unauthorized(VerificationError):
    code, status = ErrorCode.UNAUTHORIZED, 401


class CodeInvalid(VerificationError):
    """Unknown, wrong or already-used code: deliberately indistinguishable."""

    code, status = ErrorCode.CODE_INVALID, 400


class CodeExpired(VerificationError):
    code, status = ErrorCode.CODE_EXPIRED, 400


class CodeNotFound(VerificationError):
    code, status = ErrorCode.CODE_NOT_FOUND, 404


class CodeAlreadyClaimed(VerificationError):
    code, status = ErrorCode.CODE_ALREADY_CLAIMED, 400


class InvalidTestType(VerificationError):
    code, status = ErrorCode.INVALID_TEST_TYPE, 400


class UnsupportedTestType(VerificationError):
    """``/api/issue``: a test type this realm does not issue (400, as the reference)."""

    code, status = ErrorCode.UNSUPPORTED_TEST_TYPE, 400


class TestTypeNotAccepted(VerificationError):
    """``/api/verify``: the code's test type is not one the app accepts. The reference
    answers 412 here, telling the app to ask its user to update it."""

    __test__ = False  # not a pytest test class, despite the name

    code, status = ErrorCode.UNSUPPORTED_TEST_TYPE, 412


class MissingDate(VerificationError):
    code, status = ErrorCode.MISSING_DATE, 400


class InvalidDate(VerificationError):
    code, status = ErrorCode.INVALID_DATE, 400


class UuidAlreadyExists(VerificationError):
    code, status = ErrorCode.UUID_ALREADY_EXISTS, 409


class TokenInvalid(VerificationError):
    code, status = ErrorCode.TOKEN_INVALID, 400


class TokenExpired(VerificationError):
    """Expired, already used, or not matching its record: one answer for all three."""

    code, status = ErrorCode.TOKEN_EXPIRED, 400


class HmacInvalid(VerificationError):
    code, status = ErrorCode.HMAC_INVALID, 400


class QuotaExceeded(VerificationError):
    code, status = ErrorCode.QUOTA_EXCEEDED, 429


class RealmNotFound(VerificationError):
    code, status = ErrorCode.NOT_FOUND, 404


class UnparsableRequest(VerificationError):
    code, status = ErrorCode.UNPARSABLE_REQUEST, 400


class InvalidRealmPolicy(VerificationError):
    """A realm setting outside its floor or ceiling (operator input, not a wire request)."""

    code, status = ErrorCode.UNPARSABLE_REQUEST, 400


class ApiKeyNotFound(VerificationError):
    code, status = ErrorCode.NOT_FOUND, 404
