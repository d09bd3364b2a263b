"""Schemathesis against a real ``exposure serve``: every operation of ``/openapi.json`` is
sent requests generated from its own schema (valid ones, and invalid ones where the
schema can be violated), with valid API keys from ``admin bootstrap``, on PostgreSQL and
on the embedded SQLite default.

For every answer:

- no 5xx;
- its status, content type, headers and body are what the document declares for it;
- if it refused the request (4xx), no table of either service holds a row more or less
  than before it. The rate-limit counters are the exception: they count requests, refused
  ones too (wrong codes are what the lockout counts), under HMACs of the client.

Bounded and deterministic: at most :data:`EXAMPLES` requests per operation and mode, drawn
by hypothesis with ``derandomize``, so a run sends the same requests every time (a few
hundred per operation). The server runs with ``--no-jobs``, so only requests write.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.errors import FailureGroup
from sqlalchemy import Engine, TextClause, inspect, text

from exposure.db import create_database_engine
from exposure.settings import ExposureSettings, Service
from tests.conftest import postgres_base_url, with_search_path
from tests.e2e.conftest import RunningServer, run_cli, start_server
from tests.keys import TEST_KEKS

#: Requests per operation and generation mode.
EXAMPLES = 50
#: Every operation the embedded default serves.
OPERATIONS = {
    "POST /v1/publish",
    "GET /exports/{root}/index.txt",
    "HEAD /exports/{root}/index.txt",
    "GET /exports/{root}/{filename}",
    "HEAD /exports/{root}/{filename}",
    "POST /api/issue",
    "POST /api/batch-issue",
    "POST /api/checkcodestatus",
    "POST /api/expirecode",
    "POST /api/verify",
    "POST /api/certificate",
    "GET /jwks/{realm}",
    "GET /audit/public-keys",
    "GET /audit/log",
    "GET /audit/compliance",
    "GET /health/live",
    "GET /health/ready",
    "GET /health",
}
#: The schemathesis checks every answer must pass.
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
#: Tables a refused request may change: the per-client request counters and the wrong-code
#: lockout, which must count refusals (docs/api.md, Authentication and limits).
COUNTERS = frozenset({"rate_limit_windows"})
#: Limits high enough that the generated requests are answered on their merits, not 429.
LIMITS = {
    "EXPOSURE_VERIFICATION_REQUESTS_PER_MINUTE": "100000",
    "EXPOSURE_VERIFICATION_INVALID_CODES_PER_CLIENT_PER_HOUR": "1000",
    "EXPOSURE_VERIFICATION_INVALID_CODES_PER_REALM_PER_WINDOW": "100000",
}


@dataclass
class Served:
    server: RunningServer
    setup: dict[str, Any]
    engines: list[Engine]
    #: One connection for every request (schemathesis sends through requests).
    session: requests.Session
    _count_queries: list[tuple[Engine, TextClause]] = field(init=False)

    def api_key(self, scheme: str) -> str:
        kind = {"adminKey": "admin", "deviceKey": "device", "auditorKey": "auditor"}[scheme]
        key: str = self.setup[f"{kind}_api_key"]
        return key

    def __post_init__(self) -> None:
        # One statement per database counts every table (the counters aside).
        self._count_queries = []
        for engine in self.engines:
            tables = [name for name in inspect(engine).get_table_names() if name not in COUNTERS]
            assert tables, "the schema is migrated"
            query = " UNION ALL ".join(
                f"SELECT '{name}', count(*) FROM {name}"  # noqa: S608 - names from the schema
                for name in tables
            )
            self._count_queries.append((engine, text(query)))

    def row_counts(self) -> dict[str, int]:
        """Rows of every table of both services (the counters aside)."""
        counts: dict[str, int] = {}
        for engine, query in self._count_queries:
            with engine.connect() as connection:
                counts.update({row[0]: row[1] for row in connection.execute(query)})
        return counts


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """The PostgreSQL URL of an empty schema of its own, dropped afterwards."""
    base = postgres_base_url()
    schema = f"openapi_{secrets.token_hex(5)}"
    admin = create_database_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(base, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    data_dir = tmp_path / "var"
    environment = dict(LIMITS)
    if request.param == "postgresql":
        # A schema of its own (dropped in a moment), not a database (whose drop waits for
        # a checkpoint: many seconds on a busy machine).
        url = request.getfixturevalue("postgres_schema")
        environment.update(
            {
                "EXPOSURE_DATABASE_URL": url,
                "EXPOSURE_KEYSERVER_KEK": TEST_KEKS["keyserver"],
                "EXPOSURE_VERIFICATION_KEK": TEST_KEKS["verification"],
            }
        )
        urls = [url]
    else:
        settings = ExposureSettings(data_dir=data_dir, database_url=None)
        urls = [settings.database_url_for(service) for service in Service]
    server = start_server(data_dir, "--no-jobs", environment=environment)
    engines: list[Engine] = []
    session = requests.Session()
    try:
        bootstrap = run_cli(data_dir, "admin", "bootstrap", "--json", environment=environment)
        assert bootstrap.returncode == 0, bootstrap.stderr
        engines = [create_database_engine(url) for url in urls]
        yield Served(server, json.loads(bootstrap.stdout), engines, session)
    finally:
        session.close()
        for engine in engines:
            engine.dispose()
        if server.process.poll() is None:
            server.stop()


def _enrich(operation: str, body: object, data: st.DataObject, served: Served) -> None:
    """Now and then, put a value the server knows into a generated body, so the request
    gets past the first lookup: a registered app, a test type and today's date."""
    if not isinstance(body, dict) or not data.draw(st.booleans(), label="known values"):
        return
    if operation == "POST /v1/publish":
        body["healthAuthorityID"] = served.setup["health_authority_id"]
    elif operation == "POST /api/issue":
        body["testType"] = data.draw(st.sampled_from(["confirmed", "likely", "negative"]))
        body["symptomDate"] = datetime.now(UTC).date().isoformat()


