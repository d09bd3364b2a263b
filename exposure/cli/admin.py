"""``exposure admin ...``: realms, API keys, signing keys, and the embedded bootstrap."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from crypto.keystore import FileKeyStore
from crypto.signing import public_key_pem
from crypto.tokens import public_key_from_jwk
from exposure.api.v1 import PUBLISH_PATH
from exposure.cli.common import (
    build_settings,
    emit,
    load_settings,
    migrated_database,
    parse_duration,
)
from exposure.cli.keyserver_admin import add_export_signing_key, rotate_export_signing_key
from exposure.clock import utc_now
from exposure.db import SessionFactory, unit_of_work
from exposure.settings import ExposureSettings, Service
from keyserver.export import configs
from keyserver.export.api import index_url
from keyserver.service import trust
from verification.context import VerificationContext
from verification.errors import VerificationError
from verification.limits import (
    LONG_CODE_MAX_LENGTH,
    LONG_CODE_MAX_MINUTES,
    LONG_CODE_MIN_LENGTH,
    SHORT_CODE_MAX_LENGTH,
    SHORT_CODE_MAX_MINUTES,
    SHORT_CODE_MIN_LENGTH,
    SHORT_CODE_MIN_MINUTES,
)
from verification.models import Realm
from verification.service import realms, signing_keys
from verification.settings import VerificationSettings

admin_app = typer.Typer(
    help="Administration: realms, API keys, signing keys.", no_args_is_help=True
)
realm_app = typer.Typer(
    help="Verification realms (one per health authority).", no_args_is_help=True
)
apikey_app = typer.Typer(help="Verification API keys.", no_args_is_help=True)
signing_key_app = typer.Typer(help="Certificate signing keys.", no_args_is_help=True)
admin_app.add_typer(realm_app, name="realm")
admin_app.add_typer(apikey_app, name="apikey")
admin_app.add_typer(signing_key_app, name="signing-key")

ACTOR = "cli"
DEFAULT_REALM = "default"
#: The app id (``healthAuthorityID``) the embedded default registers, and its region.
DEFAULT_APP_ID = "exposure.default"
DEFAULT_REGION = "VN"
#: The embedded default's export series and the key id phones know its signing key by.
DEFAULT_EXPORT_ROOT = "v1"
DEFAULT_EXPORT_KEY_ID = "VN"


class KeyType(StrEnum):
    admin = "admin"
    device = "device"
    auditor = "auditor"


@dataclass(frozen=True)
class VerificationRuntime:
    settings: ExposureSettings
    sessions: SessionFactory
    context: VerificationContext


@contextmanager
def verification_runtime() -> Iterator[VerificationRuntime]:
    """The verification database (migrated) and context, from the environment."""
    settings = load_settings()
    verification_settings = build_settings(VerificationSettings)
    try:
        with migrated_database(settings, Service.VERIFICATION) as sessions:
            context = VerificationContext.from_settings(verification_settings, settings.data_dir)
            yield VerificationRuntime(settings, sessions, context)
    except VerificationError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(code=1) from None


@realm_app.command("create")
def create_realm(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    issuer: Annotated[str | None, typer.Option(help="Certificate iss claim.")] = None,
    audience: Annotated[str, typer.Option(help="Certificate aud claim.")] = realms.DEFAULT_AUDIENCE,
    allow_user_report: Annotated[bool, typer.Option(help="Allow user-report codes.")] = False,
    short_code_length: Annotated[
        int, typer.Option(help=f"Digits, {SHORT_CODE_MIN_LENGTH} to {SHORT_CODE_MAX_LENGTH}.")
    ] = 8,
    short_code_minutes: Annotated[
        int, typer.Option(help=f"Lifetime, {SHORT_CODE_MIN_MINUTES} to {SHORT_CODE_MAX_MINUTES}.")
    ] = 15,
    long_code_length: Annotated[
        int, typer.Option(help=f"Characters, {LONG_CODE_MIN_LENGTH} to {LONG_CODE_MAX_LENGTH}.")
    ] = 16,
    long_code_minutes: Annotated[
        int, typer.Option(help=f"Lifetime, up to {LONG_CODE_MAX_MINUTES}.")
    ] = 1440,
    certificate_lifetime: Annotated[int, typer.Option(help="Seconds, 60 to 3600.")] = 900,
    daily_issue_limit: Annotated[int, typer.Option(help="Codes per day.")] = 20_000,
    require_date: Annotated[bool, typer.Option(help="Codes need a symptom or test date.")] = True,
) -> None:
    """Create a realm; prints its id and its first admin and device API keys (shown once)."""
    policy = realms.RealmPolicy(
        short_code_length=short_code_length,
        short_code_minutes=short_code_minutes,
        long_code_length=long_code_length,
        long_code_minutes=long_code_minutes,
        allow_user_report=allow_user_report,
        require_date=require_date,
        certificate_issuer=issuer,
        certificate_audience=audience,
        certificate_lifetime_seconds=certificate_lifetime,
        daily_issue_limit=daily_issue_limit,
    )
    with verification_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        created = realms.create_realm(
            session, runtime.context, name=name, now=utc_now(), actor=ACTOR, policy=policy
        )
        data = _realm_summary(runtime.settings, created.realm.id, created.realm.name)
        data["admin_api_key"] = created.admin_key.plaintext
        data["device_api_key"] = created.device_key.plaintext
    emit(data, as_json)


@apikey_app.command("create")
def create_api_key(
    realm: Annotated[str, typer.Option(help="Realm name or id.")],
    key_type: Annotated[
        KeyType,
        typer.Option("--type", help="admin (labs), device (apps), auditor (/audit)."),
    ],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key; it is printed once and stored only as a keyed hash."""
    with verification_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        found = realms.find_realm(session, realm)
        created = realms.create_api_key(
            session,
            runtime.context,
            realm=found,
            kind=realms.ApiKeyKind(key_type.value),
            name=name or key_type.value,
            now=utc_now(),
            actor=ACTOR,
        )
        data = {
            "realm_id": found.id,
            "id": created.record.id,
            "type": key_type.value,
            "api_key": created.plaintext,
        }
    emit(data, as_json)


