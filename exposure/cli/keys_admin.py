"""``exposure admin keys ...`` and ``exposure admin auditor-key ...``.

- ``keys new-kek``: a fresh key-encryption key to put in ``EXPOSURE_<SERVICE>_KEK``.
- ``keys list``: what each service keeps sealed in its database (never a value), and under
  which KEK id.
- ``keys rewrap``: re-seal everything under the newest KEK, the middle step of a KEK
  rotation (new KEK first in the setting, rewrap, then drop the old one).
- ``keys rotate-log-key``: a new retention-log key signs from now on; the old one stays
  published and still verifies what it signed.
- ``auditor-key create|list|disable``: API keys that read a service's retention log and
  compliance report (``GET /audit/log``, ``/audit/compliance``).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import typer

from exposure import auditors
from exposure.cli.common import emit, emit_rows, open_services, utc_now
from exposure.cli.failures import fail
from exposure.db import unit_of_work
from exposure.keys.kek import new_kek
from exposure.settings import Service

keys_app = typer.Typer(
    help="The services' sealed keys and their key-encryption keys (KEKs).", no_args_is_help=True
)
auditor_key_app = typer.Typer(
    help="API keys for auditors (GET /audit/log, /audit/compliance).", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ServiceOption = Annotated[
    Service | None, typer.Option(help="Only this service (default: every configured one).")
]


def _services(service: Service | None) -> list[Service] | None:
    return None if service is None else [service]


@keys_app.command("new-kek")
def new_kek_command() -> None:
    """Print a fresh KEK (32 random bytes, base64) for EXPOSURE_<SERVICE>_KEK."""
    typer.echo(new_kek())


@keys_app.command("list")
def list_keys(service: ServiceOption = None, as_json: JsonOption = False) -> None:
    """Every sealed key of the services: name, kind, purpose, KEK id; never a value."""
    rows: list[dict[str, Any]] = []
    with open_services(_services(service)) as deployment:
        for bundle in deployment.bundles.values():
            with unit_of_work(bundle.session_factory) as session:
                for info in bundle.keys.describe(session):
                    rows.append(
                        {
                            "service": bundle.service.value,
                            "name": info.name,
                            "kind": info.kind,
                            "purpose": info.purpose,
                            "kek_id": info.kek_id,
                            "current_kek": info.kek_id == bundle.keys.current_kek_id,
                            "created_at": info.created_at,
                            "retired_at": info.retired_at,
                        }
                    )
    columns = ["service", "name", "kind", "purpose", "kek_id", "created_at", "retired_at"]
    emit_rows(rows, columns, as_json)


@keys_app.command("rewrap")
def rewrap(service: ServiceOption = None) -> None:
    """Re-seal every key under the newest KEK; afterwards older KEKs can be removed."""
    with open_services(_services(service)) as deployment:
        for bundle in deployment.bundles.values():
            with unit_of_work(bundle.session_factory) as session:
                count = bundle.reseal_keys(session)
            typer.echo(
                f"{bundle.service.value}: re-sealed {count} key(s) under KEK id "
                f"{bundle.keys.current_kek_id}"
            )


@keys_app.command("rotate-log-key")
def rotate_log_key(
    service: Annotated[Service, typer.Option(help="Whose retention-log key.")],
    as_json: JsonOption = False,
) -> None:
    """A new retention-log key signs from now on; the old stays published to verify."""
    with open_services([service]) as deployment:
        bundle = deployment.bundle(service)
        with unit_of_work(bundle.session_factory) as session:
            signer = bundle.keys.rotate_log_key(session, now=utc_now())
    emit(
        {
            "service": service.value,
            "public_key": base64.b64encode(signer.public_key).decode("ascii"),
            "note": "restart the service's processes so they sign with the new key",
        },
        as_json,
    )


@auditor_key_app.command("create")
def create_auditor_key(
    name: Annotated[str, typer.Option(help="Who holds it, for people (e.g. 'DPO 2027').")],
    service: ServiceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an auditor key, registered with every configured service (or one); shown once."""
    plaintext = auditors.new_auditor_key()
    registered: dict[str, int] = {}
    with open_services(_services(service)) as deployment:
        for bundle in deployment.bundles.values():
            now = utc_now()
            with unit_of_work(bundle.session_factory) as session:
                hasher = auditors.auditor_hasher(bundle.keys, session, now)
                try:
                    info = auditors.register(
                        session,
                        hasher,
                        service=bundle.service.value,
                        name=name,
                        plaintext=plaintext,
                        now=now,
                    )
                except ValueError as error:
                    fail(str(error), 2)
                registered[bundle.service.value] = info.id
    emit({"api_key": plaintext, "ids": registered}, as_json)


@auditor_key_app.command("list")
def list_auditor_keys(service: ServiceOption = None, as_json: JsonOption = False) -> None:
    """Auditor keys by service and id (never the key)."""
    rows: list[dict[str, Any]] = []
    with open_services(_services(service)) as deployment:
        for bundle in deployment.bundles.values():
            with unit_of_work(bundle.session_factory) as session:
                for info in auditors.list_keys(session, service=bundle.service.value):
                    rows.append(
                        {
                            "service": info.service,
                            "id": info.id,
                            "name": info.name,
                            "preview": f"{info.preview}...",
                            "created_at": info.created_at,
                            "disabled_at": info.disabled_at,
                        }
                    )
    emit_rows(rows, ["service", "id", "name", "preview", "created_at", "disabled_at"], as_json)


@auditor_key_app.command("disable")
def disable_auditor_key(
    key_id: Annotated[int, typer.Option("--id", help="The key's id (from create or list).")],
    service: Annotated[Service, typer.Option(help="The service the id belongs to.")],
) -> None:
    """Disable an auditor key of one service at once."""
    with open_services([service]) as deployment:
        bundle = deployment.bundle(service)
        with unit_of_work(bundle.session_factory) as session:
            changed = auditors.disable(session, service=service.value, key_id=key_id, now=utc_now())
    if not changed:
        fail(f"no enabled auditor key {key_id} of the {service.value} service")
    typer.echo(f"disabled auditor key {key_id} of the {service.value} service")
