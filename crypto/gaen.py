"""The GAEN key schedule: from a Temporary Exposure Key to what a phone broadcasts.

Implements the Apple/Google *Exposure Notification Cryptography Specification* v1.2:

* ``RPIK = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", L=16)``
* ``AEMK = HKDF-SHA256(TEK, salt=None, info="EN-AEMK", L=16)``
* ``RPI_j = AES-128-ECB(RPIK, "EN-RPI" || 0x000000000000 || ENIN_j as uint32 little endian)``
* ``AEM_j = AES-128-CTR(AEMK, IV=RPI_j, metadata)``
* ``ENIN = floor(unix seconds / 600)``

A phone that downloads an export derives the 144 RPIs of every key and looks them up in what
it heard over Bluetooth, so the batch derivation (:func:`rolling_proximity_identifiers`,
:func:`derive_rpi_blocks`) is the hot path and is written for speed; the one-value functions
are written for clarity and serve as the reference the fast path is tested against.

Example::

    rpik = derive_rpik(tek)
    first = rolling_proximity_identifier(rpik, 2642976)
    assert rolling_proximity_identifiers(tek, 2642976)[0] == first

Every function raises :class:`ValueError` for an input of the wrong length or range; none of
them verifies anything, so none raises a :mod:`crypto.errors` type.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AEM_LENGTH",
    "INTERVAL_LENGTH",
    "KEY_LENGTH",
    "MAX_INTERVAL_COUNT",
    "MAX_INTERVAL_NUMBER",
    "RPI_LENGTH",
    "decrypt_metadata",
    "derive_aemk",
    "derive_rpi_blocks",
    "derive_rpik",
    "derive_rpis_for_keys",
    "encrypt_metadata",
    "interval_number",
    "rolling_proximity_identifier",
    "rolling_proximity_identifiers",
    "rpi_padded_data",
]

#: Length of a TEK, RPIK and AEMK in bytes.
KEY_LENGTH = 16
#: Length of one Rolling Proximity Identifier (one AES block).
RPI_LENGTH = 16
#: Length of the Associated Encrypted Metadata (version, TX power, two reserved bytes).
AEM_LENGTH = 4
#: The ENIN step: one interval is ten minutes.
INTERVAL_LENGTH = timedelta(minutes=10)
#: A TEK is valid for at most 144 intervals (one day), the ``rolling_period`` ceiling.
MAX_INTERVAL_COUNT = 144
#: ENIN is written as an unsigned 32-bit integer into the padded data.
MAX_INTERVAL_NUMBER = 2**32 - 1

_RPIK_INFO = b"EN-RPIK"
_AEMK_INFO = b"EN-AEMK"
_RPI_PREFIX = b"EN-RPI" + bytes(6)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ECB is stateless, so one mode object serves every cipher. ECB is what the specification
# defines: each RPI is one AES block of a distinct plaintext.
_ECB = modes.ECB()  # noqa: S305

# HKDF-SHA256 for a 16-byte output is two HMACs (RFC 5869): PRK = HMAC(salt, TEK) and
# OKM = HMAC(PRK, info || 0x01)[:16]. The salt is "None", which RFC 5869 defines as 32 zero
# bytes, so the inner and outer SHA-256 states of the extract step are the same for every key
# and are computed once here; each key then costs four SHA-256 calls from copied or fresh
# states. RFC 2104: HMAC(K, m) = H((K0 ^ opad) || H((K0 ^ ipad) || m)), with K0 the key
# zero-padded to the 64-byte block. The translation tables XOR every byte with the pads.
# Measured on the benchmark machine this takes about 2.7 us per key, against about 5 us for
# either two hmac.digest calls or cryptography's HKDF object; tests prove all three equal.
_SHA256_BLOCK = 64
_XOR_IPAD = bytes(b ^ 0x36 for b in range(256))
_XOR_OPAD = bytes(b ^ 0x5C for b in range(256))
_EXTRACT_INNER = hashlib.sha256(bytes(_SHA256_BLOCK).translate(_XOR_IPAD))
_EXTRACT_OUTER = hashlib.sha256(bytes(_SHA256_BLOCK).translate(_XOR_OPAD))
_PRK_PADDING = bytes(_SHA256_BLOCK - hashlib.sha256().digest_size)


def _hkdf_sha256_16(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with an empty salt and a 16-byte output, on hashlib (see the note above)."""
    inner = _EXTRACT_INNER.copy()
    inner.update(ikm)
    outer = _EXTRACT_OUTER.copy()
    outer.update(inner.digest())
    prk_block = outer.digest() + _PRK_PADDING
    expand_inner = hashlib.sha256(prk_block.translate(_XOR_IPAD) + info + b"\x01").digest()
    return hashlib.sha256(prk_block.translate(_XOR_OPAD) + expand_inner).digest()[:KEY_LENGTH]


