"""Read GAEN export files: a zip (export.bin + export.sig) or a bare export.bin.

The input is untrusted (peer servers, mirrors, operator uploads), so the reader is built to
fail closed and cheaply:

- Every malformed input raises :class:`~exposure.export.errors.ExportFormatError` with a
  stable ``code``; nothing else escapes, whatever zipfile, zlib or protobuf think of the bytes.
- Members are decompressed in chunks and abandoned as soon as they pass ``max_member_size``;
  the sizes the archive *claims* are never trusted, so a zip bomb costs at most the limit.
- Keys that are not 16 bytes long are returned and listed in
  :attr:`~exposure.export.model.ParsedExport.key_length_problems` (or refused with
  ``strict_key_length=True``): deployed producers did ship such files, and a reader that
  crashes on them cannot even report what is wrong.

Example::

    parsed = read_export_file(Path("1605818700-1605819000-00001.zip"))
    print(parsed.contents.region, len(parsed.contents.keys), len(parsed.signatures))
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.unknown_fields import UnknownFieldSet

from exposure.export.errors import ExportErrorCode, ExportFormatError
from exposure.export.model import (
    EXPORT_BIN_NAME,
    EXPORT_HEADER,
    EXPORT_SIG_NAME,
    ExportContainer,
    ExportContents,
    ExportKey,
    ExportMembers,
    ExportSignature,
    KeyRecord,
    ParsedExport,
    ReportType,
    SignatureInfo,
)
from exposure.export.proto import export_pb2

_Value = TypeVar("_Value")

# SignatureInfo fields of the first export schema, reserved since: app_bundle_id (1) and
# android_package (2), both strings.
_APP_BUNDLE_ID_FIELD = 1
_ANDROID_PACKAGE_FIELD = 2
_LEGACY_FIELDS = frozenset({_APP_BUNDLE_ID_FIELD, _ANDROID_PACKAGE_FIELD})
_LENGTH_DELIMITED = 2

#: Largest decompressed export.bin or export.sig accepted. The reference server caps files at
#: 500,000 keys (about 14 MiB of protobuf); 64 MiB leaves room for any real producer.
DEFAULT_MAX_MEMBER_SIZE = 64 * 1024 * 1024
#: Largest file :func:`read_export_file` reads from disk (two members at the limit, stored).
DEFAULT_MAX_FILE_SIZE = 2 * DEFAULT_MAX_MEMBER_SIZE
#: Largest number of entries an archive may list. Real exports have 1 to 3; the bound keeps a
#: crafted central directory with millions of entries from costing time and memory.
MAX_ARCHIVE_ENTRIES = 16

# A local file header, or the end-of-central-directory record of an empty archive.
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_READ_CHUNK_SIZE = 64 * 1024
# GAEN archives use deflate (the reference server) or store; refusing the rest keeps bz2 and
# lzma, with their own error types and memory profiles, out of the attack surface.
_SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ENCRYPTED_FLAG = 0x1
# What zipfile and zlib raise on corrupt archives. The set is wide because zipfile documents
# only BadZipFile yet also lets struct, seek, decompression and decoding errors through.
_ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    IndexError,
)


def read_export(
    data: bytes,
    *,
    max_member_size: int = DEFAULT_MAX_MEMBER_SIZE,
    strict_key_length: bool = False,
) -> ParsedExport:
    """Read an export given as zip bytes or as a bare export.bin.

    The zip signature ``PK\\x03\\x04`` selects the archive path; anything else must be an
    export.bin starting with the 16-byte header. Archive entries other than export.bin and
    export.sig are tolerated and listed in ``extra_members``, never decompressed.

    Raises :class:`ExportFormatError` for any malformed input; with ``strict_key_length`` also
    (code ``bad_key_length``) when a key is not 16 bytes long.
    """
    members = read_export_members(data, max_member_size=max_member_size)
    export_bin, export_sig = members.export_bin, members.export_sig
    contents = parse_export_bin(export_bin)
    signatures = parse_signature_list(export_sig) if export_sig is not None else ()
    problems = contents.key_length_problems()
    if strict_key_length and problems:
        first = problems[0]
        raise ExportFormatError(
            ExportErrorCode.BAD_KEY_LENGTH,
            f"{len(problems)} key(s) are not 16 bytes long; "
            f"first: {first.key_list}[{first.index}] has {first.length} bytes",
        )
    return ParsedExport(
        contents=contents,
        export_bin=export_bin,
        signatures=signatures,
        container=members.container,
        has_signature_file=export_sig is not None,
        extra_members=members.extra_members,
        key_length_problems=problems,
    )


def read_export_members(
    data: bytes, *, max_member_size: int = DEFAULT_MAX_MEMBER_SIZE
) -> ExportMembers:
    """Take export.bin and export.sig out of zip bytes (or a bare export.bin), unparsed.

    For readers that must check the signature before they decode a single key, as a phone
    does: :func:`parse_signature_list` and :func:`~exposure.export.verify.check_signatures`
    on the result, then the keys. The archive checks are those of :func:`read_export`.

    Raises :class:`ExportFormatError` for a malformed archive or a member over the limit.
    """
    if data.startswith(_ZIP_SIGNATURES):
        export_bin, export_sig, extra_members = _read_archive(data, max_member_size)
        return ExportMembers(
            export_bin=export_bin,
            export_sig=export_sig,
            container=ExportContainer.ZIP,
            extra_members=extra_members,
        )
    if len(data) > max_member_size:
        raise ExportFormatError(
            ExportErrorCode.TOO_LARGE,
            f"export.bin is {len(data)} bytes, over the {max_member_size}-byte limit",
        )
    return ExportMembers(export_bin=data, export_sig=None, container=ExportContainer.BIN)


def read_export_file(
    path: Path,
    *,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    max_member_size: int = DEFAULT_MAX_MEMBER_SIZE,
    strict_key_length: bool = False,
) -> ParsedExport:
    """Read the export stored at ``path`` (see :func:`read_export`).

    At most ``max_file_size`` bytes are read; a larger file raises :class:`ExportFormatError`
    (``too_large``) without being loaded. :class:`OSError` from opening or reading the file is
    not a format problem and propagates unchanged.
    """
    with path.open("rb") as stream:
        data = stream.read(max_file_size + 1)
    if len(data) > max_file_size:
        raise ExportFormatError(
            ExportErrorCode.TOO_LARGE, f"file is over the {max_file_size}-byte limit"
        )
    return read_export(data, max_member_size=max_member_size, strict_key_length=strict_key_length)


def parse_export_bin(export_bin: bytes) -> ExportContents:
    """Decode export.bin (header plus ``TemporaryExposureKeyExport``) into value objects.

    Raises :class:`ExportFormatError`: ``bad_header`` unless the first 16 bytes are exactly
    ``EK Export v1    ``, ``bad_protobuf`` if the rest does not decode or holds invalid text.
    """
    message = _parse_export_message(export_bin)
    return ExportContents(
        start_timestamp=_optional(message, "start_timestamp", message.start_timestamp),
        end_timestamp=_optional(message, "end_timestamp", message.end_timestamp),
        region=_optional_text(message, "region", message.region),
        batch_num=_optional(message, "batch_num", message.batch_num),
        batch_size=_optional(message, "batch_size", message.batch_size),
        signature_infos=tuple(_signature_info(info) for info in message.signature_infos),
        keys=tuple(_key(key) for key in message.keys),
        revised_keys=tuple(_key(key) for key in message.revised_keys),
    )


@dataclass(frozen=True)
class ExportKeyRecords:
    """The keys of an export.bin as plain tuples, read a chunk at a time.

    For bulk readers (an importer takes files of 500,000 keys): :func:`parse_export_bin`
    makes one value object per key, which costs more than everything else an import does
    with the key. Each :data:`~exposure.export.model.KeyRecord` holds exactly what the
    :class:`~exposure.export.model.ExportKey` of the same entry holds, field for field, with
    ``None`` for a field absent on the wire; the keys come first, then the revised keys.
    """

    region: str | None
    key_count: int
    revised_key_count: int
    _message: export_pb2.TemporaryExposureKeyExport

    def __len__(self) -> int:
        return self.key_count + self.revised_key_count

    def repeated_keys(self) -> dict[bytes, int]:
        """Each key data that appears more than once (in either list), with its count."""
        seen: set[bytes] = set()
        repeated: dict[bytes, int] = {}
        for keys in (self._message.keys, self._message.revised_keys):
            for key in keys:
                data = key.key_data
                if data in seen:
                    repeated[data] = repeated.get(data, 1) + 1
                else:
                    seen.add(data)
        return repeated

    def chunks(self, size: int) -> Iterator[list[KeyRecord]]:
        """Every record, keys then revised keys, in lists of at most ``size``."""
        if size < 1:
            raise ValueError("size must be positive")
        for keys in (self._message.keys, self._message.revised_keys):
            # Iterated, not sliced: a slice of a repeated field costs as much again.
            entries = iter(keys)
            while chunk := [_record(key) for key in islice(entries, size)]:
                yield chunk


def parse_key_records(export_bin: bytes) -> ExportKeyRecords:
    """Decode export.bin for :class:`ExportKeyRecords`: its region and its keys as tuples.

    Raises :class:`ExportFormatError` as :func:`parse_export_bin` does.
    """
    message = _parse_export_message(export_bin)
    return ExportKeyRecords(
        region=_optional_text(message, "region", message.region),
        key_count=len(message.keys),
        revised_key_count=len(message.revised_keys),
        _message=message,
    )


def _parse_export_message(export_bin: bytes) -> export_pb2.TemporaryExposureKeyExport:
    if not export_bin.startswith(EXPORT_HEADER):
        raise ExportFormatError(
            ExportErrorCode.BAD_HEADER,
            "export.bin does not start with the 16-byte 'EK Export v1' header",
        )
    message = export_pb2.TemporaryExposureKeyExport()
    _parse_protobuf(message, export_bin[len(EXPORT_HEADER) :], EXPORT_BIN_NAME)
    return message


def parse_signature_list(export_sig: bytes) -> tuple[ExportSignature, ...]:
    """Decode export.sig (a ``TEKSignatureList``); empty bytes mean zero signatures.

    The same message signs other blobs too (the Corona-Warn-App signs its configuration with
    it), so this works on any bytes. Raises :class:`ExportFormatError` (``bad_protobuf``).
    """
    message = export_pb2.TEKSignatureList()
    _parse_protobuf(message, export_sig, EXPORT_SIG_NAME)
    return tuple(
        ExportSignature(
            signature_info=(
                _signature_info(entry.signature_info) if entry.HasField("signature_info") else None
            ),
            batch_num=_optional(entry, "batch_num", entry.batch_num),
            batch_size=_optional(entry, "batch_size", entry.batch_size),
            signature=entry.signature,
        )
        for entry in message.signatures
    )


def _read_archive(data: bytes, max_member_size: int) -> tuple[bytes, bytes | None, tuple[str, ...]]:
    """Return export.bin, export.sig (None if absent) and the names of any other entries."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ARCHIVE_ENTRIES:
                raise ExportFormatError(
                    ExportErrorCode.BAD_ZIP,
                    f"archive lists {len(entries)} entries, more than {MAX_ARCHIVE_ENTRIES}",
                )
            by_name: dict[str, zipfile.ZipInfo] = {}
            for entry in entries:
                # Two entries with one name: different tools would pick different ones, so a
                # signature checked by one tool could cover keys imported by another.
                if entry.filename in by_name:
                    raise ExportFormatError(
                        ExportErrorCode.DUPLICATE_MEMBER,
                        f"archive holds {entry.filename!r} more than once",
                    )
                by_name[entry.filename] = entry
            bin_entry = by_name.get(EXPORT_BIN_NAME)
            if bin_entry is None:
                raise ExportFormatError(ExportErrorCode.MISSING_MEMBER, "archive has no export.bin")
            export_bin = _read_member(archive, bin_entry, max_member_size)
            sig_entry = by_name.get(EXPORT_SIG_NAME)
            export_sig = (
                _read_member(archive, sig_entry, max_member_size) if sig_entry is not None else None
            )
    except _ZIP_ERRORS as error:
        raise ExportFormatError(
            ExportErrorCode.BAD_ZIP, f"not a readable zip archive ({type(error).__name__})"
        ) from error
    extra = tuple(name for name in by_name if name not in (EXPORT_BIN_NAME, EXPORT_SIG_NAME))
    return export_bin, export_sig, extra


