"""A pool of zygotes grouped by secret hash seeds, fed in batches by one thread per zygote.

Determinism runs of one item must land on zygotes that differ in hash seed and heap layout, so
the pool keeps one work queue per seed group; each zygote serves one group. Seeds and layouts
are drawn fresh and secretly at every pool start (docs/design.md §9.4). Outcomes stream back one
item at a time; a zygote that dies is replaced, and only the executions it had not answered are
retried once, then answered `sandbox_error`.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum

from azr_verify.service.errors import (
    PoolClosedError,
    SandboxUnavailableError,
    ZygoteDiedError,
)
from azr_verify.service.sandbox import runner
from azr_verify.service.sandbox.fair_queue import FairQueue
from azr_verify.service.sandbox.outcome import decode, expected_streams
from azr_verify.service.sandbox.protocol import (
    CHUNK_RECORD,
    DONE_RECORD,
    HELLO_RECORD,
    MAX_HELLO_BYTES,
    RUNNER_PROTOCOL,
    ExecRequest,
    Observation,
    RecordType,
    Stream,
    ZygoteConnection,
    ZygoteLauncher,
    ZygoteSecrets,
    encode_frame,
)
from azr_verify.service.sandbox.seccomp.zygote_filter import native_zygote_filter
from azr_verify.service.verify.run_outcome import ExecOutcome

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
    tenant: Hashable  # whose work it is, for fair turns (see FairQueue)
    attempts: int = 0


@dataclass
class PoolStats:
    """A snapshot for /v1/info and metrics."""

    backend: str
    zygotes: int
    seed_groups: int
    states: dict[str, int]
    restarts: int
    executions: int
    queued: int
    child_cpu_ms: float  # CPU time of every child the zygotes reaped (kernel accounting)
    child_minor_faults: int  # their minor page faults: the main cost of a forked child


PROBE_FAILURES = {
    runner.PROBE_FORK_BLOCKED: "a sandboxed program could fork (the sandbox must run under an "
                               "unprivileged uid: RLIMIT_NPROC is not enforced for root)",
    runner.PROBE_RANDOMNESS_BLOCKED: "a sandboxed program could read random bytes "
                                     "(getrandom, /dev/urandom or /dev/random is reachable)",
    runner.PROBE_FILESYSTEM_READ_ONLY: "a sandboxed program could create files or directories",
    runner.PROBE_SCHEDULING_BLOCKED: "a sandboxed program could change the zygote's CPU "
                                     "affinity, priority or scheduler",
}


def draw_secrets(seed_groups: int, seccomp_filter: bytes) -> list[ZygoteSecrets]:
    """Distinct, secret hash seeds (never 0, which disables hashing randomisation) and heap
    layouts, one per seed group, fresh at every pool start; each with the zygotes' filter."""
    seeds: list[int] = []
    while len(seeds) < seed_groups:
        seed = 1 + secrets.randbelow(2**32 - 1)
        if seed not in seeds:
            seeds.append(seed)
    # Per aligned kind, a secret shuffle of its pool positions, spread as far apart as the groups
    # allow (a stray allocation in one run cannot then close the gap): group g gets the g-th,
    # no two groups share one while there are no more groups than positions, and a zygote
    # learns only its own.
    shuffles = []
    for _, _, block, _ in runner.ALIGNED_KINDS:
        modulus = runner.align_modulus(block)
        positions = list(range(0, modulus, max(1, modulus // seed_groups)))
        shuffles.append(secrets.SystemRandom().sample(positions, len(positions)))
    return [ZygoteSecrets(hash_seed=seed,
                          layout=",".join(str(shuffle[group % len(shuffle)])
                                          for shuffle in shuffles),
                          seccomp_filter=seccomp_filter)
            for group, seed in enumerate(seeds)]


def _start_zygote(launcher: ZygoteLauncher, zygote_secrets: ZygoteSecrets,
                  index: int) -> ZygoteConnection:
    connection = launcher.launch(zygote_secrets, index)
    try:
        kind, size = HELLO_RECORD.unpack(connection.recv_exact(HELLO_RECORD.size,
                                                               HELLO_TIMEOUT_S))
        if kind != RecordType.HELLO or size > MAX_HELLO_BYTES:
            raise ValueError(f"record {kind} of {size} bytes instead of a hello")
        hello = json.loads(connection.recv_exact(size, HELLO_TIMEOUT_S))
    except (ZygoteDiedError, ValueError) as exc:
        connection.kill()
        raise SandboxUnavailableError(f"zygote did not start: {exc}") from exc
    if not isinstance(hello, dict) or hello.get("kind") != "hello" \
            or hello.get("protocol") != RUNNER_PROTOCOL \
            or hello.get("hash_seed") != str(zygote_secrets.hash_seed):
        connection.kill()
        shown = {key: value for key, value in hello.items() if key != "hash_seed"} \
            if isinstance(hello, dict) else hello
        raise SandboxUnavailableError(
            f"zygote sent an unexpected greeting (protocol {RUNNER_PROTOCOL} and its hash seed "
            f"expected): {shown!r}")
    probe = hello.get("probe")
    failed = [reason for bit, reason in PROBE_FAILURES.items()
              if not isinstance(probe, int) or not probe & bit]
    if failed:
        connection.kill()
        raise SandboxUnavailableError("zygote self-test failed: " + "; ".join(failed))
    return connection


class _ZygoteThread(threading.Thread):
    """A pool thread: owns one zygote, pulls batches from its group's queue, ships them,
    resolves futures."""

    def __init__(self, pool: ZygotePool, index: int, group: int) -> None:
        super().__init__(name=f"azr-zygote-{index}", daemon=True)
        self.pool = pool
        self.index = index
        self.group = group
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
            self.connection = _start_zygote(self.pool.launcher,
                                            self.pool.secrets[self.group], self.index)
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
            batch = work.take(self.pool.batch_size)
            if batch is None:
                break
            self._serve(batch)
        self.stop_zygote()

    def _serve(self, batch: list[_Job]) -> None:
        """Ships `batch` and answers it, keeping the zygote fed meanwhile: while a frame is
        being answered, the next one (work taken without waiting) is already in the zygote's
        input, so the zygote never idles waiting for this thread between frames, and work that
        arrives meanwhile is at most one frame behind the one running."""
        try:
            self.ensure_started()
        except SandboxUnavailableError as exc:
            self._failures_in_a_row += 1
            log.error("zygote %d cannot start: %s", self.index, exc)
            self._fail_or_retry(batch, str(exc))
            time.sleep(RESTART_BACKOFF_S[min(self._failures_in_a_row,
                                             len(RESTART_BACKOFF_S) - 1)])
            return
        connection = self.connection
        assert connection is not None
        work = self.pool.queues[self.group]
        self.state = ZygoteState.BUSY
        in_flight: deque[list[_Job]] = deque([batch])
        answered = 0  # items of in_flight[0] answered so far
        try:
            connection.send(encode_frame([job.request for job in batch]))
            while in_flight:
                frame = in_flight[0]
                if len(in_flight) == 1 and not self._recycle_due(len(frame)):
                    following = work.take_nowait(self.pool.batch_size)
                    if following:
                        # In flight before it is sent: if the send fails, its jobs are
                        # retried with the rest, never dropped.
                        in_flight.append(following)
                        connection.send(encode_frame([job.request for job in following]))
                job = frame[answered]
                outcome, observation = self._receive(connection, answered, job.request)
                job.future.set_result(outcome)
                self.pool.count_execution(observation)
                answered += 1
                if answered == len(frame):
                    in_flight.popleft()
                    answered = 0
                    self.executions_since_start += len(frame)
        except (ZygoteDiedError, ValueError) as exc:
            # In order, so the first `answered` are the running frame's answered jobs.
            unanswered = [job for frame in in_flight for job in frame][answered:]
            log.warning("zygote %d failed mid-batch (%d jobs unanswered): %s",
                        self.index, len(unanswered), exc)
            self.stop_zygote()
            self.pool.count_restart()
            self._fail_or_retry(unanswered, f"sandbox failed: {exc}")
            return
        self._failures_in_a_row = 0
        self.state = ZygoteState.IDLE
        if self._recycle_due(0):
            self.stop_zygote()

    def _recycle_due(self, running: int) -> bool:
        """Whether the zygote has served its share once the `running` executions are done."""
        return self.executions_since_start + running >= self.pool.recycle_after

    @staticmethod
    def _receive(connection: ZygoteConnection, index: int,
                 request: ExecRequest) -> tuple[ExecOutcome, Observation]:
        """Reads one item's chunk records and its done record; ValueError or ZygoteDiedError
        when the zygote breaks the protocol (it, not the item, is then at fault)."""
        budget = request.timeout_s + ANSWER_GRACE_S
        streams: dict[int, bytearray] = {stream: bytearray()
                                         for stream in expected_streams(request.mode)}
        while True:
            kind = connection.recv_exact(1, budget)[0]
            if kind == RecordType.CHUNK:
                chunk_index, stream, size = CHUNK_RECORD.unpack(
                    bytes((kind,)) + connection.recv_exact(CHUNK_RECORD.size - 1, budget))[1:]
                received = streams.get(stream)
                if chunk_index != index or received is None \
                        or len(received) + size > request.report_cap:
                    raise ValueError(f"chunk record out of order, of another stream or over "
                                     f"the cap (item {chunk_index}, stream {stream}, "
                                     f"{size} bytes)")
                received += connection.recv_exact(size, budget)
            elif kind == RecordType.DONE:
                observation = Observation.unpack(
                    connection.recv_exact(DONE_RECORD.size - 1, budget))
                if observation.index != index:
                    raise ValueError(f"done record for item {observation.index}, "
                                     f"expected {index}")
                outputs = {Stream(stream): bytes(data) for stream, data in streams.items()}
                return decode(request, observation, outputs), observation
            else:
                raise ValueError(f"unexpected record type {kind}")

    def _fail_or_retry(self, batch: list[_Job], message: str) -> None:
        for job in batch:
            job.attempts += 1
            if job.attempts < MAX_ATTEMPTS and not self.pool.closed:
                self.pool.queues[self.group].put(job, job.tenant)
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

    def __init__(self, launcher: ZygoteLauncher, *, zygotes: int, seed_groups: int,
                 batch_size: int = 4, recycle_after: int = 100_000) -> None:
        if seed_groups < 1:
            raise ValueError("seed_groups must be >= 1")
        self.launcher = launcher
        self.seed_groups = seed_groups
        self.secrets = draw_secrets(seed_groups, native_zygote_filter())
        self.batch_size = batch_size
        self.recycle_after = recycle_after
        self.queues: list[FairQueue[_Job]] = [FairQueue() for _ in range(seed_groups)]
        # Every group needs at least one zygote; extra zygotes are spread round-robin.
        count = max(zygotes, seed_groups)
        self.zygote_threads = [_ZygoteThread(self, index, index % seed_groups)
                               for index in range(count)]
        self.closed = False
        self._lock = threading.Lock()
        self._restarts = 0
        self._executions = 0
        self._child_cpu_us = 0
        self._child_minor_faults = 0
        self._started = False

    def start(self) -> None:
        """Starts every zygote (in parallel) and fails loudly if any cannot start."""
        for thread in self.zygote_threads:
            thread.start()
        for thread in self.zygote_threads:
            thread.booted.wait()
        errors = [thread.boot_error for thread in self.zygote_threads if thread.boot_error]
        if errors:
            self.close()
            raise errors[0]
        self._started = True

    def submit(self, request: ExecRequest, group: int,
               tenant: Hashable = None) -> Future[ExecOutcome]:
        """Queues one execution on a zygote of `group`; executions of different tenants (e.g.
        different requests) take turns, so a small request is not queued behind a big one."""
        if self.closed:
            raise PoolClosedError("the sandbox pool is closed")
        future: Future[ExecOutcome] = Future()
        self.queues[group % self.seed_groups].put(_Job(request, future, tenant), tenant)
        return future

    def count_restart(self) -> None:
        with self._lock:
            self._restarts += 1

    def count_execution(self, observation: Observation) -> None:
        with self._lock:
            self._executions += 1
            self._child_cpu_us += observation.cpu_us
            self._child_minor_faults += observation.minor_faults

    @property
    def ready(self) -> bool:
        return self._started and not self.closed

    def stats(self) -> PoolStats:
        states = Counter(str(thread.state) for thread in self.zygote_threads)
        return PoolStats(
            backend=self.launcher.backend,
            zygotes=len(self.zygote_threads),
            seed_groups=self.seed_groups,
            states={state.value: states.get(state.value, 0) for state in ZygoteState},
            restarts=self._restarts,
            executions=self._executions,
            queued=sum(len(q) for q in self.queues),
            child_cpu_ms=self._child_cpu_us / 1000.0,
            child_minor_faults=self._child_minor_faults,
        )

    def zygote_pids(self) -> Sequence[int | None]:
        return [thread.zygote_pid() for thread in self.zygote_threads]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for work in self.queues:
            work.close()
        for thread in self.zygote_threads:
            if thread.is_alive():
                thread.join(timeout=10.0)
            else:
                thread.stop_zygote()
        # Anything still queued gets an answer instead of hanging its caller.
        for work in self.queues:
            for job in work.drain():
                if not job.future.done():
                    job.future.set_result(ExecOutcome.sandbox_failure("pool closed"))
        self.launcher.close()
