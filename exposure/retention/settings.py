"""Retention deadlines (``EXPOSURE_RETENTION_*``), each held between a floor and a ceiling.

Defaults follow the deployed systems (google-keyserver.md §5, verification-and-peers.md
§1.10, CWA) and the 14 days a phone keeps keys: data is not kept a day longer than it can
serve finding exposures. Floors stop a setting from deleting what is still needed (a key
server that forgets keys before phones have fetched them; a code deleted before it
expired); ceilings stop "just keep it longer". Values are ISO 8601 durations (``P14D``) or
seconds.

The deadline of export files is the key server's ``EXPOSURE_KEYSERVER_EXPORT_RETENTION``
(it also bounds what index.txt lists) and that of revision keys is
``EXPOSURE_KEYSERVER_REVISION_KEY_DESTROY_AFTER``; both are declared in the registry with
their bounds like the ones here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exposure.retention.policy import Deadline

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)

#: Published keys of every origin (google-keyserver.md §5: 14 days, refused below 10).
KEYS = Deadline(default=14 * DAY, floor=10 * DAY, ceiling=21 * DAY)
#: Verification codes: hashes blanked 48 h after expiry, rows deleted at 14 days.
CODE_VALUES = Deadline(default=48 * HOUR, floor=HOUR, ceiling=7 * DAY)
CODES = Deadline(default=14 * DAY, floor=DAY, ceiling=30 * DAY)
#: Verification tokens: 24 h after they expire.
TOKENS = Deadline(default=24 * HOUR, floor=HOUR, ceiling=7 * DAY)
#: Administrative audit entries (reference: 30 days, at least 7).
AUDIT_ENTRIES = Deadline(default=30 * DAY, floor=7 * DAY, ceiling=400 * DAY)
#: Retired certificate and token signing keys (reference: 36 h).
RETIRED_SIGNING_KEYS = Deadline(default=36 * HOUR, floor=24 * HOUR, ceiling=30 * DAY)
#: Disabled API keys (reference: 14 days).
DISABLED_API_KEYS = Deadline(default=14 * DAY, floor=DAY, ceiling=90 * DAY)
#: Console sessions, after they expire (signing out or disabling deletes them at once).
STAFF_SESSIONS = Deadline(default=DAY, floor=HOUR, ceiling=7 * DAY)
#: Disabled console staff accounts (username, role, password hash).
DISABLED_STAFF = Deadline(default=30 * DAY, floor=DAY, ceiling=400 * DAY)
#: Revoked or expired health-authority public keys (reference: 30 days).
REVOKED_AUTHORITY_KEYS = Deadline(default=30 * DAY, floor=DAY, ceiling=90 * DAY)
#: Rate-limit windows, counted from their start; the longest window is one day.
#: At least the key server's longest key age (21 days): a record purged sooner would let a
#: peer that still lists the file have its keys imported again.
IMPORT_RECORDS = Deadline(default=21 * DAY, floor=21 * DAY, ceiling=90 * DAY)
RATE_LIMIT_WINDOWS = Deadline(default=2 * DAY, floor=DAY, ceiling=7 * DAY)
#: Expired job and index leases.
LEASES = Deadline(default=DAY, floor=HOUR, ceiling=30 * DAY)
#: The retention log itself: long enough for a yearly audit.
RETENTION_LOG = Deadline(default=365 * DAY, floor=90 * DAY, ceiling=10 * 365 * DAY)


def _bounded(deadline: Deadline, description: str) -> Any:
    return Field(
        default=deadline.default, ge=deadline.floor, le=deadline.ceiling, description=description
    )


class RetentionSettings(BaseSettings):
    """Deadlines per kind of data and the purge schedule."""

    model_config = SettingsConfigDict(env_prefix="EXPOSURE_RETENTION_", extra="ignore", frozen=True)

    purge_interval: timedelta = Field(
        default=HOUR,
        ge=timedelta(minutes=5),
        le=6 * HOUR,
        description="How often the purge jobs run; a gap of twice this is a compliance finding.",
    )
    batch_size: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="Rows deleted per transaction, so a large purge never blocks publishing.",
    )
    exposure_keys: timedelta = _bounded(KEYS, "Published keys, from their created_at.")
    revised_keys: timedelta = _bounded(KEYS, "Revised keys, from their created_at.")
    padding_keys: timedelta = _bounded(KEYS, "Export padding keys, from their created_at.")
    imported_keys: timedelta = _bounded(KEYS, "Keys imported from peers, from their created_at.")
    import_records: timedelta = _bounded(
        IMPORT_RECORDS, "Records of peer files imported or refused, from when handled."
    )
    revoked_authority_keys: timedelta = _bounded(
        REVOKED_AUTHORITY_KEYS, "Health-authority keys, from the end of their validity."
    )
    code_values: timedelta = _bounded(CODE_VALUES, "Code hashes, from the code's expiry.")
    codes: timedelta = _bounded(CODES, "Code records, from the code's expiry.")
    tokens: timedelta = _bounded(TOKENS, "Verification tokens, from their expiry.")
    audit_entries: timedelta = _bounded(AUDIT_ENTRIES, "Audit entries, from when written.")
    retired_signing_keys: timedelta = _bounded(
        RETIRED_SIGNING_KEYS, "Retired signing keys, from their retirement."
    )
    disabled_api_keys: timedelta = _bounded(
        DISABLED_API_KEYS, "Disabled API keys, from when they were disabled."
    )
    staff_sessions: timedelta = _bounded(
        STAFF_SESSIONS, "Console sign-in sessions, from their expiry."
    )
    disabled_staff: timedelta = _bounded(
        DISABLED_STAFF, "Disabled console staff accounts, from when they were disabled."
    )
    rate_limit_windows: timedelta = _bounded(
        RATE_LIMIT_WINDOWS, "Rate-limit counters, from the start of their window."
    )
    leases: timedelta = _bounded(LEASES, "Job leases, from their expiry.")
    log: timedelta = _bounded(RETENTION_LOG, "Retention-log entries, from when written.")

    @model_validator(mode="after")
    def _codes_outlive_their_values(self) -> RetentionSettings:
        if self.codes < self.code_values:
            raise ValueError("codes must be kept at least as long as their blanked values")
        return self