def _read_member(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limit: int) -> bytes:
    """Decompress one entry, giving up as soon as it produces more than ``limit`` bytes."""
    if entry.flag_bits & _ENCRYPTED_FLAG:
        raise ExportFormatError(ExportErrorCode.BAD_ZIP, f"{entry.filename} is encrypted")
    if entry.compress_type not in _SUPPORTED_COMPRESSION:
        raise ExportFormatError(
            ExportErrorCode.BAD_ZIP,
            f"{entry.filename} uses compression method {entry.compress_type}",
        )
    content = bytearray()
    with archive.open(entry) as member:
        # ZipExtFile.read(n) inflates at most n bytes per call, so memory stays near the limit
        # whatever the entry's header claims.
        while chunk := member.read(_READ_CHUNK_SIZE):
            content += chunk
            if len(content) > limit:
                raise ExportFormatError(
                    ExportErrorCode.TOO_LARGE,
                    f"{entry.filename} inflates past the {limit}-byte limit",
                )
    return bytes(content)


def _parse_protobuf(message: ProtoMessage, payload: bytes, member: str) -> None:
    try:
        message.ParseFromString(payload)
    except (DecodeError, ValueError, RecursionError) as error:
        raise ExportFormatError(
            ExportErrorCode.BAD_PROTOBUF,
            f"{member} does not decode as {message.DESCRIPTOR.name}",
        ) from error


