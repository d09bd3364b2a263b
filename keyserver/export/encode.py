"""Encode export.bin straight from database rows, fast enough for a million keys.

:func:`exposure.export.writer.encode_export_bin` builds an ``ExportKey`` and a protobuf
message per key: about 14 s per million keys, measured. A batch holds few distinct key
*metadata* tuples (transmission risk, start interval, period, report type, days since onset)
but many keys, so here each key is written as raw protobuf wire bytes: the 16 key bytes
followed by the encoding of its metadata, computed once per distinct tuple and cached. The
per-key work is then a bytes concatenation run by C iterators (``map``), about 1 s per
million keys including the sort.

The output is byte-for-byte what the writer produces for the same keys (the tests check it
against :func:`~exposure.export.writer.encode_export_bin`): proto2 fields in field-number
order, ``transmission_risk_level`` always written, ``rolling_start_interval_number`` only
when not 0, ``rolling_period`` only when not 144, report type and days since onset only when
present (google-keyserver.md §4.3). The header fields and signature infos (1 to 6) are still
serialized by the official protobuf runtime; only the repeated key fields (7 and 8) are
written here.

A key record is ``key_data + metadata bytes``: records sort by their key bytes because every
key is exactly 16 bytes long and keys are unique, so sorting the records is the reference's
``bytes.Compare`` sort of the keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import add, itemgetter
from typing import TypeAlias

from exposure.export.model import EXPORT_HEADER, KEY_LENGTH, SignatureInfo
from exposure.export.model import ReportType as ExportReportType
from exposure.export.proto import export_pb2
from exposure.tek import ReportType

__all__ = [
    "REPORT_TYPES",
    "KeyRecordEncoder",
    "KeyRow",
    "encode_export_bin_records",
]

#: A key as selected: key, transmission risk, start interval, period, report type, onset days.
KeyRow: TypeAlias = tuple[bytes, int, int, int, str | None, int | None]
_Metadata: TypeAlias = tuple[int, int, int, str | None, int | None]

#: Stored report type → export enum (§4.3); "" and unknown values are left out of the file.
REPORT_TYPES: dict[str, ExportReportType] = {
    report_type.value: report_type.export_type for report_type in ReportType
}

_DEFAULT_ROLLING_PERIOD = 144
_KEY_DATA_TAG = b"\x0a" + bytes([KEY_LENGTH])  # field 1, length-delimited, 16 bytes
_KEYS_FIELD = 7
_REVISED_KEYS_FIELD = 8
_WIRE_VARINT = 0
_WIRE_LENGTH_DELIMITED = 2
_UINT64_MASK = (1 << 64) - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_first = itemgetter(0)
_rest = itemgetter(slice(1, None))


def _varint(value: int) -> bytes:
    # Negative int32 values are written as their 64-bit two's complement (10 bytes), as
    # every protobuf runtime does.
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field_number: int, wire_type: int) -> bytes:
    return _varint(field_number << 3 | wire_type)


def _int32(name: str, value: int) -> int:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"{name}={value} does not fit an int32")
    return value


def _encode_metadata(metadata: _Metadata) -> bytes:
    transmission_risk, start_interval, period, report_type, onset_days = metadata
    out = _tag(2, _WIRE_VARINT) + _varint(_int32("transmission_risk", transmission_risk))
    if start_interval:
        out += _tag(3, _WIRE_VARINT) + _varint(_int32("interval_number", start_interval))
    if period != _DEFAULT_ROLLING_PERIOD:
        out += _tag(4, _WIRE_VARINT) + _varint(_int32("interval_count", period))
    export_type = REPORT_TYPES.get(report_type or "")
    if export_type is not None:
        out += _tag(5, _WIRE_VARINT) + _varint(int(export_type))
    if onset_days is not None:
        onset = _int32("days_since_symptom_onset", onset_days)
        out += _tag(6, _WIRE_VARINT) + _varint((onset << 1) ^ (onset >> 31))  # zigzag
    return out


class _MetadataCache(dict[_Metadata, bytes]):
    def __missing__(self, metadata: _Metadata) -> bytes:
        encoded = self[metadata] = _encode_metadata(metadata)
        return encoded


class KeyRecordEncoder:
    """Turns selected rows into sortable key records, caching the metadata encodings.

    One encoder serves a whole batch (keys and revised keys alike). Rows whose key is not
    16 bytes long are dropped and counted in :attr:`bad_key_length` (the reference does the
    same, §4.6).
    """

    def __init__(self) -> None:
        self._cache = _MetadataCache()
        self.bad_key_length = 0

    def records(self, rows: Sequence[Sequence[object]]) -> list[bytes]:
        """``key + encoded metadata`` for each :data:`KeyRow`-shaped row, in row order."""
        keys = list(map(_first, rows))
        if set(map(len, keys)) - {KEY_LENGTH}:
            kept = [row for row in rows if len(_first(row)) == KEY_LENGTH]
            self.bad_key_length += len(rows) - len(kept)
            rows, keys = kept, list(map(_first, kept))
        return list(map(add, keys, map(self._cache.__getitem__, map(_rest, rows))))


def _field_prefixes(field_number: int) -> dict[int, bytes]:
    # Record lengths are 16 key bytes + up to 2+10+6+6+2+6 metadata bytes; the prefix of a
    # record of length n is the field tag, the message length and the key_data tag.
    tag = _tag(field_number, _WIRE_LENGTH_DELIMITED)
    return {
        length: tag + _varint(length + len(_KEY_DATA_TAG)) + _KEY_DATA_TAG
        for length in range(KEY_LENGTH, KEY_LENGTH + 64)
    }


_KEYS_PREFIXES = _field_prefixes(_KEYS_FIELD)
_REVISED_KEYS_PREFIXES = _field_prefixes(_REVISED_KEYS_FIELD)


def _encode_records(records: Iterable[bytes], prefixes: dict[int, bytes]) -> bytes:
    return b"".join(map(add, map(prefixes.__getitem__, map(len, records)), records))


def encode_export_bin_records(
    *,
    start_timestamp: int,
    end_timestamp: int,
    region: str,
    signature_infos: Sequence[SignatureInfo],
    keys: Sequence[bytes],
    revised_keys: Sequence[bytes],
    batch_num: int = 1,
    batch_size: int = 1,
) -> bytes:
    """export.bin (header included) for key records already sorted by key.

    ``keys`` and ``revised_keys`` are records from :meth:`KeyRecordEncoder.records`, each
    list sorted ascending (``list.sort()`` does it). Equal to what
    :func:`~exposure.export.writer.encode_export_bin` writes for the same keys.
    """
    head = export_pb2.TemporaryExposureKeyExport(
        start_timestamp=start_timestamp,
        end_timestamp=end_timestamp,
        region=region,
        batch_num=batch_num,
        batch_size=batch_size,
        signature_infos=[
            export_pb2.SignatureInfo(
                verification_key_version=info.verification_key_version,
                verification_key_id=info.verification_key_id,
                signature_algorithm=info.signature_algorithm,
            )
            for info in signature_infos
        ],
    ).SerializeToString()
    return b"".join(
        (
            EXPORT_HEADER,
            head,
            _encode_records(keys, _KEYS_PREFIXES),
            _encode_records(revised_keys, _REVISED_KEYS_PREFIXES),
        )
    )
