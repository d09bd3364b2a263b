"""Purpose limitation in the logs while the database fails under load.

A real ``exposure serve`` on PostgreSQL, at debug level, takes a stream of phones' flows
(a code, a token, a certificate, a publish of fourteen keys) from several threads while
the test terminates every connection the server has to its database, again and again
(``pg_terminate_backend``). Requests fail with 500s and errors are logged; then the
database answers again and the flows go on.

Everything the server printed is searched for every secret the flows handled (keys in
every text form, HMAC keys, codes, tokens, certificates, API keys): a database error must
never carry a bound value or a row. The repeated failures of the outage must fold into a
few lines, not one traceback per request.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from crypto.tekmac import SignedKey, compute_tekmac
from exposure.db import create_database_engine
from exposure.keys.kek import new_kek
from exposure.launcher import free_loopback_port
from tests.e2e.test_log_privacy import (
    Recorder,
    Secrets,
    _certificate,
    _path,
    _start,
    address_needles,
    find_leaks,
    uvicorn_banner,
)
from tests.e2e.test_publish_flow import _keys

pytestmark = pytest.mark.postgres

#: Long enough for dozens of flows on either side of the outage on two cores.
FLOW_SECONDS = 8.0
OUTAGE_SECONDS = 3.0
THREADS = 4


@dataclass
class Outcomes:
    """What the flows saw, under one lock: answers by status, and the secrets handled."""

    found: Secrets = field(default_factory=Secrets)
    statuses: dict[int, int] = field(default_factory=dict)
    published: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1


def _flow(base_url: str, setup: dict[str, Any], outcomes: Outcomes, stop: threading.Event) -> None:
    publish_path = _path(setup["publish_url"])
    while not stop.is_set():
        local = Secrets()
        keys = _keys(14)
        secret = secrets.token_bytes(32)
        tekmac = compute_tekmac(
            secret, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
        )
        for index, key in enumerate(keys):
            local.add_bytes(f"TEK {index}", base64.b64decode(key["key"]))
        local.add_bytes("HMAC key", secret)
        local.add_bytes("TEK HMAC", tekmac)
        try:
            with httpx.Client(base_url=base_url, timeout=10) as client:
                certificate = _certificate(client, setup, local, tekmac, "confirmed", "flow")
                answer = client.post(
                    publish_path,
                    json={
                        "temporaryExposureKeys": keys,
                        "healthAuthorityID": setup["health_authority_id"],
                        "verificationPayload": certificate,
                        "hmacKey": base64.b64encode(secret).decode(),
                    },
                )
                outcomes.saw(answer.status_code)
                if answer.status_code == 200:
                    with outcomes.lock:
                        outcomes.published += 1
        except AssertionError:
            outcomes.saw(500)  # a step of the flow failed during the outage
        except httpx.TransportError:
            outcomes.saw(0)
        with outcomes.lock:
            outcomes.found.needles.extend(local.needles)


def _terminate_connections(database_url: str, until: float) -> int:
    """Terminate every other connection to the server's database until ``until``."""
    url = make_url(database_url)
    admin = create_database_engine(
        url.set(database="postgres").render_as_string(hide_password=False)
    )
    terminated = 0
    try:
        while time.monotonic() < until:
            with admin.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                terminated += len(
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": url.database},
                    ).all()
                )
            time.sleep(0.2)
    finally:
        admin.dispose()
    return terminated


def test_a_database_outage_under_load_leaks_no_value_into_the_logs(
    postgres_database: str, tmp_path: Path
) -> None:
    recorder = Recorder(tmp_path / "var", free_loopback_port())
    recorder.extra = {
        "EXPOSURE_DATABASE_URL": postgres_database,
        "EXPOSURE_KEYSERVER_KEK": new_kek(),
        "EXPOSURE_VERIFICATION_KEK": new_kek(),
    }
    server = _start(recorder)
    outcomes = Outcomes()
    try:
        bootstrap = recorder.cli("admin", "bootstrap", "--json", keep_stdout=False)
        assert bootstrap.returncode == 0, bootstrap.stderr
        setup = json.loads(bootstrap.stdout)
        outcomes.found.add_text("admin API key", setup["admin_api_key"])
        outcomes.found.add_text("device API key", setup["device_api_key"])
        stop = threading.Event()
        threads = [
            threading.Thread(target=_flow, args=(server.base_url, setup, outcomes, stop))
            for _ in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        time.sleep((FLOW_SECONDS - OUTAGE_SECONDS) / 2)
        terminated = _terminate_connections(postgres_database, time.monotonic() + OUTAGE_SECONDS)
        time.sleep((FLOW_SECONDS - OUTAGE_SECONDS) / 2)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        output = server.stop()
        recorder.outputs["exposure serve (stdout+stderr)"] = output

    # Controls: the outage really broke requests, and flows succeeded around it.
    assert terminated > 0
    assert outcomes.statuses.get(500, 0) > 0, outcomes.statuses
    assert outcomes.published > 0, outcomes.statuses
    assert re.search(r"^\S+ \S+ DEBUG ", output, re.MULTILINE), output[:2000]
    assert "SQLSTATE" in output or "OperationalError" in output, output[-3000:]

    needles = [*outcomes.found.needles, *address_needles(outcomes.found.client_ports)]
    leaks = find_leaks(recorder.outputs, needles, [uvicorn_banner(recorder.port)])
    assert leaks == [], "secrets in the output during the outage:\n" + "\n".join(leaks[:20])
    assert "[parameters" not in output
    assert "DETAIL" not in output
    # Hundreds of failed requests, folded: each kind of failure once per 10 s, plus one line
    # that counts the rest.
    assert output.count("Traceback (most recent call last)") <= 60, output[-5000:]
