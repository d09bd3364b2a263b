"""The publish benchmark (benchmarks.publish): its bodies, its accounting, its checks.

The bodies are checked with the same crypto the key server uses (crypto.tekmac,
crypto.tokens). The accounting runs against a small Starlette app served by uvicorn that
validates each publish as the specification says and can be told to answer wrongly; one
end-to-end run uses the real server.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from benchmarks import harness
from benchmarks import publish as bench
from benchmarks.loadgen import run_event_loop
from benchmarks.rpi import machine_info
from crypto.errors import InvalidMac, InvalidToken
from crypto.tekmac import SignedKey, verify_tekmac
from crypto.tokens import verify_jwt
from exposure.api.v1 import MAX_PUBLISH_BODY_BYTES, PublishRequest
from exposure.cli import app
from exposure.db import create_database_engine
from exposure.tek import interval_number, utc_midnight
from keyserver.models import Exposure
from tests.unit.benchmarks.expectations import expected_cost_ratio
from tests.unit.benchmarks.fake_http import target

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def authority() -> bench.BenchAuthority:
    return bench.BenchAuthority.generate()


def _verified(authority: bench.BenchAuthority, payload: dict[str, Any], now: datetime) -> None:
    """What the key server checks of a publish (§3.3, §3.4); raises if any check fails."""
    claims = verify_jwt(
        payload["verificationPayload"],
        public_keys={authority.kid: authority.private_key.public_key()},
        audience=authority.audience,
        issuer=authority.issuer,
        now=now,
    )
    keys = [
        SignedKey(
            key["key"], key["rollingStartNumber"], key["rollingPeriod"], key["transmissionRisk"]
        )
        for key in payload["temporaryExposureKeys"]
    ]
    verify_tekmac(base64.b64decode(payload["hmacKey"]), keys, base64.b64decode(claims["tekmac"]))


# ---- the bodies ---------------------------------------------------------------------------


def test_a_publish_is_complete_and_its_certificate_and_mac_verify(
    authority: bench.BenchAuthority,
) -> None:
    payload = bench.publish_payload(authority, now=NOW)
    # The wire model the server parses accepts it as it is, with nothing unknown.
    parsed = PublishRequest.model_validate(payload)
    assert parsed.healthAuthorityID == authority.app_id
    _verified(authority, payload, NOW + timedelta(minutes=14))

    keys = payload["temporaryExposureKeys"]
    assert len(keys) == bench.KEYS_PER_PUBLISH == 14
    assert len({key["key"] for key in keys}) == 14
    assert all(len(base64.b64decode(key["key"])) == 16 for key in keys)
    today = interval_number(utc_midnight(NOW))
    assert sorted(key["rollingStartNumber"] for key in keys) == [
        today - 144 * day for day in range(14, 0, -1)
    ]
    assert {(key["rollingPeriod"], key["transmissionRisk"]) for key in keys} == {(144, 0)}
    assert len(base64.b64decode(payload["hmacKey"])) == 32
    assert len(payload["padding"]) >= 1_000
    assert len(json.dumps(payload)) < MAX_PUBLISH_BODY_BYTES


def test_the_certificate_claims_what_the_reference_expects(
    authority: bench.BenchAuthority,
) -> None:
    payload = bench.publish_payload(authority, now=NOW)
    claims = verify_jwt(
        payload["verificationPayload"],
        public_keys={authority.kid: authority.private_key.public_key()},
        audience=authority.audience,
        issuer=authority.issuer,
        now=NOW,
        required_claims=("exp", "iat", "nbf", "tekmac", "reportType"),
    )
    assert claims["reportType"] == "confirmed"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["nbf"] == claims["iat"] == int(NOW.timestamp())
    onset = interval_number(utc_midnight(NOW) - timedelta(days=2))
    assert claims["symptomOnsetInterval"] == onset
    # Every key is within 14 days of the onset, so none is dropped for it.
    assert all(
        abs(key["rollingStartNumber"] - onset) // 144 <= 14
        for key in payload["temporaryExposureKeys"]
    )
    # Expired after 15 minutes: the timed phase must fit in that.
    with pytest.raises(InvalidToken):
        _verified(authority, payload, NOW + timedelta(minutes=15, seconds=1))


def test_a_changed_key_breaks_the_mac(authority: bench.BenchAuthority) -> None:
    payload = bench.publish_payload(authority, now=NOW)
    payload["temporaryExposureKeys"][3]["rollingStartNumber"] += 1
    with pytest.raises(InvalidMac):
        _verified(authority, payload, NOW)


def test_prepared_publishes_are_distinct_requests(authority: bench.BenchAuthority) -> None:
    prepared = bench.publish_requests(authority, 3, host="127.0.0.1:1", now=NOW)
    assert len({key for publish in prepared for key, _ in publish.keys}) == 3 * 14
    for publish in prepared:
        head, _, body = publish.request.data.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /v1/publish HTTP/1.1\r\n")
        assert b"Content-Type: application/json" in head
        assert f"Content-Length: {len(body)}".encode() in head
        payload = json.loads(body)
        _verified(authority, payload, NOW)
        assert [base64.b64decode(key["key"]) for key in payload["temporaryExposureKeys"]] == [
            key for key, _ in publish.keys
        ]


@pytest.mark.parametrize(
    "arguments",
    [
        {"publishes": 0},
        {"concurrency": 0},
        {"time_limit": 0},
        {"time_limit": bench.MAX_TIME_LIMIT + 1},
        {"server_workers": 0},
        {"database_url": "postgresql+psycopg://postgres@127.0.0.1/test"},
    ],
)
def test_meaningless_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per argument
        bench.run_publish_benchmark(**arguments)  # type: ignore[arg-type]


# ---- sending them to a server that checks them ---------------------------------------------


class FakeKeyServer:
    """Validates each publish as the key server must; ``wrong`` says how to misbehave."""

    def __init__(self, authority: bench.BenchAuthority, wrong: str = "") -> None:
        self.authority = authority
        self.wrong = wrong
        self.received = 0
        self.valid = 0

    async def publish(self, request: Request) -> JSONResponse:
        payload = json.loads(await request.body())
        self.received += 1
        try:
            _verified(self.authority, payload, datetime.now(UTC))
        except (InvalidToken, InvalidMac):
            code = "health_authority_verification_certificate_invalid"
            return JSONResponse({"code": code, "error": "no"}, status_code=401)
        self.valid += 1
        inserted = len(payload["temporaryExposureKeys"])
        if self.wrong == "fewer" and self.received % 2 == 0:
            inserted -= 1
        if self.wrong == "unauthorized":
            return JSONResponse({"code": "unknown_health_authority_id"}, status_code=401)
        if self.wrong == "html":
            return JSONResponse("<html>", status_code=200)
        return JSONResponse(
            {"revisionToken": "dG9rZW4=", "insertedExposures": inserted, "padding": "AAAA"}
        )

    async def health(self, _request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/publish", self.publish, methods=["POST"]),
                Route("/health", self.health),
            ]
        )


@contextmanager
def serving(application: Starlette) -> Iterator[int]:
    """Serve ``application`` with uvicorn in a thread; yield its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def _measure(
    fake: FakeKeyServer, tmp_path: Path, *, warmup: int = 3, publishes: int = 12
) -> bench.MeasuredPublishes:
    now = datetime.now(UTC)
    with serving(fake.app()) as port:
        prepared = bench.publish_requests(
            fake.authority, warmup + publishes, host=f"127.0.0.1:{port}", now=now
        )
        return run_event_loop(
            lambda: bench.measure_publishes(
                target(port, tmp_path),
                prepared[:warmup],
                prepared[warmup:],
                concurrency=3,
                time_limit=20,
            )
        )


