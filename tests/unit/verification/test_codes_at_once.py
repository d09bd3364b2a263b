"""Issue and verify in one statement each on PostgreSQL: the rows, counts and answers of
the transaction's way (:func:`codes.issue_code`, :func:`lockout.begin_attempt`,
:func:`codes.verify_code`), and its limits under concurrency."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import Engine, select

from exposure.db import SessionFactory, make_session_factory, unit_of_work
from exposure.db.unit_of_work import autocommit
from exposure.ratelimit import BucketLimit, RateLimitWindow, bucket_key, hit, take
from tests.unit.verification.conftest import Clock
from verification.context import VerificationContext
from verification.errors import (
    CodeExpired,
    CodeInvalid,
    InvalidDate,
    InvalidTestType,
    QuotaExceeded,
    TestTypeNotAccepted,
    TokenExpired,
    UuidAlreadyExists,
)
from verification.models import VerificationCode, VerificationToken
from verification.service import certificates, codes, lockout, realms, signing_keys
from verification.service.codes import IssueRequest
from verification.service.realms import NewRealm

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("engine_name", ["postgresql"], indirect=True),
]

SYMPTOMS = "2026-11-20"
TEK_HMAC = "A" * 43 + "="


@dataclass
class Lab:
    sessions: SessionFactory
    context: VerificationContext
    realm: NewRealm
    clock: Clock

    def request_limit(self, client: str = "10.0.0.1", limit: int = 100) -> BucketLimit:
        bucket = bucket_key(self.context.bucket_secret, "requests", client)
        return BucketLimit(bucket, limit, timedelta(minutes=1))

    def issue_counted(
        self, request: IssueRequest, *, request_limit: BucketLimit | None = None
    ) -> codes.CountedIssue | None:
        with autocommit(self.sessions) as connection:
            return codes.issue_code_counted(
                connection,
                self.context,
                realm=self.realm.realm,
                api_key=self.realm.admin_key.record,
                request=request,
                request_limit=request_limit or self.request_limit(),
                now=self.clock(),
            )

    def issue(self, request: IssueRequest) -> codes.IssuedCode:
        with unit_of_work(self.sessions) as session:
            return codes.issue_code(
                session,
                self.context,
                realm=self.realm.realm,
                api_key=self.realm.admin_key.record,
                request=request,
                now=self.clock(),
            )

    def count(self, bucket: str) -> int:
        with self.sessions() as session:
            counts = session.scalars(
                select(RateLimitWindow.count).where(RateLimitWindow.bucket == bucket)
            ).all()
        return sum(counts)

    def quota_used(self) -> int:
        return self.count(codes.quota_limit(self.context, self.realm.realm).bucket)

    def lockout_limits(self, client: str) -> tuple[BucketLimit, BucketLimit]:
        return lockout.lockout_limits(
            self.context, client_bucket=client, realm_id=self.realm.realm.id
        )

    def lockout_used(self, client: str) -> tuple[int, int]:
        client_limit, realm_limit = self.lockout_limits(client)
        return self.count(client_limit.bucket), self.count(realm_limit.bucket)

    def verify_at_once(
        self, code: str, *, client: str = "10.0.0.1", accept: list[str] | None = None
    ) -> tuple[codes.VerifiedCode | None, list[Exception | None]]:
        """Count, take the slots and verify as the endpoint does; what settled, in order."""
        settled: list[Exception | None] = []
        with autocommit(self.sessions) as connection:
            counted = lockout.begin_counted_attempt(
                connection,
                self.context,
                request_limit=self.request_limit(client),
                client_bucket=client,
                realm_id=self.realm.realm.id,
                now=self.clock(),
            )
            if counted.refusal is not None:
                raise counted.refusal
            attempt = counted.attempt
            assert attempt is not None

            def settle(failure: Exception | None) -> None:
                settled.append(failure)
                attempt.settle(connection, failure)

            verified = codes.verify_code_at_once(
                connection,
                self.context,
                realm=self.realm.realm,
                code=code,
                accept=accept or [],
                lockout_slots=attempt.taken,
                settle=settle,
                now=self.clock(),
            )
        return verified, settled

    def make_token_key(self) -> None:
        """Verify a code the transaction's way, which creates the token key on first use."""
        code = self.issue(_request()).code
        with unit_of_work(self.sessions) as session:
            codes.verify_code(
                session,
                self.context,
                realm=self.realm.realm,
                code=code,
                accept=[],
                now=self.clock(),
            )

    def code_row(self, uuid: str) -> VerificationCode:
        with self.sessions() as session:
            return session.scalars(
                select(VerificationCode).where(VerificationCode.uuid == uuid)
            ).one()

    def tokens(self) -> list[VerificationToken]:
        with self.sessions() as session:
            return list(session.scalars(select(VerificationToken)))


