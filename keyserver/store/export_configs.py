"""The key server's queries on export configurations and the signature infos that sign them.

Nothing here commits; the functions that write flush, so the caller gets ids at once and a
violated constraint surfaces in the call that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keyserver.models import ExportConfig, ImportSource, SignatureInfo


def export_config_by_id(session: Session, config_id: int) -> ExportConfig | None:
    return session.get(ExportConfig, config_id)


def export_config_by_filename_root(session: Session, filename_root: str) -> ExportConfig | None:
    """The config writing under ``filename_root`` (compared case-insensitively)."""
    return session.scalars(
        select(ExportConfig).where(func.lower(ExportConfig.filename_root) == filename_root.lower())
    ).first()


def export_configs(session: Session) -> list[ExportConfig]:
    """Every config, by id."""
    return list(session.scalars(select(ExportConfig).order_by(ExportConfig.id)))


def export_configs_valid_from(session: Session, moment: datetime) -> list[ExportConfig]:
    """The configs whose ``valid_from`` is at or before ``moment``, by id."""
    return list(
        session.scalars(
            select(ExportConfig).where(ExportConfig.valid_from <= moment).order_by(ExportConfig.id)
        )
    )


def add_export_config(session: Session, config: ExportConfig) -> ExportConfig:
    session.add(config)
    session.flush()
    return config


def set_signature_info_ids(session: Session, config: ExportConfig, encoded_ids: str) -> None:
    """List the signature infos ``encoded_ids`` (comma-separated, signing order) on ``config``."""
    config.signature_info_ids = encoded_ids
    session.flush()


def signature_infos_by_id(session: Session, ids: Sequence[int]) -> dict[int, SignatureInfo]:
    """The signature infos among ``ids`` that exist, by id."""
    return {
        info.id: info
        for info in session.scalars(select(SignatureInfo).where(SignatureInfo.id.in_(ids)))
    }


def has_signature_info(session: Session, key_id: str, key_version: str) -> bool:
    existing = session.scalars(
        select(SignatureInfo.id).where(
            SignatureInfo.key_id == key_id, SignatureInfo.key_version == key_version
        )
    ).first()
    return existing is not None


def add_signature_info(session: Session, info: SignatureInfo) -> SignatureInfo:
    session.add(info)
    session.flush()
    return info


def valid_signature_infos_of_key(
    session: Session, key_id: str, now: datetime
) -> list[SignatureInfo]:
    """The versions of export key ``key_id`` whose validity has not ended at ``now``."""
    return list(
        session.scalars(
            select(SignatureInfo).where(
                SignatureInfo.key_id == key_id,
                (SignatureInfo.valid_until.is_(None)) | (SignatureInfo.valid_until > now),
            )
        )
    )


def end_signature_info_validity(
    session: Session, info: SignatureInfo, valid_until: datetime
) -> None:
    """Sign no file with ``info`` after ``valid_until``."""
    info.valid_until = valid_until
    session.flush()


def signature_infos(session: Session) -> list[SignatureInfo]:
    """Every export signing key version, by id."""
    return list(session.scalars(select(SignatureInfo).order_by(SignatureInfo.id)))


def signature_info(session: Session, key_id: str, key_version: str) -> SignatureInfo | None:
    return session.scalars(
        select(SignatureInfo).where(
            SignatureInfo.key_id == key_id, SignatureInfo.key_version == key_version
        )
    ).first()


def signature_info_references(session: Session, *, usable_at: datetime | None = None) -> list[str]:
    """The key-store reference of every export signing key (only those still signing at
    ``usable_at``, when given), oldest first."""
    statement = select(SignatureInfo.signing_key).order_by(SignatureInfo.id)
    if usable_at is not None:
        statement = statement.where(
            SignatureInfo.valid_until.is_(None) | (SignatureInfo.valid_until > usable_at)
        )
    return list(session.scalars(statement))


def import_source_ids(session: Session, ids: Sequence[int]) -> list[int]:
    """The ids among ``ids`` of import sources that exist."""
    if not ids:
        return []
    return list(session.scalars(select(ImportSource.id).where(ImportSource.id.in_(ids))))
