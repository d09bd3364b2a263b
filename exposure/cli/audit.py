"""``exposure audit``: export and verify the retention logs, and check compliance.

- ``export [--service S] [--output FILE]``: every service's log (or one) as a JSON bundle.
- ``verify [FILE] [--from DATE] [--public-key FILE] [--json]``: recompute every chain link
  and check every signature, offline from an exported bundle (or a page of
  ``GET /audit/log``), or from the live databases without FILE; report the first broken
  link. Exit 1 if any log fails.
- ``compliance [--json]``: per kind of data, the oldest item held against its deadline and
  whether every scheduled purge ran on time. Exit 1 if anything is found.
- ``public-key``: the public keys auditors should verify against (as ``GET
  /audit/public-keys`` serves them).
- ``registry``: every kind of stored data, why it is kept, how long, and what enforces it
  (the table in docs/privacy.md is this command's output).

An auditor verifying an export should pass ``--public-key`` with keys obtained independently
(the service's published keys); without it, the keys inside the export are used, which only
shows the export is self-consistent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from exposure.cli.services import services_runtime
from exposure.clock import utc_now
from exposure.db import unit_of_work
from exposure.retention.compliance import compliance_report
from exposure.retention.log import DOCUMENT_FORMAT, export_document, verify_document
from exposure.retention.policy import Action, RetentionPolicy
from exposure.retention.runtime import public_keys_document

audit_app = typer.Typer(
    help="Retention-log export and verification, and compliance checks (for auditors).",
    no_args_is_help=True,
)

#: The ``format`` of ``exposure audit export``'s bundle of logs.
BUNDLE_FORMAT = "exposure-retention-export/v1"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _live_documents(
    service: str | None,
) -> tuple[list[dict[str, Any]], dict[str, list[bytes]]]:
    with services_runtime() as runtime:
        retentions = runtime.retentions
        if service is not None and service not in retentions:
            raise _fail(f"unknown service {service!r}; one of: {', '.join(retentions)}")
        documents = []
        keys = {}
        for name, retention in retentions.items():
            if service is not None and name != service:
                continue
            with unit_of_work(retention.session_factory) as session:
                documents.append(
                    export_document(session, service=name, public_key=retention.public_key)
                )
            keys[name] = list(retention.public_keys)
    return documents, keys


@audit_app.command("export")
def export(
    service: Annotated[
        str | None, typer.Option(help="Only this service (keyserver, verification).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the bundle here instead of standard output.")
    ] = None,
) -> None:
    """Export the retention logs as one JSON bundle that `exposure audit verify` checks."""
    documents, _keys = _live_documents(service)
    bundle = {"format": BUNDLE_FORMAT, "exported_at": utc_now().isoformat(), "logs": documents}
    text = json.dumps(bundle, indent=1, sort_keys=True)
    if output is None:
        typer.echo(text)
        return
    try:
        output.write_text(text + "\n", encoding="ascii")
    except OSError as error:
        raise _fail(f"cannot write {output}: {error.strerror}") from None
    count = sum(len(document["entries"]) for document in documents)
    typer.echo(f"wrote {count} entries of {len(documents)} log(s) to {output}", err=True)


def _read_documents(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _fail(f"cannot read {path}: {error.strerror}") from None
    except (UnicodeDecodeError, ValueError):
        raise _fail(f"{path} is not JSON") from None
    if isinstance(data, dict) and data.get("format") == BUNDLE_FORMAT:
        logs = data.get("logs")
        if isinstance(logs, list) and all(isinstance(log, dict) for log in logs):
            return logs
    if isinstance(data, dict) and data.get("format") == DOCUMENT_FORMAT:
        return [data]
    raise _fail(f"{path} is neither a {BUNDLE_FORMAT} bundle nor a {DOCUMENT_FORMAT} document")


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"{where}: not a base64 public key") from None
    if len(key) != 32:
        raise _fail(f"{where}: an Ed25519 public key is 32 bytes")
    return key


def _key_list(value: object, where: str) -> list[bytes]:
    values = value if isinstance(value, list) else [value]
    return [_decode_key(str(item), where) for item in values]


def _read_public_keys(path: Path, services: Sequence[str]) -> dict[str, list[bytes]]:
    """One base64 key (for a single log), or JSON as ``GET /audit/public-keys`` returns it
    (``{"keys": {service: key}, "previous_keys": {service: [key, ...]}}``) or a plain map of
    service to a key or a list of keys."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as error:
        raise _fail(f"cannot read public key file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise _fail(f"{path}: not a base64 public key") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise _fail(f"{path} is not JSON") from None
        mapping = data.get("keys", data) if isinstance(data, dict) else None
        previous = data.get("previous_keys", {}) if isinstance(data, dict) else {}
        if not isinstance(mapping, dict) or not isinstance(previous, dict):
            raise _fail(f"{path}: expected {{'keys': {{service: base64 key}}}}")
        keys = {str(name): _key_list(value, f"{path} ({name})") for name, value in mapping.items()}
        for name, value in previous.items():
            keys.setdefault(str(name), []).extend(_key_list(value, f"{path} ({name})"))
        return keys
    if len(services) != 1:
        raise _fail(
            f"{path} holds one key but there are {len(services)} logs; give a JSON map "
            "(as GET /audit/public-keys returns) or --service"
        )
    return {services[0]: [_decode_key(stripped, str(path))]}


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--from {text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None and len(text) == len("2026-11-01"):
        return moment.replace(tzinfo=UTC)  # a bare date: from its UTC midnight
    if moment.tzinfo is None:
        raise _fail("--from needs a UTC offset, e.g. 2026-11-01T00:00:00+00:00")
    return moment


@audit_app.command("verify")
def verify(
    log_file: Annotated[
        Path | None,
        typer.Argument(help="An export (or a page of GET /audit/log); default: live database."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--from", help="Verify entries recorded from this ISO 8601 time on."),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="Public key(s) to verify against (base64 or JSON map).")
    ] = None,
    service: Annotated[str | None, typer.Option(help="Only this service's log.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Verify the hash chain and signatures; report the first broken link (exit 1)."""
    start = _parse_since(since)
    if log_file is None:
        documents, trusted = _live_documents(service)
    else:
        documents = [
            document
            for document in _read_documents(log_file)
            if service is None or document.get("service") == service
        ]
        if service is not None and not documents:
            raise _fail(f"{log_file} holds no log of service {service!r}")
        trusted = {}
    names = [str(document.get("service", "")) for document in documents]
    if public_key is not None:
        trusted = _read_public_keys(public_key, names)
        # Given keys are the only ones trusted: falling back to the key inside the export
        # would let a forged log of a service left out of the file pass.
        missing = [name for name in names if name not in trusted]
        if missing:
            raise _fail(f"{public_key} has no public key for {', '.join(map(repr, missing))}")
    reports = []
    warnings = []
    for name, document in zip(names, documents, strict=True):
        keys = trusted.get(name)
        if keys is None:
            embedded = document.get("public_key")
            if not isinstance(embedded, str):
                raise _fail(f"no public key for {name!r}; pass --public-key")
            keys = [_decode_key(embedded, f"the export's key of {name}")]
            warnings.append(
                f"{name}: verified against the key inside the export; "
                "pass --public-key to verify against the published one"
            )
        reports.append(verify_document(document, public_key=keys, since=start).as_dict())
    ok = bool(reports) and all(report["ok"] for report in reports)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "logs": reports, "warnings": warnings}, indent=2))
    else:
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        for report in reports:
            typer.echo(_verification_line(report))
        if not reports:
            typer.echo("no logs to verify")
    if not ok:
        raise typer.Exit(code=1)


def _verification_line(report: Mapping[str, Any]) -> str:
    name = report["service"]
    if report["ok"]:
        if not report["entries_checked"]:
            return f"{name}: OK, no entries"
        return (
            f"{name}: OK, {report['entries_checked']} entries "
            f"(seq {report['first_seq']}..{report['head_seq']}), head {report['head']}"
        )
    problem = report["problem"]
    where = "" if problem["seq"] is None else f" at seq {problem['seq']}"
    return f"{name}: BROKEN{where}: {problem['reason']} ({problem['detail']})"


@audit_app.command("compliance")
def compliance(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Oldest item of each kind against its deadline, and purges on time (exit 1 if not)."""
    with services_runtime() as runtime:
        report = compliance_report(list(runtime.retentions.values()), now=utc_now())
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        for service in report["services"]:
            state = "clean" if service["clean"] else f"{len(service['findings'])} finding(s)"
            typer.echo(f"{service['service']}: {state}")
            for kind in service["kinds"]:
                age = kind["oldest_age_seconds"]
                held = "nothing held" if age is None else f"oldest {age / 86400:.1f} d"
                deadline = kind["deadline_seconds"] / 86400
                typer.echo(
                    f"  {kind['kind']:<32} {held:<16} deadline {deadline:.1f} d, "
                    f"{kind['runs']} purge run(s)"
                )
            for finding in service["findings"]:
                typer.echo(f"  FINDING {finding}")
    if not report["clean"]:
        raise typer.Exit(code=1)


@audit_app.command("public-key")
def public_key_command() -> None:
    """Print each service's retention-log public keys (base64 Ed25519) as JSON."""
    with services_runtime() as runtime:
        document = public_keys_document(runtime.retentions)
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds} s"


def registry_rows(policies: Sequence[RetentionPolicy]) -> list[dict[str, str]]:
    """The registry as rows of text, one per declaration."""
    rows = []
    for policy in policies:
        if policy.bounds is None or policy.deadline is None:
            deadline = "kept (configuration)" if policy.action is Action.KEEP else "-"
        else:
            deadline = (
                f"{_duration(policy.deadline)} "
                f"({_duration(policy.bounds.floor)}-{_duration(policy.bounds.ceiling)})"
            )
        rows.append(
            {
                "service": policy.service.value,
                "kind": policy.kind,
                "tables": ", ".join(policy.tables),
                "purpose": policy.purpose,
                "measured_from": policy.measured_from,
                "action": policy.action.value,
                "deadline": deadline,
                "setting": policy.setting or "-",
                "enforced_by": policy.enforced_by,
            }
        )
    return rows


def registry_markdown(rows: Sequence[Mapping[str, str]]) -> str:
    """The registry as the Markdown table docs/privacy.md carries."""
    header = (
        "| Service | Kind | Tables | Why it is kept | Age from | At the deadline "
        "| Deadline (floor-ceiling) | Setting | Enforced by |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        cells = [
            row["service"],
            f"`{row['kind']}`",
            row["tables"],
            row["purpose"],
            row["measured_from"],
            row["action"],
            row["deadline"],
            f"`{row['setting']}`" if row["setting"] != "-" else "-",
            row["enforced_by"],
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


@audit_app.command("registry")
def registry(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the retention registry: every kind of stored data, why, how long, enforced by."""
    with services_runtime() as runtime:
        policies = [
            policy for retention in runtime.retentions.values() for policy in retention.policies
        ]
    rows = registry_rows(policies)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(registry_markdown(rows))
