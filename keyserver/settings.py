"""Settings of the key server (``EXPOSURE_KEYSERVER_*``), with the reference's defaults.

Defaults are those of Google's key server (``internal/publish/config.go``); floors and
ceilings refuse values that would weaken privacy (keys kept or released too early) or break
phones (a symptom-onset window the apps cannot use).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from exposure.keys.kek import decode_keks

#: With ``throwaway_demo_timing``: created_at is kept to the second ...
DEMO_CREATED_AT_WINDOW = timedelta(seconds=1)
#: ... and a window is batched this long after it ends (publishes answer in milliseconds;
#: a demo uploads nothing once it starts its export).
DEMO_CLOSE_DELAY = timedelta(seconds=2)


class KeyserverSettings(BaseSettings):
    """How the key server validates, stores and revises uploaded keys."""

    model_config = SettingsConfigDict(env_prefix="EXPOSURE_KEYSERVER_", extra="ignore", frozen=True)

    max_keys_on_publish: Annotated[int, Field(ge=1, le=100)] = Field(
        default=30, description="More keys in one publish refuse the whole request."
    )
    max_same_start_interval_keys: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3, description="Keys that may share one rollingStartNumber."
    )
    max_interval_age: Annotated[timedelta, Field(ge=timedelta(days=1), le=timedelta(days=21))] = (
        Field(default=timedelta(days=15), description="Keys that ended earlier are dropped.")
    )
    truncate_window: Annotated[timedelta, Field(ge=timedelta(minutes=10), le=timedelta(days=1))] = (
        Field(
            default=timedelta(hours=1),
            description="created_at is truncated to this; it also rounds the embargo.",
        )
    )
    max_symptom_onset_days: Annotated[int, Field(ge=1, le=28)] = Field(
        default=14, description="Keys further than this from symptom onset are dropped."
    )
    max_valid_symptom_onset_report_days: Annotated[int, Field(ge=1, le=60)] = Field(
        default=28, description="An onset older than this is ignored."
    )
    default_symptom_onset_days_ago: Annotated[int, Field(ge=0, le=28)] = Field(
        default=4, description="The onset assumed when no valid one is given."
    )
    allow_partial_revisions: bool = Field(
        default=False,
        description="Drop already-stored keys missing from the revision token instead of refusing.",
    )
    release_same_day_keys: bool = Field(
        default=False,
        description="Testing only: publish still-valid keys without the embargo.",
    )
    default_region: str = Field(
        default="", description="Region of apps that configure none (upper case)."
    )
    response_padding_min_bytes: Annotated[int, Field(ge=0, le=16_384)] = 1024
    response_padding_range_bytes: Annotated[int, Field(ge=1, le=16_384)] = 1024
    revision_token_min_length: Annotated[int, Field(ge=1, le=100)] = Field(
        default=28, description="Revision tokens are padded to at least this many entries."
    )
    revision_key_period: Annotated[timedelta, Field(ge=timedelta(hours=1))] = Field(
        default=timedelta(days=7), description="A new revision key is made this often."
    )
    revision_key_destroy_after: Annotated[
        timedelta, Field(ge=timedelta(days=15), le=timedelta(days=60))
    ] = Field(
        default=timedelta(days=15),
        description=(
            "An old revision key is destroyed this long after a newer one took over; never "
            "sooner than keys can still be revised (15 days)."
        ),
    )
    certificate_max_lifetime: Annotated[
        timedelta, Field(ge=timedelta(minutes=20), le=timedelta(days=1))
    ] = Field(
        default=timedelta(hours=1),
        description=(
            "Verification certificates valid for longer (exp - iat, or exp - now without iat) "
            "are refused: a stolen long-lived certificate would publish keys for anyone. The "
            "verification service issues 15 minutes; the floor leaves room for that and the "
            "seconds its clock stamps early, the ceiling keeps a typo from disabling the check."
        ),
    )
    cache_duration: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(minutes=15))] = Field(
        default=timedelta(minutes=5),
        description="How long apps, health authorities and their keys are cached per process.",
    )
    jwks_refresh_interval: Annotated[timedelta, Field(ge=timedelta(seconds=30))] = timedelta(
        minutes=2
    )
    jwks_request_timeout: Annotated[
        timedelta, Field(ge=timedelta(seconds=1), le=timedelta(minutes=2))
    ] = timedelta(seconds=30)
    maintenance_mode: bool = False
    throwaway_demo_timing: bool = Field(
        default=False,
        description=(
            "Throwaway demos only (`exposure demo`, the README tour): keep created_at to the "
            "second and close an export window 2 s after it ends, so a demo's keys are "
            "exported within seconds. It removes the hour of timing privacy that truncation "
            "gives and must never be set where real people upload. The embargo of keys still "
            "in use, the padding and every other rule stay as they are."
        ),
    )
    kek: SecretStr | None = Field(
        default=None,
        description=(
            "Key-encryption keys (base64, >= 32 bytes each, comma-separated, newest first) "
            "that seal the key server's private keys and secrets (export signing keys, "
            "revision keys, the retention-log key) in its database. Required on PostgreSQL, "
            "the same in every replica; embedded (SQLite): made once under the data directory."
        ),
    )

    # ---- exports ---------------------------------------------------------------------
    export_min_window_age: Annotated[
        timedelta, Field(ge=timedelta(hours=1), le=timedelta(days=1))
    ] = Field(
        default=timedelta(hours=2),
        description="A window is batched only once its end is this old (late keys still land).",
    )
    export_file_max_records: Annotated[int, Field(ge=1_000, le=750_000)] = Field(
        default=500_000, description="Keys per file before a batch is split (configs may lower it)."
    )
    export_min_records: Annotated[int, Field(ge=100, le=100_000)] = Field(
        default=1_000, description="Smaller batches are padded with random keys up to this."
    )
    export_padding_range: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=100, description="Padding adds up to this many keys more, at random."
    )
    export_worker_lease: Annotated[
        timedelta, Field(ge=timedelta(minutes=1), le=timedelta(hours=1))
    ] = Field(
        default=timedelta(minutes=5),
        description="How long a worker holds a batch; a crashed worker's batch is free after it.",
    )
    export_retention: Annotated[timedelta, Field(ge=timedelta(days=10), le=timedelta(days=21))] = (
        Field(default=timedelta(days=14), description="index.txt lists batches this recent.")
    )
    export_store: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="Where export files are written."
    )
    export_directory: Path | None = Field(
        default=None, description="Filesystem store root (default: <data_dir>/exports)."
    )
    export_s3_bucket: str = ""
    export_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (unset: AWS)."
    )
    export_s3_region: str | None = None
    export_batch_interval: Annotated[timedelta, Field(ge=timedelta(seconds=10))] = Field(
        default=timedelta(minutes=5), description="How often serve runs the batcher."
    )
    export_worker_interval: Annotated[timedelta, Field(ge=timedelta(seconds=10))] = Field(
        default=timedelta(minutes=1), description="How often serve runs the export worker."
    )
    import_interval: Annotated[timedelta, Field(ge=timedelta(seconds=10))] = Field(
        default=timedelta(minutes=5), description="How often serve runs the importer."
    )
    import_request_timeout: Annotated[
        timedelta, Field(ge=timedelta(seconds=1), le=timedelta(minutes=5))
    ] = Field(
        default=timedelta(seconds=60),
        description="Longest one fetch of a peer's index or file may take, bytes included.",
    )
    import_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        default=3, description="Retries of a fetch that failed for a transient reason."
    )
    import_retry_backoff: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(minutes=1))] = (
        Field(default=timedelta(seconds=1), description="First retry delay; doubles each time.")
    )
    import_max_file_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = Field(
        default=64 * 1024 * 1024,
        description="Larger files are refused (the reference caps a file at 750,000 keys).",
    )
    import_max_index_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        default=4 * 1024 * 1024, description="A larger index.txt is not read."
    )
    import_files_per_run: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=200, description="Files one import run handles per source at most."
    )
    import_lease: Annotated[timedelta, Field(ge=timedelta(minutes=1), le=timedelta(hours=1))] = (
        Field(
            default=timedelta(minutes=15),
            description="How long an import run holds its lease; no new file starts after half.",
        )
    )

    @property
    def created_at_window(self) -> timedelta:
        """What ``created_at`` (and a revision's time) is truncated to."""
        return DEMO_CREATED_AT_WINDOW if self.throwaway_demo_timing else self.truncate_window

    @property
    def window_close_delay(self) -> timedelta:
        """How old a window's end must be before it is batched."""
        return DEMO_CLOSE_DELAY if self.throwaway_demo_timing else self.export_min_window_age

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("kek")
    @classmethod
    def _check_kek(cls, value: SecretStr | None) -> SecretStr | None:
        # decode_keks refuses malformed, short and empty values with its own message.
        if value is not None:
            decode_keks(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _check_onset_window(self) -> KeyserverSettings:
        if self.default_symptom_onset_days_ago > self.max_valid_symptom_onset_report_days:
            raise ValueError("the default onset must lie inside the valid onset window")
        if self.export_store == "s3" and not self.export_s3_bucket:
            raise ValueError("export_store s3 needs export_s3_bucket")
        return self
