"""ES256 JSON Web Tokens (verification tokens and certificates) and their public JWKs.

The verification server signs a token after a code is claimed and a certificate after the
phone sends its TEK HMAC; the key server verifies certificates with the public keys the
verification server publishes as a bare JSON array of JWKs. Verification is pinned to ES256
on P-256 (RFC 7518, signature ``R || S``): ``alg: none``, any HMAC algorithm (including the
classic confusion attack, HS256 keyed with the public key's PEM), RSA and other curves are
refused before any claim is read. The time claims are checked against the ``now`` the
caller passes, never the wall clock.

Example::

    token = sign_jwt(private_key, {"iss": "vs", "aud": "ks", "exp": exp, "iat": iat}, kid="v1")
    claims = verify_jwt(
        token, public_keys={"v1": public_key}, audience="ks", issuer="vs", now=now
    )

Every verification failure raises the same :class:`~crypto.errors.InvalidToken`; a key that
cannot be used raises :class:`~crypto.errors.InvalidKey`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from crypto.encoding import b64url_decode, b64url_encode
from crypto.errors import InvalidKey, InvalidToken
from crypto.signing import Signer

__all__ = [
    "ALGORITHM",
    "jwk_from_public_key",
    "public_key_from_jwk",
    "public_keys_from_jwk_set",
    "sign_jwt",
    "sign_jwt_with_signer",
    "verify_jwt",
]

#: The only JWS algorithm this module signs or accepts.
ALGORITHM = "ES256"
_CURVE_NAME = "P-256"
_COORDINATE_LENGTH = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _is_p256(key: object) -> bool:
    # Typed callers pass EC keys, but configuration can hand over anything (an RSA key).
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
        isinstance(key.curve, ec.SECP256R1)
    )


def sign_jwt(private_key: ec.EllipticCurvePrivateKey, claims: Mapping[str, Any], kid: str) -> str:
    """Sign ``claims`` as a compact ES256 JWT with header ``{alg: ES256, kid, typ: JWT}``.

    ``datetime`` values of ``exp``, ``nbf`` and ``iat`` are written as Unix seconds. Raises
    :class:`InvalidKey` if ``private_key`` is not a P-256 key and :class:`ValueError` if
    ``kid`` is empty.
    """
    if not _is_p256(private_key):
        raise InvalidKey
    if not kid:
        raise ValueError("kid must not be empty")
    return jwt.encode(
        dict(claims), private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"}
    )


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # RFC 7519 NumericDate: a JSON number. bool is an int in Python; NaN and infinities pass
    # json.loads but compare false with everything, which would disable the check.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken
    try:
        # An integer too large for a float (10**400) overflows here rather than failing.
        seconds = float(value)
    except OverflowError as exc:
        raise InvalidToken from exc
    if not math.isfinite(seconds):
        raise InvalidToken
    return seconds


def _check_times(claims: Mapping[str, Any], now: datetime, leeway: timedelta) -> None:
    current = (now - _EPOCH) / timedelta(seconds=1)
    margin = leeway.total_seconds()
    expires = _numeric_date(claims, "exp")
    not_before = _numeric_date(claims, "nbf")
    issued = _numeric_date(claims, "iat")
    # RFC 7519 4.1.4: valid only *before* exp. 4.1.5: valid from nbf on.
    if expires is not None and current >= expires + margin:
        raise InvalidToken
    if not_before is not None and current + margin < not_before:
        raise InvalidToken
    if issued is not None and current + margin < issued:
        raise InvalidToken


def verify_jwt(
    token: str,
    *,
    public_keys: Mapping[str, ec.EllipticCurvePublicKey],
    audience: str,
    issuer: str,
    now: datetime,
    leeway: timedelta = timedelta(0),
    required_claims: Collection[str] = ("exp",),
) -> dict[str, Any]:
    """Verify an ES256 JWT and return its claims.

    Checks, all of which must pass: the header's ``alg`` is ES256 and its ``kid`` is a key
    of ``public_keys``; the signature verifies with that key; ``aud`` is the single string
    ``audience`` and ``iss`` equals ``issuer``; every name in ``required_claims`` is present
    (by default ``exp``: a token that never expires is refused); ``now`` is before ``exp``,
    not before ``nbf`` and not before ``iat``, each loosened by ``leeway``.

    Raises :class:`InvalidToken` for any failure, and :class:`ValueError` for a naive
    ``now`` or a negative ``leeway`` (mistakes of the caller, not of the token).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if leeway < timedelta(0):
        raise ValueError("leeway must not be negative")
    header, claims, signing_input, signature = _parse_compact(token)
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or "crit" in header:
        # No JWS extension is understood here, so a token that marks one critical is
        # refused (RFC 7515 4.1.11).
        raise InvalidToken
    public_key = public_keys.get(kid)
    if public_key is None or not _is_p256(public_key):
        raise InvalidToken
    _verify_es256(public_key, signing_input, signature)
    for name in ("aud", "iss", *required_claims):
        if claims.get(name) is None:
            raise InvalidToken
    # One audience, as a string: a list naming ours among others is refused.
    if claims["aud"] != audience or not isinstance(claims["aud"], str):
        raise InvalidToken
    if claims["iss"] != issuer:
        raise InvalidToken
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise InvalidToken
    _check_times(claims, now, leeway)
    return claims


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, RecursionError) as exc:
        raise InvalidToken from exc
    if not isinstance(value, dict):
        raise InvalidToken
    return value


