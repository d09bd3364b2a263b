"""Where Prometheus metrics are served, and which of them wait before they are shown.

Two rules keep metrics from undoing what padding and chaff hide (docs/privacy.md):

- **Not on the public port.** ``exposure serve`` answers no ``/metrics``; metrics have a
  listener of their own (``EXPOSURE_METRICS_HOST``:``EXPOSURE_METRICS_PORT``, by default
  127.0.0.1:9464), which only the operator's monitoring should reach.
- **Per-request counters are released once per interval.** A counter that moves with one
  publish, one code or one certificate would tell whoever reads it which of the requests
  they saw on the network was real and which was chaff. Each service names its metrics of
  that kind (its bundle's ``per_request_metrics``); they are shown as they stood at the
  last release, taken on the first scrape after each interval boundary (by default the
  hour, the precision every stored time already has). Everything else (jobs, exports,
  purges, the process) is live.

With several worker processes the parent serves the metrics of all of them
(prometheus-client's multiprocess mode, in a directory made for the run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["HeldBackCollector", "metrics_registry", "serve_metrics"]


class HeldBackCollector(Collector):
    """``source``'s metrics: those whose name starts with one of ``held`` as they stood at
    the last release (at most one per ``interval_seconds``, on a boundary of it), the rest
    as they are now."""

    def __init__(
        self,
        source: Collector,
        held: Sequence[str],
        interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._held = tuple(held)
        self._interval = interval_seconds
        self._clock = clock
        self._released: list[Metric] = self._held_now()
        self._next_release = self._boundary_after(clock())

    def _is_held(self, metric: Metric) -> bool:
        return metric.name.startswith(self._held)

    def _held_now(self) -> list[Metric]:
        return [metric for metric in self._source.collect() if self._is_held(metric)]

    def _boundary_after(self, moment: float) -> float:
        return (moment // self._interval + 1) * self._interval

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        if now >= self._next_release:
            self._released = self._held_now()
            self._next_release = self._boundary_after(now)
        live = [metric for metric in self._source.collect() if not self._is_held(metric)]
        return [*live, *self._released]


def metrics_registry(
    held: Sequence[str], interval_seconds: float, multiprocess_directory: str | None = None
) -> CollectorRegistry:
    """The registry the metrics listener serves: this process's metrics, or (with
    ``multiprocess_directory``) those every worker process wrote there."""
    source: Collector = REGISTRY
    if multiprocess_directory is not None:
        workers = CollectorRegistry()
        MultiProcessCollector(workers, path=multiprocess_directory)  # type: ignore[no-untyped-call]
        source = workers
    served = CollectorRegistry(auto_describe=False)
    served.register(HeldBackCollector(source, held, interval_seconds))
    return served


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on ``host:port`` from a thread of this process."""
    start_http_server(port, addr=host, registry=registry)
