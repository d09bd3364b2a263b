"""The export benchmark runs the real worker and checks what it wrote (speed is not asserted)."""

from __future__ import annotations

import pytest

from benchmarks.export import run_export_benchmark
from benchmarks.harness import Database
from tests.conftest import postgres_base_url


@pytest.mark.parametrize(
    "database", [Database.SQLITE, pytest.param(Database.POSTGRESQL, marks=pytest.mark.postgres)]
)
def test_every_seeded_key_is_exported_and_timed(database: Database) -> None:
    url = postgres_base_url() if database is Database.POSTGRESQL else None

    result = run_export_benchmark(keys=1_500, database=database, postgres_url=url)

    assert result.files == 1
    # 1,500 keys need no padding (the minimum is 1,000), so the file holds exactly them.
    assert result.keys_in_files == 1_500
    assert result.export_seconds > 0
    assert result.select_seconds > 0
    assert result.export_peak_mb >= result.baseline_peak_mb > 0
    assert {"select", "zip", "sign"} <= set(result.phases)


def test_a_benchmark_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run_export_benchmark(keys=0, database=Database.SQLITE)
