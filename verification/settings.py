"""Settings of the verification service (``EXPOSURE_VERIFICATION_*``), with safety floors."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exposure.keys.kek import decode_keks

#: A key server polls the JWKS every few minutes; a new signing key must be published at
#: least this long before it signs, or certificates would fail to verify in the gap.
MINIMUM_ACTIVATION_DELAY = timedelta(minutes=5)


class VerificationSettings(BaseSettings):
    """How the verification service issues, verifies and limits."""

    model_config = SettingsConfigDict(
        env_prefix="EXPOSURE_VERIFICATION_", extra="ignore", frozen=True
    )

    kek: SecretStr | None = Field(
        default=None,
        description=(
            "Key-encryption keys (base64, >= 32 bytes each, comma-separated, newest first) "
            "that seal this service's private keys and secrets in its database. Required on "
            "PostgreSQL, the same in every process; embedded (SQLite): made once under the "
            "data directory."
        ),
    )
    token_issuer: str = Field(
        default="exposure-verification",
        min_length=1,
        description="iss and aud of verification tokens (they never leave this service).",
    )
    token_lifetime: Annotated[timedelta, Field(ge=timedelta(minutes=5), le=timedelta(days=1))] = (
        timedelta(hours=24)
    )
    signing_key_activation_delay: Annotated[timedelta, Field(le=timedelta(days=7))] = Field(
        default=timedelta(hours=1),
        description="How long a rotated certificate key is published before it signs.",
    )
    allowed_clock_skew: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(minutes=1))] = (
        timedelta(seconds=5)
    )
    requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=120, description="Per (realm, client) on every API endpoint."
    )
    invalid_codes_per_client_per_hour: Annotated[int, Field(ge=1, le=1_000)] = 10
    invalid_codes_per_realm_per_window: Annotated[int, Field(ge=1, le=100_000)] = 200
    invalid_code_window: Annotated[timedelta, Field(ge=timedelta(minutes=1))] = timedelta(
        minutes=15
    )
    cache_ttl: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(minutes=1))] = Field(
        default=timedelta(seconds=10),
        description=(
            "How long a process trusts what it read of API keys, realms and signing keys "
            "before reading them again: a disabled API key stops working, and a changed "
            "realm policy applies, within this time. 0 reads them on every request."
        ),
    )
    maintenance_mode: bool = False
    console_session_lifetime: Annotated[
        timedelta, Field(ge=timedelta(minutes=5), le=timedelta(hours=24))
    ] = Field(
        default=timedelta(hours=8),
        description="How long a staff member stays signed in to the console.",
    )
    console_sign_in_failures: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5,
        description="Sign-in attempts a (realm, username) may make per window before lockout.",
    )
    console_sign_in_window: Annotated[
        timedelta, Field(ge=timedelta(minutes=1), le=timedelta(days=1))
    ] = timedelta(minutes=15)

    @field_validator("signing_key_activation_delay")
    @classmethod
    def _activation_floor(cls, value: timedelta) -> timedelta:
        if value < MINIMUM_ACTIVATION_DELAY:
            raise ValueError(f"activation delay must be at least {MINIMUM_ACTIVATION_DELAY}")
        return value

    @field_validator("cache_ttl", mode="before")
    @classmethod
    def _seconds_from_environment(cls, value: object) -> object:
        # EXPOSURE_VERIFICATION_CACHE_TTL=10 means ten seconds (ISO 8601 such as PT10S works
        # too); pydantic alone refuses a bare number when it arrives as a string.
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return float(value)
        return value

    @field_validator("kek")
    @classmethod
    def _check_kek(cls, value: SecretStr | None) -> SecretStr | None:
        # decode_keks refuses malformed, short and empty values with its own message.
        if value is not None:
            decode_keks(value.get_secret_value())
        return value
