from __future__ import annotations

import io
import zipfile

import pytest

from crypto.signing import FileSigner, verify_signature
from exposure.export import (
    EXPORT_HEADER,
    ExportContents,
    ExportContentsError,
    ExportKey,
    ReportType,
    SignatureInfo,
    build_export,
    encode_export_bin,
    parse_signature_list,
    read_export,
    sign_export,
    write_export_zip,
)
from exposure.export.proto import export_pb2
from tests.unit.exposure.export.support import SIGNATURE_INFO, sample_contents, sample_key


def decode_wire(export_bin: bytes) -> export_pb2.TemporaryExposureKeyExport:
    message = export_pb2.TemporaryExposureKeyExport()
    message.ParseFromString(export_bin[len(EXPORT_HEADER) :])
    return message


def test_export_bin_starts_with_the_16_byte_header() -> None:
    export_bin = encode_export_bin(sample_contents())

    assert export_bin[:16] == b"EK Export v1    "
    assert export_bin[:16].hex() == "454b204578706f727420763120202020"


def test_keys_and_revised_keys_are_sorted_by_their_bytes() -> None:
    keys = (sample_key(0xFF), sample_key(0x00), sample_key(0x80), sample_key(0x7F))
    revised = (sample_key(0x09), sample_key(0x01))
    wire = decode_wire(encode_export_bin(sample_contents(keys=keys, revised_keys=revised)))

    key_bytes = [key.key_data for key in wire.keys]
    assert key_bytes == sorted(key.key_data for key in keys)
    assert [key[0] for key in key_bytes] == [0x00, 0x7F, 0x80, 0xFF]
    assert [key.key_data[0] for key in wire.revised_keys] == [0x01, 0x09]


def test_equal_contents_give_equal_bytes_whatever_the_key_order() -> None:
    keys = (sample_key(3), sample_key(1), sample_key(2))

    assert encode_export_bin(sample_contents(keys=keys)) == encode_export_bin(
        sample_contents(keys=tuple(reversed(keys)))
    )


def test_fields_are_populated_like_the_reference_server() -> None:
    defaults = ExportKey(key_data=bytes(16), transmission_risk_level=0)
    explicit = ExportKey(
        key_data=b"\x01" * 16,
        transmission_risk_level=7,
        rolling_start_interval_number=2_650_000,
        rolling_period=100,
        report_type=ReportType.UNKNOWN,
        days_since_onset_of_symptoms=0,
    )
    wire = decode_wire(encode_export_bin(sample_contents(keys=(explicit, defaults))))
    omitted, given = wire.keys  # sorted by bytes: the all-zero key comes first

    # Transmission risk is written even when 0; rsin 0 and rolling period 144 are omitted.
    assert omitted.HasField("transmission_risk_level")
    assert omitted.transmission_risk_level == 0
    assert not omitted.HasField("rolling_start_interval_number")
    assert not omitted.HasField("rolling_period")
    assert omitted.rolling_period == 144  # the proto default fills it back in
    assert not omitted.HasField("report_type")
    assert not omitted.HasField("days_since_onset_of_symptoms")
    # Given values are written, including a zero symptom onset and UNKNOWN report type.
    assert given.rolling_start_interval_number == 2_650_000
    assert given.rolling_period == 100
    assert given.HasField("report_type")
    assert given.report_type == export_pb2.TemporaryExposureKey.UNKNOWN
    assert given.HasField("days_since_onset_of_symptoms")
    assert not given.HasField("variant_of_concern")


def test_rolling_period_144_is_omitted_on_the_wire_but_read_back_as_144() -> None:
    key = sample_key(1, rolling_period=144)
    contents = sample_contents(keys=(key,), revised_keys=())
    export_bin = encode_export_bin(contents)

    assert not decode_wire(export_bin).keys[0].HasField("rolling_period")
    assert read_export(export_bin).contents.keys == (key,)


