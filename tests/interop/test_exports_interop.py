"""Real export files from deployed GAEN systems, read and verified by exposure.export.

Every figure comes from ../shared/interop (never copied here): exports/expected.json for the
decoded contents and signature expectations, keys/ for the published public keys, and the
reference server's example signing key pair for the byte-for-byte writer check.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from crypto.signing import FileSigner, load_public_key, verify_signature
from exposure.export import (
    EXPORT_HEADER,
    ExportContainer,
    ExportErrorCode,
    ExportFormatError,
    ExportKey,
    InvalidExportSignature,
    ParsedExport,
    check_signatures,
    encode_export_bin,
    parse_signature_list,
    read_export,
    read_export_file,
    sign_export,
    verify_export,
    verify_signatures,
    write_export_zip,
)
from tests.interop import INTEROP_DIR, interop_path

pytestmark = pytest.mark.interop

EXPECTED = "exports/expected.json"
CWA_KEYS_ZIP = "exports/corona-warn-app_cwa-app-android__test_resources__keys.zip"
CWA_PROD_KEY = "keys/corona-warn-app_cwa-app-android__262-v1_prod.pem"
REFERENCE_EXPORT = (
    "exports/google_exposure-notifications-server__examples_export__testExport-2-records-1-of-1.zip"
)
EXAMPLE_KEY_DIR = "example-signing-key"
CWA_SIGNATURE_VECTOR = "cwa_appconfig_signature_vector.json"
# Files written by the reference Go server: re-encoding them must give identical bytes.
REFERENCE_SERVER_EXPORTS = (
    "exports/google_exposure-notifications-server__1605818700-1605819000-0001-ff23e2-1cc99f7c.zip",
    "exports/google_exposure-notifications-server__examples_export__sample-export-ec32f66d.zip",
    "exports/google_exposure-notifications-server__examples_export__testExport-2-records-1-of-1-3e2c4e35.zip",
    REFERENCE_EXPORT,
    "exports/google_exposure-notifications-internals__app_raw__sample_diagnosis_key_file.zip",
)


def expected_cases() -> list[Any]:
    """One case per expected.json entry; a single placeholder when the folder is absent."""
    path = INTEROP_DIR / EXPECTED
    if not path.exists():
        # The placeholder calls interop_path, which skips locally and fails under CI=true.
        return [pytest.param(None, id="interop-folder-absent")]
    entries = json.loads(path.read_text())
    return [pytest.param(entry, id=entry["file"]) for entry in entries]


def published_keys() -> dict[str, EllipticCurvePublicKey]:
    return {
        f"keys/{pem.name}": load_public_key(pem.read_bytes())
        for pem in sorted(interop_path("keys").glob("*.pem"))
    }


def read_interop_export(relative: str) -> ParsedExport:
    return read_export_file(interop_path(relative))


@pytest.mark.parametrize("entry", expected_cases())
def test_export_decodes_to_the_expected_figures(entry: dict[str, Any] | None) -> None:
    interop_path(EXPECTED)
    assert entry is not None
    path = interop_path(f"exports/{entry['file']}")
    if not entry["header_ok"]:
        with pytest.raises(ExportFormatError) as caught:
            read_export_file(path)
        assert caught.value.code is ExportErrorCode.BAD_HEADER
        return

    parsed = read_export_file(path)
    contents = parsed.contents

    assert parsed.export_bin[: len(EXPORT_HEADER)] == EXPORT_HEADER
    assert contents.region == entry["region"]
    assert contents.start_timestamp == entry["start"]
    assert contents.end_timestamp == entry["end"]
    assert f"{contents.batch_num}/{contents.batch_size}" == entry["batch"]
    assert len(contents.keys) == entry["keys"]
    assert len(contents.revised_keys) == entry["revised"]
    lengths = {len(key.key_data) for key in (*contents.keys, *contents.revised_keys)}
    assert lengths == set(entry["key_lengths"])
    # Keys that are not 16 bytes are flagged, never a crash, and strict reading refuses them.
    assert bool(parsed.key_length_problems) == (lengths != {16})
    if parsed.key_length_problems:
        with pytest.raises(ExportFormatError) as caught:
            read_export_file(path, strict_key_length=True)
        assert caught.value.code is ExportErrorCode.BAD_KEY_LENGTH


@pytest.mark.parametrize("entry", expected_cases())
def test_export_signatures_match_the_expectation(entry: dict[str, Any] | None) -> None:
    interop_path(EXPECTED)
    assert entry is not None
    parsed = read_interop_export(f"exports/{entry['file']}")
    keys = published_keys()
    names = list(keys)
    checks = verify_signatures(parsed, list(keys.values()))
    verifying = {names[index] for check in checks for index in check.verified_by}
    expectation: str = entry["signature"]

    if expectation.startswith("verifies with "):
        listed = [name.strip() for name in expectation.removeprefix("verifies with ").split(",")]
        assert parsed.is_signed
        for name in listed:
            assert name in verifying, f"{name} does not verify {entry['file']}"
            verify_export(parsed, keys[name])
    elif expectation == "signed, no published key verifies it":
        assert parsed.is_signed
        assert verifying == set()
        for key in keys.values():
            with pytest.raises(InvalidExportSignature):
                verify_export(parsed, key)
    elif expectation == "empty export.sig":
        assert parsed.has_signature_file
        assert parsed.signatures == ()
    elif expectation == "none (bare export.bin)":
        assert not parsed.has_signature_file
        assert parsed.signatures == ()
    else:
        pytest.fail(f"unknown signature expectation {expectation!r}: extend this test")


def test_cwa_export_fails_with_the_cwa_production_key() -> None:
    parsed = read_interop_export(CWA_KEYS_ZIP)
    production_key = load_public_key(interop_path(CWA_PROD_KEY).read_bytes())

    assert parsed.is_signed
    assert not any(check.verified for check in verify_signatures(parsed, [production_key]))
    with pytest.raises(InvalidExportSignature):
        verify_export(parsed, production_key)


def test_dutch_archives_carry_an_extra_member_that_is_tolerated() -> None:
    parsed = read_interop_export(
        "exports/minvws_nl-covid19-notification-app-backend__tests_unit_EksEngine.Tests_"
        "Resources__ProtobufHeaderTestFile.zip"
    )

    assert parsed.extra_members == ("content.sig",)
    assert parsed.container is ExportContainer.ZIP


# Early files carry the first schema's SignatureInfo fields 1 (app_bundle_id) and 2
# (android_package), reserved since: (export.bin's, export.sig's) values per file.
EARLY_SCHEMA_FIELDS = [
    (CWA_KEYS_ZIP, ("de.rki.coronawarnapp-dev", "de.rki.coronawarnapp.dev"), True),
    (
        "exports/google_exposure-notifications-android__network_raw__sample_diagnosis_key_file-"
        "174cf0da.zip",
        (None, "com.google.android.apps.exposurenotification"),
        True,
    ),
    (
        "exports/google_exposure-notifications-internals__app_raw__export.bin",
        (None, "com.google.android.apps.exposurenotification"),
        False,
    ),
    (
        "exports/lombax85_immuniprotobuf__export.bin",
        ("it.ministerodellasalute.immuni", None),
        False,
    ),
    (
        "exports/minvws_nl-covid19-notification-app-backend__Testautomation_util_temp__eks-"
        "22dbb2b9.zip",
        ("nl.rijksoverheid.en.test", None),
        True,
    ),
]


@pytest.mark.parametrize(("relative", "fields", "in_signature"), EARLY_SCHEMA_FIELDS)
def test_early_files_keep_their_app_bundle_id_and_android_package(
    relative: str, fields: tuple[str | None, str | None], in_signature: bool
) -> None:
    parsed = read_interop_export(relative)

    (info,) = parsed.contents.signature_infos
    assert (info.app_bundle_id, info.android_package) == fields
    if in_signature:
        (signature,) = parsed.signatures
        assert signature.signature_info is not None
        assert (
            signature.signature_info.app_bundle_id,
            signature.signature_info.android_package,
        ) == fields


def test_files_of_todays_schema_have_no_early_fields() -> None:
    (info,) = read_interop_export(REFERENCE_EXPORT).contents.signature_infos

    assert (info.app_bundle_id, info.android_package) == (None, None)


def test_installed_cli_shows_the_cwa_files_early_fields() -> None:
    command = [str(Path(sys.executable).with_name("exposure")), "export", "inspect"]
    command += [str(interop_path(CWA_KEYS_ZIP)), "--json"]

    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    (info,) = report["signature_infos"]
    assert info["app_bundle_id"] == "de.rki.coronawarnapp-dev"
    assert info["android_package"] == "de.rki.coronawarnapp.dev"
    assert report["signatures"][0]["signature_info"]["android_package"] == (
        "de.rki.coronawarnapp.dev"
    )


@pytest.mark.parametrize("relative", REFERENCE_SERVER_EXPORTS)
def test_reference_server_exports_re_encode_byte_for_byte(relative: str) -> None:
    parsed = read_interop_export(relative)

    assert encode_export_bin(parsed.contents) == parsed.export_bin


def example_keys() -> tuple[ExportKey, ...]:
    """The v1 publish body of the reference server's example, as export keys."""
    body = json.loads(interop_path(f"{EXAMPLE_KEY_DIR}/gaen_example_export_keys.json").read_text())
    return tuple(
        ExportKey(
            key_data=base64.b64decode(key["key"]),
            transmission_risk_level=key["transmissionRisk"],
            rolling_start_interval_number=key["rollingStartNumber"],
            rolling_period=key["rollingPeriod"],
        )
        for key in body["temporaryExposureKeys"]
    )


