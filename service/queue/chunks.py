"""The RQ jobs that answer one chunk of each kind, and their failure callbacks (RQ finds them
by the paths of queue/jobs.py).

`run_chunk` runs inside `azr-verify worker`, whose long-lived engine (and sandbox pool) it
finds in `ChunkRuntime`, installed by the worker for its whole life: RQ imports job functions
by name, so the engine cannot be an argument, and building one per job would cost a pool start
per chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
from rq import get_current_job
from rq.job import Job

from azr_verify.service.models import (
    CaseResult,
    CheckItem,
    CheckResult,
    PolicyName,
    RunResult,
    ScriptRunItem,
    TestcaseItem,
    TestcaseResult,
    Verdict,
)
from azr_verify.service.queue.keys import Keys
from azr_verify.service.queue.scripts import Completion
from azr_verify.service.stores.audit.records import (
    AuditRecord,
    records_for,
    run_code_record,
    testcase_records_for,
)

if TYPE_CHECKING:
    from azr_verify.service.engine import Engine
    from azr_verify.service.queue.batches import ChunkReporter
    from azr_verify.service.queue.telemetry import TelemetryWriter
    from azr_verify.service.stores.audit.query import AuditStore

# What a chunk answers with: one result per item, of the chunk's kind (all Pydantic models
# the metrics can count).
ChunkResult = CheckResult | TestcaseResult | RunResult

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
    """Checks one chunk of triples and answers it; returns how many items it answered."""
    runtime, job_id = _started("run_chunk", batch_id, index)
    checked = [CheckItem.model_validate(item) for item in items]
    results = runtime.engine.check(checked, PolicyName(policy),
                                   _progress(runtime, batch_id, index))

    def audit() -> list[AuditRecord]:
        return records_for(checked, results, PolicyName(policy), key_name,
                           excerpt_chars=runtime.engine.settings.audit_excerpt_chars)

    return _answer(runtime, batch_id, index, job_id, results, audit)


def run_testcase_chunk(batch_id: str, index: int, policy: str, key_name: str | None,
                       items: list[dict[str, Any]]) -> int:
    """Checks one chunk of test-case programs (docs/design.md §10) and answers it."""
    runtime, job_id = _started("run_testcase_chunk", batch_id, index)
    checked = [TestcaseItem.model_validate(item) for item in items]
    results = runtime.engine.check_testcases(checked, PolicyName(policy),
                                             _progress(runtime, batch_id, index))

    def audit() -> list[AuditRecord]:
        return testcase_records_for(checked, results, PolicyName(policy), key_name,
                                    excerpt_chars=runtime.engine.settings.audit_excerpt_chars)

    return _answer(runtime, batch_id, index, job_id, results, audit)


def run_code_chunk(batch_id: str, index: int, policy: str, key_name: str | None,
                   items: list[dict[str, Any]]) -> int:
    """Runs the one program of a /run_code request (docs/design.md §10) and answers it."""
    runtime, job_id = _started("run_code_chunk", batch_id, index)
    runs = [ScriptRunItem.model_validate(item) for item in items]
    results = [runtime.engine.run_script(run.program, run.stdin, run.timeout_s, run.memory_mb,
                                         PolicyName(policy)) for run in runs]

    def audit() -> list[AuditRecord]:
        excerpt = runtime.engine.settings.audit_excerpt_chars
        records = [run_code_record(run.program, run.stdin, result, PolicyName(policy),
                                   key_name, excerpt_chars=excerpt)
                   for run, result in zip(runs, results, strict=True)]
        return [record for record in records if record is not None]

    return _answer(runtime, batch_id, index, job_id, results, audit)


def _started(name: str, batch_id: str, index: int) -> tuple[ChunkRuntime, str]:
    runtime = _runtime.get()
    if runtime is None:
        raise RuntimeError(f"{name} runs only inside `azr-verify worker`")
    job = get_current_job()
    job_id = job.id if job is not None else f"{batch_id}-{index}"
    runtime.reporter.progress(batch_id, index, 0, runtime.ttl_s)
    return runtime, job_id


def _progress(runtime: ChunkRuntime, batch_id: str, index: int) -> Callable[[int, int], None]:
    last = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last >= PROGRESS_INTERVAL_S:
            last = now
            runtime.reporter.progress(batch_id, index, done, runtime.ttl_s)

    return on_progress


def _answer(runtime: ChunkRuntime, batch_id: str, index: int, job_id: str,
            results: Sequence[ChunkResult], audit: Callable[[], list[AuditRecord]]) -> int:
    won = runtime.reporter.complete(batch_id, index, job_id, results, failed=False,
                                    ttl_s=runtime.ttl_s)
    runtime.chunks_run += 1
    if won is Completion.COMPLETED:
        # Only the run that answered the chunk counts and audits it: a duplicate run (its
        # first worker was presumed dead) must not count items twice.
        runtime.telemetry.record_results(results)
        records = audit()
        if records:
            runtime.audit.record(records)
    runtime.telemetry.push_engine()
    return len(results)


def failure_results(items: Sequence[dict[str, Any]], reason: str) -> list[CheckResult]:
    """sandbox_error for every item: the verifier failed, not the programs."""
    return [CheckResult(id=item.get("id"), verdict=Verdict.SANDBOX_ERROR, error=reason)
            for item in items]


def testcase_failure_results(items: Sequence[dict[str, Any]],
                             reason: str) -> list[TestcaseResult]:
    """sandbox_error for every program and each of its cases."""
    results = []
    for item in items:
        cases = item.get("cases") or []
        results.append(TestcaseResult(
            id=item.get("id"), verdict=Verdict.SANDBOX_ERROR, passed=0, total=len(cases),
            cases=[CaseResult(verdict=Verdict.SANDBOX_ERROR, error=reason) for _ in cases],
            error=reason))
    return results


def run_code_failure_results(items: Sequence[dict[str, Any]], reason: str) -> list[RunResult]:
    return [RunResult(verdict=Verdict.SANDBOX_ERROR, error=reason) for _ in items]


def chunk_failed(job: Job, connection: redis.Redis, exc_type: type[BaseException] | None,
                 exc_value: BaseException | None, tb: TracebackType | None) -> None:
    """RQ failure callback (also run for abandoned jobs). Answers the chunk once retries are
    exhausted, so waiting clients get sandbox_error results instead of waiting forever."""
    _answer_failed(job, connection, exc_type, exc_value, failure_results)


def testcase_chunk_failed(job: Job, connection: redis.Redis,
                          exc_type: type[BaseException] | None,
                          exc_value: BaseException | None, tb: TracebackType | None) -> None:
    """`chunk_failed` for a chunk of test-case programs."""
    _answer_failed(job, connection, exc_type, exc_value, testcase_failure_results)


def run_code_chunk_failed(job: Job, connection: redis.Redis,
                          exc_type: type[BaseException] | None,
                          exc_value: BaseException | None, tb: TracebackType | None) -> None:
    """`chunk_failed` for a /run_code chunk."""
    _answer_failed(job, connection, exc_type, exc_value, run_code_failure_results)


def _answer_failed(job: Job, connection: redis.Redis, exc_type: type[BaseException] | None,
                   exc_value: BaseException | None,
                   make_results: Callable[[Sequence[dict[str, Any]], str],
                                          Sequence[ChunkResult]]) -> None:
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
    results = make_results(items, reason)
    won = ChunkReporter(connection, keys).complete(batch_id, index, job.id, results,
                                                   failed=True, ttl_s=ttl_s)
    if won is Completion.COMPLETED:
        # Counted like any answered chunk (once), so sandbox_error shows in the metrics.
        record_results(connection, keys, results)
    log.warning("chunk answered as sandbox_error", extra={"job_id": job.id, "reason": reason})
