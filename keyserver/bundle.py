"""The key server, wired once: what every process that serves it, runs its jobs, purges its
data or administers it gets (see :mod:`exposure.bundle`).

Its export signing keys, revision keys, token AAD and retention-log key live in its own
database, sealed under its KEK, so replicas on hosts that share no directory sign and open
the same things. Export files go to the blob store its settings name (a directory on one
host, or S3 behind a CDN).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter
from sqlalchemy.orm import Session

from crypto.randomness import random_bytes
from exposure.auditors import auditor_authorizer
from exposure.bundle import OK, Clock, ReadinessCheck, ServiceBundle, ServiceResources
from exposure.db import unit_of_work
from exposure.keys import ServiceKeyStore
from exposure.keys.legacy import (
    LegacyImport,
    LegacySources,
    import_log_keys,
    import_secrets,
    import_signing_key_files,
    read_secrets,
)
from exposure.readiness import cached_probe
from exposure.retention.runtime import ServiceRetention
from exposure.retention.settings import RetentionSettings
from exposure.settings import Service
from keyserver import metrics
from keyserver.api import CHAFF_PATHS, create_router
from keyserver.context import REVISION_TOKEN_AAD, KeyserverContext
from keyserver.export.api import create_router as create_export_router
from keyserver.export.blobstore import (
    INDEX_CACHE_CONTROL,
    INDEX_CONTENT_TYPE,
    BlobStore,
    blob_store_from_settings,
)
from keyserver.retention import keyserver_policies
from keyserver.schedule import scheduled_jobs
from keyserver.service.revision_keys import (
    WRAPPING_ID_LABEL,
    WRAPPING_KEY_LABEL,
    rewrap_revision_keys,
)
from keyserver.settings import KeyserverSettings
from keyserver.store import export_configs as config_store

__all__ = ["KeyserverBundle", "build_keyserver_bundle", "import_legacy_keys"]

_logger = logging.getLogger(__name__)

#: The blob store is probed at most this often (an S3 round trip per readiness call would
#: cost more than the check is worth).
BLOB_STORE_PROBE_SECONDS = 30.0
#: Where the probe writes; not a name phones or index.txt ever use.
_PROBE_PREFIX = "readiness-probe"


@dataclass(frozen=True, kw_only=True)
class KeyserverBundle(ServiceBundle):
    context: KeyserverContext


def blob_store_probe(store: BlobStore) -> str:
    """Write and delete a small object: the worker's writes would fail the same way."""
    name = f"{_PROBE_PREFIX}/{random_bytes(8).hex()}.txt"
    try:
        store.put(name, b"ok", content_type=INDEX_CONTENT_TYPE, cache_control=INDEX_CACHE_CONTROL)
        store.delete(name)
    except Exception as error:  # any store, any failure: the probe only says which check
        _logger.warning(
            "readiness: the export blob store is not writable (%s)", type(error).__name__
        )
        return "not_writable"
    return OK


def build_keyserver_bundle(
    resources: ServiceResources,
    settings: KeyserverSettings,
    retention_settings: RetentionSettings,
) -> KeyserverBundle:
    """Wire the key server over opened ``resources``."""
    sessions = resources.session_factory
    now = resources.clock()
    with unit_of_work(sessions) as session:
        revision_aad = resources.keys.secrets(session, REVISION_TOKEN_AAD, now=now)[0]
        # Every key that signs export files must load now, not when a batch is due.
        for reference in config_store.signature_info_references(session, usable_at=now):
            resources.keys.signer(session, reference)
    export_store = blob_store_from_settings(settings, resources.settings.data_dir)
    context = KeyserverContext.create(
        settings,
        sessions,
        revision_wrapping=resources.keys.derived_keyring(
            key_label=WRAPPING_KEY_LABEL, id_label=WRAPPING_ID_LABEL
        ),
        revision_aad=revision_aad,
        key_store=resources.keys,
        export_store=export_store,
    )
    retention = ServiceRetention.build(
        Service.KEYSERVER,
        keyserver_policies(context, retention_settings),
        session_factory=sessions,
        keys=resources.keys,
        settings=retention_settings,
        now=now,
    )

    def routers(clock: Clock) -> Sequence[APIRouter]:
        return [create_router(context, sessions, clock), create_export_router(export_store)]

    def reseal_keys(session: Session) -> int:
        resealed = resources.keys.rewrap(session)
        resealed += len(rewrap_revision_keys(session, context.revision_wrapping))
        context.revision_keys.invalidate()
        return resealed

    return KeyserverBundle(
        service=Service.KEYSERVER,
        resources=resources,
        retention=retention,
        jobs=(*scheduled_jobs(context), retention.job()),
        readiness=(
            ReadinessCheck(
                "blob_store",
                cached_probe(lambda: blob_store_probe(export_store), BLOB_STORE_PROBE_SECONDS),
            ),
        ),
        chaff_paths=CHAFF_PATHS,
        routers=routers,
        authorize_auditor=auditor_authorizer(
            Service.KEYSERVER.value, sessions, resources.keys, now
        ),
        reseal_keys=reseal_keys,
        per_request_metrics=metrics.PER_REQUEST,
        context=context,
    )


def import_legacy_keys(
    session: Session, keys: ServiceKeyStore, sources: LegacySources, *, now: datetime
) -> LegacyImport:
    """Move what earlier versions kept in files or settings into the database: the revision
    tokens' AAD, the retention-log keys and the export signing keys' PEM files; revision
    keys sealed under the earlier revision secrets are re-sealed under the KEK."""
    report = LegacyImport(service=Service.KEYSERVER.value)
    import_secrets(
        session,
        keys,
        sources,
        report,
        purpose=REVISION_TOKEN_AAD,
        variable="EXPOSURE_KEYSERVER_REVISION_TOKEN_AAD",
        file_name="keyserver-revision-aad",
        now=now,
    )
    older, path = read_secrets(
        sources,
        variable="EXPOSURE_KEYSERVER_REVISION_SECRETS",
        file_name="keyserver-revision.keys",
        what="revision secret",
    )
    if older:
        wrapping = keys.derived_keyring(
            key_label=WRAPPING_KEY_LABEL, id_label=WRAPPING_ID_LABEL, older_secrets=older
        )
        report.imported.extend(
            f"revision-key-{kid}" for kid in rewrap_revision_keys(session, wrapping)
        )
    if path is not None:
        report.files.append(path)
    import_log_keys(session, keys, sources, report, now=now)
    import_signing_key_files(
        session,
        keys,
        sources,
        report,
        references=config_store.signature_info_references(session),
        now=now,
    )
    return report