def _parse_compact(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """A compact JWS's header, claims, signing input and signature, each read once.

    Nothing here is trusted yet: the signature is checked by the caller.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken
    header_part, claims_part, signature_part = parts
    try:
        signature = b64url_decode(signature_part)
        signing_input = f"{header_part}.{claims_part}".encode("ascii")
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidToken from exc
    return _json_object(header_part), _json_object(claims_part), signing_input, signature


def _verify_es256(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> None:
    # JWS carries R || S, each 32 bytes big-endian (RFC 7518 3.4); the library wants DER.
    if len(signature) != 2 * _COORDINATE_LENGTH:
        raise InvalidToken
    r = int.from_bytes(signature[:_COORDINATE_LENGTH], "big")
    s = int.from_bytes(signature[_COORDINATE_LENGTH:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise InvalidToken from exc


def jwk_from_public_key(key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """Return the public JWK (RFC 7517/7518) of a P-256 key, for publishing in a key set.

    Raises :class:`InvalidKey` if ``key`` is not a P-256 public key and :class:`ValueError`
    if ``kid`` is empty.
    """
    if not _is_p256(key):
        raise InvalidKey
    if not kid:
        raise ValueError("kid must not be empty")
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": _CURVE_NAME,
        "x": b64url_encode(numbers.x.to_bytes(_COORDINATE_LENGTH, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_COORDINATE_LENGTH, "big")),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def _coordinate(jwk: Mapping[str, object], name: str) -> int:
    text = jwk.get(name)
    if not isinstance(text, str):
        raise InvalidKey
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise InvalidKey from exc
    if len(raw) != _COORDINATE_LENGTH:
        raise InvalidKey
    return int.from_bytes(raw, "big")


def public_key_from_jwk(jwk: Mapping[str, object]) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from a JWK.

    Accepted: ``kty`` EC, ``crv`` P-256, ``x`` and ``y`` as 32-byte unpadded base64url
    coordinates of a point on the curve; ``alg`` and ``use``, when present, ES256 and sig.
    Raises :class:`InvalidKey` for anything else, including a JWK that carries a private
    part (``d``), which a published key set must never contain.
    """
    if not isinstance(jwk, Mapping):
        raise InvalidKey
    if jwk.get("kty") != "EC" or jwk.get("crv") != _CURVE_NAME or "d" in jwk:
        raise InvalidKey
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise InvalidKey
    x = _coordinate(jwk, "x")
    y = _coordinate(jwk, "y")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:  # not a point on P-256
        raise InvalidKey from exc


def public_keys_from_jwk_set(jwks: object) -> dict[str, ec.EllipticCurvePublicKey]:
    """Load a bare JSON array of JWKs (the verification server's format) into ``{kid: key}``.

    Raises :class:`InvalidKey` if ``jwks`` is not a list, a JWK is invalid, a ``kid`` is
    missing or empty, or two JWKs share a ``kid``.
    """
    if not isinstance(jwks, list):
        raise InvalidKey
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in jwks:
        if not isinstance(jwk, Mapping):
            raise InvalidKey
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys:
            raise InvalidKey
        keys[kid] = public_key_from_jwk(jwk)
    return keys


def sign_jwt_with_signer(signer: Signer, claims: Mapping[str, Any], kid: str) -> str:
    """Sign ``claims`` as a compact ES256 JWT through a :class:`~crypto.signing.Signer`.

    The signer never hands out its private key (a KMS or HSM may hold it); it returns a DER
    ECDSA signature, which JWS wants as the fixed-width ``R || S`` of RFC 7518 §3.4. The
    result verifies with :func:`verify_jwt` like a token from :func:`sign_jwt`.
    """
    header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, dict(claims))
    )
    r, s = decode_dss_signature(signer.sign(signing_input.encode("ascii")))
    raw = r.to_bytes(_COORDINATE_LENGTH, "big") + s.to_bytes(_COORDINATE_LENGTH, "big")
    return f"{signing_input}.{b64url_encode(raw)}"
