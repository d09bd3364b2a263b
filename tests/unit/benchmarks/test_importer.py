"""The import benchmark runs the real export and import and checks what was stored (speed is
not asserted)."""

from __future__ import annotations

import pytest

from benchmarks.harness import Database
from benchmarks.importer import run_import_benchmark
from tests.conftest import postgres_base_url


@pytest.mark.parametrize(
    "database", [Database.SQLITE, pytest.param(Database.POSTGRESQL, marks=pytest.mark.postgres)]
)
def test_every_exported_key_is_imported_and_timed(database: Database) -> None:
    url = postgres_base_url() if database is Database.POSTGRESQL else None

    result = run_import_benchmark(keys=1_500, database=database, postgres_url=url)

    assert (result.files, result.keys_stored) == (1, 1_500)  # no padding above 1,000 keys
    assert result.import_seconds > 0
    assert result.export_seconds > 0
    assert result.import_peak_mb >= result.baseline_peak_mb > 0
    assert result.export_ratio == pytest.approx(result.import_seconds / result.export_seconds)
    if database is Database.POSTGRESQL:
        assert result.write_floor_seconds is not None
        assert result.write_floor_seconds > 0
        assert result.floor_ratio == pytest.approx(
            result.import_seconds / result.write_floor_seconds
        )
    else:
        assert (result.write_floor_seconds, result.floor_ratio) == (None, None)


def test_a_benchmark_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_import_benchmark(keys=0, database=Database.SQLITE)
