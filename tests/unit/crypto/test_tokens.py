"""ES256 JWTs: round trips, and every token an attacker could send is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import InvalidKey, InvalidToken
from crypto.signing import public_key_pem
from crypto.tokens import (
    jwk_from_public_key,
    public_key_from_jwk,
    public_keys_from_jwk_set,
    sign_jwt,
    verify_jwt,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ISSUER = "diagnosis-verification-example"
AUDIENCE = "exposure-notifications-server"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEYS = {"v1": KEY.public_key()}


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(NOW.timestamp()) - 5,
        "nbf": int(NOW.timestamp()) - 5,
        "exp": int(NOW.timestamp()) + 900,
        "reportType": "confirmed",
        "tekmac": "2u1nHt5WWurJytFLF3xitNzM99oNrad2y4YGOL53AeY=",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _verify(token: str, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "public_keys": PUBLIC_KEYS,
        "audience": AUDIENCE,
        "issuer": ISSUER,
        "now": NOW,
    }
    arguments.update(overrides)
    return verify_jwt(token, **arguments)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], payload: bytes, sign: Any = None) -> str:
    """Assemble a JWS by hand, so tests can send what PyJWT would refuse to produce."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload)}"
    signature = b"" if sign is None else sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _es256_raw(key: ec.EllipticCurvePrivateKey) -> Any:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def _rejected(token: str, **overrides: Any) -> None:
    with pytest.raises(InvalidToken) as info:
        _verify(token, **overrides)
    assert str(info.value) == "token verification failed"


def test_round_trip_and_header() -> None:
    token = sign_jwt(KEY, _claims(), kid="v1")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "v1", "typ": "JWT"}
    assert _verify(token) == _claims()


def test_datetime_claims_are_written_as_seconds() -> None:
    token = sign_jwt(KEY, _claims(exp=NOW + timedelta(minutes=15)), "v1")
    assert _verify(token)["exp"] == int(NOW.timestamp()) + 900


def test_a_hand_built_es256_token_verifies() -> None:
    # Guards the attack helpers below: the same construction with ES256 is accepted.
    header = {"alg": "ES256", "kid": "v1", "typ": "JWT"}
    token = _compact(header, json.dumps(_claims()).encode(), _es256_raw(KEY))
    assert _verify(token)["iss"] == ISSUER


@settings(max_examples=30)
@given(
    extra=st.dictionaries(
        # Registered claims have types the verifier enforces (RFC 7519 §4.1; PyJWT checks
        # sub and jti are strings), so arbitrary values there are not a round trip.
        keys=st.text(min_size=1, max_size=10).filter(
            lambda name: name not in {"iss", "aud", "iat", "nbf", "exp", "sub", "jti"}
        ),
        values=st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**53), max_value=2**53)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=5,
    )
)
def test_claims_round_trip(extra: dict[str, Any]) -> None:
    claims = {**_claims(), **extra}
    assert _verify(sign_jwt(KEY, claims, "v1")) == claims


# --- algorithm attacks -------------------------------------------------------------------


def test_alg_none_is_refused() -> None:
    for alg in ("none", "None", "NONE"):
        _rejected(_compact({"alg": alg, "kid": "v1"}, json.dumps(_claims()).encode()))


def test_hs256_keyed_with_the_public_pem_is_refused() -> None:
    # The classic confusion: a verifier that takes alg from the header would HMAC with the
    # public key it holds and accept this.
    pem = public_key_pem(KEY.public_key())
    for secret in (pem, pem.strip()):
        token = _compact(
            {"alg": "HS256", "kid": "v1", "typ": "JWT"},
            json.dumps(_claims()).encode(),
            lambda data, secret=secret: hmac.digest(secret, data, hashlib.sha256),
        )
        _rejected(token)


def test_hs256_with_any_secret_is_refused() -> None:
    token = jwt.encode(_claims(), "a shared secret" * 3, algorithm="HS256", headers={"kid": "v1"})
    _rejected(token)


def test_rs256_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "v1"})
    _rejected(token)
    # Even when the verifier is (mis)configured with the RSA public key under that kid.
    _rejected(token, public_keys={"v1": rsa_key.public_key()})


def test_es384_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(_claims(), p384, algorithm="ES384", headers={"kid": "v1"})
    _rejected(token)
    _rejected(token, public_keys={"v1": p384.public_key()})


