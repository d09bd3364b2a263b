"""Certificate checks of publish (reference §3.3, §3.4): every refusal, with real ES256 JWTs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from crypto.encoding import b64url_decode, b64url_encode
from crypto.signing import public_key_pem
from crypto.tekmac import SignedKey, compute_tekmac, compute_tekmac_without_risk
from crypto.tokens import sign_jwt
from exposure.api.v1 import ExposureKey
from keyserver.errors import CertificateInvalid
from keyserver.service import trust
from keyserver.service.certificate import (
    ALLOWED_CLOCK_SKEW,
    REASONS,
    VerifiedCertificate,
    verify_certificate,
)
from keyserver.service.trust import AppConfig, AuthorityConfig

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW_SECONDS = int(NOW.timestamp())
ISSUER = "gov.example.verification"
AUDIENCE = "exposure-notifications-server"
AUTHORITY_ID = 7
MAX_LIFETIME = timedelta(hours=1)
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())

# §3.4 vectors (pkg/verification/utils_test.go of the reference).
VECTOR_SECRET = "AQIDBAUGBwgJCgsMDQ4PEA=="
VECTOR_KEYS = (("z2Cx9hdz2SlxZ8GEgqTYpA==", 1, 144), ("dPCphLzfG4uzXneNimkPRQ==", 144, 144))
VECTOR_MAC_RISK_3_5 = "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY="
VECTOR_MAC_RISK_0 = "mFNI9zhTA17n4ndd1Vu5tsn4XQX0gPrIKyjeh/9noUE="
VECTOR_MAC_RISK_0_THREE_FIELDS = "J9S7xVebH/66dm14wGsIcAnSUR3PHD4NtDQEOGZbDUo="

HMAC_SECRET = base64.b64encode(bytes(range(32))).decode()
KEYS = [
    ExposureKey(key="z2Cx9hdz2SlxZ8GEgqTYpA==", rollingStartNumber=2_991_600, rollingPeriod=144),
    ExposureKey(
        key="dPCphLzfG4uzXneNimkPRQ==",
        rollingStartNumber=2_991_744,
        rollingPeriod=144,
        transmissionRisk=4,
    ),
]


def _vector_keys(risks: tuple[int, int]) -> list[ExposureKey]:
    return [
        ExposureKey(key=key, rollingStartNumber=start, rollingPeriod=period, transmissionRisk=risk)
        for (key, start, period), risk in zip(VECTOR_KEYS, risks, strict=True)
    ]


def _tekmac(
    keys: list[ExposureKey], secret: str = HMAC_SECRET, *, three_fields: bool = False
) -> str:
    signed = [
        SignedKey(key.key, key.rollingStartNumber, key.rollingPeriod, key.transmissionRisk)
        for key in keys
    ]
    compute = compute_tekmac_without_risk if three_fields else compute_tekmac
    return base64.b64encode(compute(base64.b64decode(secret), signed)).decode()


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW_SECONDS - 5,
        "nbf": NOW_SECONDS - 5,
        "exp": NOW_SECONDS + 900,
        "reportType": "confirmed",
        "symptomOnsetInterval": 2_991_600,
        "tekmac": _tekmac(KEYS),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _certificate(
    key: ec.EllipticCurvePrivateKey = SIGNING_KEY, kid: str = "v1", **changes: Any
) -> str:
    return sign_jwt(key, _claims(**changes), kid=kid)


def _raw_jws(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A correctly signed ES256 JWS with any header (PyJWT refuses to write odd ones)."""
    signing_input = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
    der = SIGNING_KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _authority(
    valid_from: datetime = NOW - timedelta(days=1), valid_until: datetime | None = None
) -> AuthorityConfig:
    return AuthorityConfig(
        id=AUTHORITY_ID,
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=MappingProxyType({"v1": (SIGNING_KEY.public_key(), valid_from, valid_until)}),
    )


