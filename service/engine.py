"""The verification engine: triples in, verdicts out, in order.

For each item: static checks in the trusted process (program syntax, safety policy, entry
function, literal input and expected output), then a cache lookup, then `determinism_runs`
executions on zygotes of different hash-seed groups, folded into one verdict and compared with
the expected output by value. Identical (program, input) pairs in one batch run once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from azr_verify.service import __version__
from azr_verify.service.config import BackendName, Settings
from azr_verify.service.memo import LiteralParses, ProgramChecks
from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    Limits,
    PolicyName,
    RunResult,
    TestcaseItem,
    TestcaseResult,
    Verdict,
)
from azr_verify.service.sandbox.outcome import MALFORMED
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import (
    RUNNER_PROTOCOL,
    ExecOutcome,
    ExecRequest,
    OutcomeKind,
    ZygoteLauncher,
)
from azr_verify.service.stores.cache.entries import UNCACHEABLE, CachedRun, ResultCache, cache_key
from azr_verify.service.stores.cache.memory import MemoryCache
from azr_verify.service.testcases import ScriptRunner
from azr_verify.service.verify.compare import compare_item
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import LiteralError, parse_call_arguments
from azr_verify.service.verify.policy import ProgramCheck

ProgressCallback = Callable[[int, int], None]

_RESOURCE_VERDICTS = (
    (OutcomeKind.SANDBOX_ERROR, Verdict.SANDBOX_ERROR),
    (OutcomeKind.TIMEOUT, Verdict.TIMEOUT),
    (OutcomeKind.MEMORY, Verdict.MEMORY_LIMIT),
    (OutcomeKind.OUTPUT_LIMIT, Verdict.OUTPUT_LIMIT),
)
_AGREED_VERDICTS = {
    OutcomeKind.ERROR: Verdict.RUNTIME_ERROR,
    OutcomeKind.CRASH: Verdict.RUNTIME_ERROR,
    OutcomeKind.NOT_LITERAL: Verdict.NOT_LITERAL,
    OutcomeKind.NO_ENTRY: Verdict.SYNTAX_ERROR,
}
# `expected` of an item that gave no output to compare with.
_NO_EXPECTED_OUTPUT = object()


def build_pool(settings: Settings) -> ZygotePool:
    """The sandbox pool for the configured backend (not started)."""
    if settings.sandbox is BackendName.DOCKER:
        from azr_verify.service.sandbox.docker_backend import DockerLauncher

        launcher: ZygoteLauncher = DockerLauncher(settings)
        recycle_after = settings.docker_recycle_after
    else:
        from azr_verify.service.sandbox.process_backend import BubblewrapLauncher

        launcher = BubblewrapLauncher(settings.python)
        recycle_after = 100_000  # bounds pid reuse inside a zygote's namespace
    return ZygotePool(launcher, workers=settings.workers, seed_groups=settings.determinism_seeds,
                      batch_size=settings.zygote_batch, recycle_after=recycle_after)


@dataclass
class _Pending:
    """An item whose runs are in flight; several items may share one (deduplicated) run set."""

    key: str
    futures: list[Future[ExecOutcome]]


@dataclass
class EngineStats:
    executions: int
    cache_hits: int
    cache_misses: int
    verdicts: dict[str, int]


class Engine:
    """Thread-safe; `check` blocks until every item of the batch has a verdict."""

    def __init__(self, settings: Settings, pool: ZygotePool,
                 cache: ResultCache | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self.cache: ResultCache = cache if cache is not None else \
            MemoryCache(settings.result_cache_bytes)
        self.runtime = f"azr-verify/{__version__};runner/{RUNNER_PROTOCOL};" \
                       f"backend/{pool.launcher.backend};none/{settings.reject_none_output}"
        self._lock = threading.Lock()
        self._executions = 0
        self._cache_hits = 0
        self._cache_misses = 0
        self._verdicts: Counter[str] = Counter()
        # AZR checks the same program for every answer and the same output text in every
        # run, so both the static check and literal parsing are memoised, in bytes-bounded
        # memos keyed by content hash (service/memo.py); programs are also size-capped there.
        self._check_program = ProgramChecks.from_settings(settings)
        self._parse_literal = LiteralParses.from_settings(settings)
        # Whole programs run as scripts (test cases, /run_code) on the same pool, cache and
        # counters: service/testcases.py, docs/design.md §10.
        self.scripts = ScriptRunner(self)

    @classmethod
    def start(cls, settings: Settings, cache: ResultCache | None = None) -> Engine:
        pool = build_pool(settings)
        pool.start()
        return cls(settings, pool, cache)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- limits ---------------------------------------------------------------------------

    def limits_for(self, item: CheckItem) -> Limits:
        """Per-item limits, defaulted and capped by the server's settings."""
        s = self.settings
        return Limits(
            timeout_s=min(item.timeout_s or s.default_timeout_s, s.max_timeout_s),
            memory_mb=min(item.memory_mb or s.default_memory_mb, s.max_memory_mb),
            output_limit_chars=s.output_limit_chars,
            determinism_runs=min(item.determinism_runs or s.default_determinism_runs,
                                 s.determinism_seeds),
        )

    def _reported_limits(self, item: CheckItem) -> Limits | None:
        """What an item that asked for its own limits gets told it ran under (a request above
        the caps is lowered silently otherwise)."""
        if item.timeout_s is None and item.memory_mb is None and item.determinism_runs is None:
            return None
        return self.limits_for(item)

    # -- the batch ------------------------------------------------------------------------

    def check(self, items: Sequence[CheckItem], policy: PolicyName = PolicyName.AZR,
              on_progress: ProgressCallback | None = None) -> list[CheckResult]:
        total = len(items)
        results: list[CheckResult | None] = [None] * total
        expected: list[Any] = [_NO_EXPECTED_OUTPUT] * total
        pending: dict[int, _Pending] = {}
        in_flight: dict[str, list[Future[ExecOutcome]]] = {}
        done = 0
        tenant = object()  # this call's lane in the pool: calls take turns (sandbox/fair_queue)

        for index, item in enumerate(items):
            if item.program is None:  # a comparison: decided here, nothing runs
                results[index] = compare_item(item, self._parse_literal,
                                              self.settings.reject_none_output)
                done += 1
                continue
            early = self._static_verdict(item, policy)
            if early is not None:
                results[index] = early
                done += 1
                continue
            if item.output is not None:
                try:
                    expected[index] = self._parse_literal(item.output)
                except LiteralError as exc:
                    results[index] = CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                                                 error=f"output is not a literal: {exc}")
                    done += 1
                    continue
            limits = self.limits_for(item)
            key = cache_key(program=item.program, input_text=item.input, entry=item.entry,
                            policy=policy, limits=limits, runtime=self.runtime)
            cached = self.cache.get(key)
            if cached is not None:
                self._count_cache(hit=True)
                results[index] = self._finish(item, cached, expected[index], cached=True)
                done += 1
                continue
            self._count_cache(hit=False)
            futures = in_flight.get(key)
            if futures is None:
                futures = self._submit(item, limits, key, tenant)
                in_flight[key] = futures
            pending[index] = _Pending(key, futures)

        if on_progress is not None:
            on_progress(done, total)
        folded: dict[str, CachedRun] = {}
        for index, waiting in pending.items():
            run = folded.get(waiting.key)
            if run is None:
                run = self._fold([future.result() for future in waiting.futures])
                folded[waiting.key] = run
                if run.verdict not in UNCACHEABLE:
                    self.cache.put(waiting.key, run)
            results[index] = self._finish(items[index], run, expected[index], cached=False)
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        final = [result for result in results if result is not None]
        assert len(final) == total
        with self._lock:
            self._verdicts.update(result.verdict.value for result in final)
        return final

    def _static_verdict(self, item: CheckItem, policy: PolicyName) -> CheckResult | None:
        """syntax_error or unsafe decided without running anything, else None."""
        check: ProgramCheck = self._check_program(item.program, policy, item.entry)
        if check.syntax_error is not None:
            return CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                               error=f"program: {check.syntax_error}")
        if check.violations:
            names = ", ".join(sorted({v.name for v in check.violations}))
            return CheckResult(id=item.id, verdict=Verdict.UNSAFE,
                               violations=list(check.violations),
                               error=f"rejected by policy {policy.value}: {names}")
        if not check.has_entry:
            return CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                               error=f"entry function {item.entry!r} is not defined")
        try:
            parse_call_arguments(item.input, item.entry)
        except LiteralError as exc:
            return CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                               error=f"input: {exc}")
        return None

    def _submit(self, item: CheckItem, limits: Limits, key: str,
                tenant: object) -> list[Future[ExecOutcome]]:
        request = ExecRequest(program=item.program, entry=item.entry, args=item.input,
                              timeout_s=limits.timeout_s, memory_mb=limits.memory_mb,
                              output_limit=limits.output_limit_chars)
        # The seed groups an item uses depend only on its content, so its verdict is
        # reproducible, while different items spread over all groups.
        first = int(key[:8], 16)
        groups = self.pool.seed_groups
        with self._lock:
            self._executions += limits.determinism_runs
        return [self.pool.submit(request, (first + run) % groups, tenant)
                for run in range(limits.determinism_runs)]

    # -- folding --------------------------------------------------------------------------

    def _fold(self, outcomes: list[ExecOutcome]) -> CachedRun:
        """One verdict from all determinism runs of a (program, input).

        Every outcome was decided on the trusted side (`sandbox/outcome.py`); a value whose repr
        does not parse as a literal is a malformed report of that run.
        """
        duration = round(sum(outcome.duration_ms for outcome in outcomes), 3)
        outcomes = [self._validated(outcome) for outcome in outcomes]
        for kind, verdict in _RESOURCE_VERDICTS:
            hit = next((outcome for outcome in outcomes if outcome.kind is kind), None)
            if hit is not None:
                return CachedRun(verdict=verdict, error_type=hit.error_type, error=hit.error,
                                 duration_ms=duration)
        signatures = [self._signature(outcome) for outcome in outcomes]
        first = outcomes[0]
        for run, signature in enumerate(signatures[1:], start=2):
            if not _same_signature(signatures[0], signature):
                return CachedRun(
                    verdict=Verdict.NONDETERMINISTIC, duration_ms=duration,
                    error=f"run 1 gave {_describe(first)}; run {run} gave "
                          f"{_describe(outcomes[run - 1])}")
        if first.kind is OutcomeKind.VALUE:
            return CachedRun(verdict=Verdict.ACCEPTED, output=first.repr, duration_ms=duration)
        return CachedRun(verdict=_AGREED_VERDICTS[first.kind], error_type=first.error_type,
                         error=first.error, duration_ms=duration)

    def _validated(self, outcome: ExecOutcome) -> ExecOutcome:
        if outcome.kind is not OutcomeKind.VALUE:
            return outcome
        try:
            self._parse_literal(outcome.repr or "")
        except LiteralError as exc:
            return ExecOutcome(OutcomeKind.CRASH, error_type=MALFORMED,
                               error=f"the child's report could not be validated: the value is "
                                     f"not a literal ({exc})",
                               duration_ms=outcome.duration_ms)
        return outcome

    def _finish(self, item: CheckItem, run: CachedRun, expected: Any,
                cached: bool) -> CheckResult:
        """Applies the None policy and compares with the expected output."""
        base = {"id": item.id, "error_type": run.error_type, "error": run.error,
                "duration_ms": 0.0 if cached else run.duration_ms, "cached": cached,
                "limits": self._reported_limits(item)}
        if run.verdict is not Verdict.ACCEPTED:
            return CheckResult(verdict=run.verdict, **base)
        if self.settings.reject_none_output and run.output == "None":
            return CheckResult(verdict=Verdict.NOT_LITERAL, output=run.output,
                               **{**base, "error": "returned None (rejected by the None policy)"})
        if expected is _NO_EXPECTED_OUTPUT:
            return CheckResult(verdict=Verdict.ACCEPTED, output=run.output, **base)
        actual = self._parse_literal(run.output or "")
        verdict = Verdict.ACCEPTED if values_equal(actual, expected) else Verdict.WRONG_OUTPUT
        return CheckResult(verdict=verdict, output=run.output, **base)

    def _signature(self, outcome: ExecOutcome) -> tuple[Any, str | None]:
        """What must agree between determinism runs: the value, or the kind of failure."""
        if outcome.kind is OutcomeKind.VALUE:
            return self._parse_literal(outcome.repr or ""), None
        return outcome.kind, outcome.error_type

    # -- scripts: stdin/stdout test cases and single runs (docs/design.md §10) -------------

    def check_testcases(self, items: Sequence[TestcaseItem],
                        policy: PolicyName = PolicyName.PERMISSIVE,
                        on_progress: ProgressCallback | None = None) -> list[TestcaseResult]:
        """One result per program, with one per test case, in order."""
        return self.scripts.check(items, policy, on_progress)

    def run_script(self, program: str, stdin: str, timeout_s: float | None,
                   memory_mb: int | None, policy: PolicyName) -> RunResult:
        """Runs a program once as a script (/run_code; never cached)."""
        limits = self.scripts.limits_for(timeout_s, memory_mb)
        return self.scripts.run_once(program, stdin.encode("utf-8", "surrogatepass"), limits,
                                     policy)

    def check_program(self, program: str, policy: PolicyName) -> ProgramCheck:
        """The memoised static check (syntax and policy) of a program."""
        return self._check_program(program, policy, "f")

    def count(self, *, executions: int = 0, cache_hits: int = 0, cache_misses: int = 0,
              verdicts: Iterable[Verdict] = ()) -> None:
        """Adds to the counters behind `stats()` (and so the metrics)."""
        with self._lock:
            self._executions += executions
            self._cache_hits += cache_hits
            self._cache_misses += cache_misses
            self._verdicts.update(verdict.value for verdict in verdicts)

    # -- stats ----------------------------------------------------------------------------

    def _count_cache(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self._cache_hits += 1
            else:
                self._cache_misses += 1

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(executions=self._executions, cache_hits=self._cache_hits,
                               cache_misses=self._cache_misses, verdicts=dict(self._verdicts))


def _same_signature(a: tuple[Any, str | None], b: tuple[Any, str | None]) -> bool:
    if isinstance(a[0], OutcomeKind) or isinstance(b[0], OutcomeKind):
        return a == b
    return values_equal(a[0], b[0])


def _describe(outcome: ExecOutcome) -> str:
    if outcome.kind is OutcomeKind.VALUE:
        text = outcome.repr or ""
        return text if len(text) <= 200 else text[:200] + "..."
    return f"{outcome.kind.value} {outcome.error_type or ''}".strip()
