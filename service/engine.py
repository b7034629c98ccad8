"""The verification engine: triples in, verdicts out, in order.

For each item: static checks in the trusted process (program syntax, safety policy, entry
function, literal input and expected output), then a cache lookup, then `determinism_runs`
executions on zygotes of different hash-seed groups, folded into one verdict
(`verify/determinism.py`) and compared with the expected output by value. Identical (program,
input) pairs in one batch run once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from azr_verify.service import __version__
from azr_verify.service.config import Settings
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
from azr_verify.service.sandbox.factory import build_pool
from azr_verify.service.sandbox.pool import ZygotePool
from azr_verify.service.sandbox.protocol import RUNNER_PROTOCOL, ExecRequest
from azr_verify.service.stores.cache.entries import UNCACHEABLE, CachedRun, ResultCache, cache_key
from azr_verify.service.stores.cache.memory import MemoryCache
from azr_verify.service.testcases import ScriptRunner
from azr_verify.service.verify.compare import compare_item
from azr_verify.service.verify.determinism import FoldedRuns, fold_runs
from azr_verify.service.verify.equality import values_equal
from azr_verify.service.verify.literals import Literal, LiteralError, parse_call_arguments
from azr_verify.service.verify.policy import ProgramCheck
from azr_verify.service.verify.run_outcome import ExecOutcome

ProgressCallback = Callable[[int, int], None]


@dataclass
class _Pending:
    """An item whose runs are in flight; several items may share one (deduplicated) run set."""

    key: str
    futures: list[Future[ExecOutcome]]
    expected: Literal | None  # None: the item gave no output to compare with


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
        # Part of every cache key: results of another version, runner protocol, sandbox
        # backend or None policy are never served from the cache.
        self.cache_fingerprint = f"azr-verify/{__version__};runner/{RUNNER_PROTOCOL};" \
                                 f"backend/{pool.launcher.backend};" \
                                 f"none/{settings.reject_none_output}"
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
        pending: dict[int, _Pending] = {}
        in_flight: dict[str, list[Future[ExecOutcome]]] = {}
        done = 0
        tenant = object()  # this call's lane in the pool: calls take turns (sandbox/fair_queue)

        for index, item in enumerate(items):
            program = item.program
            if program is None:  # a comparison: decided here, nothing runs
                results[index] = compare_item(item, self._parse_literal,
                                              self.settings.reject_none_output)
                done += 1
                continue
            early = self._static_verdict(item, program, policy)
            if early is not None:
                results[index] = early
                done += 1
                continue
            expected: Literal | None = None
            if item.output is not None:
                try:
                    expected = self._parse_literal(item.output)
                except LiteralError as exc:
                    results[index] = CheckResult(id=item.id, verdict=Verdict.SYNTAX_ERROR,
                                                 error=f"output is not a literal: {exc}")
                    done += 1
                    continue
            limits = self.limits_for(item)
            key = cache_key(program=program, input_text=item.input, entry=item.entry,
                            policy=policy, limits=limits,
                            runtime=self.cache_fingerprint)
            cached = self.cache.get(key)
            if cached is not None:
                self._count_cache(hit=True)
                results[index] = self._finish(item, cached, expected, cached=True)
                done += 1
                continue
            self._count_cache(hit=False)
            futures = in_flight.get(key)
            if futures is None:
                futures = self._submit(item, program, limits, key, tenant)
                in_flight[key] = futures
            pending[index] = _Pending(key, futures, expected)

        if on_progress is not None:
            on_progress(done, total)
        folded: dict[str, CachedRun] = {}
        for index, waiting in pending.items():
            run = folded.get(waiting.key)
            if run is None:
                run = _cache_entry(fold_runs([future.result() for future in waiting.futures],
                                             self._parse_literal))
                folded[waiting.key] = run
                if run.verdict not in UNCACHEABLE:
                    self.cache.put(waiting.key, run)
            results[index] = self._finish(items[index], run, waiting.expected, cached=False)
            done += 1
            if on_progress is not None:
                on_progress(done, total)

        final = [result for result in results if result is not None]
        assert len(final) == total
        with self._lock:
            self._verdicts.update(result.verdict.value for result in final)
        return final

    def _static_verdict(self, item: CheckItem, program: str,
                        policy: PolicyName) -> CheckResult | None:
        """syntax_error or unsafe decided without running anything, else None."""
        check: ProgramCheck = self._check_program(program, policy, item.entry)
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

    def _submit(self, item: CheckItem, program: str, limits: Limits, key: str,
                tenant: object) -> list[Future[ExecOutcome]]:
        request = ExecRequest(program=program, entry=item.entry, args=item.input,
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

    def _finish(self, item: CheckItem, run: CachedRun, expected: Literal | None,
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
        if expected is None:
            return CheckResult(verdict=Verdict.ACCEPTED, output=run.output, **base)
        actual = self._parse_literal(run.output or "")
        verdict = Verdict.ACCEPTED if values_equal(actual, expected) else Verdict.WRONG_OUTPUT
        return CheckResult(verdict=verdict, output=run.output, **base)

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


def _cache_entry(folded: FoldedRuns) -> CachedRun:
    return CachedRun(verdict=folded.verdict, output=folded.output, error_type=folded.error_type,
                     error=folded.error, duration_ms=folded.duration_ms)
