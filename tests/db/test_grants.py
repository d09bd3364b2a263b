"""deploy/postgresql/grants.sql on a real PostgreSQL: each service role can do its whole job
and nothing more.

As operators do it, a migration owner (LOGIN and CREATEROLE, not a superuser) owns the
schema, runs the migrations, runs grants.sql and does the administrative set-up. The
services then run on engines that log in as members of the two service roles: every flow of
the verification service (issue, batch issue, status, expiry, failed and good verifies,
certificates, JWKS) and of the key server (JWKS refresh, publish and revision over HTTP,
export batches and the worker, revision-key rotation); then every job `exposure serve`
schedules, the retention purges included, 30 days on, the /audit routes, and a later purge
that truncates the retention log itself. Last, statements each role must be refused.

Roles are cluster-wide: every name here carries a random suffix (grants.sql takes the
service role names from the settings ``exposure.keyserver_role`` and
``exposure.verification_role``), and all of them are dropped at the end.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

import keyserver.models as _keyserver_models  # noqa: F401 - registers the key server's tables
import verification.models as _verification_models  # noqa: F401 - and the verification tables
from crypto.signing import public_key_pem
from crypto.tekmac import SignedKey, compute_tekmac
from exposure.app import create_app
from exposure.compose import Deployment, DeploymentSettings, open_deployment
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.migrate import SERVICE_TARGETS, upgrade, upgrade_service
from exposure.db.models import metadata
from exposure.jobs import Job, run_job
from exposure.retention.purge import LOG_KIND
from exposure.retention.settings import RetentionSettings
from exposure.settings import ExposureSettings, Service
from exposure.tek import interval_number, utc_midnight
from keyserver.context import KeyserverContext
from keyserver.export.configs import add_signature_info, create_export_config
from keyserver.models import ExportFile, Exposure, HealthAuthorityKey
from keyserver.schedule import (
    export_batches_job,
    export_worker_job,
    jwks_refresh_job,
    revision_key_rotation_job,
)
from keyserver.service import trust
from keyserver.settings import KeyserverSettings
from tests.conftest import postgres_base_url, with_search_path
from tests.keys import kek_setting
from tests.unit.verification.conftest import Clock
from verification.console import service as console_service
from verification.console.models import StaffRole
from verification.models import ApiKey, SigningKey
from verification.service import realms, signing_keys
from verification.settings import VerificationSettings

pytestmark = pytest.mark.postgres

GRANTS_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgresql" / "grants.sql"
#: Everything grants.sql may ever grant on a table.
ALLOWED = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
SERVICES = (Service.KEYSERVER, Service.VERIFICATION)
#: Written only by ``exposure db upgrade`` (the migration owner); the services read it to
#: check that the schema is theirs.
MIGRATION_TABLES = frozenset({"alembic_version"})
# One row of the matrix in grants.sql: ['service', 'table', 'PRIVILEGE, PRIVILEGE'], where
# a privilege may be limited to columns: 'UPDATE(column column)'.
_MATRIX_ROW = re.compile(r"\['(\w+)', '(\w+)',\s*'([A-Za-z_, ()]+)'\]")
APP_ID = "com.example.exposure"
REGION = "VN"


def grant_matrix() -> dict[tuple[str, str], frozenset[str]]:
    """``(service, table) → privileges``, read from the rows of grants.sql."""
    matrix: dict[tuple[str, str], frozenset[str]] = {}
    for service, table, privileges in _MATRIX_ROW.findall(GRANTS_SQL.read_text()):
        assert (service, table) not in matrix, f"{service} / {table} is listed twice"
        matrix[(service, table)] = frozenset(_canonical(item) for item in privileges.split(", "))
    return matrix


def _canonical(privilege: str) -> str:
    """``UPDATE(b a)`` as ``UPDATE(a b)``: a column list compares as a set."""
    name, _, columns = privilege.partition("(")
    if not columns:
        return name
    return f"{name}({' '.join(sorted(columns.rstrip(')').split()))})"


def _privilege_name(privilege: str) -> str:
    return privilege.partition("(")[0]


def owning_services(table: str) -> tuple[str, ...]:
    """The services whose databases hold ``table``: its own, or all for a core table."""
    for service in SERVICES:
        if table.startswith(f"{service.value}_"):
            return (service.value,)
    return tuple(service.value for service in SERVICES)


def test_every_mapped_table_has_a_row_for_each_service_that_holds_it() -> None:
    # Runs without PostgreSQL: a new model without grants fails here first.
    matrix = grant_matrix()
    tables = {*metadata.tables, *MIGRATION_TABLES}
    expected = {(service, table) for table in tables for service in owning_services(table)}

    assert sorted(expected - set(matrix)) == [], "tables without grants"
    assert sorted(set(matrix) - expected) == [], "rows for tables the service does not hold"
    assert {table for _, table in matrix} == tables
    for service in SERVICES:
        assert matrix[(service.value, "alembic_version")] == {"SELECT"}
    for row, privileges in matrix.items():
        assert privileges, row
        assert {_privilege_name(privilege) for privilege in privileges} <= ALLOWED, row


# ---- a schema, its migration owner and the two service roles ---------------------------


@dataclass(frozen=True)
class Roles:
    owner: str
    keyserver: str
    verification: str

    def of(self, service: Service) -> str:
        return self.keyserver if service is Service.KEYSERVER else self.verification

    def login(self, service: Service) -> str:
        """The LOGIN role a service's processes connect as: a member of its service role."""
        return f"{self.of(service)}_login"

    def everyone(self) -> tuple[str, ...]:
        """Members before the roles they belong to: the order to drop them in."""
        logins = tuple(self.login(service) for service in SERVICES)
        return (*logins, self.keyserver, self.verification, self.owner)