@apikey_app.command("disable")
def disable_api_key(
    api_key_id: Annotated[int, typer.Option("--id", help="The key's id (from create).")],
) -> None:
    """Disable an API key at once; requests with it get 401 from then on."""
    with verification_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        record = realms.disable_api_key(session, api_key_id=api_key_id, now=utc_now(), actor=ACTOR)
        typer.echo(f"disabled {record.kind} API key {record.id} ({record.preview}...)")


@signing_key_app.command("add")
def add_signing_key(
    key_id: Annotated[str, typer.Option(help="verification_key_id phones know (e.g. the MCC).")],
    version: Annotated[str, typer.Option(help="verification_key_version (e.g. v1).")] = "v1",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an export signing key; prints the public key to register with Apple and Google."""
    add_export_signing_key(key_id, version, as_json)


@signing_key_app.command("rotate")
def rotate_signing_key(
    realm: Annotated[
        str | None, typer.Option(help="Rotate this realm's certificate key (name or id).")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option(help="Rotate this export signing key (its key id).")
    ] = None,
    version: Annotated[str | None, typer.Option(help="The new export key version.")] = None,
    old_valid_for: Annotated[
        str, typer.Option(help="How long the old export key keeps signing (e.g. 7d).")
    ] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rotate a realm's certificate key (--realm) or an export signing key (--key-id).

    A certificate key signs after the activation delay and the old ones retire. A new export
    key version signs every file at once, beside the old one until --old-valid-for ends, so
    phones that know either public key keep verifying.
    """
    if (realm is None) == (key_id is None):
        typer.echo("error: give exactly one of --realm and --key-id", err=True)
        raise typer.Exit(code=1)
    if realm is None:
        if key_id is None or version is None:
            typer.echo("error: --key-id needs --version (the new version)", err=True)
            raise typer.Exit(code=1)
        rotate_export_signing_key(key_id, version, parse_duration(old_valid_for), as_json)
        return
    with verification_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        found = realms.find_realm(session, realm)
        key = signing_keys.rotate_certificate_key(
            session, runtime.context, found, now=utc_now(), actor=ACTOR
        )
        data = {"realm_id": found.id, "kid": key.kid, "active_at": key.active_at.isoformat()}
    emit(data, as_json)


def _realm_summary(settings: ExposureSettings, realm_id: int, name: str) -> dict[str, Any]:
    return {
        "realm": name,
        "realm_id": realm_id,
        "jwks_url": f"{settings.base_url}/jwks/{realm_id}",
        "verification_url": settings.base_url,
    }


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)


