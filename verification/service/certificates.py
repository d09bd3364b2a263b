"""Trading a verification token and the TEK HMAC for a certificate the key server trusts.

The certificate binds the diagnosis (report type, symptom onset) to one exact set of keys
through ``tekmac``. The token is claimed only after the certificate is signed, by one atomic
statement that is the last thing this does, so a failure anywhere leaves the token usable
for a retry, and two concurrent requests with one token get one certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from crypto.encoding import decode_base64_lenient
from crypto.errors import InvalidToken
from crypto.tokens import sign_jwt_with_signer, verify_jwt
from exposure.ratelimit import BucketLimit, RateDecision, hit_decision
from verification import store
from verification.cache import RealmView
from verification.context import VerificationContext
from verification.errors import HmacInvalid, TokenExpired, TokenInvalid
from verification.service.codes import utc_midnight
from verification.service.signing_keys import certificate_signer, token_public_keys

TEK_HMAC_LENGTH = 32
INTERVAL_SECONDS = 600


def _check_tekmac(ekeyhmac: str) -> None:
    """Refuse an ``ekeyhmac`` that is not base64 of exactly 32 bytes.

    Any base64 the reference takes is taken (``base64util.DecodeString``: standard or
    URL-safe, padded or not), because the string goes into the certificate verbatim and
    the key server decodes it the same lenient way.
    """
    try:
        raw = decode_base64_lenient(ekeyhmac)
    except ValueError:
        raise HmacInvalid("ekeyhmac must be base64") from None
    if len(raw) != TEK_HMAC_LENGTH:
        raise HmacInvalid(f"ekeyhmac must decode to {TEK_HMAC_LENGTH} bytes")


def _parse_subject(subject: object) -> tuple[str, date | None, date | None]:
    if not isinstance(subject, str) or subject.count(".") != 2:
        raise TokenInvalid("the token is invalid")
    test_type, symptom, tested = subject.split(".")
    try:
        return (
            test_type,
            date.fromisoformat(symptom) if symptom else None,
            date.fromisoformat(tested) if tested else None,
        )
    except ValueError:
        raise TokenInvalid("the token is invalid") from None


def _verified_claims(
    session: Session, context: VerificationContext, token: str, now: datetime
) -> dict[str, object]:
    settings = context.settings
    issuer = settings.token_issuer
    keys = token_public_keys(session, context, now)
    try:
        return verify_jwt(token, public_keys=keys, audience=issuer, issuer=issuer, now=now)
    except InvalidToken:
        pass
    # The cached keys may predate a token key another process created: ask once more.
    fresh = token_public_keys(session, context, now, fresh=True)
    if fresh.keys() != keys.keys():
        keys = fresh
        try:
            return verify_jwt(token, public_keys=keys, audience=issuer, issuer=issuer, now=now)
        except InvalidToken:
            pass
    # Tell "expired" from "forged" the only safe way: a token that verifies as of one
    # lifetime ago is genuine, so it failed on time alone.
    try:
        verify_jwt(
            token,
            public_keys=keys,
            audience=issuer,
            issuer=issuer,
            now=now - settings.token_lifetime,
        )
    except InvalidToken:
        raise TokenInvalid("the token is invalid") from None
    raise TokenExpired("the token has expired or was already used")


@dataclass(frozen=True)
class _SignedCertificate:
    """A certificate signed for a token, and what claiming the token matches on."""

    certificate: str
    jti: str
    test_type: str
    symptom: date | None
    tested: date | None


def _sign_certificate(
    session: Session,
    context: VerificationContext,
    *,
    realm: RealmView,
    token: str,
    ekeyhmac: str,
    now: datetime,
) -> _SignedCertificate:
    _check_tekmac(ekeyhmac)
    claims = _verified_claims(session, context, token, now)
    test_type, symptom, tested = _parse_subject(claims.get("sub"))
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise TokenInvalid("the token is invalid")
    key = certificate_signer(session, context, realm, now)
    skew = context.settings.allowed_clock_skew
    issued = int((now - skew).timestamp())
    certificate_claims: dict[str, object] = {
        "reportType": test_type,
        "tekmac": ekeyhmac,
        "iss": realm.certificate_issuer,
        "aud": realm.certificate_audience,
        "iat": issued,
        "nbf": issued,
        "exp": int(now.timestamp()) + realm.certificate_lifetime_seconds,
    }
    if symptom is not None:
        certificate_claims["symptomOnsetInterval"] = int(
            utc_midnight(symptom).timestamp() // INTERVAL_SECONDS
        )
    certificate = sign_jwt_with_signer(key.signer, certificate_claims, kid=key.kid)
    return _SignedCertificate(certificate, jti, test_type, symptom, tested)


def _spent() -> TokenExpired:
    return TokenExpired("the token has expired or was already used")


def issue_certificate(
    session: Session,
    context: VerificationContext,
    *,
    realm: RealmView,
    token: str,
    ekeyhmac: str,
    now: datetime,
) -> str:
    """Sign a certificate for ``ekeyhmac`` and consume ``token``; raise on any failure."""
    signed = _sign_certificate(
        session, context, realm=realm, token=token, ekeyhmac=ekeyhmac, now=now
    )
    claimed = store.claim_token(
        session,
        realm_id=realm.id,
        token_hmacs=context.hasher.candidates(signed.jti),
        test_type=signed.test_type,
        symptom_date=signed.symptom,
        test_date=signed.tested,
        now=now,
    )
    if not claimed:
        raise _spent()
    return signed.certificate


@dataclass(frozen=True)
class CountedCertificate:
    """What :func:`issue_certificate_counted` did: the request's decision, and the
    certificate when its token was claimed (None: refused by the request's limit, or the
    token was spent; :meth:`certificate_or_refusal` tells which)."""

    request: RateDecision
    certificate: str | None

    def certificate_or_refusal(self) -> str:
        """The certificate of an allowed request; :class:`TokenExpired` if its token was
        spent meanwhile, as :func:`issue_certificate` answers."""
        if self.certificate is None:
            raise _spent()
        return self.certificate


def issue_certificate_counted(
    connection: Connection,
    context: VerificationContext,
    *,
    realm: RealmView,
    token: str,
    ekeyhmac: str,
    request_limit: BucketLimit,
    now: datetime,
) -> CountedCertificate | None:
    """PostgreSQL, autocommitted: :func:`issue_certificate` with the request counted
    against ``request_limit`` in the statement that claims the token (which claims only
    for an allowed request).

    The certificate is signed before the request is counted, so one that cannot be
    (whatever the reason: a bad token, a missing key, a database error reading keys)
    returns None, having counted nothing: the caller counts the request and lets
    :func:`issue_certificate` answer it, in the order it always has.
    """
    try:
        with Session(bind=connection) as session:
            signed = _sign_certificate(
                session, context, realm=realm, token=token, ekeyhmac=ekeyhmac, now=now
            )
    except Exception:
        return None
    request_count, claimed = store.count_and_claim_token(
        connection,
        request=request_limit,
        realm_id=realm.id,
        token_hmacs=context.hasher.candidates(signed.jti),
        test_type=signed.test_type,
        symptom_date=signed.symptom,
        test_date=signed.tested,
        now=now,
    )
    decision = hit_decision(
        request_count, limit=request_limit.limit, window=request_limit.window, now=now
    )
    return CountedCertificate(decision, signed.certificate if claimed else None)