@dataclass
class Cluster:
    base_url: str
    roles: Roles
    admin: Engine
    schemas: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GrantedSchema:
    name: str
    cluster: Cluster
    #: What grants.sql raised as notices (warnings) when it ran.
    warnings: tuple[str, ...]

    def url(self, role: str) -> str:
        login = make_url(self.cluster.base_url).set(username=role, password=None)
        return with_search_path(login.render_as_string(hide_password=False), self.name)

    @property
    def owner_url(self) -> str:
        return self.url(self.cluster.roles.owner)

    def service_url(self, service: Service) -> str:
        return self.url(self.cluster.roles.login(service))


def libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq connection string (for psycopg directly)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def apply_grants(url: str, roles: Roles) -> tuple[str, ...]:
    """Run grants.sql as ``url``'s role, in one transaction (as ``psql -1 -f``); its notices."""
    notices: list[str] = []
    with psycopg.connect(libpq(url)) as connection:
        connection.add_notice_handler(
            lambda notice: notices.append(f"{notice.severity}: {notice.message_primary}")
        )
        connection.execute(
            "SELECT set_config('exposure.keyserver_role', %s, false),"
            " set_config('exposure.verification_role', %s, false)",
            (roles.keyserver, roles.verification),
        )
        connection.execute(GRANTS_SQL.read_bytes())
    return tuple(notices)


def create_granted_schema(cluster: Cluster, targets: Sequence[str]) -> GrantedSchema:
    """A new schema owned by the migration owner, migrated to ``targets`` and granted."""
    name = f"grants_{secrets.token_hex(6)}"
    cluster.schemas.append(name)
    with cluster.admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}" AUTHORIZATION "{cluster.roles.owner}"'))
    bare = GrantedSchema(name, cluster, ())
    owner = create_database_engine(bare.owner_url)
    try:
        upgrade(owner, targets)
    finally:
        owner.dispose()
    warnings = apply_grants(bare.owner_url, cluster.roles)
    with cluster.admin.begin() as connection:
        for service in SERVICES:
            login = cluster.roles.login(service)
            if not _role_exists(connection, login):
                service_role = cluster.roles.of(service)
                connection.execute(text(f'CREATE ROLE "{login}" LOGIN IN ROLE "{service_role}"'))
    return GrantedSchema(name, cluster, warnings)


def _role_exists(connection: Connection, name: str) -> bool:
    found = connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name})
    return found.first() is not None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base_url = postgres_base_url()
    suffix = secrets.token_hex(4)
    roles = Roles(
        owner=f"exposure_owner_{suffix}",
        keyserver=f"exposure_keyserver_{suffix}",
        verification=f"exposure_verification_{suffix}",
    )
    admin = create_database_engine(base_url)
    with admin.begin() as connection:
        # What a DBA gives the migration owner: it logs in, and it may create the roles.
        connection.execute(text(f'CREATE ROLE "{roles.owner}" LOGIN CREATEROLE'))
    created = Cluster(base_url, roles, admin)
    try:
        yield created
    finally:
        with admin.begin() as connection:
            for schema in created.schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            existing = [role for role in roles.everyone() if _role_exists(connection, role)]
            if existing:
                names = ", ".join(f'"{role}"' for role in existing)
                connection.execute(text(f"DROP OWNED BY {names}"))
            for role in existing:
                connection.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


