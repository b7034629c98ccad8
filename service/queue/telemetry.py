"""Distributed-mode telemetry: workers write to Redis, the API reads it at scrape time.

Counters are HINCRBY'd into one hash, so they sum over every worker process and do not vanish
when a worker dies (Prometheus sees one monotonic series). Each worker also publishes its pool
gauges (zygotes by state) in its own hash with a TTL; a dead worker's gauges expire with it.
See service/metrics.py for the overall design.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from azr_verify.service.config import Settings
from azr_verify.service.metrics import (
    EXECUTION_BUCKETS_S,
    BucketCounts,
    Judged,
    TelemetrySnapshot,
    bucket_index,
    execution_seconds,
    results_verdicts,
)
from azr_verify.service.queue.batches import make_queue
from azr_verify.service.queue.connection import as_text, translate_errors
from azr_verify.service.queue.keys import Keys

if TYPE_CHECKING:
    from azr_verify.service.engine import Engine

_VERDICT = "items:"
_BUCKET = "exec_bucket:"
_EXEC_SUM = "exec_sum"
_ENGINE_COUNTERS = ("executions", "cache_hits", "cache_misses", "restarts")


def record_results(client: redis.Redis, keys: Keys, results: Sequence[Judged]) -> None:
    """Adds a chunk's verdicts and execution times to the shared counters (once per chunk:
    by the run that answered it, or by the failure callback that answered it)."""
    with client.pipeline(transaction=False) as pipe:
        for verdict, count in results_verdicts(results).items():
            pipe.hincrby(keys.counters, _VERDICT + verdict, count)
        seconds = execution_seconds(results)
        buckets: dict[int, int] = {}
        for value in seconds:
            index = bucket_index(value)
            buckets[index] = buckets.get(index, 0) + 1
        for index, count in buckets.items():
            pipe.hincrby(keys.counters, f"{_BUCKET}{index}", count)
        if seconds:
            pipe.hincrbyfloat(keys.counters, _EXEC_SUM, sum(seconds))
        pipe.execute()


class TelemetryWriter:
    """A worker's side. Thread-safe: the job thread and the heartbeat thread both push."""

    def __init__(self, client: redis.Redis, keys: Keys, name: str, engine: Engine,
                 ttl_s: int) -> None:
        self.client = client
        self.keys = keys
        self.name = name
        self.engine = engine
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._pushed = dict.fromkeys(_ENGINE_COUNTERS, 0)

    def record_results(self, results: Sequence[Judged]) -> None:
        record_results(self.client, self.keys, results)

    def push_engine(self) -> None:
        """Adds the engine's counters since the last push; refreshes this worker's gauges."""
        stats = self.engine.stats()
        pool = self.engine.pool.stats()
        current = {"executions": stats.executions, "cache_hits": stats.cache_hits,
                   "cache_misses": stats.cache_misses, "restarts": pool.restarts}
        with self._lock:
            deltas = {k: current[k] - self._pushed[k] for k in _ENGINE_COUNTERS}
            with self.client.pipeline(transaction=False) as pipe:
                for name, delta in deltas.items():
                    if delta:
                        pipe.hincrby(self.keys.counters, name, delta)
                gauges = self.keys.executor(self.name)
                pipe.delete(gauges)
                pipe.hset(gauges, mapping={state: count for state, count in pool.states.items()}
                          or {"none": 0})
                pipe.expire(gauges, self.ttl_s)
                pipe.zadd(self.keys.executors, {self.name: time.time()})
                pipe.execute()
            # Only after Redis took them: a failed push is retried with the next one.
            self._pushed = current

    def retire(self) -> None:
        """A worker shutting down cleanly removes its gauges at once."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.executor(self.name))
            pipe.zrem(self.keys.executors, self.name)
            pipe.execute()


class RedisTelemetry:
    """The API's side: implements metrics.TelemetrySource (blocking; call off the loop)."""

    def __init__(self, client: redis.Redis, settings: Settings, executor_ttl_s: int) -> None:
        self.client = client
        self.keys = Keys.from_settings(settings)
        self.queue = make_queue(client, settings)
        self.executor_ttl_s = executor_ttl_s

    def live_executors(self) -> list[str]:
        with translate_errors("telemetry"):
            cutoff = time.time() - self.executor_ttl_s
            self.client.zremrangebyscore(self.keys.executors, "-inf", cutoff)
            names: Any = self.client.zrange(self.keys.executors, 0, -1)
        return [as_text(name) for name in names]

    def snapshot(self) -> TelemetrySnapshot:
        names = self.live_executors()
        with translate_errors("telemetry"), self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.counters)
            pipe.get(self.keys.pending_items)
            pipe.llen(self.queue.key)
            for name in names:
                pipe.hgetall(self.keys.executor(name))
            counters_raw, depth, queued, *gauges = pipe.execute()
        counters = {k.decode(): v.decode() for k, v in counters_raw.items()}
        verdicts = {k[len(_VERDICT):]: int(v) for k, v in counters.items()
                    if k.startswith(_VERDICT)}
        buckets = BucketCounts()
        for index in range(len(EXECUTION_BUCKETS_S) + 1):
            buckets.counts[index] = int(counters.get(f"{_BUCKET}{index}", 0))
        buckets.sum_s = float(counters.get(_EXEC_SUM, 0.0))
        pool_states = {
            name: {k.decode(): int(v) for k, v in raw.items() if k != b"none"}
            for name, raw in zip(names, gauges, strict=True) if raw
        }
        return TelemetrySnapshot(
            items_by_verdict=verdicts, executions=int(counters.get("executions", 0)),
            cache_hits=int(counters.get("cache_hits", 0)),
            cache_misses=int(counters.get("cache_misses", 0)),
            sandbox_restarts=int(counters.get("restarts", 0)), execution=buckets,
            pool_states=pool_states, queue_depth_items=int(depth or 0), queue_jobs=int(queued))
