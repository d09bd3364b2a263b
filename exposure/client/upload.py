"""Sharing keys after a positive test: code, token, certificate, publish; and chaff.

The protocol is Google's, call for call, so the same code works against this server and
against Google's verification and key servers (which may live on different hosts):

1. ``POST /api/verify {code, accept}`` with the app's ``X-API-Key`` gives a token and the
   test type (and symptom onset date, when the lab gave one).
2. The phone draws a fresh 32-byte secret and computes the TEK HMAC: HMAC-SHA256 over its
   keys, each written ``base64(key).rollingStartNumber.rollingPeriod.transmissionRisk``,
   sorted, joined by commas (:func:`crypto.tekmac.compute_tekmac`, the very function the key
   server checks with).
3. ``POST /api/certificate {token, ekeyhmac}`` gives a certificate bound to that HMAC.
4. ``POST /v1/publish {temporaryExposureKeys, healthAuthorityID, verificationPayload,
   hmacKey, symptomOnsetInterval, revisionToken, padding}`` publishes the keys. The answer's
   revision token is kept and sent with the next upload, which lets a later, stronger
   diagnosis (likely, then confirmed) revise the same keys.

Every request carries random ``padding``, so its size does not tell what it holds; and
:meth:`Uploader.send_chaff` sends the same three calls marked ``X-Chaff: 1`` (answered like
real ones, never acted on), so that calling these servers at all gives nobody away.

Example::

    uploader = Uploader(ServerConfig(verification_url=..., keyserver_url=...,
                                     api_key=..., health_authority_id=...))
    outcome = uploader.upload(code, phone.keys_for_upload(now))
    saved_token = uploader.revision_token        # keep it for the next upload
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any

import httpx

from crypto.gaen import interval_number
from crypto.randomness import random_bytes as system_random_bytes
from crypto.tekmac import SignedKey, compute_tekmac
from exposure.api.v1 import PUBLISH_PATH, PublishErrorCode
from exposure.client._http import (
    CHAFF_HEADER,
    DEFAULT_TIMEOUT,
    JsonAnswer,
    RandomBytes,
    new_http_client,
    post_json,
    random_padding,
)
from exposure.client.device import TemporaryExposureKey
from exposure.client.errors import (
    PublishRefused,
    TransportFailed,
    UnexpectedResponse,
    VerificationRefused,
)

__all__ = [
    "DEFAULT_ACCEPT",
    "HMAC_SECRET_LENGTH",
    "CertifiedKeys",
    "ChaffOutcome",
    "PublishOutcome",
    "ServerConfig",
    "UploadOutcome",
    "Uploader",
    "VerifiedCode",
]

VERIFY_PATH = "/api/verify"
CERTIFICATE_PATH = "/api/certificate"
#: Test types an app accepts by default; a self-report app adds ``user-report``.
DEFAULT_ACCEPT = ("confirmed", "likely")
#: Bytes of the secret the TEK HMAC is keyed with (the protocol asks for at least 16).
HMAC_SECRET_LENGTH = 32
# Chaff publishes carry as many keys as a real upload usually does.
_CHAFF_KEYS = 14


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the app uploads, and as whom.

    ``verification_url`` and ``keyserver_url`` are base URLs (one server may be both);
    ``api_key`` is the app's device API key for the verification server;
    ``health_authority_id`` is the app's id at the key server.
    """

    verification_url: str
    keyserver_url: str
    api_key: str = field(repr=False)
    health_authority_id: str
    accept: tuple[str, ...] = DEFAULT_ACCEPT
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class VerifiedCode:
    """What ``/api/verify`` answered: the one-use token and what the lab certified."""

    token: str = field(repr=False)
    test_type: str
    symptom_date: date | None
    test_date: date | None


