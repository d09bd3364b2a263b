"""``exposure admin ...``: realms, API keys, signing keys, and the embedded bootstrap.

Every command opens only the service it changes (a verification admin needs no key-server
database and the other way round), prints what the next step needs, and takes ``--json``.
Creating, disabling and rotating are recorded in the verification audit entries.
"""

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

from crypto.signing import public_key_pem
from crypto.tokens import public_key_from_jwk
from exposure.api.v1 import PUBLISH_PATH
from exposure.cli.common import emit, emit_rows, open_services, parse_duration, utc_now
from exposure.cli.failures import fail
from exposure.cli.keyserver_admin import (
    add_export_signing_key,
    export_signing_key_rows,
    retire_export_signing_key,
    rotate_export_signing_key,
)
from exposure.compose import Deployment
from exposure.db import unit_of_work
from exposure.settings import ExposureSettings, Service
from keyserver.export import configs
from keyserver.export.api import index_url
from keyserver.service import trust
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
from verification.models import ApiKey, Realm
from verification.service import realms, signing_keys

admin_app = typer.Typer(
    help="Administration: realms, API keys, signing keys, keys and KEKs, auditors.",
    no_args_is_help=True,
)
realm_app = typer.Typer(
    help="Verification realms (one per health authority).", no_args_is_help=True
)
apikey_app = typer.Typer(help="Verification API keys.", no_args_is_help=True)
signing_key_app = typer.Typer(
    help="Signing keys: realms' certificate keys and the key server's export keys.",
    no_args_is_help=True,
)
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

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class KeyType(StrEnum):
    admin = "admin"
    device = "device"
    auditor = "auditor"


@contextmanager
def verification() -> Iterator[tuple[Deployment, Session]]:
    """The verification service opened from the environment and a session in a unit of
    work (committed when the block ends); its refusals as one line each."""
    try:
        with (
            open_services([Service.VERIFICATION]) as deployment,
            unit_of_work(deployment.verification.session_factory) as session,
        ):
            yield deployment, session
    except VerificationError as error:
        fail(error.message)


def _realm_facts(settings: ExposureSettings, realm: Realm) -> dict[str, Any]:
    """What the next steps need: the key server trusts the realm by issuer and JWKS URL."""
    return {
        "realm": realm.name,
        "realm_id": realm.id,
        "issuer": realm.certificate_issuer,
        "audience": realm.certificate_audience,
        "jwks_url": f"{settings.base_url}/jwks/{realm.id}",
        "verification_url": settings.base_url,
    }


def _trust_command(facts: dict[str, Any]) -> str:
    return (
        f"exposure admin health-authority add --issuer '{facts['issuer']}' "
        f"--audience '{facts['audience']}' --name '{facts['realm']}' "
        f"--jwks-url '{facts['jwks_url']}'"
    )


# ---- realms --------------------------------------------------------------------------


