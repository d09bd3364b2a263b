"""Hypothesis strategies for export value objects, bounded by the proto's integer types."""

from __future__ import annotations

from hypothesis import strategies as st

from exposure.export import (
    ExportContents,
    ExportKey,
    ExportSignature,
    ReportType,
    SignatureInfo,
)

int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)
short_text = st.text(max_size=12)

export_keys = st.builds(
    ExportKey,
    key_data=st.binary(min_size=16, max_size=16),
    transmission_risk_level=st.none() | int32,
    rolling_start_interval_number=int32,
    rolling_period=int32,
    report_type=st.none() | st.sampled_from(ReportType),
    days_since_onset_of_symptoms=st.none() | int32,
)

signature_infos = st.builds(
    SignatureInfo,
    verification_key_version=st.none() | short_text,
    verification_key_id=st.none() | short_text,
    signature_algorithm=st.none() | short_text,
)

export_contents = st.builds(
    ExportContents,
    start_timestamp=st.none() | uint64,
    end_timestamp=st.none() | uint64,
    region=st.none() | short_text,
    batch_num=st.none() | int32,
    batch_size=st.none() | int32,
    signature_infos=st.lists(signature_infos, max_size=3).map(tuple),
    keys=st.lists(export_keys, max_size=8).map(tuple),
    revised_keys=st.lists(export_keys, max_size=4).map(tuple),
)

export_signatures = st.builds(
    ExportSignature,
    signature_info=st.none() | signature_infos,
    batch_num=st.none() | int32,
    batch_size=st.none() | int32,
    signature=st.binary(max_size=80),
)
