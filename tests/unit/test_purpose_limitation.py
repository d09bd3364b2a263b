"""Purpose limitation in code: stored exposure keys leave the server only as export files.

Three inventories, each compared with an explicit allowlist, so that a new way in or out
fails here until a reviewer has classified it:

- every HTTP route of the app (method and path), and which of them can answer with stored
  keys: only the export downloads, which read signed files from the blob store;
- every CLI command, and every job ``exposure jobs run`` can run: none prints stored keys,
  the export worker turns them into files (the export path);
- every module of the packages that can read the exposure table: the ORM model named in
  code (``Exposure``, so ``Exposure.key`` and whole rows alike) or the table named in SQL.

To add an entry, give the one-line reason a reviewer would accept; a module, route or
command that reads keys for any purpose but the export, publish or retention needs a
design review first (docs/privacy.md).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import fastapi.routing
import typer.main
from fastapi import FastAPI
from typer.testing import CliRunner

from exposure.app import create_app
from exposure.cli import app as cli_app
from tests.deployment import open_test_deployment

ROOT = Path(__file__).resolve().parents[2]
#: The product, and the benchmarks it runs (``exposure bench``), which read their own keys.
PACKAGES = ("exposure", "keyserver", "verification", "crypto", "benchmarks")


# ---- HTTP routes ------------------------------------------------------------------------


class Route(NamedTuple):
    reason: str
    #: Whether the answer can carry stored exposure keys.
    serves_exposure_keys: bool = False


EXPORT_FILE = Route("export path: one signed export file (a zip of keys)", True)

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/openapi.json"): Route("API description generated from the routes; no data"),
    ("HEAD", "/openapi.json"): Route("API description, headers only"),
    ("GET", "/docs"): Route("Swagger UI page over the API description; no data"),
    ("GET", "/docs/swagger-ui-bundle.js"): Route("Swagger UI's script, from a package"),
    ("GET", "/docs/swagger-ui.css"): Route("Swagger UI's style sheet, from a package"),
    ("GET", "/docs/favicon.png"): Route("Swagger UI's icon, from a package"),
    ("GET", "/health"): Route("readiness under its older name; status words only"),
    ("GET", "/health/ready"): Route("whether databases, schemas, keys, store are ready; codes"),
    ("GET", "/health/live"): Route("the process answers; a status word only"),
    ("POST", "/api/issue"): Route("lab issues a verification code; answers the code"),
    ("POST", "/api/batch-issue"): Route("lab issues up to ten codes; answers the codes"),
    ("POST", "/api/checkcodestatus"): Route("lab asks if a code was claimed; answers times"),
    ("POST", "/api/expirecode"): Route("lab voids a code; answers its status"),
    ("POST", "/api/verify"): Route("phone trades a code for a token; never sees keys"),
    ("POST", "/api/certificate"): Route("phone trades a token and a tekmac for a certificate"),
    ("GET", "/jwks/{realm}"): Route("public keys of a realm's certificate signers"),
    ("GET", "/console"): Route("console: redirects to sign-in or the lab page"),
    ("GET", "/console/sign-in"): Route("console: the sign-in form"),
    ("POST", "/console/sign-in"): Route("console: checks a staff password, sets a cookie"),
    ("POST", "/console/sign-out"): Route("console: ends the browser's session"),
    ("GET", "/console/static/countdown.js"): Route("console: the expiry countdown script"),
    ("GET", "/console/static/console.css"): Route("console: its style sheet"),
    ("GET", "/console/lab"): Route("console: the lab's forms; no stored data"),
    ("POST", "/console/lab/issue"): Route("console: issues one verification code"),
    ("POST", "/console/lab/bulk"): Route("console: issues codes from a CSV, all or none"),
    ("GET", "/console/lab/status"): Route("console: a realm code's claimed flag and expiry"),
    ("POST", "/console/lab/expire"): Route("console: expires a realm code"),
    ("GET", "/console/account"): Route("console: one's own account; a new app secret, sealed"),
    ("POST", "/console/account/second-factor"): Route("console: adds one's authenticator app"),
    ("GET", "/console/admin"): Route("console: a realm's policy, keys, staff, daily counts (>= 5)"),
    ("POST", "/console/admin/api-keys"): Route("console: creates a realm API key, shown once"),
    ("POST", "/console/admin/api-keys/disable"): Route("console: disables a realm API key"),
    ("POST", "/console/admin/limits"): Route("console: changes the realm's code limits"),
    ("POST", "/console/admin/staff"): Route("console: creates a staff account of the realm"),
    ("POST", "/console/admin/staff/disable"): Route("console: disables a staff account"),
    ("POST", "/console/admin/staff/remove-second-factor"): Route(
        "console: removes a staff account's authenticator app, ends its sessions"
    ),
    ("GET", "/console/audit"): Route("console: compliance per kind and the log's chain status"),
    ("GET", "/console/audit/log"): Route("console: retention-log entries (kinds, counts, times)"),
    ("GET", "/console/audit/export"): Route("console: the signed retention log, to verify offline"),
    ("POST", "/v1/publish"): Route(
        "phone uploads its keys; answers a count and a revision token, never keys back"
    ),
    ("GET", "/exports/{root}/index.txt"): Route("export path: names of the current files"),
    ("HEAD", "/exports/{root}/index.txt"): Route("export path: the index, headers only"),
    ("GET", "/exports/{root}/{filename}"): EXPORT_FILE,
    ("HEAD", "/exports/{root}/{filename}"): EXPORT_FILE,
    ("GET", "/exports/{rest:path}"): Route("export path: any other name answers 404"),
    ("HEAD", "/exports/{rest:path}"): Route("export path: the same 404, headers only"),
    ("GET", "/audit/public-keys"): Route("audit, never returns key material: log public keys"),
    ("GET", "/audit/log"): Route("audit, never returns key material: counts and times"),
    ("GET", "/audit/compliance"): Route("audit, never returns key material: oldest item ages"),
}


def _routes(app: FastAPI) -> dict[tuple[str, str], Callable[..., Any]]:
    """(method, path) → endpoint of every route, routers included, hidden ones too."""
    # FastAPI keeps included routers as nodes of their own from 0.16x on; its iterator
    # flattens them. Older versions list every route in app.routes already.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(app.routes)) if flatten is not None else list(app.routes)
    found: dict[tuple[str, str], Callable[..., Any]] = {}
    for route in routes:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        # A mount, a websocket or a static directory has no methods: classify it by hand.
        assert path, f"route without a path: {route!r}"
        assert methods, f"route without methods: {route!r}"
        for method in methods:
            key = (method, path)
            assert key not in found, f"{method} {path} is served twice"
            found[key] = getattr(route, "endpoint", None)
    return found


def _app(tmp_path: Path) -> FastAPI:
    return create_app(open_test_deployment(None, tmp_path, migrate=True), owns_deployment=True)


def test_every_route_is_classified(tmp_path: Path) -> None:
    served = set(_routes(_app(tmp_path)))

    unclassified = sorted(served - set(ROUTES))
    gone = sorted(set(ROUTES) - served)
    assert unclassified == [], f"add these routes to ROUTES with a reason: {unclassified}"
    assert gone == [], f"ROUTES lists routes the app no longer serves: {gone}"


def test_only_export_downloads_can_answer_with_stored_keys(tmp_path: Path) -> None:
    endpoints = _routes(_app(tmp_path))
    serving = {key for key, route in ROUTES.items() if route.serves_exposure_keys}

    assert serving, "the export files are how keys reach phones; they must be listed"
    for method, path in serving:
        assert path.startswith("/exports/"), f"{method} {path} is not an export download"
        assert endpoints[(method, path)].__module__ == "keyserver.export.api"


def test_export_downloads_read_the_blob_store_not_the_database() -> None:
    """The download routes serve files the worker wrote, so they cannot select keys."""
    source = ROOT / "keyserver" / "export" / "api.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    database = sorted(
        name
        for name in imported
        if name.split(".")[0] == "sqlalchemy"
        or name == "keyserver.models"
        or name == "keyserver.store"
        or name.startswith(("keyserver.store.", "exposure.db"))
    )
    assert database == []


# ---- CLI commands and jobs ------------------------------------------------------------

#: Every command; none reads stored exposure keys back out of the database to show them.
COMMANDS: dict[str, str] = {
    "serve": "runs the HTTP server (whose routes are classified above)",
    "db upgrade": "migrates schemas, moves earlier key files in; prints revision names",
    "db status": "where each schema stands; revision names only",
    "admin bootstrap": "creates the default realm, trust and export config; prints API keys",
    "admin realm create": "creates a realm; prints its first API keys",
    "admin realm list": "realm names, issuers and JWKS URLs",
    "admin realm show": "a realm's policy and key ids",
    "admin realm disable": "stops a realm's API keys",
    "admin apikey create": "creates an API key; prints it once",
    "admin apikey list": "API key ids, types, names and previews; never a key",
    "admin apikey show": "one API key's record; never the key",
    "admin apikey disable": "disables an API key; prints its id and preview",
    "admin staff add": "adds a console staff account; prints its id (and a TOTP secret once)",
    "admin staff list": "staff usernames, roles, time zones; never a password hash",
    "admin staff disable": "disables a staff account and ends its sessions",
    "admin staff remove-second-factor": "removes an account's authenticator app; one line",
    "admin signing-key add": "creates an export signing key; prints the public key",
    "admin signing-key rotate": "rotates a certificate or export signing key",
    "admin signing-key list": "public facts of signing keys",
    "admin signing-key retire": "ends an export signing key version's signing",
    "admin health-authority add": "trusts a certificate issuer",
    "admin health-authority list": "trusted issuers and their key ids",
    "admin health-authority show": "one trusted issuer and its keys' validity",
    "admin health-authority revoke-key": "stops trusting one key of an issuer",
    "admin health-authority remove": "stops trusting an issuer",
    "admin app add": "authorizes an app to publish",
    "admin app list": "authorized apps, regions and issuers",
    "admin app show": "one authorized app",
    "admin app remove": "stops an app from publishing",
    "admin export-config add": "creates an export series; prints its index URL",
    "admin export-config list": "export series and their windows",
    "admin export-config show": "one export series and its index URL",
    "admin export-config disable": "stops new windows of an export series",
    "admin export-config imports": "sets which imported keys an export series includes",
    "admin import-source add": "records a peer to import from; prints its settings",
    "admin import-source list": "import sources with counts of files and keys",
    "admin import-source show": "one import source with counts by refusal reason",
    "admin import-source disable": "stops importing from a source",
    "admin import-source purge": "deletes a source's keys and records; prints counts",
    "admin mirror add": "records a peer to copy for a CDN; prints its settings",
    "admin mirror list": "mirrors with their last success and error",
    "admin mirror show": "one mirror's settings and state",
    "admin mirror disable": "stops copying a peer",
    "admin keys new-kek": "prints a fresh key-encryption key; touches no database",
    "admin keys list": "names, kinds and KEK ids of sealed keys; never a value",
    "admin keys rewrap": "re-seals sealed keys under the newest KEK; prints a count",
    "admin keys rotate-log-key": "a new retention-log key; prints its public key",
    "admin auditor-key create": "creates an auditor key; prints it once",
    "admin auditor-key list": "auditor key ids, names and previews; never a key",
    "admin auditor-key disable": "disables an auditor key",
    "export inspect": "reads an export file the operator already holds; prints counts only",
    "phone upload": "a phone: publishes fresh random keys of its own over HTTP; prints counts",
    "phone download": "a phone: the export files over HTTP, as every phone gets them; counts",
    "demo": "simulated phones on a throwaway server of its own; prints totals only",
    "bench rpi": "derives identifiers from random keys it makes itself",
    "bench match": "matches random keys in files it writes itself against random sightings",
    "bench verification": "drives the code flow against a scratch server",
    "bench publish": "publishes random keys to a scratch database and checks them there",
    "bench export": "exports random keys from a scratch database and counts them",
    "bench import": "imports a scratch export of random keys into a scratch database",
    "bench purge": "purges expired random keys it seeded in a scratch database",
    "jobs run": "runs one scheduled job (listed in JOBS below); prints its summary",
    "jobs list": "names and describes the jobs; touches no database",
    "audit export": "audit, never returns key material: the retention logs (counts, times)",
    "audit verify": "audit: checks the retention logs' hash chain and signatures",
    "audit compliance": "audit: ages of the oldest item of each kind against deadlines",
    "audit public-key": "audit: the retention logs' public keys",
    "audit registry": "audit: the retention declarations (kinds, purposes, deadlines)",
}

#: Every job `exposure jobs run` can run (those `exposure serve` schedules, and "purge").
JOBS: dict[str, str] = {
    "jwks-refresh": "mirrors health authorities' public keys",
    "revision-key-rotation": "creates and destroys revision-token keys",
    "export-batches": "closes export windows into batches; reads no keys",
    "export-worker": "export path: reads the window's keys and writes signed files",
    "import": "stores peers' signed keys; reports counts only, never a key",
    "mirror": "copies peers' files as bytes into the blob store; reads no stored key",
    "purge": "retention: runs both purges below",
    "purge-keyserver": "retention: deletes expired keys and files; reports counts only",
    "purge-verification": "retention: deletes expired codes, tokens, keys; reports counts",
}


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    # Typer ships its own copy of click, so groups are recognized by what they list; lazy
    # groups load a sub-command when it is resolved, as running it would.
    if not hasattr(command, "list_commands"):
        yield " ".join(prefix)
        return
    context = command.context_class(command)
    for name in command.list_commands(context):
        _, subcommand, _ = command.resolve_command(context, [name])
        yield from _command_paths(subcommand, (*prefix, name))


def test_every_cli_command_is_classified() -> None:
    commands = set(_command_paths(typer.main.get_command(cli_app)))

    assert sorted(commands - set(COMMANDS)) == [], "add these commands to COMMANDS"
    assert sorted(set(COMMANDS) - commands) == [], "COMMANDS lists commands that are gone"


def _job_names(data_dir: Path) -> set[str]:
    """What ``exposure jobs run`` can run, from its own answer to an unknown job name."""
    environment = {
        "EXPOSURE_DATA_DIR": str(data_dir),
        "EXPOSURE_DATABASE_URL": "",
        "EXPOSURE_KEYSERVER_DATABASE_URL": "",
        "EXPOSURE_VERIFICATION_DATABASE_URL": "",
    }
    result = CliRunner().invoke(cli_app, ["jobs", "run", "no-such-job"], env=environment)
    listed = re.search(r"known jobs: (.+)", result.output)
    assert listed is not None, result.output
    return {name.strip() for name in listed.group(1).split(",")}


def test_every_job_is_classified(tmp_path: Path) -> None:
    names = _job_names(tmp_path)

    assert sorted(names - set(JOBS)) == [], "add these jobs to JOBS with a reason"
    assert sorted(set(JOBS) - names) == [], "JOBS lists jobs that are gone"


# ---- who can read the exposure table --------------------------------------------------

#: Modules (paths under the repository) that may read the exposure table, and why.
KEY_READERS: dict[str, str] = {
    "keyserver/models.py": "defines the table",
    "keyserver/store/exposures.py": "publish: locks the stored rows of incoming keys to revise",
    "keyserver/service/publish.py": "publish: compares stored rows with the keys sent",
    "keyserver/store/exports.py": "export path: selects a window's keys for the worker's files",
    "exposure/db/migrations/versions/k0001_keyserver.py": "creates the table (DDL only)",
    "benchmarks/publish.py": "benchmark: checks its scratch database holds what it sent",
    "benchmarks/export.py": "benchmark: seeds and selects keys in its scratch database",
    "benchmarks/importer.py": "benchmark: counts the keys its scratch import stored",
    "keyserver/retention.py": "retention: declares the keys' kinds (names the table only)",
    "keyserver/store/retention.py": "retention: counts and deletes expired keys, never returns",
    "benchmarks/purge.py": "benchmark: seeds expired keys in its scratch database",
    "keyserver/store/imports.py": "import: counts and deletes a source's keys, never returns",
    "exposure/db/migrations/versions/k0003_keyserver_imports.py": "adds columns (DDL only)",
    "exposure/db/migrations/versions/k0004_keyserver_partial_indexes.py": (
        "partial indexes (DDL); on SQLite rewrites imported keys' created_at text in place, "
        "returns no rows"
    ),
    # keyserver/service/revision.py would be allowed too, but it never touches the table.
}

MODEL = "Exposure"
TABLE = re.compile(r"\bkeyserver_exposures\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the constant nodes that are docstrings (prose, not code)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def exposure_table_uses(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` can read the exposure table: the model in code, the table in SQL.

    Naming the ORM class at all counts (``Exposure.key``, ``select(Exposure)``,
    ``models.Exposure``, an aliased import), as does any string, docstrings aside, that
    names the table (raw SQL, ``metadata.tables[...]``). Constraint names that merely
    contain the table name do not.
    """
    tree = ast.parse(source, filename=filename)
    prose = _docstrings(tree)
    uses: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.ImportFrom) and any(a.name == MODEL for a in node.names):
            uses.append(f"line {line}: imports {MODEL} from {node.module}")
        elif isinstance(node, ast.Name) and node.id == MODEL:
            uses.append(f"line {line}: uses {MODEL}")
        elif isinstance(node, ast.Attribute) and node.attr == MODEL:
            uses.append(f"line {line}: uses .{MODEL}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in prose
            and TABLE.search(node.value)
        ):
            uses.append(f"line {line}: names the table in {node.value[:60]!r}")
    return sorted(set(uses), key=lambda use: int(use.split(":")[0].removeprefix("line ")))


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith("_pb2.py"):
                yield path