@admin_app.command("bootstrap")
def bootstrap(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Set up the embedded default once (realm ``default`` with an admin and a device key).

    Running it again prints the same keys: they are kept, readable by the owner only, in
    ``$EXPOSURE_DATA_DIR/secrets/bootstrap.json`` because a key cannot be shown twice
    otherwise. Production deployments create realms and keys explicitly instead.
    """
    with verification_runtime() as runtime:
        saved_path = runtime.settings.data_dir / "secrets" / "bootstrap.json"
        stored: dict[str, Any] = json.loads(saved_path.read_text()) if saved_path.exists() else {}
        saved = stored
        with unit_of_work(runtime.sessions) as session:
            realm = _find_optional(session, DEFAULT_REALM)
            if realm is None:
                created = realms.create_realm(
                    session, runtime.context, name=DEFAULT_REALM, now=utc_now(), actor=ACTOR
                )
                realm = created.realm
                saved = {
                    "realm_id": realm.id,
                    "admin_api_key": created.admin_key.plaintext,
                    "device_api_key": created.device_key.plaintext,
                }
            elif saved.get("realm_id") != realm.id:
                saved = {"realm_id": realm.id}
                for kind in realms.ApiKeyKind:
                    new_key = realms.create_api_key(
                        session,
                        runtime.context,
                        realm=realm,
                        kind=kind,
                        name=f"bootstrap {kind.value}",
                        now=utc_now(),
                        actor=ACTOR,
                    )
                    saved[f"{kind.value}_api_key"] = new_key.plaintext
            if "auditor_api_key" not in saved:
                # Installs bootstrapped before auditor keys existed get one now.
                saved = {
                    **saved,
                    "auditor_api_key": realms.create_api_key(
                        session,
                        runtime.context,
                        realm=realm,
                        kind=realms.ApiKeyKind.AUDITOR,
                        name="bootstrap auditor",
                        now=utc_now(),
                        actor=ACTOR,
                    ).plaintext,
                }
            if saved != stored:
                _write_private_json(saved_path, saved)
            data = _realm_summary(runtime.settings, realm.id, realm.name)
            data["admin_api_key"] = saved["admin_api_key"]
            data["device_api_key"] = saved["device_api_key"]
            data["auditor_api_key"] = saved["auditor_api_key"]
            base = runtime.settings.base_url
            data["audit_log_url"] = f"{base}/audit/log"
            data["audit_compliance_url"] = f"{base}/audit/compliance"
            data["audit_public_keys_url"] = f"{base}/audit/public-keys"
            trusted = TrustedRealm(
                issuer=realm.certificate_issuer,
                audience=realm.certificate_audience,
                jwks_url=data["jwks_url"],
                jwks=signing_keys.realm_jwks(session, realm, utc_now()),
            )
    data.update(_bootstrap_keyserver(runtime.settings, trusted))
    emit(data, as_json)


@dataclass(frozen=True)
class TrustedRealm:
    """What the key server needs to trust a verification realm's certificates."""

    issuer: str
    audience: str
    jwks_url: str
    jwks: list[dict[str, str]]


def _bootstrap_keyserver(settings: ExposureSettings, realm: TrustedRealm) -> dict[str, Any]:
    """Trust the default realm as a health authority and register the default app, once.

    The realm's current keys are copied in directly, so publishing works before the first
    JWKS refresh; the refresh job keeps them in step afterwards through ``jwks_url``.
    """
    with migrated_database(settings, Service.KEYSERVER) as sessions:
        now = utc_now()
        with unit_of_work(sessions) as session:
            authority = trust.find_health_authority(session, realm.issuer)
            if authority is None:
                authority = trust.add_health_authority(
                    session,
                    issuer=realm.issuer,
                    audience=realm.audience,
                    name=f"verification realm {DEFAULT_REALM}",
                    jwks_url=realm.jwks_url,
                    now=now,
                )
            for jwk in realm.jwks:
                # Keys already copied (or mirrored by the refresh job) stay as they are.
                with suppress(trust.DuplicateKeyVersion):
                    trust.add_health_authority_key(
                        session,
                        authority,
                        version=jwk["kid"],
                        public_key_pem=public_key_pem(public_key_from_jwk(jwk)).decode(),
                        valid_from=now,
                    )
            if trust.load_app(session, DEFAULT_APP_ID) is None:
                trust.add_authorized_app(
                    session,
                    app_id=DEFAULT_APP_ID,
                    health_authority_issuers=[realm.issuer],
                    regions=[DEFAULT_REGION],
                    bypass_verification=False,
                    now=now,
                )
        exports = _bootstrap_exports(settings, sessions, now)
    return {
        "health_authority_id": DEFAULT_APP_ID,
        "health_authority_issuer": realm.issuer,
        "publish_url": f"{settings.base_url}{PUBLISH_PATH}",
        **exports,
    }


def _bootstrap_exports(
    settings: ExposureSettings, sessions: SessionFactory, now: datetime
) -> dict[str, Any]:
    """A default export signing key and a config that uses it (4-hour windows), once."""
    key_store = FileKeyStore(settings.data_dir / "keys" / "keyserver")
    with unit_of_work(sessions) as session:
        try:
            infos = configs.current_signature_infos(session, DEFAULT_EXPORT_KEY_ID, now)
        except configs.UnknownSignatureInfo:
            infos = [
                configs.add_signature_info(
                    session, key_store, key_id=DEFAULT_EXPORT_KEY_ID, key_version="v1", now=now
                )
            ]
        config = configs.find_export_config(session, DEFAULT_EXPORT_ROOT)
        if config is None:
            config = configs.create_export_config(
                session,
                filename_root=DEFAULT_EXPORT_ROOT,
                period=timedelta(hours=4),
                output_region=DEFAULT_REGION,
                valid_from=now,
                now=now,
                signature_info_ids=[info.id for info in infos],
            )
        signer = infos[0]
        return {
            "export_root": config.filename_root,
            "index_url": index_url(settings.base_url, config.filename_root),
            "export_public_key_pem": signer.public_key_pem,
            "export_key_id": signer.key_id,
            "export_key_version": signer.key_version,
        }


def _find_optional(session: Session, name: str) -> Realm | None:
    try:
        return realms.find_realm(session, name)
    except VerificationError:
        return None
