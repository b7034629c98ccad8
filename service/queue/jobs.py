"""The RQ job that answers one chunk, and its failure callback.

`run_chunk` runs inside `azr-verify worker`, whose long-lived engine (and sandbox pool) it
finds in `ChunkRuntime`, installed by the worker for its whole life: RQ imports job functions
by name, so the engine cannot be an argument, and building one per job would cost a pool start
per chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
from rq import get_current_job
from rq.job import Job

from azr_verify.service.audit import records_for
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict
from azr_verify.service.queue.keys import Keys

if TYPE_CHECKING:
    from azr_verify.service.audit import AuditStore
    from azr_verify.service.engine import Engine
    from azr_verify.service.queue.batches import ChunkReporter
    from azr_verify.service.queue.telemetry import TelemetryWriter

log = logging.getLogger(__name__)

# Progress is written at most this often per chunk: enough for a progress bar, cheap for Redis.
PROGRESS_INTERVAL_S = 0.25
DEFAULT_TTL_S = 3600


@dataclass
class ChunkRuntime:
    """What a worker process lends to every chunk it runs."""

    engine: Engine
    reporter: ChunkReporter
    audit: AuditStore
    telemetry: TelemetryWriter
    ttl_s: int
    chunks_run: int = field(default=0)


_runtime: ContextVar[ChunkRuntime | None] = ContextVar("azr_verify_chunk_runtime", default=None)


@contextmanager
def installed(runtime: ChunkRuntime) -> Iterator[ChunkRuntime]:
    token = _runtime.set(runtime)
    try:
        yield runtime
    finally:
        _runtime.reset(token)


def run_chunk(batch_id: str, index: int, policy: str, key_name: str | None,
              items: list[dict[str, Any]]) -> int:
    """Checks one chunk and answers it; returns how many items it answered."""
    runtime = _runtime.get()
    if runtime is None:
        raise RuntimeError("run_chunk runs only inside `azr-verify worker`")
    job = get_current_job()
    job_id = job.id if job is not None else f"{batch_id}-{index}"
    checked = [CheckItem.model_validate(item) for item in items]
    reporter = runtime.reporter
    reporter.progress(batch_id, index, 0, runtime.ttl_s)
    last = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last >= PROGRESS_INTERVAL_S:
            last = now
            reporter.progress(batch_id, index, done, runtime.ttl_s)

    results = runtime.engine.check(checked, PolicyName(policy), on_progress)
    won = reporter.complete(batch_id, index, job_id, results, failed=False,
                            ttl_s=runtime.ttl_s)
    runtime.chunks_run += 1
    if won == 1:
        # Only the run that answered the chunk counts and audits it: a duplicate run (its
        # first worker was presumed dead) must not count items twice.
        runtime.telemetry.record_results(results)
        records = records_for(checked, results, PolicyName(policy), key_name,
                              excerpt_chars=runtime.engine.settings.audit_excerpt_chars)
        if records:
            runtime.audit.record(records)
    runtime.telemetry.push_engine()
    return len(results)


def failure_results(items: Sequence[dict[str, Any]], reason: str) -> list[CheckResult]:
    """sandbox_error for every item: the verifier failed, not the programs."""
    return [CheckResult(id=item.get("id"), verdict=Verdict.SANDBOX_ERROR, error=reason)
            for item in items]


def chunk_failed(job: Job, connection: redis.Redis, exc_type: type[BaseException] | None,
                 exc_value: BaseException | None, tb: TracebackType | None) -> None:
    """RQ failure callback (also run for abandoned jobs). Answers the chunk once retries are
    exhausted, so waiting clients get sandbox_error results instead of waiting forever."""
    if job.retries_left:
        return  # RQ re-enqueues it
    from azr_verify.service.queue.batches import ChunkReporter

    batch_id, index, _policy, _key_name, items = job.args
    reason = f"chunk failed after retries: {exc_type.__name__ if exc_type else 'unknown'}"
    if exc_value is not None:
        reason += f": {exc_value}"
    ttl_s = int((job.meta or {}).get("ttl", DEFAULT_TTL_S))
    from azr_verify.service.queue.telemetry import record_results

    keys = Keys.for_queue(job.origin)
    results = failure_results(items, reason)
    won = ChunkReporter(connection, keys).complete(batch_id, index, job.id, results,
                                                   failed=True, ttl_s=ttl_s)
    if won == 1:
        # Counted like any answered chunk (once), so sandbox_error shows in the metrics.
        record_results(connection, keys, results)
    log.warning("chunk answered as sandbox_error", extra={"job_id": job.id, "reason": reason})
