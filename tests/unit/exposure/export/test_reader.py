from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from crypto.signing import FileSigner
from exposure.export import (
    EXPORT_HEADER,
    MAX_ARCHIVE_ENTRIES,
    ExportContainer,
    ExportErrorCode,
    ExportFormatError,
    ExportKey,
    KeyLengthProblem,
    encode_export_bin,
    read_export,
    read_export_file,
    read_export_members,
    write_export_zip,
)
from exposure.export.proto import export_pb2
from tests.unit.exposure.export.support import (
    make_zip,
    sample_contents,
    sample_key,
    signed_archive,
)

MIB = 1024 * 1024


def format_error_code(data: bytes, **options: int | bool) -> ExportErrorCode:
    with pytest.raises(ExportFormatError) as caught:
        read_export(data, **options)  # type: ignore[arg-type]
    return caught.value.code


def zip_of_zeros(name: str, size: int) -> bytes:
    """A deflated member of ``size`` zero bytes, written in chunks so the test stays small."""
    buffer = io.BytesIO()
    chunk = bytes(MIB)
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(name, "w") as member,
    ):
        for _ in range(size // MIB):
            member.write(chunk)
    return buffer.getvalue()


def patch_central_directory(archive: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of the first central-directory header (what zipfile trusts)."""
    start = archive.index(b"PK\x01\x02")
    patched = bytearray(archive)
    struct.pack_into(fmt, patched, start + offset, value)
    return bytes(patched)


# Offsets inside a central-directory file header (APPNOTE 4.3.12).
FLAGS_OFFSET = 8
UNCOMPRESSED_SIZE_OFFSET = 24


class TestContainers:
    def test_bare_export_bin_is_read_without_signatures(self) -> None:
        export_bin = encode_export_bin(sample_contents())

        parsed = read_export(export_bin)

        assert parsed.container is ExportContainer.BIN
        assert parsed.export_bin == export_bin
        assert parsed.signatures == ()
        assert not parsed.has_signature_file
        assert not parsed.is_signed
        assert parsed.contents.region == "US"

    def test_signed_zip_is_read_with_its_signatures(self, signer: FileSigner) -> None:
        parsed = read_export(signed_archive(signer))

        assert parsed.container is ExportContainer.ZIP
        assert parsed.has_signature_file
        assert parsed.is_signed
        assert len(parsed.signatures) == 1
        assert parsed.export_bin.startswith(EXPORT_HEADER)

    def test_zip_with_export_bin_only_is_unsigned(self) -> None:
        parsed = read_export(write_export_zip(encode_export_bin(sample_contents()), None))

        assert not parsed.has_signature_file
        assert parsed.signatures == ()

    def test_empty_export_sig_means_zero_signatures(self) -> None:
        parsed = read_export(write_export_zip(encode_export_bin(sample_contents()), b""))

        assert parsed.has_signature_file
        assert parsed.signatures == ()
        assert not parsed.is_signed

    def test_extra_members_are_listed_and_never_read(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        # content.sig is what the Dutch app adds; a bomb under another name is never opened.
        archive = make_zip(
            [("export.bin", export_bin), ("export.sig", b""), ("content.sig", b"\x30\x82")]
        )

        parsed = read_export(archive, max_member_size=len(export_bin))

        assert parsed.extra_members == ("content.sig",)

    def test_members_come_out_unparsed_for_a_check_before_decoding(
        self, signer: FileSigner
    ) -> None:
        archive = signed_archive(signer)

        members = read_export_members(archive)
        parsed = read_export(archive)

        assert members.container is ExportContainer.ZIP
        assert members.export_bin == parsed.export_bin
        assert members.export_sig is not None
        assert members.extra_members == ()

    def test_members_of_a_bare_export_bin_have_no_signature_file(self) -> None:
        export_bin = encode_export_bin(sample_contents())

        members = read_export_members(export_bin)

        assert members.container is ExportContainer.BIN
        assert members.export_bin == export_bin
        assert members.export_sig is None

    def test_members_obey_the_size_limit(self) -> None:
        export_bin = encode_export_bin(sample_contents())

        with pytest.raises(ExportFormatError) as caught:
            read_export_members(export_bin, max_member_size=len(export_bin) - 1)
        assert caught.value.code is ExportErrorCode.TOO_LARGE

    def test_read_export_file_reads_from_disk(self, tmp_path: Path, signer: FileSigner) -> None:
        path = tmp_path / "export.zip"
        path.write_bytes(signed_archive(signer))

        assert read_export_file(path).contents == read_export(path.read_bytes()).contents

    def test_read_export_file_refuses_files_over_the_limit(self, tmp_path: Path) -> None:
        path = tmp_path / "export.bin"
        path.write_bytes(encode_export_bin(sample_contents()))

        with pytest.raises(ExportFormatError) as caught:
            read_export_file(path, max_file_size=20)
        assert caught.value.code is ExportErrorCode.TOO_LARGE

    def test_read_export_file_lets_os_errors_through(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            read_export_file(tmp_path / "absent.zip")


class TestHeader:
    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"EK Export v1",
            b"EK Export v1   ",
            b"EK Export v2    ",
            b"ek export v1    ",
            b"EK Export v1\t   ",
            b"\x00" * 32,
            b'{"keys": []}',
        ],
    )
    def test_anything_but_the_exact_header_is_refused(self, data: bytes) -> None:
        assert format_error_code(data) is ExportErrorCode.BAD_HEADER

    def test_header_alone_is_an_empty_export(self) -> None:
        parsed = read_export(EXPORT_HEADER)

        assert parsed.contents.keys == ()
        assert parsed.contents.region is None
        assert parsed.contents.batch_num is None

    def test_header_is_checked_inside_zips_too(self) -> None:
        archive = make_zip([("export.bin", b"PK not a header"), ("export.sig", b"")])

        assert format_error_code(archive) is ExportErrorCode.BAD_HEADER


class TestProtobuf:
    def test_truncated_protobuf_is_refused(self) -> None:
        export_bin = encode_export_bin(sample_contents())

        assert format_error_code(export_bin[:-5]) is ExportErrorCode.BAD_PROTOBUF

    @pytest.mark.parametrize(
        "payload",
        [
            b"\xff\xff\xff",  # an invalid tag
            b"\x3a\x7f\x0a",  # keys: a length running past the end
            b"\x09\x01\x02",  # start_timestamp: a fixed64 cut short
        ],
    )
    def test_garbage_after_the_header_is_refused(self, payload: bytes) -> None:
        assert format_error_code(EXPORT_HEADER + payload) is ExportErrorCode.BAD_PROTOBUF

    def test_invalid_utf8_in_a_string_field_is_refused(self) -> None:
        # region (field 3) holding the bytes ff fe; upb would hand back bytes, not str.
        assert format_error_code(EXPORT_HEADER + b"\x1a\x02\xff\xfe") is (
            ExportErrorCode.BAD_PROTOBUF
        )

    def test_invalid_utf8_in_a_signature_info_is_refused(self) -> None:
        # TEKSignatureList{signatures{signature_info{verification_key_id: c3 28}}}
        export_sig = b"\x0a\x06\x0a\x04\x22\x02\xc3\x28"
        archive = write_export_zip(encode_export_bin(sample_contents()), export_sig)

        assert format_error_code(archive) is ExportErrorCode.BAD_PROTOBUF

    def test_garbage_export_sig_is_refused(self) -> None:
        archive = write_export_zip(encode_export_bin(sample_contents()), b"123ABC")

        assert format_error_code(archive) is ExportErrorCode.BAD_PROTOBUF

    def test_report_type_outside_the_enum_reads_as_absent(self) -> None:
        key = b"\x0a\x10" + bytes(16) + b"\x28\x09"  # key_data, report_type=9
        export_bin = EXPORT_HEADER + b"\x3a" + bytes([len(key)]) + key

        (read_key,) = read_export(export_bin).contents.keys

        assert read_key.report_type is None

    def test_unknown_fields_are_ignored(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        with_unknown_field = export_bin + b"\xf8\x01\x01"  # field 31, varint 1

        assert read_export(with_unknown_field).contents == read_export(export_bin).contents


class TestArchive:
    def test_non_zip_bytes_after_the_zip_signature_are_refused(self) -> None:
        assert format_error_code(b"PK\x03\x04" + bytes(100)) is ExportErrorCode.BAD_ZIP

    def test_truncated_zip_is_refused(self, signer: FileSigner) -> None:
        archive = signed_archive(signer)

        assert format_error_code(archive[: len(archive) // 2]) is ExportErrorCode.BAD_ZIP

    def test_empty_zip_has_no_export_bin(self) -> None:
        assert format_error_code(make_zip([])) is ExportErrorCode.MISSING_MEMBER

    @pytest.mark.parametrize(
        "names",
        [["export.sig"], ["EXPORT.BIN", "export.sig"], ["keys/export.bin"], ["export.bin.gz"]],
    )
    def test_archive_without_an_export_bin_member_is_refused(self, names: list[str]) -> None:
        archive = make_zip([(name, encode_export_bin(sample_contents())) for name in names])

        assert format_error_code(archive) is ExportErrorCode.MISSING_MEMBER

    @pytest.mark.parametrize("duplicate", ["export.bin", "export.sig", "content.sig"])
    def test_duplicate_members_are_refused(self, duplicate: str) -> None:
        export_bin = encode_export_bin(sample_contents())
        members = [
            ("export.bin", export_bin),
            ("export.sig", b""),
            ("content.sig", b""),
            (duplicate, export_bin),
        ]
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive = make_zip(members)

        assert format_error_code(archive) is ExportErrorCode.DUPLICATE_MEMBER

    def test_archive_with_too_many_entries_is_refused(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        extra = [(f"padding-{index}", b"") for index in range(MAX_ARCHIVE_ENTRIES)]

        assert format_error_code(make_zip([("export.bin", export_bin), *extra])) is (
            ExportErrorCode.BAD_ZIP
        )

    def test_stored_members_are_accepted(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        archive = make_zip([("export.bin", export_bin)], compression=zipfile.ZIP_STORED)

        assert read_export(archive).export_bin == export_bin

    def test_other_compression_methods_are_refused(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        archive = make_zip([("export.bin", export_bin)], compression=zipfile.ZIP_BZIP2)

        assert format_error_code(archive) is ExportErrorCode.BAD_ZIP

    def test_encrypted_members_are_refused(self) -> None:
        archive = write_export_zip(encode_export_bin(sample_contents()), None)
        encrypted = patch_central_directory(archive, FLAGS_OFFSET, "<H", 0x1)

        assert format_error_code(encrypted) is ExportErrorCode.BAD_ZIP

    def test_corrupted_member_fails_its_crc(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        archive = bytearray(make_zip([("export.bin", export_bin)], zipfile.ZIP_STORED))
        archive[archive.index(EXPORT_HEADER) + 20] ^= 0x01

        assert format_error_code(bytes(archive)) is ExportErrorCode.BAD_ZIP


class TestLimits:
    def test_zip_bomb_is_refused_without_inflating_it(self) -> None:
        limit = 1 * MIB
        bomb = zip_of_zeros("export.bin", 32 * MIB)
        assert len(bomb) < 64 * 1024  # 32 MiB of zeros deflate to a few tens of KiB

        tracemalloc.start()
        try:
            code = format_error_code(bomb, max_member_size=limit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert code is ExportErrorCode.TOO_LARGE
        assert peak < 4 * limit

    def test_bomb_in_export_sig_is_refused_too(self) -> None:
        export_bin = encode_export_bin(sample_contents())
        bomb_sig = zipfile.ZipFile(io.BytesIO(zip_of_zeros("export.sig", 4 * MIB))).read(
            "export.sig"
        )
        archive = make_zip([("export.bin", export_bin), ("export.sig", bomb_sig)])

        assert format_error_code(archive, max_member_size=MIB) is ExportErrorCode.TOO_LARGE

    def test_a_header_claiming_a_small_size_cannot_smuggle_more(self) -> None:
        bomb = zip_of_zeros("export.bin", 4 * MIB)
        lying = patch_central_directory(bomb, UNCOMPRESSED_SIZE_OFFSET, "<I", 100)

        # zipfile stops at the claimed size, then the CRC of the truncated data fails.
        assert format_error_code(lying) is ExportErrorCode.BAD_ZIP

    def test_bare_export_bin_over_the_limit_is_refused(self) -> None:
        export_bin = encode_export_bin(sample_contents())

        code = format_error_code(export_bin, max_member_size=len(export_bin) - 1)

        assert code is ExportErrorCode.TOO_LARGE
        assert read_export(export_bin, max_member_size=len(export_bin)).export_bin == export_bin


class TestKeyLength:
    def contents_with_bad_keys(self) -> bytes:
        contents = sample_contents(
            keys=(sample_key(1), ExportKey(key_data=b"\xff" * 32)),
            revised_keys=(ExportKey(key_data=bytes(15)),),
        )
        return encode_export_bin(contents, require_key_length=False)

    def test_keys_of_the_wrong_length_are_returned_and_flagged(self) -> None:
        parsed = read_export(self.contents_with_bad_keys())

        assert [len(key.key_data) for key in parsed.contents.keys] == [16, 32]
        assert parsed.key_length_problems == (
            KeyLengthProblem(key_list="keys", index=1, length=32),
            KeyLengthProblem(key_list="revised_keys", index=0, length=15),
        )

    def test_strict_reading_refuses_them(self) -> None:
        code = format_error_code(self.contents_with_bad_keys(), strict_key_length=True)

        assert code is ExportErrorCode.BAD_KEY_LENGTH

    def test_a_key_without_key_data_reads_as_empty_and_is_flagged(self) -> None:
        export_bin = EXPORT_HEADER + b"\x3a\x02\x10\x01"  # keys{transmission_risk_level: 1}

        parsed = read_export(export_bin)

        assert parsed.contents.keys == (ExportKey(key_data=b"", transmission_risk_level=1),)
        assert parsed.key_length_problems == (KeyLengthProblem(key_list="keys", index=0, length=0),)


def test_error_codes_are_stable_strings() -> None:
    assert {code.value for code in ExportErrorCode} == {
        "bad_header",
        "bad_protobuf",
        "bad_zip",
        "too_large",
        "missing_member",
        "duplicate_member",
        "bad_key_length",
        "invalid_contents",
        "invalid_signature",
    }
    error = ExportFormatError(ExportErrorCode.BAD_ZIP, "detail")
    assert str(error) == "bad_zip: detail"


# ---- fields of the first schema: SignatureInfo 1 and 2 ---------------------------------------


def _with_signature_info_fields(raw_fields: bytes) -> bytes:
    """A bare export.bin whose one SignatureInfo also carries ``raw_fields`` (wire bytes)."""
    message = export_pb2.TemporaryExposureKeyExport()
    message.ParseFromString(encode_export_bin(sample_contents())[len(EXPORT_HEADER) :])
    message.signature_infos[0].MergeFromString(raw_fields)
    return EXPORT_HEADER + message.SerializeToString()


def _text_field(number: int, value: bytes) -> bytes:
    return bytes([number << 3 | 2, len(value)]) + value


def test_the_early_schemas_app_bundle_id_and_android_package_are_read() -> None:
    export_bin = _with_signature_info_fields(
        _text_field(1, b"gov.example.ios") + _text_field(2, b"gov.example.android")
    )

    (info,) = read_export(export_bin).contents.signature_infos

    assert info.app_bundle_id == "gov.example.ios"
    assert info.android_package == "gov.example.android"
    assert (info.verification_key_id, info.verification_key_version) == ("310", "v1")


def test_a_file_without_the_early_fields_reads_them_as_absent() -> None:
    (info,) = read_export(encode_export_bin(sample_contents())).contents.signature_infos

    assert (info.app_bundle_id, info.android_package) == (None, None)


def test_early_fields_that_are_not_utf8_are_shown_escaped_not_refused() -> None:
    (info,) = read_export(
        _with_signature_info_fields(_text_field(2, b"pkg\xff"))
    ).contents.signature_infos

    assert info.android_package == "pkg\\xff"


def test_early_fields_of_another_wire_type_are_ignored_and_the_last_copy_wins() -> None:
    varint_field_1 = bytes([1 << 3 | 0, 5])
    export_bin = _with_signature_info_fields(
        varint_field_1 + _text_field(2, b"first") + _text_field(2, b"last")
    )

    (info,) = read_export(export_bin).contents.signature_infos

    assert info.app_bundle_id is None
    assert info.android_package == "last"


def test_the_early_fields_take_no_part_in_equality_and_are_never_written() -> None:
    export_bin = _with_signature_info_fields(_text_field(1, b"gov.example.ios"))
    parsed = read_export(export_bin).contents

    assert parsed.signature_infos == sample_contents().signature_infos
    # Written back without them: today's schema reserves the numbers.
    assert encode_export_bin(parsed) == encode_export_bin(sample_contents())