def _optional(message: ProtoMessage, field_name: str, value: _Value) -> _Value | None:
    """``value`` if the proto2 field is present on the wire, else None."""
    return value if message.HasField(field_name) else None


def _optional_text(message: ProtoMessage, field_name: str, value: object) -> str | None:
    if not message.HasField(field_name):
        return None
    # The upb runtime hands back bytes, not str, when a proto2 string field holds invalid
    # UTF-8; the stubs cannot say so, hence the ``object`` parameter.
    if not isinstance(value, str):
        raise ExportFormatError(
            ExportErrorCode.BAD_PROTOBUF,
            f"{message.DESCRIPTOR.name}.{field_name} is not valid UTF-8",
        )
    return value


def _signature_info(message: export_pb2.SignatureInfo) -> SignatureInfo:
    legacy = _legacy_signature_info_fields(message)
    return SignatureInfo(
        verification_key_version=_optional_text(
            message, "verification_key_version", message.verification_key_version
        ),
        verification_key_id=_optional_text(
            message, "verification_key_id", message.verification_key_id
        ),
        signature_algorithm=_optional_text(
            message, "signature_algorithm", message.signature_algorithm
        ),
        app_bundle_id=legacy.get(_APP_BUNDLE_ID_FIELD),
        android_package=legacy.get(_ANDROID_PACKAGE_FIELD),
    )


