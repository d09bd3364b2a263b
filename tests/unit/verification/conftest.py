"""Fixtures for the verification service: a context with fixed secrets, a movable clock."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from tests.keys import sealed_key_store
from verification.cache import MonotonicClock
from verification.context import VerificationContext
from verification.service import realms
from verification.service.realms import NewRealm
from verification.settings import VerificationSettings

SECRET = base64.b64encode(bytes(range(32))).decode()
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A clock tests move by hand; never the wall clock."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_context(
    settings: VerificationSettings | None = None,
    *,
    cache_clock: MonotonicClock = time.monotonic,
) -> VerificationContext:
    """A context over the fixed test secret and a key store sealed under the test KEK."""
    return VerificationContext.create(
        settings or VerificationSettings(),
        secrets=[base64.b64decode(SECRET)],
        key_store=sealed_key_store("verification"),
        cache_clock=cache_clock,
    )


@pytest.fixture
def verification_settings() -> VerificationSettings:
    return VerificationSettings()


@pytest.fixture
def context(verification_settings: VerificationSettings) -> VerificationContext:
    return make_context(verification_settings)


@pytest.fixture
def realm(db_session: Session, context: VerificationContext, clock: Clock) -> NewRealm:
    return realms.create_realm(db_session, context, name="lab", now=clock(), actor="test")
