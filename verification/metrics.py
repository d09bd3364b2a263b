"""Prometheus metrics of the verification service.

Labels take values from fixed sets (endpoint names, error codes) or the realm id, which
operators create; never a code, key, token or client address.
"""

from __future__ import annotations

from prometheus_client import Counter

PREFIX = "exposure_verification"

REQUESTS = Counter(
    f"{PREFIX}_requests",
    "API requests by endpoint, realm and result (ok or the error code).",
    ["endpoint", "realm", "result"],
)
CODES_ISSUED = Counter(f"{PREFIX}_codes_issued", "Codes issued.", ["realm"])
CODES_CLAIMED = Counter(f"{PREFIX}_codes_claimed", "Codes traded for a token.", ["realm"])
CODES_REJECTED = Counter(
    f"{PREFIX}_codes_rejected",
    "Code verifications refused, by reason (code_invalid, code_expired, ...).",
    ["realm", "reason"],
)
TOKENS_ISSUED = Counter(f"{PREFIX}_tokens_issued", "Verification tokens signed.", ["realm"])
CERTIFICATES_ISSUED = Counter(
    f"{PREFIX}_certificates_issued", "Certificates signed (tokens claimed).", ["realm"]
)
RATE_LIMITED = Counter(
    f"{PREFIX}_rate_limited", "Requests refused by a rate limit or lockout.", ["endpoint", "limit"]
)

#: Every metric of the service moves with single requests of labs or phones: all of them
#: are released once per interval, never live.
PER_REQUEST = (PREFIX,)
