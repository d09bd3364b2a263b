"""``exposure export inspect`` through typer's test runner, on files built by the writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from crypto.signing import FileSigner
from exposure.cli.export import export_app
from exposure.export import (
    EXPORT_HEADER,
    ExportKey,
    SignatureInfo,
    build_export,
    encode_export_bin,
    write_export_zip,
)
from exposure.export.proto import export_pb2
from tests.unit.exposure.export.support import sample_contents, sample_key, signed_archive


@pytest.fixture
def signer_pem(tmp_path: Path, signer: FileSigner) -> Path:
    path = tmp_path / "signer.pem"
    path.write_bytes(signer.public_key_pem())
    return path


@pytest.fixture
def other_pem(tmp_path: Path, other_signer: FileSigner) -> Path:
    path = tmp_path / "other.pem"
    path.write_bytes(other_signer.public_key_pem())
    return path


@pytest.fixture
def signed_zip(tmp_path: Path, signer: FileSigner) -> Path:
    path = tmp_path / "signed.zip"
    path.write_bytes(signed_archive(signer))
    return path


def inspect(*arguments: str | Path) -> Result:
    return CliRunner().invoke(export_app, ["inspect", *map(str, arguments)])


def test_human_output_shows_the_window_region_batch_and_counts(signed_zip: Path) -> None:
    result = inspect(signed_zip)

    assert result.exit_code == 0, result.output
    for expected in (
        "1605818700",
        "2020-11-19T20:45:00Z",
        "1605819000",
        "2020-11-19T20:50:00Z",
        "US",
        "1/1",
        "310",
        "v1",
        "1.2.840.10045.4.3.2",
        "not checked",
    ):
        assert expected in result.stdout


def test_json_output_reports_everything(signed_zip: Path, signer_pem: Path) -> None:
    result = inspect(signed_zip, "--public-key", signer_pem, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["start_timestamp"] == 1_605_818_700
    assert report["start_time"] == "2020-11-19T20:45:00Z"
    assert report["end_time"] == "2020-11-19T20:50:00Z"
    assert report["region"] == "US"
    assert (report["batch_num"], report["batch_size"]) == (1, 1)
    assert report["key_count"] == 3
    assert report["revised_key_count"] == 1
    assert report["key_length_problems"] == []
    assert report["signature_infos"] == [
        {
            "verification_key_id": "310",
            "verification_key_version": "v1",
            "signature_algorithm": "1.2.840.10045.4.3.2",
            "app_bundle_id": None,
            "android_package": None,
        }
    ]
    assert report["signatures"][0]["verified_by"] == [str(signer_pem)]
    assert report["verification"] == "passed"


def test_wrong_key_exits_1(signed_zip: Path, other_pem: Path) -> None:
    result = inspect(signed_zip, "-k", other_pem)

    assert result.exit_code == 1
    assert "FAILED" in result.stdout


def test_any_of_several_keys_may_verify(
    signed_zip: Path, signer_pem: Path, other_pem: Path
) -> None:
    result = inspect(signed_zip, "-k", other_pem, "-k", signer_pem, "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["signatures"][0]["verified_by"] == [str(signer_pem)]


def test_every_signature_must_verify(
    tmp_path: Path, signer: FileSigner, other_signer: FileSigner, signer_pem: Path
) -> None:
    path = tmp_path / "two.zip"
    contents = sample_contents(signature_infos=())
    path.write_bytes(
        build_export(
            contents,
            [
                (SignatureInfo(verification_key_id="a"), signer),
                (SignatureInfo(verification_key_id="b"), other_signer),
            ],
        )
    )

    assert inspect(path, "-k", signer_pem).exit_code == 1


def test_unsigned_file_with_keys_exits_1(tmp_path: Path, signer_pem: Path) -> None:
    path = tmp_path / "unsigned.zip"
    path.write_bytes(write_export_zip(encode_export_bin(sample_contents()), b""))

    result = inspect(path, "-k", signer_pem, "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["verification"] == "failed"


def test_unsigned_file_without_keys_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "export.bin"
    path.write_bytes(encode_export_bin(sample_contents()))

    result = inspect(path, "--json")

    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["container"] == "bin"
    assert report["signatures"] == []
    assert report["verification"] == "not_requested"


def test_key_length_problems_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad-keys.bin"
    contents = sample_contents(keys=(sample_key(1), ExportKey(key_data=b"\xff" * 32)))
    path.write_bytes(encode_export_bin(contents, require_key_length=False))

    result = inspect(path, "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["key_length_problems"] == [
        {"list": "keys", "index": 1, "length": 32}
    ]
    assert "keys[1]=32 bytes" in inspect(path).stdout


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"PK\x03\x04garbage", b"EK Export v1    \xff\xff"]
)
def test_unparsable_file_exits_2_with_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(content)

    result = inspect(path)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot parse")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = inspect(tmp_path / "absent.zip")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read")


def test_bad_public_key_exits_2(signed_zip: Path, tmp_path: Path) -> None:
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("not a key")

    result = inspect(signed_zip, "-k", not_a_key)

    assert result.exit_code == 2
    assert "not a P-256 public key" in result.stderr


def test_text_from_the_file_cannot_inject_markup_or_escapes(tmp_path: Path) -> None:
    path = tmp_path / "hostile.bin"
    contents = sample_contents(region="[bold]X[/bold]\x1b[31m")
    path.write_bytes(encode_export_bin(contents))

    result = inspect(path)

    assert result.exit_code == 0
    assert "[bold]X[/bold]" in result.stdout
    assert "\x1b" not in result.stdout
    assert "\\x1b[31m" in result.stdout


def _early_schema_file(tmp_path: Path) -> Path:
    """A bare export.bin whose signature info carries the first schema's fields 1 and 2."""
    message = export_pb2.TemporaryExposureKeyExport()
    message.ParseFromString(encode_export_bin(sample_contents())[len(EXPORT_HEADER) :])
    message.signature_infos[0].MergeFromString(
        b"\x0a\x0fgov.example.ios" + b"\x12\x13gov.example.android"
    )
    path = tmp_path / "early.bin"
    path.write_bytes(EXPORT_HEADER + message.SerializeToString())
    return path


def test_the_early_schemas_app_bundle_id_and_android_package_are_shown(tmp_path: Path) -> None:
    result = inspect(_early_schema_file(tmp_path))

    assert result.exit_code == 0, result.output
    assert "early-schema signature info fields" in result.stdout
    assert "gov.example.ios" in result.stdout
    assert "gov.example.android" in result.stdout


def test_the_early_schemas_fields_are_in_the_json_report(tmp_path: Path) -> None:
    result = inspect(_early_schema_file(tmp_path), "--json")

    assert result.exit_code == 0, result.output
    (info,) = json.loads(result.stdout)["signature_infos"]
    assert info["app_bundle_id"] == "gov.example.ios"
    assert info["android_package"] == "gov.example.android"


def test_a_file_without_the_early_fields_shows_no_table_for_them(signed_zip: Path) -> None:
    result = inspect(signed_zip)

    assert result.exit_code == 0, result.output
    assert "early-schema" not in result.stdout
