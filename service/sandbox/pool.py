"""A pool of zygotes grouped by PYTHONHASHSEED, fed in batches by one thread per zygote.

Determinism runs of one item must land on zygotes with different hash seeds, so the pool keeps
one work queue per seed group; each zygote serves one group. A zygote that dies is replaced; the
executions it held are retried once, then answered `sandbox_error`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum

from azr_verify.service.errors import (
    PoolClosedError,
    SandboxUnavailableError,
    ZygoteDiedError,
)
from azr_verify.service.sandbox.protocol import (
    FRAME_HEADER,
    MAX_FRAME_BYTES,
    ExecOutcome,
    ExecRequest,
    ZygoteConnection,
    ZygoteLauncher,
    encode_frame,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 30.0
# Slack on top of the executions' own limits before a silent zygote is declared dead.
ANSWER_GRACE_S = 10.0
MAX_ATTEMPTS = 2
RESTART_BACKOFF_S = (0.0, 0.1, 0.5, 2.0)


class ZygoteState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass
class _Job:
    request: ExecRequest
    future: Future[ExecOutcome]
    attempts: int = 0


@dataclass
class PoolStats:
    """A snapshot for /v1/info and metrics."""

    backend: str
    workers: int
    seed_groups: int
    states: dict[str, int]
    restarts: int
    executions: int
    queued: int


def hash_seed_for_group(group: int) -> int:
    """Fixed seeds: the same triple gets the same verdict after a restart or on another host."""
    return group + 1


def _start_zygote(launcher: ZygoteLauncher, seed: int, index: int) -> ZygoteConnection:
    connection = launcher.launch(seed, index)
    try:
        header = connection.recv_exact(FRAME_HEADER.size, HELLO_TIMEOUT_S)
        hello = json.loads(connection.recv_exact(FRAME_HEADER.unpack(header)[0],
                                                 HELLO_TIMEOUT_S))
    except (ZygoteDiedError, ValueError) as exc:
        connection.kill()
        raise SandboxUnavailableError(f"zygote did not start: {exc}") from exc
    if hello.get("kind") != "hello" or hello.get("hash_seed") != str(seed):
        connection.kill()
        raise SandboxUnavailableError(f"zygote sent an unexpected greeting: {hello!r}")
    if hello.get("fork_blocked") is not True:
        connection.kill()
        raise SandboxUnavailableError(
            "zygote self-test failed: a sandboxed program could fork. The sandbox must run "
            "under an unprivileged uid (RLIMIT_NPROC is not enforced for root).")
    return connection


class _Worker(threading.Thread):
    """Owns one zygote: pulls batches from its group's queue, ships them, resolves futures."""

    def __init__(self, pool: ZygotePool, index: int, group: int) -> None:
        super().__init__(name=f"azr-zygote-{index}", daemon=True)
        self.pool = pool
        self.index = index
        self.group = group
        self.seed = hash_seed_for_group(group)
        self.state = ZygoteState.STARTING
        self.connection: ZygoteConnection | None = None
        self.executions_since_start = 0
        self._failures_in_a_row = 0
        self.boot_error: SandboxUnavailableError | None = None
        self.booted = threading.Event()

    def ensure_started(self) -> None:
        if self.connection is not None and not self.connection.alive():
            # Died while idle (killed from outside): replace it before it is handed work, so
            # the next batch is not charged an attempt for a death it did not cause.
            log.warning("zygote %d died while idle; replacing it", self.index)
            self.stop_zygote()
            self.pool.count_restart()
        if self.connection is None:
            self.state = ZygoteState.STARTING
            self.connection = _start_zygote(self.pool.launcher, self.seed, self.index)
            self.executions_since_start = 0
        self.state = ZygoteState.IDLE

    def run(self) -> None:
        # The zygote must be spawned by this long-lived thread: bubblewrap's --die-with-parent
        # is a parent-death signal tied to the spawning thread, not the process.
        try:
            self.ensure_started()
        except SandboxUnavailableError as exc:
            self.boot_error = exc
        except Exception as exc:  # any launcher bug must fail start(), never hang it
            self.boot_error = SandboxUnavailableError(f"zygote {self.index} failed to start: "
                                                      f"{exc!r}")
        self.booted.set()
        if self.boot_error is not None:
            return
        work = self.pool.queues[self.group]
        while True:
            first = work.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.pool.batch_size:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    work.put(None)  # keep the stop signal for this loop's next turn
                    break
                batch.append(job)
            self._serve(batch)
        self.stop_zygote()

    def _serve(self, batch: list[_Job]) -> None:
        try:
            self.ensure_started()
        except SandboxUnavailableError as exc:
            self._failures_in_a_row += 1
            log.error("zygote %d cannot start: %s", self.index, exc)
            self._fail_or_retry(batch, str(exc))
            time.sleep(RESTART_BACKOFF_S[min(self._failures_in_a_row,
                                             len(RESTART_BACKOFF_S) - 1)])
            return
        assert self.connection is not None
        self.state = ZygoteState.BUSY
        budget = sum(job.request.timeout_s for job in batch) + ANSWER_GRACE_S
        try:
            self.connection.send(encode_frame([job.request.to_wire() for job in batch]))
            header = self.connection.recv_exact(FRAME_HEADER.size, budget)
            size = FRAME_HEADER.unpack(header)[0]
            if size > MAX_FRAME_BYTES:
                raise ZygoteDiedError(f"zygote sent an oversized frame ({size} bytes)")
            answers = json.loads(self.connection.recv_exact(size, budget))
            if not isinstance(answers, list) or len(answers) != len(batch):
                raise ZygoteDiedError("zygote answered the wrong number of outcomes")
            outcomes = [ExecOutcome.from_wire(answer) for answer in answers]
        except (ZygoteDiedError, ValueError, KeyError, TypeError) as exc:
            log.warning("zygote %d failed mid-batch (%d jobs): %s", self.index, len(batch), exc)
            self.stop_zygote()
            self.pool.count_restart()
            self._fail_or_retry(batch, f"sandbox failed: {exc}")
            return
        self._failures_in_a_row = 0
        self.state = ZygoteState.IDLE
        self.executions_since_start += len(batch)
        self.pool.count_executions(len(batch))
        for job, outcome in zip(batch, outcomes, strict=True):
            job.future.set_result(outcome)
        if self.executions_since_start >= self.pool.recycle_after:
            self.stop_zygote()

    def _fail_or_retry(self, batch: list[_Job], message: str) -> None:
        for job in batch:
            job.attempts += 1
            if job.attempts < MAX_ATTEMPTS and not self.pool.closed:
                self.pool.queues[self.group].put(job)
            else:
                job.future.set_result(ExecOutcome.sandbox_failure(message))

    def stop_zygote(self) -> None:
        if self.connection is not None:
            self.connection.kill()
            self.connection = None
        self.state = ZygoteState.DEAD

    def zygote_pid(self) -> int | None:
        """Host pid of the running zygote's process (bubblewrap or docker client), if any."""
        pid = getattr(self.connection, "pid", None)
        return pid if isinstance(pid, int) else None


