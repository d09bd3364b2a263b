"""``exposure phone``: one phone's side of the protocol from the shell, over HTTP only.

For tours, drills and checking a deployment from outside, with what ``exposure admin
bootstrap --json`` printed (``--setup``):

- ``exposure phone upload --code CODE``: a phone that has been broadcasting for the last
  ``--days`` days (fresh random keys) trades the code for a token and a certificate and
  publishes its keys (:class:`~exposure.client.Uploader`: TEK HMAC, padding, revision token).
- ``exposure phone download --into DIR``: fetch index.txt and every file it lists, verify
  each signature with the export key from the setup (by key id and version, as phones do),
  and keep the files that verify in ``DIR``. Exit 1 if a file was refused or none is listed.

It uses only the phone SDK (:mod:`exposure.client`), never the services' code: what it shows
is what any phone would see.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from exposure.client import (
    ClientError,
    Device,
    ExportRefused,
    ExportSigningKey,
    ExportSource,
    ExportSync,
    ServerConfig,
    SyncState,
    Uploader,
    open_export,
)

# The exit codes of exposure.cli.failures, which this module does not import: it would bring
# the database layer into a command that never touches one.
EXIT_FAILED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on standard error, then exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


phone_app = typer.Typer(
    help="One phone over HTTP: upload keys with a code, download and verify exports.",
    no_args_is_help=True,
)

SetupOption = Annotated[
    Path, typer.Option(help="What `exposure admin bootstrap --json` printed, saved to a file.")
]
ServerOption = Annotated[
    str | None, typer.Option(help="Server base URL (default: the setup's verification_url).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]

_SETUP_FIELDS = (
    "verification_url",
    "device_api_key",
    "health_authority_id",
    "export_root",
    "export_key_id",
    "export_key_version",
    "export_public_key_pem",
)


def _load_setup(path: Path) -> dict[str, Any]:
    try:
        setup = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        fail(f"cannot read the setup {path} ({type(error).__name__})", EXIT_USAGE)
    if not isinstance(setup, dict):
        fail(f"{path} is not the JSON object bootstrap prints", EXIT_USAGE)
    missing = [name for name in _SETUP_FIELDS if not isinstance(setup.get(name), str)]
    if missing:
        fail(f"{path} lacks {', '.join(missing)}: is it bootstrap's --json output?", EXIT_USAGE)
    return setup


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else "\n".join(lines))


@phone_app.command("upload")
def upload(
    code: Annotated[str, typer.Option(help="The verification code the lab issued.")],
    setup: SetupOption = Path("setup.json"),
    server: ServerOption = None,
    days: Annotated[
        int, typer.Option(min=1, max=14, help="Days the phone has been broadcasting.")
    ] = 3,
    as_json: JsonOption = False,
) -> None:
    """Publish a phone's keys of the last DAYS days with a verification code."""
    facts = _load_setup(setup)
    base = (server or facts["verification_url"]).rstrip("/")
    now = datetime.now(UTC)
    phone = Device()
    for back in range(days, -1, -1):
        phone.key_at(now - timedelta(days=back))  # one key per day it broadcast
    keys = phone.keys_for_upload(now)
    config = ServerConfig(
        verification_url=base,
        keyserver_url=base,
        api_key=facts["device_api_key"],
        health_authority_id=facts["health_authority_id"],
    )
    try:
        with Uploader(config) as uploader:
            outcome = uploader.upload(code, keys)
    except ClientError as error:
        fail(f"upload refused: {error}")
    published = outcome.published
    data = {
        "test_type": outcome.test_type,
        "keys_sent": len(keys),
        "inserted_exposures": published.inserted_exposures,
        "partial_failure": published.partial_failure,
    }
    _emit(
        data,
        as_json,
        [f"uploaded as {outcome.test_type}: {published.inserted_exposures} of {len(keys)} keys"],
    )


@phone_app.command("download")
def download(
    into: Annotated[Path, typer.Option(help="Directory to keep the verified files in.")],
    setup: SetupOption = Path("setup.json"),
    server: ServerOption = None,
    root: Annotated[
        str | None, typer.Option(help="Export series to read (default: the setup's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Download index.txt and its files, verify every signature, keep what verifies."""
    facts = _load_setup(setup)
    base = (server or facts["verification_url"]).rstrip("/")
    key = ExportSigningKey.from_pem(
        facts["export_key_id"], facts["export_key_version"], facts["export_public_key_pem"].encode()
    )
    source = ExportSource(
        base_url=f"{base}/exports",
        index_path=f"{root or facts['export_root']}/index.txt",
        signing_keys=(key,),
    )
    verified: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    with ExportSync(source, SyncState()) as sync:
        try:
            names = sync.fetch_index()
        except ClientError as error:
            fail(f"index.txt: {error}")
        into.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                data = sync.download(name)
                export = open_export(data, source.signing_keys)
            except ExportRefused as error:
                refused.append({"name": name, "code": error.code})
                continue
            target = into / Path(name).name
            target.write_bytes(data)
            verified.append({"name": name, "path": str(target), "keys": len(export)})
    lines = [f"verified {item['path']}: {item['keys']} keys" for item in verified]
    lines += [f"refused {item['name']}: {item['code']}" for item in refused]
    if not names:
        lines.append("index.txt lists no file yet")
    _emit({"verified": verified, "refused": refused}, as_json, lines)
    if refused or not verified:
        raise typer.Exit(code=EXIT_FAILED)