def _hkdf_reference(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info).derive(ikm)


def _check_length(name: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(value)}")


def _check_interval_range(start_interval: int, count: int) -> None:
    if not 1 <= count <= MAX_INTERVAL_COUNT:
        raise ValueError(f"interval count must be between 1 and {MAX_INTERVAL_COUNT}")
    if start_interval < 0 or start_interval + count - 1 > MAX_INTERVAL_NUMBER:
        raise ValueError("interval numbers must fit an unsigned 32-bit integer")


def derive_rpik(tek: bytes) -> bytes:
    """Derive the Rolling Proximity Identifier Key of a 16-byte TEK.

    Raises :class:`ValueError` if ``tek`` is not 16 bytes.
    """
    _check_length("TEK", tek, KEY_LENGTH)
    return _hkdf_reference(tek, _RPIK_INFO)


def derive_aemk(tek: bytes) -> bytes:
    """Derive the Associated Encrypted Metadata Key of a 16-byte TEK.

    Raises :class:`ValueError` if ``tek`` is not 16 bytes.
    """
    _check_length("TEK", tek, KEY_LENGTH)
    return _hkdf_reference(tek, _AEMK_INFO)


def rpi_padded_data(interval: int) -> bytes:
    """Return the 16-byte block that is encrypted into the RPI of ``interval``.

    Raises :class:`ValueError` if ``interval`` does not fit an unsigned 32-bit integer.
    """
    _check_interval_range(interval, 1)
    return _RPI_PREFIX + interval.to_bytes(4, "little")


def rolling_proximity_identifier(rpik: bytes, interval: int) -> bytes:
    """Return the RPI broadcast during ``interval`` under ``rpik`` (one AES block).

    Raises :class:`ValueError` if ``rpik`` is not 16 bytes or ``interval`` is out of range.
    """
    _check_length("RPIK", rpik, KEY_LENGTH)
    encryptor = Cipher(algorithms.AES(rpik), _ECB).encryptor()
    return encryptor.update(rpi_padded_data(interval)) + encryptor.finalize()


@lru_cache(maxsize=4096)
def _padded_blocks(start_interval: int, count: int) -> bytes:
    # Keys of one export share a handful of start intervals (midnights), so the plaintext of
    # all their RPIs is built once per start interval and reused.
    _check_interval_range(start_interval, count)
    return b"".join(
        _RPI_PREFIX + interval.to_bytes(4, "little")
        for interval in range(start_interval, start_interval + count)
    )


@lru_cache(maxsize=MAX_INTERVAL_COUNT)
def _splitter(count: int) -> struct.Struct:
    # One C call cuts the ciphertext into ``count`` bytes objects; a Python slice loop over
    # 144 blocks costs more than the whole AES step.
    return struct.Struct(f"{RPI_LENGTH}s" * count)


def rolling_proximity_identifiers(
    tek: bytes, start_interval: int, count: int = MAX_INTERVAL_COUNT
) -> list[bytes]:
    """Return the ``count`` RPIs of ``tek`` from ``start_interval`` on, in one AES call.

    Equal to ``[rolling_proximity_identifier(derive_rpik(tek), start_interval + i) for i in
    range(count)]``, computed more than a hundred times faster.

    Raises :class:`ValueError` if ``tek`` is not 16 bytes, ``count`` is not in 1..144 or an
    interval does not fit an unsigned 32-bit integer.
    """
    [blocks] = derive_rpi_blocks([(tek, start_interval)], count=count)
    return list(_splitter(count).unpack(blocks))