def test_example_keys_re_encode_to_the_reference_export_bin_and_sign() -> None:
    reference = read_interop_export(REFERENCE_EXPORT)
    # Window, region, batch and signature info come from the reference file; keys from JSON.
    contents = replace(reference.contents, keys=example_keys(), revised_keys=())

    export_bin = encode_export_bin(contents)

    assert export_bin == reference.export_bin

    signer = FileSigner.from_file(
        interop_path(f"{EXAMPLE_KEY_DIR}/gaen_example_export_private.pem")
    )
    public_key = load_public_key(
        interop_path(f"{EXAMPLE_KEY_DIR}/gaen_example_export_public.pem").read_bytes()
    )
    (signature_info,) = contents.signature_infos
    archive = write_export_zip(export_bin, sign_export(export_bin, [(signature_info, signer)]))
    parsed = read_export(archive)

    assert parsed.export_bin == reference.export_bin
    assert parsed.contents == reference.contents
    signature = verify_export(parsed, public_key)
    verify_signature(public_key, export_bin, signature.signature)
    (reference_signature,) = reference.signatures
    assert signature.signature_info == reference_signature.signature_info
    assert (signature.batch_num, signature.batch_size) == (1, 1)
    # And the reference file's own signature verifies with the same example key.
    verify_export(reference, public_key)


