"""The phone-side SDK: what a GAEN app does, over HTTP only.

A phone broadcasts and records (:mod:`~exposure.client.device`,
:mod:`~exposure.client.sightings`), uploads its keys after a positive test
(:mod:`~exposure.client.upload`), downloads and verifies the keys of others
(:mod:`~exposure.client.exports`), finds the ones it heard
(:mod:`~exposure.client.matching`) and weighs them as GAEN v2 does
(:mod:`~exposure.client.risk`). It talks to the verification server and the key server
only through their public HTTP APIs, which are Google's, so it works with this server and
with Google's alike; it never imports either service (an import contract checks that).

Everything is a plain object or a pure function of its arguments: time and randomness are
parameters, so a demo can drive a thousand simulated phones in one process. docs/client.md
walks through a complete app.

Example::

    uploader = Uploader(config)
    uploader.upload(code, phone.keys_for_upload(now))

    index = SightingIndex(other.sightings.sightings)
    with ExportSync(source, SyncState.load(path), state_path=path) as sync:
        sync.run(index, now=now)
    windows = exposure_windows(sync.state.matched_keys, index, model)
    summaries = daily_summaries(windows, model)
"""

from exposure.client.device import (
    Advertisement,
    BluetoothMetadata,
    Device,
    TemporaryExposureKey,
    advertisement_for,
)
from exposure.client.errors import (
    ClientError,
    ClientErrorCode,
    ExportRefused,
    IndexUnavailable,
    PublishRefused,
    StateUnreadable,
    TransportFailed,
    UnexpectedResponse,
    VerificationRefused,
)
from exposure.client.exports import (
    ExportSigningKey,
    ExportSource,
    ExportSync,
    FileRefusal,
    MatchedKey,
    SyncReport,
    SyncState,
    VerifiedExport,
    decode_export_keys,
    open_export,
)
from exposure.client.matching import (
    DEFAULT_TOLERANCE,
    DerivedRpis,
    DiagnosisKey,
    KeyMatcher,
    ParallelMatcher,
    RpiHit,
    SightingIndex,
)
from exposure.client.risk import (
    DailySummary,
    ExposureSummaryData,
    ExposureWindow,
    Infectiousness,
    RiskModel,
    ScanInstance,
    daily_summaries,
    exposure_windows,
)
from exposure.client.sightings import Reception, Sighting, SightingStore
from exposure.client.upload import (
    CertifiedKeys,
    ChaffOutcome,
    PublishOutcome,
    ServerConfig,
    Uploader,
    UploadOutcome,
    VerifiedCode,
)
from exposure.export.model import ReportType

__all__ = [
    "DEFAULT_TOLERANCE",
    "Advertisement",
    "BluetoothMetadata",
    "CertifiedKeys",
    "ChaffOutcome",
    "ClientError",
    "ClientErrorCode",
    "DailySummary",
    "DerivedRpis",
    "Device",
    "DiagnosisKey",
    "ExportRefused",
    "ExportSigningKey",
    "ExportSource",
    "ExportSync",
    "ExposureSummaryData",
    "ExposureWindow",
    "FileRefusal",
    "IndexUnavailable",
    "Infectiousness",
    "KeyMatcher",
    "MatchedKey",
    "ParallelMatcher",
    "PublishOutcome",
    "PublishRefused",
    "Reception",
    "ReportType",
    "RiskModel",
    "RpiHit",
    "ScanInstance",
    "ServerConfig",
    "Sighting",
    "SightingIndex",
    "SightingStore",
    "StateUnreadable",
    "SyncReport",
    "SyncState",
    "TemporaryExposureKey",
    "TransportFailed",
    "UnexpectedResponse",
    "UploadOutcome",
    "Uploader",
    "VerificationRefused",
    "VerifiedCode",
    "VerifiedExport",
    "advertisement_for",
    "daily_summaries",
    "decode_export_keys",
    "exposure_windows",
    "open_export",
]
