"""Fixtures for the verification service: a context with fixed secrets, a movable clock."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session

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


@pytest.fixture
def verification_settings() -> VerificationSettings:
    return VerificationSettings(secret_keys=SecretStr(SECRET))


@pytest.fixture
def context(tmp_path: Path, verification_settings: VerificationSettings) -> VerificationContext:
    return VerificationContext.from_settings(verification_settings, tmp_path)


@pytest.fixture
def realm(db_session: Session, context: VerificationContext, clock: Clock) -> NewRealm:
    return realms.create_realm(db_session, context, name="lab", now=clock(), actor="test")