def _exercise(
    served: Served,
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    checks: list[Any],
    failures: list[str],
    statuses: set[int],
) -> None:
    """Send ``operation`` up to :data:`EXAMPLES` requests of ``mode``; record failures."""
    base_url = served.server.base_url

    @given(case=operation.as_strategy(generation_mode=mode, headers=headers), data=st.data())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def exchange(case: schemathesis.Case, data: st.DataObject) -> None:
        _enrich(operation.label, case.body, data, served)
        before = served.row_counts()
        response = case.call(base_url=base_url, session=served.session, timeout=30)
        statuses.add(response.status_code)
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as failure:
            failures.append(f"{operation.label} ({mode.value}): {failure}")
            return
        if 400 <= response.status_code < 500:
            after = served.row_counts()
            changed = {
                table: (count, after.get(table))
                for table, count in before.items()
                if after.get(table) != count
            }
            if changed:
                failures.append(
                    f"{operation.label} ({mode.value}) answered {response.status_code} but "
                    f"changed rows: {changed}\n{case.as_curl_command()}"
                )

    exchange()


def test_every_operation_answers_as_documented_and_refusals_store_nothing(
    served: Served,
) -> None:
    load_all_checks()
    checks = CHECKS.get_by_names(list(CHECK_NAMES))
    schema = schemathesis.openapi.from_url(f"{served.server.base_url}/openapi.json")
    failures: list[str] = []
    answered: dict[str, set[int]] = {}

    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.label for operation in operations} == OPERATIONS
    for operation in operations:
        definition = operation.definition.raw
        headers = {"X-Chaff": ""}  # real requests: chaff is answered without any work
        security = definition.get("security")
        if security:
            headers["X-API-Key"] = served.api_key(next(iter(security[0])))
        # Invalid requests need something the schema constrains: a body or parameters.
        modes = [GenerationMode.POSITIVE]
        if "requestBody" in definition or any(
            parameter["in"] == "query" or "pattern" in parameter["schema"]
            for parameter in definition.get("parameters", ())
        ):
            modes.append(GenerationMode.NEGATIVE)
        statuses = answered.setdefault(operation.label, set())
        for mode in modes:
            _exercise(served, operation, mode, headers, checks, failures, statuses)

    assert failures == [], "\n\n".join(failures[:5])
    # The keys worked: authenticated calls were answered on their merits, not all 401.
    for label in ("POST /api/issue", "POST /api/verify", "GET /audit/log"):
        assert statuses_beyond_401(answered[label]), (label, answered[label])
    assert 200 in answered["POST /api/issue"]


def statuses_beyond_401(statuses: set[int]) -> set[int]:
    return statuses - {401}
