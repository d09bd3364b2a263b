"""Key server administration: trusted health authorities, authorized apps, export configs.

``exposure admin health-authority add`` trusts a certificate issuer, with either a JWKS URL
that the ``jwks-refresh`` job mirrors or one public key given here. ``exposure admin app
add`` lets a GAEN app publish with certificates of listed issuers. Each command opens (and
migrates) the key server's database from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import IntegrityError

from exposure.cli.common import (
    build_settings,
    emit,
    load_settings,
    migrated_database,
    parse_duration,
)
from exposure.clock import utc_now
from exposure.db import SessionFactory, unit_of_work
from exposure.settings import ExposureSettings, Service
from keyserver.context import KeyserverContext
from keyserver.export import configs
from keyserver.export.api import index_url
from keyserver.export.configs import ExportConfigError
from keyserver.models import SignatureInfo
from keyserver.service import trust
from keyserver.settings import KeyserverSettings

health_authority_app = typer.Typer(
    help="Health authorities whose verification certificates the key server accepts.",
    no_args_is_help=True,
)
app_app = typer.Typer(help="GAEN apps allowed to publish keys.", no_args_is_help=True)

_PEM_MARKER = "-----BEGIN"


@dataclass(frozen=True)
class KeyserverRuntime:
    settings: ExposureSettings
    keyserver_settings: KeyserverSettings
    sessions: SessionFactory


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


@contextmanager
def keyserver_runtime() -> Iterator[KeyserverRuntime]:
    """The key server database (migrated) and settings, from the environment."""
    settings = load_settings()
    keyserver_settings = build_settings(KeyserverSettings)
    try:
        with migrated_database(settings, Service.KEYSERVER) as sessions:
            yield KeyserverRuntime(settings, keyserver_settings, sessions)
    except trust.TrustError as error:
        raise _fail(str(error)) from None
    except IntegrityError:
        # Only a concurrent change gets here: the services check for duplicates first.
        raise _fail("the change conflicts with a concurrent one; try again") from None


def _read_public_key(value: str) -> str:
    if _PEM_MARKER in value:
        return value
    try:
        return Path(value).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(f"cannot read public key file {value!r}: {error}") from None


@health_authority_app.command("add")
def add_health_authority(
    issuer: Annotated[str, typer.Option(help="The certificates' iss claim, exactly.")],
    audience: Annotated[str, typer.Option(help="The certificates' aud claim, exactly.")],
    name: Annotated[str, typer.Option(help="A label for people.")],
    jwks_url: Annotated[
        str | None,
        typer.Option(help="Where its keys are published (a bare JSON array of JWKs)."),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="One P-256 PUBLIC KEY: a PEM file, or the PEM text itself."),
    ] = None,
    kid: Annotated[str | None, typer.Option(help="The kid certificates name that key by.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Trust a certificate issuer, with a JWKS URL or one public key (and its kid)."""
    if (jwks_url is None) == (public_key is None):
        raise _fail("give exactly one of --jwks-url and --public-key")
    if (public_key is None) != (kid is None):
        raise _fail("--kid goes with --public-key (and only with it)")
    pem = _read_public_key(public_key) if public_key is not None else None
    with keyserver_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        now = utc_now()
        authority = trust.add_health_authority(
            session, issuer=issuer, audience=audience, name=name, jwks_url=jwks_url, now=now
        )
        data: dict[str, Any] = {
            "health_authority_id": authority.id,
            "issuer": authority.issuer,
            "audience": authority.audience,
        }
        if pem is not None and kid is not None:
            key = trust.add_health_authority_key(
                session, authority, version=kid, public_key_pem=pem, valid_from=now
            )
            data["key_id"] = key.id
            data["kid"] = key.version
        else:
            data["jwks_url"] = authority.jwks_url
    emit(data, as_json)


