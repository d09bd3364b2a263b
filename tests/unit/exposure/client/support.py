"""Builders shared by the phone SDK tests: seeded randomness, phones that met, signed exports."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from crypto.signing import FileSigner
from exposure.client import (
    Device,
    DiagnosisKey,
    ExportSigningKey,
    ReportType,
    TemporaryExposureKey,
)
from exposure.export import ExportContents, ExportKey, SignatureInfo, build_export

#: A Tuesday morning, UTC: far enough from midnight that a day's scans stay on one day.
MORNING = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SCAN = timedelta(minutes=5)
SIGNATURE_INFO = SignatureInfo(verification_key_id="310", verification_key_version="v1")


def seeded(seed: int) -> Callable[[int], bytes]:
    """A reproducible stand-in for the CSPRNG."""
    return random.Random(seed).randbytes


def meet(
    listener: Device, sender: Device, start: datetime, scans: int, attenuation: int = 50
) -> None:
    """``listener`` scans every five minutes from ``start`` and hears ``sender`` each time."""
    for number in range(scans):
        listener.scan(start + number * SCAN, [(sender, attenuation)])


def diagnosis_key(
    key: TemporaryExposureKey,
    report_type: ReportType = ReportType.CONFIRMED_TEST,
    days_since_onset: int | None = 0,
) -> DiagnosisKey:
    """``key`` as an export would publish it."""
    return DiagnosisKey(
        key.key_data,
        key.rolling_start_interval_number,
        key.rolling_period,
        report_type,
        days_since_onset,
    )


def export_key(key: DiagnosisKey) -> ExportKey:
    return ExportKey(
        key_data=key.key_data,
        transmission_risk_level=0,
        rolling_start_interval_number=key.rolling_start_interval_number,
        rolling_period=key.rolling_period,
        report_type=None if key.report_type is ReportType.UNKNOWN else key.report_type,
        days_since_onset_of_symptoms=key.days_since_onset_of_symptoms,
    )


def signed_export(
    signer: FileSigner,
    keys: Iterable[DiagnosisKey],
    revised: Sequence[DiagnosisKey] = (),
    *,
    info: SignatureInfo = SIGNATURE_INFO,
) -> bytes:
    """A zip of export.bin and export.sig, as a key server writes it."""
    contents = ExportContents(
        start_timestamp=1_796_000_000,
        end_timestamp=1_796_014_400,
        region="VN",
        signature_infos=(info,),
        keys=tuple(export_key(key) for key in keys),
        revised_keys=tuple(export_key(key) for key in revised),
    )
    return build_export(contents, [(info, signer)])


def signing_key(signer: FileSigner, key_id: str = "310", version: str = "v1") -> ExportSigningKey:
    return ExportSigningKey(key_id, version, signer.public_key())
