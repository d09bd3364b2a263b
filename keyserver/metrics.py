"""Prometheus metrics of the key server.

Label values come from fixed sets (result codes, key outcomes, certificate failure classes)
or from configuration (import source names, which operators choose from a closed alphabet);
never an app id a client sent, a key, or a client address.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "exposure_keyserver"

PUBLISH_REQUESTS = Counter(
    f"{PREFIX}_publish_requests",
    "Publish requests by result: ok, partial_failure, or the error code.",
    ["result"],
)
PUBLISH_LATENCY = Histogram(
    f"{PREFIX}_publish_latency_seconds",
    "Time to answer a publish request (not chaff), from the first byte read to the answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
KEYS = Counter(
    f"{PREFIX}_keys",
    "Uploaded keys by outcome: inserted, revised, dropped (invalid or out of range).",
    ["outcome"],
)
CERTIFICATE_FAILURES = Counter(
    f"{PREFIX}_certificate_failures",
    "Certificates refused, by reason class (never told to the client).",
    ["reason"],
)
VERIFICATION_BYPASSED = Counter(
    f"{PREFIX}_verification_bypassed",
    "Publishes accepted without a valid certificate because the app bypasses verification.",
)

BATCHES_CREATED = Counter(f"{PREFIX}_export_batches_created", "Export windows closed into batches.")
BATCHES_COMPLETED = Counter(
    f"{PREFIX}_export_batches_completed", "Export batches written (files and index) and completed."
)
EXPORT_FILES = Counter(f"{PREFIX}_export_files_written", "Export zip files written.")
EXPORTED_KEYS = Counter(
    f"{PREFIX}_exported_keys",
    "Keys written into export files, by kind: key, revised, padding.",
    ["kind"],
)
LEASE_CONTENTION = Counter(
    f"{PREFIX}_export_lease_contention",
    "Batches another worker leased between this worker's read and its update.",
)
LAST_COMPLETE_BATCH = Gauge(
    f"{PREFIX}_export_last_complete_batch_timestamp_seconds",
    "When the newest export batch completed (Unix time); alert on time() minus this.",
)

IMPORT_FILES = Counter(
    f"{PREFIX}_import_files",
    "Peer export files handled, by source and result: imported, or refused.",
    ["source", "result"],
)
IMPORT_REFUSED = Counter(
    f"{PREFIX}_import_files_refused",
    "Peer export files refused whole, by source and reason (unsigned, unknown_key, ...).",
    ["source", "reason"],
)
IMPORT_KEYS = Counter(
    f"{PREFIX}_import_keys",
    "Keys of imported files by source and outcome: inserted, revised, duplicate, dropped.",
    ["source", "outcome"],
)
IMPORT_FAILURES = Counter(
    f"{PREFIX}_import_failures",
    "Import runs of a source stopped early, by reason (timeout, index_went_back, ...).",
    ["source", "reason"],
)
IMPORT_LAST_SUCCESS = Gauge(
    f"{PREFIX}_import_last_success_timestamp_seconds",
    "When each source last imported without error (Unix time); alert on time() minus this.",
    ["source"],
)
MIRROR_FILES = Counter(
    f"{PREFIX}_mirror_files",
    "Files of mirrored peers by mirror and action: copied, removed (gone upstream).",
    ["mirror", "action"],
)
MIRROR_FAILURES = Counter(
    f"{PREFIX}_mirror_failures",
    "Mirror runs stopped before the index was copied, by mirror and reason.",
    ["mirror", "reason"],
)
MIRROR_LAST_SUCCESS = Gauge(
    f"{PREFIX}_mirror_last_success_timestamp_seconds",
    "When each mirror last copied its peer without error (Unix time).",
    ["mirror"],
)

#: The metrics that move with single publishes (released once per interval, not live).
PER_REQUEST = (
    f"{PREFIX}_publish_requests",
    f"{PREFIX}_publish_latency_seconds",
    f"{PREFIX}_keys",
    f"{PREFIX}_certificate_failures",
    f"{PREFIX}_verification_bypassed",
)
