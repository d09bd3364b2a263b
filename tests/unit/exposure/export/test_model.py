from __future__ import annotations

import pytest

from exposure.export import (
    DEFAULT_ROLLING_PERIOD,
    ExportContents,
    ExportContentsError,
    ExportErrorCode,
    ExportKey,
    KeyLengthProblem,
    ReportType,
    SignatureInfo,
)
from exposure.export.proto import export_pb2


def test_report_type_mirrors_the_proto_enum() -> None:
    proto_enum = export_pb2.TemporaryExposureKey.ReportType
    assert {member.name: member.value for member in ReportType} == dict(proto_enum.items())


def test_key_defaults_follow_the_proto_defaults() -> None:
    key = ExportKey(key_data=bytes(16))

    assert key.rolling_period == DEFAULT_ROLLING_PERIOD == 144
    assert key.rolling_start_interval_number == 0
    assert key.transmission_risk_level is None
    assert key.report_type is None
    assert key.days_since_onset_of_symptoms is None


@pytest.mark.parametrize(
    "field",
    [
        {"transmission_risk_level": 2**31},
        {"rolling_start_interval_number": -(2**31) - 1},
        {"rolling_period": 2**40},
        {"days_since_onset_of_symptoms": 2**31},
        {"rolling_period": True},
        {"report_type": 1},
        {"key_data": "not bytes"},
    ],
)
def test_key_refuses_values_the_wire_cannot_carry(field: dict[str, object]) -> None:
    arguments: dict[str, object] = {"key_data": bytes(16), **field}
    with pytest.raises(ExportContentsError) as caught:
        ExportKey(**arguments)  # type: ignore[arg-type]

    assert caught.value.code is ExportErrorCode.INVALID_CONTENTS
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "field",
    [
        {"start_timestamp": -1},
        {"end_timestamp": 2**64},
        {"batch_num": 2**31},
        {"region": "\ud800"},
        {"keys": [ExportKey(key_data=bytes(16))]},
    ],
)
def test_contents_refuse_values_the_wire_cannot_carry(field: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "start_timestamp": 0,
        "end_timestamp": 0,
        "region": "US",
        **field,
    }
    with pytest.raises(ExportContentsError):
        ExportContents(**arguments)  # type: ignore[arg-type]


def test_signature_info_refuses_unencodable_text() -> None:
    with pytest.raises(ExportContentsError):
        SignatureInfo(verification_key_id="\udc80")


def test_key_length_problems_cover_keys_and_revised_keys() -> None:
    contents = ExportContents(
        start_timestamp=None,
        end_timestamp=None,
        region=None,
        keys=(ExportKey(key_data=bytes(16)), ExportKey(key_data=bytes(32))),
        revised_keys=(ExportKey(key_data=b""),),
    )

    assert contents.key_length_problems() == (
        KeyLengthProblem(key_list="keys", index=1, length=32),
        KeyLengthProblem(key_list="revised_keys", index=0, length=0),
    )