def test_every_publish_is_sent_once_and_counted(
    authority: bench.BenchAuthority, tmp_path: Path
) -> None:
    fake = FakeKeyServer(authority)
    measured = _measure(fake, tmp_path)
    assert fake.received == fake.valid == 15
    assert measured.warmup_publishes == 3
    assert measured.warmup_errors == {}
    run = measured.run
    assert (run.units_started, run.units_completed, run.requests) == (12, 12, 12)
    assert run.errors == {}
    assert len(run.latencies["publish"]) == 12
    assert len(measured.acknowledged) == 15
    assert len({publish.request.data for publish in measured.acknowledged}) == 15
    assert measured.cpu.requests == 12
    assert measured.health.ok == 12


@pytest.mark.parametrize(
    ("wrong", "errors", "accepted"),
    [
        ("fewer", {"publish/inserted_13": 6}, 6),
        ("unauthorized", {"publish/unknown_health_authority_id": 12}, 0),
        ("html", {"publish/inserted_None": 12}, 0),
    ],
)
def test_a_server_that_answers_wrong_gets_no_credit(
    authority: bench.BenchAuthority,
    tmp_path: Path,
    wrong: str,
    errors: dict[str, int],
    accepted: int,
) -> None:
    # No warm-up here, so the server's count of requests matches the timed run's.
    measured = _measure(FakeKeyServer(authority, wrong), tmp_path, warmup=0)
    assert measured.run.units_completed == accepted
    assert measured.run.errors == errors
    assert len(measured.acknowledged) == accepted
    assert len(measured.run.latencies.get("publish", [])) == accepted