def test_header_claiming_es256_over_another_algorithm_is_refused() -> None:
    header = {"alg": "ES256", "kid": "v1"}
    pem = public_key_pem(KEY.public_key())
    token = _compact(
        header,
        json.dumps(_claims()).encode(),
        lambda data: hmac.digest(pem, data, hashlib.sha256),
    )
    _rejected(token)


def test_der_signature_is_refused() -> None:
    # JWS uses raw R || S; the DER form of the same signature must not be accepted.
    token = _compact(
        {"alg": "ES256", "kid": "v1"},
        json.dumps(_claims()).encode(),
        lambda data: KEY.sign(data, ec.ECDSA(hashes.SHA256())),
    )
    _rejected(token)


# --- key id ------------------------------------------------------------------------------


def test_signature_by_another_key_is_refused() -> None:
    _rejected(sign_jwt(OTHER_KEY, _claims(), "v1"))


def test_unknown_kid_is_refused() -> None:
    _rejected(sign_jwt(KEY, _claims(), "v2"))


def test_missing_or_non_string_kid_is_refused() -> None:
    payload = json.dumps(_claims()).encode()
    _rejected(_compact({"alg": "ES256"}, payload, _es256_raw(KEY)))
    _rejected(_compact({"alg": "ES256", "kid": 1}, payload, _es256_raw(KEY)))
    _rejected(_compact({"alg": "ES256", "kid": None}, payload, _es256_raw(KEY)))
    _rejected(_compact({"alg": "ES256", "kid": ["v1"]}, payload, _es256_raw(KEY)))


def test_the_key_is_chosen_by_kid() -> None:
    keys = {"v1": KEY.public_key(), "v2": OTHER_KEY.public_key()}
    assert _verify(sign_jwt(OTHER_KEY, _claims(), "v2"), public_keys=keys)["iss"] == ISSUER
    _rejected(sign_jwt(OTHER_KEY, _claims(), "v1"), public_keys=keys)


# --- audience and issuer -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-server"},
        {"aud": [AUDIENCE]},
        {"aud": [AUDIENCE, "another-server"]},
        {"aud": ""},
        {"iss": "another-issuer"},
        {"iss": ISSUER.upper()},
        {"iss": [ISSUER]},
        {"iss": 1},
    ],
)
def test_wrong_audience_or_issuer_is_refused(changes: dict[str, Any]) -> None:
    # Built by hand: PyJWT refuses to sign a non-string issuer.
    payload = json.dumps(_claims(**changes)).encode()
    _rejected(_compact({"alg": "ES256", "kid": "v1"}, payload, _es256_raw(KEY)))


def test_missing_audience_or_issuer_is_refused() -> None:
    claims = _claims()
    for name in ("aud", "iss"):
        reduced = {key: value for key, value in claims.items() if key != name}
        _rejected(sign_jwt(KEY, reduced, "v1"))


# --- time --------------------------------------------------------------------------------


def test_expiry_is_checked_against_now() -> None:
    exp = int(NOW.timestamp()) + 900
    token = sign_jwt(KEY, _claims(exp=exp), "v1")
    assert _verify(token, now=NOW + timedelta(seconds=899))
    _rejected(token, now=NOW + timedelta(seconds=900))
    _rejected(token, now=NOW + timedelta(days=1))
    assert _verify(token, now=NOW + timedelta(seconds=900), leeway=timedelta(seconds=1))


def test_not_yet_valid_is_refused() -> None:
    token = sign_jwt(KEY, _claims(nbf=int(NOW.timestamp()) + 60), "v1")
    _rejected(token)
    assert _verify(token, now=NOW + timedelta(seconds=60))
    assert _verify(token, leeway=timedelta(seconds=60))


def test_issued_in_the_future_is_refused() -> None:
    token = sign_jwt(KEY, _claims(iat=int(NOW.timestamp()) + 60), "v1")
    _rejected(token)
    assert _verify(token, leeway=timedelta(seconds=60))


def test_time_uses_the_given_now_not_the_wall_clock() -> None:
    past = datetime(2020, 7, 1, tzinfo=UTC)
    claims = _claims(iat=int(past.timestamp()), nbf=None, exp=int(past.timestamp()) + 900)
    token = sign_jwt(KEY, claims, "v1")
    assert _verify(token, now=past + timedelta(minutes=1))["exp"] == claims["exp"]
    _rejected(token)  # at NOW, years later