@app_app.command("add")
def add_app(
    app_id: Annotated[str, typer.Argument(help="The healthAuthorityID phones send.")],
    health_authority: Annotated[
        list[str] | None,
        typer.Option(help="Issuer whose certificates the app may use (repeatable)."),
    ] = None,
    region: Annotated[
        list[str] | None, typer.Option(help="Region its keys are tagged with (repeatable).")
    ] = None,
    bypass_verification: Annotated[
        bool,
        typer.Option(
            "--bypass-verification", help="Testing only: accept keys without a valid certificate."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Authorize an app to publish keys with certificates of the given health authorities."""
    with keyserver_runtime() as runtime, unit_of_work(runtime.sessions) as session:
        app = trust.add_authorized_app(
            session,
            app_id=app_id,
            health_authority_issuers=health_authority or [],
            regions=region or [],
            bypass_verification=bypass_verification,
            now=utc_now(),
        )
        config = trust.load_app(session, app.app_id)
    if config is None:  # pragma: no cover - just inserted in the same transaction
        raise _fail("the app vanished after it was added")
    emit(
        {
            "id": config.id,
            "app_id": config.app_id,
            "regions": list(config.regions),
            "health_authority_ids": sorted(config.health_authority_ids),
            "bypass_verification": config.bypass_verification,
        },
        as_json,
    )


export_config_app = typer.Typer(
    help="Export configurations (series of key files).", no_args_is_help=True
)


@contextmanager
def _export_errors() -> Iterator[None]:
    try:
        yield
    except ExportConfigError as error:
        raise _fail(str(error)) from None


def _signature_summary(info: SignatureInfo) -> dict[str, Any]:
    return {
        "export_key_id": info.key_id,
        "export_key_version": info.key_version,
        "export_public_key_pem": info.public_key_pem,
        "valid_until": info.valid_until.isoformat() if info.valid_until else None,
    }


@export_config_app.command("add")
def add_export_config(
    filename_root: Annotated[str, typer.Argument(help="Files go under <root>/ (e.g. v1).")],
    region: Annotated[str, typer.Option(help="The output region written into files.")],
    period: Annotated[str, typer.Option(help="Window length dividing 24 h (4h, 1d, ...).")] = "4h",
    input_region: Annotated[
        list[str] | None, typer.Option(help="Regions whose keys go in (default: --region).")
    ] = None,
    exclude_region: Annotated[list[str] | None, typer.Option(help="Regions kept out.")] = None,
    include_travelers: Annotated[bool, typer.Option(help="Add travelers' keys.")] = False,
    only_non_travelers: Annotated[bool, typer.Option(help="Leave travelers' keys out.")] = False,
    max_records: Annotated[int, typer.Option(help="Keys per file before splitting.")] = 500_000,
    signing_key: Annotated[
        list[str] | None,
        typer.Option(help="Export signing key id (from `signing-key add`) whose versions sign."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an export configuration; its first batch starts at the next window boundary."""
    with keyserver_runtime() as runtime, _export_errors():
        now = utc_now()
        with unit_of_work(runtime.sessions) as session:
            infos = [
                info
                for key_id in signing_key or []
                for info in configs.current_signature_infos(session, key_id, now)
            ]
            config = configs.create_export_config(
                session,
                filename_root=filename_root,
                period=parse_duration(period),
                output_region=region,
                valid_from=now,
                now=now,
                input_regions=input_region or (),
                exclude_regions=exclude_region or (),
                include_travelers=include_travelers,
                only_non_travelers=only_non_travelers,
                max_records=max_records,
                signature_info_ids=[info.id for info in infos],
            )
            data = {
                "id": config.id,
                "export_root": config.filename_root,
                "index_url": index_url(runtime.settings.base_url, config.filename_root),
                "period_seconds": config.period_seconds,
                "signature_info_ids": config.signature_info_ids,
            }
    emit(data, as_json)


def add_export_signing_key(key_id: str, version: str, as_json: bool) -> None:
    """Create a P-256 export signing key known to phones as ``key_id``/``version``."""
    with keyserver_runtime() as runtime, _export_errors():
        context = KeyserverContext.from_settings(
            runtime.keyserver_settings, runtime.settings.data_dir, runtime.sessions
        )
        with unit_of_work(runtime.sessions) as session:
            info = configs.add_signature_info(
                session, context.key_store, key_id=key_id, key_version=version, now=utc_now()
            )
            data = _signature_summary(info)
    emit(data, as_json)


def rotate_export_signing_key(
    key_id: str, version: str, old_valid_for: timedelta, as_json: bool
) -> None:
    """Add ``version`` of ``key_id``; the old versions keep signing for ``old_valid_for``."""
    with keyserver_runtime() as runtime, _export_errors():
        context = KeyserverContext.from_settings(
            runtime.keyserver_settings, runtime.settings.data_dir, runtime.sessions
        )
        now = utc_now()
        with unit_of_work(runtime.sessions) as session:
            info = configs.rotate_signature_info(
                session,
                context.key_store,
                key_id=key_id,
                new_key_version=version,
                old_valid_until=now + old_valid_for,
                now=now,
            )
            data = _signature_summary(info)
    emit(data, as_json)
