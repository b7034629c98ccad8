"""The embedded mode's job store: jobs live in memory and run on a few background threads."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from azr_verify.service.errors import JobNotFoundError
from azr_verify.service.models import CheckResult, JobProgress, JobState, JobStatusResponse


@dataclass
class MemoryJob:
    job_id: str
    key_name: str | None
    total: int
    state: JobState = JobState.QUEUED
    done: int = 0
    results: list[CheckResult] | None = None
    error: str | None = None
    finished_at: float | None = field(default=None)


class MemoryJobStore:
    """Thread-safe; finished jobs are forgotten `ttl_s` after they finish."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._jobs: dict[str, MemoryJob] = {}
        self._lock = threading.Lock()

    def create(self, total: int, key_name: str | None) -> MemoryJob:
        job = MemoryJob(job_id=uuid.uuid4().hex, key_name=key_name, total=total)
        with self._lock:
            self._expire()
            self._jobs[job.job_id] = job
        return job

    def running(self, job: MemoryJob) -> None:
        with self._lock:
            job.state = JobState.RUNNING

    def progress(self, job: MemoryJob, done: int) -> None:
        with self._lock:
            job.done = max(job.done, done)

    def finish(self, job: MemoryJob, results: list[CheckResult]) -> None:
        with self._lock:
            job.results, job.done = results, job.total
            job.state, job.finished_at = JobState.FINISHED, time.monotonic()

    def fail(self, job: MemoryJob, error: str) -> None:
        with self._lock:
            job.error, job.state, job.finished_at = error, JobState.FAILED, time.monotonic()

    def status(self, job_id: str, key_name: str | None) -> JobStatusResponse:
        with self._lock:
            job = self._jobs.get(job_id)
            # Another key's job is reported as unknown: ids must not leak across keys.
            if job is None or job.key_name != key_name:
                raise JobNotFoundError(f"no job {job_id!r}")
            return JobStatusResponse(
                job_id=job.job_id, status=job.state,
                progress=JobProgress(done=job.done, total=job.total),
                results=list(job.results) if job.results is not None else None, error=job.error)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        stale = [job_id for job_id, job in self._jobs.items()
                 if job.finished_at is not None and job.finished_at < cutoff]
        for job_id in stale:
            del self._jobs[job_id]