@realm_app.command("create")
def create_realm(
    name: str,
    as_json: JsonOption = False,
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
    """Create a realm; prints its id, issuer and JWKS URL (what the key server needs) and its
    first admin and device API keys (shown once)."""
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
    with verification() as (deployment, session):
        bundle = deployment.verification
        created = realms.create_realm(
            session, bundle.context, name=name, now=utc_now(), actor=ACTOR, policy=policy
        )
        data = _realm_facts(deployment.settings.base, created.realm)
    data["admin_api_key"] = created.admin_key.plaintext
    data["admin_api_key_id"] = created.admin_key.record.id
    data["device_api_key"] = created.device_key.plaintext
    data["device_api_key_id"] = created.device_key.record.id
    data["next_step"] = f"on the key server: {_trust_command(data)}"
    emit(data, as_json)


def _realm_row(settings: ExposureSettings, realm: Realm) -> dict[str, Any]:
    return {
        **_realm_facts(settings, realm),
        "created_at": realm.created_at,
        "disabled_at": realm.disabled_at,
    }


@realm_app.command("list")
def list_realms(as_json: JsonOption = False) -> None:
    """Every realm: id, name, issuer, JWKS URL, whether disabled."""
    with (
        open_services([Service.VERIFICATION]) as deployment,
        unit_of_work(deployment.verification.session_factory) as session,
    ):
        rows = [_realm_row(deployment.settings.base, r) for r in realms.list_realms(session)]
    emit_rows(rows, ["realm_id", "realm", "issuer", "jwks_url", "disabled_at"], as_json)


@realm_app.command("show")
def show_realm(
    realm: Annotated[str, typer.Argument(help="Realm name or id.")], as_json: JsonOption = False
) -> None:
    """One realm's policy, identity and signing keys."""
    with verification() as (deployment, session):
        found = realms.find_realm(session, realm)
        data = _realm_row(deployment.settings.base, found)
        data.update(
            {
                "short_code_length": found.short_code_length,
                "short_code_minutes": found.short_code_minutes,
                "long_code_length": found.long_code_length,
                "long_code_minutes": found.long_code_minutes,
                "allowed_test_types": found.allowed_test_types,
                "require_date": found.require_date,
                "certificate_lifetime_seconds": found.certificate_lifetime_seconds,
                "daily_issue_limit": found.daily_issue_limit,
                "signing_keys": [
                    key["kid"] for key in signing_keys.realm_jwks(session, found, utc_now())
                ],
                "api_keys": len(realms.list_api_keys(session, realm_id=found.id)),
            }
        )
    emit(data, as_json)


@realm_app.command("disable")
def disable_realm(realm: Annotated[str, typer.Argument(help="Realm name or id.")]) -> None:
    """Stop every API key of a realm (within the cache TTL); its JWKS stays published."""
    with verification() as (_deployment, session):
        found = realms.find_realm(session, realm)
        changed = realms.disable_realm(session, found, now=utc_now(), actor=ACTOR)
        name, realm_id = found.name, found.id
    state = "disabled" if changed else "was already disabled"
    typer.echo(f"realm {name} ({realm_id}) {state}")


# ---- API keys ------------------------------------------------------------------------


def _api_key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "realm_id": key.realm_id,
        "type": key.kind,
        "name": key.name,
        "preview": f"{key.preview}...",
        "created_at": key.created_at,
        "disabled_at": key.disabled_at,
    }


