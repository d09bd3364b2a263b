"""Errors of the export file format, each with a stable machine-readable ``code``.

A reader of export files faces hostile input (files fetched from peers, uploaded by operators,
mirrored from CDNs), so every way such a file can be malformed ends in one exception type,
:class:`ExportFormatError`, whose ``code`` says which check refused it. Callers branch on the
code, never on the message: messages may be reworded, codes may not.

Signature failures are different: :class:`InvalidExportSignature` is deliberately opaque (no
code beyond ``invalid_signature``, a fixed message), like :mod:`crypto.errors`, so that nobody
learns from the answer *why* a signature was refused.
"""

from __future__ import annotations

from enum import StrEnum


class ExportErrorCode(StrEnum):
    """Stable snake_case codes of every export error; part of the public contract."""

    BAD_HEADER = "bad_header"
    """export.bin does not start with the 16-byte ``EK Export v1    `` header."""
    BAD_PROTOBUF = "bad_protobuf"
    """The protobuf after the header (or export.sig) does not decode, or holds invalid text."""
    BAD_ZIP = "bad_zip"
    """The archive is not a readable zip, or uses a feature a GAEN archive never needs."""
    TOO_LARGE = "too_large"
    """A member or file is larger than the configured limit (zip bombs end here)."""
    MISSING_MEMBER = "missing_member"
    """The archive has no ``export.bin``."""
    DUPLICATE_MEMBER = "duplicate_member"
    """Two archive entries share a name, so which one is "the" export is ambiguous."""
    BAD_KEY_LENGTH = "bad_key_length"
    """A key is not 16 bytes long (raised only when the caller asks for strict reading)."""
    INVALID_CONTENTS = "invalid_contents"
    """A value object or an encode request holds a value the format cannot carry."""
    INVALID_SIGNATURE = "invalid_signature"
    """No signature of the export verifies with the expected public key."""


class ExportError(Exception):
    """Base class of every error raised by :mod:`exposure.export`."""

    code: ExportErrorCode

    def __init__(self, code: ExportErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}"


class ExportFormatError(ExportError):
    """The bytes are not a well-formed GAEN export (zip, export.bin or export.sig).

    ``code`` names the failed check; the message adds a human-readable detail that never
    includes file contents beyond sizes and member names.
    """


class ExportContentsError(ExportError, ValueError):
    """A value cannot be represented in an export (out of the proto's integer range, bad text).

    It is also a :class:`ValueError`, since it always means the caller passed a bad argument.
    """

    def __init__(self, message: str) -> None:
        super().__init__(ExportErrorCode.INVALID_CONTENTS, message)


class InvalidExportSignature(ExportError):  # noqa: N818 - mirrors crypto.errors.InvalidSignature
    """No signature in the export verifies with the given public key.

    Opaque on purpose: a missing export.sig, a signature by another key, a malformed DER
    value and a modified export.bin all look the same to the caller.
    """

    def __init__(self) -> None:
        super().__init__(ExportErrorCode.INVALID_SIGNATURE, "export signature verification failed")