def test_exp_is_required_by_default() -> None:
    token = sign_jwt(KEY, _claims(exp=None), "v1")
    _rejected(token)
    assert "exp" not in _verify(token, required_claims=())


def test_other_claims_can_be_required() -> None:
    _rejected(sign_jwt(KEY, _claims(), "v1"), required_claims=("exp", "jti"))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"iss": "%s", "aud": "%s", "exp": NaN}',
        b'{"iss": "%s", "aud": "%s", "exp": Infinity}',
        b'{"iss": "%s", "aud": "%s", "exp": "9999999999"}',
        b'{"iss": "%s", "aud": "%s", "exp": true}',
        b'{"iss": "%s", "aud": "%s", "exp": 9999999999, "nbf": NaN}',
        b'{"iss": "%s", "aud": "%s", "exp": 9999999999, "iat": [1]}',
        b'{"iss": "%s", "aud": "%s", "exp": 1' + b"0" * 400 + b"}",
    ],
)
def test_malformed_time_claims_are_refused(payload: bytes) -> None:
    body = payload % (ISSUER.encode(), AUDIENCE.encode())
    _rejected(_compact({"alg": "ES256", "kid": "v1"}, body, _es256_raw(KEY)))


def test_fractional_times_are_accepted() -> None:
    exp = NOW.timestamp() + 0.5
    token = sign_jwt(KEY, _claims(exp=exp), "v1")
    assert _verify(token)["exp"] == exp
    _rejected(token, now=NOW + timedelta(seconds=0.5))


def test_caller_mistakes_are_not_token_errors() -> None:
    token = sign_jwt(KEY, _claims(), "v1")
    with pytest.raises(ValueError, match="aware"):
        _verify(token, now=datetime(2026, 11, 25))  # noqa: DTZ001
    with pytest.raises(ValueError, match="leeway"):
        _verify(token, leeway=timedelta(seconds=-1))


# --- malformed tokens --------------------------------------------------------------------


def test_tampered_payload_is_refused() -> None:
    token = sign_jwt(KEY, _claims(), "v1")
    header, _, signature = token.split(".")
    forged = _b64(json.dumps(_claims(reportType="likely")).encode())
    _rejected(f"{header}.{forged}.{signature}")


def test_every_flipped_character_is_refused() -> None:
    token = sign_jwt(KEY, _claims(), "v1")
    for position in range(0, len(token), 7):
        if token[position] == ".":
            continue
        replacement = "A" if token[position] != "A" else "B"
        tampered = token[:position] + replacement + token[position + 1 :]
        try:
            claims = _verify(tampered)
        except InvalidToken:
            continue
        # A change in the last character of a segment can leave the decoded bytes unchanged
        # (unused low bits); then the token is the same token.
        assert claims == _claims()


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "a.b", "a.b.c", "a.b.c.d", "ünïcode.x.y", "eyJhbGciOiJFUzI1NiJ9..", " " * 10],
)
def test_garbage_is_refused(token: str) -> None:
    _rejected(token)


def test_payload_that_is_not_an_object_is_refused() -> None:
    _rejected(_compact({"alg": "ES256", "kid": "v1"}, b"[1, 2]", _es256_raw(KEY)))


# --- signing -----------------------------------------------------------------------------


def test_signing_needs_a_p256_key_and_a_kid() -> None:
    with pytest.raises(InvalidKey):
        sign_jwt(ec.generate_private_key(ec.SECP384R1()), _claims(), "v1")
    with pytest.raises(ValueError, match="kid"):
        sign_jwt(KEY, _claims(), "")


# --- JWKs --------------------------------------------------------------------------------


def test_jwk_round_trip() -> None:
    jwk = jwk_from_public_key(KEY.public_key(), "v1")
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
        "v1",
    )
    assert len(jwk["x"]) == len(jwk["y"]) == 43  # 32 bytes, unpadded
    loaded = public_key_from_jwk(jwk)
    assert loaded.public_numbers() == KEY.public_key().public_numbers()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(min_value=1, max_value=2**255))
