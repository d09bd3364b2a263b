"""The RPI benchmark (benchmarks.rpi) and its CLI (``exposure bench rpi``), run small."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from benchmarks import rpi as bench
from crypto import gaen
from exposure.cli import app


def test_generated_keys_look_like_an_export() -> None:
    keys = bench.generate_keys(100)
    assert len(keys) == 100
    assert all(len(tek) == 16 for tek, _ in keys)
    assert len({tek for tek, _ in keys}) == 100
    starts = {start for _, start in keys}
    assert len(starts) == bench.DAYS_OF_KEYS
    assert all((bench.DEFAULT_START_INTERVAL - start) % 144 == 0 for start in starts)


def test_default_start_is_a_midnight() -> None:
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    assert gaen.interval_number(midnight) == bench.DEFAULT_START_INTERVAL


def test_reference_path_equals_the_fast_path() -> None:
    tek, start = bench.generate_keys(1)[0]
    assert bench.reference_rpis(tek, start) == b"".join(
        gaen.rolling_proximity_identifiers(tek, start)
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_benchmark_runs_and_verifies(workers: int) -> None:
    result = bench.run_rpi_benchmark(3_000, workers=workers, sample_size=8)
    assert result.keys == 3_000
    assert result.workers == workers
    assert result.rpis_per_key == 144
    assert result.verified_keys == 8
    assert result.seconds > 0
    assert result.keys_per_second == pytest.approx(3_000 / result.seconds)
    assert result.rpis_per_second == pytest.approx(144 * result.keys_per_second)


def test_a_wrong_fast_path_voids_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(keys: list[tuple[bytes, int]]) -> list[bytes]:
        # Fast and plausible-looking, but derived from the wrong interval.
        return gaen.derive_rpi_blocks([(tek, start + 1) for tek, start in keys])

    monkeypatch.setattr(bench, "derive_rpi_blocks", wrong)
    with pytest.raises(bench.BenchmarkMismatchError):
        bench.run_rpi_benchmark(1_000, workers=1, sample_size=4)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        bench.run_rpi_benchmark(0, workers=1)
    with pytest.raises(ValueError, match="positive"):
        bench.run_rpi_benchmark(10, workers=0)
    with pytest.raises(ValueError, match="positive"):
        bench.run_rpi_benchmark(10, workers=1, sample_size=0)


def test_machine_info() -> None:
    info = bench.machine_info()
    assert info.cores >= 1
    assert info.cpu_model
    assert info.python_version.startswith("3.")


def test_cli_json() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "rpi", "--keys", "1000", "--workers", "1", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    assert report["keys"] == 1000
    assert report["workers"] == 1
    assert report["keys_per_second"] > 0
    assert set(report["machine"]) == {
        "cpu_model",
        "cores",
        "memory_gib",
        "python_version",
        "platform",
    }


def test_cli_text() -> None:
    outcome = CliRunner().invoke(app, ["bench", "rpi", "--keys", "1000", "--workers", "1"])
    assert outcome.exit_code == 0, outcome.output
    assert "keys/second" in outcome.output
    assert "workers       1" in outcome.output


def test_cli_refuses_zero_keys() -> None:
    outcome = CliRunner().invoke(app, ["bench", "rpi", "--keys", "0"])
    assert outcome.exit_code != 0