@pytest.fixture(scope="module")
def shared(cluster: Cluster) -> GrantedSchema:
    """Both services in one database (the small install): every table, both roles."""
    return create_granted_schema(cluster, ("heads",))


def privileges_in(schema: GrantedSchema) -> dict[tuple[str, str], frozenset[str]]:
    """``(grantee, table or sequence) → privileges`` granted in the schema, but the owner's."""
    with schema.cluster.admin.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT coalesce(grantee.rolname, 'PUBLIC'), relation.relname, acl.privilege_type"
                " FROM pg_class AS relation"
                " CROSS JOIN LATERAL aclexplode(relation.relacl) AS acl"
                " LEFT JOIN pg_roles AS grantee ON grantee.oid = acl.grantee"
                " WHERE relation.relnamespace = CAST(:schema AS regnamespace)"
                " AND relation.relkind IN ('r', 'p', 'S') AND acl.grantee <> relation.relowner"
            ),
            {"schema": schema.name},
        ).all()
        # Privileges granted on some columns only, as grants.sql writes them.
        column_rows = connection.execute(
            text(
                "SELECT coalesce(grantee.rolname, 'PUBLIC'), relation.relname,"
                " acl.privilege_type, string_agg(attribute.attname, ' ')"
                " FROM pg_attribute AS attribute"
                " JOIN pg_class AS relation ON relation.oid = attribute.attrelid"
                " CROSS JOIN LATERAL aclexplode(attribute.attacl) AS acl"
                " LEFT JOIN pg_roles AS grantee ON grantee.oid = acl.grantee"
                " WHERE relation.relnamespace = CAST(:schema AS regnamespace)"
                " AND acl.grantee <> relation.relowner"
                " GROUP BY 1, 2, 3"
            ),
            {"schema": schema.name},
        ).all()
    found: dict[tuple[str, str], set[str]] = {}
    for grantee, relation, privilege in rows:
        found.setdefault((grantee, relation), set()).add(privilege)
    for grantee, relation, privilege, columns in column_rows:
        found.setdefault((grantee, relation), set()).add(_canonical(f"{privilege}({columns})"))
    return {key: frozenset(value) for key, value in found.items()}


def tables_in(schema: GrantedSchema) -> set[str]:
    with schema.cluster.admin.connect() as connection:
        names = connection.execute(
            text(
                "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p')"
                " AND relnamespace = CAST(:schema AS regnamespace)"
            ),
            {"schema": schema.name},
        ).scalars()
        return set(names)


def expected_privileges(
    schema: GrantedSchema, services: Iterable[Service]
) -> dict[tuple[str, str], frozenset[str]]:
    """What grants.sql should leave: its matrix for ``services``, and USAGE on the id
    sequence of every table a role inserts into."""
    matrix = grant_matrix()
    tables = tables_in(schema)
    expected: dict[tuple[str, str], frozenset[str]] = {}
    for service in services:
        role = schema.cluster.roles.of(service)
        for table in tables:
            if service.value not in owning_services(table):
                continue
            privileges = matrix.get((service.value, table))
            assert privileges is not None, f"{table} has no row for {service.value} in grants.sql"
            expected[(role, table)] = privileges
            if "INSERT" in privileges and _has_id_sequence(schema, table):
                expected[(role, f"{table}_id_seq")] = frozenset({"USAGE"})
    return expected


def _has_id_sequence(schema: GrantedSchema, table: str) -> bool:
    with schema.cluster.admin.connect() as connection:
        found = connection.execute(
            text("SELECT to_regclass(:sequence)"), {"sequence": f'"{schema.name}"."{table}_id_seq"'}
        ).scalar()
        return found is not None


# ---- what grants.sql leaves in the database ----------------------------------------------


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.value)
def test_a_service_database_grants_every_table_to_its_service_only(
    cluster: Cluster, service: Service
) -> None:
    schema = create_granted_schema(cluster, SERVICE_TARGETS[service])
    other = next(each for each in SERVICES if each is not service)

    assert schema.warnings == ()
    assert privileges_in(schema) == expected_privileges(schema, [service])
    with cluster.admin.connect() as connection:
        usage = connection.execute(
            text("SELECT has_schema_privilege(:role, :schema, 'USAGE')"),
            {"role": cluster.roles.of(other), "schema": schema.name},
        ).scalar_one()
    assert usage is False