@apikey_app.command("create")
def create_api_key(
    realm: Annotated[str, typer.Option(help="Realm name or id.")],
    key_type: Annotated[
        KeyType,
        typer.Option("--type", help="admin (labs), device (apps), auditor (/audit)."),
    ],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an API key; it is printed once and stored only as a keyed hash."""
    with verification() as (deployment, session):
        bundle = deployment.verification
        found = realms.find_realm(session, realm)
        created = realms.create_api_key(
            session,
            bundle.context,
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


@apikey_app.command("list")
def list_api_keys(
    realm: Annotated[str | None, typer.Option(help="Only this realm (name or id).")] = None,
    as_json: JsonOption = False,
) -> None:
    """API keys by id, with their realm, type, name and first characters (never the key)."""
    with verification() as (_deployment, session):
        realm_id = realms.find_realm(session, realm).id if realm is not None else None
        rows = [_api_key_row(k) for k in realms.list_api_keys(session, realm_id=realm_id)]
    columns = ["id", "realm_id", "type", "name", "preview", "created_at", "disabled_at"]
    emit_rows(rows, columns, as_json)


@apikey_app.command("show")
def show_api_key(
    api_key_id: Annotated[int, typer.Option("--id", help="The key's id (from create or list).")],
    as_json: JsonOption = False,
) -> None:
    """One API key's record (never the key)."""
    with verification() as (_deployment, session):
        data = _api_key_row(realms.get_api_key(session, api_key_id))
    emit(data, as_json)


@apikey_app.command("disable")
def disable_api_key(
    api_key_id: Annotated[int, typer.Option("--id", help="The key's id (from create or list).")],
) -> None:
    """Disable an API key at once; requests with it get 401 from then on."""
    with verification() as (_deployment, session):
        record = realms.disable_api_key(session, api_key_id=api_key_id, now=utc_now(), actor=ACTOR)
        line = f"disabled {record.kind} API key {record.id} ({record.preview}...)"
    typer.echo(line)


# ---- signing keys --------------------------------------------------------------------


@signing_key_app.command("add")
def add_signing_key(
    key_id: Annotated[str, typer.Option(help="verification_key_id phones know (e.g. the MCC).")],
    version: Annotated[str, typer.Option(help="verification_key_version (e.g. v1).")] = "v1",
    as_json: JsonOption = False,
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
    as_json: JsonOption = False,
) -> None:
    """Rotate a realm's certificate key (--realm) or an export signing key (--key-id).

    A certificate key signs after the activation delay and the old ones retire. A new export
    key version signs every file at once, beside the old one until --old-valid-for ends, so
    phones that know either public key keep verifying.
    """
    if (realm is None) == (key_id is None):
        fail("give exactly one of --realm and --key-id", 2)
    if realm is None:
        if key_id is None or version is None:
            fail("--key-id needs --version (the new version)", 2)
        rotate_export_signing_key(key_id, version, parse_duration(old_valid_for), as_json)
        return
    with verification() as (deployment, session):
        bundle = deployment.verification
        found = realms.find_realm(session, realm)
        key = signing_keys.rotate_certificate_key(
            session, bundle.context, found, now=utc_now(), actor=ACTOR
        )
        data = {
            "realm_id": found.id,
            "kid": key.kid,
            "active_at": key.active_at.isoformat(),
            "jwks_url": f"{deployment.settings.base.base_url}/jwks/{found.id}",
        }
    emit(data, as_json)


@signing_key_app.command("list")
def list_signing_keys(
    realm: Annotated[
        str | None, typer.Option(help="Only this realm's certificate keys (name or id).")
    ] = None,
    export: Annotated[bool, typer.Option("--export", help="Only export signing keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Signing keys of the configured services: realms' certificate and token keys
    (verification) and export signing keys (key server). Public facts only."""
    rows: list[dict[str, Any]] = []
    with open_services() as deployment:
        if Service.VERIFICATION in deployment.bundles and not export:
            rows.extend(_certificate_key_rows(deployment, realm))
        if Service.KEYSERVER in deployment.bundles and realm is None:
            rows.extend(export_signing_key_rows(deployment))
    columns = ["service", "realm_id", "key_id", "version", "active_at", "retired_at"]
    emit_rows(rows, columns, as_json)


def _certificate_key_rows(deployment: Deployment, realm: str | None) -> list[dict[str, Any]]:
    bundle = deployment.verification
    try:
        with unit_of_work(bundle.session_factory) as session:
            realm_id = realms.find_realm(session, realm).id if realm is not None else None
            keys = signing_keys.list_signing_keys(session, realm_id=realm_id)
            return [
                {
                    "service": "verification",
                    "purpose": key.purpose,
                    "realm_id": key.realm_id,
                    "key_id": key.kid,
                    "version": "-",
                    "active_at": key.active_at,
                    "retired_at": key.retired_at,
                    "public_key_pem": key.public_key_pem,
                }
                for key in keys
            ]
    except VerificationError as error:
        fail(error.message)


@signing_key_app.command("retire")
def retire_signing_key(
    key_id: Annotated[str, typer.Option(help="The export signing key's id.")],
    version: Annotated[str, typer.Option(help="The version that stops signing.")],
    after: Annotated[str, typer.Option(help="Stop signing after this long (0s: now).")] = "0s",
) -> None:
    """Stop an export signing key version from signing new files (files keep signatures)."""
    retire_export_signing_key(key_id, version, parse_duration(after))


# ---- the embedded bootstrap ----------------------------------------------------------


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(data, handle)


@admin_app.command("bootstrap")
def bootstrap(as_json: JsonOption = False) -> None:
    """Set up the embedded default once (realm ``default`` with admin, device and auditor
    keys, the key server trusting it, an app and an export series).

    Running it again prints the same keys: they are kept, readable by the owner only, in
    ``$EXPOSURE_DATA_DIR/secrets/bootstrap.json`` because a key cannot be shown twice
    otherwise. Production deployments create realms and keys explicitly instead.
    """
    with open_services([Service.VERIFICATION, Service.KEYSERVER]) as deployment:
        data, trusted = _bootstrap_verification(deployment)
        data.update(_bootstrap_keyserver(deployment, trusted))
    emit(data, as_json)


def _bootstrap_verification(deployment: Deployment) -> tuple[dict[str, Any], TrustedRealm]:
    bundle = deployment.verification
    settings = deployment.settings.base
    saved_path = settings.data_dir / "secrets" / "bootstrap.json"
    stored: dict[str, Any] = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    saved = stored
    now = utc_now()
    with unit_of_work(bundle.session_factory) as session:
        realm = _find_optional(session, DEFAULT_REALM)
        if realm is None:
            created = realms.create_realm(
                session, bundle.context, name=DEFAULT_REALM, now=now, actor=ACTOR
            )
            realm = created.realm
            saved = {
                "realm_id": realm.id,
                "admin_api_key": created.admin_key.plaintext,
                "device_api_key": created.device_key.plaintext,
            }
        elif saved.get("realm_id") != realm.id:
            saved = {"realm_id": realm.id}
            for kind in (realms.ApiKeyKind.ADMIN, realms.ApiKeyKind.DEVICE):
                saved[f"{kind.value}_api_key"] = realms.create_api_key(
                    session,
                    bundle.context,
                    realm=realm,
                    kind=kind,
                    name=f"bootstrap {kind.value}",
                    now=now,
                    actor=ACTOR,
                ).plaintext
        if "auditor_api_key" not in saved:
            saved = {
                **saved,
                "auditor_api_key": realms.create_api_key(
                    session,
                    bundle.context,
                    realm=realm,
                    kind=realms.ApiKeyKind.AUDITOR,
                    name="bootstrap auditor",
                    now=now,
                    actor=ACTOR,
                ).plaintext,
            }
        if saved != stored:
            _write_private_json(saved_path, saved)
        data = _realm_facts(settings, realm)
        data["admin_api_key"] = saved["admin_api_key"]
        data["device_api_key"] = saved["device_api_key"]
        data["auditor_api_key"] = saved["auditor_api_key"]
        base = settings.base_url
        data["audit_log_url"] = f"{base}/audit/log"
        data["audit_compliance_url"] = f"{base}/audit/compliance"
        data["audit_public_keys_url"] = f"{base}/audit/public-keys"
        trusted = TrustedRealm(
            issuer=realm.certificate_issuer,
            audience=realm.certificate_audience,
            jwks_url=data["jwks_url"],
            jwks=signing_keys.realm_jwks(session, realm, now),
        )
    return data, trusted


@dataclass(frozen=True)
class TrustedRealm:
    """What the key server needs to trust a verification realm's certificates."""

    issuer: str
    audience: str
    jwks_url: str
    jwks: list[dict[str, str]]


def _bootstrap_keyserver(deployment: Deployment, realm: TrustedRealm) -> dict[str, Any]:
    """Trust the default realm as a health authority and register the default app, once.

    The realm's current keys are copied in directly, so publishing works before the first
    JWKS refresh; the refresh job keeps them in step afterwards through ``jwks_url``.
    """
    bundle = deployment.keyserver
    settings = deployment.settings.base
    now = utc_now()
    with unit_of_work(bundle.session_factory) as session:
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
    exports = _bootstrap_exports(deployment, now)
    return {
        "health_authority_id": DEFAULT_APP_ID,
        "health_authority_issuer": realm.issuer,
        "publish_url": f"{settings.base_url}{PUBLISH_PATH}",
        **exports,
    }


def _bootstrap_exports(deployment: Deployment, now: datetime) -> dict[str, Any]:
    """A default export signing key and a config that uses it (4-hour windows), once."""
    bundle = deployment.keyserver
    with unit_of_work(bundle.session_factory) as session:
        try:
            infos = configs.current_signature_infos(session, DEFAULT_EXPORT_KEY_ID, now)
        except configs.UnknownSignatureInfo:
            infos = [
                configs.add_signature_info(
                    session, bundle.keys, key_id=DEFAULT_EXPORT_KEY_ID, key_version="v1", now=now
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
            "export_region": config.output_region,
            "index_url": index_url(deployment.settings.base.base_url, config.filename_root),
            "export_public_key_pem": signer.public_key_pem,
            "export_key_id": signer.key_id,
            "export_key_version": signer.key_version,
        }


def _find_optional(session: Session, name: str) -> Realm | None:
    try:
        return realms.find_realm(session, name)
    except VerificationError:
        return None
