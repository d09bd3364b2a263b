"""Whom the key server trusts: health authorities, their public keys, and authorized apps.

A health authority issues verification certificates (ES256 JWTs) under an ``iss`` and an
``aud`` of its own, signed with keys named by ``kid``; an authorized app is a GAEN app (the
``healthAuthorityID`` a phone sends) and lists the authorities whose certificates it may
publish with. The admin CLI writes these rows; publish reads them through a
:class:`TrustCache`, which keeps each lookup (hits and misses alike) for a few minutes, as
the reference does, so a publish costs no trust queries in the steady state.

Functions here take the caller's session and never commit; time is always a parameter. Their
queries are in :mod:`keyserver.store.trust`.
"""

# Error names say what went wrong (DuplicateIssuer), as keyserver.errors does.
# ruff: noqa: N818

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy.orm import Session

from crypto.errors import InvalidKey
from crypto.signing import load_public_key, public_key_pem
from exposure.cache import TtlCache
from exposure.clock import require_aware
from exposure.db import SessionFactory, unit_of_work
from keyserver.models import AuthorizedApp, HealthAuthority, HealthAuthorityKey
from keyserver.store import trust as trust_store

__all__ = [
    "AppConfig",
    "AuthorityConfig",
    "DuplicateApp",
    "DuplicateIssuer",
    "DuplicateKeyVersion",
    "InvalidPublicKey",
    "InvalidTrustValue",
    "TrustCache",
    "TrustError",
    "UnknownIssuer",
    "add_authorized_app",
    "add_health_authority",
    "add_health_authority_key",
    "app_lookup_name",
    "could_be_issuer",
    "find_health_authority",
    "load_app",
    "load_authority",
    "normalize_public_key_pem",
    "revoke_health_authority_key",
]

_logger = logging.getLogger(__name__)

#: Column widths of the tables (longer values would fail on PostgreSQL only).
_SHORT_TEXT = 255
_URL_TEXT = 1000
_REGIONS_TEXT = 500
# Letters, digits and hyphens (ISO 3166 codes such as "US-WA"): exposures store regions
# between commas and find them with LIKE, where "," "%" and "_" would change the meaning.
_REGION = re.compile(r"[A-Z0-9-]{1,20}")
# Package names and bundle ids are ASCII; keeping to it makes Python's lower() and the
# database's lower() (ASCII-only on SQLite) agree on what "lower case" means.
_APP_ID = re.compile(r"[\x21-\x7e]{1,255}")


class TrustError(ValueError):
    """A trust change the caller asked for is refused; ``code`` is stable for scripts."""

    code = "trust_error"


class InvalidTrustValue(TrustError):
    code = "invalid_value"


class DuplicateIssuer(TrustError):
    code = "duplicate_issuer"


class DuplicateKeyVersion(TrustError):
    code = "duplicate_key_version"


class DuplicateApp(TrustError):
    code = "duplicate_app"


class UnknownIssuer(TrustError):
    code = "unknown_issuer"


class InvalidPublicKey(TrustError):
    code = "invalid_public_key"


def _storable(value: str) -> bool:
    """Whether both engines store and compare ``value`` alike.

    PostgreSQL refuses a NUL in text (SQLite keeps it), and no UTF-8 database holds a lone
    surrogate: a name with either can be neither registered nor looked up on every engine.
    """
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_exact_text(value: str, limit: int = _SHORT_TEXT) -> bool:
    # Issuers and audiences are compared byte for byte with the certificate's claims, so a
    # stray space would silently make every certificate fail: refuse it rather than strip.
    return bool(value) and value == value.strip() and len(value) <= limit and _storable(value)


def _exact_text(value: str, name: str, limit: int = _SHORT_TEXT) -> str:
    if not _is_exact_text(value, limit):
        raise InvalidTrustValue(
            f"{name} must be 1 to {limit} characters, without surrounding spaces or NUL"
        )
    return value


def app_lookup_name(app_id: str) -> str | None:
    """The name an authorized app ``app_id`` (any case) is stored under, or None if none is.

    Registration keeps ids lower-case and printable ASCII, so anything else (a NUL, another
    control character, a letter outside ASCII, more than 255 characters) names no app: it is
    answered as unknown without a query, alike on both engines.
    """
    name = app_id.lower()
    return name if _APP_ID.fullmatch(name) else None


def could_be_issuer(issuer: str) -> bool:
    """Whether ``issuer`` could name a registered health authority (see :func:`_exact_text`).

    Lookups of anything else are answered "no such authority" without a query.
    """
    return _is_exact_text(issuer)


def _jwks_url(value: str | None) -> str | None:
    if value is None:
        return None
    url = _exact_text(value, "jwks_url", _URL_TEXT)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidTrustValue("jwks_url must be an http or https URL")
    return url