def test_a_shared_database_grants_each_service_its_own_rows(shared: GrantedSchema) -> None:
    assert shared.warnings == ()
    assert privileges_in(shared) == expected_privileges(shared, SERVICES)


def test_running_it_again_takes_back_what_was_granted_by_hand(cluster: Cluster) -> None:
    schema = create_granted_schema(cluster, ("heads",))
    before = privileges_in(schema)
    roles = cluster.roles
    with psycopg.connect(libpq(schema.owner_url), autocommit=True) as owner:
        owner.execute(
            f'GRANT TRUNCATE, UPDATE ON verification_audit_entries TO "{roles.verification}"'
        )
        owner.execute(f'GRANT SELECT ON verification_codes TO "{roles.keyserver}"')
        owner.execute(f'GRANT UPDATE ON keyserver_export_batches_id_seq TO "{roles.keyserver}"')
    assert privileges_in(schema) != before

    assert apply_grants(schema.owner_url, roles) == ()
    assert privileges_in(schema) == before


def test_it_refuses_a_schema_without_service_tables(cluster: Cluster) -> None:
    name = f"grants_{secrets.token_hex(6)}"
    cluster.schemas.append(name)
    with cluster.admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{name}" AUTHORIZATION "{cluster.roles.owner}"'))
    empty = GrantedSchema(name, cluster, ())

    with pytest.raises(psycopg.errors.RaiseException, match="holds no service tables"):
        apply_grants(empty.owner_url, cluster.roles)


# ---- the services at work under their roles -----------------------------------------------


@dataclass(frozen=True)
class Realm:
    id: int
    admin_key: str
    device_key: str
    device_key_id: int
    auditor_key: str


def open_as(
    schema: GrantedSchema,
    role_of: Callable[[Service], str],
    data_dir: Path,
    clock: Clock,
    *,
    keyserver: KeyserverSettings | None = None,
    retention: RetentionSettings | None = None,
) -> Deployment:
    """Both services opened as a process does, each logged in as ``role_of(service)``."""
    settings = DeploymentSettings(
        base=ExposureSettings(
            data_dir=data_dir,
            keyserver_database_url=schema.url(role_of(Service.KEYSERVER)),
            verification_database_url=schema.url(role_of(Service.VERIFICATION)),
        ),
        keyserver=keyserver or KeyserverSettings(kek=kek_setting("keyserver")),
        verification=VerificationSettings(kek=kek_setting("verification")),
        retention=retention or RetentionSettings(),
    )
    return open_deployment(settings, clock=clock)


def set_up_as_owner(schema: GrantedSchema, data_dir: Path, clock: Clock) -> Realm:
    """What ``exposure admin`` does before the services start, as the migration owner."""
    with open_as(schema, lambda _: schema.cluster.roles.owner, data_dir, clock) as owner:
        context = owner.verification.context
        with unit_of_work(owner.verification.session_factory) as session:
            created = realms.create_realm(session, context, name="lab", now=clock(), actor="test")
            auditor = realms.create_api_key(
                session,
                context,
                realm=created.realm,
                kind=realms.ApiKeyKind.AUDITOR,
                name="auditor",
                now=clock(),
                actor="test",
            )
            realm = Realm(
                id=created.realm.id,
                admin_key=created.admin_key.plaintext,
                device_key=created.device_key.plaintext,
                device_key_id=created.device_key.record.id,
                auditor_key=auditor.plaintext,
            )
            issuer = created.realm.certificate_issuer
            audience = created.realm.certificate_audience
            # The service makes the system token key on first use when there is none: let it.
            for key in signing_keys.list_signing_keys(session):
                if key.purpose == "token":
                    context.key_store.destroy(session, key.key_reference)
            session.execute(delete(SigningKey).where(SigningKey.purpose == "token"))
        with unit_of_work(owner.keyserver.session_factory) as session:
            # The realm's keys arrive through the JWKS refresh; a key it no longer lists is
            # revoked there.
            authority = trust.add_health_authority(
                session,
                issuer=issuer,
                audience=audience,
                name="lab",
                jwks_url=f"http://verification.test/jwks/{realm.id}",
                now=clock(),
            )
            withdrawn = ec.generate_private_key(ec.SECP256R1()).public_key()
            trust.add_health_authority_key(
                session,
                authority,
                version="withdrawn",
                public_key_pem=public_key_pem(withdrawn).decode(),
                valid_from=clock() - timedelta(days=1),
            )
            trust.add_authorized_app(
                session,
                app_id=APP_ID,
                health_authority_issuers=[issuer],
                regions=[REGION],
                bypass_verification=False,
                now=clock(),
            )
            info = add_signature_info(
                session, owner.keyserver.keys, key_id="452", key_version="v1", now=clock()
            )
            create_export_config(
                session,
                filename_root="vn",
                period=timedelta(days=1),
                output_region=REGION,
                valid_from=clock(),
                now=clock(),
                signature_info_ids=[info.id],
            )
    return realm


