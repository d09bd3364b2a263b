"""``exposure export``: look inside GAEN export files and check their signatures.

``exposure export inspect FILE [--public-key PEM ...] [--json]`` prints the window, region,
batch, signature infos (with the app bundle id and Android package that early files carry in
fields the schema now reserves), key counts and key-length problems, and which given key
verifies each signature. Exit codes are made for scripts:

- 0: the file parses and, when keys are given, every signature verifies with one of them;
- 1: keys were given and a signature does not verify, or the file carries no signature;
- 2: the file (or a key) cannot be read or parsed; one line on stderr says why.

Everything shown comes from an untrusted file, so text is escaped before it reaches the
terminal (no rich markup, no control characters) and JSON is ASCII-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crypto.errors import InvalidKey
from crypto.signing import load_public_key
from exposure.export import (
    ExportFormatError,
    ParsedExport,
    SignatureCheck,
    SignatureInfo,
    read_export_file,
    verify_signatures,
)

EXIT_OK = 0
EXIT_VERIFICATION_FAILED = 1
EXIT_UNREADABLE = 2

Verification = Literal["passed", "failed", "not_requested"]

export_app = typer.Typer(
    help="Inspect GAEN export files (zip of export.bin + export.sig, or a bare export.bin).",
    no_args_is_help=True,
)


@export_app.callback()
def export_commands() -> None:
    """Inspect GAEN export files."""
    # A callback keeps ``inspect`` a named sub-command even while it is the only one.


@export_app.command("inspect")
def inspect_export(
    file: Annotated[Path, typer.Argument(help="An export zip or a bare export.bin.")],
    public_key_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            "-k",
            help="PEM public key (P-256) to verify signatures with; repeat for several keys.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what an export holds and whether its signatures verify with the given keys."""
    key_files = public_key_files or []
    public_keys = [_load_public_key(path) for path in key_files]
    try:
        parsed = read_export_file(file)
    except OSError as error:
        _fail(f"cannot read {file}: {error.strerror or error}")
    except ExportFormatError as error:
        _fail(f"cannot parse {file}: {error}")

    checks = verify_signatures(parsed, public_keys) if public_keys else []
    verification = _verification_outcome(parsed, checks, requested=bool(public_keys))
    if as_json:
        report = _json_report(file, parsed, checks, key_files, verification)
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_tables(file, parsed, checks, key_files, verification)
    if verification == "failed":
        raise typer.Exit(EXIT_VERIFICATION_FAILED)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_UNREADABLE)


def _load_public_key(path: Path) -> EllipticCurvePublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as error:
        _fail(f"cannot read public key {path}: {error.strerror or error}")
    except InvalidKey:
        _fail(f"{path} is not a P-256 public key in PEM form")


def _verification_outcome(
    parsed: ParsedExport, checks: Sequence[SignatureCheck], *, requested: bool
) -> Verification:
    if not requested:
        return "not_requested"
    # An unsigned file must not pass a check the caller explicitly asked for.
    if parsed.signatures and all(check.verified for check in checks):
        return "passed"
    return "failed"


def _iso_utc(timestamp: int | None) -> str | None:
    """ISO 8601 UTC form of a unix time, or None when absent or beyond datetime's range."""
    if timestamp is None:
        return None
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _signature_info_json(info: SignatureInfo | None) -> dict[str, str | None] | None:
    if info is None:
        return None
    return {
        "verification_key_id": info.verification_key_id,
        "verification_key_version": info.verification_key_version,
        "signature_algorithm": info.signature_algorithm,
        # Fields 1 and 2 of the first schema, reserved today; null when the file has none.
        "app_bundle_id": info.app_bundle_id,
        "android_package": info.android_package,
    }


def _json_report(
    file: Path,
    parsed: ParsedExport,
    checks: Sequence[SignatureCheck],
    key_files: Sequence[Path],
    verification: Verification,
) -> dict[str, object]:
    contents = parsed.contents
    verified_by = {check.index: check.verified_by for check in checks}
    return {
        "file": str(file),
        "container": parsed.container.value,
        "has_signature_file": parsed.has_signature_file,
        "extra_members": list(parsed.extra_members),
        "start_timestamp": contents.start_timestamp,
        "start_time": _iso_utc(contents.start_timestamp),
        "end_timestamp": contents.end_timestamp,
        "end_time": _iso_utc(contents.end_timestamp),
        "region": contents.region,
        "batch_num": contents.batch_num,
        "batch_size": contents.batch_size,
        "signature_infos": [_signature_info_json(info) for info in contents.signature_infos],
        "key_count": len(contents.keys),
        "revised_key_count": len(contents.revised_keys),
        "key_length_problems": [
            {"list": problem.key_list, "index": problem.index, "length": problem.length}
            for problem in parsed.key_length_problems
        ],
        "signatures": [
            {
                "index": index,
                "signature_info": _signature_info_json(signature.signature_info),
                "batch_num": signature.batch_num,
                "batch_size": signature.batch_size,
                "verified_by": [str(key_files[i]) for i in verified_by.get(index, ())],
            }
            for index, signature in enumerate(parsed.signatures)
        ],
        "verification": verification,
    }