def test_jwk_round_trip_for_any_key(seed: int) -> None:
    public_key = ec.derive_private_key(seed, ec.SECP256R1()).public_key()
    jwk = jwk_from_public_key(public_key, "k")
    assert public_key_from_jwk(jwk).public_numbers() == public_key.public_numbers()
    assert public_key_from_jwk(json.loads(json.dumps(jwk))) is not None


def test_rfc7517_example_key() -> None:
    # RFC 7517 appendix A.1, first key; it is marked for encryption, so only the bare
    # coordinates are accepted.
    example = {
        "kty": "EC",
        "crv": "P-256",
        "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
        "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        "use": "enc",
        "kid": "1",
    }
    with pytest.raises(InvalidKey):
        public_key_from_jwk(example)
    key = public_key_from_jwk({k: v for k, v in example.items() if k != "use"})
    assert jwk_from_public_key(key, "1")["x"] == example["x"]
    assert jwk_from_public_key(key, "1")["y"] == example["y"]


def _valid_jwk() -> dict[str, str]:
    return jwk_from_public_key(KEY.public_key(), "v1")


@pytest.mark.parametrize(
    "changes",
    [
        {"kty": "RSA"},
        {"kty": None},
        {"crv": "P-384"},
        {"crv": None},
        {"alg": "ES384"},
        {"alg": "HS256"},
        {"use": "enc"},
        {"x": None},
        {"y": 12},
        {"x": "AAAA"},  # too short
        {"x": _valid_jwk()["x"] + "AA"},  # too long
        {"x": _valid_jwk()["x"] + "="},  # padded
        {"x": _valid_jwk()["x"].replace("-", "+").replace("_", "/") + "+"},  # wrong alphabet
        {"y": _valid_jwk()["x"]},  # almost surely not on the curve
        {"d": "private part must never be published"},
    ],
)
def test_invalid_jwks_are_refused(changes: dict[str, Any]) -> None:
    jwk: dict[str, Any] = {**_valid_jwk(), **changes}
    jwk = {name: value for name, value in jwk.items() if value is not None}
    with pytest.raises(InvalidKey):
        public_key_from_jwk(jwk)


def test_non_mapping_jwk_is_refused() -> None:
    with pytest.raises(InvalidKey):
        public_key_from_jwk([])  # type: ignore[arg-type]


def test_jwk_export_needs_p256_and_kid() -> None:
    with pytest.raises(InvalidKey):
        jwk_from_public_key(ec.generate_private_key(ec.SECP384R1()).public_key(), "v1")
    with pytest.raises(ValueError, match="kid"):
        jwk_from_public_key(KEY.public_key(), "")


def test_key_set_from_a_bare_array_verifies_tokens() -> None:
    published = json.dumps(
        [
            jwk_from_public_key(KEY.public_key(), "v1"),
            jwk_from_public_key(OTHER_KEY.public_key(), "v2"),
        ]
    )
    keys = public_keys_from_jwk_set(json.loads(published))
    assert set(keys) == {"v1", "v2"}
    assert _verify(sign_jwt(OTHER_KEY, _claims(), "v2"), public_keys=keys)["aud"] == AUDIENCE


@pytest.mark.parametrize(
    "jwks",
    [
        {"keys": []},
        "[]",
        [1],
        [{**jwk_from_public_key(KEY.public_key(), "v1"), "kid": ""}],
        [{k: v for k, v in jwk_from_public_key(KEY.public_key(), "v1").items() if k != "kid"}],
        [
            jwk_from_public_key(KEY.public_key(), "v1"),
            jwk_from_public_key(OTHER_KEY.public_key(), "v1"),
        ],
        [jwk_from_public_key(KEY.public_key(), "v1"), {"kty": "RSA", "kid": "v2"}],
    ],
)
def test_invalid_key_sets_are_refused(jwks: object) -> None:
    with pytest.raises(InvalidKey):
        public_keys_from_jwk_set(jwks)


def test_empty_key_set_is_empty() -> None:
    assert public_keys_from_jwk_set([]) == {}


