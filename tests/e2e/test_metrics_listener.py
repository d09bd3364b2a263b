"""Metrics are not on the public port, and what they show cannot tell a real publish from
chaff: the per-request counters wait for the next release, while job metrics are live."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crypto.tekmac import SignedKey, compute_tekmac
from exposure.launcher import free_loopback_port
from tests.e2e.conftest import EXPOSURE, clean_environment, run_cli
from tests.e2e.test_publish_flow import _certificate, _keys


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A server with its metrics listener on a port of its own: (public, metrics, data)."""
    port, metrics_port = free_loopback_port(), free_loopback_port()
    data_dir = tmp_path / "var"
    environment = clean_environment(data_dir)
    environment["EXPOSURE_METRICS_PORT"] = str(metrics_port)
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    public, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{public}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield public, metrics, data_dir
    finally:
        process.terminate()
        process.wait(timeout=20)


def _sample(text: str, prefix: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_do_not_tell_real_publishes_from_chaff(server: tuple[str, str, Path]) -> None:
    public, metrics, data_dir = server
    setup = json.loads(run_cli(data_dir, "admin", "bootstrap", "--json").stdout)
    before = httpx.get(f"{metrics}/metrics", timeout=5).text
    keys = _keys(14)
    secret = secrets.token_bytes(32)
    tekmac = compute_tekmac(
        secret, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    )
    with httpx.Client(base_url=public, timeout=10) as client:
        body = {
            "temporaryExposureKeys": keys,
            "healthAuthorityID": setup["health_authority_id"],
            "verificationPayload": _certificate(client, setup, "confirmed", tekmac),
            "hmacKey": base64.b64encode(secret).decode(),
        }
        assert client.post("/v1/publish", json=body).status_code == 200
        assert client.post("/v1/publish", json=body, headers={"X-Chaff": "1"}).status_code == 200
        public_metrics = client.get("/metrics")
    after = httpx.get(f"{metrics}/metrics", timeout=5).text

    assert public_metrics.status_code == 404
    for prefix in (
        "exposure_keyserver_publish_requests_total",
        "exposure_keyserver_keys_total",
        "exposure_verification_codes_issued_total",
        "exposure_verification_codes_claimed_total",
        "exposure_verification_certificates_issued_total",
    ):
        assert _sample(after, prefix) == _sample(before, prefix), prefix
    # Live: the process and its jobs.
    assert "python_info" in after
    assert "exposure_job_runs_total" in after