def _request(**changes: object) -> IssueRequest:
    values: dict[str, object] = {
        "test_type": "confirmed",
        "symptom_date": SYMPTOMS,
        "test_date": "",
        "tz_offset_minutes": 0.0,
        "uuid": "",
        "external_issuer_id": "lab-7",
    }
    values.update(changes)
    return IssueRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
def lab(engine: Engine, context: VerificationContext, clock: Clock) -> Lab:
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        created = realms.create_realm(session, context, name="lab", now=clock(), actor="t")
    return Lab(sessions, context, created, clock)


def _columns(row: VerificationCode) -> dict[str, object]:
    return {
        name: getattr(row, name)
        for name in (
            "realm_id",
            "test_type",
            "symptom_date",
            "test_date",
            "expires_at",
            "long_expires_at",
            "claimed",
            "issued_by_api_key_id",
            "external_issuer_id",
            "created_at",
        )
    }


def test_a_code_issued_at_once_is_the_row_the_transaction_stores(lab: Lab) -> None:
    portable = lab.issue(_request(uuid="00000000-0000-4000-8000-000000000001"))
    counted = lab.issue_counted(_request(uuid="00000000-0000-4000-8000-000000000002"))

    assert counted is not None
    assert counted.issued is not None
    assert counted.request.allowed
    assert counted.request.remaining == 99
    at_once = counted.issued
    assert (len(at_once.code), len(at_once.long_code)) == (
        len(portable.code),
        len(portable.long_code),
    )
    assert (at_once.expires_at, at_once.long_expires_at) == (
        portable.expires_at,
        portable.long_expires_at,
    )
    stored = lab.code_row(at_once.uuid)
    assert _columns(stored) == _columns(lab.code_row(portable.uuid))
    assert stored.code_hmac == lab.context.hasher.digest(at_once.code)
    assert stored.long_code_hmac == lab.context.hasher.digest(at_once.long_code)
    assert lab.quota_used() == 2
    assert lab.count(lab.request_limit().bucket) == 1


