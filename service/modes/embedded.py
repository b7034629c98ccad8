"""Embedded mode: the engine runs in this process; jobs in memory; audit log in SQLite."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.errors import OverloadedError
from azr_verify.service.metrics import (
    EngineTelemetry,
    ExecutionHistogram,
    TelemetrySnapshot,
    execution_seconds,
)
from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    JobStatusResponse,
    PolicyName,
    RunResult,
    TestcaseItem,
    TestcaseResult,
)
from azr_verify.service.stores.audit.records import (
    records_for,
    run_code_record,
    testcase_records_for,
)
from azr_verify.service.stores.audit.sqlite import DB_NAME, SqliteAuditStore
from azr_verify.service.stores.jobs import MemoryJob, MemoryJobStore

log = logging.getLogger(__name__)


class Admission:
    """Counts items accepted and not answered yet; refuses work beyond the configured depth."""

    def __init__(self, max_depth: int, retry_after_s: int) -> None:
        self.max_depth = max_depth
        self.retry_after_s = retry_after_s
        self._depth = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        return self._depth

    def admit(self, items: int) -> None:
        with self._lock:
            # An idle server always admits, so one batch larger than the depth still runs.
            if self._depth > 0 and self._depth + items > self.max_depth:
                raise OverloadedError(
                    f"{self._depth} items are in flight; {items} more would exceed the "
                    f"configured depth of {self.max_depth}", retry_after_s=self.retry_after_s)
            self._depth += items

    def release(self, items: int) -> None:
        with self._lock:
            self._depth -= items


class EmbeddedMode:
    mode = "embedded"

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self._engine = engine
        self._owns_engine = engine is None
        self.admission = Admission(settings.max_queue_depth, settings.overload_retry_after_s)
        self.histogram = ExecutionHistogram()
        self.jobs = MemoryJobStore(settings.job_ttl_s)
        self._audit: SqliteAuditStore | None = None
        self._runner: ThreadPoolExecutor | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the embedded mode is not started")
        return self._engine

    @property
    def audit_store(self) -> SqliteAuditStore:
        if self._audit is None:
            raise RuntimeError("the embedded mode is not started")
        return self._audit

    async def start(self) -> None:
        if self._engine is None:
            self._engine = await anyio.to_thread.run_sync(Engine.start, self.settings)
        self._audit = SqliteAuditStore(Path(self.settings.data_dir) / DB_NAME,
                                       self.settings.audit_retention)
        self._runner = ThreadPoolExecutor(self.settings.embedded_job_threads,
                                          thread_name_prefix="azr-job")

    async def aclose(self) -> None:
        if self._runner is not None:
            # Jobs live in memory: those not started yet are lost with the process anyway.
            self._runner.shutdown(wait=True, cancel_futures=True)
        if self._audit is not None:
            self._audit.close()
        if self._engine is not None and self._owns_engine:
            self._engine.close()

    # -- running items --------------------------------------------------------------------

    def _run(self, items: Sequence[CheckItem], policy: PolicyName, key_name: str | None,
             on_progress: Callable[[int, int], None] | None = None) -> list[CheckResult]:
        """Blocking: checks, then records metrics and audit records."""
        results = self.engine.check(items, policy, on_progress)
        self.histogram.observe(execution_seconds(results))
        records = records_for(items, results, policy, key_name,
                              excerpt_chars=self.settings.audit_excerpt_chars)
        if records:
            self.audit_store.record(records)
        return results

    async def check(self, items: Sequence[CheckItem], policy: PolicyName,
                    key_name: str | None) -> list[CheckResult]:
        if not items:
            return []
        self.admission.admit(len(items))
        try:
            return await anyio.to_thread.run_sync(self._run, items, policy, key_name)
        finally:
            self.admission.release(len(items))

    def _run_testcases(self, items: Sequence[TestcaseItem], policy: PolicyName,
                       key_name: str | None) -> list[TestcaseResult]:
        results = self.engine.check_testcases(items, policy)
        self.histogram.observe(execution_seconds(results))
        records = testcase_records_for(items, results, policy, key_name,
                                       excerpt_chars=self.settings.audit_excerpt_chars)
        if records:
            self.audit_store.record(records)
        return results

    async def check_testcases(self, items: Sequence[TestcaseItem], policy: PolicyName,
                              key_name: str | None) -> list[TestcaseResult]:
        if not items:
            return []
        self.admission.admit(len(items))
        try:
            return await anyio.to_thread.run_sync(self._run_testcases, items, policy, key_name)
        finally:
            self.admission.release(len(items))

    def _run_code(self, program: str, stdin: str, timeout_s: float | None,
                  memory_mb: int | None, policy: PolicyName,
                  key_name: str | None) -> RunResult:
        result = self.engine.run_script(program, stdin, timeout_s, memory_mb, policy)
        self.histogram.observe(execution_seconds([result]))
        record = run_code_record(program, stdin, result, policy, key_name,
                                 excerpt_chars=self.settings.audit_excerpt_chars)
        if record is not None:
            self.audit_store.record([record])
        return result

    async def run_code(self, program: str, stdin: str, timeout_s: float | None,
                       memory_mb: int | None, policy: PolicyName,
                       key_name: str | None) -> RunResult:
        self.admission.admit(1)
        try:
            return await anyio.to_thread.run_sync(self._run_code, program, stdin, timeout_s,
                                                  memory_mb, policy, key_name)
        finally:
            self.admission.release(1)

    async def submit(self, items: Sequence[CheckItem], policy: PolicyName,
                     key_name: str | None) -> str:
        if self._runner is None:
            raise RuntimeError("the embedded mode is not started")
        self.admission.admit(len(items))
        job = self.jobs.create(len(items), key_name)
        try:
            self._runner.submit(self._run_job, job, list(items), policy)
        except RuntimeError:
            self.admission.release(len(items))
            raise
        return job.job_id

    def _run_job(self, job: MemoryJob, items: list[CheckItem], policy: PolicyName) -> None:
        self.jobs.running(job)
        try:
            results = self._run(items, policy, job.key_name,
                                lambda done, _total: self.jobs.progress(job, done))
        except Exception as exc:  # the thread's boundary: the job records why it failed
            log.exception("job failed", extra={"job_id": job.job_id})
            self.jobs.fail(job, f"{type(exc).__name__}: {exc}")
        else:
            self.jobs.finish(job, results)
        finally:
            self.admission.release(len(items))

    async def job(self, job_id: str, key_name: str | None) -> JobStatusResponse:
        return self.jobs.status(job_id, key_name)

    # -- the rest -------------------------------------------------------------------------

    async def readiness(self) -> dict[str, Any]:
        pool = self.engine.pool
        return {"sandbox_pool": {"ok": bool(pool.ready), "states": dict(pool.stats().states)}}

    async def executors(self) -> dict[str, Any]:
        stats = self.engine.pool.stats()
        return {"processes": 1, "zygotes": stats.zygotes, "seed_groups": stats.seed_groups,
                "states": dict(stats.states)}

    def snapshot(self) -> TelemetrySnapshot:
        telemetry = EngineTelemetry(self.engine, self.histogram, lambda: self.admission.depth)
        return telemetry.snapshot()