def _app(*authority_ids: int) -> AppConfig:
    return AppConfig(
        id=1,
        app_id="gov.example.app",
        regions=("VN",),
        bypass_verification=False,
        health_authority_ids=frozenset(authority_ids or (AUTHORITY_ID,)),
    )


def _lookup(authority: AuthorityConfig | None) -> Callable[[str], AuthorityConfig | None]:
    return lambda issuer: authority if authority and issuer == authority.issuer else None


def _verify(
    token: str,
    *,
    keys: list[ExposureKey] | None = None,
    hmac_key: str = HMAC_SECRET,
    app: AppConfig | None = None,
    authority: AuthorityConfig | None = None,
    max_lifetime: timedelta = MAX_LIFETIME,
    now: datetime = NOW,
) -> VerifiedCertificate:
    return verify_certificate(
        token=token,
        hmac_key=hmac_key,
        keys=KEYS if keys is None else keys,
        app=app or _app(),
        authorities=_lookup(authority or _authority()),
        max_lifetime=max_lifetime,
        now=now,
    )


def _reason(token: str, **arguments: Any) -> str:
    with pytest.raises(CertificateInvalid) as caught:
        _verify(token, **arguments)
    # The caller learns nothing: one message, whatever the reason.
    assert caught.value.message == "unable to validate diagnosis verification"
    assert caught.value.reason in REASONS
    return caught.value.reason


def test_valid_certificate_gives_report_type_onset_and_authority() -> None:
    verified = _verify(_certificate())

    assert verified == VerifiedCertificate(
        report_type="confirmed", symptom_onset_interval=2_991_600, health_authority_id=AUTHORITY_ID
    )


@pytest.mark.parametrize("report_type", ["confirmed", "likely", "negative", "user-report"])
def test_every_report_type_of_the_reference_is_accepted(report_type: str) -> None:
    assert _verify(_certificate(reportType=report_type)).report_type == report_type


def test_symptom_onset_is_optional() -> None:
    token = _certificate(symptomOnsetInterval=None)

    assert _verify(token).symptom_onset_interval is None


# --- header and format ------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.e30.", "W10.e30.sig"])
def test_garbage_is_unparsable(token: str) -> None:
    assert _reason(token) == "unparsable"


def test_claims_that_are_not_an_object_are_unparsable() -> None:
    header = b64url_encode(b'{"alg":"ES256","kid":"v1"}')
    assert _reason(f"{header}.{b64url_encode(b'[1,2]')}.c2ln") == "unparsable"


def test_hs256_certificate_is_refused_before_any_lookup() -> None:
    token = jwt.encode(_claims(), "a-shared-secret-of-32-bytes-len!", "HS256", {"kid": "v1"})

    assert _reason(token) == "header"


def test_alg_none_is_refused() -> None:
    header = b64url_encode(b'{"alg":"none","kid":"v1"}')
    payload = b64url_encode(b'{"iss":"gov.example.verification"}')

    assert _reason(f"{header}.{payload}.") == "header"


def test_missing_kid_is_refused() -> None:
    token = jwt.encode(_claims(), SIGNING_KEY, algorithm="ES256")

    assert "kid" not in jwt.get_unverified_header(token)
    assert _reason(token) == "header"


def test_numeric_kid_is_refused_even_if_a_key_version_reads_the_same() -> None:
    authority = AuthorityConfig(
        id=AUTHORITY_ID,
        issuer=ISSUER,
        audience=AUDIENCE,
        keys={"1": (SIGNING_KEY.public_key(), NOW - timedelta(days=1), None)},
    )
    token = _raw_jws({"alg": "ES256", "kid": 1, "typ": "JWT"}, _claims())

    assert _reason(token, authority=authority) == "header"


# --- issuer, audience, key --------------------------------------------------------------


def test_unknown_issuer() -> None:
    assert _reason(_certificate(iss="someone.else")) == "unknown_issuer"


