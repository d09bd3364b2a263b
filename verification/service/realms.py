"""Realms and their API keys.

An API key is shown exactly once, when it is created; the database keeps its keyed hash and
a six-character preview, so a stolen dump cannot be replayed against the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from crypto.encoding import b64url_encode
from crypto.randomness import random_bytes
from exposure.api.verification import TestType
from verification import store
from verification.context import VerificationContext
from verification.errors import RealmNotFound, Unauthorized, VerificationError
from verification.models import ApiKey, Realm
from verification.service import audit
from verification.service.signing_keys import create_first_certificate_key

API_KEY_BYTES = 32
PREVIEW_LENGTH = 6
DEFAULT_AUDIENCE = "exposure-notifications-server"


class ApiKeyKind(StrEnum):
    ADMIN = "admin"
    DEVICE = "device"


class RealmExists(VerificationError):  # noqa: N818
    status = 409


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key: ``plaintext`` is never stored and never shown again."""

    record: ApiKey
    plaintext: str


@dataclass(frozen=True)
class NewRealm:
    realm: Realm
    admin_key: NewApiKey
    device_key: NewApiKey


def create_api_key(
    session: Session,
    context: VerificationContext,
    *,
    realm: Realm,
    kind: ApiKeyKind,
    name: str,
    now: datetime,
    actor: str,
) -> NewApiKey:
    plaintext = b64url_encode(random_bytes(API_KEY_BYTES))
    record = store.add_api_key(
        session,
        ApiKey(
            realm_id=realm.id,
            kind=kind.value,
            name=name,
            key_hmac=context.hasher.digest(plaintext),
            preview=plaintext[:PREVIEW_LENGTH],
            created_at=now,
        ),
    )
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action=f"created {kind.value} API key",
        target=f"api_key:{record.id}",
        diff=f"name={name} preview={record.preview}",
        now=now,
    )
    return NewApiKey(record=record, plaintext=plaintext)


def create_realm(
    session: Session,
    context: VerificationContext,
    *,
    name: str,
    now: datetime,
    actor: str,
    certificate_issuer: str | None = None,
    certificate_audience: str = DEFAULT_AUDIENCE,
    allow_user_report: bool = False,
) -> NewRealm:
    """Create a realm with its first certificate key and one admin and one device key."""
    if not name or len(name) > 100:
        raise ValueError("a realm name has 1 to 100 characters")
    if store.get_realm_by_name(session, name) is not None:
        raise RealmExists(f"realm {name!r} already exists")
    allowed = [TestType.CONFIRMED, TestType.LIKELY, TestType.NEGATIVE]
    if allow_user_report:
        allowed.append(TestType.USER_REPORT)
    realm = store.add_realm(
        session,
        Realm(
            name=name,
            short_code_length=8,
            short_code_minutes=15,
            long_code_length=16,
            long_code_minutes=24 * 60,
            allowed_test_types=",".join(allowed),
            require_date=True,
            certificate_issuer=certificate_issuer or f"exposure-verification/{name}",
            certificate_audience=certificate_audience,
            certificate_lifetime_seconds=900,
            daily_issue_limit=20_000,
            created_at=now,
        ),
    )
    audit.record(
        session,
        realm_id=realm.id,
        actor=actor,
        action="created realm",
        target=f"realm:{realm.id}",
        diff=f"name={name} issuer={realm.certificate_issuer}",
        now=now,
    )
    create_first_certificate_key(session, context, realm, now)
    admin_key = create_api_key(
        session, context, realm=realm, kind=ApiKeyKind.ADMIN, name="admin", now=now, actor=actor
    )
    device_key = create_api_key(
        session, context, realm=realm, kind=ApiKeyKind.DEVICE, name="device", now=now, actor=actor
    )
    return NewRealm(realm=realm, admin_key=admin_key, device_key=device_key)


def find_realm(session: Session, name_or_id: str) -> Realm:
    """A realm by numeric id or by name; raise :class:`RealmNotFound` otherwise."""
    realm = store.get_realm(session, int(name_or_id)) if name_or_id.isdigit() else None
    realm = realm or store.get_realm_by_name(session, name_or_id)
    if realm is None:
        raise RealmNotFound(f"no realm {name_or_id!r}")
    return realm


def authenticate(
    session: Session, context: VerificationContext, *, api_key: str, kind: ApiKeyKind
) -> tuple[ApiKey, Realm]:
    """The enabled key of ``kind`` that ``api_key`` is, and its realm; else Unauthorized."""
    if not api_key or len(api_key) > 256:
        raise Unauthorized("missing or invalid API key")
    record = store.find_api_key(session, context.hasher.candidates(api_key))
    if record is None or record.disabled_at is not None or record.kind != kind.value:
        raise Unauthorized("missing or invalid API key")
    realm = store.get_realm(session, record.realm_id)
    if realm is None:  # impossible with the foreign key; fail closed anyway
        raise Unauthorized("missing or invalid API key")
    return record, realm
