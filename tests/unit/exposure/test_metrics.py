"""Metrics that move with single requests are shown only as they stood at the last release;
the others are live."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from exposure.metrics import HeldBackCollector
from keyserver import metrics as keyserver_metrics
from verification import metrics as verification_metrics

HOUR = 3600.0


class Ticks:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _served(source: CollectorRegistry, ticks: Ticks) -> CollectorRegistry:
    served = CollectorRegistry(auto_describe=False)
    served.register(HeldBackCollector(source, ["exposure_keyserver_publish"], HOUR, ticks))
    return served


def _value(registry: CollectorRegistry, name: str) -> float:
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} is not served")


def test_per_request_counters_move_only_at_the_next_release() -> None:
    source = CollectorRegistry()
    publishes = Counter("exposure_keyserver_publish_requests", "p", ["result"], registry=source)
    files = Counter("exposure_keyserver_export_files_written", "f", registry=source)
    publishes.labels("ok").inc(0)
    ticks = Ticks(10 * HOUR + 60)  # one minute past a boundary
    served = _served(source, ticks)

    publishes.labels("ok").inc()
    files.inc()
    ticks.now += 30 * 60

    assert _value(served, "exposure_keyserver_publish_requests_total") == 0
    assert _value(served, "exposure_keyserver_export_files_written_total") == 1

    ticks.now = 11 * HOUR + 5  # past the next boundary: released
    publishes.labels("ok").inc()

    assert _value(served, "exposure_keyserver_publish_requests_total") == 2
    publishes.labels("ok").inc()
    assert _value(served, "exposure_keyserver_publish_requests_total") == 2
    assert b"exposure_keyserver_publish_requests_total" in generate_latest(served)


def test_every_request_metric_of_the_services_is_held_back() -> None:
    # Each name the services declare is a metric they define, and every verification
    # metric (all of them count lab or phone requests) is covered.
    assert all(name.startswith("exposure_keyserver_") for name in keyserver_metrics.PER_REQUEST)
    assert "exposure_keyserver_publish_requests" in keyserver_metrics.PER_REQUEST
    assert "exposure_keyserver_keys" in keyserver_metrics.PER_REQUEST
    assert verification_metrics.PER_REQUEST == ("exposure_verification",)
