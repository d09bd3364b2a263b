"""Hostile input: every byte string either parses or raises ExportFormatError, nothing else.

The seeds are a small signed zip and its export.bin; hypothesis flips bits, truncates,
inserts, deletes and overwrites bytes, so the mutants reach the zip directory, the deflate
stream, the CRC, the header and every protobuf field. Verification runs on whatever parses,
because a mangled export.sig must not crash the signature check either.
"""

from __future__ import annotations

import contextlib
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.signing import FileSigner
from exposure.export import (
    EXPORT_HEADER,
    ExportFormatError,
    encode_export_bin,
    parse_signature_list,
    read_export,
    sign_export,
    verify_signatures,
    write_export_zip,
)
from tests.unit.exposure.export.support import SIGNATURE_INFO, sample_contents

FUZZ_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# Small enough that a mutated size field cannot make a run slow, large enough for the seeds.
MEMBER_LIMIT = 64 * 1024


@cache
def seed_signer() -> FileSigner:
    return FileSigner.generate()


@cache
def seed_export_bin() -> bytes:
    return encode_export_bin(sample_contents())


@cache
def seed_export_sig() -> bytes:
    return sign_export(seed_export_bin(), [(SIGNATURE_INFO, seed_signer())])


@cache
def seed_zip() -> bytes:
    return write_export_zip(seed_export_bin(), seed_export_sig())


@st.composite
def mutations_of(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        position = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=16))]
        elif kind == "overwrite" and data:
            patch = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(patch)] = patch
    return bytes(data)


def parses_or_refuses(data: bytes) -> None:
    try:
        parsed = read_export(data, max_member_size=MEMBER_LIMIT)
    except ExportFormatError:
        return
    verify_signatures(parsed, [seed_signer().public_key()])


@FUZZ_SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    parses_or_refuses(data)


@FUZZ_SETTINGS
@given(st.sampled_from([b"PK\x03\x04", b"PK\x05\x06", EXPORT_HEADER]), st.binary(max_size=512))
def test_random_bytes_behind_a_valid_signature(prefix: bytes, data: bytes) -> None:
    parses_or_refuses(prefix + data)


@FUZZ_SETTINGS
@given(st.data())
def test_mutated_zip(data: st.DataObject) -> None:
    parses_or_refuses(data.draw(mutations_of(seed_zip())))


@FUZZ_SETTINGS
@given(st.data())
def test_mutated_export_bin(data: st.DataObject) -> None:
    parses_or_refuses(data.draw(mutations_of(seed_export_bin())))


@FUZZ_SETTINGS
@given(st.data())
def test_mutated_export_sig(data: st.DataObject) -> None:
    mutant = data.draw(mutations_of(seed_export_sig()))
    with contextlib.suppress(ExportFormatError):
        parse_signature_list(mutant)
