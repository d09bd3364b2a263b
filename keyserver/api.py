"""HTTP layer of the key server: ``POST /v1/publish``, wire-compatible with the reference.

The handler parses the body with Go's rules (exposure.http.body), then runs the publish in
the thread pool: app and health-authority lookups and the certificate check come from
per-process caches, and one unit of work stores the keys. Every answer carries
``x-api-version: v1`` and random ``padding``, except the maintenance refusal, whose body is
fixed by the reference.

Strings of the request reach SQL in two places only: ``healthAuthorityID`` (the app lookup)
and the certificate's ``iss`` (the authority lookup). A value no registration could have
stored (a NUL, which PostgreSQL refuses in text and SQLite keeps; a lone surrogate; for app
ids anything but printable ASCII) is answered as unknown without a query
(:func:`~keyserver.service.trust.app_lookup_name`,
:func:`~keyserver.service.trust.could_be_issuer`), so both engines give the same 401. Every
other string is decoded (base64, JWT) before it is used, and a NUL just fails the decoding.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from exposure.api.v1 import (
    API_VERSION_HEADER,
    MAINTENANCE_BODY,
    MAX_PUBLISH_BODY_BYTES,
    PUBLISH_PATH,
    PublishErrorCode,
    PublishRequest,
    PublishResponse,
)
from exposure.db import SessionFactory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.http.blocking import run_blocking
from exposure.http.body import BodyError, parse_model, read_json_object
from exposure.http.openapi import CHAFF_PARAMETER, Answer, DocumentedRouter, Operation
from exposure.http.padding import random_padding
from exposure.json_codec import encode_json
from keyserver import metrics
from keyserver.context import KeyserverContext
from keyserver.errors import (
    MAX_QUOTED_REQUEST_VALUE,
    BadRequest,
    CertificateInvalid,
    MissingRegionConfig,
    PublishError,
    UnableToLoadHealthAuthority,
    UnknownHealthAuthorityID,
)
from keyserver.service.certificate import VerifiedCertificate, verify_certificate
from keyserver.service.publish import store_new_publish, store_publish
from keyserver.service.transform import describe_key_errors, transform_publish
from keyserver.service.trust import AppConfig

_logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: Paths whose ``X-Chaff`` requests are answered without reaching the handler.
CHAFF_PATHS = (PUBLISH_PATH,)

_VERSION_HEADER = {API_VERSION_HEADER[0]: f"Always `{API_VERSION_HEADER[1]}`."}


def _answer(description: str) -> Answer:
    return Answer(description, PublishResponse, headers=_VERSION_HEADER)


PUBLISH = Operation(
    method="POST",
    path=PUBLISH_PATH,
    operation_id="publish",
    summary="Publish the Temporary Exposure Keys of a person verified positive",
    description=(
        "Wire-compatible with Google's key server v1 (`pkg/api/v1`): same path, field "
        "names, error codes and statuses. Field names match in any ASCII case and every "
        "field may be left out (it takes its zero value, as in Go). No API key: the "
        "certificate in `verificationPayload` (from `POST /api/certificate`) and the "
        "`hmacKey` it was made with are the proof. Errors carry a stable `code`; messages "
        "quote no request value longer than 64 characters and nothing secret."
    ),
    tag="keyserver",
    request=PublishRequest,
    request_description="The keys (1-30) and the proof; at most 64,000 bytes.",
    parameters=(CHAFF_PARAMETER,),
    answers={
        200: _answer(
            "Stored: `insertedExposures` counts the new keys, `revisionToken` revises them "
            "later. Also 200: `code` `partial_failure` when some keys were dropped, "
            "`warnings` when keys were too far from the symptom onset (all of them: nothing "
            "stored), and the answer to chaff (padding only)."
        ),
        400: _answer(
            "`bad_request`: unreadable body (malformed JSON, unknown field, wrong type, "
            "int32 overflow, trailing data) or invalid keys; `missing_revision_token`, "
            "`invalid_revision_token`, `key_already_revised`, "
            "`invalid_report_type_transition`; `internal_error` for a stored key re-sent "
            "with other values."
        ),
        401: _answer(
            "`unknown_health_authority_id`: not a registered app; "
            "`health_authority_verification_certificate_invalid`: the certificate or the "
            "HMAC did not check out (the reason is never told)."
        ),
        413: _answer("`bad_request`: the body is over 64,000 bytes."),
        415: _answer("`bad_request`: `Content-Type` is not `application/json`."),
        429: _answer('Maintenance mode: exactly `{"error": "please try again later"}`.'),
        500: _answer(
            "`internal_error`, `unable_to_load_health_authority`, "
            "`health_authority_missing_region_config`: the server's fault, retry later."
        ),
    },
)

# What an app id looks like when it is one: "com.example.app", "gov.vn.bluezone-ios".
_APP_ID_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z][A-Za-z0-9_-]*)+")


def unknown_app_message(app_id: str) -> str:
    """The reference's ``unauthorized health authority: <id>``, quoting only a plausible id.

    An id shaped like an Android package or an iOS bundle id (dotted labels, each starting
    with a letter) and at most :data:`MAX_QUOTED_REQUEST_VALUE` characters is quoted, as the
    reference does, so an integrator sees the typo. Anything else is not sent back: 60 kB of
    text, a NUL, or a secret pasted into the wrong field (base64 has no dots; a certificate
    or an API key is longer).
    """
    if len(app_id) <= MAX_QUOTED_REQUEST_VALUE and _APP_ID_SHAPE.fullmatch(app_id):
        return f"unauthorized health authority: {app_id}"
    return "unauthorized health authority"


def create_router(
    context: KeyserverContext, session_factory: SessionFactory, clock: Clock
) -> APIRouter:
    """The publish route, bound to its dependencies (no module-level state)."""
    router = DocumentedRouter()
    settings = context.settings

    def answer(body: PublishResponse, status: int = 200) -> Response:
        body.padding = random_padding(
            minimum=settings.response_padding_min_bytes,
            spread=settings.response_padding_range_bytes,
        )
        return Response(
            encode_json(body.wire()),
            status_code=status,
            media_type="application/json",
            headers=dict([API_VERSION_HEADER]),
        )

    def refuse(error: PublishError) -> Response:
        message = error.message
        if isinstance(error, BadRequest):
            message = f"unable to read request data: {message}"
        body = PublishResponse(error=message, code=error.code, warnings=error.warnings)
        return answer(body, error.status)

    def load_app(app_id: str, now: datetime) -> AppConfig:
        try:
            app = context.trust.app(app_id, now)
        except SQLAlchemyError:
            _logger.exception("publish: loading the authorized app failed")
            raise UnableToLoadHealthAuthority("unable to load health authority") from None
        if app is None:
            raise UnknownHealthAuthorityID(unknown_app_message(app_id))
        return app

    def check_certificate(
        parsed: PublishRequest, app: AppConfig, now: datetime
    ) -> VerifiedCertificate | None:
        try:
            return verify_certificate(
                token=parsed.verificationPayload,
                hmac_key=parsed.hmacKey,
                keys=parsed.temporaryExposureKeys,
                app=app,
                authorities=lambda issuer: context.trust.authority(issuer, now),
                max_lifetime=settings.certificate_max_lifetime,
                now=now,
            )
        except CertificateInvalid as error:
            metrics.CERTIFICATE_FAILURES.labels(error.reason).inc()
            if not app.bypass_verification:
                raise
            metrics.VERIFICATION_BYPASSED.inc()
            _logger.warning("publish: certificate refused (%s); app bypasses", error.reason)
            return None

    def publish_work(parsed: PublishRequest) -> tuple[Response, str]:
        now = clock()
        app = load_app(parsed.healthAuthorityID, now)
        regions = app.regions or ((settings.default_region,) if settings.default_region else ())
        if not regions:
            raise MissingRegionConfig("health authority has no regions configured")
        certificate = check_certificate(parsed, app, now)
        transformed = transform_publish(
            parsed,
            report_type=certificate.report_type if certificate else "",
            certificate_onset=certificate.symptom_onset_interval if certificate else None,
            regions=regions,
            now=now,
            settings=settings,
        )
        secrets = context.revision_secrets(now)
        health_authority_id = certificate.health_authority_id if certificate else None
        with autocommit(session_factory) as connection:
            outcome = store_new_publish(
                connection,
                transformed.keys,
                revision_token=parsed.revisionToken,
                health_authority_id=health_authority_id,
                secrets=secrets,
                settings=settings,
                now=now,
            )
        if outcome is None:
            with unit_of_work(session_factory) as session:
                outcome = store_publish(
                    session,
                    transformed.keys,
                    revision_token=parsed.revisionToken,
                    health_authority_id=health_authority_id,
                    secrets=secrets,
                    settings=settings,
                    now=now,
                )
        dropped = (
            len(transformed.errors)
            + len(transformed.warnings)
            + transformed.duplicates
            + outcome.skipped
        )
        metrics.KEYS.labels("inserted").inc(outcome.inserted)
        metrics.KEYS.labels("revised").inc(outcome.revised)
        metrics.KEYS.labels("dropped").inc(dropped)
        body = PublishResponse(
            revisionToken=outcome.revision_token,
            insertedExposures=outcome.inserted,
            warnings=list(transformed.warnings),
        )
        result = "ok"
        if transformed.errors:
            body.error = describe_key_errors(transformed.errors)
            body.code = result = PublishErrorCode.PARTIAL_FAILURE
        return answer(body), result

    def guarded_work(parsed: PublishRequest) -> tuple[Response, str]:
        try:
            return publish_work(parsed)
        except PublishError as error:
            return refuse(error), error.code
        except Exception:
            # Logged with its trace for operators; the phone learns only that it failed.
            _logger.exception("publish failed")
            failure = PublishError("Internal Server Error")
            return refuse(failure), failure.code

    async def publish(request: Request) -> Response:
        """Publish the Temporary Exposure Keys of a person verified positive."""
        if settings.maintenance_mode:
            metrics.PUBLISH_REQUESTS.labels("maintenance").inc()
            return Response(
                json.dumps(MAINTENANCE_BODY),
                status_code=429,
                media_type="application/json",
                headers=dict([API_VERSION_HEADER]),
            )
        started = time.perf_counter()
        try:
            data = await read_json_object(request, max_bytes=MAX_PUBLISH_BODY_BYTES)
            parsed = parse_model(PublishRequest, data, case_insensitive=True)
        except BodyError as error:
            code = (
                PublishErrorCode.INTERNAL if error.status >= 500 else PublishErrorCode.BAD_REQUEST
            )
            text = f"error unmarshalling API call, code: {error.status}: {error.message}"
            response = answer(PublishResponse(error=text, code=code), error.status)
            result = str(code)
        else:
            response, result = await run_blocking(guarded_work, parsed)
        metrics.PUBLISH_REQUESTS.labels(result).inc()
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        return response

    # A plain Starlette route: the handler reads its own body and answers a Response, so
    # FastAPI's per-request parameter and dependency resolution would only cost time.
    router.add_documented_route(PUBLISH, publish)
    return router
