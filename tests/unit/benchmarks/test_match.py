"""The matching benchmark (benchmarks.match) and its CLI (``exposure bench match``), run small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks import match as bench
from exposure.cli import app
from exposure.client import DiagnosisKey, ExportSigningKey, Sighting, SightingIndex, open_export


@pytest.mark.parametrize("workers", [1, 2])
def test_the_benchmark_finds_exactly_the_heard_keys(workers: int) -> None:
    result = bench.run_match_benchmark(2_000, 300, workers=workers, keys_per_file=700, planted=5)

    assert (result.keys, result.files, result.workers) == (2_000, 3, workers)
    assert result.matched_keys == result.planted_keys == 5
    assert result.keys_per_second == pytest.approx(2_000 / result.seconds)
    assert 0 < result.open_seconds < result.seconds
    assert result.cpu_seconds > 0
    assert result.peak_rss_mib >= result.baseline_rss_mib > 0


def test_the_files_are_signed_exports_of_fourteen_days(tmp_path: Path) -> None:
    planted = {3: bytes(range(16))}

    paths = bench._write_files(tmp_path, 50, 20, planted)

    public = ExportSigningKey.from_pem("bench", "v1", (tmp_path / "public.pem").read_bytes())
    exports = [open_export(path.read_bytes(), [public]) for path in paths]
    keys = [key for export in exports for key in export.keys]
    assert [len(export.keys) for export in exports] == [20, 20, 10]
    assert len({key.rolling_start_interval_number for key in keys}) == 14
    assert bytes(range(16)) in {key.key_data for key in keys}


def test_the_sightings_hold_every_planted_key_three_times() -> None:
    planted = {0: bytes(16), 1: bytes(range(16))}

    heard = bench._sightings(100, planted)

    assert len(heard) == 100
    assert heard == sorted(heard, key=lambda sighting: sighting.time)
    keys = [DiagnosisKey(data, bench._start_of(position)) for position, data in planted.items()]
    hits = SightingIndex(heard).hits(keys)
    assert [hit.key for hit in hits].count(0) == bench.SIGHTINGS_PER_PLANTED_KEY
    assert [hit.key for hit in hits].count(1) == bench.SIGHTINGS_PER_PLANTED_KEY


def test_a_planted_key_not_found_voids_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench._sightings

    def without_planted(count: int, planted: dict[int, bytes]) -> list[Sighting]:
        # The phone heard none of the planted keys, so a correct matcher finds none of them,
        # which the benchmark must not count as a valid run.
        return real(count, {})

    monkeypatch.setattr(bench, "_sightings", without_planted)

    with pytest.raises(bench.MatchMismatchError):
        bench.run_match_benchmark(500, 100, workers=1, planted=3)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        bench.run_match_benchmark(0, 100)
    with pytest.raises(ValueError, match="positive"):
        bench.run_match_benchmark(100, 100, workers=0)
    with pytest.raises(ValueError, match="per planted key"):
        bench.run_match_benchmark(100, 10, planted=5)


def test_cli_json() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "match", "--keys", "1000", "--sightings", "200", "--workers", "1", "--json"]
    )

    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    assert (report["keys"], report["sightings"], report["workers"]) == (1000, 200, 1)
    assert report["matched_keys"] == report["planted_keys"]
    assert report["keys_per_second"] > 0


def test_cli_text() -> None:
    outcome = CliRunner().invoke(
        app, ["bench", "match", "--keys", "1000", "--sightings", "200", "--workers", "1"]
    )

    assert outcome.exit_code == 0, outcome.output
    assert "keys/second" in outcome.output
    assert "found         20 of 20 heard keys" in outcome.output


def test_cli_refuses_too_few_sightings() -> None:
    outcome = CliRunner().invoke(app, ["bench", "match", "--keys", "1000", "--sightings", "5"])

    assert outcome.exit_code == 2
