"""What a benchmark's JSON must say, computed from its own figures."""

from __future__ import annotations


def expected_cost_ratio(spent_ms: float | None, baseline_ms: float | None) -> float | None:
    """The ratio :func:`benchmarks.harness.cost_ratio` must report for these figures.

    A short run can spend less than one clock tick of server CPU on ``/health``: without a
    baseline there is no ratio.
    """
    if spent_ms is None or baseline_ms is None or baseline_ms <= 0:
        return None
    return round(spent_ms / baseline_ms, 2)
