"""JWKS refresh (reference §3.5): mirror each authority's key set, one failure at a time."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select

from crypto.signing import public_key_pem
from crypto.tekmac import SignedKey, compute_tekmac
from crypto.tokens import jwk_from_public_key, sign_jwt
from exposure.api.v1 import ExposureKey
from exposure.db import SessionFactory, make_session_factory, unit_of_work
from keyserver.jobs import (
    MAX_JWKS_BYTES,
    AuthorityRefresh,
    JwksError,
    http_fetcher,
    refresh_jwks,
)
from keyserver.models import HealthAuthorityKey
from keyserver.service import trust
from keyserver.service.certificate import verify_certificate

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=2)
KEY_1 = ec.generate_private_key(ec.SECP256R1())
KEY_2 = ec.generate_private_key(ec.SECP256R1())
KEY_3 = ec.generate_private_key(ec.SECP256R1())


def _jwks(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> bytes:
    return json.dumps([jwk_from_public_key(key.public_key(), kid) for kid, key in keys]).encode()


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_pem(key.public_key()).decode()


@dataclass
class FakeWeb:
    """URL → body, or an exception to raise; records what was fetched."""

    pages: dict[str, bytes | Exception] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        page = self.pages[url]
        if isinstance(page, Exception):
            raise page
        return page


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return make_session_factory(engine)


def _add_authority(sessions: SessionFactory, issuer: str, jwks_url: str | None) -> int:
    with unit_of_work(sessions) as session:
        authority = trust.add_health_authority(
            session,
            issuer=issuer,
            audience="exposure-notifications-server",
            name=issuer,
            jwks_url=jwks_url,
            now=NOW,
        )
        return authority.id


def _keys(sessions: SessionFactory, authority_id: int) -> dict[str, HealthAuthorityKey]:
    with unit_of_work(sessions) as session:
        rows = session.scalars(
            select(HealthAuthorityKey).where(HealthAuthorityKey.health_authority_id == authority_id)
        )
        return {row.version: row for row in rows}


def test_new_keys_are_inserted_with_kid_as_version_from_now(sessions: SessionFactory) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("r1v1", KEY_1), ("r1v2", KEY_2))})

    report = refresh_jwks(sessions, fetch=web, now=NOW)

    assert report.authorities == (AuthorityRefresh(issuer="gov.a", inserted=2),)
    stored = _keys(sessions, authority_id)
    assert set(stored) == {"r1v1", "r1v2"}
    assert stored["r1v1"].public_key_pem == _pem(KEY_1)
    assert stored["r1v2"].public_key_pem == _pem(KEY_2)
    assert all(row.valid_from == NOW and row.valid_until is None for row in stored.values())


def test_a_second_run_changes_nothing(sessions: SessionFactory) -> None:
    _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))})
    refresh_jwks(sessions, fetch=web, now=NOW)

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert report.authorities == (AuthorityRefresh(issuer="gov.a", unchanged=1),)


def test_keys_no_longer_listed_are_revoked_now(sessions: SessionFactory) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1), ("v2", KEY_2))})
    refresh_jwks(sessions, fetch=web, now=NOW)
    web.pages["https://a.example/jwks"] = _jwks(("v2", KEY_2), ("v3", KEY_3))

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert report.authorities == (
        AuthorityRefresh(issuer="gov.a", inserted=1, revoked=1, unchanged=1),
    )
    stored = _keys(sessions, authority_id)
    assert stored["v1"].valid_until == LATER
    assert stored["v2"].valid_until is None
    assert stored["v3"].valid_from == LATER


def test_a_revoked_kid_listed_again_stays_revoked(sessions: SessionFactory) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1), ("v2", KEY_2))})
    refresh_jwks(sessions, fetch=web, now=NOW)
    web.pages["https://a.example/jwks"] = _jwks(("v2", KEY_2))
    refresh_jwks(sessions, fetch=web, now=LATER)
    web.pages["https://a.example/jwks"] = _jwks(("v1", KEY_1), ("v2", KEY_2))

    report = refresh_jwks(sessions, fetch=web, now=LATER + timedelta(minutes=2))

    assert report.authorities == (AuthorityRefresh(issuer="gov.a", unchanged=1, kept_revoked=1),)
    assert _keys(sessions, authority_id)["v1"].valid_until == LATER


def test_an_operator_revocation_is_not_undone_by_the_key_set(sessions: SessionFactory) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))})
    refresh_jwks(sessions, fetch=web, now=NOW)
    with unit_of_work(sessions) as session:
        row = session.scalars(select(HealthAuthorityKey)).one()
        trust.revoke_health_authority_key(session, row, NOW + timedelta(minutes=1))

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert report.authorities[0].kept_revoked == 1
    assert _keys(sessions, authority_id)["v1"].valid_until == NOW + timedelta(minutes=1)


def test_a_kid_naming_another_key_keeps_the_stored_one(sessions: SessionFactory) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))})
    refresh_jwks(sessions, fetch=web, now=NOW)
    web.pages["https://a.example/jwks"] = _jwks(("v1", KEY_2))

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert report.authorities == (AuthorityRefresh(issuer="gov.a", conflicting=1),)
    stored = _keys(sessions, authority_id)["v1"]
    assert (stored.public_key_pem, stored.valid_until) == (_pem(KEY_1), None)


def test_one_failing_authority_does_not_stop_the_others(sessions: SessionFactory) -> None:
    down = _add_authority(sessions, "gov.down", "https://down.example/jwks")
    broken = _add_authority(sessions, "gov.broken", "https://broken.example/jwks")
    empty = _add_authority(sessions, "gov.empty", "https://empty.example/jwks")
    healthy = _add_authority(sessions, "gov.healthy", "https://healthy.example/jwks")
    web = FakeWeb(
        {
            "https://down.example/jwks": _jwks(("d1", KEY_1)),
            "https://broken.example/jwks": _jwks(("b1", KEY_1)),
            "https://empty.example/jwks": _jwks(("e1", KEY_1)),
            "https://healthy.example/jwks": _jwks(("h1", KEY_1)),
        }
    )
    refresh_jwks(sessions, fetch=web, now=NOW)
    web.pages.update(
        {
            "https://down.example/jwks": httpx.ConnectError("connection refused"),
            "https://broken.example/jwks": b"<html>502 Bad Gateway</html>",
            "https://empty.example/jwks": b"[]",
            "https://healthy.example/jwks": _jwks(("h2", KEY_2)),
        }
    )

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    by_issuer = {result.issuer: result for result in report.authorities}
    assert by_issuer["gov.healthy"] == AuthorityRefresh(issuer="gov.healthy", inserted=1, revoked=1)
    assert by_issuer["gov.down"].error == "ConnectError: connection refused"
    assert by_issuer["gov.broken"].error == "JwksError: key set is not JSON"
    assert by_issuer["gov.empty"].error is not None
    assert "empty" in by_issuer["gov.empty"].error
    assert report.failed == 3
    # The failing authorities keep their keys, unrevoked.
    for authority_id, kid in ((down, "d1"), (broken, "b1"), (empty, "e1")):
        assert _keys(sessions, authority_id)[kid].valid_until is None
    assert _keys(sessions, healthy)["h1"].valid_until == LATER


@pytest.mark.parametrize(
    "body",
    [
        b'{"keys": []}',  # the RFC 7517 shape, which the reference does not read
        b'[{"kid": "v1", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]',
        json.dumps([{**jwk_from_public_key(KEY_1.public_key(), "v1"), "kid": ""}]).encode(),
        json.dumps(
            [
                jwk_from_public_key(KEY_1.public_key(), "v1"),
                jwk_from_public_key(KEY_2.public_key(), "v1"),
            ]
        ).encode(),
        b"\xff\xfe",
    ],
    ids=["object", "rsa", "empty-kid", "duplicate-kid", "not-utf8"],
)
def test_an_unusable_key_set_changes_nothing(sessions: SessionFactory, body: bytes) -> None:
    authority_id = _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v0", KEY_3))})
    refresh_jwks(sessions, fetch=web, now=NOW)
    web.pages["https://a.example/jwks"] = body

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert report.failed == 1
    assert report.authorities[0].error is not None
    assert report.authorities[0].error.startswith("JwksError")
    assert {kid: row.valid_until for kid, row in _keys(sessions, authority_id).items()} == {
        "v0": None
    }


def test_authorities_without_a_jwks_url_are_not_fetched(sessions: SessionFactory) -> None:
    manual = _add_authority(sessions, "gov.manual", None)
    with unit_of_work(sessions) as session:
        authority = trust.find_health_authority(session, "gov.manual")
        assert authority is not None
        trust.add_health_authority_key(
            session, authority, version="m1", public_key_pem=_pem(KEY_1), valid_from=NOW
        )
    _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))})

    report = refresh_jwks(sessions, fetch=web, now=LATER)

    assert web.fetched == ["https://a.example/jwks"]
    assert [result.issuer for result in report.authorities] == ["gov.a"]
    assert _keys(sessions, manual)["m1"].valid_until is None


def test_report_is_json_for_the_cli(sessions: SessionFactory) -> None:
    _add_authority(sessions, "gov.a", "https://a.example/jwks")
    web = FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))})

    summary = refresh_jwks(sessions, fetch=web, now=NOW).as_dict()

    assert json.loads(json.dumps(summary)) == {
        "failed": 0,
        "authorities": [
            {
                "issuer": "gov.a",
                "inserted": 1,
                "revoked": 0,
                "unchanged": 0,
                "kept_revoked": 0,
                "conflicting": 0,
                "error": None,
            }
        ],
    }


def test_refreshed_keys_verify_certificates_after_their_start(sessions: SessionFactory) -> None:
    _add_authority(sessions, "gov.a", "https://a.example/jwks")
    refresh_jwks(sessions, fetch=FakeWeb({"https://a.example/jwks": _jwks(("v1", KEY_1))}), now=NOW)
    with unit_of_work(sessions) as session:
        trust.add_authorized_app(
            session,
            app_id="gov.a.app",
            health_authority_issuers=["gov.a"],
            regions=["VN"],
            bypass_verification=False,
            now=NOW,
        )
    cache = trust.TrustCache(sessions, timedelta(minutes=5))
    app = cache.app("gov.a.app", LATER)
    assert app is not None
    secret = "AQIDBAUGBwgJCgsMDQ4PEA=="
    keys = [ExposureKey(key="z2Cx9hdz2SlxZ8GEgqTYpA==", rollingStartNumber=1, rollingPeriod=144)]
    token = sign_jwt(
        KEY_1,
        {
            "iss": "gov.a",
            "aud": "exposure-notifications-server",
            "exp": int(LATER.timestamp()) + 600,
            "reportType": "likely",
            "tekmac": base64.b64encode(
                compute_tekmac(
                    base64.b64decode(secret), [SignedKey("z2Cx9hdz2SlxZ8GEgqTYpA==", 1, 144)]
                )
            ).decode(),
        },
        kid="v1",
    )

    verified = verify_certificate(
        token=token,
        hmac_key=secret,
        keys=keys,
        app=app,
        authorities=lambda issuer: cache.authority(issuer, LATER),
        max_lifetime=timedelta(hours=1),
        now=LATER,
    )

    assert verified.report_type == "likely"


# --- over real HTTP -------------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    delay_seconds: float = 0.0
    redirect_to: str | None = None


@dataclass
class JwksServer:
    base_url: str
    routes: dict[str, Route]


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    routes: dict[str, Route] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path, Route(status=404, body=b"not found"))
            if route.redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", route.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(route.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            time.sleep(route.delay_seconds)
            # The client may have given up, as the timeout test wants.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # keep test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield JwksServer(f"http://127.0.0.1:{server.server_address[1]}", routes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fetcher() -> Callable[[str], bytes]:
    return http_fetcher(timedelta(seconds=5))


def test_http_fetcher_reads_a_key_set(jwks_server: JwksServer) -> None:
    body = _jwks(("v1", KEY_1))
    jwks_server.routes["/jwks/1"] = Route(body=body)

    assert _fetcher()(f"{jwks_server.base_url}/jwks/1") == body


def test_http_fetcher_follows_redirects(jwks_server: JwksServer) -> None:
    body = _jwks(("v1", KEY_1))
    jwks_server.routes["/old"] = Route(redirect_to="/jwks/1")
    jwks_server.routes["/jwks/1"] = Route(body=body)

    assert _fetcher()(f"{jwks_server.base_url}/old") == body


@pytest.mark.parametrize("status", [404, 500, 204])
def test_http_fetcher_refuses_any_status_but_200(jwks_server: JwksServer, status: int) -> None:
    jwks_server.routes["/jwks/1"] = Route(status=status, body=b"[]" if status != 204 else b"")

    with pytest.raises(JwksError, match=str(status)):
        _fetcher()(f"{jwks_server.base_url}/jwks/1")


def test_http_fetcher_refuses_an_oversized_body(jwks_server: JwksServer) -> None:
    jwks_server.routes["/jwks/1"] = Route(body=b" " * (MAX_JWKS_BYTES + 1))

    with pytest.raises(JwksError, match="larger"):
        _fetcher()(f"{jwks_server.base_url}/jwks/1")


def test_http_fetcher_times_out(jwks_server: JwksServer) -> None:
    jwks_server.routes["/slow"] = Route(body=b"[]", delay_seconds=2)

    with pytest.raises(httpx.TimeoutException):
        http_fetcher(timedelta(seconds=0.3))(f"{jwks_server.base_url}/slow")


def test_http_fetcher_refuses_a_non_positive_timeout() -> None:
    with pytest.raises(ValueError, match="positive"):
        http_fetcher(timedelta(0))


def test_refresh_over_real_http(sessions: SessionFactory, jwks_server: JwksServer) -> None:
    jwks_server.routes["/jwks/1"] = Route(body=_jwks(("r1v1", KEY_1)))
    served = _add_authority(sessions, "gov.served", f"{jwks_server.base_url}/jwks/1")
    _add_authority(sessions, "gov.missing", f"{jwks_server.base_url}/jwks/404")

    report = refresh_jwks(sessions, fetch=_fetcher(), now=NOW)

    by_issuer = {result.issuer: result for result in report.authorities}
    assert by_issuer["gov.served"] == AuthorityRefresh(issuer="gov.served", inserted=1)
    assert by_issuer["gov.missing"].error is not None
    assert "404" in by_issuer["gov.missing"].error
    assert _keys(sessions, served)["r1v1"].public_key_pem == _pem(KEY_1)


def test_a_failed_refresh_logs_one_line_without_a_trace(
    sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _add_authority(sessions, "gov.down", "https://down.example/jwks")
    web = FakeWeb({"https://down.example/jwks": httpx.ConnectError("connection refused")})

    with caplog.at_level("WARNING", logger="keyserver.jobs"):
        refresh_jwks(sessions, fetch=web, now=NOW)

    failures = [record for record in caplog.records if "refresh failed" in record.getMessage()]
    assert [record.getMessage() for record in failures] == [
        "jwks gov.down: refresh failed (ConnectError)"
    ]
    assert failures[0].exc_info is None