def call(client: TestClient, path: str, api_key: str, body: object) -> dict[str, Any]:
    response = client.post(path, json=body, headers={"X-API-Key": api_key})
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    answer: dict[str, Any] = response.json()
    return answer


def certificate(
    client: TestClient, realm: Realm, clock: Clock, test_type: str, tekmac: bytes
) -> str:
    symptoms = (clock() - timedelta(days=2)).date().isoformat()
    issued = call(
        client, "/api/issue", realm.admin_key, {"testType": test_type, "symptomDate": symptoms}
    )
    verified = call(
        client,
        "/api/verify",
        realm.device_key,
        {"code": issued["code"], "accept": ["confirmed", "likely"]},
    )
    certified = call(
        client,
        "/api/certificate",
        realm.device_key,
        {"token": verified["token"], "ekeyhmac": base64.b64encode(tekmac).decode()},
    )
    issued_certificate: str = certified["certificate"]
    return issued_certificate


def run_verification_flows(client: TestClient, realm: Realm, clock: Clock) -> None:
    today = clock().date().isoformat()
    batch = call(
        client,
        "/api/batch-issue",
        realm.admin_key,
        {"codes": [{"testType": "confirmed", "symptomDate": today} for _ in range(2)]},
    )
    uuids = [code["uuid"] for code in batch["codes"]]
    assert all(uuids), batch
    assert (
        call(client, "/api/checkcodestatus", realm.admin_key, {"uuid": uuids[0]})["claimed"]
        is False
    )
    call(client, "/api/expirecode", realm.admin_key, {"uuid": uuids[1]})  # and an audit entry

    wrong = client.post(
        "/api/verify", json={"code": "00000000"}, headers={"X-API-Key": realm.device_key}
    )
    assert wrong.status_code == 400, wrong.text  # counted towards the lockouts

    certificate(client, realm, clock, "confirmed", secrets.token_bytes(32))
    assert client.get(f"/jwks/{realm.id}").status_code == 200


def publish_body(
    keys: Sequence[dict[str, Any]], secret: bytes, certificate: str, **fields: str
) -> dict[str, Any]:
    return {
        "temporaryExposureKeys": list(keys),
        "healthAuthorityID": APP_ID,
        "verificationPayload": certificate,
        "hmacKey": base64.b64encode(secret).decode(),
        **fields,
    }


def run_keyserver_flows(
    client: TestClient,
    realm: Realm,
    clock: Clock,
    context: KeyserverContext,
    fetch: Callable[[str], bytes],
) -> None:
    refreshed = run_job(jwks_refresh_job(context, fetch), now=clock())
    (authority,) = refreshed.summary["authorities"]
    assert (authority["error"], authority["inserted"], authority["revoked"]) == (None, 1, 1)
    clock.advance(timedelta(minutes=1))  # a mirrored key is valid from just after the refresh

    today = interval_number(utc_midnight(clock()))
    keys: list[dict[str, Any]] = [
        {
            "key": base64.b64encode(secrets.token_bytes(16)).decode(),
            "rollingStartNumber": today - 144 * (day + 1),
            "rollingPeriod": 144,
            "transmissionRisk": 0,
        }
        for day in range(14)
    ]
    secret = secrets.token_bytes(32)
    tekmac = compute_tekmac(
        secret, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    )
    likely = certificate(client, realm, clock, "likely", tekmac)
    first = client.post("/v1/publish", json=publish_body(keys, secret, likely))
    assert first.status_code == 200, first.text
    assert first.json()["insertedExposures"] == 14
    confirmed = certificate(client, realm, clock, "confirmed", tekmac)
    token = first.json()["revisionToken"]
    second = client.post(
        "/v1/publish", json=publish_body(keys, secret, confirmed, revisionToken=token)
    )
    assert second.status_code == 200, second.text

    clock.advance(timedelta(days=1))
    batches = run_job(export_batches_job(context), now=clock())
    worker = run_job(export_worker_job(context), now=clock())
    assert batches.summary["created"] >= 1
    assert worker.summary["failures"] == []
    assert worker.summary["batches_completed"] == batches.summary["created"]
    assert worker.summary["padding_keys"] > 0
    index = client.get("/exports/vn/index.txt")
    assert index.status_code == 200
    assert index.text

    clock.advance(timedelta(days=30))
    assert run_job(revision_key_rotation_job(context), now=clock()).summary["created"]
    clock.advance(timedelta(days=30))
    assert run_job(revision_key_rotation_job(context), now=clock()).summary["destroyed"]


