"""The key server's publish API v1, wire-compatible with Google's key server.

Field names, error codes and HTTP statuses are those of ``pkg/api/v1`` of the reference, so
a GAEN app built for it switches to this server by changing a URL. JSON field names are
matched case-insensitively, as Go does (``hmackey`` and ``hmacKey`` are the same field);
every field may be left out and takes its zero value, as in Go. Where this server decides a
quirk of the reference differently, docs/api.md says so.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: Bodies longer than this are refused with 413 before they are parsed (64,000, not 64 KiB).
MAX_PUBLISH_BODY_BYTES = 64_000
#: The path the reference serves; ``/v1/publish/`` is a different path and answers 404.
PUBLISH_PATH = "/v1/publish"
#: Every publish response carries this header, as the reference's do.
API_VERSION_HEADER = ("x-api-version", "v1")
#: The exact body of a refusal in maintenance mode (status 429).
MAINTENANCE_BODY = {"error": "please try again later"}

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class PublishErrorCode(StrEnum):
    """Stable ``code`` values of publish responses; clients branch on these."""

    BAD_REQUEST = "bad_request"
    INTERNAL = "internal_error"
    UNKNOWN_HEALTH_AUTHORITY_ID = "unknown_health_authority_id"
    UNABLE_TO_LOAD_HEALTH_AUTHORITY = "unable_to_load_health_authority"
    HEALTH_AUTHORITY_MISSING_REGION_CONFIG = "health_authority_missing_region_config"
    VERIFICATION_CERTIFICATE_INVALID = "health_authority_verification_certificate_invalid"
    MISSING_REVISION_TOKEN = "missing_revision_token"  # noqa: S105 - an error code
    INVALID_REVISION_TOKEN = "invalid_revision_token"  # noqa: S105 - an error code
    KEY_ALREADY_REVISED = "key_already_revised"
    INVALID_REPORT_TYPE_TRANSITION = "invalid_report_type_transition"
    PARTIAL_FAILURE = "partial_failure"


class ExposureKey(BaseModel):
    """One Temporary Exposure Key as a phone uploads it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Base64 of 16 bytes; decoded leniently (standard, URL-safe, padded or not).
    key: str = Field(default="", examples=["z2Cx9hdz2SlxZ8GEgqTYpA=="])
    rollingStartNumber: Int32 = Field(default=0, examples=[2940000])  # noqa: N815 - wire name
    rollingPeriod: Int32 = Field(default=0, examples=[144])  # noqa: N815
    #: 0..8; 0 or absent is backfilled from the report type.
    transmissionRisk: Int64 = 0  # noqa: N815


class PublishRequest(BaseModel):
    """``POST /v1/publish``: the keys of one person verified positive, and the proof."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temporaryExposureKeys: list[ExposureKey] = Field(default_factory=list)  # noqa: N815
    #: The authorized app's id; looked up case-insensitively.
    healthAuthorityID: str = Field(default="", examples=["exposure.default"])  # noqa: N815
    #: The verification certificate (an ES256 JWT).
    verificationPayload: str = ""  # noqa: N815
    #: Base64 of the secret the phone used for the certificate's ``tekmac``.
    hmacKey: str = ""  # noqa: N815
    #: Ten-minute interval number of symptom onset; preferred over the certificate's.
    symptomOnsetInterval: Int32 = 0  # noqa: N815
    traveler: bool = False
    #: The token a previous publish from this phone returned; needed to revise keys.
    revisionToken: str = ""  # noqa: N815
    #: Ignored: random bytes that hide the size of the real content.
    padding: str = ""


class PublishResponse(BaseModel):
    """The answer to a publish; empty fields are left out of the JSON, as Go's omitempty."""

    model_config = ConfigDict(extra="forbid")

    revisionToken: str = ""  # noqa: N815
    insertedExposures: int = 0  # noqa: N815
    error: str = ""
    code: str = ""
    padding: str = ""
    warnings: list[str] = Field(default_factory=list)

    def wire(self) -> dict[str, object]:
        """The JSON object, in the reference's field order, without empty fields."""
        fields: dict[str, object] = {
            "revisionToken": self.revisionToken,
            "insertedExposures": self.insertedExposures,
            "error": self.error,
            "code": self.code,
            "padding": self.padding,
            "warnings": self.warnings,
        }
        return {name: value for name, value in fields.items() if value}
