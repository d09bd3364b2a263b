"""What operators list, show, disable and remove on the key server (``exposure admin``).

Creating lives beside each kind's rules (:mod:`keyserver.service.trust`,
:mod:`keyserver.export.configs`); this module is the rest of their life cycle. Nothing here
touches keys phones uploaded: removing a health authority leaves its keys published (they
only lose the link to it), and disabling an export configuration stops new windows while
the files already written stay listed until their deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from exposure.clock import require_aware
from keyserver.export.configs import (
    UnknownSignatureInfo,
    config_import_regions,
    config_import_source_ids,
    config_input_regions,
    config_signature_info_ids,
)
from keyserver.models import ExportConfig, HealthAuthority, HealthAuthorityKey, SignatureInfo
from keyserver.service.trust import AppConfig, TrustError, find_health_authority, load_app
from keyserver.store import export_configs as config_store
from keyserver.store import trust as trust_store

__all__ = [
    "AuthorityView",
    "UnknownApp",
    "UnknownExportConfig",
    "UnknownHealthAuthority",
    "UnknownKeyVersion",
    "disable_export_config",
    "find_authority",
    "find_export_config",
    "list_apps",
    "list_authorities",
    "list_export_configs",
    "list_signature_infos",
    "remove_app",
    "remove_authority",
    "retire_signature_info",
    "revoke_authority_key",
]


class UnknownHealthAuthority(TrustError):  # noqa: N818 - names the missing thing
    """No health authority has that issuer (or id)."""


class UnknownKeyVersion(TrustError):  # noqa: N818 - names the missing thing
    """The health authority has no key of that version (kid)."""


class UnknownApp(TrustError):  # noqa: N818 - names the missing thing
    """No authorized app has that id."""


class UnknownExportConfig(TrustError):  # noqa: N818 - names the missing thing
    """No export configuration has that root (or id)."""


@dataclass(frozen=True)
class AuthorityView:
    authority: HealthAuthority
    keys: tuple[HealthAuthorityKey, ...]


def list_authorities(session: Session) -> list[AuthorityView]:
    return [
        AuthorityView(authority, tuple(trust_store.health_authority_keys(session, authority.id)))
        for authority in trust_store.health_authorities(session)
    ]


def find_authority(session: Session, issuer_or_id: str) -> AuthorityView:
    """By exact issuer, or by numeric id; :class:`UnknownHealthAuthority` otherwise."""
    authority = find_health_authority(session, issuer_or_id)
    if authority is None and issuer_or_id.isascii() and issuer_or_id.isdigit():
        authority = trust_store.health_authority_by_id(session, int(issuer_or_id[:9]))
    if authority is None:
        raise UnknownHealthAuthority(f"no health authority {issuer_or_id!r}")
    return AuthorityView(authority, tuple(trust_store.health_authority_keys(session, authority.id)))


def revoke_authority_key(view: AuthorityView, version: str, now: datetime) -> HealthAuthorityKey:
    """Stop trusting one key of an authority from ``now`` (an earlier end is kept)."""
    require_aware(now, "now")
    for key in view.keys:
        if key.version == version:
            if key.valid_until is None or key.valid_until > now:
                key.valid_until = now
            return key
    raise UnknownKeyVersion(
        f"health authority {view.authority.issuer!r} has no key version {version!r}"
    )


def remove_authority(session: Session, view: AuthorityView) -> None:
    """Stop trusting an issuer at all: it, its keys and its apps' links to it are deleted."""
    trust_store.delete_health_authority(session, view.authority)


def list_apps(session: Session) -> list[tuple[AppConfig, list[str]]]:
    """Every authorized app with the issuers it may publish with."""
    apps = []
    for app_id in trust_store.authorized_app_ids(session):
        config = load_app(session, app_id)
        if config is not None:
            issuers = trust_store.issuers_by_id(session, config.health_authority_ids)
            apps.append((config, sorted(issuers.values())))
    return apps


def find_app(session: Session, app_id: str) -> tuple[AppConfig, list[str]]:
    config = load_app(session, app_id)
    if config is None:
        raise UnknownApp(f"no authorized app {app_id!r}")
    issuers = trust_store.issuers_by_id(session, config.health_authority_ids)
    return config, sorted(issuers.values())


def remove_app(session: Session, app_id: str) -> None:
    """The app may no longer publish (within the cache duration); its keys stay published."""
    app = trust_store.authorized_app(session, app_id.lower())
    if app is None:
        raise UnknownApp(f"no authorized app {app_id!r}")
    trust_store.delete_authorized_app(session, app)


def list_export_configs(session: Session) -> list[ExportConfig]:
    return config_store.export_configs(session)


def find_export_config(session: Session, root_or_id: str) -> ExportConfig:
    for config in config_store.export_configs(session):
        if config.filename_root == root_or_id or str(config.id) == root_or_id:
            return config
    raise UnknownExportConfig(f"no export configuration {root_or_id!r}")


def disable_export_config(config: ExportConfig, now: datetime) -> bool:
    """No window starting at or after ``now`` is batched; False if it already ended."""
    require_aware(now, "now")
    if config.valid_until is not None and config.valid_until <= now:
        return False
    config.valid_until = now
    return True


def export_config_facts(config: ExportConfig) -> dict[str, object]:
    """A configuration as an operator reads it."""
    return {
        "id": config.id,
        "export_root": config.filename_root,
        "period_seconds": config.period_seconds,
        "output_region": config.output_region,
        "input_regions": list(config_input_regions(config)),
        "exclude_regions": [region for region in config.exclude_regions.split(",") if region],
        "include_travelers": config.include_travelers,
        "only_non_travelers": config.only_non_travelers,
        "max_records": config.max_records,
        "signature_info_ids": config_signature_info_ids(config),
        "include_imported": config.include_imported,
        "import_source_ids": config_import_source_ids(config),
        "import_regions": list(config_import_regions(config)),
        "valid_from": config.valid_from,
        "valid_until": config.valid_until,
    }


def list_signature_infos(session: Session) -> list[SignatureInfo]:
    return config_store.signature_infos(session)


def retire_signature_info(
    session: Session, key_id: str, key_version: str, at: datetime, now: datetime
) -> SignatureInfo:
    """The version signs no file after ``at`` (no earlier than ``now``; an earlier end is
    kept); files already written keep their signatures."""
    require_aware(now, "now")
    require_aware(at, "at")
    info = config_store.signature_info(session, key_id, key_version)
    if info is None:
        raise UnknownSignatureInfo(f"no export signing key {key_id!r} version {key_version!r}")
    end = max(at, now)
    if info.valid_until is None or info.valid_until > end:
        info.valid_until = end
    return info
