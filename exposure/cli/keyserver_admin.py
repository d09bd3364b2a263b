"""Key server administration: trusted health authorities, authorized apps, export
configurations and export signing keys.

``exposure admin health-authority add`` trusts a certificate issuer, with either a JWKS URL
that the ``jwks-refresh`` job mirrors or one public key given here; ``exposure admin app
add`` lets a GAEN app publish with certificates of listed issuers; ``export-config`` and
``signing-key`` describe the files phones download. Each has list, show and remove (or
disable) with ``--json``. Only the key server's database is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exposure.cli.common import emit, emit_rows, open_services, parse_duration, utc_now
from exposure.cli.failures import fail
from exposure.compose import Deployment
from exposure.db import unit_of_work
from exposure.settings import Service
from keyserver.export import configs
from keyserver.export.api import index_url
from keyserver.export.configs import ExportConfigError
from keyserver.importer.sources import ImportSourceError, find_import_source
from keyserver.models import SignatureInfo
from keyserver.service import administration, trust

health_authority_app = typer.Typer(
    help="Health authorities whose verification certificates the key server accepts.",
    no_args_is_help=True,
)
app_app = typer.Typer(help="GAEN apps allowed to publish keys.", no_args_is_help=True)
export_config_app = typer.Typer(
    help="Export configurations (series of key files).", no_args_is_help=True
)

_PEM_MARKER = "-----BEGIN"
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@contextmanager
def keyserver() -> Iterator[Deployment]:
    """The key server opened from the environment; its refusals as one line each."""
    try:
        with open_services([Service.KEYSERVER]) as deployment:
            yield deployment
    except (trust.TrustError, ExportConfigError, ImportSourceError) as error:
        fail(str(error))
    except IntegrityError:
        # Only a concurrent change gets here: the services check for duplicates first.
        fail("the change conflicts with a concurrent one; try again")


@contextmanager
def keyserver_session() -> Iterator[tuple[Deployment, Session]]:
    """The key server opened and a session in a unit of work (committed when the block
    ends); its refusals as one line each."""
    with keyserver() as deployment, unit_of_work(deployment.keyserver.session_factory) as session:
        yield deployment, session


def _read_public_key(value: str) -> str:
    if _PEM_MARKER in value:
        return value
    try:
        return Path(value).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read public key file {value!r}: {error}", 2)


# ---- health authorities --------------------------------------------------------------


def _authority_facts(view: administration.AuthorityView) -> dict[str, Any]:
    authority = view.authority
    return {
        "health_authority_id": authority.id,
        "issuer": authority.issuer,
        "audience": authority.audience,
        "name": authority.name,
        "jwks_url": authority.jwks_url,
        "keys": [
            {
                "kid": key.version,
                "valid_from": key.valid_from.isoformat(),
                "valid_until": key.valid_until.isoformat() if key.valid_until else None,
            }
            for key in view.keys
        ],
    }


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
    as_json: JsonOption = False,
) -> None:
    """Trust a certificate issuer, with a JWKS URL or one public key (and its kid)."""
    if (jwks_url is None) == (public_key is None):
        fail("give exactly one of --jwks-url and --public-key", 2)
    if (public_key is None) != (kid is None):
        fail("--kid goes with --public-key (and only with it)", 2)
    pem = _read_public_key(public_key) if public_key is not None else None
    with keyserver_session() as (_deployment, session):
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
            data["next_step"] = "exposure jobs run jwks-refresh (serve runs it every 2 minutes)"
    emit(data, as_json)


@health_authority_app.command("list")
def list_health_authorities(as_json: JsonOption = False) -> None:
    """Every trusted issuer with its keys."""
    with keyserver_session() as (_deployment, session):
        rows = [_authority_facts(view) for view in administration.list_authorities(session)]
    if not as_json:
        for row in rows:
            row["kids"] = [key["kid"] for key in row["keys"]]
    emit_rows(
        rows, ["health_authority_id", "issuer", "audience", "name", "jwks_url", "kids"], as_json
    )


@health_authority_app.command("show")
def show_health_authority(
    issuer: Annotated[str, typer.Argument(help="The issuer, or the authority's id.")],
    as_json: JsonOption = False,
) -> None:
    """One trusted issuer and every key of it (revoked ones with their end)."""
    with keyserver_session() as (_deployment, session):
        data = _authority_facts(administration.find_authority(session, issuer))
    emit(data, as_json)


@health_authority_app.command("revoke-key")
def revoke_health_authority_key(
    issuer: Annotated[str, typer.Option(help="The issuer, or the authority's id.")],
    kid: Annotated[str, typer.Option(help="The key version (kid) to stop trusting.")],
) -> None:
    """Stop trusting one key of an issuer now (certificates it signed are refused)."""
    with keyserver_session() as (_deployment, session):
        view = administration.find_authority(session, issuer)
        administration.revoke_authority_key(view, kid, utc_now())
    typer.echo(f"revoked key {kid} of {issuer} (within the cache duration on running servers)")


@health_authority_app.command("remove")
def remove_health_authority(
    issuer: Annotated[str, typer.Argument(help="The issuer, or the authority's id.")],
) -> None:
    """Stop trusting an issuer: it and its keys are deleted; published keys stay."""
    with keyserver_session() as (_deployment, session):
        view = administration.find_authority(session, issuer)
        administration.remove_authority(session, view)
    typer.echo(f"removed health authority {issuer} and its {len(view.keys)} key(s)")


# ---- authorized apps -----------------------------------------------------------------


def _app_facts(config: trust.AppConfig, issuers: list[str]) -> dict[str, Any]:
    return {
        "id": config.id,
        "app_id": config.app_id,
        "regions": list(config.regions),
        "health_authorities": issuers,
        "bypass_verification": config.bypass_verification,
    }


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
    as_json: JsonOption = False,
) -> None:
    """Authorize an app to publish keys with certificates of the given health authorities."""
    with keyserver_session() as (deployment, session):
        app = trust.add_authorized_app(
            session,
            app_id=app_id,
            health_authority_issuers=health_authority or [],
            regions=region or [],
            bypass_verification=bypass_verification,
            now=utc_now(),
        )
        config, issuers = administration.find_app(session, app.app_id)
        data = _app_facts(config, issuers)
        # Kept for scripts written against earlier versions.
        data["health_authority_ids"] = sorted(config.health_authority_ids)
        data["publish_url"] = f"{deployment.settings.base.base_url}/v1/publish"
    emit(data, as_json)


@app_app.command("list")
def list_apps(as_json: JsonOption = False) -> None:
    """Every authorized app with its regions and the issuers it may publish with."""
    with keyserver_session() as (_deployment, session):
        rows = [
            _app_facts(config, issuers) for config, issuers in administration.list_apps(session)
        ]
    columns = ["id", "app_id", "regions", "health_authorities", "bypass_verification"]
    emit_rows(rows, columns, as_json)


@app_app.command("show")
def show_app(
    app_id: Annotated[str, typer.Argument(help="The app id (healthAuthorityID).")],
    as_json: JsonOption = False,
) -> None:
    """One authorized app."""
    with keyserver_session() as (_deployment, session):
        data = _app_facts(*administration.find_app(session, app_id))
    emit(data, as_json)


@app_app.command("remove")
def remove_app(
    app_id: Annotated[str, typer.Argument(help="The app id (healthAuthorityID).")],
) -> None:
    """The app may no longer publish; keys it published stay until their deadline."""
    with keyserver_session() as (_deployment, session):
        administration.remove_app(session, app_id)
    typer.echo(f"removed app {app_id.lower()} (within the cache duration on running servers)")


# ---- export configurations -----------------------------------------------------------


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
    include_imported: Annotated[
        bool, typer.Option(help="Re-export keys imported from peers too, signed by this server.")
    ] = False,
    import_source: Annotated[
        list[str] | None,
        typer.Option(help="Only keys of this import source (repeatable; default: every one)."),
    ] = None,
    import_region: Annotated[
        list[str] | None,
        typer.Option(help="Regions of imported keys that go in (default: the input regions)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an export configuration; its first batch starts at the next window boundary."""
    with keyserver() as deployment:
        now = utc_now()
        with unit_of_work(deployment.keyserver.session_factory) as session:
            infos = [
                info
                for key_id in signing_key or []
                for info in configs.current_signature_infos(session, key_id, now)
            ]
            source_ids = [find_import_source(session, name).id for name in import_source or []]
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
                include_imported=include_imported,
                import_source_ids=source_ids,
                import_regions=import_region or (),
            )
            data = {
                "id": config.id,
                "export_root": config.filename_root,
                "index_url": index_url(deployment.settings.base.base_url, config.filename_root),
                "period_seconds": config.period_seconds,
                "signature_info_ids": config.signature_info_ids,
                "include_imported": config.include_imported,
            }
    emit(data, as_json)


