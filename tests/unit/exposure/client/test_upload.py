"""The upload protocol on the wire, against a scripted server (httpx's mock transport).

The real servers are exercised in tests/e2e/test_client_flow.py; here every byte the phone
sends is inspected, and every kind of answer is scripted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest

from crypto.gaen import interval_number
from exposure.client import (
    ClientError,
    ClientErrorCode,
    PublishRefused,
    ServerConfig,
    TemporaryExposureKey,
    TransportFailed,
    UnexpectedResponse,
    Uploader,
    VerificationRefused,
)
from tests.unit.exposure.client.support import MORNING, seeded

CONFIG = ServerConfig(
    verification_url="https://verify.example/",
    keyserver_url="https://keys.example",
    api_key="device-api-key-4f1c",
    health_authority_id="gov.example.app",
)
CODE = "90210017"
TOKEN = "token-9b4e"
CERTIFICATE = "certificate-77aa"
KEYS = [
    TemporaryExposureKey(bytes(range(16)), 2_993_040, 144, 0),
    TemporaryExposureKey(bytes(range(16, 32)), 2_993_184, 100, 5),
]

Handler = Callable[[httpx.Request], httpx.Response]


class ScriptedServers:
    """Answers the three calls like the real servers; any answer can be replaced."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.answers: dict[str, httpx.Response] = {}
        self.revision_tokens = iter(["revision-1", "revision-2"])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append((str(request.url), dict(request.headers), body))
        path = request.url.path
        if path in self.answers:
            return self.answers[path]
        if request.headers.get("x-chaff"):
            return httpx.Response(200, json={"padding": "AAAA"})
        if path == "/api/verify":
            return httpx.Response(
                200,
                json={"testtype": "likely", "symptomDate": "2026-11-20", "token": TOKEN},
            )
        if path == "/api/certificate":
            return httpx.Response(200, json={"certificate": CERTIFICATE, "padding": "AAAA"})
        return httpx.Response(
            200,
            json={
                "revisionToken": next(self.revision_tokens),
                "insertedExposures": len(body["temporaryExposureKeys"]),
            },
        )

    def body(self, path: str, number: int = 0) -> dict[str, Any]:
        return [body for url, _, body in self.requests if url.endswith(path)][number]


@pytest.fixture
def servers() -> ScriptedServers:
    return ScriptedServers()


@pytest.fixture
def uploader(servers: ScriptedServers) -> Uploader:
    http = httpx.Client(transport=httpx.MockTransport(servers))
    return Uploader(CONFIG, http=http, random_bytes=seeded(11))


