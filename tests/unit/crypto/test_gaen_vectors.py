"""Known answers: the Apple/Google Exposure Notification cryptography test vectors (v1.2).

The vectors are read from ``../shared/interop/gaen_crypto_vectors.json`` (never copied here):
one TEK with its RPIK, AEMK and all 144 RPIs and AEMs, plus an independent second vector.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from crypto import gaen
from tests.interop import interop_path

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(interop_path("gaen_crypto_vectors.json").read_text())
    return data


def test_the_file_holds_a_full_day_of_intervals(vectors: dict[str, Any]) -> None:
    # Guard against a truncated file that would make the loops below check nothing.
    assert len(vectors["intervals"]) == gaen.MAX_INTERVAL_COUNT
    assert vectors["tek_rolling_period"] == gaen.MAX_INTERVAL_COUNT
    assert len(vectors["secondary_vectors"]) >= 1


def test_key_derivation(vectors: dict[str, Any]) -> None:
    tek = bytes.fromhex(vectors["tek_hex"])
    assert gaen.derive_rpik(tek).hex() == vectors["rpik_hex"]
    assert gaen.derive_aemk(tek).hex() == vectors["aemk_hex"]


def test_interval_number_of_the_key_generation_time(vectors: dict[str, Any]) -> None:
    generated = datetime.fromtimestamp(vectors["key_generation_unix_seconds"], tz=UTC)
    assert gaen.interval_number(generated) == vectors["rolling_start_interval_number"]


def test_every_interval_one_by_one(vectors: dict[str, Any]) -> None:
    tek = bytes.fromhex(vectors["tek_hex"])
    rpik = gaen.derive_rpik(tek)
    aemk = gaen.derive_aemk(tek)
    metadata = bytes.fromhex(vectors["bluetooth_metadata_hex"])
    for number, interval in enumerate(vectors["intervals"]):
        assert interval["index"] == number
        assert interval["enin"] == vectors["rolling_start_interval_number"] + number
        assert gaen.rpi_padded_data(interval["enin"]).hex() == interval["padded_data_hex"]
        rpi = gaen.rolling_proximity_identifier(rpik, interval["enin"])
        assert rpi.hex() == interval["rpi_hex"]
        aem = gaen.encrypt_metadata(aemk, rpi, metadata)
        assert aem.hex() == interval["aem_hex"]
        assert gaen.decrypt_metadata(aemk, rpi, aem) == metadata


def test_every_interval_in_one_batch(vectors: dict[str, Any]) -> None:
    tek = bytes.fromhex(vectors["tek_hex"])
    start = vectors["rolling_start_interval_number"]
    expected = [interval["rpi_hex"] for interval in vectors["intervals"]]

    assert [rpi.hex() for rpi in gaen.rolling_proximity_identifiers(tek, start)] == expected
    [nested] = gaen.derive_rpis_for_keys([(tek, start)])
    assert [rpi.hex() for rpi in nested] == expected
    [flat] = gaen.derive_rpi_blocks([(tek, start)])
    assert flat.hex() == "".join(expected)


def test_secondary_vectors(vectors: dict[str, Any]) -> None:
    for vector in vectors["secondary_vectors"]:
        tek = bytes.fromhex(vector["tek_hex"])
        rpik = gaen.derive_rpik(tek)
        aemk = gaen.derive_aemk(tek)
        assert rpik.hex() == vector["rpik_hex"]
        assert aemk.hex() == vector["aemk_hex"]
        metadata = bytes.fromhex(vector["bluetooth_metadata_hex"])
        start = vector["rolling_start_interval_number"]
        batch = gaen.rolling_proximity_identifiers(tek, start)
        assert vector["intervals"]
        for interval in vector["intervals"]:
            enin = interval["enin"]
            assert gaen.rpi_padded_data(enin).hex() == interval["padded_data_hex"]
            rpi = gaen.rolling_proximity_identifier(rpik, enin)
            assert rpi.hex() == interval["rpi_hex"]
            assert batch[enin - start] == rpi
            assert gaen.encrypt_metadata(aemk, rpi, metadata).hex() == interval["aem_hex"]
