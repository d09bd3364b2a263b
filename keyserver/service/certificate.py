"""Verification of the certificate a phone sends with its keys (reference §3.3, §3.4).

The certificate is an ES256 JWT from a trusted health authority. It says what kind of
diagnosis the keys belong to (``reportType``), optionally when symptoms began, and binds
itself to the very keys uploaded through ``tekmac``: an HMAC of the keys under a secret that
the phone sends alongside (``hmacKey``). The checks run in the reference's order:

1. read ``iss`` from the unverified token (header ``alg`` ES256 with a string ``kid``) and
   look up the health authority;
2. ``aud`` must be that authority's audience, exactly, as a single string;
3. the key named ``kid`` must be valid now (``valid_from < now < valid_until``);
4. the signature and the time claims (:func:`crypto.tokens.verify_jwt`, ES256 only);
5. the app must trust this authority;
6. ``reportType`` must be confirmed, likely, negative or user-report;
7. ``tekmac`` must match the keys exactly as sent.

Where this differs from the reference: ``exp`` is required (the reference accepts a
certificate without one, which would be valid forever), a certificate is expired *at*
``exp`` (RFC 7519; the reference accepts that second), and its lifetime is bounded: ``exp -
iat`` (``exp - now`` without ``iat``) must not exceed ``max_lifetime`` (the setting
``certificate_max_lifetime``, one hour by default), so an authority's mistake (``exp``
1e308) or a stolen long-lived certificate cannot publish keys for anyone, forever. ``nbf``
and ``iat`` may lie up to :data:`ALLOWED_CLOCK_SKEW` in the future, because the certificate
was stamped by another server's clock moments before; ``exp`` gets no leeway.

Every failure raises :class:`~keyserver.errors.CertificateInvalid` with the same message;
only its ``reason`` (one of :data:`REASONS`, for logs and metrics) tells them apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crypto.encoding import b64url_decode, decode_base64_lenient
from crypto.errors import InvalidMac, InvalidToken
from crypto.tekmac import SignedKey, verify_tekmac
from crypto.tokens import ALGORITHM, verify_jwt
from exposure.api.v1 import ExposureKey
from exposure.tek import ReportType
from keyserver.errors import CertificateInvalid
from keyserver.service.trust import AppConfig, AuthorityConfig

__all__ = [
    "ALLOWED_CLOCK_SKEW",
    "REASONS",
    "REPORT_TYPES",
    "VerifiedCertificate",
    "verify_certificate",
]

#: How far in the future ``nbf`` and ``iat`` may be: clocks of two servers differ a little.
ALLOWED_CLOCK_SKEW = timedelta(seconds=5)

#: The report types a certificate may carry (``pkg/api/v1/verification_types.go``).
REPORT_TYPES = frozenset(report_type.value for report_type in ReportType)

#: Every ``CertificateInvalid.reason`` this module raises (a bounded set for metric labels).
REASONS = (
    "unparsable",  # not a compact JWS with JSON header and claims
    "header",  # alg is not ES256, or kid is not a string
    "unknown_issuer",
    "audience",
    "no_key",  # no key with this kid is valid now
    "signature",
    "no_expiry",
    "expired",
    "not_yet_valid",
    "lifetime",  # exp - iat (or exp - now) longer than the maximum lifetime
    "claims",  # a claim of the wrong type (symptomOnsetInterval)
    "app_not_authorized",
    "report_type",
    "hmac",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class VerifiedCertificate:
    """What publish takes from a certificate that passed every check."""

    report_type: str
    #: The certificate's ``symptomOnsetInterval`` if it has one (publish decides if usable).
    symptom_onset_interval: int | None
    #: The issuing health authority's id, stored on the published keys.
    health_authority_id: int


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise CertificateInvalid("unparsable") from error
    if not isinstance(value, dict):
        raise CertificateInvalid("unparsable")
    return value


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, read before the signature is checked: only to pick the key."""
    segments = token.split(".")
    if len(segments) != 3:
        raise CertificateInvalid("unparsable")
    return _json_object(segments[0]), _json_object(segments[1])


def _seconds(instant: datetime) -> float:
    return (instant - _EPOCH) / timedelta(seconds=1)


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(name)
    try:
        number = float(value)
    except OverflowError as error:  # an integer beyond any float
        raise ValueError(name) from error
    if not math.isfinite(number):
        raise ValueError(name)
    return number


def _failure_reason(
    claims: Mapping[str, Any], verify_at: Callable[[datetime], object], now: datetime
) -> str:
    """Why :func:`verify_jwt` refused a token whose header, iss, aud and key were fine.

    Only for logs: the refusal itself is already decided. A time reason is given only if
    the signature verifies at an instant inside the token's validity window; otherwise the
    token is reported as a bad signature, whatever its times say.
    """
    try:
        expires = _numeric(claims, "exp")
        starts = [_numeric(claims, "nbf"), _numeric(claims, "iat")]
    except ValueError:
        return "unparsable"
    not_before = max((start for start in starts if start is not None), default=None)
    if expires is None:
        return "no_expiry"
    current = _seconds(now)
    skew = ALLOWED_CLOCK_SKEW.total_seconds()
    if not_before is not None and current + skew < not_before:
        reason, probe = "not_yet_valid", not_before
    elif current >= expires:
        reason, probe = "expired", expires - 1
    else:
        return "signature"
    if not_before is not None and not_before > expires:
        return reason  # never valid at any instant: no signature check can tell more
    try:
        verify_at(_EPOCH + timedelta(seconds=probe))
    except (InvalidToken, OverflowError):
        return "signature"
    return reason


