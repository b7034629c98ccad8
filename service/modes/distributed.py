"""Distributed mode: batches become RQ chunk jobs on Redis; workers anywhere answer them.

The API process keeps no state of its own: admission, batches, results, audit records and
telemetry all live in Redis, so several API replicas can serve the same queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel

from azr_verify.service.config import Settings
from azr_verify.service.errors import (
    BatchLostError,
    JobNotFoundError,
    QueueTimeoutError,
    QueueUnavailableError,
)
from azr_verify.service.metrics import TelemetrySnapshot
from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    JobProgress,
    JobState,
    JobStatusResponse,
    PolicyName,
    RunResult,
    ScriptRunItem,
    TestcaseItem,
    TestcaseResult,
)
from azr_verify.service.queue.batches import (
    BatchReader,
    BatchStatus,
    BatchSubmitter,
    ChunkKind,
    chunk_bounds,
    chunk_job_id,
    new_batch_id,
)
from azr_verify.service.queue.connection import async_client, sync_client, translate_errors
from azr_verify.service.queue.keys import Keys
from azr_verify.service.queue.reaper import MISSED_BEATS, Reaper
from azr_verify.service.queue.telemetry import RedisTelemetry
from azr_verify.service.stores.audit.redis import RedisAuditStore

log = logging.getLogger(__name__)

# Longest single BLPOP while waiting for a batch; between waits the deadline is checked.
WAIT_SLICE_S = 1.0
_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
M = TypeVar("M", bound=BaseModel)


def job_state(status: BatchStatus) -> JobState:
    if status.complete:
        return JobState.FAILED if status.failed_chunks else JobState.FINISHED
    if status.started or status.done_chunks:
        return JobState.RUNNING
    return JobState.QUEUED


class DistributedMode:
    mode = "distributed"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sync = sync_client(settings)
        self.aio = async_client(settings, blocking_s=WAIT_SLICE_S)
        self.keys = Keys.from_settings(settings)
        self.submitter = BatchSubmitter(self.sync, settings)
        self.reader = BatchReader(self.aio, settings)
        self.reaper = Reaper(self.sync, settings)
        self.audit_store = RedisAuditStore(self.sync, self.keys, settings.audit_retention)
        self.telemetry = RedisTelemetry(self.sync, settings,
                                        executor_ttl_s=settings.worker_heartbeat_s * MISSED_BEATS)
        self._reaping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reaping = asyncio.create_task(self._reap_forever(), name="azr-reaper")

    async def aclose(self) -> None:
        if self._reaping is not None:
            self._reaping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaping
        await self.aio.aclose()
        self.sync.close()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                await anyio.to_thread.run_sync(self.reaper.reap)
            except QueueUnavailableError:
                continue  # /readyz reports it; try again next round
            except Exception:  # the task's boundary: one bad round must not end reaping
                log.exception("reaping abandoned jobs failed")

    # -- batches --------------------------------------------------------------------------

    async def _enqueue(self, items: Sequence[BaseModel], policy: PolicyName,
                       key_name: str | None,
                       kind: ChunkKind = ChunkKind.TRIPLES) -> tuple[str, int]:
        await self.reader.admit(len(items))
        batch_id = new_batch_id()
        try:
            chunks = await anyio.to_thread.run_sync(self.submitter.submit, batch_id, items,
                                                    policy, key_name, kind)
        except BaseException:
            # Nothing was enqueued (one transaction): give the reserved depth back.
            job_ids = [chunk_job_id(batch_id, index)
                       for index in range(len(chunk_bounds(len(items), self.settings.chunk_size)))]
            with contextlib.suppress(QueueUnavailableError):
                await self.reader.release(len(items), job_ids)
            raise
        return batch_id, chunks

    async def check(self, items: Sequence[CheckItem], policy: PolicyName,
                    key_name: str | None) -> list[CheckResult]:
        if not items:
            return []
        batch_id, chunks = await self._enqueue(items, policy, key_name)
        return await self._collect(batch_id, chunks, CheckResult)

    async def check_testcases(self, items: Sequence[TestcaseItem], policy: PolicyName,
                              key_name: str | None) -> list[TestcaseResult]:
        if not items:
            return []
        batch_id, chunks = await self._enqueue(items, policy, key_name, ChunkKind.TESTCASES)
        return await self._collect(batch_id, chunks, TestcaseResult)

    async def run_code(self, program: str, stdin: str, timeout_s: float | None,
                       memory_mb: int | None, policy: PolicyName,
                       key_name: str | None) -> RunResult:
        run = ScriptRunItem(program=program, stdin=stdin, timeout_s=timeout_s,
                            memory_mb=memory_mb)
        batch_id, chunks = await self._enqueue([run], policy, key_name, ChunkKind.RUN_CODE)
        [result] = await self._collect(batch_id, chunks, RunResult)
        return result

    async def _collect(self, batch_id: str, chunks: int, model: type[M]) -> list[M]:
        """Waits until every chunk of a batch is answered; its results, then frees it."""
        deadline = anyio.current_time() + self.settings.check_timeout_s
        while True:
            status = await self.reader.status(batch_id)
            if status is None:
                raise BatchLostError(f"batch {batch_id} vanished from Redis before it was "
                                     "answered; resend it")
            if status.complete:
                break
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise QueueTimeoutError(
                    f"{status.done_chunks} of {status.chunks} chunks answered after "
                    f"{self.settings.check_timeout_s:g} s; are any workers running?")
            await self.reader.wait(batch_id, min(WAIT_SLICE_S, remaining))
        results = await self.reader.results_as(batch_id, chunks, model)
        if results is None:
            raise BatchLostError(f"results of batch {batch_id} vanished from Redis; resend it")
        await self.reader.discard(batch_id, chunks)
        return results

    async def submit(self, items: Sequence[CheckItem], policy: PolicyName,
                     key_name: str | None) -> str:
        batch_id, _chunks = await self._enqueue(items, policy, key_name)
        return batch_id

    async def job(self, job_id: str, key_name: str | None) -> JobStatusResponse:
        status = await self.reader.status(job_id) if _BATCH_ID.match(job_id) else None
        # Another key's job is reported as unknown: ids must not leak across keys; so is a
        # batch of another kind (/v1/testcases, /run_code), which is no job.
        if status is None or status.key_name != key_name or status.kind is not ChunkKind.TRIPLES:
            raise JobNotFoundError(f"no job {job_id!r}")
        state = job_state(status)
        results = None
        if status.complete:
            results = await self.reader.results(job_id, status.chunks)
            if results is None:
                raise BatchLostError(f"results of job {job_id} vanished from Redis")
        error = f"{status.failed_chunks} chunk(s) failed; their items answer sandbox_error" \
            if status.failed_chunks else None
        return JobStatusResponse(job_id=job_id, status=state,
                                 progress=JobProgress(done=status.done_items, total=status.total),
                                 results=results, error=error)

    # -- the rest -------------------------------------------------------------------------

    async def readiness(self) -> dict[str, Any]:
        try:
            with translate_errors("ping"):
                await self.aio.ping()
        except QueueUnavailableError as exc:
            return {"redis": {"ok": False, "error": str(exc)}}
        return {"redis": {"ok": True}}

    async def executors(self) -> dict[str, Any]:
        names = await anyio.to_thread.run_sync(self.telemetry.live_executors)
        return {"processes": len(names), "workers": names}

    def snapshot(self) -> TelemetrySnapshot:
        return self.telemetry.snapshot()