def test_absent_header_fields_stay_absent() -> None:
    contents = ExportContents(
        start_timestamp=None, end_timestamp=None, region=None, batch_num=None, batch_size=None
    )
    wire = decode_wire(encode_export_bin(contents))

    assert wire.ListFields() == []
    assert encode_export_bin(contents) == EXPORT_HEADER


def test_signature_info_fields_are_written_only_when_given() -> None:
    info = SignatureInfo(verification_key_id="ExampleServer_k1")
    wire = decode_wire(encode_export_bin(sample_contents(signature_infos=(info,))))

    written = wire.signature_infos[0]
    assert written.verification_key_id == "ExampleServer_k1"
    assert not written.HasField("verification_key_version")
    assert written.signature_algorithm == "1.2.840.10045.4.3.2"


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_writer_refuses_keys_that_are_not_16_bytes(length: int) -> None:
    contents = sample_contents(revised_keys=(ExportKey(key_data=bytes(length)),))

    with pytest.raises(ExportContentsError, match="revised_keys"):
        encode_export_bin(contents)
    # Tests may still need such files; the escape hatch is explicit.
    assert encode_export_bin(contents, require_key_length=False).startswith(EXPORT_HEADER)


def test_two_signers_each_sign_the_whole_export_bin(
    signer: FileSigner, other_signer: FileSigner
) -> None:
    export_bin = encode_export_bin(sample_contents())
    new_info = SignatureInfo(verification_key_id="310", verification_key_version="v2")
    old_info = SignatureInfo(verification_key_id="310", verification_key_version="v1")

    signatures = parse_signature_list(
        sign_export(export_bin, [(new_info, other_signer), (old_info, signer)])
    )

    assert [signature.signature_info for signature in signatures] == [new_info, old_info]
    assert all((s.batch_num, s.batch_size) == (1, 1) for s in signatures)
    verify_signature(other_signer.public_key(), export_bin, signatures[0].signature)
    verify_signature(signer.public_key(), export_bin, signatures[1].signature)


def test_zip_holds_export_bin_then_export_sig_deflated_with_fixed_timestamps() -> None:
    archive = write_export_zip(b"bin bytes", b"sig bytes")

    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        entries = opened.infolist()
        assert [entry.filename for entry in entries] == ["export.bin", "export.sig"]
        assert all(entry.compress_type == zipfile.ZIP_DEFLATED for entry in entries)
        assert all(entry.date_time == (1980, 1, 1, 0, 0, 0) for entry in entries)
        assert opened.read("export.bin") == b"bin bytes"
        assert opened.read("export.sig") == b"sig bytes"


def test_zip_output_is_deterministic() -> None:
    assert write_export_zip(b"a" * 1000, b"b") == write_export_zip(b"a" * 1000, b"b")


def test_zip_without_signature_holds_export_bin_only() -> None:
    with zipfile.ZipFile(io.BytesIO(write_export_zip(b"bin", None))) as opened:
        assert opened.namelist() == ["export.bin"]


def test_build_export_announces_the_signers_in_export_bin(signer: FileSigner) -> None:
    contents = sample_contents(signature_infos=())

    parsed = read_export(build_export(contents, [(SIGNATURE_INFO, signer)]))

    assert parsed.contents.signature_infos == (SIGNATURE_INFO,)
    assert [s.signature_info for s in parsed.signatures] == [SIGNATURE_INFO]


def test_build_export_refuses_signature_infos_that_do_not_match_the_signers(
    signer: FileSigner,
) -> None:
    contents = sample_contents(signature_infos=(SignatureInfo(verification_key_id="other"),))

    with pytest.raises(ExportContentsError, match="signature_infos"):
        build_export(contents, [(SIGNATURE_INFO, signer)])


def test_build_export_copies_the_batch_into_each_signature(signer: FileSigner) -> None:
    contents = sample_contents(batch_num=2, batch_size=3)

    parsed = read_export(build_export(contents, [(SIGNATURE_INFO, signer)]))

    assert [(s.batch_num, s.batch_size) for s in parsed.signatures] == [(2, 3)]
