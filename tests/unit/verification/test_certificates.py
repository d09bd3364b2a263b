"""Tokens for certificates: signed, bound to the TEK HMAC, claimed once."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from crypto.signing import load_public_key
from crypto.tokens import public_keys_from_jwk_set, verify_jwt
from exposure.db import make_session_factory, unit_of_work
from exposure.db.unit_of_work import autocommit
from tests.unit.verification.conftest import Clock
from verification import store
from verification.context import VerificationContext
from verification.errors import HmacInvalid, TokenExpired, TokenInvalid
from verification.service import certificates, codes, realms, signing_keys
from verification.service.codes import IssueRequest
from verification.service.realms import NewRealm

EKEYHMAC = base64.b64encode(bytes(range(32))).decode()


def _token(
    session: Session, context: VerificationContext, realm: NewRealm, clock: Clock, **dates: str
) -> str:
    request = IssueRequest(
        test_type="confirmed",
        symptom_date=dates.get("symptom", "2026-11-20"),
        test_date=dates.get("test", ""),
        tz_offset_minutes=0,
        uuid="",
        external_issuer_id="",
    )
    issued = codes.issue_code(
        session,
        context,
        realm=realm.realm,
        api_key=realm.admin_key.record,
        request=request,
        now=clock(),
    )
    return codes.verify_code(
        session, context, realm=realm.realm, code=issued.code, accept=[], now=clock()
    ).token


def test_certificate_claims_and_signature(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    token = _token(db_session, context, realm, clock)

    certificate = certificates.issue_certificate(
        db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
    )

    keys = public_keys_from_jwk_set(signing_keys.realm_jwks(db_session, realm.realm, clock()))
    claims = verify_jwt(
        certificate,
        public_keys=keys,
        audience="exposure-notifications-server",
        issuer=realm.realm.certificate_issuer,
        now=clock(),
    )
    assert claims["reportType"] == "confirmed"
    assert claims["tekmac"] == EKEYHMAC
    assert claims["symptomOnsetInterval"] == 2_991_888  # 2026-11-20T00:00Z / 600
    assert claims["exp"] - int(clock().timestamp()) == 900
    assert claims["iat"] == claims["nbf"] == int(clock().timestamp()) - 5
    assert jwt.get_unverified_header(certificate)["kid"] == f"r{realm.realm.id}v1"


def test_symptom_onset_interval_known_answer(
    db_session: Session, context: VerificationContext, clock: Clock
) -> None:
    # The reference's example: symptom date 2020-07-01 is interval 2655936. Dates must lie
    # within 28 days, so the whole test happens that month.
    clock.now = clock.now.replace(year=2020, month=7, day=10)
    realm = realms.create_realm(db_session, context, name="2020", now=clock(), actor="test")
    token = _token(db_session, context, realm, clock, symptom="2020-07-01")
    certificate = certificates.issue_certificate(
        db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
    )

    claims = jwt.decode(certificate, options={"verify_signature": False})
    assert claims["symptomOnsetInterval"] == 2_655_936


def test_token_is_claimed_once(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    token = _token(db_session, context, realm, clock)
    certificates.issue_certificate(
        db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
    )

    with pytest.raises(TokenExpired):
        certificates.issue_certificate(
            db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
        )


def test_expired_token(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    token = _token(db_session, context, realm, clock)
    clock.advance(timedelta(hours=24, seconds=1))

    with pytest.raises(TokenExpired):
        certificates.issue_certificate(
            db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
        )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-4] + "AAAA",
        lambda _token: "not.a.jwt",
        lambda _token: "",
        lambda _token: jwt.encode({"sub": "confirmed.."}, "s" * 32, algorithm="HS256"),
    ],
)
def test_forged_tokens_are_invalid(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock, mangle: object
) -> None:
    token = _token(db_session, context, realm, clock)

    with pytest.raises(TokenInvalid):
        certificates.issue_certificate(
            db_session,
            context,
            realm=realm.realm,
            token=mangle(token),  # type: ignore[operator]
            ekeyhmac=EKEYHMAC,
            now=clock(),
        )


@pytest.mark.parametrize("ekeyhmac", ["", "AAAA", base64.b64encode(bytes(31)).decode(), "!!!"])
def test_ekeyhmac_must_be_32_bytes(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock, ekeyhmac: str
) -> None:
    token = _token(db_session, context, realm, clock)

    with pytest.raises(HmacInvalid):
        certificates.issue_certificate(
            db_session, context, realm=realm.realm, token=token, ekeyhmac=ekeyhmac, now=clock()
        )
    # The token survives a refused request.
    certificates.issue_certificate(
        db_session, context, realm=realm.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
    )


def test_token_of_another_realm_is_not_honoured(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    other = realms.create_realm(db_session, context, name="other", now=clock(), actor="test")
    token = _token(db_session, context, realm, clock)

    with pytest.raises(TokenExpired):
        certificates.issue_certificate(
            db_session, context, realm=other.realm, token=token, ekeyhmac=EKEYHMAC, now=clock()
        )


def test_rotation_publishes_before_signing_and_retires_later(
    db_session: Session, context: VerificationContext, realm: NewRealm, clock: Clock
) -> None:
    new_key = signing_keys.rotate_certificate_key(
        db_session, context, realm.realm, now=clock(), actor="test"
    )
    published = [jwk["kid"] for jwk in signing_keys.realm_jwks(db_session, realm.realm, clock())]

    assert published == [new_key.kid, f"r{realm.realm.id}v1"]
    assert signing_keys.certificate_signer(db_session, context, realm.realm, clock()).kid == (
        f"r{realm.realm.id}v1"
    )
    clock.advance(timedelta(hours=1))
    active = signing_keys.certificate_signer(db_session, context, realm.realm, clock())
    assert active.kid == new_key.kid
    assert load_public_key(active.signer.public_key_pem()).public_numbers() == (
        load_public_key(new_key.public_key_pem.encode()).public_numbers()
    )
    clock.advance(timedelta(minutes=15))
    published = [jwk["kid"] for jwk in signing_keys.realm_jwks(db_session, realm.realm, clock())]
    assert published == [new_key.kid]
    actions = [e.action for e in store.audit_entries(db_session, realm_id=realm.realm.id)]
    assert "rotated certificate signing key" in actions


@pytest.mark.postgres
@pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True)
def test_concurrent_requests_with_one_token_get_one_certificate(
    engine: Engine, context: VerificationContext, clock: Clock
) -> None:
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="t")
        token = _token(session, context, created, clock)
    threads = 6
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def trade() -> None:
        barrier.wait(timeout=10)
        try:
            # As the API runs it: no transaction around the claim, one statement commits it.
            with autocommit(factory) as connection, Session(bind=connection) as session:
                certificates.issue_certificate(
                    session,
                    context,
                    realm=created.realm,
                    token=token,
                    ekeyhmac=EKEYHMAC,
                    now=clock(),
                )
            outcomes.append("certificate")
        except TokenExpired:
            outcomes.append("token_expired")
        except BaseException as error:  # reported below, a thread cannot fail the test
            outcomes.append(repr(error))

    workers = [threading.Thread(target=trade) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert sorted(outcomes) == ["certificate"] + ["token_expired"] * (threads - 1)