@export_config_app.command("list")
def list_export_configs(as_json: JsonOption = False) -> None:
    """Every export configuration."""
    with keyserver_session() as (_deployment, session):
        rows = [
            administration.export_config_facts(config)
            for config in administration.list_export_configs(session)
        ]
    columns = ["id", "export_root", "period_seconds", "output_region", "valid_until"]
    emit_rows(rows, columns, as_json)


@export_config_app.command("show")
def show_export_config(
    root: Annotated[str, typer.Argument(help="The export root (or the config's id).")],
    as_json: JsonOption = False,
) -> None:
    """One export configuration, with the URL of its index.txt."""
    with keyserver_session() as (deployment, session):
        config = administration.find_export_config(session, root)
        data = administration.export_config_facts(config)
        data["index_url"] = index_url(deployment.settings.base.base_url, config.filename_root)
    emit(data, as_json)


@export_config_app.command("imports")
def set_export_config_imports(
    root: Annotated[str, typer.Argument(help="The export root (or the config's id).")],
    include_imported: Annotated[
        bool,
        typer.Option(
            "--include-imported/--no-imported", help="Re-export keys imported from peers, or not."
        ),
    ],
    import_source: Annotated[
        list[str] | None,
        typer.Option(help="Only keys of this import source (repeatable; default: every one)."),
    ] = None,
    import_region: Annotated[
        list[str] | None,
        typer.Option(help="Regions of imported keys that go in (default: the input regions)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change which imported keys a series re-exports, from its next window on."""
    with keyserver_session() as (_deployment, session):
        config = administration.find_export_config(session, root)
        source_ids = [find_import_source(session, name).id for name in import_source or []]
        configs.set_imports(
            session,
            config,
            include_imported=include_imported,
            import_source_ids=source_ids,
            import_regions=import_region or (),
        )
        data = administration.export_config_facts(config)
    emit(data, as_json)


@export_config_app.command("disable")
def disable_export_config(
    root: Annotated[str, typer.Argument(help="The export root (or the config's id).")],
) -> None:
    """Make no new windows from now; files already written stay listed until their deadline."""
    with keyserver_session() as (_deployment, session):
        config = administration.find_export_config(session, root)
        changed = administration.disable_export_config(config, utc_now())
    typer.echo(f"export configuration {root} {'disabled' if changed else 'had already ended'}")


# ---- export signing keys (``exposure admin signing-key ...``) ------------------------


def _signature_facts(info: SignatureInfo) -> dict[str, Any]:
    return {
        "export_key_id": info.key_id,
        "export_key_version": info.key_version,
        "export_public_key_pem": info.public_key_pem,
        "valid_until": info.valid_until.isoformat() if info.valid_until else None,
    }


def add_export_signing_key(key_id: str, version: str, as_json: bool) -> None:
    """Create a P-256 export signing key known to phones as ``key_id``/``version``."""
    with keyserver_session() as (deployment, session):
        info = configs.add_signature_info(
            session, deployment.keyserver.keys, key_id=key_id, key_version=version, now=utc_now()
        )
        data = _signature_facts(info)
    data["next_step"] = (
        "register the public key with Apple and Google under this key id and version, then "
        f"exposure admin export-config add <root> --region <region> --signing-key {key_id}"
    )
    emit(data, as_json)


def rotate_export_signing_key(
    key_id: str, version: str, old_valid_for: timedelta, as_json: bool
) -> None:
    """Add ``version`` of ``key_id``; the old versions keep signing for ``old_valid_for``."""
    with keyserver() as deployment:
        now = utc_now()
        with unit_of_work(deployment.keyserver.session_factory) as session:
            info = configs.rotate_signature_info(
                session,
                deployment.keyserver.keys,
                key_id=key_id,
                new_key_version=version,
                old_valid_until=now + old_valid_for,
                now=now,
            )
            data = _signature_facts(info)
    emit(data, as_json)


def retire_export_signing_key(key_id: str, version: str, after: timedelta) -> None:
    with keyserver_session() as (_deployment, session):
        now = utc_now()
        info = administration.retire_signature_info(session, key_id, version, now + after, now)
        end = info.valid_until.isoformat() if info.valid_until else "-"
    typer.echo(f"export signing key {key_id} {version} signs no file after {end}")


def export_signing_key_rows(deployment: Deployment) -> list[dict[str, Any]]:
    with unit_of_work(deployment.keyserver.session_factory) as session:
        return [
            {
                "service": "keyserver",
                "purpose": "export",
                "realm_id": None,
                "key_id": info.key_id,
                "version": info.key_version,
                "active_at": info.created_at,
                "retired_at": info.valid_until,
                "public_key_pem": info.public_key_pem,
            }
            for info in administration.list_signature_infos(session)
        ]
