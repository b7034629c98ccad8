"""Every Redis key azr-verify uses outside RQ's own, in one place.

All keys share a prefix derived from the queue name, so several deployments (or test runs) can
share one Redis without seeing each other's batches, caches or counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from azr_verify.service.config import Settings


@dataclass(frozen=True)
class Keys:
    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        return cls.for_queue(settings.queue_name)

    @classmethod
    def for_queue(cls, queue_name: str) -> Keys:
        """Workers and RQ callbacks only know a job's queue (its origin); keys derive from it."""
        return cls(prefix=f"azr:{queue_name}")

    # -- batches: one per /v1/check or /v1/jobs request ------------------------------------

    def batch(self, batch_id: str) -> str:
        """Hash: total, chunks, policy, key_name, created, done_chunks, failed_chunks."""
        return f"{self.prefix}:batch:{batch_id}"

    def chunk_result(self, batch_id: str, index: int) -> str:
        """String: the chunk's results as JSON; written once (SET NX), so re-runs are no-ops."""
        return f"{self.prefix}:batch:{batch_id}:result:{index}"

    def progress(self, batch_id: str) -> str:
        """Hash: chunk index -> items done (only ever raised)."""
        return f"{self.prefix}:batch:{batch_id}:progress"

    def notify(self, batch_id: str) -> str:
        """List: one entry per finished chunk; the API blocks on it instead of polling."""
        return f"{self.prefix}:batch:{batch_id}:done"

    # -- backpressure ----------------------------------------------------------------------

    @property
    def pending_items(self) -> str:
        """Counter: items accepted and not yet answered, across every API process."""
        return f"{self.prefix}:pending_items"

    @property
    def inflight(self) -> str:
        """Hash: RQ job id -> items, for jobs not answered yet; makes the counter repairable."""
        return f"{self.prefix}:inflight"

    @property
    def reaper_lock(self) -> str:
        return f"{self.prefix}:reaper"

    # -- shared state of the executors -----------------------------------------------------

    def cache(self, key: str) -> str:
        return f"{self.prefix}:cache:{key}"

    @property
    def audit(self) -> str:
        """Stream of audit records (rejected items)."""
        return f"{self.prefix}:audit"

    def audit_of(self, key_name: str) -> str:
        """Stream of the audit records of one API key (a copy, so a key reads only its own)."""
        return f"{self.prefix}:audit:key:{key_name}"

    @property
    def counters(self) -> str:
        """Hash of monotonic counters summed over every worker process (see metrics.py)."""
        return f"{self.prefix}:metrics:counters"

    @property
    def executors(self) -> str:
        """Sorted set: worker name -> last heartbeat (UNIX time)."""
        return f"{self.prefix}:metrics:executors"

    def executor(self, name: str) -> str:
        """Hash: a worker's pool gauges (zygotes by state), with a TTL."""
        return f"{self.prefix}:metrics:executor:{name}"