class TestSignWithSigner:
    """Tokens signed through the Signer protocol (KMS-ready) verify like PyJWT's own."""

    def test_signer_token_verifies(self) -> None:
        from crypto.signing import FileSigner
        from crypto.tokens import sign_jwt_with_signer

        signer = FileSigner.generate()
        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        claims = {
            "iss": "vs",
            "aud": "ks",
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + 900,
            "reportType": "confirmed",
        }

        token = sign_jwt_with_signer(signer, claims, kid="r1v1")

        verified = verify_jwt(
            token, public_keys={"r1v1": signer.public_key()}, audience="ks", issuer="vs", now=now
        )
        assert verified["reportType"] == "confirmed"
        assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "r1v1", "typ": "JWT"}

    def test_signer_token_fails_under_another_key(self) -> None:
        from crypto.signing import FileSigner
        from crypto.tokens import sign_jwt_with_signer

        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        claims = {"iss": "vs", "aud": "ks", "exp": int(now.timestamp()) + 60}
        token = sign_jwt_with_signer(FileSigner.generate(), claims, kid="k")

        with pytest.raises(InvalidToken):
            verify_jwt(
                token,
                public_keys={"k": FileSigner.generate().public_key()},
                audience="ks",
                issuer="vs",
                now=now,
            )


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_a_registered_claim_of_the_wrong_type_is_refused(claim: str) -> None:
    # Found by hypothesis: a null jti makes PyJWT raise its own error; it must surface as
    # the one opaque InvalidToken, never as anything a caller would treat as a crash.
    _rejected(sign_jwt(KEY, {**_claims(), claim: None}, "v1"))


# ---- verification reads the token once and checks ES256 itself ----------------------------


def test_a_token_marking_an_extension_critical_is_refused() -> None:
    header = {"alg": "ES256", "kid": "v1", "crit": ["exp"]}
    _rejected(_compact(header, json.dumps(_claims()).encode(), _es256_raw(KEY)))


def test_an_audience_list_is_refused_even_when_it_names_ours() -> None:
    _rejected(sign_jwt(KEY, _claims(aud=[AUDIENCE]), kid="v1"))


@pytest.mark.parametrize("claim", ["aud", "iss", "exp"])
def test_a_null_required_claim_counts_as_missing(claim: str) -> None:
    payload = json.dumps({**_claims(), claim: None}).encode()
    _rejected(_compact({"alg": "ES256", "kid": "v1"}, payload, _es256_raw(KEY)))


def _pyjwt_accepts(token: str) -> bool:
    """PyJWT's answer with the checks verify_jwt makes: the independent reference."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "ES256" or header.get("kid") != "v1" or "crit" in header:
            return False
        claims = jwt.decode(
            token,
            KEY.public_key(),
            algorithms=["ES256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "strict_aud": True,
                "require": ["aud", "iss", "exp"],
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return False
    seconds = NOW.timestamp()
    return claims["exp"] > seconds and claims.get("nbf", 0) <= seconds >= claims.get("iat", 0)


_CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([AUDIENCE, ISSUER, "", "other"]),
    st.lists(st.sampled_from([AUDIENCE, "other"]), max_size=2),
)


@settings(max_examples=150)
@given(
    # Most tokens are valid or nearly so, so both answers are exercised.
    changes=st.one_of(
        st.just({}),
        st.dictionaries(st.sampled_from(["aud", "iss", "sub", "jti"]), _CLAIM_VALUES, max_size=1),
    ),
    expires_in=st.integers(min_value=-20, max_value=200),
    issued_ago=st.integers(min_value=-20, max_value=200),
    kid=st.sampled_from(["v1", "v1", "v2"]),
    flip=st.one_of(st.none(), st.none(), st.integers(min_value=0, max_value=400)),
)
def test_verification_agrees_with_pyjwt(
    changes: dict[str, Any], expires_in: int, issued_ago: int, kid: str, flip: int | None
) -> None:
    claims = _claims(
        exp=int(NOW.timestamp()) + expires_in,
        iat=int(NOW.timestamp()) - issued_ago,
        nbf=None,
    )
    claims.update(changes)
    token = _compact(
        {"alg": "ES256", "kid": kid, "typ": "JWT"},
        json.dumps(claims).encode(),
        _es256_raw(KEY),
    )
    if flip is not None:
        position = flip % len(token)
        replacement = "A" if token[position] != "A" else "B"
        token = token[:position] + replacement + token[position + 1 :]
    try:
        _verify(token)
        ours = True
    except InvalidToken:
        ours = False
    assert ours == _pyjwt_accepts(token)
