"""Scheduled jobs of the key server, as plain functions of a session factory and ``now``.

JWKS refresh (reference §3.5): a health authority that publishes its certificate keys as a
bare JSON array of JWKs at ``jwks_url`` has them mirrored here every few minutes. A ``kid``
seen for the first time is trusted from ``now``; a key no longer listed is revoked at
``now``. A revoked ``kid`` that is listed again stays revoked (a version always names one
key, and an operator's revocation must not be undone by a key set that still lists it);
the authority publishes the key again under a new ``kid`` if it wants it back. A listed
``kid`` whose key differs from the stored one is not replaced either: both are reported.

Each authority is fetched outside any transaction and updated in a unit of work of its
own, so one that cannot be reached, or serves garbage, changes nothing and does not stop
the others.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from sqlalchemy.orm import Session

from crypto.errors import InvalidKey
from crypto.signing import load_public_key, public_key_pem
from crypto.tokens import public_keys_from_jwk_set
from exposure.db import SessionFactory, unit_of_work
from keyserver.models import HealthAuthority
from keyserver.service.trust import add_health_authority_key, revoke_health_authority_key
from keyserver.store import trust as trust_store

__all__ = [
    "MAX_JWKS_BYTES",
    "AuthorityRefresh",
    "JwksError",
    "JwksRefreshReport",
    "http_fetcher",
    "parse_key_set",
    "refresh_jwks",
]

_logger = logging.getLogger(__name__)

#: A key set is a few JWKs of ~200 bytes; anything this large is not one.
MAX_JWKS_BYTES = 1_000_000
#: Longest kept error text per authority in a report.
_MAX_ERROR_TEXT = 300


class JwksError(Exception):
    """A key set could not be fetched or used (status, size, format)."""


def http_fetcher(timeout: timedelta) -> Callable[[str], bytes]:
    """A ``fetch`` for :func:`refresh_jwks`: HTTP GET with an overall deadline of ``timeout``.

    Redirects are followed (as Go's default client does); any final status but 200, a body
    over :data:`MAX_JWKS_BYTES` or a transport error raises.
    """
    seconds = timeout.total_seconds()
    if seconds <= 0:
        raise ValueError("timeout must be positive")

    def fetch(url: str) -> bytes:
        # httpx times each read; a server dripping bytes would never trip that alone.
        deadline = time.monotonic() + seconds
        with httpx.stream(
            "GET",
            url,
            timeout=seconds,
            follow_redirects=True,
            headers={"Accept": "application/json"},
        ) as response:
            if response.status_code != httpx.codes.OK:
                raise JwksError(f"GET {url} answered {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"key set larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise JwksError(f"GET {url} took longer than {seconds:g} s")
            return bytes(body)

    return fetch


@dataclass(frozen=True)
class AuthorityRefresh:
    """What one refresh did to one health authority's keys."""

    issuer: str
    inserted: int = 0
    revoked: int = 0
    unchanged: int = 0
    #: Listed again after revocation: left revoked.
    kept_revoked: int = 0
    #: Listed under a known kid with different key material: the stored key is kept.
    conflicting: int = 0
    #: Why nothing was changed (fetch, parse or database failure), or None.
    error: str | None = None


@dataclass(frozen=True)
class JwksRefreshReport:
    authorities: tuple[AuthorityRefresh, ...]

    @property
    def failed(self) -> int:
        return sum(1 for authority in self.authorities if authority.error is not None)

    def as_dict(self) -> dict[str, object]:
        """A JSON-able summary for logs and the CLI."""
        return {
            "authorities": [asdict(authority) for authority in self.authorities],
            "failed": self.failed,
        }


def parse_key_set(body: bytes) -> dict[str, EllipticCurvePublicKey]:
    """``{kid: key}`` of a bare JSON array of P-256 JWKs; :class:`JwksError` otherwise.

    An empty array is refused: an authority withdrawing every key at once is far more
    likely a broken deployment than intent, and revocations are never undone.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # includes UnicodeDecodeError
        raise JwksError("key set is not JSON") from error
    try:
        keys = public_keys_from_jwk_set(document)
    except InvalidKey as error:
        raise JwksError("key set is not a JSON array of P-256 JWKs with unique kids") from error
    if not keys:
        raise JwksError("key set is empty; keeping the current keys")
    return keys


def _same_key(stored_pem: str, key: EllipticCurvePublicKey) -> bool:
    try:
        stored = load_public_key(stored_pem.encode("ascii"))
    except (InvalidKey, UnicodeEncodeError):
        return False
    return stored.public_numbers() == key.public_numbers()


def _apply_key_set(
    session: Session,
    authority: HealthAuthority,
    listed: dict[str, EllipticCurvePublicKey],
    now: datetime,
) -> AuthorityRefresh:
    stored = {row.version: row for row in trust_store.health_authority_keys(session, authority.id)}
    inserted = unchanged = kept_revoked = conflicting = revoked = 0
    for kid, key in listed.items():
        row = stored.get(kid)
        if row is None:
            add_health_authority_key(
                session,
                authority,
                version=kid,
                public_key_pem=public_key_pem(key).decode("ascii"),
                valid_from=now,
            )
            inserted += 1
        elif row.valid_until is not None and row.valid_until <= now:
            _logger.warning(
                "jwks %s: kid %r is listed again but was revoked; it stays revoked",
                authority.issuer,
                kid,
            )
            kept_revoked += 1
        elif not _same_key(row.public_key_pem, key):
            _logger.warning(
                "jwks %s: kid %r now names another key; the stored key is kept",
                authority.issuer,
                kid,
            )
            conflicting += 1
        else:
            unchanged += 1
    for version, row in stored.items():
        if version not in listed and (row.valid_until is None or row.valid_until > now):
            revoke_health_authority_key(session, row, now)
            revoked += 1
    return AuthorityRefresh(
        issuer=authority.issuer,
        inserted=inserted,
        revoked=revoked,
        unchanged=unchanged,
        kept_revoked=kept_revoked,
        conflicting=conflicting,
    )


def _refresh_one(
    session_factory: SessionFactory,
    authority_id: int,
    issuer: str,
    url: str,
    fetch: Callable[[str], bytes],
    now: datetime,
) -> AuthorityRefresh:
    # Fetched before the transaction opens: a slow server must not hold a database lock.
    listed = parse_key_set(fetch(url))
    with unit_of_work(session_factory) as session:
        authority = trust_store.health_authority_by_id(session, authority_id)
        if authority is None:  # deleted since the list was read
            return AuthorityRefresh(issuer=issuer)
        return _apply_key_set(session, authority, listed, now)


def refresh_jwks(
    session_factory: SessionFactory, *, fetch: Callable[[str], bytes], now: datetime
) -> JwksRefreshReport:
    """Mirror the key sets of every health authority that has a ``jwks_url``.

    ``fetch`` returns the body at a URL (see :func:`http_fetcher`) and raises on failure.
    Failures are caught per authority, logged and reported; nothing is purged here.
    """
    with unit_of_work(session_factory) as session:
        rows = trust_store.health_authority_jwks_urls(session)
    targets = [(authority_id, issuer, url) for authority_id, issuer, url in rows if url]
    results: list[AuthorityRefresh] = []
    for authority_id, issuer, url in targets:
        try:
            result = _refresh_one(session_factory, authority_id, issuer, url, fetch, now)
        except Exception as error:  # one authority failing must not stop the others
            # One line: an unreachable key-set URL is an operator's problem, not a bug, and
            # it repeats every run until fixed.
            _logger.warning("jwks %s: refresh failed (%s)", issuer, type(error).__name__)
            text = f"{type(error).__name__}: {error}"[:_MAX_ERROR_TEXT]
            result = AuthorityRefresh(issuer=issuer, error=text)
        else:
            _logger.info(
                "jwks %s: %d new, %d revoked, %d unchanged",
                issuer,
                result.inserted,
                result.revoked,
                result.unchanged,
            )
        results.append(result)
    return JwksRefreshReport(authorities=tuple(results))