def test_verify_sends_the_code_with_the_device_key(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    verified = uploader.verify_code(CODE)

    url, headers, body = servers.requests[0]
    assert url == "https://verify.example/api/verify"
    assert headers["x-api-key"] == CONFIG.api_key
    assert headers["content-type"] == "application/json"
    assert (body["code"], body["accept"]) == (CODE, ["confirmed", "likely"])
    assert (verified.token, verified.test_type) == (TOKEN, "likely")
    assert verified.symptom_date == date(2026, 11, 20)
    assert TOKEN not in repr(verified)


def test_the_certificate_binds_the_hmac_of_the_keys_as_google_defines_it(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    certified = uploader.certify(TOKEN, KEYS)

    body = servers.body("/api/certificate")
    # Written out here independently of crypto.tekmac: sorted "key.start.period.risk" strings.
    cleartext = ",".join(
        sorted(
            f"{base64.b64encode(k.key_data).decode()}.{k.rolling_start_interval_number}"
            f".{k.rolling_period}.{k.transmission_risk_level}"
            for k in KEYS
        )
    )
    expected = hmac.digest(certified.hmac_secret, cleartext.encode(), hashlib.sha256)
    assert body["token"] == TOKEN
    assert base64.b64decode(body["ekeyhmac"]) == expected
    assert len(certified.hmac_secret) == 32
    assert certified.certificate == CERTIFICATE


def test_the_hmac_secret_is_fresh_for_every_certificate(uploader: Uploader) -> None:
    assert uploader.certify(TOKEN, KEYS).hmac_secret != uploader.certify(TOKEN, KEYS).hmac_secret


def test_an_upload_publishes_the_keys_with_the_secret_and_the_onset(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    outcome = uploader.upload(CODE, KEYS)

    body = servers.body("/v1/publish")
    url = next(url for url, _, _ in servers.requests if url.endswith("/v1/publish"))
    assert url == "https://keys.example/v1/publish"
    certified_hmac = base64.b64decode(servers.body("/api/certificate")["ekeyhmac"])
    secret = base64.b64decode(body["hmacKey"])
    cleartext = ",".join(
        sorted(
            ".".join(
                str(key[name])
                for name in ("key", "rollingStartNumber", "rollingPeriod", "transmissionRisk")
            )
            for key in body["temporaryExposureKeys"]
        )
    )
    assert hmac.digest(secret, cleartext.encode(), hashlib.sha256) == certified_hmac
    assert body["verificationPayload"] == CERTIFICATE
    assert body["healthAuthorityID"] == CONFIG.health_authority_id
    assert body["temporaryExposureKeys"][1] == {
        "key": base64.b64encode(bytes(range(16, 32))).decode(),
        "rollingStartNumber": 2_993_184,
        "rollingPeriod": 100,
        "transmissionRisk": 5,
    }
    assert body["symptomOnsetInterval"] == interval_number(MORNING.replace(day=20, hour=0))
    assert body["revisionToken"] == ""
    assert (outcome.test_type, outcome.published.inserted_exposures) == ("likely", 2)


def test_the_revision_token_is_kept_and_sent_with_the_next_upload(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    uploader.upload(CODE, KEYS)
    assert uploader.revision_token == "revision-1"

    uploader.upload(CODE, KEYS)

    assert servers.body("/v1/publish", 1)["revisionToken"] == "revision-1"
    assert uploader.revision_token == "revision-2"


def test_a_saved_revision_token_is_used_from_the_start(servers: ScriptedServers) -> None:
    http = httpx.Client(transport=httpx.MockTransport(servers))
    uploader = Uploader(CONFIG, http=http, revision_token="saved-token")

    uploader.upload(CODE, KEYS)

    assert servers.body("/v1/publish")["revisionToken"] == "saved-token"


def test_an_answer_without_a_token_keeps_the_old_one(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    uploader.upload(CODE, KEYS)
    servers.answers["/v1/publish"] = httpx.Response(200, json={"padding": "AA"})

    outcome = uploader.upload(CODE, KEYS)

    assert uploader.revision_token == outcome.published.revision_token == "revision-1"


def test_every_request_is_padded_with_one_to_two_kilobytes(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    uploader.upload(CODE, KEYS)
    uploader.send_chaff()

    sizes = [len(base64.b64decode(body["padding"])) for _, _, body in servers.requests]
    assert len(sizes) == 6
    assert all(1024 <= size < 2048 for size in sizes)
    assert len(set(sizes)) > 1


def test_chaff_goes_to_the_three_endpoints_marked_and_shaped_like_real_calls(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    outcome = uploader.send_chaff()

    assert outcome.statuses == (200, 200, 200)
    assert [url for url, _, _ in servers.requests] == [
        "https://verify.example/api/verify",
        "https://verify.example/api/certificate",
        "https://keys.example/v1/publish",
    ]
    assert all(headers["x-chaff"] == "1" for _, headers, _ in servers.requests)
    assert servers.requests[0][1]["x-api-key"] == CONFIG.api_key
    publish = servers.requests[2][2]
    assert set(publish) >= {"temporaryExposureKeys", "verificationPayload", "hmacKey"}
    assert len(publish["temporaryExposureKeys"]) == 14
    assert uploader.revision_token == ""


def test_chaff_never_raises(servers: ScriptedServers) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/verify":
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, content=b"<html>")

    uploader = Uploader(CONFIG, http=httpx.Client(transport=httpx.MockTransport(broken)))

    assert uploader.send_chaff().statuses == (None, None, None)


@pytest.mark.parametrize(
    ("path", "answer", "error", "code"),
    [
        (
            "/api/verify",
            httpx.Response(
                400,
                json={
                    "error": "the code has expired",
                    "errorCode": "code_expired",
                    "error_code": "code_expired",
                },
            ),
            VerificationRefused,
            "code_expired",
        ),
        (
            "/api/certificate",
            httpx.Response(400, json={"error": "expired", "errorCode": "token_expired"}),
            VerificationRefused,
            "token_expired",
        ),
        (
            "/v1/publish",
            httpx.Response(
                400,
                json={
                    "error": "no revision token, but sent existing keys",
                    "code": "missing_revision_token",
                },
            ),
            PublishRefused,
            "missing_revision_token",
        ),
        (
            "/v1/publish",
            httpx.Response(429, json={"error": "please try again later"}),
            PublishRefused,
            "http_429",
        ),
        (
            "/api/verify",
            httpx.Response(502, content=b"<html>bad gateway</html>"),
            VerificationRefused,
            "http_502",
        ),
        (
            "/api/verify",
            httpx.Response(200, json={"testtype": "confirmed"}),
            UnexpectedResponse,
            "bad_response",
        ),
        (
            "/api/certificate",
            httpx.Response(200, content=b"[1]"),
            UnexpectedResponse,
            "bad_response",
        ),
        (
            "/v1/publish",
            httpx.Response(200, content=b"not json"),
            UnexpectedResponse,
            "bad_response",
        ),
        (
            "/v1/publish",
            httpx.Response(200, json={"insertedExposures": "2"}),
            UnexpectedResponse,
            "bad_response",
        ),
    ],
)
def test_refusals_carry_the_server_s_code(
    uploader: Uploader,
    servers: ScriptedServers,
    path: str,
    answer: httpx.Response,
    error: type[ClientError],
    code: str,
) -> None:
    servers.answers[path] = answer

    with pytest.raises(error) as raised:
        uploader.upload(CODE, KEYS)

    assert raised.value.code == code
    for secret in (CODE, TOKEN, CERTIFICATE, CONFIG.api_key):
        assert secret not in str(raised.value)


def test_a_partial_failure_is_a_success_that_says_what_was_dropped(
    uploader: Uploader, servers: ScriptedServers
) -> None:
    message = "1 error occurred:\n\t* key 1 cannot be imported: interval number is in the future"
    servers.answers["/v1/publish"] = httpx.Response(
        200,
        json={
            "insertedExposures": 1,
            "code": "partial_failure",
            "error": message,
            "revisionToken": "r",
        },
    )

    published = uploader.upload(CODE, KEYS).published

    assert published.partial_failure == message
    assert published.inserted_exposures == 1


def test_no_answer_is_a_transport_failure_that_names_no_secret() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout(f"timed out sending {request.content!r}", request=request)

    uploader = Uploader(CONFIG, http=httpx.Client(transport=httpx.MockTransport(unreachable)))

    with pytest.raises(TransportFailed) as raised:
        uploader.verify_code(CODE)

    assert raised.value.code == ClientErrorCode.NETWORK_ERROR
    assert CODE not in str(raised.value)
    assert "ConnectTimeout" in str(raised.value)


def test_an_uploader_closes_only_the_client_it_made() -> None:
    given = httpx.Client()
    with Uploader(CONFIG, http=given):
        pass
    assert not given.is_closed
    given.close()

    with Uploader(CONFIG) as own:
        made = own._http
    assert made.is_closed
