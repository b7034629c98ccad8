"""Prometheus metrics of the service, correct however many processes execute items.

How multi-process works here: nothing relies on process-local counters for what executors do.
- Embedded mode: the API process is the executor; the collector reads the engine's own
  counters and pool gauges at scrape time.
- Distributed mode: every `azr-verify worker` adds its counts to one Redis hash (HINCRBY, so
  they sum across processes and survive a worker's death) and publishes its pool gauges in a
  per-worker hash with a TTL; the API reads them at scrape time (queue/telemetry.py). Prometheus
  scrapes only the API, whose own request-latency histogram is process-local (one API process
  per pod; scrape each pod). Every API replica reports the same Redis-wide executor values,
  so dashboards aggregate those with `max` across replicas, and request metrics with `sum`.

Each app builds its own `CollectorRegistry`: no import-time global registry.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from azr_verify.service.errors import AzrVerifyError
from azr_verify.service.models import Verdict

if TYPE_CHECKING:
    from azr_verify.service.engine import Engine

log = logging.getLogger(__name__)

NAMESPACE = "azr_verify"
# Sandbox time of one item (all its determinism runs): trivial programs take ~1-10 ms,
# the default timeout is 5 s, the largest allowed 30 s.
EXECUTION_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                       10.0, 30.0, 60.0)
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0, 30.0, 60.0, 300.0)
EMBEDDED_EXECUTOR = "embedded"


def bucket_index(seconds: float) -> int:
    """Index of the first bucket whose upper bound holds `seconds` (len = the +Inf bucket)."""
    return bisect.bisect_left(EXECUTION_BUCKETS_S, seconds)


class Judged(Protocol):
    """A result of any kind of item (a triple, a test-case program, a /run_code run): what
    the metrics count."""

    @property
    def verdict(self) -> Verdict: ...

    @property
    def duration_ms(self) -> float: ...

    @property
    def cached(self) -> bool: ...


def execution_seconds(results: Iterable[Judged]) -> list[float]:
    """Sandbox time of the items that actually ran (cached and static verdicts did not)."""
    return [r.duration_ms / 1000.0 for r in results if not r.cached and r.duration_ms > 0]


@dataclass
class BucketCounts:
    """A histogram as plain numbers: per-bucket (not cumulative) counts and the sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(EXECUTION_BUCKETS_S) + 1))
    sum_s: float = 0.0


class ExecutionHistogram:
    """Thread-safe accumulator for the embedded executor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets = BucketCounts()

    def observe(self, durations_s: Iterable[float]) -> None:
        with self._lock:
            for seconds in durations_s:
                self._buckets.counts[bucket_index(seconds)] += 1
                self._buckets.sum_s += seconds

    def snapshot(self) -> BucketCounts:
        with self._lock:
            return BucketCounts(list(self._buckets.counts), self._buckets.sum_s)


@dataclass
class TelemetrySnapshot:
    """Everything the executors report, read once per scrape."""

    items_by_verdict: dict[str, int]
    executions: int
    cache_hits: int
    cache_misses: int
    sandbox_restarts: int
    execution: BucketCounts
    # executor name -> zygote state -> count
    pool_states: dict[str, dict[str, int]]
    queue_depth_items: int
    queue_jobs: int | None = None


class TelemetrySource(Protocol):
    def snapshot(self) -> TelemetrySnapshot:
        """Raises QueueUnavailableError when the store behind it is unreachable."""
        ...


class EngineTelemetry:
    """Embedded mode: the in-process engine is the only executor."""

    def __init__(self, engine: Engine, histogram: ExecutionHistogram,
                 depth: Callable[[], int]) -> None:
        self.engine = engine
        self.histogram = histogram
        self.depth = depth

    def snapshot(self) -> TelemetrySnapshot:
        stats = self.engine.stats()
        pool = self.engine.pool.stats()
        return TelemetrySnapshot(
            items_by_verdict=dict(stats.verdicts), executions=stats.executions,
            cache_hits=stats.cache_hits, cache_misses=stats.cache_misses,
            sandbox_restarts=pool.restarts, execution=self.histogram.snapshot(),
            pool_states={EMBEDDED_EXECUTOR: dict(pool.states)},
            queue_depth_items=self.depth())


def _cumulative(buckets: BucketCounts) -> list[tuple[str, float]]:
    total = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip((*EXECUTION_BUCKETS_S, float("inf")), buckets.counts, strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
    return out


class ExecutorCollector(Collector):
    """Turns a TelemetrySource into metric families at scrape time."""

    def __init__(self, source: TelemetrySource) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on what the executors report; skip registry validation

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_telemetry_up",
                               "1 when the executors' telemetry could be read")
        try:
            snap = self.source.snapshot()
        except AzrVerifyError as exc:
            log.warning("telemetry unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(snap)


def _families(snap: TelemetrySnapshot) -> Iterator[Metric]:
    items = CounterMetricFamily(f"{NAMESPACE}_items", "Items answered, by verdict",
                                labels=["verdict"])
    for verdict in Verdict:
        items.add_metric([verdict.value], snap.items_by_verdict.get(verdict.value, 0))
    yield items
    yield CounterMetricFamily(f"{NAMESPACE}_executions", "Sandbox executions "
                              "(determinism runs count separately)", value=snap.executions)
    yield CounterMetricFamily(f"{NAMESPACE}_cache_hits", "Result-cache hits",
                              value=snap.cache_hits)
    yield CounterMetricFamily(f"{NAMESPACE}_cache_misses", "Result-cache misses",
                              value=snap.cache_misses)
    yield CounterMetricFamily(f"{NAMESPACE}_sandbox_restarts", "Sandboxes (zygotes) replaced "
                              "after dying or being recycled", value=snap.sandbox_restarts)
    hist = HistogramMetricFamily(f"{NAMESPACE}_execution_seconds",
                                 "Sandbox time per executed item (all determinism runs)")
    hist.add_metric([], _cumulative(snap.execution), snap.execution.sum_s)
    yield hist
    states = GaugeMetricFamily(f"{NAMESPACE}_pool_workers", "Sandbox workers (zygotes) by "
                               "state, per executor process", labels=["executor", "state"])
    for executor, by_state in sorted(snap.pool_states.items()):
        for state, count in sorted(by_state.items()):
            states.add_metric([executor, state], count)
    yield states
    yield GaugeMetricFamily(f"{NAMESPACE}_executors", "Executor processes reporting "
                            "(API itself in embedded mode, live workers in distributed mode)",
                            value=len(snap.pool_states))
    yield GaugeMetricFamily(f"{NAMESPACE}_queue_depth_items", "Items accepted and not "
                            "answered yet (the depth that triggers 429)",
                            value=snap.queue_depth_items)
    if snap.queue_jobs is not None:
        yield GaugeMetricFamily(f"{NAMESPACE}_queue_jobs", "RQ chunk jobs waiting in the queue",
                                value=snap.queue_jobs)


class Metrics:
    """One app's metrics: request latency (this process) plus the executors' telemetry."""

    def __init__(self, source: TelemetrySource) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_seconds = Histogram(
            f"{NAMESPACE}_request_seconds", "HTTP request latency",
            labelnames=["method", "route", "status"], buckets=REQUEST_BUCKETS_S,
            registry=self.registry)
        self.registry.register(ExecutorCollector(source))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def render(self) -> bytes:
        """The exposition text; may block on Redis in distributed mode (call off the loop)."""
        return generate_latest(self.registry)


def results_verdicts(results: Sequence[Judged]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.verdict.value] = counts.get(result.verdict.value, 0) + 1
    return counts