def run_every_job(jobs: Sequence[Job], clock: Clock) -> dict[str, Any]:
    """Every scheduled job once at ``clock()``; their summaries by name."""
    summaries = {}
    for job in jobs:
        result = run_job(job, now=clock())
        assert result.ran, job.name
        summaries[job.name] = result.summary
    return summaries


def retire_as_owner(schema: GrantedSchema, data_dir: Path, realm: Realm, clock: Clock) -> None:
    """The operator rotates the realm's certificate key and disables the device key
    (``exposure admin``): what they leave behind is the purge's to delete."""
    with open_as(schema, lambda _: schema.cluster.roles.owner, data_dir, clock) as owner:
        bundle = owner.verification
        with unit_of_work(bundle.session_factory) as session:
            found = realms.find_realm(session, str(realm.id))
            signing_keys.rotate_certificate_key(
                session, bundle.context, found, now=clock(), actor="test"
            )
            realms.disable_api_key(
                session, api_key_id=realm.device_key_id, now=clock(), actor="test"
            )


def count(owner: Engine, table: type[Any], *conditions: ColumnElement[bool]) -> int:
    with unit_of_work(make_session_factory(owner)) as session:
        return session.scalar(select(func.count()).select_from(table).where(*conditions)) or 0


def test_each_service_runs_every_flow_as_its_own_role(
    shared: GrantedSchema, tmp_path: Path
) -> None:
    clock = Clock()
    keyserver_settings = KeyserverSettings(
        kek=kek_setting("keyserver"), export_min_records=100, export_padding_range=0
    )
    # The shortest log retention allowed, so a second purge run truncates the log too.
    retention_settings = RetentionSettings(log=timedelta(days=90))
    owner = create_database_engine(shared.owner_url)
    realm = set_up_as_owner(shared, tmp_path / "admin", clock)
    # The services, each logged in as its own role, opened as `exposure serve` opens them.
    deployment = open_as(
        shared,
        shared.cluster.roles.login,
        tmp_path / "server",
        clock,
        keyserver=keyserver_settings,
        retention=retention_settings,
    )
    context = deployment.keyserver.context
    try:
        app = create_app(deployment)
        with TestClient(app) as client:

            def fetch(url: str) -> bytes:  # the key server's JWKS refresh, served by the app
                response = client.get(urlsplit(url).path)
                response.raise_for_status()
                return response.content

            run_verification_flows(client, realm, clock)
            run_keyserver_flows(client, realm, clock, context, fetch)
            assert count(owner, Exposure, Exposure.revised_report_type == "confirmed") == 14

            retire_as_owner(shared, tmp_path / "admin", realm, clock)
            clock.advance(timedelta(days=30))
            # The same jobs `exposure serve` schedules, built as it builds them.
            jobs = [
                jwks_refresh_job(context, fetch) if job.name == "jwks-refresh" else job
                for job in deployment.jobs()
            ]
            ran = run_every_job(jobs, clock)
            assert {"purge-keyserver", "purge-verification"} <= set(ran)

            auditor = {"X-API-Key": realm.auditor_key}
            for service in SERVICES:
                log = client.get("/audit/log", params={"service": service.value}, headers=auditor)
                assert log.status_code == 200, log.text
                assert log.json()["entries"]
            assert client.get("/audit/compliance", headers=auditor).status_code == 200
            ready = client.get("/health/ready")
            assert ready.status_code == 200, ready.text

            clock.advance(timedelta(days=91))
            purges = [bundle.retention.job() for bundle in deployment.bundles.values()]
            truncated = run_every_job(purges, clock)
            for summary in truncated.values():
                (log_kind,) = [kind for kind in summary["kinds"] if kind["kind"] == LOG_KIND]
                assert log_kind["rows"] > 0, summary

        # What the purges were there to remove is gone.
        assert count(owner, Exposure) == 0
        assert count(owner, ExportFile) == 0
        assert count(owner, HealthAuthorityKey, HealthAuthorityKey.version == "withdrawn") == 0
        assert count(owner, ApiKey, ApiKey.id == realm.device_key_id) == 0
        assert count(owner, SigningKey, SigningKey.retired_at.is_not(None)) == 0
    finally:
        deployment.close()
        owner.dispose()