def test_a_spent_quota_or_a_used_uuid_leaves_the_decision_to_the_transaction(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = "00000000-0000-4000-8000-0000000000aa"
    lab.issue(_request(uuid=used))

    repeated = lab.issue_counted(_request(uuid=used))

    assert repeated is not None
    assert repeated.request.allowed
    assert repeated.issued is None
    assert lab.quota_used() == 1  # the slot the clash took went back
    with pytest.raises(UuidAlreadyExists):
        lab.issue(_request(uuid=used))

    monkeypatch.setattr(
        codes,
        "quota_limit",
        lambda context, realm: BucketLimit(
            bucket_key(context.bucket_secret, "issue-quota", str(realm.id)), 1, timedelta(days=1)
        ),
    )
    spent = lab.issue_counted(_request())

    assert spent is not None
    assert spent.request.allowed
    assert spent.issued is None
    assert lab.quota_used() == 1
    with pytest.raises(QuotaExceeded):
        lab.issue(_request())
    assert lab.quota_used() == 1


def test_a_request_over_its_limit_issues_nothing_and_an_invalid_one_counts_nothing(
    lab: Lab,
) -> None:
    limit = lab.request_limit(limit=1)
    first = lab.issue_counted(_request(), request_limit=limit)
    second = lab.issue_counted(_request(), request_limit=limit)

    assert first is not None
    assert first.issued is not None
    assert second is not None
    assert not second.request.allowed
    assert second.issued is None
    assert second.request.retry_after_seconds >= 1
    assert lab.quota_used() == 1
    assert lab.count(limit.bucket) == 2  # a refused request counts, as hit() counts it

    assert lab.issue_counted(_request(symptom_date="2020-01-01"), request_limit=limit) is None
    assert lab.count(limit.bucket) == 2
    with pytest.raises(InvalidDate):
        lab.issue(_request(symptom_date="2020-01-01"))


def test_concurrent_issues_spend_exactly_the_quota(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    quota = 5
    monkeypatch.setattr(
        codes,
        "quota_limit",
        lambda context, realm: BucketLimit(
            bucket_key(context.bucket_secret, "issue-quota", str(realm.id)),
            quota,
            timedelta(days=1),
        ),
    )
    racers = 16
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def race() -> None:
        start.wait(timeout=10)
        try:
            counted = lab.issue_counted(_request())
            outcomes.append("issued" if counted and counted.issued else "left")
        except BaseException as error:  # reported below, a thread cannot fail the test
            outcomes.append(repr(error))

    workers = [threading.Thread(target=race) for _ in range(racers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert Counter(outcomes) == {"issued": quota, "left": racers - quota}
    assert lab.quota_used() == quota
    with lab.sessions() as session:
        assert len(session.scalars(select(VerificationCode.id)).all()) == quota


def test_admission_counts_as_begin_attempt_does(lab: Lab) -> None:
    settings = lab.context.settings
    client_limit = settings.invalid_codes_per_client_per_hour
    for expected in range(1, client_limit + 1):
        with autocommit(lab.sessions) as connection:
            counted = lockout.begin_counted_attempt(
                connection,
                lab.context,
                request_limit=lab.request_limit("a", limit=1_000),
                client_bucket="a",
                realm_id=lab.realm.realm.id,
                now=lab.clock(),
            )
        assert counted.attempt is not None
        assert counted.refusal is None
        assert lab.lockout_used("a") == (expected, expected)

    with autocommit(lab.sessions) as connection:
        refused = lockout.begin_counted_attempt(
            connection,
            lab.context,
            request_limit=lab.request_limit("a", limit=1_000),
            client_bucket="a",
            realm_id=lab.realm.realm.id,
            now=lab.clock(),
        )
        with pytest.raises(QuotaExceeded) as portable:
            lockout.begin_attempt(
                connection,
                lab.context,
                client_bucket="a",
                realm_id=lab.realm.realm.id,
                now=lab.clock(),
            )
    assert refused.attempt is None
    assert refused.refusal is not None
    assert refused.refusal.headers == portable.value.headers
    # A locked-out client leaves the realm's count alone.
    assert lab.lockout_used("a") == (client_limit, client_limit)


def test_a_full_realm_refuses_and_gives_the_clients_slot_back(lab: Lab) -> None:
    _, realm_limit = lab.lockout_limits("b")
    with autocommit(lab.sessions) as connection:
        for _ in range(realm_limit.limit):
            take(
                connection,
                bucket=realm_limit.bucket,
                limit=realm_limit.limit,
                window=realm_limit.window,
                now=lab.clock(),
            )
        counted = lockout.begin_counted_attempt(
            connection,
            lab.context,
            request_limit=lab.request_limit("b"),
            client_bucket="b",
            realm_id=lab.realm.realm.id,
            now=lab.clock(),
        )

    assert counted.request.allowed
    assert counted.attempt is None
    assert counted.refusal is not None
    assert lab.lockout_used("b") == (0, realm_limit.limit)


def test_a_request_over_its_limit_takes_no_slot(lab: Lab) -> None:
    limit = lab.request_limit("c", limit=1)
    outcomes = []
    for _ in range(2):
        with autocommit(lab.sessions) as connection:
            outcomes.append(
                lockout.begin_counted_attempt(
                    connection,
                    lab.context,
                    request_limit=limit,
                    client_bucket="c",
                    realm_id=lab.realm.realm.id,
                    now=lab.clock(),
                )
            )

    assert [item.request.allowed for item in outcomes] == [True, False]
    assert outcomes[1].attempt is None
    assert outcomes[1].refusal is None
    assert lab.lockout_used("c") == (1, 1)


def test_a_code_verified_at_once_makes_the_token_of_the_transaction(lab: Lab) -> None:
    lab.make_token_key()
    issued = lab.issue(_request(test_date=SYMPTOMS))

    verified, settled = lab.verify_at_once(issued.code)

    assert verified is not None
    assert settled == []
    assert (verified.test_type, verified.symptom_date, verified.test_date) == (
        "confirmed",
        lab.code_row(issued.uuid).symptom_date,
        lab.code_row(issued.uuid).test_date,
    )
    assert lab.code_row(issued.uuid).claimed
    [token] = [token for token in lab.tokens() if token.test_date is not None]
    assert (token.test_type, token.symptom_date, token.test_date, token.used) == (
        "confirmed",
        verified.symptom_date,
        verified.test_date,
        False,
    )
    assert token.expires_at == lab.clock() + lab.context.settings.token_lifetime
    assert lab.lockout_used("10.0.0.1") == (0, 0)  # a found code gives its slots back
    # The same token the transaction signs: it trades for a certificate.
    with unit_of_work(lab.sessions) as session:
        certificates.issue_certificate(
            session,
            lab.context,
            realm=lab.realm.realm,
            token=verified.token,
            ekeyhmac=TEK_HMAC,
            now=lab.clock(),
        )
    with lab.sessions() as session:
        assert session.get(VerificationToken, token.id).used  # type: ignore[union-attr]

    with pytest.raises(CodeInvalid):
        lab.verify_at_once(issued.code)


def test_refused_lookups_answer_and_settle_as_the_transaction(lab: Lab) -> None:
    lab.make_token_key()
    tokens_before = len(lab.tokens())
    likely = lab.issue(_request(test_type="likely"))
    expired = lab.issue(_request())

    with pytest.raises(InvalidTestType):
        lab.verify_at_once(likely.code, accept=["nonsense"])
    assert lab.lockout_used("10.0.0.1") == (0, 0)
    with pytest.raises(TestTypeNotAccepted):
        lab.verify_at_once(likely.code, accept=["confirmed"])
    assert lab.lockout_used("10.0.0.1") == (0, 0)
    with pytest.raises(CodeInvalid):
        lab.verify_at_once("12345678")
    assert lab.lockout_used("10.0.0.1") == (1, 1)  # a wrong code spends its slots
    lab.clock.advance(timedelta(days=1))
    with pytest.raises(CodeExpired):
        lab.verify_at_once(expired.code)
    assert lab.lockout_used("10.0.0.1") == (2, 2)
    assert not lab.code_row(likely.uuid).claimed
    assert len(lab.tokens()) == tokens_before


def test_a_token_that_cannot_be_signed_leaves_the_code_usable(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.make_token_key()
    issued = lab.issue(_request())

    def broken(*_arguments: object, **_keywords: object) -> str:
        raise RuntimeError("no signature today")

    monkeypatch.setattr(codes, "sign_jwt_with_signer", broken)
    with pytest.raises(RuntimeError):
        lab.verify_at_once(issued.code)

    assert not lab.code_row(issued.uuid).claimed
    assert len(lab.tokens()) == 1  # only make_token_key's
    monkeypatch.undo()
    verified, _ = lab.verify_at_once(issued.code)
    assert verified is not None


def test_without_a_token_key_the_transaction_is_left_to_create_it(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = lab.issue(_request())
    monkeypatch.setattr(codes, "active_token_key", lambda *_arguments: None)

    verified, settled = lab.verify_at_once(issued.code)

    assert verified is None
    assert settled == []
    assert not lab.code_row(issued.uuid).claimed
    assert lab.lockout_used("10.0.0.1") == (1, 1)  # still taken: the transaction settles


def test_concurrent_lookups_at_once_claim_one_code_once_and_keep_the_limit(
    lab: Lab,
) -> None:
    lab.make_token_key()
    issued = lab.issue(_request())
    limit = lab.context.settings.invalid_codes_per_client_per_hour
    racers = 4 * limit
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(index: int) -> None:
        code = issued.code if index % 2 else issued.long_code
        if index >= 8:
            code = f"{index:08d}"  # a wrong code
        start.wait(timeout=60)
        try:
            verified, _ = lab.verify_at_once(code, client="10.0.0.9")
            outcomes.append("token" if verified else "none")
        except (CodeInvalid, QuotaExceeded) as refusal:
            outcomes.append(refusal.code)
        except BaseException as error:  # reported below, a thread cannot fail the test
            outcomes.append(repr(error))

    workers = [threading.Thread(target=race, args=(index,)) for index in range(racers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    counted = Counter(outcomes)
    assert sum(counted.values()) == racers, counted
    # The right code is claimed at most once. It is claimed unless every slot was spent by
    # wrong codes before any of its lookups ran (the threads' order is the scheduler's),
    # and then it is refused like them and stays unclaimed.
    tokens = counted["token"]
    assert tokens in (0, 1), counted
    assert lab.code_row(issued.uuid).claimed is bool(tokens)
    # Every lookup that failed kept its slot, and no more failed than the limit allows
    # (a winner's slot, given back, may serve one more lookup).
    failed = counted["code_invalid"]
    assert limit - tokens <= failed <= limit
    assert counted["quota_exceeded"] == racers - failed - tokens
    assert lab.lockout_used("10.0.0.9")[0] == failed
    assert len(lab.tokens()) == 1 + tokens


def _certificate_counted(
    lab: Lab, token: str, request_limit: BucketLimit
) -> certificates.CountedCertificate | None:
    with autocommit(lab.sessions) as connection:
        return certificates.issue_certificate_counted(
            connection,
            lab.context,
            realm=lab.realm.realm,
            token=token,
            ekeyhmac=TEK_HMAC,
            request_limit=request_limit,
            now=lab.clock(),
        )


def test_a_certificate_counted_with_its_claim_is_the_transactions(lab: Lab) -> None:
    lab.make_token_key()
    verified, _ = lab.verify_at_once(lab.issue(_request()).code)
    assert verified is not None
    limit = lab.request_limit("d", limit=1)

    counted = _certificate_counted(lab, verified.token, limit)

    assert counted is not None
    assert counted.request.allowed
    certificate = counted.certificate_or_refusal()
    with unit_of_work(lab.sessions) as session:
        public = signing_keys.realm_jwks(session, lab.realm.realm, lab.clock())
    claims = jwt.decode(
        certificate,
        key=jwt.PyJWK(public[0]).key,
        algorithms=["ES256"],
        audience=lab.realm.realm.certificate_audience,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert (claims["reportType"], claims["tekmac"]) == ("confirmed", TEK_HMAC)
    assert [token.used for token in lab.tokens()].count(True) == 1
    assert lab.count(limit.bucket) == 1

    # Spent: counted, and answered as the transaction answers a spent token.
    spent = _certificate_counted(lab, verified.token, lab.request_limit("e"))
    assert spent is not None
    with pytest.raises(TokenExpired):
        spent.certificate_or_refusal()
    assert lab.count(lab.request_limit("e").bucket) == 1
    # Invalid: nothing counted here, left to the portable way.
    assert _certificate_counted(lab, "not.a.token", lab.request_limit("f")) is None
    assert lab.count(lab.request_limit("f").bucket) == 0


def test_a_certificate_over_the_request_limit_leaves_its_token_unused(lab: Lab) -> None:
    lab.make_token_key()
    verified, _ = lab.verify_at_once(lab.issue(_request()).code)
    assert verified is not None
    limit = lab.request_limit("g", limit=1)
    with autocommit(lab.sessions) as connection:
        hit(connection, bucket=limit.bucket, limit=1, window=limit.window, now=lab.clock())

    refused = _certificate_counted(lab, verified.token, limit)

    assert refused is not None
    assert not refused.request.allowed
    assert refused.certificate is None
    assert lab.count(limit.bucket) == 2
    assert not any(token.used for token in lab.tokens())
