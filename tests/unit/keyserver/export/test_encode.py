"""The fast export.bin encoder writes exactly what the Foundation's writer writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exposure.export import ExportContents, ExportKey, SignatureInfo, encode_export_bin, read_export
from keyserver.export.encode import REPORT_TYPES, KeyRecordEncoder, encode_export_bin_records

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
REPORT_TYPE_TEXT = st.sampled_from([None, "", "confirmed", "likely", "negative", "user-report"])
ROW = st.tuples(
    st.binary(min_size=16, max_size=16),
    INT32,
    INT32,
    st.one_of(st.just(144), INT32),
    REPORT_TYPE_TEXT,
    st.one_of(st.none(), INT32),
)
ROWS = st.lists(ROW, max_size=40, unique_by=lambda row: row[0])
TEXT = st.one_of(st.none(), st.text(max_size=12))
INFOS = st.lists(
    st.builds(
        SignatureInfo,
        verification_key_version=TEXT,
        verification_key_id=TEXT,
        signature_algorithm=TEXT,
    ),
    max_size=3,
)


def _export_key(row: tuple[Any, ...]) -> ExportKey:
    key, risk, start, period, report_type, onset = row
    return ExportKey(
        key_data=key,
        transmission_risk_level=risk,
        rolling_start_interval_number=start,
        rolling_period=period,
        report_type=REPORT_TYPES.get(report_type or ""),
        days_since_onset_of_symptoms=onset,
    )


@given(
    keys=ROWS,
    revised=ROWS,
    infos=INFOS,
    start=st.integers(min_value=0, max_value=2**64 - 1),
    end=st.integers(min_value=0, max_value=2**64 - 1),
    region=st.text(max_size=8),
)
def test_records_encode_like_the_writer(
    keys: list[tuple[Any, ...]],
    revised: list[tuple[Any, ...]],
    infos: list[SignatureInfo],
    start: int,
    end: int,
    region: str,
) -> None:
    expected = encode_export_bin(
        ExportContents(
            start_timestamp=start,
            end_timestamp=end,
            region=region,
            signature_infos=tuple(infos),
            keys=tuple(map(_export_key, keys)),
            revised_keys=tuple(map(_export_key, revised)),
        )
    )
    encoder = KeyRecordEncoder()
    key_records = sorted(encoder.records(keys))
    revised_records = sorted(encoder.records(revised))
    actual = encode_export_bin_records(
        start_timestamp=start,
        end_timestamp=end,
        region=region,
        signature_infos=infos,
        keys=key_records,
        revised_keys=revised_records,
    )
    assert actual == expected
    assert encoder.bad_key_length == 0


def test_a_known_key_encodes_to_known_bytes() -> None:
    (record,) = KeyRecordEncoder().records([(bytes(range(16)), 2, 2_650_000, 144, "confirmed", -1)])
    # key_data, tr=2, rsin=2650000 (varint 90 df a1 01), report type 1, dsos -1 (zigzag 1).
    assert record == bytes(range(16)) + bytes.fromhex("1002189 0dfa101 2801 3001".replace(" ", ""))
    contents = read_export(
        encode_export_bin_records(
            start_timestamp=1,
            end_timestamp=2,
            region="VN",
            signature_infos=[],
            keys=[record],
            revised_keys=[],
        )
    ).contents
    (key,) = contents.keys
    assert (key.rolling_start_interval_number, key.days_since_onset_of_symptoms) == (2_650_000, -1)


def test_keys_of_the_wrong_length_are_dropped_and_counted() -> None:
    encoder = KeyRecordEncoder()
    records = encoder.records(
        [
            (bytes(15), 0, 1, 144, "", None),
            (bytes(16), 0, 1, 144, "", None),
            (bytes(17), 0, 1, 144, "", None),
        ]
    )
    assert len(records) == 1
    assert records[0].startswith(bytes(16))
    assert encoder.bad_key_length == 2


def test_values_beyond_int32_are_refused() -> None:
    with pytest.raises(ValueError, match="int32"):
        KeyRecordEncoder().records([(bytes(16), 2**31, 1, 144, "", None)])