def _legacy_signature_info_fields(message: export_pb2.SignatureInfo) -> dict[int, str]:
    """Fields 1 and 2 of an early file's SignatureInfo, which today's schema reserves.

    The parser keeps them as unknown fields. Only the first schema's form, a length-delimited
    string, counts (the last occurrence wins, as for any proto field); any other wire type
    is ignored as it was before. They are informational, so bytes that are not UTF-8 are
    shown escaped rather than failing the whole file.
    """
    found: dict[int, str] = {}
    unknown_fields = UnknownFieldSet(message)
    # Indexed, not iterated: the type stubs declare only __getitem__ and __len__.
    for index in range(len(unknown_fields)):
        unknown = unknown_fields[index]
        number, wire_type = int(unknown.field_number), int(unknown.wire_type)
        if number in _LEGACY_FIELDS and wire_type == _LENGTH_DELIMITED:
            found[number] = bytes(unknown.data).decode("utf-8", "backslashreplace")
    return found


def _record(message: export_pb2.TemporaryExposureKey) -> KeyRecord:
    # The same reading as _key, without the value objects (see ExportKeyRecords); the report
    # type stays a number because an enum member hashes in Python, and bulk readers key
    # dictionaries by these values.
    has_field = message.HasField
    return (
        message.key_data,
        message.transmission_risk_level if has_field("transmission_risk_level") else None,
        message.rolling_start_interval_number,
        message.rolling_period,
        message.report_type if has_field("report_type") else None,
        (
            message.days_since_onset_of_symptoms
            if has_field("days_since_onset_of_symptoms")
            else None
        ),
    )


def _key(message: export_pb2.TemporaryExposureKey) -> ExportKey:
    # proto2 enums are closed: a report_type number outside the enum is kept as an unknown
    # field and reads as absent, so ReportType() below only sees declared values.
    report_type = ReportType(message.report_type) if message.HasField("report_type") else None
    return ExportKey(
        key_data=message.key_data,
        transmission_risk_level=_optional(
            message, "transmission_risk_level", message.transmission_risk_level
        ),
        rolling_start_interval_number=message.rolling_start_interval_number,
        # Reads as the proto default, 144, when absent; the writer relies on that (§4.3).
        rolling_period=message.rolling_period,
        report_type=report_type,
        days_since_onset_of_symptoms=_optional(
            message, "days_since_onset_of_symptoms", message.days_since_onset_of_symptoms
        ),
    )