def normalize_public_key_pem(pem: str) -> str:
    """The PKIX ``PUBLIC KEY`` PEM of a P-256 key, re-serialized; :class:`InvalidPublicKey`
    for anything else (another curve, RSA, a private key, a certificate, garbage)."""
    try:
        key = load_public_key(pem.strip().encode("ascii"))
    except (InvalidKey, UnicodeEncodeError) as error:
        raise InvalidPublicKey("public key must be a P-256 PUBLIC KEY in PEM form") from error
    return public_key_pem(key).decode("ascii")


def find_health_authority(session: Session, issuer: str) -> HealthAuthority | None:
    """The health authority whose certificates carry ``iss == issuer`` (exact match)."""
    if not could_be_issuer(issuer):
        return None
    return trust_store.health_authority_by_issuer(session, issuer)


def add_health_authority(
    session: Session,
    *,
    issuer: str,
    audience: str,
    name: str,
    jwks_url: str | None,
    now: datetime,
) -> HealthAuthority:
    """Trust a new certificate issuer; :class:`DuplicateIssuer` if ``issuer`` is known."""
    require_aware(now, "now")
    issuer = _exact_text(issuer, "issuer")
    audience = _exact_text(audience, "audience")
    name = _exact_text(name.strip(), "name")
    url = _jwks_url(jwks_url)
    if find_health_authority(session, issuer) is not None:
        raise DuplicateIssuer(f"a health authority with issuer {issuer!r} already exists")
    authority = HealthAuthority(
        issuer=issuer, audience=audience, name=name, jwks_url=url, created_at=now
    )
    return trust_store.add_health_authority(session, authority)


