"""Purpose limitation in the logs: a real server and the CLI, at debug level, leak nothing.

A real ``exposure serve`` runs with ``EXPOSURE_LOG_LEVEL=debug``. A phone-like client goes
through the whole flow (a code, a token, a certificate, a publish of fourteen keys, a
revision) and through the error paths that are most likely to log what they were given: a
wrong code, a claimed code, a wrong API key, a forged certificate, malformed publish
bodies, a revision token that does not open, and chaff. The export jobs run through the
CLI and the files are downloaded; then the retention purge runs as of a month later, and
an auditor reads the retention log and the compliance report (HTTP and CLI).

Everything the server printed, everything every CLI command printed and every auditor view
is then searched for each secret the test handled: every key in base64, base64url, hex and
``repr`` form, the HMAC key, the codes, the tokens, the certificates and their parts, the
revision tokens, the API keys, and the client's address and source ports.

The one exception is the standard output of the commands that create API keys
(``admin bootstrap``, ``admin apikey create``): printing the new key once is their purpose,
an answer to the operator rather than a log, so only their stderr is read.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto.tekmac import SignedKey, compute_tekmac
from exposure.launcher import free_loopback_port
from tests.e2e.conftest import EXPOSURE, clean_environment
from tests.e2e.test_publish_flow import _keys

LOOPBACK = "127.0.0.1"


# ---- the scanner ---------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    """One thing that must not appear in any output, and the name reported if it does."""

    label: str
    pattern: re.Pattern[str]


def text_needle(label: str, value: str) -> Needle:
    """``value`` exactly (it must be long or distinctive enough not to occur by chance)."""
    return Needle(label, re.compile(re.escape(value)))


def number_needle(label: str, digits: str) -> Needle:
    """A numeric code, not as part of a longer number (timestamps are full of digits)."""
    return Needle(label, re.compile(rf"(?<!\d){re.escape(digits)}(?!\d)"))


def bytes_needles(label: str, raw: bytes) -> list[Needle]:
    """``raw`` in every text form a log could carry it in: base64, base64url, hex, repr.

    The base64 forms are matched without their ``=`` padding, so a padded and an unpadded
    rendering are both caught; hex is matched in either case. Python's ``repr`` is how a
    database error's ``[parameters: ...]`` shows bytes in a logged traceback.
    """
    standard = base64.b64encode(raw).decode().rstrip("=")
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    needles = [
        Needle(f"{label} (base64)", re.compile(re.escape(standard))),
        Needle(f"{label} (hex)", re.compile(re.escape(raw.hex()), re.IGNORECASE)),
        Needle(f"{label} (bytes repr)", re.compile(re.escape(repr(raw)[2:-1]))),
    ]
    if urlsafe != standard:
        needles.append(Needle(f"{label} (base64url)", re.compile(re.escape(urlsafe))))
    return needles


def jwt_needles(label: str, token: str) -> list[Needle]:
    """A JWT, its claims part and its signature part (the header is the same for all)."""
    _header, claims, signature = token.split(".")
    return [
        text_needle(label, token),
        text_needle(f"{label} claims", claims),
        text_needle(f"{label} signature", signature),
    ]


def address_needles(client_ports: Iterable[int]) -> list[Needle]:
    """The client's address, alone or with one of the source ports it connected from."""
    needles = [text_needle("client address", LOOPBACK), text_needle("test client", "testclient")]
    for port in sorted(set(client_ports)):
        # "127.0.0.1:54321", "('127.0.0.1', 54321)", "127.0.0.1 port 54321", ...
        pattern = re.compile(rf"{re.escape(LOOPBACK)}\D{{1,8}}{port}(?!\d)")
        needles.append(Needle(f"client address with source port {port}", pattern))
    return needles


def find_leaks(
    outputs: Mapping[str, str],
    needles: Sequence[Needle],
    exempt_lines: Sequence[re.Pattern[str]] = (),
) -> list[str]:
    """Every needle found in every output, as ``"<label> in <output> line <n>: <line>"``.

    A line that fully matches one of ``exempt_lines`` is skipped as a whole.
    """
    leaks: list[str] = []
    for source, text in outputs.items():
        for number, line in enumerate(text.splitlines(), start=1):
            if any(exempt.fullmatch(line) for exempt in exempt_lines):
                continue
            leaks.extend(
                f"{needle.label} in {source} line {number}: {line[:300]}"
                for needle in needles
                if needle.pattern.search(line)
            )
    return leaks