def derive_rpi_blocks(
    keys: Sequence[tuple[bytes, int]], *, count: int = MAX_INTERVAL_COUNT
) -> list[bytes]:
    """For each ``(tek, start_interval)``, return its ``count`` RPIs as one bytes object.

    Item ``k`` of the result is ``b"".join(rolling_proximity_identifiers(tek_k, start_k,
    count))``: RPI ``i`` of key ``k`` is ``result[k][16 * i : 16 * (i + 1)]``. This is the
    fastest form, for callers that search the blocks (a matcher builds its own index).

    Raises :class:`ValueError` as :func:`rolling_proximity_identifiers` does, for the first
    offending key.
    """
    # The whole fast path, per key: one HKDF, one cipher object, one AES call over all the
    # blocks. ECB needs no finalize: the input is whole blocks and nothing is padded. The
    # loop body is written out (no helper call, names bound locally) because at ~10 us per
    # key even a function call shows in the benchmark.
    result: list[bytes] = []
    append = result.append
    hkdf = _hkdf_sha256_16
    padded_blocks = _padded_blocks
    aes = algorithms.AES
    ecb = _ECB
    info = _RPIK_INFO
    for tek, start_interval in keys:
        if len(tek) != KEY_LENGTH:
            raise ValueError(f"TEK must be {KEY_LENGTH} bytes, got {len(tek)}")
        plaintext = padded_blocks(start_interval, count)
        append(Cipher(aes(hkdf(tek, info)), ecb).encryptor().update(plaintext))
    return result


def derive_rpis_for_keys(
    keys: Sequence[tuple[bytes, int]], *, count: int = MAX_INTERVAL_COUNT
) -> list[list[bytes]]:
    """For each ``(tek, start_interval)``, return the list of its ``count`` RPIs.

    The list-of-lists form of :func:`derive_rpi_blocks`. Cutting the blocks into 16-byte
    objects adds more than half the time of the derivation itself (docs/benchmarks.md), so
    prefer the flat form in bulk.

    Raises :class:`ValueError` as :func:`rolling_proximity_identifiers` does.
    """
    unpack = _splitter(count).unpack
    return [list(unpack(blocks)) for blocks in derive_rpi_blocks(keys, count=count)]


def _ctr(aemk: bytes, rpi: bytes, data: bytes) -> bytes:
    _check_length("AEMK", aemk, KEY_LENGTH)
    _check_length("RPI", rpi, RPI_LENGTH)
    _check_length("metadata", data, AEM_LENGTH)
    cipher = Cipher(algorithms.AES(aemk), modes.CTR(rpi)).encryptor()
    return cipher.update(data) + cipher.finalize()


def encrypt_metadata(aemk: bytes, rpi: bytes, metadata: bytes) -> bytes:
    """Encrypt the 4-byte Bluetooth metadata broadcast with ``rpi`` (AES-128-CTR, IV = RPI).

    Raises :class:`ValueError` for a key or RPI that is not 16 bytes or metadata that is not
    4 bytes.
    """
    return _ctr(aemk, rpi, metadata)


def decrypt_metadata(aemk: bytes, rpi: bytes, aem: bytes) -> bytes:
    """Decrypt an Associated Encrypted Metadata value heard with ``rpi``.

    CTR mode carries no authentication: a modified AEM decrypts to different metadata, it is
    never detected. Raises :class:`ValueError` as :func:`encrypt_metadata` does.
    """
    return _ctr(aemk, rpi, aem)


def interval_number(dt: datetime) -> int:
    """Return the ENIN of ``dt``: whole ten-minute intervals since the Unix epoch.

    Raises :class:`ValueError` if ``dt`` is naive (without a time zone).
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("interval_number needs an aware datetime")
    # timedelta floor division is exact integer arithmetic (no float rounding near a boundary).
    return (dt - _EPOCH) // INTERVAL_LENGTH
