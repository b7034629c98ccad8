"""The baseline: AZR's reference executor semantics, unsandboxed, in one worker process.

The reference (LeapLabTHU/Absolute-Zero-Reasoner, `PythonExecutor` with
`executor_max_workers: 1`) builds a snippet per check from a template, `exec`s every line of it
but the last and `eval`s the last one, in a fresh namespace in a single pool process, under a
SIGALRM timeout:

- a proposal (`check_all(check_determinism=True)`): refused without running when it imports a
  banned module; otherwise `returns = f(i)`, then `f(i)` once more in the same process, and
  `returns != f(i)` is "non-deterministic"; the output is `repr(returns)` (cut to 400 chars);
  an induction proposal is checked input by input and stops at the first failure;
- an abduction answer: `gold == f(i')`;
- a deduction answer: `eval(gold) == eval(o')` without running anything, and when that is not
  true, the program's snippet is run anyway (its template cannot succeed);
- an induction answer program: `ok == p'(ik)` for every hidden pair, one snippet each.

This reimplements those semantics (nothing is copied) so the benchmark can compare the
service with what AZR runs without it. It executes the programs it is given with no isolation
at all: only ever feed it the benchmark's own generated workload.

Like the reference, every snippet is one round trip to the worker (the reference's trainer
calls its executor once per check); the round trip here is a bare pipe, cheaper than the
reference's `pebble` pool with its task threads, so the baseline is if anything too fast.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

# AZR's `azr.data_selection_strategy.banned_words` (azr_ppo_trainer.yaml).
BANNED_WORDS = ("logging", "random", "multiprocessing", "pebble", "subprocess", "threading",
                "datetime", "time", "hashlib", "hmac", "bcrypt", "os.sys", "os.path",
                "sys.exit", "os.environ", "calendar")
OUTPUT_CHARS = 400
DONE = "Done"


@dataclass(frozen=True)
class ProposalJob:
    """`check_all(check_determinism=True)` on one input."""

    program: str
    input: str


@dataclass(frozen=True)
class ProposalResult:
    valid: bool
    output: str
    runs: int


@dataclass(frozen=True)
class InputPredictionJob:
    """`gold == f(agent_input)`: an abduction answer, or one hidden pair of an induction one."""

    program: str
    gold_output: str
    agent_input: str


@dataclass(frozen=True)
class OutputPredictionJob:
    """A deduction answer."""

    program: str
    gold_output: str
    agent_output: str


@dataclass(frozen=True)
class Score:
    correct: bool
    runs: int


Job = ProposalJob | InputPredictionJob | OutputPredictionJob
JobResult = ProposalResult | Score


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout("Timeout Error")


def _execute(snippet: str, timeout_s: float) -> tuple[str, str]:
    """(str of the last line's value, "Done") or ("", the exception's last traceback line)."""
    lines = snippet.split("\n")
    namespace: dict[str, Any] = {}
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        exec("\n".join(lines[:-1]), namespace)
        value = eval(lines[-1], namespace)
        text = str(value)
        pickle.dumps(value)
    except BaseException:
        return "", traceback.format_exc().strip().split("\n")[-1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return text, DONE


def _failed(status: str) -> bool:
    return "error" in status.lower()


def _truncate(text: str) -> str:
    half = OUTPUT_CHARS // 2
    return text if len(text) <= OUTPUT_CHARS else text[:half] + "..." + text[-half:]


def _run(job: Job, timeout_s: float) -> JobResult:
    if isinstance(job, ProposalJob):
        # The status of a mismatch names no "error": the reference then counts the proposal
        # as valid, and so does this.
        snippet = (f"{job.program}\nreturns = f({job.input})\nif returns != f({job.input}):\n"
                   f"    raise Exception('Non-deterministic code')\nrepr(returns)")
        output, status = _execute(snippet, timeout_s)
        return ProposalResult(not _failed(status), _truncate(output.strip()), 2)
    if isinstance(job, InputPredictionJob):
        result, status = _execute(f"{job.program}\n{job.gold_output} == f({job.agent_input})",
                                  timeout_s)
        return Score(not _failed(status) and result == "True", 1)
    try:  # the reference's fast path: no program involved
        if eval(job.gold_output) == eval(job.agent_output):
            return Score(True, 0)
    except BaseException:
        pass
    result, status = _execute(f"{job.program}\neval({job.gold_output}) == "
                              f"eval({job.agent_output})", timeout_s)
    return Score(not _failed(status) and result == "True", 1)


def _serve(conn: Connection, timeout_s: float) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(_run(job, timeout_s))


class ReferenceExecutor:
    """One long-lived worker process; each job is one round trip, in order."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, timeout_s), daemon=True,
                                        name="azr-reference-executor")
        self._process.start()
        child.close()

    def run(self, job: Job) -> JobResult:
        self._conn.send(job)
        result: JobResult = self._conn.recv()
        return result

    def run_all(self, jobs: Sequence[Job]) -> list[JobResult]:
        return [self.run(job) for job in jobs]

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> ReferenceExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def banned(program: str) -> bool:
    """The reference's import check, with its banned words (the client's mirror of it)."""
    from azr_verify.client.azr_executor import contains_banned

    return contains_banned(program, BANNED_WORDS)
