"""`azr-verify worker`: an RQ worker that answers chunk jobs on one long-lived sandbox pool.

- No fork per job: `EngineWorker` is an RQ `SimpleWorker`, so the engine (and its zygotes)
  built once at start-up serves every job for the life of the process.
- Fast abandoned-job detection: a SimpleWorker sends no heartbeats while a job runs, so RQ
  would only notice a dead worker after the job timeout plus a minute. A beat thread renews
  the job's heartbeat every `worker_heartbeat_s` with a TTL of three beats; when a worker is
  SIGKILLed its job expires from the StartedJobRegistry within seconds and the reaper
  (queue/reaper.py) re-enqueues it on another worker.
- Redis outages: RQ's work loop quits on a connection error; the worker keeps its engine,
  waits, and starts a fresh RQ worker (a new registration) once Redis answers again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from types import FrameType

import redis
from rq import SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.queue.batches import ChunkReporter, make_queue
from azr_verify.service.queue.chunks import ChunkRuntime, installed
from azr_verify.service.queue.connection import REDIS_ERRORS, check_reachable, sync_client
from azr_verify.service.queue.keys import Keys
from azr_verify.service.queue.reaper import MISSED_BEATS
from azr_verify.service.queue.telemetry import TelemetryWriter
from azr_verify.service.stores.audit.redis import RedisAuditStore
from azr_verify.service.stores.cache.redis import RedisCache

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
HEALTHY_RUN_S = 60.0
# RQ's worker key lives this long without a heartbeat; also bounds its idle blocking dequeue.
WORKER_TTL_S = 60


class EngineWorker(SimpleWorker):
    """A SimpleWorker whose running job is kept alive by `Beat` and expires fast without it."""

    heartbeat_s: int = 2
    # RQ backs off up to a minute between reconnection attempts; a verifier should resume
    # within seconds of Redis coming back.
    max_connection_wait_time = 5.0

    def __init__(self, *args: object, heartbeat_s: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.heartbeat_s = heartbeat_s
        self.running: tuple[Job, Execution] | None = None
        self.stopping = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # Remembered so run_worker can tell a requested stop from a loop that ended on a
        # Redis error (RQ's work() returns quietly in both cases).
        self.stopping = True
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_s * MISSED_BEATS

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        self.running = (job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            self.running = None
        self.set_state(WorkerStatus.IDLE)


class Beat(threading.Thread):
    """Every `interval_s`: renews the running job's heartbeat and pushes pool telemetry."""

    def __init__(self, telemetry: TelemetryWriter, interval_s: int) -> None:
        super().__init__(name="azr-worker-beat", daemon=True)
        self.telemetry = telemetry
        self.interval_s = interval_s
        self.worker: EngineWorker | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.beat()

    def beat(self) -> None:
        worker = self.worker
        running = worker.running if worker is not None else None
        try:
            if worker is not None and running is not None:
                worker.maintain_heartbeats(*running)
            self.telemetry.push_engine()
        except REDIS_ERRORS as exc:
            log.warning("heartbeat failed", extra={"error": str(exc)})

    def stop(self) -> None:
        self._stop_event.set()


def worker_name() -> str:
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


def _backoff(failures: int) -> None:
    time.sleep(RECONNECT_BACKOFF_S[min(failures, len(RECONNECT_BACKOFF_S) - 1)])


def _rq_worker(settings: Settings, client: redis.Redis, name: str) -> EngineWorker:
    return EngineWorker([make_queue(client, settings)], connection=client,
                        serializer=JSONSerializer, name=name, worker_ttl=WORKER_TTL_S,
                        maintenance_interval=max(10, int(settings.reap_interval_s * 5)),
                        heartbeat_s=settings.worker_heartbeat_s)


def run_worker(settings: Settings, burst: bool) -> None:
    """Runs until SIGTERM/SIGINT (warm shutdown: the running chunk finishes) or, with
    `burst`, until the queue is empty."""
    client = sync_client(settings)
    check_reachable(client, settings)  # before the pool starts: a clear error, at once
    keys = Keys.from_settings(settings)
    name = worker_name()
    engine = Engine.start(settings, cache=RedisCache(client, keys, settings.cache_ttl_s))
    beats = settings.worker_heartbeat_s
    telemetry = TelemetryWriter(client, keys, name, engine, ttl_s=beats * MISSED_BEATS)
    runtime = ChunkRuntime(engine=engine, reporter=ChunkReporter(client, keys),
                           audit=RedisAuditStore(client, keys, settings.audit_retention),
                           telemetry=telemetry, ttl_s=settings.job_ttl_s)
    beat = Beat(telemetry, beats)
    beat.start()
    level = "DEBUG" if log.isEnabledFor(logging.DEBUG) else "WARNING"
    log.info("worker started", extra={"worker": name, "queue": settings.queue_name,
                                      "zygotes": len(engine.pool.zygote_threads)})
    try:
        with installed(runtime):
            failures = 0
            for incarnation in itertools.count():
                worker = _rq_worker(settings, client, f"{name}.{incarnation}")
                beat.worker = worker
                started = time.monotonic()
                try:
                    worker.work(burst=burst, logging_level=level, with_scheduler=False)
                except REDIS_ERRORS as exc:
                    log.warning("lost Redis", extra={"error": str(exc)})
                if burst or worker.stopping:
                    break
                # RQ's loop returns after a connection error: wait for Redis, start afresh.
                # A loop that ran a while was healthy: back off from the start again.
                failures = 0 if time.monotonic() - started > HEALTHY_RUN_S else failures + 1
                log.warning("RQ worker loop ended; restarting it", extra={"failures": failures})
                _backoff(failures)
    finally:
        beat.stop()
        with contextlib.suppress(*REDIS_ERRORS):
            telemetry.push_engine()
            telemetry.retire()
        engine.close()
        log.info("worker stopped", extra={"worker": name, "chunks": runtime.chunks_run})