@dataclass(frozen=True, slots=True)
class CertifiedKeys:
    """A certificate and the secret of the HMAC it binds, ready to publish."""

    certificate: str = field(repr=False)
    hmac_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What ``/v1/publish`` answered (status 200).

    ``partial_failure`` holds the server's message when some keys were dropped (code
    ``partial_failure``), else None; ``warnings`` lists keys dropped for their symptom onset.
    """

    inserted_exposures: int
    revision_token: str = field(repr=False)
    warnings: tuple[str, ...]
    partial_failure: str | None


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """One whole upload: the verified test type and the publish answer."""

    test_type: str
    published: PublishOutcome


@dataclass(frozen=True, slots=True)
class ChaffOutcome:
    """The statuses of the three chaff calls (None: no answer); there is nothing else."""

    statuses: tuple[int | None, ...]


def _wire_key(key: TemporaryExposureKey) -> dict[str, Any]:
    return {
        "key": base64.b64encode(key.key_data).decode("ascii"),
        "rollingStartNumber": key.rolling_start_interval_number,
        "rollingPeriod": key.rolling_period,
        "transmissionRisk": key.transmission_risk_level,
    }


def _tekmac(secret: bytes, wire_keys: Sequence[dict[str, Any]]) -> bytes:
    # Over the very strings and numbers sent in JSON, as the key server recomputes it.
    return compute_tekmac(
        secret,
        [
            SignedKey(
                wire["key"],
                wire["rollingStartNumber"],
                wire["rollingPeriod"],
                wire["transmissionRisk"],
            )
            for wire in wire_keys
        ],
    )


def _optional_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None  # a date we cannot read is a date we do not send on


class Uploader:
    """Talks to the verification server and the key server for one phone.

    ``http`` is the client to use (one with timeouts is made, and closed by :meth:`close`,
    when none is given); ``random_bytes`` supplies HMAC secrets and padding;
    ``revision_token`` is the token a previous upload returned, if the app kept one.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        http: httpx.Client | None = None,
        random_bytes: RandomBytes = system_random_bytes,
        revision_token: str = "",
    ) -> None:
        self.config = config
        self._owns_http = http is None
        self._http = http if http is not None else new_http_client(config.timeout)
        self._random_bytes = random_bytes
        self._revision_token = revision_token

    def __enter__(self) -> Uploader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if the uploader made it."""
        if self._owns_http:
            self._http.close()

    @property
    def revision_token(self) -> str:
        """The token of the last successful publish (empty before any); keep it."""
        return self._revision_token

    def _url(self, base: str, path: str) -> str:
        return base.rstrip("/") + path

    def _verification_call(self, path: str, body: dict[str, Any], what: str) -> JsonAnswer:
        answer = post_json(
            self._http,
            self._url(self.config.verification_url, path),
            {**body, "padding": random_padding(self._random_bytes)},
            what=what,
            headers={"X-API-Key": self.config.api_key},
        )
        if answer.status != 200:
            raise VerificationRefused(
                answer.error_code(), f"{what}: {answer.error_message()}", status=answer.status
            )
        return answer

    def verify_code(self, code: str) -> VerifiedCode:
        """Trade a verification code for a token.

        Raises :class:`VerificationRefused` (``code_invalid``, ``code_expired``,
        ``unsupported_test_type``, ...), :class:`TransportFailed` or
        :class:`UnexpectedResponse`.
        """
        answer = self._verification_call(
            VERIFY_PATH, {"code": code, "accept": list(self.config.accept)}, "verify"
        )
        token = answer.text("token")
        if not token:
            raise UnexpectedResponse("verify: the answer holds no token", status=answer.status)
        return VerifiedCode(
            token=token,
            test_type=answer.text("testtype"),
            symptom_date=_optional_date(answer.text("symptomDate")),
            test_date=_optional_date(answer.text("testDate")),
        )

    def certify(self, token: str, keys: Sequence[TemporaryExposureKey]) -> CertifiedKeys:
        """Compute the TEK HMAC of ``keys`` with a fresh secret and get a certificate for it.

        Raises :class:`VerificationRefused` (``token_expired``, ``token_invalid``,
        ``hmac_invalid``, ...), :class:`TransportFailed` or :class:`UnexpectedResponse`.
        """
        secret = self._random_bytes(HMAC_SECRET_LENGTH)
        tekmac = _tekmac(secret, [_wire_key(key) for key in keys])
        answer = self._verification_call(
            CERTIFICATE_PATH,
            {"token": token, "ekeyhmac": base64.b64encode(tekmac).decode("ascii")},
            "certificate",
        )
        certificate = answer.text("certificate")
        if not certificate:
            raise UnexpectedResponse(
                "certificate: the answer holds no certificate", status=answer.status
            )
        return CertifiedKeys(certificate=certificate, hmac_secret=secret)

    def publish(
        self,
        keys: Sequence[TemporaryExposureKey],
        certified: CertifiedKeys,
        *,
        symptom_onset_interval: int | None = None,
        traveler: bool = False,
    ) -> PublishOutcome:
        """Publish ``keys`` with their certificate and the kept revision token.

        On success the answer's revision token replaces the kept one (an answer without one
        leaves it as it was). Raises :class:`PublishRefused` with the key server's code,
        :class:`TransportFailed` or :class:`UnexpectedResponse`.
        """
        body: dict[str, Any] = {
            "temporaryExposureKeys": [_wire_key(key) for key in keys],
            "healthAuthorityID": self.config.health_authority_id,
            "verificationPayload": certified.certificate,
            "hmacKey": base64.b64encode(certified.hmac_secret).decode("ascii"),
            "traveler": traveler,
            "revisionToken": self._revision_token,
            "padding": random_padding(self._random_bytes),
        }
        if symptom_onset_interval is not None:
            body["symptomOnsetInterval"] = symptom_onset_interval
        answer = post_json(
            self._http, self._url(self.config.keyserver_url, PUBLISH_PATH), body, what="publish"
        )
        if answer.status != 200:
            raise PublishRefused(
                answer.error_code(), f"publish: {answer.error_message()}", status=answer.status
            )
        inserted = answer.body.get("insertedExposures", 0)
        warnings = answer.body.get("warnings", [])
        if not isinstance(inserted, int) or not isinstance(warnings, list):
            raise UnexpectedResponse("publish: malformed answer", status=answer.status)
        token = answer.text("revisionToken")
        if token:
            self._revision_token = token
        partial = answer.text("code") == PublishErrorCode.PARTIAL_FAILURE
        return PublishOutcome(
            inserted_exposures=inserted,
            revision_token=self._revision_token,
            warnings=tuple(str(warning) for warning in warnings),
            partial_failure=answer.error_message() if partial else None,
        )

    def upload(
        self, code: str, keys: Sequence[TemporaryExposureKey], *, traveler: bool = False
    ) -> UploadOutcome:
        """The whole flow for a code: verify, certify ``keys``, publish them.

        The symptom onset the lab recorded, if any, is sent as ``symptomOnsetInterval``.
        Raises what :meth:`verify_code`, :meth:`certify` and :meth:`publish` raise.
        """
        verified = self.verify_code(code)
        certified = self.certify(verified.token, keys)
        onset = None
        if verified.symptom_date is not None:
            midnight = datetime.combine(verified.symptom_date, datetime.min.time(), tzinfo=UTC)
            onset = interval_number(midnight)
        published = self.publish(keys, certified, symptom_onset_interval=onset, traveler=traveler)
        return UploadOutcome(test_type=verified.test_type, published=published)

    def send_chaff(self) -> ChaffOutcome:
        """Send one chaff request to each of the three endpoints; never raises.

        Each is shaped and padded like a real request of its kind, with random contents,
        and marked ``X-Chaff: 1``: servers answer it like a real one and act on nothing.
        Its answers carry nothing and are discarded.
        """
        rng = self._random_bytes
        chaff = {CHAFF_HEADER: "1"}
        verification = {"X-API-Key": self.config.api_key, **chaff}
        calls: list[tuple[str, dict[str, Any], dict[str, str]]] = [
            (
                self._url(self.config.verification_url, VERIFY_PATH),
                {
                    "code": "".join(str(byte % 10) for byte in rng(8)),
                    "accept": list(self.config.accept),
                },
                verification,
            ),
            (
                self._url(self.config.verification_url, CERTIFICATE_PATH),
                {"token": _fake_jwt(rng), "ekeyhmac": base64.b64encode(rng(32)).decode("ascii")},
                verification,
            ),
            (
                self._url(self.config.keyserver_url, PUBLISH_PATH),
                {
                    "temporaryExposureKeys": [
                        {
                            "key": base64.b64encode(rng(16)).decode("ascii"),
                            "rollingStartNumber": int.from_bytes(rng(3), "big") + 2_600_000,
                            "rollingPeriod": 144,
                            "transmissionRisk": 0,
                        }
                        for _ in range(_CHAFF_KEYS)
                    ],
                    "healthAuthorityID": self.config.health_authority_id,
                    "verificationPayload": _fake_jwt(rng),
                    "hmacKey": base64.b64encode(rng(HMAC_SECRET_LENGTH)).decode("ascii"),
                    "traveler": False,
                    "revisionToken": "",
                },
                chaff,
            ),
        ]
        statuses: list[int | None] = []
        for url, body, headers in calls:
            body["padding"] = random_padding(rng)
            try:
                statuses.append(
                    post_json(self._http, url, body, what="chaff", headers=headers).status
                )
            except (TransportFailed, UnexpectedResponse):
                statuses.append(None)
        return ChaffOutcome(statuses=tuple(statuses))


def _fake_jwt(random_bytes: RandomBytes) -> str:
    # Three base64url segments about as long as a real ES256 token's.
    segments = (random_bytes(60), random_bytes(260), random_bytes(64))
    return ".".join(base64.urlsafe_b64encode(part).rstrip(b"=").decode() for part in segments)
