"""Builders shared by the export tests: small valid contents and hand-made archives."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from crypto.signing import FileSigner
from exposure.export import (
    ExportContents,
    ExportKey,
    ReportType,
    SignatureInfo,
    build_export,
)

SIGNATURE_INFO = SignatureInfo(verification_key_id="310", verification_key_version="v1")


def sample_key(first_byte: int, **overrides: Any) -> ExportKey:
    """A valid 16-byte key whose bytes start with ``first_byte`` (to control sort order)."""
    key = ExportKey(
        key_data=bytes([first_byte]) + bytes(range(1, 16)),
        transmission_risk_level=2,
        rolling_start_interval_number=2_676_096,
        report_type=ReportType.CONFIRMED_TEST,
        days_since_onset_of_symptoms=3,
    )
    return replace(key, **overrides)


def sample_contents(**overrides: Any) -> ExportContents:
    contents = ExportContents(
        start_timestamp=1_605_818_700,
        end_timestamp=1_605_819_000,
        region="US",
        signature_infos=(SIGNATURE_INFO,),
        keys=(sample_key(0x30), sample_key(0x10), sample_key(0x20)),
        revised_keys=(sample_key(0x40, report_type=ReportType.REVOKED),),
    )
    return replace(contents, **overrides)


def signed_archive(signer: FileSigner, contents: ExportContents | None = None) -> bytes:
    return build_export(contents or sample_contents(), [(SIGNATURE_INFO, signer)])


def make_zip(
    members: Sequence[tuple[str, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """An arbitrary archive, for the negative cases the writer will never produce."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, payload in members:
            archive.writestr(name, payload)
    return buffer.getvalue()