def test_only_allowed_modules_read_the_exposure_table() -> None:
    readers = {}
    for path in _modules():
        uses = exposure_table_uses(path.read_text(), str(path))
        if uses:
            readers[path.relative_to(ROOT).as_posix()] = uses[:3]  # enough to find them

    unexpected = {module: uses for module, uses in readers.items() if module not in KEY_READERS}
    assert unexpected == {}, "modules that read exposure keys; review and add to KEY_READERS"
    stale = sorted(set(KEY_READERS) - set(readers))
    assert stale == [], f"KEY_READERS lists modules that no longer read the table: {stale}"


def test_the_table_check_finds_every_way_of_naming_it() -> None:
    source = '''
"""Mentions Exposure and keyserver_exposures in prose only."""
from keyserver import models
from keyserver.models import Exposure as Row
from sqlalchemy import select, text

def leak(session):
    """Reads keyserver_exposures (prose again)."""
    session.scalars(select(models.Exposure.key))
    session.execute(text("SELECT key FROM keyserver_exposures"))
    session.execute(text("ALTER INDEX ix_keyserver_exposures_created_at RENAME TO x"))
'''
    uses = exposure_table_uses(source)

    assert uses == [
        "line 4: imports Exposure from keyserver.models",
        "line 9: uses .Exposure",
        "line 10: names the table in 'SELECT key FROM keyserver_exposures'",
    ]