def uvicorn_banner(port: int) -> re.Pattern[str]:
    """Uvicorn's start-up line, which names the address the *server* binds, not a client's.

    Exactly that line is exempt: the address and port in it are the server's own listening
    socket, which the operator chose; it says nothing about who connected.
    """
    return re.compile(
        r"(INFO: +|\S+ \S+ INFO uvicorn\.error: )?"
        rf"Uvicorn running on http://{re.escape(LOOPBACK)}:{port} "
        r"\(Press CTRL\+C to quit\)"
    )


def test_the_scanner_reports_what_leaked() -> None:
    tek = bytes(range(16))
    needles = [
        *bytes_needles("TEK 0", tek),
        number_needle("verification code", "12345678"),
        *address_needles([54321]),
    ]
    b64 = base64.b64encode(tek).decode()
    outputs = {
        "server": "\n".join(
            [
                "INFO:     Uvicorn running on http://127.0.0.1:8123 (Press CTRL+C to quit)",
                f"DEBUG keyserver.api: stored {b64}",
                f"DEBUG keyserver.api: stored {tek.hex().upper()}",
                "INFO uvicorn.error: ('127.0.0.1', 54321) - connected",
                f"ERROR keyserver.api: [parameters: ({tek!r}, 144)]",
                "INFO x: 2026-01-01 123456789 is not the code",
                "INFO x: code 12345678 claimed",
            ]
        )
    }

    leaks = find_leaks(outputs, needles, [uvicorn_banner(8123)])

    assert leaks == [
        f"TEK 0 (base64) in server line 2: DEBUG keyserver.api: stored {b64}",
        f"TEK 0 (hex) in server line 3: DEBUG keyserver.api: stored {tek.hex().upper()}",
        "client address in server line 4: INFO uvicorn.error: ('127.0.0.1', 54321) - connected",
        "client address with source port 54321 in server line 4: "
        "INFO uvicorn.error: ('127.0.0.1', 54321) - connected",
        f"TEK 0 (bytes repr) in server line 5: ERROR keyserver.api: [parameters: ({tek!r}, 144)]",
        "verification code in server line 7: INFO x: code 12345678 claimed",
    ]
    # The banner is exempt only for the server's own port.
    assert find_leaks(outputs, needles, [uvicorn_banner(9999)])[0].startswith(
        "client address in server line 1:"
    )


# ---- the server and the CLI, with every byte they print kept ------------------------


@dataclass
class Recorder:
    """Runs the server and CLI commands in one environment and keeps all they print."""

    data_dir: Path
    port: int
    outputs: dict[str, str] = field(default_factory=dict)
    runs: Counter[str] = field(default_factory=Counter)
    #: Settings of the run beyond the embedded default (a PostgreSQL database, its KEKs).
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def environment(self) -> dict[str, str]:
        environment = clean_environment(self.data_dir)
        environment["EXPOSURE_LOG_LEVEL"] = "debug"
        # URLs the server and bootstrap build from configuration (the JWKS URL that the
        # refresh job fetches and httpx logs, publish and index URLs) name the host
        # "localhost", so that 127.0.0.1 in any output can only have come from a socket.
        environment["EXPOSURE_PUBLIC_URL"] = f"http://localhost:{self.port}"
        environment.update(self.extra)
        return environment

    def cli(self, *arguments: str, keep_stdout: bool = True) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(EXPOSURE), *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        name = "exposure " + " ".join(arguments)
        self.runs[name] += 1
        if self.runs[name] > 1:
            name = f"{name} #{self.runs[name]}"
        if keep_stdout:
            self.outputs[f"{name} (stdout)"] = completed.stdout
        self.outputs[f"{name} (stderr)"] = completed.stderr
        return completed


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[str]

    def stop(self) -> str:
        self.process.terminate()
        output, _ = self.process.communicate(timeout=20)
        return output


def _start(recorder: Recorder) -> Server:
    process = subprocess.Popen(
        [str(EXPOSURE), "serve", "--port", str(recorder.port)],
        env=recorder.environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://{LOOPBACK}:{recorder.port}", process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{process.communicate()[0]}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"server did not answer within 30 s:\n{server.stop()}")


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "var", free_loopback_port())


# ---- the flow ---------------------------------------------------------------------------