@pytest.mark.parametrize("issuer", [None, 42, ["gov.example.verification"]])
def test_missing_or_non_string_issuer_is_unknown(issuer: object) -> None:
    claims = _claims()
    claims.pop("iss")
    if issuer is not None:
        claims["iss"] = issuer
    looked_up: list[str] = []

    def authorities(name: str) -> AuthorityConfig | None:
        looked_up.append(name)
        return None

    with pytest.raises(CertificateInvalid) as caught:
        verify_certificate(
            token=_raw_jws({"alg": "ES256", "kid": "v1"}, claims),
            hmac_key=HMAC_SECRET,
            keys=KEYS,
            app=_app(),
            authorities=authorities,
            max_lifetime=MAX_LIFETIME,
            now=NOW,
        )
    assert caught.value.reason == "unknown_issuer"
    assert looked_up == []


def test_issuer_is_looked_up_exactly() -> None:
    assert _reason(_certificate(iss=ISSUER.upper())) == "unknown_issuer"


def test_audience_mismatch() -> None:
    assert _reason(_certificate(aud="another-key-server")) == "audience"


def test_audience_as_array_is_refused_even_when_it_holds_the_audience() -> None:
    assert _reason(_certificate(aud=[AUDIENCE])) == "audience"


def test_missing_audience_is_refused() -> None:
    claims = _claims()
    claims.pop("aud")

    assert _reason(sign_jwt(SIGNING_KEY, claims, kid="v1")) == "audience"


def test_unknown_kid_has_no_key() -> None:
    assert _reason(_certificate(kid="v2")) == "no_key"


@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [
        (NOW, None),  # valid_from < now is strict
        (NOW + timedelta(minutes=1), None),  # not yet valid
        (NOW - timedelta(days=2), NOW),  # revoked exactly now
        (NOW - timedelta(days=2), NOW - timedelta(days=1)),  # revoked yesterday
    ],
)
def test_key_outside_its_validity_has_no_key(
    valid_from: datetime, valid_until: datetime | None
) -> None:
    assert _reason(_certificate(), authority=_authority(valid_from, valid_until)) == "no_key"


def test_key_valid_until_later_is_used() -> None:
    authority = _authority(NOW - timedelta(days=1), NOW + timedelta(seconds=1))

    assert _verify(_certificate(), authority=authority).health_authority_id == AUTHORITY_ID


# --- signature ---------------------------------------------------------------------------


def test_certificate_signed_by_another_key_is_refused() -> None:
    assert _reason(_certificate(key=OTHER_KEY)) == "signature"


def test_expired_certificate_by_another_key_is_a_signature_failure() -> None:
    # A forged certificate must not be reported as merely expired.
    token = _certificate(key=OTHER_KEY, exp=NOW_SECONDS - 60, iat=NOW_SECONDS - 960, nbf=None)

    assert _reason(token) == "signature"


def test_tampered_claims_are_refused() -> None:
    header, _, signature = _certificate().split(".")
    forged = b64url_encode(json.dumps(_claims(reportType="negative")).encode())

    assert _reason(f"{header}.{forged}.{signature}") == "signature"


@settings(max_examples=60, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=63), flip=st.integers(min_value=1, max_value=255)
)
def test_any_changed_signature_byte_is_refused(position: int, flip: int) -> None:
    header, payload, signature = _certificate().split(".")
    raw = bytearray(b64url_decode(signature))
    raw[position] ^= flip
    with pytest.raises(CertificateInvalid) as caught:
        _verify(f"{header}.{payload}.{b64url_encode(bytes(raw))}")
    assert caught.value.reason == "signature"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([10**400, -(10**400)])  # JSON integers no float can hold
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def _claim(valid: object) -> st.SearchStrategy[object]:
    return st.just(valid) | _JSON


