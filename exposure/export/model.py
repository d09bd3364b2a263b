"""Typed value objects for the GAEN export format, independent of the protobuf classes.

The generated ``export_pb2`` classes are mutable, accept any attribute and blur "absent" and
"zero"; the rest of the code base works with these frozen dataclasses instead, and only
:mod:`exposure.export.reader` and :mod:`exposure.export.writer` touch protobuf.

``None`` always means "absent on the wire" (proto2 keeps presence), so reading a file and
writing it back keeps that distinction. The two exceptions follow the proto defaults, because
the reference server relies on them: ``rolling_start_interval_number`` reads as 0 and
``rolling_period`` as 144 when absent.

Example::

    key = ExportKey(key_data=bytes(16), transmission_risk_level=0,
                    rolling_start_interval_number=2_650_000, report_type=ReportType.CONFIRMED_TEST)
    contents = ExportContents(start_timestamp=1_600_000_000, end_timestamp=1_600_003_600,
                              region="US", keys=(key,))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal

from crypto.signing import ECDSA_SHA256_OID
from exposure.export.errors import ExportContentsError

#: The 16 bytes that open every export.bin: "EK Export v1" padded with spaces (§4.1).
EXPORT_HEADER = b"EK Export v1    "
#: Length of a Temporary Exposure Key; anything else is an invalid key.
KEY_LENGTH = 16
#: Proto default of ``rolling_period``: 144 ten-minute intervals, i.e. one day.
DEFAULT_ROLLING_PERIOD = 144
#: Member names inside the zip archive, in the order the reference server writes them.
EXPORT_BIN_NAME = "export.bin"
EXPORT_SIG_NAME = "export.sig"

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_UINT64_MAX = 2**64 - 1

KeyList = Literal["keys", "revised_keys"]


class ReportType(IntEnum):
    """Why a key was published; mirrors ``TemporaryExposureKey.ReportType`` value for value.

    Which of these each stored diagnosis is written as: :attr:`exposure.tek.ReportType.export_type`.
    """

    UNKNOWN = 0
    CONFIRMED_TEST = 1
    CONFIRMED_CLINICAL_DIAGNOSIS = 2
    SELF_REPORT = 3
    RECURSIVE = 4
    REVOKED = 5


class ExportContainer(StrEnum):
    """How an export reached the reader."""

    ZIP = "zip"
    """A zip archive holding export.bin (and usually export.sig)."""
    BIN = "bin"
    """A bare export.bin, without archive or signatures."""


def _check_int(name: str, value: object, low: int, high: int) -> None:
    # bool is an int subclass; True as a timestamp is always a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ExportContentsError(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ExportContentsError(f"{name}={value} is outside [{low}, {high}]")


def _check_optional_int(name: str, value: object, low: int, high: int) -> None:
    if value is not None:
        _check_int(name, value, low, high)


def _check_optional_text(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ExportContentsError(f"{name} must be text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be written as proto strings, which must be UTF-8.
        raise ExportContentsError(f"{name} is not encodable as UTF-8") from None


#: One key of an export as a plain tuple, in :class:`ExportKey`'s field order: key data,
#: transmission risk level, rolling start interval number, rolling period, report type
#: (the number of a :class:`ReportType`, which compares equal to it), days since onset of
#: symptoms; ``None`` where the field is absent on the wire.
KeyRecord = tuple[bytes, int | None, int, int, int | None, int | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportKey:
    """One Temporary Exposure Key as it appears in an export (``TemporaryExposureKey``).

    ``key_data`` may have any length here, because a reader must be able to return (and flag)
    the invalid keys it found; the writer refuses lengths other than :data:`KEY_LENGTH`.

    Raises :class:`~exposure.export.errors.ExportContentsError` if a number does not fit
    its proto type (int32, sint32) or ``report_type`` is not a :class:`ReportType`.
    """

    key_data: bytes
    transmission_risk_level: int | None = None
    rolling_start_interval_number: int = 0
    rolling_period: int = DEFAULT_ROLLING_PERIOD
    report_type: ReportType | None = None
    days_since_onset_of_symptoms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key_data, bytes):
            raise ExportContentsError("key_data must be bytes")
        _check_optional_int(
            "transmission_risk_level", self.transmission_risk_level, _INT32_MIN, _INT32_MAX
        )
        _check_int(
            "rolling_start_interval_number",
            self.rolling_start_interval_number,
            _INT32_MIN,
            _INT32_MAX,
        )
        _check_int("rolling_period", self.rolling_period, _INT32_MIN, _INT32_MAX)
        if self.report_type is not None and not isinstance(self.report_type, ReportType):
            raise ExportContentsError("report_type must be a ReportType")
        _check_optional_int(
            "days_since_onset_of_symptoms",
            self.days_since_onset_of_symptoms,
            _INT32_MIN,
            _INT32_MAX,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureInfo:
    """Which key signed an export: written in export.bin and repeated in each signature.

    Every field is optional on the wire; ``None`` leaves it out. The reference server writes
    ``verification_key_id`` (Apple wants the MCC, e.g. ``"310"``) and
    ``verification_key_version`` (e.g. ``"v1"``) only when it has them.

    ``app_bundle_id`` and ``android_package`` are fields 1 and 2 of the first schema, which
    early files (Google's samples, the Corona-Warn-App's, Immuni's, the Dutch app's) still
    carry; today's schema reserves them. They are read so that a file can be shown as it
    is, never written, and play no part in equality: they name no key, and phones ignore them.
    """

    verification_key_version: str | None = None
    verification_key_id: str | None = None
    signature_algorithm: str | None = ECDSA_SHA256_OID
    app_bundle_id: str | None = field(default=None, compare=False)
    android_package: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_optional_text("verification_key_version", self.verification_key_version)
        _check_optional_text("verification_key_id", self.verification_key_id)
        _check_optional_text("signature_algorithm", self.signature_algorithm)
        _check_optional_text("app_bundle_id", self.app_bundle_id)
        _check_optional_text("android_package", self.android_package)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyLengthProblem:
    """A key whose ``key_data`` is not :data:`KEY_LENGTH` bytes long."""

    key_list: KeyList
    index: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportContents:
    """Everything in export.bin after the header (``TemporaryExposureKeyExport``).

    The window is ``[start_timestamp, end_timestamp)`` in unix seconds (uint64 on the wire).
    ``batch_num``/``batch_size`` default to 1/1, the only values iOS supports and the ones the
    reference server always writes; files from other producers may leave them out (``None``).

    Raises :class:`~exposure.export.errors.ExportContentsError` for out-of-range numbers or
    text that is not valid UTF-8.
    """

    start_timestamp: int | None
    end_timestamp: int | None
    region: str | None
    batch_num: int | None = 1
    batch_size: int | None = 1
    signature_infos: tuple[SignatureInfo, ...] = ()
    keys: tuple[ExportKey, ...] = ()
    revised_keys: tuple[ExportKey, ...] = ()

    def __post_init__(self) -> None:
        _check_optional_int("start_timestamp", self.start_timestamp, 0, _UINT64_MAX)
        _check_optional_int("end_timestamp", self.end_timestamp, 0, _UINT64_MAX)
        _check_optional_text("region", self.region)
        _check_optional_int("batch_num", self.batch_num, _INT32_MIN, _INT32_MAX)
        _check_optional_int("batch_size", self.batch_size, _INT32_MIN, _INT32_MAX)
        for name in ("signature_infos", "keys", "revised_keys"):
            if not isinstance(getattr(self, name), tuple):
                # A list would make the frozen object mutable from the outside.
                raise ExportContentsError(f"{name} must be a tuple")

    def key_length_problems(self) -> tuple[KeyLengthProblem, ...]:
        """List every key and revised key whose length is not :data:`KEY_LENGTH`."""
        problems: list[KeyLengthProblem] = []
        key_lists: tuple[tuple[KeyList, tuple[ExportKey, ...]], ...] = (
            ("keys", self.keys),
            ("revised_keys", self.revised_keys),
        )
        for key_list, keys in key_lists:
            problems.extend(
                KeyLengthProblem(key_list=key_list, index=index, length=len(key.key_data))
                for index, key in enumerate(keys)
                if len(key.key_data) != KEY_LENGTH
            )
        return tuple(problems)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSignature:
    """One entry of export.sig (``TEKSignature``): a DER ECDSA signature over export.bin.

    ``signature`` is empty when the entry carries none; such an entry never verifies.
    """

    signature_info: SignatureInfo | None
    batch_num: int | None
    batch_size: int | None
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportMembers:
    """The two members of an export as stored, before either is parsed.

    ``export_sig`` is None when there is no export.sig (always so for a bare export.bin).
    """

    export_bin: bytes = field(repr=False)
    export_sig: bytes | None = field(repr=False)
    container: ExportContainer
    extra_members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedExport:
    """The result of reading an export: its contents plus what is needed to verify it.

    ``export_bin`` is the raw export.bin, header included, exactly as read: signatures cover
    these bytes, not a re-encoding. ``signatures`` is empty both for an unsigned export (no
    export.sig, or a bare export.bin) and for an empty export.sig; ``has_signature_file``
    tells the two apart. ``extra_members`` names archive entries other than export.bin and
    export.sig (the Dutch app adds ``content.sig``); they are listed, never read.
    """

    contents: ExportContents
    export_bin: bytes = field(repr=False)
    signatures: tuple[ExportSignature, ...]
    container: ExportContainer
    has_signature_file: bool
    extra_members: tuple[str, ...] = ()
    key_length_problems: tuple[KeyLengthProblem, ...] = ()

    @property
    def is_signed(self) -> bool:
        """Whether the export carries at least one signature (valid or not)."""
        return bool(self.signatures)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureCheck:
    """The outcome of checking one signature against every candidate public key.

    ``verified_by`` holds the positions (in the sequence the caller passed) of the public keys
    that verify this signature; it is empty when none does.
    """

    index: int
    signature: ExportSignature
    verified_by: tuple[int, ...]

    @property
    def verified(self) -> bool:
        return bool(self.verified_by)
