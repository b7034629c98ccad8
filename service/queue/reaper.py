"""Finds the chunk jobs of dead workers and puts them back on the queue.

A worker proves it is alive by heartbeats while it runs a job (queue/worker.py); a job whose
heartbeats stopped (the worker was SIGKILLed, its machine vanished) expires from RQ's
StartedJobRegistry, and `cleanup()` re-enqueues it while it has retries left or answers it
through its failure callback. RQ's own workers run this only every few minutes, so the API
runs it every `reap_interval_s`; a Redis lock keeps several API processes from racing.
"""

from __future__ import annotations

import logging

import redis
from rq.job import Job

from azr_verify.service.config import Settings
from azr_verify.service.queue import scripts
from azr_verify.service.queue.batches import make_queue
from azr_verify.service.queue.connection import as_text, translate_errors
from azr_verify.service.queue.keys import Keys

log = logging.getLogger(__name__)

# A running job is presumed abandoned after this many missed worker heartbeats.
MISSED_BEATS = 3
# The in-flight ledger is checked against RQ once per this many reaps (it reads every entry).
REPAIR_EVERY = 15


class Reaper:
    """Blocking; the API runs it in a thread."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.keys = Keys.from_settings(settings)
        self.queue = make_queue(client, settings)
        self.lock_ms = max(1, int(settings.reap_interval_s * 1000 * 0.9))
        self._forget = scripts.ForgetScript(client)
        self._runs = 0

    def reap(self) -> None:
        with translate_errors("reaping abandoned jobs"):
            if not self.client.set(self.keys.reaper_lock, b"1", nx=True, px=self.lock_ms):
                return  # another API process reaped moments ago
            self.queue.started_job_registry.cleanup()
            self._runs += 1
            if self._runs % REPAIR_EVERY == 0:
                self.repair_ledger()

    def repair_ledger(self) -> int:
        """Forgets in-flight entries whose RQ job is gone; returns how many."""
        inflight = self.client.hgetall(self.keys.inflight)
        if not inflight:
            return 0
        job_ids = [as_text(job_id) for job_id in inflight]
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(Job.key_for(job_id))
            exists = pipe.execute()
        lost = [(job_id, int(inflight[job_id.encode()]))
                for job_id, present in zip(job_ids, exists, strict=True) if not present]
        if not lost:
            return 0
        forgotten = self._forget(pending_items_key=self.keys.pending_items,
                                 inflight_key=self.keys.inflight, lost=lost)
        if forgotten:
            log.warning("forgot in-flight chunks whose jobs vanished",
                        extra={"chunks": forgotten})
        return forgotten
