"""Prometheus metrics of the key server.

Label values come from fixed sets (result codes, key outcomes, certificate failure classes);
never an app id a client sent, a key, or a client address.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
