"""Import sources: the peers whose signed export files the key server imports.

``exposure admin import-source add`` names a peer's index.txt (a URL, or a local path for
an offline hand-over), the root its lines are relative to and the public keys that sign
its files; the ``import`` job then fetches its new files. ``list``, ``show`` and
``disable`` with ``--json``; ``purge`` disconnects a source and deletes what it brought.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from exposure.cli.common import emit, emit_rows, utc_now
from exposure.cli.failures import fail
from exposure.cli.keyserver_admin import JsonOption, keyserver_session
from keyserver.importer import mirror, sources
from keyserver.importer.sources import SourceKey, is_url

mirror_app = typer.Typer(
    help="Peers whose index and files are copied as they are, for a CDN.", no_args_is_help=True
)
import_source_app = typer.Typer(
    help="Peers whose signed export files are imported (and re-exported).",
    no_args_is_help=True,
)


def _location(value: str) -> str:
    # A relative path means the operator's working directory, not the server's.
    return value if is_url(value) else str(Path(value).resolve())


def _key(value: str) -> SourceKey:
    parts = value.split(":", 2)
    if len(parts) != 3 or not all(parts):
        fail(f"--key {value!r} must be KEY_ID:KEY_VERSION:PEM_FILE", 2)
    key_id, key_version, path = parts
    try:
        pem = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read public key file {path!r}: {error}", 2)
    return SourceKey(key_id=key_id, key_version=key_version, public_key_pem=pem)


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-12-07T00:00:00+00:00)", 2)
    if moment.tzinfo is None:
        fail(f"{option} needs a time zone (e.g. +00:00)", 2)
    return moment


@import_source_app.command("add")
def add_import_source(
    name: Annotated[str, typer.Argument(help="A label (lower-case letters, digits, '-').")],
    index: Annotated[str, typer.Option(help="The peer's index.txt: a URL or a local file.")],
    export_root: Annotated[
        str, typer.Option(help="What the index's lines are relative to (URL or directory).")
    ],
    key: Annotated[
        list[str],
        typer.Option(help="KEY_ID:KEY_VERSION:PEM_FILE of a key that signs its files (repeat)."),
    ],
    region: Annotated[str, typer.Option(help="Region of keys whose file names none.")],
    report_type: Annotated[
        str, typer.Option(help="Report type of keys whose file names none.")
    ] = "confirmed",
    valid_from: Annotated[
        str | None, typer.Option("--from", help="Import from this time (default: now).")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--until", help="Import nothing after this time.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import a peer's signed export files from now on (the `import` job fetches them)."""
    keys = [_key(value) for value in key]
    start, end = _moment(valid_from, "--from"), _moment(valid_until, "--until")
    with keyserver_session() as (_deployment, session):
        source = sources.add_import_source(
            session,
            name=name,
            index_location=_location(index),
            export_root=_location(export_root),
            keys=keys,
            region=region,
            report_type=report_type,
            valid_from=start,
            valid_until=end,
            now=utc_now(),
        )
        data = sources.import_source_facts(session, source)
    data["next_step"] = "exposure jobs run import (serve runs it every 5 minutes)"
    emit(data, as_json)


@import_source_app.command("list")
def list_import_sources(as_json: JsonOption = False) -> None:
    """Every import source, with what it brought and its last error."""
    with keyserver_session() as (_deployment, session):
        rows: list[dict[str, Any]] = [
            sources.import_source_facts(session, source)
            for source in sources.list_import_sources(session)
        ]
    columns = ["id", "name", "region", "files_imported", "keys_stored", "last_error", "valid_until"]
    emit_rows(rows, columns, as_json)


@import_source_app.command("show")
def show_import_source(
    name: Annotated[str, typer.Argument(help="The source's name (or id).")],
    as_json: JsonOption = False,
) -> None:
    """One import source: where, which keys sign, files imported and refused by reason."""
    with keyserver_session() as (_deployment, session):
        data = sources.import_source_facts(session, sources.find_import_source(session, name))
    emit(data, as_json)


@import_source_app.command("disable")
def disable_import_source(
    name: Annotated[str, typer.Argument(help="The source's name (or id).")],
) -> None:
    """Import nothing more from the source; what it brought stays until its deadline."""
    with keyserver_session() as (_deployment, session):
        source = sources.find_import_source(session, name)
        changed = sources.disable_import_source(source, utc_now())
    typer.echo(f"import source {name} {'disabled' if changed else 'had already ended'}")


@import_source_app.command("purge")
def purge_import_source(
    name: Annotated[str, typer.Argument(help="The source's name (or id).")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this deletes keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Disconnect the source: disable it and delete every key it brought and its records."""
    if not yes:
        fail("purge deletes every key the source brought; add --yes to confirm", 2)
    with keyserver_session() as (_deployment, session):
        source = sources.find_import_source(session, name)
        purged = sources.purge_import_source(session, source, utc_now())
    emit({"source": name, "keys_deleted": purged.keys, "records_deleted": purged.records}, as_json)


# ---- mirrors (``exposure admin mirror ...``) -------------------------------------------


@mirror_app.command("add")
def add_mirror(
    name: Annotated[str, typer.Argument(help="A label (lower-case letters, digits, '-').")],
    index: Annotated[str, typer.Option(help="The peer's index.txt: a URL or a local file.")],
    export_root: Annotated[
        str, typer.Option(help="What the index's lines are relative to (URL or directory).")
    ],
    mirror_root: Annotated[
        str, typer.Option(help="Where the copies go in the export blob store (one segment).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Copy a peer's index and files as they are (the `mirror` job copies them)."""
    with keyserver_session() as (_deployment, session):
        added = mirror.add_mirror(
            session,
            name=name,
            index_location=_location(index),
            export_root=_location(export_root),
            mirror_root=mirror_root,
            now=utc_now(),
        )
        data = mirror.mirror_facts(added)
    data["next_step"] = "exposure jobs run mirror (serve runs it every 5 minutes)"
    emit(data, as_json)


@mirror_app.command("list")
def list_mirrors(as_json: JsonOption = False) -> None:
    """Every mirror, with its last success and error."""
    with keyserver_session() as (_deployment, session):
        rows = [mirror.mirror_facts(entry) for entry in mirror.list_mirrors(session)]
    emit_rows(rows, ["id", "name", "mirror_root", "last_success_at", "last_error"], as_json)


@mirror_app.command("show")
def show_mirror(
    name: Annotated[str, typer.Argument(help="The mirror's name.")],
    as_json: JsonOption = False,
) -> None:
    """One mirror."""
    with keyserver_session() as (_deployment, session):
        data = mirror.mirror_facts(mirror.find_mirror(session, name))
    emit(data, as_json)


@mirror_app.command("disable")
def disable_mirror(name: Annotated[str, typer.Argument(help="The mirror's name.")]) -> None:
    """Copy nothing more; the copies stay where they are."""
    with keyserver_session() as (_deployment, session):
        changed = mirror.disable_mirror(mirror.find_mirror(session, name), utc_now())
    typer.echo(f"mirror {name} {'disabled' if changed else 'had already ended'}")