class ZygotePool:
    """Runs `ExecRequest`s on zygotes; thread-safe; `submit` returns a Future."""

    def __init__(self, launcher: ZygoteLauncher, *, workers: int, seed_groups: int,
                 batch_size: int = 32, recycle_after: int = 100_000) -> None:
        if seed_groups < 1:
            raise ValueError("seed_groups must be >= 1")
        self.launcher = launcher
        self.seed_groups = seed_groups
        self.batch_size = batch_size
        self.recycle_after = recycle_after
        self.queues: list[queue.SimpleQueue[_Job | None]] = [
            queue.SimpleQueue() for _ in range(seed_groups)]
        # Every group needs at least one zygote; extra workers are spread round-robin.
        count = max(workers, seed_groups)
        self.workers = [_Worker(self, index, index % seed_groups) for index in range(count)]
        self.closed = False
        self._lock = threading.Lock()
        self._restarts = 0
        self._executions = 0
        self._started = False

    def start(self) -> None:
        """Starts every zygote (in parallel) and fails loudly if any cannot start."""
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.booted.wait()
        errors = [worker.boot_error for worker in self.workers if worker.boot_error]
        if errors:
            self.close()
            raise errors[0]
        self._started = True

    def submit(self, request: ExecRequest, group: int) -> Future[ExecOutcome]:
        if self.closed:
            raise PoolClosedError("the sandbox pool is closed")
        future: Future[ExecOutcome] = Future()
        self.queues[group % self.seed_groups].put(_Job(request, future))
        return future

    def count_restart(self) -> None:
        with self._lock:
            self._restarts += 1

    def count_executions(self, count: int) -> None:
        with self._lock:
            self._executions += count

    @property
    def ready(self) -> bool:
        return self._started and not self.closed

    def stats(self) -> PoolStats:
        states = Counter(str(worker.state) for worker in self.workers)
        return PoolStats(
            backend=self.launcher.backend,
            workers=len(self.workers),
            seed_groups=self.seed_groups,
            states={state.value: states.get(state.value, 0) for state in ZygoteState},
            restarts=self._restarts,
            executions=self._executions,
            queued=sum(q.qsize() for q in self.queues),
        )

    def zygote_pids(self) -> Sequence[int | None]:
        return [worker.zygote_pid() for worker in self.workers]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for worker in self.workers:
            self.queues[worker.group].put(None)
        for worker in self.workers:
            if worker.is_alive():
                worker.join(timeout=10.0)
            else:
                worker.stop_zygote()
        # Anything still queued gets an answer instead of hanging its caller.
        for work in self.queues:
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    break
                if job is not None and not job.future.done():
                    job.future.set_result(ExecOutcome.sandbox_failure("pool closed"))
        self.launcher.close()