def test_cwa_appconfig_signature_list_parses_and_verifies() -> None:
    vector = json.loads(interop_path(CWA_SIGNATURE_VECTOR).read_text())
    pem_key = load_public_key(interop_path(vector["public_key_pem_file"]).read_bytes())
    spki_key = load_public_key(
        b"-----BEGIN PUBLIC KEY-----\n"
        + vector["public_key_b64_spki"].encode("ascii")
        + b"\n-----END PUBLIC KEY-----\n"
    )
    assert pem_key.public_numbers() == spki_key.public_numbers()
    signed_data = bytes.fromhex(vector["signed_data_hex"])

    (signature,) = parse_signature_list(bytes.fromhex(vector["tek_signature_list_hex"]))

    decoded = vector["decoded_signature"]
    assert signature.signature_info is not None
    info = decoded["signature_info"]
    assert signature.signature_info.verification_key_version == info["verification_key_version"]
    assert signature.signature_info.verification_key_id == info["verification_key_id"]
    assert signature.signature_info.signature_algorithm == info["signature_algorithm"]
    assert (signature.batch_num, signature.batch_size) == (
        decoded["batch_num"],
        decoded["batch_size"],
    )
    assert signature.signature.hex() == decoded["signature_der_hex"]

    (check,) = check_signatures(signed_data, [signature], [pem_key])
    assert check.verified is vector["expected_verify"]
    # The source test's negative cases: another blob fails, a garbage list does not parse.
    (wrong_blob,) = check_signatures(b"123ABC", [signature], [pem_key])
    assert not wrong_blob.verified
    with pytest.raises(ExportFormatError) as caught:
        parse_signature_list(b"123ABC")
    assert caught.value.code is ExportErrorCode.BAD_PROTOBUF


@pytest.mark.parametrize(
    ("relative", "key", "exit_code"),
    [
        (
            REFERENCE_EXPORT,
            "keys/google_exposure-notifications-server__examples_export__public.pem",
            0,
        ),
        (CWA_KEYS_ZIP, CWA_PROD_KEY, 1),
        ("exports/google_exposure-notifications-internals__app_raw__export.bin", None, 0),
        (EXPECTED, None, 2),
    ],
)
def test_installed_cli_inspects_interop_files(
    relative: str, key: str | None, exit_code: int
) -> None:
    command = [str(Path(sys.executable).with_name("exposure")), "export", "inspect"]
    command += [str(interop_path(relative)), "--json"]
    if key is not None:
        command += ["--public-key", str(interop_path(key))]

    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert completed.returncode == exit_code, completed.stderr
    if exit_code == 2:
        assert completed.stderr.startswith("error: cannot parse")
        assert "Traceback" not in completed.stderr
    else:
        expected_region = "DE" if relative == CWA_KEYS_ZIP else "US"
        assert json.loads(completed.stdout)["region"] == expected_region
