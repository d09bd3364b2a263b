"""The verification-flow benchmark (exposure.bench.verification), small, end to end."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from crypto.tokens import jwk_from_public_key, sign_jwt
from exposure.bench import harness
from exposure.bench import verification as bench
from exposure.bench.loadgen import LoadGenerator, LoadRun, run_event_loop
from exposure.cli import app
from tests.conftest import postgres_base_url

# Whatever a loaded machine manages, a working server does more than this.
SLOWEST_SANE_FLOWS_PER_SECOND = 1.0


def assert_sane(result: bench.VerificationBenchmarkResult, flows: int) -> None:
    assert result.flows_completed == result.flows_attempted == flows
    assert result.flows_failed == 0
    assert result.errors == {}
    assert result.warmup_errors == {}
    assert result.warmup_flows == result.concurrency + 1
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
    # /health gets as many requests as the flows took.
    assert result.health.ok == result.health.requests == 3 * flows
    assert result.health.requests_per_second > 0
    assert result.verified_certificates == min(flows, bench.DEFAULT_SAMPLE_SIZE)
    assert result.cpu.requests == 3 * flows
    assert result.cpu.server_seconds is not None
    assert result.cpu.server_seconds > 0
    assert result.cpu.client_per_request_ms is not None
    assert result.cpu.client_per_request_ms > 0
    assert result.event_loop in {"uvloop", "asyncio"}
    assert result.machine.cores >= 1


def test_cli_runs_flows_on_sqlite() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "verification", "--flows", "12", "--concurrency", "3", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert data["database"] == "sqlite"
    assert data["cpu"]["database_seconds"] is None
    assert set(data["latency"]) == {"issue", "verify", "certificate", "flow"}
    assert data["health"]["cpu"]["requests"] == 36


@pytest.mark.postgres
def test_two_server_processes_on_postgresql() -> None:
    # On PostgreSQL: two processes writing one SQLite file may wait out the busy timeout.
    if not harness.serve_supports_workers():
        pytest.skip("exposure serve runs one process only")
    result = bench.run_verification_benchmark(
        12,
        concurrency=4,
        database=bench.Database.POSTGRESQL,
        database_url=postgres_base_url(),
        server_workers=2,
    )
    assert_sane(result, 12)
    assert result.database == "postgresql"
    assert result.server_workers == 2
    assert result.cpu.database_seconds is not None


@pytest.mark.parametrize(
    "arguments",
    [
        {"flows": 0},
        {"concurrency": 0},
        {"time_limit": 0},
        {"server_workers": 0},
        {"database_url": "postgresql+psycopg://postgres@127.0.0.1/test"},
    ],
)
def test_meaningless_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per argument
        bench.run_verification_benchmark(**arguments)  # type: ignore[arg-type]


# ---- the flow against a server that answers wrong ---------------------------------------


def _fake_server(answers: dict[bytes, bytes], seen: list[bytes]) -> asyncio.Server:
    raise NotImplementedError


async def _flows_against(answers: dict[str, tuple[int, object]], tmp_path: Path) -> tuple[LoadRun, bench._Flows, list[bytes]]:
    """Run 5 flows against a server answering each path with a fixed (status, JSON)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                path = head.split(b" ")[1].decode()
                seen.append(head.split(b"\r\n")[0] + b" " + body)
                status, payload = answers[path]
                data = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(data), data)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = harness.BenchServer(
        host="127.0.0.1",
        port=port,
        base_url=f"http://127.0.0.1:{port}",
        pid=os.getpid(),
        log_path=tmp_path / "log",
        environment={},
        database=harness.Database.SQLITE,
        data_dir=tmp_path,
        database_url=None,
        scratch=tmp_path,
    )
    flows = bench._Flows(target, bench._Realm("admin-key", "device-key", "unused"), date.today())
    flows.prepare(5)
    try:
        async with LoadGenerator("127.0.0.1", port, connections=2) as generator:
            run = await generator.run(flows, units=5, time_limit=10)
    finally:
        server.close()
        await server.wait_closed()
    return run, flows, seen


GOOD = {
    "/api/issue": (200, {"code": "12345678"}),
    "/api/verify": (200, {"token": "the-token"}),
    "/api/certificate": (200, {"certificate": "a.b.c"}),
}


def test_a_flow_chains_the_answers(tmp_path: Path) -> None:
    run, flows, seen = run_event_loop(lambda: _flows_against(GOOD, tmp_path))
    assert (run.units_completed, run.requests) == (5, 15)
    assert [issued.certificate for issued in flows.certificates] == ["a.b.c"] * 5
    verifies = [line for line in seen if line.startswith(b"POST /api/verify ")]
    assert verifies == [b'POST /api/verify HTTP/1.1 {"code":"12345678"}'] * 5
    exchanges = [json.loads(line.split(b" ", 3)[3]) for line in seen if b"/api/certificate" in line]
    assert {exchange["token"] for exchange in exchanges} == {"the-token"}
    # Each flow certifies its own TEK HMAC.
    assert len({exchange["ekeyhmac"] for exchange in exchanges}) == 5


@pytest.mark.parametrize(
    ("path", "answer", "error"),
    [
        ("/api/issue", (429, {"errorCode": "quota_exceeded"}), "issue/quota_exceeded"),
        ("/api/verify", (500, "oops"), "verify/http_500"),
        ("/api/certificate", (200, {"certificate": ""}), "certificate/malformed_response"),
        ("/api/certificate", (200, {"cert": "a.b.c"}), "certificate/malformed_response"),
    ],
)
def test_a_wrong_answer_fails_the_flow(
    path: str, answer: tuple[int, object], error: str, tmp_path: Path
) -> None:
    run, flows, _ = run_event_loop(lambda: _flows_against({**GOOD, path: answer}, tmp_path))
    assert (run.units_started, run.units_completed) == (5, 0)
    assert run.errors == {error: 5}
    assert flows.certificates == []
    assert run.unit_latencies == []


# ---- checking certificates ---------------------------------------------------------------


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