@settings(max_examples=150, deadline=None)
@given(
    claims=st.fixed_dictionaries(
        {},
        optional={
            "iss": _claim(ISSUER),
            "aud": _claim(AUDIENCE),
            "exp": _claim(NOW_SECONDS + 60),
            "nbf": _claim(NOW_SECONDS - 5),
            "iat": _claim(NOW_SECONDS - 5),
            "reportType": _claim("likely"),
            "symptomOnsetInterval": _claim(2_991_600),
            "tekmac": _claim(_tekmac(KEYS)),
        },
    )
)
def test_any_signed_claims_either_verify_or_raise_certificate_invalid(
    claims: dict[str, Any],
) -> None:
    # Whatever a health authority (or a bug in one) signs, the caller sees a verified
    # certificate or CertificateInvalid, never another exception (which would be a 500).
    token = _raw_jws({"alg": "ES256", "kid": "v1"}, claims)
    outcome: VerifiedCertificate | CertificateInvalid
    try:
        outcome = _verify(token)
    except CertificateInvalid as error:
        outcome = error
    if isinstance(outcome, CertificateInvalid):
        assert outcome.reason in REASONS
    else:
        assert claims["iss"] == ISSUER
        assert claims["exp"] == NOW_SECONDS + 60
        assert outcome.report_type == claims["reportType"]


# --- time ------------------------------------------------------------------------------------


def test_certificate_is_valid_until_the_second_before_exp() -> None:
    token = _certificate(exp=NOW_SECONDS + 1)

    assert _verify(token).report_type == "confirmed"


@pytest.mark.parametrize("after_exp", [0, 1, 4, 5, 6, 3600])
def test_certificate_is_expired_at_exp_and_after(after_exp: int) -> None:
    # 0..5 s pass verify_jwt's skew allowance and are refused by the strict exp check;
    # later ones are refused inside verify_jwt and classified.
    token = _certificate(exp=NOW_SECONDS - after_exp, iat=NOW_SECONDS - 900, nbf=None)

    assert _reason(token) == "expired"


def test_certificate_without_exp_is_refused() -> None:
    assert _reason(_certificate(exp=None)) == "no_expiry"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["soon", True, [1]])
def test_time_claims_must_be_numbers(claim: str, value: object) -> None:
    claims = _claims()
    claims[claim] = value

    assert _reason(sign_jwt(SIGNING_KEY, claims, kid="v1")) == "unparsable"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claims_beyond_any_float_are_unparsable(claim: str) -> None:
    changes: dict[str, Any] = {claim: 10**400}

    assert _reason(_certificate(**changes)) == "unparsable"


def test_null_exp_counts_as_missing() -> None:
    claims = _claims()
    claims["exp"] = None

    assert _reason(sign_jwt(SIGNING_KEY, claims, kid="v1")) == "no_expiry"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_before_more_than_the_skew_ahead_is_not_yet_valid(claim: str) -> None:
    ahead = int(ALLOWED_CLOCK_SKEW.total_seconds()) + 1
    changes: dict[str, Any] = {claim: NOW_SECONDS + ahead}
    token = _certificate(**changes)

    assert _reason(token) == "not_yet_valid"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_before_within_the_skew_is_accepted(claim: str) -> None:
    ahead = int(ALLOWED_CLOCK_SKEW.total_seconds())
    changes: dict[str, Any] = {claim: NOW_SECONDS + ahead}
    token = _certificate(**changes)

    assert _verify(token).report_type == "confirmed"


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 1e308},  # from a trusted authority, this was accepted: valid forever
        {"exp": 2**62},
        {"exp": NOW_SECONDS + 3600, "iat": NOW_SECONDS - 1},
        {"exp": NOW_SECONDS + 60, "iat": NOW_SECONDS - 3600},  # issued long ago
        {"exp": NOW_SECONDS + 3601, "iat": None, "nbf": None},  # no iat: counted from now
        {"exp": 1e308, "iat": -1e308},
    ],
    ids=["exp-1e308", "exp-2**62", "a-second-too-long", "old-iat", "no-iat", "both-extreme"],
)
def test_a_certificate_living_longer_than_the_maximum_lifetime_is_refused(
    changes: dict[str, Any],
) -> None:
    assert _reason(_certificate(**changes)) == "lifetime"


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": NOW_SECONDS + 3600, "iat": NOW_SECONDS},
        {"exp": NOW_SECONDS + 3600, "iat": None, "nbf": None},
        # The verification service's own: iat 5 s early, 15 minutes.
        {"exp": NOW_SECONDS + 900, "iat": NOW_SECONDS - 5},
    ],
    ids=["exactly-the-maximum", "no-iat-exactly-the-maximum", "verification-service"],
)
def test_a_certificate_living_at_most_the_maximum_lifetime_is_accepted(
    changes: dict[str, Any],
) -> None:
    assert _verify(_certificate(**changes)).report_type == "confirmed"