@dataclass
class Secrets:
    """What the test handled that no output may show, collected as the flow goes."""

    needles: list[Needle] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)
    #: What went over the wire, as text: the secrets must all be found *there* (a control).
    traffic: list[str] = field(default_factory=list)

    def add_text(self, label: str, value: str) -> None:
        self.needles.append(text_needle(label, value))

    def add_bytes(self, label: str, raw: bytes) -> None:
        self.needles.extend(bytes_needles(label, raw))

    def add_jwt(self, label: str, token: str) -> None:
        self.needles.extend(jwt_needles(label, token))

    def record(self, response: httpx.Response) -> None:
        """Response hook: the client's source port, and the exchange's text."""
        stream = response.extensions.get("network_stream")
        client = stream.get_extra_info("client_addr") if stream is not None else None
        if client is not None:
            self.client_ports.add(int(client[1]))
        request = response.request
        self.traffic.extend(f"{name}: {value}" for name, value in request.headers.items())
        self.traffic.append(request.content.decode(errors="replace"))
        if response.headers.get("content-type", "").startswith("application/json"):
            self.traffic.append(response.read().decode())

    def not_in_traffic(self) -> list[str]:
        """Secrets none of whose forms occur in the traffic: their needles could be wrong."""
        forms: dict[str, bool] = {}
        text = "\n".join(self.traffic)
        for needle in self.needles:
            secret = needle.label.split(" (")[0]
            forms[secret] = forms.get(secret, False) or bool(needle.pattern.search(text))
        return sorted(secret for secret, seen in forms.items() if not seen)


def _path(url: str) -> str:
    """The path of a URL bootstrap printed (its host is "localhost", the client's is not)."""
    return "/" + url.split("://", 1)[1].partition("/")[2]


def _issue(
    client: httpx.Client, setup: dict[str, Any], found: Secrets, test_type: str, label: str
) -> dict[str, Any]:
    symptoms = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    issued = client.post(
        "/api/issue",
        json={"testType": test_type, "symptomDate": symptoms},
        headers={"X-API-Key": setup["admin_api_key"]},
    )
    assert issued.status_code == 200, issued.text
    body: dict[str, Any] = issued.json()
    found.needles.append(number_needle(f"{label} code", body["code"]))
    found.add_text(f"{label} long code", body["longCode"])
    return body


def _certificate(
    client: httpx.Client,
    setup: dict[str, Any],
    found: Secrets,
    tekmac: bytes,
    test_type: str,
    label: str,
) -> str:
    code = _issue(client, setup, found, test_type, label)["code"]
    verified = client.post(
        "/api/verify",
        json={"code": code, "accept": ["confirmed", "likely"]},
        headers={"X-API-Key": setup["device_api_key"]},
    )
    assert verified.status_code == 200, verified.text
    token: str = verified.json()["token"]
    found.add_jwt(f"{label} verification token", token)
    certified = client.post(
        "/api/certificate",
        json={"token": token, "ekeyhmac": base64.b64encode(tekmac).decode()},
        headers={"X-API-Key": setup["device_api_key"]},
    )
    assert certified.status_code == 200, certified.text
    certificate: str = certified.json()["certificate"]
    found.add_jwt(f"{label} certificate", certificate)
    return certificate


def _forged(certificate: str) -> str:
    """The same header and claims under someone else's signature."""
    header, claims, _signature = certificate.split(".")
    forged_signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")
    return f"{header}.{claims}.{forged_signature}"