def test_certificates_of_another_authority_are_refused(
    authority: bench.BenchAuthority, tmp_path: Path
) -> None:
    # Same issuer, audience and kid, another key: a server that checks refuses them all.
    impostor = bench.BenchAuthority.generate()
    fake = FakeKeyServer(authority)
    with serving(fake.app()) as port:
        prepared = bench.publish_requests(
            impostor, 2, host=f"127.0.0.1:{port}", now=datetime.now(UTC)
        )
        rejected = run_event_loop(
            lambda: bench.measure_publishes(
                target(port, tmp_path), [], prepared, concurrency=1, time_limit=20
            )
        )
    assert fake.valid == 0
    assert rejected.run.errors == {"publish/health_authority_verification_certificate_invalid": 2}
    assert rejected.acknowledged == []


# ---- what the server stored ------------------------------------------------------------------


def _store(url: str, publishes: list[bench.PreparedPublish], *, shift: int = 0) -> None:
    engine = create_database_engine(url)
    try:
        with Session(engine) as session, session.begin():
            for publish in publishes:
                for key, start in publish.keys:
                    session.add(
                        Exposure(
                            key=key,
                            transmission_risk=2,
                            regions=",VN,",
                            interval_number=start + shift,
                            interval_count=144,
                            created_at=NOW,
                            report_type="confirmed",
                        )
                    )
    finally:
        engine.dispose()


def test_stored_keys_must_match_what_was_acknowledged(
    database_url: str, authority: bench.BenchAuthority
) -> None:
    prepared = bench.publish_requests(authority, 4, host="h", now=NOW)
    _store(database_url, prepared[:3])
    assert bench.check_stored_keys(database_url, prepared[:3], sample_size=3) == 42
    # A publish acknowledged but not stored voids the run.
    with pytest.raises(bench.PublishMismatchError, match="acknowledged 56 keys but stores 42"):
        bench.check_stored_keys(database_url, prepared, sample_size=4)


def test_stored_keys_must_carry_the_intervals_sent(
    database_url: str, authority: bench.BenchAuthority
) -> None:
    prepared = bench.publish_requests(authority, 1, host="h", now=NOW)
    _store(database_url, prepared, shift=144)
    with pytest.raises(bench.PublishMismatchError, match="differs"):
        bench.check_stored_keys(database_url, prepared, sample_size=1)


def test_results_print_as_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = harness.summarize_latencies([0.01, 0.03])
    cpu = harness.CpuUsage(
        requests=100,
        server_seconds=1.0,
        client_seconds=0.03,
        database_seconds=0.5,
        other_seconds=0.1,
        machine_utilization=1.0,
        server_per_request_ms=10.0,
        client_per_request_ms=0.3,
    )
    health = harness.HealthResult(100, 100, 0, 0.2, 500.0, summary, {}, cpu)
    result = bench.PublishBenchmarkResult(
        database="postgresql",
        publishes_requested=100,
        publishes_attempted=100,
        publishes_accepted=100,
        publishes_failed=0,
        keys_per_publish=14,
        concurrency=8,
        server_workers=2,
        seconds=1.0,
        publishes_per_second=100.0,
        timed_out=False,
        latency=summary,
        errors={},
        warmup_publishes=8,
        warmup_errors={},
        health=health,
        health_share=0.2,
        cost_ratio=2.4,
        stored_exposures=1_512,
        checked_publishes=32,
        cpu=cpu,
        event_loop="uvloop",
        machine=machine_info(),
    )
    monkeypatch.setattr(bench, "run_publish_benchmark", lambda *_a, **_k: result)
    outcome = CliRunner().invoke(app, ["bench", "publish"])
    assert outcome.exit_code == 0, outcome.output
    for text in ("Publish benchmark", "publishes/second", "20.0%", "1,512 / 32", "8 / 2"):
        assert text in outcome.output
    assert "Failed requests" not in outcome.output


def test_the_cli_refuses_a_time_limit_certificates_do_not_outlive() -> None:
    outcome = CliRunner().invoke(app, ["bench", "publish", "--time-limit", "900"])
    assert outcome.exit_code == 2


# ---- end to end -----------------------------------------------------------------------------


def test_cli_publishes_to_a_real_server() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "publish", "--publishes", "10", "--concurrency", "2", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.output)
    assert (data["publishes_accepted"], data["publishes_failed"]) == (10, 0)
    assert data["errors"] == data["warmup_errors"] == {}
    # Warm-up publishes are stored too.
    assert data["stored_exposures"] == 14 * 12
    assert data["checked_publishes"] == 12
    assert data["latency"]["count"] == 10
    assert data["health"]["ok"] == 10
    assert data["health_share"] > 0
    # A publish's server CPU against /health's, both measured in this run. Ten /health
    # requests can fit inside one clock tick of the server's CPU time: then there is no
    # baseline and no ratio rather than a division by zero.
    assert data["cost_ratio"] == pytest.approx(
        expected_cost_ratio(
            data["cpu"]["server_per_request_ms"], data["health"]["cpu"]["server_per_request_ms"]
        ),
        abs=0.01,
    )
    assert data["cpu"]["client_per_request_ms"] > 0
