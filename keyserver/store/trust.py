"""The key server's queries on whom it trusts: health authorities, their keys, authorized apps.

Rows are written by the admin CLI and the JWKS refresh, and read (through a cache) by publish.
Nothing here commits; the functions that add rows flush them, so the caller gets their ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyserver.models import (
    AuthorizedApp,
    AuthorizedAppHealthAuthority,
    HealthAuthority,
    HealthAuthorityKey,
)


def health_authority_by_issuer(session: Session, issuer: str) -> HealthAuthority | None:
    """The health authority whose certificates carry ``iss == issuer`` (exact match)."""
    return session.scalars(select(HealthAuthority).where(HealthAuthority.issuer == issuer)).first()


def health_authority_by_id(session: Session, authority_id: int) -> HealthAuthority | None:
    return session.get(HealthAuthority, authority_id)


def health_authority_jwks_urls(session: Session) -> list[tuple[int, str, str | None]]:
    """(id, issuer, JWKS URL or None) of every health authority, by id."""
    rows = session.execute(
        select(HealthAuthority.id, HealthAuthority.issuer, HealthAuthority.jwks_url).order_by(
            HealthAuthority.id
        )
    ).all()
    return [(row.id, row.issuer, row.jwks_url) for row in rows]


def add_health_authority(session: Session, authority: HealthAuthority) -> HealthAuthority:
    session.add(authority)
    session.flush()
    return authority


def has_key_version(session: Session, authority_id: int, version: str) -> bool:
    """Whether the authority has (or had: revoked keys stay) a key named ``version``."""
    existing = session.scalars(
        select(HealthAuthorityKey.id).where(
            HealthAuthorityKey.health_authority_id == authority_id,
            HealthAuthorityKey.version == version,
        )
    ).first()
    return existing is not None


def add_health_authority_key(session: Session, key: HealthAuthorityKey) -> HealthAuthorityKey:
    session.add(key)
    session.flush()
    return key


def end_key_validity(session: Session, key: HealthAuthorityKey, valid_until: datetime) -> None:
    """Trust ``key`` only until ``valid_until``."""
    key.valid_until = valid_until
    session.flush()


def health_authority_keys(session: Session, authority_id: int) -> list[HealthAuthorityKey]:
    """Every key of the authority, revoked ones included."""
    return list(
        session.scalars(
            select(HealthAuthorityKey).where(HealthAuthorityKey.health_authority_id == authority_id)
        )
    )


def unexpired_health_authority_keys(
    session: Session, authority_id: int, now: datetime
) -> list[HealthAuthorityKey]:
    """The authority's keys whose validity has not ended at ``now`` (later starts included)."""
    return list(
        session.scalars(
            select(HealthAuthorityKey).where(
                HealthAuthorityKey.health_authority_id == authority_id,
                (HealthAuthorityKey.valid_until.is_(None)) | (HealthAuthorityKey.valid_until > now),
            )
        )
    )


def authorized_app(session: Session, app_id: str) -> AuthorizedApp | None:
    """The app stored as ``app_id`` (stored ids are lower case; so must ``app_id`` be)."""
    return session.scalars(select(AuthorizedApp).where(AuthorizedApp.app_id == app_id)).first()


def has_authorized_app(session: Session, app_id: str) -> bool:
    duplicate = session.scalars(
        select(AuthorizedApp.id).where(AuthorizedApp.app_id == app_id)
    ).first()
    return duplicate is not None


def add_authorized_app(
    session: Session, app: AuthorizedApp, health_authority_ids: Iterable[int]
) -> AuthorizedApp:
    """Store ``app`` and the health authorities whose certificates it may publish with."""
    session.add(app)
    session.flush()
    session.add_all(
        AuthorizedAppHealthAuthority(app_id=app.id, health_authority_id=authority_id)
        for authority_id in health_authority_ids
    )
    session.flush()
    return app


def app_health_authority_ids(session: Session, app_pk: int) -> frozenset[int]:
    """The ids of the health authorities the app (by its row id) may publish with."""
    return frozenset(
        session.scalars(
            select(AuthorizedAppHealthAuthority.health_authority_id).where(
                AuthorizedAppHealthAuthority.app_id == app_pk
            )
        )
    )


# ---- what operators list and remove ----------------------------------------------------


def health_authorities(session: Session) -> list[HealthAuthority]:
    return list(session.scalars(select(HealthAuthority).order_by(HealthAuthority.id)))


def delete_health_authority(session: Session, authority: HealthAuthority) -> None:
    """Its keys and app links go with it (ON DELETE CASCADE); keys stay, unattributed."""
    session.delete(authority)
    # The caller reports the change; a refused delete must surface in this call.
    session.flush()


def authorized_app_ids(session: Session) -> list[str]:
    return list(session.scalars(select(AuthorizedApp.app_id).order_by(AuthorizedApp.id)))


def delete_authorized_app(session: Session, app: AuthorizedApp) -> None:
    session.delete(app)
    session.flush()


def issuers_by_id(session: Session, authority_ids: Iterable[int]) -> dict[int, str]:
    ids = list(authority_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(HealthAuthority.id, HealthAuthority.issuer).where(HealthAuthority.id.in_(ids))
    )
    return {authority_id: issuer for authority_id, issuer in rows}
