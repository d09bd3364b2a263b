"""Domain errors of the key server, each with the reference's wire code and HTTP status.

Services raise these; the API layer turns any of them into the v1 publish error body. The
message of a certificate failure is always the same: why a certificate failed is logged as
a reason class for operators and never told to the caller.
"""

# Names mirror the wire error codes, not Python's Error suffix.
# ruff: noqa: N818

from __future__ import annotations

from exposure.api.v1 import PublishErrorCode

#: The longest request value an error message or warning may quote. Messages otherwise quote
#: only numbers the server computed or bounded (indexes, interval numbers, int32/int64
#: fields), names from closed sets, and never a key, certificate, HMAC secret, token or
#: padding.
MAX_QUOTED_REQUEST_VALUE = 64


class PublishError(Exception):
    """Base class: a publish the server refuses, with its wire code and status."""

    code: PublishErrorCode = PublishErrorCode.INTERNAL
    status: int = 500

    def __init__(self, message: str, *, warnings: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Carried into the response's ``warnings`` (e.g. keys dropped before the failure).
        self.warnings = warnings or []


class BadRequest(PublishError):
    """The keys as a whole are unusable: none, too many, all invalid, overlapping."""

    code, status = PublishErrorCode.BAD_REQUEST, 400


class UnknownHealthAuthorityID(PublishError):
    code, status = PublishErrorCode.UNKNOWN_HEALTH_AUTHORITY_ID, 401


class MissingRegionConfig(PublishError):
    code, status = PublishErrorCode.HEALTH_AUTHORITY_MISSING_REGION_CONFIG, 500


class CertificateInvalid(PublishError):
    """The verification certificate or the TEK HMAC did not check out (reason not told)."""

    code, status = PublishErrorCode.VERIFICATION_CERTIFICATE_INVALID, 401

    def __init__(self, reason: str) -> None:
        super().__init__("unable to validate diagnosis verification")
        #: A bounded reason class for metrics and logs: never sent to the caller.
        self.reason = reason


class MissingRevisionToken(PublishError):
    code, status = PublishErrorCode.MISSING_REVISION_TOKEN, 400


class InvalidRevisionToken(PublishError):
    code, status = PublishErrorCode.INVALID_REVISION_TOKEN, 400


class KeyAlreadyRevised(PublishError):
    code, status = PublishErrorCode.KEY_ALREADY_REVISED, 400


class InvalidReportTypeTransition(PublishError):
    code, status = PublishErrorCode.INVALID_REPORT_TYPE_TRANSITION, 400


class StoredKeyMismatch(PublishError):
    """A re-sent key whose interval differs from the stored one: 400 ``internal_error``."""

    code, status = PublishErrorCode.INTERNAL, 400


class UnableToLoadHealthAuthority(PublishError):
    """The app's configuration could not be read (the database failed): 500."""

    code, status = PublishErrorCode.UNABLE_TO_LOAD_HEALTH_AUTHORITY, 500