def add_health_authority_key(
    session: Session,
    authority: HealthAuthority,
    *,
    version: str,
    public_key_pem: str,
    valid_from: datetime,
    valid_until: datetime | None = None,
) -> HealthAuthorityKey:
    """Add a verification key named ``version`` (the certificates' ``kid``).

    The PEM is stored re-serialized, so equal keys always compare equal as text. Raises
    :class:`InvalidPublicKey`, :class:`DuplicateKeyVersion` (a version is never reused, even
    after revocation: a ``kid`` must keep naming one key) or :class:`InvalidTrustValue`.
    """
    require_aware(valid_from, "valid_from")
    if valid_until is not None:
        require_aware(valid_until, "valid_until")
        if valid_until <= valid_from:
            raise InvalidTrustValue("valid_until must be after valid_from")
    version = _exact_text(version, "key version (kid)")
    pem = normalize_public_key_pem(public_key_pem)
    if trust_store.has_key_version(session, authority.id, version):
        raise DuplicateKeyVersion(
            f"health authority {authority.issuer!r} already has a key version {version!r}"
        )
    key = HealthAuthorityKey(
        health_authority_id=authority.id,
        version=version,
        public_key_pem=pem,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return trust_store.add_health_authority_key(session, key)


def revoke_health_authority_key(session: Session, key: HealthAuthorityKey, now: datetime) -> None:
    """Stop trusting ``key`` from ``now`` on; an earlier end (or revocation) is kept."""
    require_aware(now, "now")
    ends = now if key.valid_until is None or key.valid_until > now else key.valid_until
    trust_store.end_key_validity(session, key, ends)


def _regions(regions: Sequence[str]) -> tuple[str, ...]:
    normalized = sorted({region.strip().upper() for region in regions})
    for region in normalized:
        if not _REGION.fullmatch(region):
            raise InvalidTrustValue(f"region {region!r} must be 1 to 20 letters, digits or hyphens")
    if len(",".join(normalized)) > _REGIONS_TEXT:
        raise InvalidTrustValue(f"regions must fit in {_REGIONS_TEXT} characters")
    return tuple(normalized)


def add_authorized_app(
    session: Session,
    *,
    app_id: str,
    health_authority_issuers: Sequence[str],
    regions: Sequence[str],
    bypass_verification: bool,
    now: datetime,
) -> AuthorizedApp:
    """Authorize an app to publish with certificates of the given issuers.

    ``app_id`` is stored lower-case (phones' ``healthAuthorityID`` is matched
    case-insensitively); regions are upper-cased, de-duplicated and sorted. Raises
    :class:`UnknownIssuer`, :class:`DuplicateApp` or :class:`InvalidTrustValue`.
    """
    require_aware(now, "now")
    if not _APP_ID.fullmatch(app_id):
        raise InvalidTrustValue("app id must be 1 to 255 printable ASCII characters, no spaces")
    normalized_id = app_id.lower()
    normalized_regions = _regions(regions)
    authorities: list[HealthAuthority] = []
    for issuer in dict.fromkeys(health_authority_issuers):
        authority = find_health_authority(session, issuer)
        if authority is None:
            raise UnknownIssuer(f"no health authority with issuer {issuer!r}")
        authorities.append(authority)
    if trust_store.has_authorized_app(session, normalized_id):
        raise DuplicateApp(f"app {normalized_id!r} is already authorized")
    app = AuthorizedApp(
        app_id=normalized_id,
        regions=",".join(normalized_regions),
        bypass_verification=bypass_verification,
        created_at=now,
    )
    return trust_store.add_authorized_app(session, app, (authority.id for authority in authorities))


@dataclass(frozen=True)
class AppConfig:
    """What publish needs to know about an authorized app, detached from the database."""

    id: int
    app_id: str
    regions: tuple[str, ...]
    bypass_verification: bool
    health_authority_ids: frozenset[int]


@dataclass(frozen=True)
class AuthorityConfig:
    """A health authority and its keys (version → key, valid from, valid until)."""

    id: int
    issuer: str
    audience: str
    keys: Mapping[str, tuple[EllipticCurvePublicKey, datetime, datetime | None]]

    def active_key(self, version: str, now: datetime) -> EllipticCurvePublicKey | None:
        """The key named ``version`` if ``valid_from < now < valid_until`` (reference §3.3)."""
        entry = self.keys.get(version)
        if entry is None:
            return None
        key, valid_from, valid_until = entry
        if valid_from < now and (valid_until is None or valid_until > now):
            return key
        return None


def load_app(session: Session, app_id: str) -> AppConfig | None:
    """The authorized app ``app_id`` (any case), or None."""
    name = app_lookup_name(app_id)
    app = None if name is None else trust_store.authorized_app(session, name)
    if app is None:
        return None
    return AppConfig(
        id=app.id,
        app_id=app.app_id,
        regions=tuple(region for region in app.regions.split(",") if region),
        bypass_verification=app.bypass_verification,
        health_authority_ids=trust_store.app_health_authority_ids(session, app.id),
    )


def load_authority(session: Session, issuer: str, now: datetime) -> AuthorityConfig | None:
    """The health authority with ``iss == issuer`` and its keys not yet ended at ``now``.

    Keys that start later are included, so a cached entry picks them up when they start.
    """
    authority = find_health_authority(session, issuer)
    if authority is None:
        return None
    rows = trust_store.unexpired_health_authority_keys(session, authority.id, now)
    keys: dict[str, tuple[EllipticCurvePublicKey, datetime, datetime | None]] = {}
    for row in rows:
        try:
            public_key = load_public_key(row.public_key_pem.encode("ascii"))
        except (InvalidKey, UnicodeEncodeError):
            # Rows are validated on insert; one damaged row must not lock out the others.
            _logger.error("health authority key %s is not a P-256 public key; ignored", row.id)
            continue
        keys[row.version] = (public_key, row.valid_from, row.valid_until)
    return AuthorityConfig(
        id=authority.id,
        issuer=authority.issuer,
        audience=authority.audience,
        keys=MappingProxyType(keys),
    )


#: Names kept per kind (apps, issuers); real deployments have a handful of each.
DEFAULT_MAX_CACHE_ENTRIES = 10_000


class TrustCache:
    """Per-process cache of apps and health authorities, misses included (reference: 5 min).

    Thread-safe. A change made with the admin CLI reaches every process within ``ttl``; a
    ``ttl`` of zero disables caching. Database errors propagate and are not cached.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        ttl: timedelta,
        *,
        max_entries: int = DEFAULT_MAX_CACHE_ENTRIES,
    ) -> None:
        self._session_factory = session_factory
        # Names come from requests (any healthAuthorityID, any iss) and misses are kept too:
        # the caches' bound is what stops a flood of made-up names.
        self._apps: TtlCache[str, AppConfig | None] = TtlCache(ttl, max_entries=max_entries)
        self._authorities: TtlCache[str, AuthorityConfig | None] = TtlCache(
            ttl, max_entries=max_entries
        )

    def app(self, app_id: str, now: datetime) -> AppConfig | None:
        """The authorized app ``app_id`` (case-insensitive), or None if there is none."""
        name = app_lookup_name(app_id)
        if name is None:
            return None  # no app can have this name: nothing to query, nothing to cache
        looked_up: str = name  # a closure does not keep mypy's narrowing of ``name``

        def load() -> AppConfig | None:
            with unit_of_work(self._session_factory) as session:
                return load_app(session, looked_up)

        return self._apps.get_or_load(name, now, load)

    def authority(self, issuer: str, now: datetime) -> AuthorityConfig | None:
        """The health authority whose ``iss`` is exactly ``issuer``, or None."""
        if not could_be_issuer(issuer):
            return None  # as for apps: an impossible name is neither queried nor cached

        def load() -> AuthorityConfig | None:
            with unit_of_work(self._session_factory) as session:
                return load_authority(session, issuer, now)

        return self._authorities.get_or_load(issuer, now, load)
