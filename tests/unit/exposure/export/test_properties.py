"""Round-trip properties: whatever the writer produces, the reader gives back."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from exposure.export import (
    ExportContents,
    ExportKey,
    ExportSignature,
    encode_export_bin,
    encode_signature_list,
    parse_key_records,
    parse_signature_list,
    read_export,
    write_export_zip,
)
from tests.unit.exposure.export.strategies import export_contents, export_signatures


def sorted_keys(keys: tuple[ExportKey, ...]) -> tuple[ExportKey, ...]:
    return tuple(sorted(keys, key=lambda key: key.key_data))


def as_written(contents: ExportContents) -> ExportContents:
    """What the reader should return: the same contents, keys sorted by their bytes."""
    return replace(
        contents,
        keys=sorted_keys(contents.keys),
        revised_keys=sorted_keys(contents.revised_keys),
    )


@given(export_contents)
def test_encode_then_read_gives_the_same_contents(contents: ExportContents) -> None:
    parsed = read_export(encode_export_bin(contents))

    assert parsed.contents == as_written(contents)
    assert parsed.key_length_problems == ()


@given(export_contents)
def test_encoding_is_canonical(contents: ExportContents) -> None:
    export_bin = encode_export_bin(contents)

    assert encode_export_bin(read_export(export_bin).contents) == export_bin


@given(export_contents, st.lists(export_signatures, max_size=3))
def test_zip_round_trip_keeps_export_bin_and_signatures(
    contents: ExportContents, signatures: list[ExportSignature]
) -> None:
    export_bin = encode_export_bin(contents)

    parsed = read_export(write_export_zip(export_bin, encode_signature_list(signatures)))

    assert parsed.export_bin == export_bin
    assert parsed.contents == as_written(contents)
    assert list(parsed.signatures) == signatures


@given(st.lists(export_signatures, max_size=4))
def test_signature_list_round_trip(signatures: list[ExportSignature]) -> None:
    assert list(parse_signature_list(encode_signature_list(signatures))) == signatures


@given(export_contents, st.integers(min_value=1, max_value=5), st.integers(0, 8))
def test_key_records_hold_what_the_value_objects_hold(
    contents: ExportContents, chunk_size: int, repeated: int
) -> None:
    # Some keys again among the revised keys, as a revising producer writes them.
    contents = replace(contents, revised_keys=(*contents.revised_keys, *contents.keys[:repeated]))
    export_bin = encode_export_bin(contents)
    parsed = read_export(export_bin).contents

    records = parse_key_records(export_bin)
    chunks = list(records.chunks(chunk_size))

    assert [
        (
            key.key_data,
            key.transmission_risk_level,
            key.rolling_start_interval_number,
            key.rolling_period,
            key.report_type,
            key.days_since_onset_of_symptoms,
        )
        for key in (*parsed.keys, *parsed.revised_keys)
    ] == [record for chunk in chunks for record in chunk]
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    copies = Counter(key.key_data for key in (*parsed.keys, *parsed.revised_keys))
    assert records.repeated_keys() == {key: count for key, count in copies.items() if count > 1}
    assert (records.region, len(records)) == (
        parsed.region,
        len(parsed.keys) + len(parsed.revised_keys),
    )
