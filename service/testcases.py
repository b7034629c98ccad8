"""Programs run as scripts: stdin/stdout test cases, and single runs for /run_code.

A test-case item is a whole program (`python program.py`) and a list of (stdin, expected
stdout) cases. Per item: the static checks in the trusted process (syntax without `compile`,
the named policy), then per case a cache lookup and one execution in the script mode of the
same zygotes that run triples (docs/design.md §10). What a case did is decided from the
zygote's observations (`sandbox/outcome.py`); its stdout is then compared with the expected
output (`verify/stdout_compare.py`). Identical (program, case) pairs in one batch run once.

Only a compact form of each execution is kept (the verdict, the start of stdout, the end of
stderr): a case's full output is compared and dropped as soon as its execution is answered,
on the pool's thread, so a batch holds at most what is in flight, never a megabyte per case.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from azr_verify.service.config import Settings
from azr_verify.service.models import (
    CaseResult,
    CompareMode,
    PolicyName,
    RunResult,
    ScriptLimits,
    TestCase,
    TestcaseItem,
    TestcaseResult,
    Verdict,
    Violation,
)
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import ExecRequest, Mode
from azr_verify.service.stores.cache.entries import (
    UNCACHEABLE,
    CachedRun,
    ResultCache,
    testcase_cache_key,
)
from azr_verify.service.verify.policy import ProgramCheck
from azr_verify.service.verify.run_outcome import ExecOutcome, OutcomeKind
from azr_verify.service.verify.stdout_compare import expected_bytes, head, outputs_match, tail

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]

_LIMIT_VERDICTS = {
    OutcomeKind.TIMEOUT: Verdict.TIMEOUT,
    OutcomeKind.MEMORY: Verdict.MEMORY_LIMIT,
    OutcomeKind.OUTPUT_LIMIT: Verdict.OUTPUT_LIMIT,
    OutcomeKind.SANDBOX_ERROR: Verdict.SANDBOX_ERROR,
}


class ScriptHost(Protocol):
    """What the engine lends to script runs: its pool, cache, memos and counters."""

    settings: Settings
    pool: ZygotePool
    cache: ResultCache
    cache_fingerprint: str

    def check_program(self, program: str, policy: PolicyName) -> ProgramCheck: ...

    def count(self, *, executions: int = 0, cache_hits: int = 0, cache_misses: int = 0,
              verdicts: Iterable[Verdict] = ()) -> None: ...


@dataclass(frozen=True)
class ScriptRun:
    """One execution of a script as the trusted side decided it, before any comparison:
    `accepted` means it exited 0."""

    verdict: Verdict
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0


@dataclass(frozen=True)
class StaticRefusal:
    """A program refused before it ran: syntax_error or unsafe."""

    verdict: Verdict
    error: str
    violations: tuple[Violation, ...] = ()


def script_run(outcome: ExecOutcome) -> ScriptRun:
    """What an execution of a script did. The exit status is the program's own and never a
    limit verdict; limits and sandbox errors come only from observations (§9.2)."""
    def run(verdict: Verdict, error_type: str | None = None,
            error: str | None = None) -> ScriptRun:
        return ScriptRun(verdict, stdout=outcome.stdout or b"", stderr=outcome.stderr or b"",
                         exit_code=outcome.exit_code, error_type=error_type, error=error,
                         duration_ms=outcome.duration_ms)

    if outcome.kind is OutcomeKind.EXITED:
        if outcome.exit_code == 0:
            return run(Verdict.ACCEPTED)
        return run(Verdict.RUNTIME_ERROR, error=f"exited with status {outcome.exit_code}")
    if outcome.kind is OutcomeKind.CRASH:
        return run(Verdict.RUNTIME_ERROR, outcome.error_type, outcome.error)
    verdict = _LIMIT_VERDICTS.get(outcome.kind)
    if verdict is None:  # a call-mode outcome for a script: the pool's bug, not the program's
        return run(Verdict.SANDBOX_ERROR, error=f"unexpected outcome {outcome.kind} for a script")
    return run(verdict, outcome.error_type, outcome.error)


def judge_case(run: ScriptRun, expected: bytes | None, compare: CompareMode,
               excerpt_chars: int) -> CachedRun:
    """A case's verdict (its stdout compared when it exited 0) in the compact form kept."""
    verdict, error = run.verdict, run.error
    if verdict is Verdict.ACCEPTED and expected is not None \
            and not outputs_match(run.stdout, expected, compare):
        verdict = Verdict.WRONG_OUTPUT
        error = f"stdout differs from the expected output (compare={compare.value})"
    return CachedRun(verdict=verdict, output=head(run.stdout, excerpt_chars),
                     output_bytes=len(run.stdout), stderr=tail(run.stderr, excerpt_chars),
                     exit_code=run.exit_code, error_type=run.error_type, error=error,
                     duration_ms=run.duration_ms)


