"""Health authorities, their keys, authorized apps, and the per-process trust cache."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from crypto.signing import public_key_pem
from exposure.db import SessionFactory, make_session_factory, unit_of_work
from keyserver.models import AuthorizedApp, AuthorizedAppHealthAuthority, HealthAuthority
from keyserver.service import trust
from keyserver.service.trust import TrustCache

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
PEM = public_key_pem(KEY.public_key()).decode()


def _authority(
    session: Session,
    issuer: str = "gov.example",
    *,
    audience: str = "exposure-notifications-server",
    name: str = "Example Health",
    jwks_url: str | None = None,
    now: datetime = NOW,
) -> HealthAuthority:
    return trust.add_health_authority(
        session, issuer=issuer, audience=audience, name=name, jwks_url=jwks_url, now=now
    )


def _app(
    session: Session,
    app_id: str = "gov.example.app",
    *,
    health_authority_issuers: Sequence[str] = (),
    regions: Sequence[str] = ("VN",),
    bypass_verification: bool = False,
) -> AuthorizedApp:
    return trust.add_authorized_app(
        session,
        app_id=app_id,
        health_authority_issuers=health_authority_issuers,
        regions=regions,
        bypass_verification=bypass_verification,
        now=NOW,
    )


# --- health authorities ---------------------------------------------------------------------


def test_add_health_authority_stores_what_certificates_are_checked_against(
    db_session: Session,
) -> None:
    authority = _authority(db_session, jwks_url="https://vs.example/jwks/1")

    found = trust.find_health_authority(db_session, "gov.example")
    assert found is authority
    assert (found.audience, found.name, found.jwks_url) == (
        "exposure-notifications-server",
        "Example Health",
        "https://vs.example/jwks/1",
    )
    assert found.created_at == NOW


def test_duplicate_issuer_is_refused(db_session: Session) -> None:
    _authority(db_session)

    with pytest.raises(trust.DuplicateIssuer, match="already exists") as caught:
        _authority(db_session, name="Again")
    assert caught.value.code == "duplicate_issuer"


def test_issuers_differing_in_case_are_different_issuers(db_session: Session) -> None:
    # iss is compared exactly, as the reference does.
    _authority(db_session, "gov.example")
    _authority(db_session, "GOV.EXAMPLE")

    assert trust.find_health_authority(db_session, "Gov.Example") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": ""},
        {"issuer": " gov.example"},
        {"audience": "aud "},
        {"issuer": "x" * 256},
        {"name": "   "},
        {"jwks_url": "ftp://vs.example/jwks"},
        {"jwks_url": "vs.example/jwks"},
        {"jwks_url": "https://"},
        # Neither engine could compare these alike (PostgreSQL refuses NUL in text).
        {"issuer": "gov.example\x00"},
        {"audience": "\x00"},
        {"issuer": "\ud800"},
    ],
)
def test_invalid_health_authority_values_are_refused(
    db_session: Session, changes: dict[str, str]
) -> None:
    values: dict[str, Any] = {
        "issuer": "gov.example",
        "audience": "exposure-notifications-server",
        "name": "Example",
        "jwks_url": None,
        **changes,
    }
    with pytest.raises(trust.InvalidTrustValue):
        trust.add_health_authority(db_session, now=NOW, **values)


def test_naive_time_is_a_programming_error(db_session: Session) -> None:
    with pytest.raises(ValueError, match="aware"):
        _authority(db_session, now=datetime(2026, 1, 1))  # noqa: DTZ001 - the point


# --- keys -------------------------------------------------------------------------------------


def test_key_pem_is_stored_normalized(db_session: Session) -> None:
    authority = _authority(db_session)
    messy = "\r\n".join(PEM.splitlines()) + "\r\n\r\n"

    key = trust.add_health_authority_key(
        db_session, authority, version="v1", public_key_pem=f"  {messy}", valid_from=NOW
    )

    assert key.public_key_pem == PEM
    assert (key.version, key.valid_from, key.valid_until) == ("v1", NOW, None)


def _pem_of(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    raise TypeError(key)


@pytest.mark.parametrize(
    "pem",
    [
        public_key_pem(ec.generate_private_key(ec.SECP384R1()).public_key()).decode(),
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        _pem_of(KEY),
        "not a key",
        "",
    ],
    ids=["p384", "rsa", "private", "garbage", "empty"],
)
def test_only_p256_public_keys_are_accepted(db_session: Session, pem: str) -> None:
    authority = _authority(db_session)

    with pytest.raises(trust.InvalidPublicKey):
        trust.add_health_authority_key(
            db_session, authority, version="v1", public_key_pem=pem, valid_from=NOW
        )


def test_key_version_is_unique_per_authority_even_after_revocation(db_session: Session) -> None:
    first = _authority(db_session, "gov.a")
    second = _authority(db_session, "gov.b")
    key = trust.add_health_authority_key(
        db_session, first, version="v1", public_key_pem=PEM, valid_from=NOW
    )
    trust.revoke_health_authority_key(db_session, key, NOW)

    with pytest.raises(trust.DuplicateKeyVersion):
        trust.add_health_authority_key(
            db_session, first, version="v1", public_key_pem=PEM, valid_from=NOW
        )
    # Another authority may use the same kid.
    trust.add_health_authority_key(
        db_session, second, version="v1", public_key_pem=PEM, valid_from=NOW
    )


def test_key_must_end_after_it_starts(db_session: Session) -> None:
    authority = _authority(db_session)

    with pytest.raises(trust.InvalidTrustValue):
        trust.add_health_authority_key(
            db_session, authority, version="v1", public_key_pem=PEM, valid_from=NOW, valid_until=NOW
        )


def test_revocation_sets_the_end_and_never_extends_it(db_session: Session) -> None:
    authority = _authority(db_session)
    key = trust.add_health_authority_key(
        db_session,
        authority,
        version="v1",
        public_key_pem=PEM,
        valid_from=NOW - timedelta(days=2),
        valid_until=NOW + timedelta(days=30),
    )

    trust.revoke_health_authority_key(db_session, key, NOW)
    assert key.valid_until == NOW
    trust.revoke_health_authority_key(db_session, key, NOW + timedelta(hours=1))
    assert key.valid_until == NOW


@settings(max_examples=25, deadline=None)
@given(
    secret=st.integers(min_value=1, max_value=2**255),
    newline=st.sampled_from(["\n", "\r\n"]),
    padding=st.text(alphabet=" \t\n", max_size=3),
)
def test_normalized_pem_is_a_fixed_point_and_keeps_the_key(
    secret: int, newline: str, padding: str
) -> None:
    public = ec.derive_private_key(secret, ec.SECP256R1()).public_key()
    canonical = public_key_pem(public).decode()
    variant = padding + newline.join(canonical.splitlines()) + padding

    normalized = trust.normalize_public_key_pem(variant)

    assert normalized == canonical
    assert trust.normalize_public_key_pem(normalized) == normalized


# --- authorized apps --------------------------------------------------------------------------


def test_app_is_stored_lower_case_with_sorted_unique_upper_case_regions(
    db_session: Session,
) -> None:
    first = _authority(db_session, "gov.a")
    second = _authority(db_session, "gov.b")

    app = _app(
        db_session,
        "Gov.Example.App",
        health_authority_issuers=["gov.b", "gov.a", "gov.b"],
        regions=["vn", "LA", " Vn ", "us-wa"],
        bypass_verification=True,
    )

    assert app.app_id == "gov.example.app"
    assert app.regions == "LA,US-WA,VN"
    assert app.bypass_verification is True
    links = db_session.scalars(
        select(AuthorizedAppHealthAuthority.health_authority_id).where(
            AuthorizedAppHealthAuthority.app_id == app.id
        )
    )
    assert set(links) == {first.id, second.id}


def test_app_with_an_unknown_issuer_is_refused(db_session: Session) -> None:
    _authority(db_session, "gov.a")

    with pytest.raises(trust.UnknownIssuer, match=r"gov\.unknown"):
        _app(db_session, health_authority_issuers=["gov.a", "gov.unknown"])


def test_app_ids_differing_only_in_case_are_duplicates(db_session: Session) -> None:
    _app(db_session, "gov.example.app")

    with pytest.raises(trust.DuplicateApp):
        _app(db_session, "GOV.Example.APP")


@pytest.mark.parametrize("app_id", ["", "with space", "tab\t", "ümlaut", "x" * 256])
def test_invalid_app_ids_are_refused(db_session: Session, app_id: str) -> None:
    with pytest.raises(trust.InvalidTrustValue):
        _app(db_session, app_id)


@pytest.mark.parametrize("region", ["", "V,N", "V%", "V_N", "TOOLONGREGIONCODE12345"])
def test_invalid_regions_are_refused(db_session: Session, region: str) -> None:
    with pytest.raises(trust.InvalidTrustValue):
        _app(db_session, regions=[region])


def test_app_without_regions_is_allowed(db_session: Session) -> None:
    # Publish falls back to the server's default region (or refuses, as the reference does).
    assert _app(db_session, regions=[]).regions == ""


def test_load_app_is_case_insensitive_and_detached(db_session: Session) -> None:
    authority = _authority(db_session)
    stored = _app(db_session, health_authority_issuers=["gov.example"], regions=["VN", "LA"])

    config = trust.load_app(db_session, "GOV.EXAMPLE.APP")

    assert config == trust.AppConfig(
        id=stored.id,
        app_id="gov.example.app",
        regions=("LA", "VN"),
        bypass_verification=False,
        health_authority_ids=frozenset({authority.id}),
    )
    assert trust.load_app(db_session, "gov.example") is None


def test_load_authority_keeps_current_and_future_keys_only(db_session: Session) -> None:
    authority = _authority(db_session)
    for version, valid_from, valid_until in [
        ("current", NOW - timedelta(days=1), None),
        ("ending", NOW - timedelta(days=1), NOW + timedelta(minutes=1)),
        ("future", NOW + timedelta(minutes=1), None),
        ("revoked", NOW - timedelta(days=2), NOW),
    ]:
        trust.add_health_authority_key(
            db_session,
            authority,
            version=version,
            public_key_pem=PEM,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    config = trust.load_authority(db_session, "gov.example", NOW)

    assert config is not None
    assert (config.id, config.issuer, config.audience) == (
        authority.id,
        "gov.example",
        "exposure-notifications-server",
    )
    assert set(config.keys) == {"current", "ending", "future"}
    assert config.active_key("current", NOW) is not None
    assert config.active_key("future", NOW) is None
    assert config.active_key("future", NOW + timedelta(minutes=2)) is not None
    assert config.active_key("ending", NOW + timedelta(minutes=1)) is None
    assert config.active_key("revoked", NOW) is None
    assert trust.load_authority(db_session, "gov.other", NOW) is None


def test_valid_from_is_exclusive(db_session: Session) -> None:
    authority = _authority(db_session)
    trust.add_health_authority_key(
        db_session, authority, version="v1", public_key_pem=PEM, valid_from=NOW
    )

    config = trust.load_authority(db_session, "gov.example", NOW)

    assert config is not None
    assert config.active_key("v1", NOW) is None
    assert config.active_key("v1", NOW + timedelta(microseconds=1)) is not None


# --- cache ------------------------------------------------------------------------------------

TTL = timedelta(minutes=5)


def test_cache_keeps_a_miss_for_the_ttl_then_reloads(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    cache = TrustCache(sessions, TTL)
    assert cache.app("gov.example.app", NOW) is None
    assert cache.authority("gov.example", NOW) is None
    with unit_of_work(sessions) as session:
        _authority(session)
        _app(session)

    assert cache.app("gov.example.app", NOW + TTL - timedelta(microseconds=1)) is None
    assert cache.authority("gov.example", NOW + TTL - timedelta(microseconds=1)) is None
    assert cache.app("gov.example.app", NOW + TTL) is not None
    assert cache.authority("gov.example", NOW + TTL) is not None


def test_cache_keeps_a_hit_for_the_ttl_then_reloads(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        authority = _authority(session)
        _app(session, health_authority_issuers=["gov.example"])
    cache = TrustCache(sessions, TTL)
    first = cache.app("gov.example.app", NOW)
    assert first is not None
    assert first.health_authority_ids == {authority.id}
    loaded = cache.authority("gov.example", NOW)
    assert loaded is not None
    assert loaded.keys == {}
    with unit_of_work(sessions) as session:
        session.execute(delete(AuthorizedAppHealthAuthority))
        stored = trust.find_health_authority(session, "gov.example")
        assert stored is not None
        trust.add_health_authority_key(
            session, stored, version="v1", public_key_pem=PEM, valid_from=NOW
        )

    later = NOW + timedelta(minutes=4)
    assert cache.app("GOV.EXAMPLE.APP", later) is first  # any case shares the entry
    assert cache.authority("gov.example", later) is loaded
    reloaded_app = cache.app("gov.example.app", NOW + TTL)
    reloaded_authority = cache.authority("gov.example", NOW + TTL)
    assert reloaded_app is not None
    assert reloaded_app.health_authority_ids == frozenset()
    assert reloaded_authority is not None
    assert set(reloaded_authority.keys) == {"v1"}


def _no_database() -> Session:
    raise AssertionError("a name no registration could store must not be looked up")


@pytest.mark.parametrize(
    "name", ["\x00", "gov.example.app\x00", "\ud800", "x" * 256, " gov.example"]
)
def test_names_no_registration_could_store_are_unknown_without_a_query(name: str) -> None:
    cache = TrustCache(cast(SessionFactory, _no_database), TTL)

    assert cache.app(name, NOW) is None
    assert cache.authority(name, NOW) is None
    assert len(cache._apps) == len(cache._authorities) == 0  # nor do they crowd the cache


def test_cache_reloads_when_the_clock_goes_backwards(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    cache = TrustCache(sessions, TTL)
    assert cache.app("gov.example.app", NOW) is None
    with unit_of_work(sessions) as session:
        _app(session)

    assert cache.app("gov.example.app", NOW - timedelta(seconds=1)) is not None


def test_zero_ttl_disables_the_cache(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    cache = TrustCache(sessions, timedelta(0))
    assert cache.app("gov.example.app", NOW) is None
    with unit_of_work(sessions) as session:
        _app(session)

    assert cache.app("gov.example.app", NOW) is not None


def test_cache_is_bounded_against_floods_of_unknown_names(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        _app(session)
    cache = TrustCache(sessions, TTL, max_entries=10)
    cache.app("gov.example.app", NOW)

    for number in range(50):
        assert cache.app(f"random-{number}", NOW) is None

    assert len(cache._apps) == 10  # the bound is the point
    # The oldest entry was evicted: it is read again, and now finds the app gone.
    with unit_of_work(sessions) as session:
        session.execute(delete(AuthorizedApp))
    assert cache.app("gov.example.app", NOW) is None


def test_cache_evicts_stale_entries_before_fresh_ones(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    cache = TrustCache(sessions, TTL, max_entries=3)
    cache.app("old", NOW)
    cache.app("fresh-1", NOW + TTL)
    cache.app("fresh-2", NOW + TTL)

    cache.app("fresh-3", NOW + TTL)

    entries = cache._apps._entries  # which entry went is the point
    assert set(entries) == {"fresh-1", "fresh-2", "fresh-3"}


def test_cache_refuses_a_negative_ttl(engine: Engine) -> None:
    with pytest.raises(ValueError, match="ttl"):
        TrustCache(make_session_factory(engine), timedelta(seconds=-1))


def test_cache_serves_concurrent_threads(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        authority = _authority(session)
        trust.add_health_authority_key(
            session, authority, version="v1", public_key_pem=PEM, valid_from=NOW
        )
        _app(session, health_authority_issuers=["gov.example"])
    cache = TrustCache(sessions, TTL)
    start = threading.Barrier(8)

    def lookup(number: int) -> tuple[int | None, int]:
        start.wait()
        now = NOW + timedelta(seconds=number)
        app = cache.app("gov.example.app", now)
        found = cache.authority("gov.example", now)
        return (app.id if app else None), len(found.keys) if found else -1

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lookup, range(64)))

    assert len(set(results)) == 1
    assert results[0][0] is not None
    assert results[0][1] == 1
