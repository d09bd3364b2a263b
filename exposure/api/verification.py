"""The verification API, wire-compatible with Google's verification server.

Paths, JSON field names, error codes and HTTP statuses follow the reference server, so GAEN
apps and lab systems built for it work unchanged: field names and test types match in any
(ASCII) case, and empty fields the reference leaves out (Go's ``omitempty``) are left out.
Where we differ it is documented in docs/api.md: a phone number is accepted and dropped
unread (no SMS leaves this service), and ``/api/issue`` also returns the long code, since
without SMS the lab is the only way it reaches a person.

Every request and response may carry ``padding``: random base64 that exists only to hide
the size of the real content from a network observer. Servers ignore the request padding
and fill the response padding with 1-2 KB.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_serializer,
)

from exposure.text import fold_case

#: Requests larger than this are refused before they are parsed.
MAX_REQUEST_BYTES = 64_000
#: ``/api/batch-issue`` takes at most this many codes per request.
MAX_BATCH_SIZE = 10
#: Dates (symptom onset, test) may lie at most this many days before today (UTC).
MAX_DATE_AGE_DAYS = 28


class TestType(StrEnum):
    """The diagnosis a code certifies; the order of the first three is the accept hierarchy."""

    __test__ = False  # not a pytest test class, despite the name

    CONFIRMED = "confirmed"
    LIKELY = "likely"
    NEGATIVE = "negative"
    USER_REPORT = "user-report"

    @classmethod
    def from_wire(cls, text: str) -> TestType | None:
        """The test type ``text`` names in any ASCII case (the reference lower-cases what
        it is sent), or None for an unknown one."""
        try:
            return cls(fold_case(text))
        except ValueError:
            return None


#: ``accept: ["likely"]`` means confirmed and likely; ``["negative"]`` means all three.
ACCEPT_HIERARCHY: tuple[TestType, ...] = (TestType.CONFIRMED, TestType.LIKELY, TestType.NEGATIVE)


class ErrorCode(StrEnum):
    """Stable ``errorCode`` values; clients branch on these, never on the message."""

    UNPARSABLE_REQUEST = "unparsable_request"
    INTERNAL = "internal_server_error"
    UNAUTHORIZED = "unauthorized"
    CODE_INVALID = "code_invalid"
    CODE_EXPIRED = "code_expired"
    CODE_NOT_FOUND = "code_not_found"
    CODE_ALREADY_CLAIMED = "code_already_claimed"
    INVALID_TEST_TYPE = "invalid_test_type"
    UNSUPPORTED_TEST_TYPE = "unsupported_test_type"
    MISSING_DATE = "missing_date"
    INVALID_DATE = "invalid_date"
    UUID_ALREADY_EXISTS = "uuid_already_exists"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - an error code, not a secret
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    HMAC_INVALID = "hmac_invalid"
    QUOTA_EXCEEDED = "quota_exceeded"
    RATE_LIMITED = "rate_limited"
    MAINTENANCE_MODE = "maintenance_mode"
    NOT_FOUND = "not_found"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    padding: StrictStr = Field(default="", description="Ignored; hides the request size.")


def _omitted_fields_are_optional(schema: dict[str, Any], model: type[Any]) -> None:
    # The documented schema (OpenAPI) says what the wire holds: a field left out when empty
    # may be absent, whatever the model requires of the handler that builds it.
    omitted: frozenset[str] = getattr(model, "omit_when_empty", frozenset())
    required = [name for name in schema.get("required", ()) if name not in omitted]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, json_schema_extra=_omitted_fields_are_optional)

    #: Fields left out of the JSON when empty ("", 0, false), as the reference's Go
    #: ``omitempty`` leaves them out: clients test for their presence, so an empty
    #: ``"error": ""`` on a success would read as a failure.
    omit_when_empty: ClassVar[frozenset[str]] = frozenset()

    padding: str = Field(default="", description="Random base64, 1-2 KB; ignore it.")

    @model_serializer(mode="wrap")
    def _leave_out_empty_fields(self, serialize: SerializerFunctionWrapHandler) -> Any:
        data = serialize(self)
        if isinstance(data, dict):
            for name in self.omit_when_empty:
                if not data.get(name):
                    data.pop(name, None)
        return data


def _forget(_phone: str) -> str:
    # Dropped as soon as it is parsed: nothing after the edge ever holds the number.
    return ""


class ErrorResponse(_Response):
    """The body of every error: a message for people, a code for programs."""

    error: str
    errorCode: ErrorCode  # noqa: N815 - the wire name
    error_code: ErrorCode  # legacy duplicate of errorCode kept by the reference server


class IssueCodeRequest(_Request):
    """``POST /api/issue``: ask for a new code (admin API key)."""

    testType: StrictStr = Field(  # noqa: N815
        default="", description="confirmed, likely, negative or user-report", examples=["confirmed"]
    )
    symptomDate: StrictStr = Field(  # noqa: N815
        default="", description="YYYY-MM-DD", examples=["2026-11-23"]
    )
    testDate: StrictStr = Field(default="", description="YYYY-MM-DD")  # noqa: N815
    tzOffset: StrictFloat | StrictInt = Field(  # noqa: N815
        default=0, description="Minutes east of UTC of the person's time zone."
    )
    uuid: StrictStr = Field(default="", description="Optional idempotency handle.")
    externalIssuerID: Annotated[StrictStr, Field(max_length=255)] = ""  # noqa: N815
    phone: Annotated[StrictStr, AfterValidator(_forget)] = Field(
        default="",
        repr=False,
        description=(
            "Accepted as the reference does, then dropped unread: this service sends no "
            "SMS, and never stores or logs a phone number."
        ),
    )
    smsTemplateLabel: StrictStr = Field(  # noqa: N815
        default="", description="Accepted and ignored: no SMS is sent."
    )
    onlyGenerateSMS: StrictBool = Field(  # noqa: N815
        default=False,
        description="Only false is accepted: no realm here may generate an SMS.",
    )


class IssueCodeResponse(_Response):
    omit_when_empty = frozenset(
        {"longCode", "longExpiresAt", "longExpiresAtTimestamp", "error", "errorCode"}
    )

    uuid: str = ""
    code: str = ""
    longCode: str = ""  # noqa: N815
    expiresAt: str = ""  # noqa: N815
    expiresAtTimestamp: int = 0  # noqa: N815
    longExpiresAt: str = ""  # noqa: N815
    longExpiresAtTimestamp: int = 0  # noqa: N815
    error: str = ""
    errorCode: str = ""  # noqa: N815


class BatchIssueCodeRequest(_Request):
    """``POST /api/batch-issue``: up to ten issue requests, each answered at its index."""

    codes: list[IssueCodeRequest]


class BatchIssueCodeResponse(_Response):
    # ``codes`` stays even when empty (the reference leaves an empty list out): an empty
    # batch answers ``"codes": []``, which a client reading either shape handles.
    omit_when_empty = frozenset({"error", "errorCode"})

    codes: list[IssueCodeResponse] = Field(default_factory=list)
    error: str = ""
    errorCode: str = ""  # noqa: N815


class CodeStatusRequest(_Request):
    """``POST /api/checkcodestatus`` and ``POST /api/expirecode``."""

    uuid: StrictStr = Field(
        description="The uuid the code was issued with.", json_schema_extra={"format": "uuid"}
    )


class CodeStatusResponse(_Response):
    omit_when_empty = frozenset({"longExpiresAtTimestamp"})

    claimed: bool = False
    expiresAtTimestamp: int = 0  # noqa: N815
    longExpiresAtTimestamp: int = 0  # noqa: N815


class VerifyCodeRequest(_Request):
    """``POST /api/verify``: trade a code for a verification token (device API key)."""

    code: StrictStr = Field(description="The short or the long code.", examples=["12345678"])
    accept: list[StrictStr] = Field(
        default_factory=list,
        description="Test types the app handles; empty: every type.",
        examples=[["confirmed", "likely"]],
    )
    nonce: StrictStr = ""


class VerifyCodeResponse(_Response):
    omit_when_empty = frozenset({"testtype", "symptomDate", "testDate", "token"})

    testtype: str
    symptomDate: str = ""  # noqa: N815
    testDate: str = ""  # noqa: N815
    token: str


class CertificateRequest(_Request):
    """``POST /api/certificate``: trade a token and the TEK HMAC for a certificate."""

    token: StrictStr
    ekeyhmac: StrictStr


class CertificateResponse(_Response):
    omit_when_empty = frozenset({"certificate"})

    certificate: str


class JsonWebKey(BaseModel):
    """One public key of a realm's certificate signers (``GET /jwks/{realm}``)."""

    kty: str = Field(description="Always EC.")
    crv: str = Field(description="Always P-256.")
    x: str = Field(description="The point's x coordinate, base64url without padding.")
    y: str = Field(description="The point's y coordinate, base64url without padding.")
    kid: str = Field(description="The id certificates name in their header, r<realm>v<n>.")
    alg: str = Field(description="Always ES256.")
    use: str = Field(description="Always sig.")