def fold_cases(cases: Sequence[CaseResult]) -> tuple[Verdict, str | None]:
    """A program's verdict: accepted when every case is; else the first case that failed on
    its own account decides; a sandbox_error decides only when no case failed (the program
    could not be judged, and the client may retry)."""
    total = len(cases)
    for number, case in enumerate(cases, start=1):
        if case.verdict not in (Verdict.ACCEPTED, Verdict.SANDBOX_ERROR):
            detail = f": {case.error}" if case.error else ""
            return case.verdict, f"case {number} of {total}: {case.verdict.value}{detail}"
    for number, case in enumerate(cases, start=1):
        if case.verdict is Verdict.SANDBOX_ERROR:
            return Verdict.SANDBOX_ERROR, f"case {number} of {total} could not be run: " \
                                          f"{case.error or 'sandbox error'}"
    return Verdict.ACCEPTED, None


@dataclass
class _Slot:
    """A case in flight; filled on the pool's thread when its execution is answered."""

    key: str
    done: threading.Event = field(default_factory=threading.Event)
    run: CachedRun | None = None

    def fill(self, run: CachedRun) -> None:
        self.run = run
        self.done.set()

    def wait(self) -> CachedRun:
        self.done.wait()
        assert self.run is not None
        return self.run


class ScriptRunner:
    """Thread-safe; one per engine."""

    def __init__(self, host: ScriptHost) -> None:
        self.host = host

    # -- limits and static checks ---------------------------------------------------------

    def limits_for(self, timeout_s: float | None, memory_mb: int | None) -> ScriptLimits:
        s = self.host.settings
        return ScriptLimits(timeout_s=min(timeout_s or s.default_timeout_s, s.max_timeout_s),
                            memory_mb=min(memory_mb or s.default_memory_mb, s.max_memory_mb),
                            output_limit_bytes=s.script_output_limit_bytes)

    def static_refusal(self, program: str, policy: PolicyName) -> StaticRefusal | None:
        """syntax_error or unsafe, decided in the trusted process without `compile` (the
        tools of the policy, docs/design.md §6); None when the program may run."""
        check = self.host.check_program(program, policy)
        if check.syntax_error is not None:
            return StaticRefusal(Verdict.SYNTAX_ERROR, f"program: {check.syntax_error}")
        if check.violations:
            names = ", ".join(sorted({v.name for v in check.violations}))
            return StaticRefusal(Verdict.UNSAFE, f"rejected by policy {policy.value}: {names}",
                                 tuple(check.violations))
        return None

    # -- one run (/run_code) --------------------------------------------------------------

    def run_once(self, program: str, stdin: bytes, limits: ScriptLimits,
                 policy: PolicyName) -> RunResult:
        """Runs `program` once on `stdin`; never cached (a raw run, like SandboxFusion's)."""
        refusal = self.static_refusal(program, policy)
        if refusal is not None:
            self.host.count(verdicts=[refusal.verdict])
            return RunResult(verdict=refusal.verdict, error=refusal.error,
                             violations=list(refusal.violations), limits=limits)
        request = _request(program, stdin, limits)
        group = hash(stdin) % self.host.pool.seed_groups  # any group: a script runs once
        self.host.count(executions=1)
        run = script_run(self.host.pool.submit(request, group, object()).result())
        self.host.count(verdicts=[run.verdict])
        return RunResult(verdict=run.verdict, exit_code=run.exit_code,
                         stdout=run.stdout.decode("utf-8", "replace"),
                         stderr=run.stderr.decode("utf-8", "replace"),
                         error_type=run.error_type, error=run.error,
                         duration_ms=run.duration_ms, limits=limits)

    # -- test cases -----------------------------------------------------------------------

    def check(self, items: Sequence[TestcaseItem], policy: PolicyName = PolicyName.PERMISSIVE,
              on_progress: ProgressCallback | None = None) -> list[TestcaseResult]:
        total = len(items)
        results: list[TestcaseResult | None] = [None] * total
        waiting: dict[int, tuple[ScriptLimits, list[_Slot | CachedRun]]] = {}
        in_flight: dict[str, _Slot] = {}
        tenant = object()  # this call's lane in the pool (sandbox/fair_queue)
        hits = misses = 0
        excerpt = self.host.settings.testcase_excerpt_chars
        for index, item in enumerate(items):
            refusal = self.static_refusal(item.program, policy)
            if refusal is not None:
                results[index] = _refused(item, refusal)
                continue
            limits = self.limits_for(item.timeout_s, item.memory_mb)
            cases: list[_Slot | CachedRun] = []
            for case in item.cases:
                key = testcase_cache_key(
                    program=item.program, stdin=case.input, expected=case.output,
                    compare=item.compare.value, policy=policy, timeout_s=limits.timeout_s,
                    memory_mb=limits.memory_mb, output_limit_bytes=limits.output_limit_bytes,
                    excerpt_chars=excerpt, runtime=self.host.cache_fingerprint)
                cached = self.host.cache.get(key)
                if cached is not None:
                    hits += 1
                    cases.append(cached)
                    continue
                misses += 1
                slot = in_flight.get(key)
                if slot is None:
                    slot = self._submit(item.program, case, item.compare, limits, key, tenant)
                    in_flight[key] = slot
                cases.append(slot)
            waiting[index] = (limits, cases)
        self.host.count(executions=len(in_flight), cache_hits=hits, cache_misses=misses)

        done = total - len(waiting)
        if on_progress is not None:
            on_progress(done, total)
        stored: set[str] = set()
        for index, (limits, cases) in waiting.items():
            answered = []
            for entry in cases:
                if isinstance(entry, CachedRun):
                    answered.append(_case_result(entry, cached=True))
                    continue
                run = entry.wait()
                if entry.key not in stored and run.verdict not in UNCACHEABLE:
                    stored.add(entry.key)
                    self.host.cache.put(entry.key, run)
                answered.append(_case_result(run, cached=False))
            results[index] = _program_result(items[index], answered, self._reported(
                items[index], limits))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        final = [result for result in results if result is not None]
        assert len(final) == total
        self.host.count(verdicts=[result.verdict for result in final])
        return final

    def _submit(self, program: str, case: TestCase, compare: CompareMode,
                limits: ScriptLimits, key: str, tenant: object) -> _Slot:
        request = _request(program, case.input.encode("utf-8", "surrogatepass"), limits)
        expected = None if case.output is None else expected_bytes(case.output)
        # The seed group depends only on the content, so a case's outcome is reproducible.
        group = int(key[:8], 16) % self.host.pool.seed_groups
        slot = _Slot(key)
        future = self.host.pool.submit(request, group, tenant)
        future.add_done_callback(partial(self._settle, slot, expected, compare))
        return slot

    def _settle(self, slot: _Slot, expected: bytes | None, compare: CompareMode,
                future: Future[ExecOutcome]) -> None:
        """Runs on the pool's thread: compares, keeps the compact form, drops the output."""
        try:
            outcome = future.result()
            run = judge_case(script_run(outcome), expected, compare,
                             self.host.settings.testcase_excerpt_chars)
        except Exception:  # a callback's boundary: the waiting caller must get an answer
            log.exception("judging a test case failed")
            run = CachedRun(verdict=Verdict.SANDBOX_ERROR,
                            error="the verifier failed while judging this case")
        slot.fill(run)

    @staticmethod
    def _reported(item: TestcaseItem, limits: ScriptLimits) -> ScriptLimits | None:
        return limits if item.timeout_s is not None or item.memory_mb is not None else None