def test_the_maximum_lifetime_is_the_callers() -> None:
    token = _certificate(exp=NOW_SECONDS + 1800, iat=NOW_SECONDS)

    assert _reason(token, max_lifetime=timedelta(minutes=29)) == "lifetime"
    assert _verify(token, max_lifetime=timedelta(minutes=30)).report_type == "confirmed"


def test_a_long_lived_certificate_by_another_key_is_a_signature_failure() -> None:
    token = _certificate(key=OTHER_KEY, exp=1e308)

    assert _reason(token) == "signature"


def test_not_yet_valid_certificate_by_another_key_is_a_signature_failure() -> None:
    token = _certificate(key=OTHER_KEY, nbf=NOW_SECONDS + 60)

    assert _reason(token) == "signature"


# --- app, report type, claims -------------------------------------------------------------


def test_app_not_authorizing_the_authority() -> None:
    assert _reason(_certificate(), app=_app(AUTHORITY_ID + 1)) == "app_not_authorized"


@pytest.mark.parametrize("report_type", ["positive", "Confirmed", "", 1, None, ["confirmed"]])
def test_report_type_must_be_one_of_the_four(report_type: object) -> None:
    claims = _claims()
    claims["reportType"] = report_type
    if report_type is None:
        del claims["reportType"]

    assert _reason(sign_jwt(SIGNING_KEY, claims, kid="v1")) == "report_type"


@pytest.mark.parametrize("onset", ["2991600", -1, 2**32, 2991600.0, True])
def test_symptom_onset_must_be_a_uint32(onset: object) -> None:
    assert _reason(_certificate(symptomOnsetInterval=onset)) == "claims"


def test_checks_run_in_the_reference_order() -> None:
    everything_wrong = _certificate(
        key=OTHER_KEY, exp=NOW_SECONDS - 10, iat=None, nbf=None, reportType="x", tekmac="AA"
    )
    assert _reason(everything_wrong, authority=_authority(valid_from=NOW)) == "no_key"
    assert _reason(everything_wrong) == "signature"
    late_and_unauthorized = _certificate(reportType="x", tekmac="AAAA")
    assert _reason(late_and_unauthorized, app=_app(99)) == "app_not_authorized"
    assert _reason(late_and_unauthorized) == "report_type"


# --- HMAC -------------------------------------------------------------------------------------


def test_hmac_key_other_than_the_phone_used_is_refused() -> None:
    other_secret = base64.b64encode(bytes(32)).decode()

    assert _reason(_certificate(), hmac_key=other_secret) == "hmac"


def test_changed_key_metadata_is_refused() -> None:
    changed = [KEYS[0], KEYS[1].model_copy(update={"transmissionRisk": 5})]

    assert _reason(_certificate(), keys=changed) == "hmac"


def test_key_strings_are_used_exactly_as_sent() -> None:
    # The same 16 bytes, unpadded: a different string, so a different MAC.
    unpadded = [KEYS[0].model_copy(update={"key": KEYS[0].key.rstrip("=")}), KEYS[1]]

    assert _reason(_certificate(), keys=unpadded) == "hmac"


def test_a_dropped_or_added_key_is_refused() -> None:
    assert _reason(_certificate(), keys=KEYS[:1]) == "hmac"
    extra = ExposureKey(key="AAAAAAAAAAAAAAAAAAAAAA==", rollingStartNumber=1, rollingPeriod=144)
    assert _reason(_certificate(), keys=[*KEYS, extra]) == "hmac"


