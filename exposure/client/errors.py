"""Errors of the phone SDK, each with a stable machine-readable ``code``.

An app branches on ``code``, never on the message. Two kinds of code exist:

- When a server refused a request, ``code`` is the server's own code, passed through as the
  server wrote it (``code_invalid``, ``token_expired``, ``missing_revision_token``...), so the
  codes documented for this server and for Google's servers apply unchanged. A refusal
  without a code (the key server's maintenance answer, a proxy's error page) gets
  ``http_<status>``.
- Everything the SDK decides itself has a :class:`ClientErrorCode`.

Messages never contain a key, a token, a verification code or an HMAC secret: they are made
from fixed text, HTTP statuses, file names and the server's own ``error`` text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ClientError",
    "ClientErrorCode",
    "ExportRefused",
    "IndexUnavailable",
    "PublishRefused",
    "StateUnreadable",
    "TransportFailed",
    "UnexpectedResponse",
    "VerificationRefused",
]


class ClientErrorCode(StrEnum):
    """Codes of failures the SDK itself detects; part of its public contract."""

    NETWORK_ERROR = "network_error"
    """No HTTP answer: connection refused or reset, DNS failure, timeout."""
    BAD_RESPONSE = "bad_response"
    """An answer that is not what the protocol promises (not JSON, a field missing)."""
    INDEX_UNAVAILABLE = "index_unavailable"
    """index.txt could not be downloaded; nothing was processed or forgotten."""
    INVALID_SIGNATURE = "invalid_signature"
    """No signature of an export verifies with a configured key of matching id and version."""
    MISSING_FILE = "missing_file"
    """index.txt lists a file that the server does not have (404)."""
    BAD_EXPORT = "bad_export"
    """An export file is not a well-formed GAEN export (zip, header, protobuf)."""
    TOO_LARGE = "too_large"
    """An export file is larger than the configured limit."""
    DOWNLOAD_FAILED = "download_failed"
    """An export file could not be downloaded (network failure or an error status)."""
    BAD_INDEX_ENTRY = "bad_index_entry"
    """index.txt lists a name that is not a relative file name (``..``, a URL, a space)."""
    STATE_UNREADABLE = "state_unreadable"
    """The persistent download state exists but cannot be read."""


class ClientError(Exception):
    """Base class of every error the SDK raises.

    ``code`` is stable (see the module docstring); ``status`` is the HTTP status when a
    server answered, else None.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TransportFailed(ClientError):  # noqa: N818 - names the event, like the server's errors
    """The request got no HTTP answer at all."""

    def __init__(self, message: str) -> None:
        super().__init__(ClientErrorCode.NETWORK_ERROR, message)


class UnexpectedResponse(ClientError):  # noqa: N818
    """The server answered, but not in the shape its protocol defines."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(ClientErrorCode.BAD_RESPONSE, message, status=status)


class VerificationRefused(ClientError):  # noqa: N818
    """The verification server refused ``/api/verify`` or ``/api/certificate``.

    ``code`` is its ``errorCode``: ``code_invalid``, ``code_expired``, ``token_expired``,
    ``unsupported_test_type``, ``rate_limited``...
    """


class PublishRefused(ClientError):  # noqa: N818
    """The key server refused ``/v1/publish``.

    ``code`` is its ``code``: ``health_authority_verification_certificate_invalid``,
    ``missing_revision_token``, ``invalid_report_type_transition``, ``bad_request``...
    """


class IndexUnavailable(ClientError):  # noqa: N818
    """index.txt could not be fetched; the download state is unchanged."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(ClientErrorCode.INDEX_UNAVAILABLE, message, status=status)


class ExportRefused(ClientError):  # noqa: N818
    """One export file was refused; ``name`` is its name as index.txt lists it.

    A sync reports these and goes on with the other files; see
    :class:`~exposure.client.exports.SyncReport`.
    """

    def __init__(
        self, code: ClientErrorCode, message: str, *, name: str = "", status: int | None = None
    ) -> None:
        super().__init__(code, message, status=status)
        self.name = name


class StateUnreadable(ClientError):  # noqa: N818
    """The download state file exists but is not a state this SDK wrote."""

    def __init__(self, message: str) -> None:
        super().__init__(ClientErrorCode.STATE_UNREADABLE, message)
