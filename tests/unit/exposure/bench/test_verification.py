"""The verification-flow benchmark (exposure.bench.verification), run small end to end."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from typer.testing import CliRunner

from crypto.tokens import jwk_from_public_key, sign_jwt
from exposure.bench import verification as bench
from exposure.cli import app
from exposure.db import create_database_engine
from tests.conftest import postgres_base_url

# Whatever a loaded machine manages, a working server does more than this.
SLOWEST_SANE_FLOWS_PER_SECOND = 1.0


def assert_sane(result: bench.VerificationBenchmarkResult, flows: int) -> None:
    assert result.flows_completed == result.flows_attempted == flows
    assert result.flows_failed == 0
    assert result.errors == {}
    assert result.warmup_errors == {}
    assert not result.timed_out
    assert result.flows_per_second > SLOWEST_SANE_FLOWS_PER_SECOND
    assert result.requests_per_second == pytest.approx(3 * result.flows_per_second, rel=0.01)
    for name in (*bench.STEPS, "flow"):
        summary = result.latency[name]
        assert summary.count == flows
        assert 0 < summary.p50_ms <= summary.p95_ms <= summary.p99_ms <= summary.max_ms
    # A flow is its three steps one after the other.
    assert result.latency["flow"].mean_ms >= sum(
        result.latency[step].mean_ms for step in bench.STEPS
    )
    assert result.health.ok == result.health.requests == flows
    assert result.health.requests_per_second > 0
    assert result.verified_certificates == min(flows, bench.DEFAULT_SAMPLE_SIZE)
    assert result.server_cpu_seconds is not None
    assert result.server_cpu_seconds > 0
    assert result.machine.cores >= 1


def test_sqlite_flows_end_to_end() -> None:
    result = bench.run_verification_benchmark(20, concurrency=4)
    assert_sane(result, 20)
    assert result.database == "sqlite"
    assert result.database_cpu_seconds is None


@pytest.mark.postgres
def test_postgresql_flows_end_to_end() -> None:
    result = bench.run_verification_benchmark(
        20,
        concurrency=4,
        database=bench.Database.POSTGRESQL,
        database_url=postgres_base_url(),
    )
    assert_sane(result, 20)
    assert result.database == "postgresql"


def _fail_while_serving(seen: list[tuple[int, Path]]) -> None:
    with bench._running_server(bench.Database.SQLITE, None, 1, 100) as server:
        seen.append((server.pid, server.log_path.parent))
        os.kill(server.pid, 0)  # it runs
        raise RuntimeError("the run fails midway")


def test_server_stops_and_files_go_when_the_run_fails() -> None:
    seen: list[tuple[int, Path]] = []
    with pytest.raises(RuntimeError, match="fails midway"):
        _fail_while_serving(seen)
    [(pid, scratch)] = seen
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not scratch.exists()


def _schema_exists(base_url: str, schema: str) -> bool:
    engine = create_database_engine(base_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
                {"name": schema},
            ).first()
    finally:
        engine.dispose()
    return found is not None


def _fail_inside_schema(base_url: str, seen: list[str]) -> None:
    with bench._postgres_schema(base_url) as url:
        schema = unquote(url).rpartition("search_path=")[2]
        seen.append(schema)
        assert schema.startswith("bench_")
        assert _schema_exists(base_url, schema)
        raise RuntimeError("the run fails midway")


@pytest.mark.postgres
def test_postgresql_schema_is_dropped_afterwards() -> None:
    base = postgres_base_url()
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="fails midway"):
        _fail_inside_schema(base, seen)
    assert not _schema_exists(base, seen[0])


def test_cli_prints_json() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "verification", "--flows", "6", "--concurrency", "2", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert data["flows_completed"] == 6
    assert data["errors"] == {}
    assert set(data["latency"]) == {"issue", "verify", "certificate", "flow"}


@pytest.mark.parametrize(
    "arguments",
    [
        {"flows": 0},
        {"concurrency": 0},
        {"time_limit": 0},
        {"database_url": "postgresql+psycopg://postgres@127.0.0.1/test"},
    ],
)
def test_meaningless_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per argument
        bench.run_verification_benchmark(**arguments)  # type: ignore[arg-type]


def test_several_server_processes_need_serve_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "serve_supports_workers", lambda: False)
    with pytest.raises(ValueError, match="--workers"):
        bench.run_verification_benchmark(10, server_workers=2)


@pytest.mark.postgres
def test_two_server_processes() -> None:
    # On PostgreSQL: two processes writing one SQLite file may wait out the busy timeout.
    if not bench.serve_supports_workers():
        pytest.skip("exposure serve runs one process only")
    result = bench.run_verification_benchmark(
        12,
        concurrency=4,
        database=bench.Database.POSTGRESQL,
        database_url=postgres_base_url(),
        server_workers=2,
    )
    assert_sane(result, 12)
    assert result.server_workers == 2


def test_percentiles_are_nearest_rank() -> None:
    summary = bench.summarize_latencies([index / 1000 for index in range(1, 101)])
    assert (summary.count, summary.p50_ms, summary.p95_ms, summary.p99_ms) == (100, 50, 95, 99)
    assert summary.max_ms == 100
    assert summary.mean_ms == pytest.approx(50.5)
    assert bench.summarize_latencies([]).count == 0


def _certificate(
    key: ec.EllipticCurvePrivateKey, *, tekmac: str, symptom: date, now: datetime
) -> str:
    midnight = datetime(symptom.year, symptom.month, symptom.day, tzinfo=UTC)
    claims = {
        "iss": "exposure-verification/default",
        "aud": bench.CERTIFICATE_AUDIENCE,
        "reportType": "confirmed",
        "tekmac": tekmac,
        "symptomOnsetInterval": int(midnight.timestamp()) // 600,
        "iat": int(now.timestamp()) - 5,
        "exp": int(now.timestamp()) + 900,
    }
    return sign_jwt(key, claims, kid="r1v1")


def test_certificate_check_catches_a_broken_server() -> None:
    now = datetime.now(UTC)
    symptom = (now - timedelta(days=2)).date()
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = [jwk_from_public_key(key.public_key(), "r1v1")]
    good = bench.IssuedCertificate(
        _certificate(key, tekmac="AAAA", symptom=symptom, now=now), "AAAA", symptom, now
    )
    assert bench.verify_certificates([good], jwks) == 1

    wrong_mac = bench.IssuedCertificate(good.certificate, "BBBB", symptom, now)
    with pytest.raises(bench.CertificateMismatchError, match="tekmac"):
        bench.verify_certificates([wrong_mac], jwks)

    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = bench.IssuedCertificate(
        _certificate(other_key, tekmac="AAAA", symptom=symptom, now=now), "AAAA", symptom, now
    )
    with pytest.raises(bench.CertificateMismatchError, match="published keys"):
        bench.verify_certificates([forged], jwks)

    garbage = bench.IssuedCertificate("not-a-jwt", "AAAA", symptom, now)
    with pytest.raises(bench.CertificateMismatchError):
        bench.verify_certificates([garbage], jwks)


def test_search_path_is_added_to_the_url() -> None:
    url = bench.with_search_path("postgresql+psycopg://u@h/db", "bench_1")
    assert url == "postgresql+psycopg://u@h/db?options=-csearch_path%3Dbench_1"
    assert bench.with_search_path("postgresql+psycopg://u@h/db?a=b", "s").endswith(
        "?a=b&options=-csearch_path%3Ds"
    )