@pytest.mark.parametrize("tekmac", [None, 42, "not base64!", "A"])
def test_missing_or_malformed_tekmac_is_refused(tekmac: object) -> None:
    claims = _claims()
    claims["tekmac"] = tekmac
    if tekmac is None:
        del claims["tekmac"]

    assert _reason(sign_jwt(SIGNING_KEY, claims, kid="v1")) == "hmac"


def test_malformed_hmac_key_is_refused() -> None:
    assert _reason(_certificate(), hmac_key="***") == "hmac"


def test_hmac_key_and_tekmac_are_decoded_leniently() -> None:
    urlsafe_unpadded_secret = HMAC_SECRET.replace("+", "-").replace("/", "_").rstrip("=")
    mac = _tekmac(KEYS)
    over_padded_mac = mac + "=="

    token = _certificate(tekmac=over_padded_mac)

    assert _verify(token, hmac_key=urlsafe_unpadded_secret).report_type == "confirmed"


def test_three_field_form_accepted_when_every_risk_is_zero() -> None:
    keys = [key.model_copy(update={"transmissionRisk": 0}) for key in KEYS]
    token = _certificate(tekmac=_tekmac(keys, three_fields=True))

    assert _verify(token, keys=keys).report_type == "confirmed"


def test_three_field_form_refused_when_any_risk_is_set() -> None:
    token = _certificate(tekmac=_tekmac(KEYS, three_fields=True))

    assert KEYS[1].transmissionRisk == 4
    assert _reason(token) == "hmac"


@pytest.mark.parametrize(
    ("risks", "tekmac"),
    [
        ((3, 5), VECTOR_MAC_RISK_3_5),
        ((0, 0), VECTOR_MAC_RISK_0),
        ((0, 0), VECTOR_MAC_RISK_0_THREE_FIELDS),
    ],
)
def test_reference_hmac_vectors_through_the_certificate(
    risks: tuple[int, int], tekmac: str
) -> None:
    token = _certificate(tekmac=tekmac)

    verified = _verify(token, keys=_vector_keys(risks), hmac_key=VECTOR_SECRET)

    assert verified.report_type == "confirmed"


def test_reference_vectors_do_not_cross() -> None:
    assert (
        _reason(
            _certificate(tekmac=VECTOR_MAC_RISK_0),
            keys=_vector_keys((3, 5)),
            hmac_key=VECTOR_SECRET,
        )
        == "hmac"
    )
    three_fields = _certificate(tekmac=VECTOR_MAC_RISK_0_THREE_FIELDS)
    assert _reason(three_fields, keys=_vector_keys((3, 5)), hmac_key=VECTOR_SECRET) == "hmac"


# --- through the database and the cache -------------------------------------------------------


def test_certificate_verifies_against_keys_stored_with_the_trust_functions(
    db_session: Session,
) -> None:
    authority = trust.add_health_authority(
        db_session, issuer=ISSUER, audience=AUDIENCE, name="Example", jwks_url=None, now=NOW
    )
    trust.add_health_authority_key(
        db_session,
        authority,
        version="v1",
        public_key_pem=public_key_pem(SIGNING_KEY.public_key()).decode(),
        valid_from=NOW - timedelta(hours=1),
    )
    trust.add_authorized_app(
        db_session,
        app_id="Gov.Example.App",
        health_authority_issuers=[ISSUER],
        regions=["vn"],
        bypass_verification=False,
        now=NOW,
    )
    app = trust.load_app(db_session, "GOV.EXAMPLE.APP")
    assert app is not None

    verified = verify_certificate(
        token=_certificate(),
        hmac_key=HMAC_SECRET,
        keys=KEYS,
        app=app,
        authorities=lambda issuer: trust.load_authority(db_session, issuer, NOW),
        max_lifetime=MAX_LIFETIME,
        now=NOW,
    )

    assert verified.health_authority_id == authority.id