def _request(program: str, stdin: bytes, limits: ScriptLimits) -> ExecRequest:
    return ExecRequest(program=program, entry="", args="", timeout_s=limits.timeout_s,
                       memory_mb=limits.memory_mb, output_limit=limits.output_limit_bytes,
                       mode=Mode.SCRIPT, stdin=stdin)


def _case_result(run: CachedRun, cached: bool) -> CaseResult:
    return CaseResult(verdict=run.verdict, exit_code=run.exit_code, stdout=run.output,
                      stdout_bytes=run.output_bytes, stderr=run.stderr,
                      error_type=run.error_type, error=run.error,
                      duration_ms=0.0 if cached else run.duration_ms, cached=cached)


def _program_result(item: TestcaseItem, cases: list[CaseResult],
                    limits: ScriptLimits | None) -> TestcaseResult:
    verdict, error = fold_cases(cases)
    return TestcaseResult(
        id=item.id, verdict=verdict, error=error, cases=cases, limits=limits,
        passed=sum(case.verdict is Verdict.ACCEPTED for case in cases), total=len(cases),
        duration_ms=round(sum(case.duration_ms for case in cases), 3),
        cached=all(case.cached for case in cases))


def _refused(item: TestcaseItem, refusal: StaticRefusal) -> TestcaseResult:
    """Every case of a program that never ran carries the program's verdict."""
    cases = [CaseResult(verdict=refusal.verdict, error=refusal.error) for _ in item.cases]
    return TestcaseResult(id=item.id, verdict=refusal.verdict, passed=0, total=len(cases),
                          cases=cases, error=refusal.error,
                          violations=list(refusal.violations))
