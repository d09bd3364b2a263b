"""The verification service, wired once: what every process that serves it, runs its jobs,
purges its data or administers it gets (see :mod:`exposure.bundle`).

Its secrets (the keys codes, tokens and API keys are hashed under) and its private keys
live in its own database, sealed under its KEK; the first start makes them, so every
replica reads the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter
from sqlalchemy.orm import Session

from crypto.codes import hmac_sha512
from crypto.sealing import derived_keyring
from exposure.auditors import auditor_authorizer
from exposure.bundle import Clock, ServiceBundle, ServiceResources
from exposure.db import unit_of_work
from exposure.keys import ServiceKeyStore
from exposure.keys.legacy import (
    LegacyImport,
    LegacySources,
    import_log_keys,
    import_secrets,
    import_signing_key_files,
)
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.settings import Service
from verification import metrics, store
from verification.api import CHAFF_PATHS, create_router
from verification.console.routes import create_console_router
from verification.console.service import ConsoleContext
from verification.context import HASH_SECRET, VerificationContext
from verification.errors import VerificationError
from verification.retention import verification_policies
from verification.service import realms
from verification.settings import VerificationSettings

__all__ = ["VerificationBundle", "build_verification_bundle", "import_legacy_keys"]


@dataclass(frozen=True, kw_only=True)
class VerificationBundle(ServiceBundle):
    context: VerificationContext
    console: ConsoleContext


def build_verification_bundle(
    resources: ServiceResources,
    settings: VerificationSettings,
    retention_settings: RetentionSettings,
) -> VerificationBundle:
    """Wire the verification service over opened ``resources``."""
    sessions = resources.session_factory
    now = resources.clock()
    with unit_of_work(sessions) as session:
        secrets = resources.keys.secrets(session, HASH_SECRET, now=now)
        # Every key a row names must load now, not at a phone's first request.
        for reference in store.signing_key_references(session):
            resources.keys.signer(session, reference)
    context = VerificationContext.create(settings, secrets=secrets, key_store=resources.keys)
    console = ConsoleContext(
        verification=context,
        # Rotating the hashing secret signs every staff member out: the cookies were
        # signed under the old one.
        cookie_key=hmac_sha512(secrets[0], b"exposure/verification/console-cookies"),
        totp_keyring=derived_keyring(
            secrets,
            key_label=b"exposure/verification/console-totp",
            id_label=b"exposure/verification/console-totp-id",
        ),
        secure_cookies=resources.settings.base_url.startswith("https://"),
        session_lifetime=settings.console_session_lifetime,
        sign_in_failures=settings.console_sign_in_failures,
        sign_in_window=settings.console_sign_in_window,
    )
    retention = ServiceRetention.build(
        Service.VERIFICATION,
        verification_policies(context, retention_settings),
        session_factory=sessions,
        keys=resources.keys,
        settings=retention_settings,
        now=now,
    )
    service_auditor = auditor_authorizer(Service.VERIFICATION.value, sessions, resources.keys, now)

    def realm_auditor(api_key: str) -> bool:
        try:
            with sessions() as session:
                realms.authenticate(
                    session, context, api_key=api_key, kind=realms.ApiKeyKind.AUDITOR
                )
        except VerificationError:
            return False
        return True

    def authorize_auditor(api_key: str) -> bool:
        # A realm's auditor keys (made with `admin apikey create --type auditor`) and the
        # service-wide ones (`admin auditor-key create`) both read the log.
        return service_auditor(api_key) or realm_auditor(api_key)

    def routers(clock: Clock) -> Sequence[APIRouter]:
        return [
            create_router(context, sessions, clock),
            create_console_router(console, sessions, clock, retention),
        ]

    return VerificationBundle(
        service=Service.VERIFICATION,
        resources=resources,
        retention=retention,
        jobs=(retention.job(),),
        readiness=(),
        chaff_paths=CHAFF_PATHS,
        routers=routers,
        authorize_auditor=authorize_auditor,
        reseal_keys=resources.keys.rewrap,
        per_request_metrics=metrics.PER_REQUEST,
        context=context,
        console=console,
    )


def import_legacy_keys(
    session: Session, keys: ServiceKeyStore, sources: LegacySources, *, now: datetime
) -> LegacyImport:
    """Move what earlier versions kept in files or settings into the database: the hashing
    secrets, the retention-log keys and the signing keys' PEM files."""
    report = LegacyImport(service=Service.VERIFICATION.value)
    import_secrets(
        session,
        keys,
        sources,
        report,
        purpose=HASH_SECRET,
        variable="EXPOSURE_VERIFICATION_SECRET_KEYS",
        file_name="verification.keys",
        now=now,
    )
    import_log_keys(session, keys, sources, report, now=now)
    import_signing_key_files(
        session,
        keys,
        sources,
        report,
        references=store.signing_key_references(session),
        now=now,
    )
    return report
