"""The verification-flow benchmark (benchmarks.verification), small, end to end."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from benchmarks import harness
from benchmarks import verification as bench
from benchmarks.loadgen import LoadGenerator, LoadRun, run_event_loop
from benchmarks.rpi import machine_info
from crypto.tokens import jwk_from_public_key, sign_jwt
from exposure.cli import app
from tests.conftest import postgres_base_url
from tests.unit.benchmarks.expectations import expected_cost_ratio
from tests.unit.benchmarks.fake_http import answer, fake_server, request_line, target

# Whatever a loaded machine manages, a working server does more than this.
SLOWEST_SANE_FLOWS_PER_SECOND = 1.0


@pytest.mark.postgres
def test_cli_runs_flows_on_postgresql() -> None:
    outcome = CliRunner().invoke(
        app,
        [
            "bench",
            "verification",
            *("--flows", "12", "--concurrency", "3", "--database", "postgresql"),
            *("--database-url", postgres_base_url(), "--json"),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert data["database"] == "postgresql"
    assert data["flows_completed"] == data["flows_attempted"] == 12
    assert data["errors"] == data["warmup_errors"] == {}
    assert data["warmup_flows"] == 4
    assert not data["timed_out"]
    assert data["flows_per_second"] > SLOWEST_SANE_FLOWS_PER_SECOND
    assert data["requests_per_second"] == pytest.approx(3 * data["flows_per_second"], rel=0.01)
    latency = data["latency"]
    assert {name: summary["count"] for name, summary in latency.items()} == {
        "issue": 12,
        "verify": 12,
        "certificate": 12,
    }
    for summary in latency.values():
        assert 0 < summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # Each step ran alone, and its cost is its server CPU against /health's in this run.
    steps = data["steps"]
    assert list(steps) == list(bench.STEPS)
    health_ms = data["health"]["cpu"]["server_per_request_ms"]
    for step in steps.values():
        assert step["requests"] == step["ok"] == 12
        # Read from /proc in clock ticks: twelve requests may fit in less than one.
        assert step["cpu"]["server_seconds"] >= 0
        assert step["cost_ratio"] == pytest.approx(
            expected_cost_ratio(step["cpu"]["server_per_request_ms"], health_ms), abs=0.01
        )
    ratios = [step["cost_ratio"] for step in steps.values()]
    assert data["cost_ratio"] == (None if None in ratios else max(ratios))
    # /health gets as many requests as the steps took.
    assert data["health"]["ok"] == data["health"]["requests"] == 36
    assert data["verified_certificates"] == 12
    cpu = data["cpu"]
    assert cpu["requests"] == 36
    assert cpu["server_seconds"] == pytest.approx(
        sum(step["cpu"]["server_seconds"] for step in steps.values()), abs=0.01
    )
    assert cpu["database_seconds"] is not None
    assert cpu["client_per_request_ms"] > 0


def canned_result() -> bench.VerificationBenchmarkResult:
    summary = harness.summarize_latencies([0.01, 0.02])
    cpu = harness.CpuUsage(
        requests=300,
        server_seconds=1.0,
        client_seconds=0.1,
        database_seconds=None,
        other_seconds=0.0,
        machine_utilization=0.9,
        server_per_request_ms=3.3,
        client_per_request_ms=0.3,
    )
    health = harness.HealthResult(300, 300, 0, 0.5, 600.0, summary, {}, cpu)
    step = bench.StepCost(
        requests=100, ok=98, seconds=0.3, requests_per_second=326.7, cpu=cpu, cost_ratio=2.25
    )
    return bench.VerificationBenchmarkResult(
        database="sqlite",
        flows_requested=100,
        flows_attempted=100,
        flows_completed=98,
        flows_failed=2,
        concurrency=4,
        client_addresses=4,
        server_workers=1,
        seconds=0.8,
        flows_per_second=123.4,
        requests_per_second=370.2,
        timed_out=False,
        latency={name: summary for name in bench.STEPS},
        errors={"verify/internal_server_error": 2},
        warmup_flows=5,
        warmup_errors={},
        health=health,
        steps={name: step for name in bench.STEPS},
        cost_ratio=2.25,
        verified_certificates=32,
        cpu=cpu,
        event_loop="uvloop",
        machine=machine_info(),
    )


def test_results_print_as_tables_and_failures_set_the_exit_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "run_verification_benchmark", lambda *_a, **_k: canned_result())
    outcome = CliRunner().invoke(app, ["bench", "verification"])
    # Printed in full, and the exit status says some flows failed.
    assert outcome.exit_code == 1
    for text in (
        "Verification flow benchmark",
        "flows/second",
        "123.4",
        "/health",
        "uvloop",
        "2.25x",
    ):
        assert text in outcome.output
    assert "verify/internal_server_error" in outcome.output
    assert "benchmark failed: 2 flows failed (0 in warm-up)" in outcome.output


@pytest.mark.parametrize(
    "arguments",
    [
        {"flows": 0},
        {"concurrency": 0},
        {"time_limit": 0},
        {"server_workers": 0},
        {"database_url": "postgresql+psycopg://postgres@127.0.0.1/test"},
        {"client_addresses": 0},
        {"client_addresses": 62_501},
    ],
)
def test_meaningless_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per argument
        bench.run_verification_benchmark(**arguments)  # type: ignore[arg-type]


# ---- the flow against a server that answers wrong ---------------------------------------


async def _flows_against(
    answers: Mapping[str, tuple[int, object]], scratch: Path
) -> tuple[LoadRun, bench._Flows, list[bytes]]:
    """Run 5 flows against a server answering each path with a fixed (status, JSON)."""
    seen: list[bytes] = []

    async def respond(head: bytes, body: bytes) -> bytes:
        line = request_line(head)
        seen.append(line + b" " + body)
        status, payload = answers[line.split(b" ")[1].decode()]
        return answer(status, json.dumps(payload).encode())

    async with fake_server(respond) as port:
        realm = bench._Realm("admin-key", "device-key", "unused")
        flows = bench._Flows(target(port, scratch), realm, date(2026, 1, 2))
        flows.prepare(5)
        async with LoadGenerator("127.0.0.1", port, connections=2) as generator:
            run = await generator.run(flows, units=5, time_limit=10)
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


async def _steps_against(
    answers: Mapping[str, tuple[int, object]], scratch: Path
) -> tuple[dict[str, LoadRun], bench._Flows, list[bytes]]:
    """Run 4 flows step by step (every issue, then every verify, then every certificate)."""
    seen: list[bytes] = []

    async def respond(head: bytes, body: bytes) -> bytes:
        line = request_line(head)
        seen.append(line + b" " + body)
        status, payload = answers[line.split(b" ")[1].decode()]
        return answer(status, json.dumps(payload).encode())

    async with fake_server(respond) as port:
        flows = bench._Flows(target(port, scratch), bench._Realm("a", "d", "u"), date(2026, 1, 2))
        flows.prepare(4)
        runs: dict[str, LoadRun] = {}
        async with LoadGenerator("127.0.0.1", port, connections=2) as generator:
            runs["issue"] = await generator.run(flows.issue, units=4, time_limit=10)
            runs["verify"] = await generator.run(
                flows.verify, units=len(flows.codes), time_limit=10
            )
            runs["certificate"] = await generator.run(
                flows.certificate, units=len(flows.tokens), time_limit=10
            )
    return runs, flows, seen


def test_steps_run_as_phases_each_feeding_the_next(tmp_path: Path) -> None:
    runs, flows, seen = run_event_loop(lambda: _steps_against(GOOD, tmp_path))
    assert {step: run.units_completed for step, run in runs.items()} == {
        "issue": 4,
        "verify": 4,
        "certificate": 4,
    }
    # Every issue came before any verify, and every verify before any exchange.
    paths = [line.split(b" ")[1] for line in seen]
    assert paths == [b"/api/issue"] * 4 + [b"/api/verify"] * 4 + [b"/api/certificate"] * 4
    assert len(flows.certificates) == 4
    assert len({issued.ekeyhmac for issued in flows.certificates}) == 4


def test_a_failed_step_leaves_nothing_for_the_next_phase(tmp_path: Path) -> None:
    answers = {**GOOD, "/api/verify": (400, {"errorCode": "code_invalid"})}
    runs, flows, _ = run_event_loop(lambda: _steps_against(answers, tmp_path))
    assert runs["verify"].errors == {"verify/code_invalid": 4}
    assert runs["certificate"].units_started == 0
    assert flows.certificates == []


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
