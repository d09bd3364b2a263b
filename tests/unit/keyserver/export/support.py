"""Helpers shared by the export tests: keys in the database, configs, files in the store."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.signing import load_public_key
from exposure.export import ParsedExport, read_export, verify_signatures
from exposure.keys import ServiceKeyStore
from exposure.tek import interval_number, utc_midnight
from keyserver.export.blobstore import BlobStore
from keyserver.export.configs import add_signature_info, create_export_config
from keyserver.models import ExportConfig, Exposure, SignatureInfo
from keyserver.settings import KeyserverSettings
from keyserver.store.exposures import encode_regions, insert_exposures

#: A Monday at midnight UTC; tests place keys and clocks relative to it.
T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def settings(**overrides: Any) -> KeyserverSettings:
    return KeyserverSettings(**overrides)


def exposure_row(
    *,
    created_at: datetime,
    key: bytes | None = None,
    regions: Sequence[str] = ("VN",),
    traveler: bool = False,
    interval: int | None = None,
    interval_count: int = 144,
    transmission_risk: int = 2,
    report_type: str = "confirmed",
    days_since_symptom_onset: int | None = 1,
    origin: str = "publish",
    revised_at: datetime | None = None,
    revised_report_type: str | None = None,
    revised_days_since_symptom_onset: int | None = None,
) -> dict[str, Any]:
    """A stored key as publish would write it (a day-long key of the day before by default)."""
    if interval is None:
        interval = interval_number(utc_midnight(created_at) - timedelta(days=1))
    return {
        "key": key if key is not None else os.urandom(16),
        "transmission_risk": transmission_risk,
        "regions": encode_regions(regions),
        "traveler": traveler,
        "interval_number": interval,
        "interval_count": interval_count,
        "created_at": created_at,
        "origin": origin,
        "health_authority_id": None,
        "report_type": report_type,
        "days_since_symptom_onset": days_since_symptom_onset,
        "revised_report_type": revised_report_type,
        "revised_at": revised_at,
        "revised_days_since_symptom_onset": revised_days_since_symptom_onset,
        "revised_transmission_risk": None,
    }


def add_keys(session: Session, rows: Sequence[dict[str, Any]]) -> list[bytes]:
    assert insert_exposures(session, rows) == len(rows)
    return [row["key"] for row in rows]


def make_config(
    session: Session,
    key_store: ServiceKeyStore,
    *,
    root: str = "vn",
    period: timedelta = timedelta(hours=4),
    valid_from: datetime = T0,
    key_id: str = "452",
    key_version: str = "v1",
    **options: Any,
) -> tuple[ExportConfig, SignatureInfo]:
    info = add_signature_info(session, key_store, key_id=key_id, key_version=key_version, now=T0)
    config = create_export_config(
        session,
        filename_root=root,
        period=period,
        output_region=options.pop("output_region", "VN"),
        valid_from=valid_from,
        now=T0,
        signature_info_ids=[info.id],
        **options,
    )
    return config, info


def read_index(store: BlobStore, root: str) -> list[str]:
    blob = store.get(f"{root}/index.txt")
    if blob is None:
        return []
    text = blob.data.decode("ascii")
    assert not text.endswith("\n")
    return text.split("\n") if text else []


def read_exports(store: BlobStore, names: Iterable[str]) -> dict[str, ParsedExport]:
    exports: dict[str, ParsedExport] = {}
    for name in names:
        blob = store.get(name)
        assert blob is not None, f"{name} is listed but missing"
        exports[name] = read_export(blob.data, strict_key_length=True)
    return exports


def assert_verifies(parsed: ParsedExport, public_key_pems: Sequence[str]) -> None:
    """Every signature verifies with exactly the key of its signature info, in order."""
    keys = [load_public_key(pem.encode("ascii")) for pem in public_key_pems]
    checks = verify_signatures(parsed, keys)
    assert [check.verified_by for check in checks] == [(index,) for index in range(len(keys))]


def write_public_keys(directory: Path, pems: Sequence[str]) -> list[Path]:
    paths = []
    for index, pem in enumerate(pems):
        path = directory / f"public-{index}.pem"
        path.write_text(pem)
        paths.append(path)
    return paths


def stored_keys(session: Session, origin: str | None = None) -> set[bytes]:
    statement = select(Exposure.key)
    if origin is not None:
        statement = statement.where(Exposure.origin == origin)
    return set(session.scalars(statement))