def _shown(value: object) -> Text:
    """Render a value from the file literally: no markup, control characters escaped."""
    if value is None:
        return Text("-", style="dim")
    text = str(value)
    if not text.isprintable():
        text = "".join(
            char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
            for char in text
        )
    return Text(text)


def _describe_info(info: SignatureInfo | None) -> list[Text]:
    if info is None:
        return [_shown(None), _shown(None), _shown(None)]
    return [
        _shown(info.verification_key_id),
        _shown(info.verification_key_version),
        _shown(info.signature_algorithm),
    ]


def _early_schema_table(parsed: ParsedExport) -> Table | None:
    """The app bundle id and Android package of signature infos that carry them, if any do.

    Only early files have them (fields 1 and 2 of the first schema, reserved since), so
    they get a table of their own rather than two mostly empty columns in the others.
    """
    located: list[tuple[str, SignatureInfo]] = [
        (f"export.bin #{index}", info) for index, info in enumerate(parsed.contents.signature_infos)
    ]
    located += [
        (f"export.sig #{index}", signature.signature_info)
        for index, signature in enumerate(parsed.signatures)
        if signature.signature_info is not None
    ]
    rows = [
        (where, info)
        for where, info in located
        if info.app_bundle_id is not None or info.android_package is not None
    ]
    if not rows:
        return None
    table = Table(title="early-schema signature info fields (reserved today)", title_justify="left")
    table.add_column("signature info")
    # Folded, never cut: the values are what the table is for.
    table.add_column("app bundle id", overflow="fold")
    table.add_column("android package", overflow="fold")
    for where, info in rows:
        table.add_row(Text(where), _shown(info.app_bundle_id), _shown(info.android_package))
    return table


def _print_tables(
    file: Path,
    parsed: ParsedExport,
    checks: Sequence[SignatureCheck],
    key_files: Sequence[Path],
    verification: Verification,
) -> None:
    console = Console(highlight=False)
    contents = parsed.contents

    console.print(_shown(file), style="bold", soft_wrap=True)
    summary = Table(show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
    signature_file = "export.sig present" if parsed.has_signature_file else "no export.sig"
    summary.add_row("container", Text(f"{parsed.container.value}, {signature_file}"))
    for label, timestamp in (
        ("start", contents.start_timestamp),
        ("end", contents.end_timestamp),
    ):
        iso = _iso_utc(timestamp)
        summary.add_row(label, _shown(None if timestamp is None else f"{timestamp}  {iso}"))
    summary.add_row("region", _shown(contents.region))
    summary.add_row("batch", Text(f"{contents.batch_num}/{contents.batch_size}"))
    summary.add_row("keys", Text(str(len(contents.keys))))
    summary.add_row("revised keys", Text(str(len(contents.revised_keys))))
    problems = ", ".join(
        f"{problem.key_list}[{problem.index}]={problem.length} bytes"
        for problem in parsed.key_length_problems[:10]
    )
    if len(parsed.key_length_problems) > 10:
        problems += f", ... ({len(parsed.key_length_problems)} in all)"
    summary.add_row("key-length problems", Text(problems or "none"))
    if parsed.extra_members:
        summary.add_row("extra members", _shown(", ".join(parsed.extra_members)))
    console.print(summary)

    if contents.signature_infos:
        infos = Table(title="signature infos (export.bin)", title_justify="left")
        for column in ("#", "key id", "key version", "algorithm"):
            infos.add_column(column)
        for index, info in enumerate(contents.signature_infos):
            infos.add_row(Text(str(index)), *_describe_info(info))
        console.print(infos)

    if parsed.signatures:
        verified_by = {check.index: check.verified_by for check in checks}
        signatures = Table(title="signatures (export.sig)", title_justify="left")
        for column in ("#", "key id", "key version", "algorithm", "batch"):
            signatures.add_column(column)
        # Key file names are long; fold them rather than cut them, they are the answer.
        signatures.add_column("verified by", overflow="fold")
        for index, signature in enumerate(parsed.signatures):
            if key_files:
                matches = [key_files[i].name for i in verified_by.get(index, ())]
                outcome = Text(", ".join(matches)) if matches else Text("no key", style="red")
            else:
                outcome = Text("not checked", style="dim")
            signatures.add_row(
                Text(str(index)),
                *_describe_info(signature.signature_info),
                Text(f"{signature.batch_num}/{signature.batch_size}"),
                outcome,
            )
        console.print(signatures)
    else:
        console.print("signatures: none")

    early_schema = _early_schema_table(parsed)
    if early_schema is not None:
        console.print(early_schema)

    if verification == "passed":
        console.print(Text("verification: passed", style="green"))
    elif verification == "failed":
        reason = "some signature does not verify" if parsed.signatures else "no signature"
        console.print(Text(f"verification: FAILED ({reason})", style="bold red"))
