"""Write GAEN export files the way the reference key server does, byte for byte.

Three steps, each usable alone:

1. :func:`encode_export_bin` turns :class:`~exposure.export.model.ExportContents` into
   export.bin: the 16-byte header, then the serialized ``TemporaryExposureKeyExport`` with keys
   sorted by their bytes and fields populated as in §4.3 of the reference notes.
2. :func:`sign_export` signs those exact bytes with one or more signers into export.sig.
3. :func:`write_export_zip` packs both into a deterministic zip.

:func:`build_export` chains the three.

Example::

    info = SignatureInfo(verification_key_id="310", verification_key_version="v1")
    archive = build_export(contents, [(info, FileSigner.from_file(Path("export.pem")))])
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import replace

from crypto.signing import Signer
from exposure.export.errors import ExportContentsError
from exposure.export.model import (
    DEFAULT_ROLLING_PERIOD,
    EXPORT_BIN_NAME,
    EXPORT_HEADER,
    EXPORT_SIG_NAME,
    KEY_LENGTH,
    ExportContents,
    ExportKey,
    ExportSignature,
    SignatureInfo,
)
from exposure.export.proto import export_pb2

# The reference server writes an all-zero MS-DOS date (month 0, day 0), which is not a valid
# date; the earliest valid one keeps strict unzip tools happy. Either way the archive bytes
# depend only on the members.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_ZIP_CREATE_SYSTEM_MSDOS = 0
_DEFLATE_LEVEL = 6  # zlib's default, named here so a library default change cannot move bytes


def encode_export_bin(contents: ExportContents, *, require_key_length: bool = True) -> bytes:
    """Serialize ``contents`` into export.bin (header included).

    Follows the reference server (§4.3): keys and revised keys are sorted ascending by their
    raw bytes, which also hides the order in which they were uploaded;
    ``transmission_risk_level`` is written whenever it is not None, even when 0;
    ``rolling_start_interval_number`` only when not 0; ``rolling_period`` only when not 144
    (the proto default, which readers fill back in); ``report_type`` and
    ``days_since_onset_of_symptoms`` only when not None. Header fields and signature-info
    fields are written when not None. Proto serialization emits fields in field-number order,
    so equal contents always give equal bytes.

    Raises :class:`ExportContentsError` if a key is not 16 bytes long, unless
    ``require_key_length`` is False (only tests should want invalid files).
    """
    if require_key_length:
        problems = contents.key_length_problems()
        if problems:
            first = problems[0]
            raise ExportContentsError(
                f"{first.key_list}[{first.index}] is {first.length} bytes, not {KEY_LENGTH}"
            )
    message = export_pb2.TemporaryExposureKeyExport(
        start_timestamp=contents.start_timestamp,
        end_timestamp=contents.end_timestamp,
        region=contents.region,
        batch_num=contents.batch_num,
        batch_size=contents.batch_size,
        signature_infos=[_signature_info_message(info) for info in contents.signature_infos],
        keys=_key_messages(contents.keys),
        revised_keys=_key_messages(contents.revised_keys),
    )
    return EXPORT_HEADER + message.SerializeToString()


def encode_signature_list(signatures: Iterable[ExportSignature]) -> bytes:
    """Serialize signatures into export.sig (a ``TEKSignatureList``), in the given order."""
    message = export_pb2.TEKSignatureList(
        signatures=[
            export_pb2.TEKSignature(
                signature_info=(
                    _signature_info_message(signature.signature_info)
                    if signature.signature_info is not None
                    else None
                ),
                batch_num=signature.batch_num,
                batch_size=signature.batch_size,
                signature=signature.signature,
            )
            for signature in signatures
        ]
    )
    return message.SerializeToString()


def sign_export(
    export_bin: bytes,
    signers: Sequence[tuple[SignatureInfo, Signer]],
    batch_num: int | None = 1,
    batch_size: int | None = 1,
) -> bytes:
    """Sign ``export_bin`` with each signer and return export.sig.

    One ``TEKSignature`` per signer, in the given order; put the newest key first, as phones
    may stop after the first entries. ``batch_num``/``batch_size`` must repeat export.bin's
    (the reference server always uses 1/1). Errors of a signer (a KMS outage, say) propagate.
    """
    return encode_signature_list(
        ExportSignature(
            signature_info=info,
            batch_num=batch_num,
            batch_size=batch_size,
            signature=signer.sign(export_bin),
        )
        for info, signer in signers
    )


def write_export_zip(export_bin: bytes, export_sig: bytes | None) -> bytes:
    """Pack export.bin then export.sig (left out when None) into a deflated zip.

    Timestamps, permissions and the compression level are fixed, so the same members always
    give the same archive bytes on a given zlib.
    """
    members = [(EXPORT_BIN_NAME, export_bin)]
    if export_sig is not None:
        members.append((EXPORT_SIG_NAME, export_sig))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in members:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_TIMESTAMP)
            entry.compress_type = zipfile.ZIP_DEFLATED
            # Otherwise zipfile records the host OS and its file mode, which vary by machine.
            entry.create_system = _ZIP_CREATE_SYSTEM_MSDOS
            entry.external_attr = 0
            archive.writestr(entry, payload, compresslevel=_DEFLATE_LEVEL)
    return buffer.getvalue()


def build_export(
    contents: ExportContents, signers: Sequence[tuple[SignatureInfo, Signer]]
) -> bytes:
    """Encode, sign and zip ``contents`` in one call; return the archive bytes.

    export.bin must announce the keys that sign it: when ``contents.signature_infos`` is empty
    it is filled from ``signers``; otherwise it must equal the signers' infos, in order.

    Raises :class:`ExportContentsError` on a mismatch or an invalid key length.
    """
    signer_infos = tuple(info for info, _ in signers)
    if not contents.signature_infos:
        contents = replace(contents, signature_infos=signer_infos)
    elif contents.signature_infos != signer_infos:
        raise ExportContentsError("signature_infos do not match the signers' infos")
    export_bin = encode_export_bin(contents)
    export_sig = sign_export(export_bin, signers, contents.batch_num, contents.batch_size)
    return write_export_zip(export_bin, export_sig)


def _key_messages(keys: Sequence[ExportKey]) -> list[export_pb2.TemporaryExposureKey]:
    # Sorting by raw bytes is what Go's bytes.Compare does; sorted() is stable, so keys with
    # equal bytes keep their relative order and the output stays deterministic.
    ordered = sorted(keys, key=lambda key: key.key_data)
    return [_key_message(key) for key in ordered]


def _key_message(key: ExportKey) -> export_pb2.TemporaryExposureKey:
    # The generated constructor leaves a field unset when given None, which is how proto2
    # presence is expressed here.
    return export_pb2.TemporaryExposureKey(
        key_data=key.key_data,
        transmission_risk_level=key.transmission_risk_level,
        rolling_start_interval_number=key.rolling_start_interval_number or None,
        rolling_period=(
            None if key.rolling_period == DEFAULT_ROLLING_PERIOD else key.rolling_period
        ),
        report_type=(
            export_pb2.TemporaryExposureKey.ReportType.Value(key.report_type.name)
            if key.report_type is not None
            else None
        ),
        days_since_onset_of_symptoms=key.days_since_onset_of_symptoms,
    )


def _signature_info_message(info: SignatureInfo) -> export_pb2.SignatureInfo:
    return export_pb2.SignatureInfo(
        verification_key_version=info.verification_key_version,
        verification_key_id=info.verification_key_id,
        signature_algorithm=info.signature_algorithm,
    )