def _phone(client: httpx.Client, setup: dict[str, Any], found: Secrets) -> None:
    """The happy path and its error paths, as phones and labs would drive them."""
    device = {"X-API-Key": setup["device_api_key"]}
    publish_path = _path(setup["publish_url"])
    keys = _keys(14)
    for index, key in enumerate(keys):
        found.add_bytes(f"TEK {index}", base64.b64decode(key["key"]))
    hmac_key = secrets.token_bytes(32)
    found.add_bytes("HMAC key", hmac_key)
    tekmac = compute_tekmac(
        hmac_key, [SignedKey(k["key"], k["rollingStartNumber"], 144, 0) for k in keys]
    )
    found.add_bytes("tekmac", tekmac)
    body = {
        "temporaryExposureKeys": keys,
        "healthAuthorityID": setup["health_authority_id"],
        "hmacKey": base64.b64encode(hmac_key).decode(),
    }

    # Wrong and unknown credentials.
    wrong_code = f"{secrets.randbelow(10**8):08d}"
    found.needles.append(number_needle("wrong code", wrong_code))
    wrong = client.post(
        "/api/verify", json={"code": wrong_code, "accept": ["confirmed"]}, headers=device
    )
    assert wrong.status_code != 200
    stolen_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    found.add_text("unknown API key", stolen_key)
    refused = client.post(
        "/api/verify", json={"code": wrong_code}, headers={"X-API-Key": stolen_key}
    )
    assert refused.status_code == 401, refused.text

    # A certificate, then a publish with a forged one before the real one.
    likely = _certificate(client, setup, found, tekmac, "likely", "first")
    forged = _forged(likely)
    found.add_jwt("forged certificate", forged)
    rejected = client.post(publish_path, json={**body, "verificationPayload": forged})
    assert rejected.status_code != 200, rejected.text
    published = client.post(publish_path, json={**body, "verificationPayload": likely})
    assert published.status_code == 200, published.text
    assert published.json()["insertedExposures"] == 14
    revision_token = published.json()["revisionToken"]
    found.add_text("revision token", revision_token)

    # A revision with the token, then one whose token does not open.
    confirmed = _certificate(client, setup, found, tekmac, "confirmed", "second")
    revised = client.post(
        publish_path,
        json={**body, "verificationPayload": confirmed, "revisionToken": revision_token},
    )
    assert revised.status_code == 200, revised.text
    found.add_text("second revision token", revised.json()["revisionToken"])
    third = _certificate(client, setup, found, tekmac, "confirmed", "third")
    garbage_token = base64.b64encode(secrets.token_bytes(48)).decode()
    found.add_text("garbage revision token", garbage_token)
    unopened = client.post(
        publish_path,
        json={**body, "verificationPayload": third, "revisionToken": garbage_token},
    )
    assert unopened.status_code != 200, unopened.text

    # A code claimed once and then tried again (short and long), and a replayed token.
    claimed = _issue(client, setup, found, "confirmed", "fourth")
    first_claim = client.post("/api/verify", json={"code": claimed["code"]}, headers=device)
    assert first_claim.status_code == 200, first_claim.text
    replay_token = first_claim.json()["token"]
    found.add_jwt("fourth verification token", replay_token)
    for attempt in ("code", "longCode"):
        again = client.post("/api/verify", json={"code": claimed[attempt]}, headers=device)
        assert again.status_code != 200, again.text
    ekeyhmac = base64.b64encode(tekmac).decode()
    for expected in (200, 400):
        answer = client.post(
            "/api/certificate", json={"token": replay_token, "ekeyhmac": ekeyhmac}, headers=device
        )
        assert answer.status_code == expected, answer.text
        if expected == 200:
            found.add_jwt("fourth certificate", answer.json()["certificate"])

    # Malformed publish bodies that carry key material where the parser will choke.
    first_key = keys[0]["key"]
    truncated = json.dumps(body)[:-40].encode()
    for content in (
        truncated,
        json.dumps({**body, "temporaryExposureKeys": first_key}).encode(),
        json.dumps({**body, "hmacKey": 12345, "verificationPayload": likely}).encode(),
        json.dumps({**body, "temporaryExposureKeys": [{**keys[0], "rollingPeriod": "x"}]}).encode(),
        b"\xff\xfe" + first_key.encode(),
    ):
        malformed = client.post(
            publish_path, content=content, headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400, malformed.text

    # Chaff carries a real-looking body; it must be answered without being looked at.
    for path, payload, headers in (
        ("/api/verify", {"code": claimed["code"]}, device),
        ("/api/certificate", {"token": replay_token}, device),
        (publish_path, {**body, "verificationPayload": likely}, {}),
    ):
        chaff = client.post(path, json=payload, headers={**headers, "X-Chaff": "1"})
        assert chaff.status_code == 200, chaff.text


def _job_names(recorder: Recorder) -> list[str]:
    """The jobs ``exposure jobs run`` knows, read from its answer to an unknown name."""
    listing = recorder.cli("jobs", "run", "no-such-job")
    assert listing.returncode == 2
    found = re.search(r"known jobs: (.+)$", listing.stderr.strip())
    assert found is not None, listing.stderr
    return [name.strip() for name in found.group(1).split(",")]


EXPORT_JOBS = ("export-batches", "export-worker")


def _run_export_jobs(recorder: Recorder) -> None:
    """Close the windows and write the files, as of tomorrow (after the embargo)."""
    later = datetime.now(UTC) + timedelta(days=1)
    for name in EXPORT_JOBS:
        for _attempt in range(5):
            completed = recorder.cli(
                "jobs", "run", name, "--now", later.isoformat(), "--allow-future"
            )
            assert completed.returncode == 0, completed.stderr + completed.stdout
            if json.loads(completed.stdout)["ran"]:
                break
            time.sleep(0.5)  # the server's scheduler held the job's lease just then


def _run_purge(recorder: Recorder) -> None:
    """The retention purge, where the CLI knows one, as of a month later.

    A month on, the published keys and the export files are past their deadline, so the
    purge has something to delete and to report. ``purge`` runs every service's purge; a
    CLI without it but with per-service purges runs those. (The server's scheduler runs
    the other jobs itself, and its output is scanned too.) How the purge ends is not this
    test's business, what it prints is.
    """
    names = _job_names(recorder)
    assert set(EXPORT_JOBS) <= set(names), names
    purges = ["purge"] if "purge" in names else [n for n in names if n.startswith("purge")]
    as_of = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    for name in purges:
        recorder.cli("jobs", "run", name, "--now", as_of, "--allow-future")


def _download_exports(client: httpx.Client, setup: dict[str, Any]) -> int:
    index = client.get(_path(setup["index_url"]))
    assert index.status_code == 200, index.text
    names = [name for name in index.text.split("\n") if name]
    for name in names:
        assert client.get(f"/exports/{name}").status_code == 200
    return len(names)


def _audit(client: httpx.Client, recorder: Recorder, found: Secrets) -> None:
    """The auditor's views, over HTTP and the CLI: they too must hold no secret.

    Their answers are added to the scanned outputs, since what an auditor is shown must be
    as free of key material as a log.
    """
    created = recorder.cli(
        "admin",
        "apikey",
        "create",
        "--realm",
        "default",
        "--type",
        "auditor",
        "--json",
        keep_stdout=False,
    )
    assert created.returncode == 0, created.stderr
    auditor = json.loads(created.stdout)["api_key"]
    found.add_text("auditor API key", auditor)
    for path in ("/audit/public-keys", "/audit/log?service=keyserver", "/audit/compliance"):
        answer = client.get(path, headers={"X-API-Key": auditor})
        assert answer.status_code == 200, answer.text
        recorder.outputs[f"GET {path} (answer)"] = answer.text
    refused = client.get("/audit/log?service=keyserver", headers={"X-API-Key": "not-a-key"})
    assert refused.status_code == 401, refused.text
    for command in ("export", "compliance"):
        recorder.cli("audit", command)


def test_no_output_of_server_or_cli_carries_secrets_or_addresses(recorder: Recorder) -> None:
    found = Secrets()
    server = _start(recorder)
    try:
        bootstrap = recorder.cli("admin", "bootstrap", "--json", keep_stdout=False)
        assert bootstrap.returncode == 0, bootstrap.stderr
        setup = json.loads(bootstrap.stdout)
        found.add_text("admin API key", setup["admin_api_key"])
        found.add_text("device API key", setup["device_api_key"])
        with httpx.Client(
            base_url=server.base_url,
            timeout=10,
            event_hooks={"response": [found.record]},
        ) as client:
            _phone(client, setup, found)
            _run_export_jobs(recorder)
            assert _download_exports(client, setup) >= 1
            _run_purge(recorder)
            _audit(client, recorder, found)
    finally:
        recorder.outputs["exposure serve (stdout+stderr)"] = server.stop()

    # Controls: every secret's needles match it as it really went over the wire, and the
    # client's ports were seen; otherwise a clean scan would prove nothing.
    assert found.not_in_traffic() == []
    assert found.client_ports, "no client source port was observed"
    server_output = recorder.outputs["exposure serve (stdout+stderr)"]
    # The scan is only worth something if the most verbose level was really on.
    assert re.search(r"^\S+ \S+ DEBUG ", server_output, re.MULTILINE), server_output
    needles = [*found.needles, *address_needles(found.client_ports)]
    leaks = find_leaks(recorder.outputs, needles, [uvicorn_banner(recorder.port)])
    assert leaks == [], "secrets or client addresses in the output:\n" + "\n".join(leaks)
