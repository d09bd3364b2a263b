from __future__ import annotations

from dataclasses import replace

import pytest

from crypto.signing import FileSigner
from exposure.export import (
    ExportErrorCode,
    ExportSignature,
    InvalidExportSignature,
    SignatureInfo,
    build_export,
    check_signatures,
    encode_export_bin,
    read_export,
    verify_export,
    verify_signatures,
    write_export_zip,
)
from tests.unit.exposure.export.support import SIGNATURE_INFO, sample_contents, signed_archive

NEW_INFO = SignatureInfo(verification_key_id="310", verification_key_version="v2")
OLD_INFO = SignatureInfo(verification_key_id="310", verification_key_version="v1")


def test_a_signed_export_verifies_with_its_key(signer: FileSigner) -> None:
    parsed = read_export(signed_archive(signer))

    assert verify_export(parsed, signer.public_key()) == parsed.signatures[0]


def test_two_signers_both_verify(signer: FileSigner, other_signer: FileSigner) -> None:
    archive = build_export(
        sample_contents(signature_infos=()),
        [
            (NEW_INFO, other_signer),
            (OLD_INFO, signer),
        ],
    )
    parsed = read_export(archive)

    checks = verify_signatures(parsed, [signer.public_key(), other_signer.public_key()])

    assert [check.verified_by for check in checks] == [(1,), (0,)]
    assert all(check.verified for check in checks)
    assert verify_export(parsed, signer.public_key()).signature_info == OLD_INFO
    assert verify_export(parsed, other_signer.public_key()).signature_info == NEW_INFO


def test_a_key_that_did_not_sign_fails(signer: FileSigner, other_signer: FileSigner) -> None:
    parsed = read_export(signed_archive(signer))

    (check,) = verify_signatures(parsed, [other_signer.public_key()])

    assert not check.verified
    with pytest.raises(InvalidExportSignature) as caught:
        verify_export(parsed, other_signer.public_key())
    assert caught.value.code is ExportErrorCode.INVALID_SIGNATURE


def test_tampered_export_bin_fails(signer: FileSigner) -> None:
    parsed = read_export(signed_archive(signer))
    tampered_contents = replace(parsed.contents, region="DE")
    tampered = replace(parsed, export_bin=encode_export_bin(tampered_contents))

    (check,) = verify_signatures(tampered, [signer.public_key()])

    assert not check.verified
    with pytest.raises(InvalidExportSignature):
        verify_export(tampered, signer.public_key())


def test_a_single_flipped_bit_in_export_bin_fails(signer: FileSigner) -> None:
    parsed = read_export(signed_archive(signer))
    flipped = bytearray(parsed.export_bin)
    flipped[-1] ^= 0x01

    assert not verify_signatures(replace(parsed, export_bin=bytes(flipped)), [signer.public_key()])[
        0
    ].verified


def test_the_signature_covers_the_header(signer: FileSigner) -> None:
    export_bin = encode_export_bin(sample_contents())
    without_header_signed = ExportSignature(
        signature_info=SIGNATURE_INFO,
        batch_num=1,
        batch_size=1,
        signature=signer.sign(export_bin[16:]),
    )

    (check,) = check_signatures(export_bin, [without_header_signed], [signer.public_key()])

    assert not check.verified


def test_unsigned_exports_never_pass_verify_export(signer: FileSigner) -> None:
    export_bin = encode_export_bin(sample_contents())

    for data in (export_bin, write_export_zip(export_bin, None), write_export_zip(export_bin, b"")):
        parsed = read_export(data)
        assert verify_signatures(parsed, [signer.public_key()]) == []
        with pytest.raises(InvalidExportSignature):
            verify_export(parsed, signer.public_key())


@pytest.mark.parametrize("signature", [b"", b"\x30\x00", b"not DER at all", bytes(72)])
def test_malformed_signatures_fail_quietly(signer: FileSigner, signature: bytes) -> None:
    garbage = ExportSignature(
        signature_info=None, batch_num=None, batch_size=None, signature=signature
    )

    (check,) = check_signatures(b"message", [garbage], [signer.public_key()])

    assert check.verified_by == ()


def test_opaque_error_says_nothing_about_the_cause() -> None:
    assert (
        str(InvalidExportSignature()) == "invalid_signature: export signature verification failed"
    )