def _console_form(client: TestClient, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return {"csrf": found.group(1)}


def test_a_realm_admin_s_console_changes_run_as_the_verification_role(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A schema of its own: the shared one already has the realm the flows test made.
    schema = create_granted_schema(cluster, ("heads",))
    clock = Clock()
    password = secrets.token_urlsafe(16)
    realm = set_up_as_owner(schema, tmp_path / "admin", clock)
    with open_as(schema, lambda _: schema.cluster.roles.owner, tmp_path / "admin", clock) as owner:
        bundle = owner.verification
        assert bundle.console is not None
        with unit_of_work(bundle.session_factory) as session:
            # The admin, and an account whose authenticator app the admin will remove.
            for username, role, with_totp in (
                ("boss", StaffRole.REALM_ADMIN, False),
                ("lost.phone", StaffRole.LAB, True),
            ):
                console_service.create_staff(
                    session,
                    bundle.console,
                    realm=realms.find_realm(session, str(realm.id)),
                    username=username,
                    role=role,
                    password=password,
                    time_zone="Asia/Ho_Chi_Minh",
                    with_totp=with_totp,
                    now=clock(),
                    actor="test",
                )
    deployment = open_as(schema, schema.cluster.roles.login, tmp_path / "server", clock)
    try:
        with TestClient(create_app(deployment)) as client:
            signed_in = client.post(
                "/console/sign-in",
                data={
                    **_console_form(client, "/console/sign-in"),
                    "realm": "lab",
                    "username": "boss",
                    "password": password,
                },
                follow_redirects=False,
            )
            assert signed_in.status_code == 303, signed_in.text
            changes = [
                ("/console/admin/api-keys", {"kind": "device", "name": "ward"}),
                ("/console/admin/api-keys/disable", {"id": str(realm.device_key_id)}),
                (
                    "/console/admin/staff",
                    {"username": "nurse", "role": "lab", "password": password},
                ),
                ("/console/admin/staff/disable", {"username": "nurse"}),
                ("/console/admin/staff/remove-second-factor", {"username": "lost.phone"}),
                (
                    "/console/admin/limits",
                    {
                        "short_code_minutes": "20",
                        "long_code_minutes": "600",
                        "daily_issue_limit": "50",
                    },
                ),
            ]
            for path, fields in changes:
                answer = client.post(
                    path, data={**_console_form(client, "/console/admin"), **fields}
                )
                assert answer.status_code == 200, (path, answer.text)
            # The admin then adds an authenticator app to their own account.
            account = client.get("/console/account").text
            pending = re.search(r'name="pending" value="([^"]+)"', account)
            secret = re.search(r'id="second-factor-secret">([A-Z2-7]+)<', account)
            assert pending is not None
            assert secret is not None
            code = pyotp.TOTP(secret.group(1)).at(clock().timestamp())
            added = client.post(
                "/console/account/second-factor",
                data={
                    **_console_form(client, "/console/account"),
                    "pending": pending.group(1),
                    "code": code,
                },
            )
            assert added.status_code == 200, added.text
            assert 'name="pending"' not in added.text
    finally:
        deployment.close()


# ---- what the roles may not do ---------------------------------------------------------------


def keyserver_refused(tables: set[str]) -> list[str]:
    refused = [
        "DROP TABLE keyserver_exposures",
        "ALTER TABLE keyserver_exposures ADD COLUMN probe integer",
        "ALTER TABLE keyserver_exposures DISABLE TRIGGER ALL",
        "TRUNCATE keyserver_exposures",
        "TRUNCATE keyserver_export_files",
        "CREATE INDEX probe ON keyserver_exposures (origin)",
        "CREATE TABLE probe (id integer)",
        "UPDATE alembic_version SET version_num = version_num",
        "UPDATE sealed_keys SET kek_id = kek_id",
        "DELETE FROM sealed_keys",
        "INSERT INTO auditor_keys (service, name) VALUES ('keyserver', 'rogue')",
        "UPDATE auditor_keys SET disabled_at = NULL",
        "SELECT count(*) FROM verification_codes",
        "SELECT count(*) FROM verification_api_keys",
        "INSERT INTO keyserver_health_authorities (issuer) VALUES ('rogue')",
        "UPDATE keyserver_authorized_apps SET bypass_verification = true",
        "UPDATE keyserver_export_configs SET max_records = 1",
        "DELETE FROM keyserver_signature_infos",
        "UPDATE keyserver_export_files SET status = status",
        "UPDATE rate_limit_windows SET count = 0",
        "SELECT setval('keyserver_export_batches_id_seq', 1)",
    ]
    return refused + _retention_refused(tables)


def verification_refused(tables: set[str]) -> list[str]:
    refused = [
        "DROP TABLE verification_codes",
        "ALTER TABLE verification_tokens ADD COLUMN probe integer",
        "TRUNCATE verification_audit_entries",
        "TRUNCATE verification_codes",
        "CREATE TABLE probe (id integer)",
        "UPDATE alembic_version SET version_num = version_num",
        "UPDATE sealed_keys SET sealed = sealed",
        "INSERT INTO auditor_keys (service, name) VALUES ('verification', 'rogue')",
        "UPDATE auditor_keys SET disabled_at = NULL",
        "UPDATE verification_realms SET disabled_at = NULL",
        "SELECT count(*) FROM keyserver_exposures",
        "SELECT count(*) FROM keyserver_revision_keys",
        "INSERT INTO verification_realms (name) VALUES ('rogue')",
        # A realm admin's console sets code lifetimes and quota; nothing else of a realm.
        "UPDATE verification_realms SET certificate_lifetime_seconds = 3600",
        "UPDATE verification_realms SET allowed_test_types = 'confirmed'",
        "DELETE FROM verification_realms",
        "UPDATE verification_api_keys SET key_hmac = key_hmac",
        "UPDATE verification_api_keys SET realm_id = realm_id",
        "UPDATE verification_staff SET password_hash = password_hash",
        "UPDATE verification_staff SET role = role",
        "UPDATE verification_audit_entries SET diff = ''",
        "UPDATE verification_signing_keys SET retired_at = NULL",
        "SELECT setval('verification_codes_id_seq', 1)",
    ]
    return refused + _retention_refused(tables)


def _retention_refused(tables: set[str]) -> list[str]:
    # The retention log is append-only: a compromised server cannot rewrite its history.
    statements = {
        "retention_log": "UPDATE retention_log SET kind = kind",
        "retention_checkpoints": "UPDATE retention_checkpoints SET body = body",
    }
    return [statement for table, statement in statements.items() if table in tables]


def not_refused(url: str, statements: Iterable[str]) -> list[str]:
    """The statements that ran instead of failing with insufficient_privilege (rolled back)."""
    ran = []
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        for statement in statements:
            try:
                with connection.transaction(force_rollback=True):
                    connection.execute(statement.encode())
            except psycopg.errors.InsufficientPrivilege:
                continue
            ran.append(statement)
    return ran


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.value)
def test_a_service_role_is_refused_everything_else(shared: GrantedSchema, service: Service) -> None:
    tables = tables_in(shared)
    refused = (
        keyserver_refused(tables) if service is Service.KEYSERVER else verification_refused(tables)
    )

    assert not_refused(shared.service_url(service), refused) == []


#: A schema one migration behind this version's head (before sealed keys existed).
EARLIER_TARGETS = (
    "0003_core_retention_log",
    "k0002_keyserver_exports",
    "v0002_verification_auditor_keys",
)


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.value)
def test_a_service_role_cannot_migrate(cluster: Cluster, service: Service) -> None:
    # So `exposure serve` under a service role needs EXPOSURE_MIGRATE_ON_START=false.
    behind = create_granted_schema(cluster, EARLIER_TARGETS)
    engine = create_database_engine(behind.service_url(service))
    try:
        with pytest.raises(ProgrammingError) as refused:
            upgrade_service(engine, service)
    finally:
        engine.dispose()
    assert getattr(refused.value.orig, "sqlstate", None) == "42501"
