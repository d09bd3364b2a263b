"""The GAEN export file format: read, verify, write and sign key export archives.

An export is a zip holding ``export.bin`` (a 16-byte ``EK Export v1`` header followed by a
``TemporaryExposureKeyExport`` protobuf) and ``export.sig`` (a ``TEKSignatureList`` of ECDSA
P-256 signatures over export.bin). docs/export-format.md describes the format as implemented.

Example::

    from exposure.export import build_export, read_export, verify_export

    archive = build_export(contents, [(signature_info, signer)])
    parsed = read_export(archive)
    verify_export(parsed, public_key)
"""

from exposure.export.errors import (
    ExportContentsError,
    ExportError,
    ExportErrorCode,
    ExportFormatError,
    InvalidExportSignature,
)
from exposure.export.model import (
    DEFAULT_ROLLING_PERIOD,
    EXPORT_BIN_NAME,
    EXPORT_HEADER,
    EXPORT_SIG_NAME,
    KEY_LENGTH,
    ExportContainer,
    ExportContents,
    ExportKey,
    ExportMembers,
    ExportSignature,
    KeyLengthProblem,
    KeyRecord,
    ParsedExport,
    ReportType,
    SignatureCheck,
    SignatureInfo,
)
from exposure.export.reader import (
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_MEMBER_SIZE,
    MAX_ARCHIVE_ENTRIES,
    ExportKeyRecords,
    parse_export_bin,
    parse_key_records,
    parse_signature_list,
    read_export,
    read_export_file,
    read_export_members,
)
from exposure.export.verify import check_signatures, verify_export, verify_signatures
from exposure.export.writer import (
    build_export,
    encode_export_bin,
    encode_signature_list,
    sign_export,
    write_export_zip,
)

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_MEMBER_SIZE",
    "DEFAULT_ROLLING_PERIOD",
    "EXPORT_BIN_NAME",
    "EXPORT_HEADER",
    "EXPORT_SIG_NAME",
    "KEY_LENGTH",
    "MAX_ARCHIVE_ENTRIES",
    "ExportContainer",
    "ExportContents",
    "ExportContentsError",
    "ExportError",
    "ExportErrorCode",
    "ExportFormatError",
    "ExportKey",
    "ExportKeyRecords",
    "ExportMembers",
    "ExportSignature",
    "InvalidExportSignature",
    "KeyLengthProblem",
    "KeyRecord",
    "ParsedExport",
    "ReportType",
    "SignatureCheck",
    "SignatureInfo",
    "build_export",
    "check_signatures",
    "encode_export_bin",
    "encode_signature_list",
    "parse_export_bin",
    "parse_key_records",
    "parse_signature_list",
    "read_export",
    "read_export_file",
    "read_export_members",
    "sign_export",
    "verify_export",
    "verify_signatures",
    "write_export_zip",
]