def _lifetime(claims: Mapping[str, Any], now: datetime) -> timedelta:
    """``exp - iat``, or ``exp - now`` without ``iat``, of claims :func:`verify_jwt` accepted.

    Only finite numbers get this far, but their difference can still be far beyond what a
    timedelta holds (``exp`` 1e308): such a lifetime is reported as the largest timedelta.
    """
    expires = float(claims["exp"])
    issued = _numeric(claims, "iat")
    seconds = expires - (_seconds(now) if issued is None else issued)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return timedelta.max if seconds > 0 else timedelta.min


def _symptom_onset(claims: Mapping[str, Any]) -> int | None:
    value = claims.get("symptomOnsetInterval")
    if value is None:
        return None
    # The reference decodes it into a uint32: anything else fails the whole certificate.
    if type(value) is not int or not 0 <= value <= _UINT32_MAX:
        raise CertificateInvalid("claims")
    return value


def _check_tekmac(claims: Mapping[str, Any], hmac_key: str, keys: Sequence[ExposureKey]) -> None:
    mac_text = claims.get("tekmac")
    if not isinstance(mac_text, str):
        raise CertificateInvalid("hmac")
    try:
        mac = decode_base64_lenient(mac_text)
        secret = decode_base64_lenient(hmac_key)
        signed = [
            SignedKey(key.key, key.rollingStartNumber, key.rollingPeriod, key.transmissionRisk)
            for key in keys
        ]
        verify_tekmac(secret, signed, mac)
    except (ValueError, TypeError, InvalidMac) as error:
        raise CertificateInvalid("hmac") from error


def verify_certificate(
    *,
    token: str,
    hmac_key: str,
    keys: Sequence[ExposureKey],
    app: AppConfig,
    authorities: Callable[[str], AuthorityConfig | None],
    max_lifetime: timedelta,
    now: datetime,
) -> VerifiedCertificate:
    """Check a publish's certificate against the trusted authorities and the uploaded keys.

    ``authorities`` looks a health authority up by issuer (usually a
    :class:`~keyserver.service.trust.TrustCache`); ``keys`` are the request's keys exactly
    as sent, including any that publish later drops; ``max_lifetime`` bounds ``exp - iat``
    (``exp - now`` when the certificate has no ``iat``). Raises
    :class:`~keyserver.errors.CertificateInvalid` on any failure. The app's
    ``bypass_verification`` is the caller's business.
    """
    header, unverified_claims = _unverified(token)
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str):
        raise CertificateInvalid("header")
    issuer = unverified_claims.get("iss")
    authority = authorities(issuer) if isinstance(issuer, str) else None
    if authority is None:
        raise CertificateInvalid("unknown_issuer")
    if unverified_claims.get("aud") != authority.audience:
        # An array, even one holding the audience, fails: the reference reads a string.
        raise CertificateInvalid("audience")
    public_key = authority.active_key(kid, now)
    if public_key is None:
        raise CertificateInvalid("no_key")

    def verify_at(instant: datetime) -> dict[str, Any]:
        return verify_jwt(
            token,
            public_keys={kid: public_key},
            audience=authority.audience,
            issuer=authority.issuer,
            now=instant,
            leeway=ALLOWED_CLOCK_SKEW,
            required_claims=("exp",),
        )

    try:
        claims = verify_at(now)
    except InvalidToken as error:
        reason = _failure_reason(unverified_claims, verify_at, now)
        raise CertificateInvalid(reason) from error
    except OverflowError as error:
        # crypto.tokens lets a time claim beyond any float (exp: 1e400 as an integer) through
        # as OverflowError; it is a malformed certificate, not a server error.
        raise CertificateInvalid("unparsable") from error
    # verify_jwt's leeway loosens exp as well; exp itself gets none.
    if _seconds(now) >= float(claims["exp"]):
        raise CertificateInvalid("expired")
    if _lifetime(claims, now) > max_lifetime:
        raise CertificateInvalid("lifetime")

    if authority.id not in app.health_authority_ids:
        raise CertificateInvalid("app_not_authorized")
    report_type = claims.get("reportType")
    if not isinstance(report_type, str) or report_type not in REPORT_TYPES:
        raise CertificateInvalid("report_type")
    symptom_onset_interval = _symptom_onset(claims)
    _check_tekmac(claims, hmac_key, keys)
    return VerifiedCertificate(
        report_type=report_type,
        symptom_onset_interval=symptom_onset_interval,
        health_authority_id=authority.id,
    )
